//! The README's claim that the streaming processors' per-sample loops allocate nothing: a
//! counting global allocator around `Processor::process` calls after the first block (which may
//! size scratch buffers), for every architecture, in f64 and f32.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use dealias::Real;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: the thread-local may be gone while a thread shuts down.
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn check<T: Real>(case: &str) {
    let model = dealias::load_model(&common::data(&format!("reference/{case}"))).unwrap();
    let mut p = model.network.processor::<T>();
    let x: Vec<T> = (0..4096)
        .map(|i| T::from_f64_lossy((i as f64 * 0.013).sin() * 0.5))
        .collect();
    let mut y = vec![T::zero(); x.len()];
    p.process(&x[..1000], &mut y[..1000]);
    let before = allocations();
    // Blocks of several sizes, shorter and longer than the processors' internal block.
    for (a, b) in [(1000, 1001), (1001, 1257), (1257, 1800), (1800, 4096)] {
        p.process(&x[a..b], &mut y[a..b]);
    }
    let n = allocations() - before;
    assert_eq!(n, 0, "{case}: {n} allocations while processing");
    assert!(y.iter().all(|v| v.is_finite()));
}

#[test]
fn processors_allocate_nothing_per_block() {
    for case in [
        "wavenet_tanh_gated/wavenet_tanh_gated.nam",
        "nam_lstm_1x5/nam_lstm_1x5.nam",
        "guitarml_gru7x1_skip_bias/guitarml_gru7x1_skip_bias.json",
        "nam_linear_nobias/nam_linear_nobias.nam",
    ] {
        check::<f64>(case);
        check::<f32>(case);
    }
}
