//! Pre-training from Rust: train a model of the built-in diode clipper from scratch and save
//! it as a GuitarML file (a recurrent architecture) or a `.nam` (a WaveNet).
//!
//! `cargo run --release --example pretrain -- ARCH OUT [STEPS]` (e.g. `lstm-16 m.json 400`)

use std::sync::atomic::AtomicBool;

use dealias::device::Device;
use dealias::models::init::Architecture;
use dealias::train::pretrain::{AudioPair, PretrainConfig, Pretrainer};
use dealias::Format;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(arch), Some(output)) = (args.next(), args.next()) else {
        return Err("usage: pretrain ARCH OUT [STEPS]".into());
    };
    let steps: u64 = args.next().map_or(Ok(400), |s| s.parse())?;

    let arch = Architecture::parse(&arch)?;
    let format = match arch {
        Architecture::Recurrent { .. } => Format::GuitarMl,
        Architecture::WaveNet(_) => Format::Nam,
    };
    let fs = format.default_rate();
    // 20 s of the built-in signal through the device, and a validation draw of 4 s.
    let device = Device::by_name("diode-clipper")?;
    let (train, validation) = AudioPair::from_device(&device, fs, 20.0, 1)?;
    let initial = arch.initial_network(1);
    let config = PretrainConfig {
        max_steps: Some(steps),
        ..PretrainConfig::for_network(&initial)
    };
    let mut trainer = Pretrainer::new(initial, fs, train, validation, config)?;
    let out = trainer.run(&AtomicBool::new(false), &mut |_event| {})?; // steps, validations
    if let Some(v) = out.history.iter().rfind(|v| v.improved) {
        println!(
            "best validation: A-weighted ESR {:.4} after {} steps",
            v.esr, v.step
        );
    }
    // A new file of the format, with the trained weights (and, for .nam, its calibration).
    let mut file = dealias::formats::new_model_file(out.best, format, fs)?;
    dealias::eval::calibration::recalibrate(&mut file)?;
    dealias::formats::save_model(&file, output.as_ref())?;
    Ok(())
}
