//! The Adam optimiser (Kingma & Ba, 2015) with PyTorch's defaults and bias correction, as the
//! paper's training uses (`torch.optim.Adam`, lr 5e-4, sec. 2.5).
//!
//! Hand-written: it is a dozen lines, and its moments must be serialisable into our
//! checkpoints so that a resumed run continues bit for bit.

use serde::{Deserialize, Serialize};

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 5e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Adam's state: first and second moment estimates and the step count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub config: AdamConfig,
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    pub step: u64,
}

impl Adam {
    /// Fresh state for `n` parameters.
    pub fn new(n: usize, config: AdamConfig) -> Self {
        Adam {
            config,
            m: vec![0.0; n],
            v: vec![0.0; n],
            step: 0,
        }
    }

    /// One update of `params` with gradient `grad` (PyTorch's formulation:
    /// `θ -= lr · m̂ / (√v̂ + ε)` with bias-corrected moments).
    pub fn update(&mut self, params: &mut [f64], grad: &[f64]) {
        let lr = self.config.lr;
        self.update_with_lr(params, grad, lr);
    }

    /// One update at learning rate `lr` instead of the configured one (schedules; the
    /// moments are the same).
    pub fn update_with_lr(&mut self, params: &mut [f64], grad: &[f64], lr: f64) {
        assert_eq!(params.len(), self.m.len(), "parameter count changed");
        assert_eq!(grad.len(), self.m.len(), "gradient length differs");
        self.step += 1;
        let AdamConfig {
            beta1, beta2, eps, ..
        } = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - beta1.powi(t);
        let bc2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        let step_size = lr / bc1;
        for i in 0..params.len() {
            let g = grad[i];
            self.m[i] = beta1 * self.m[i] + (1.0 - beta1) * g;
            self.v[i] = beta2 * self.v[i] + (1.0 - beta2) * g * g;
            let denom = self.v[i].sqrt() / bc2_sqrt + eps;
            params[i] -= step_size * self.m[i] / denom;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first Adam step moves every parameter by exactly lr · g / (|g| + ε), because the
    /// bias-corrected moments are m̂ = g and √v̂ = |g|.
    #[test]
    fn first_step_is_lr_times_sign() {
        let mut p = vec![1.0, -2.0, 0.5];
        let g = vec![0.3, -4.0, 1e-3];
        let mut adam = Adam::new(3, AdamConfig::default());
        adam.update(&mut p, &g);
        let expect: Vec<f64> = [1.0, -2.0, 0.5]
            .iter()
            .zip(&g)
            .map(|(p0, gi)| p0 - 5e-4 * gi / (gi.abs() + 1e-8))
            .collect();
        for (a, b) in p.iter().zip(expect) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
    }

    /// Minimises a convex quadratic: Adam with a constant learning rate reaches the minimum
    /// to within a few learning rates.
    #[test]
    fn minimises_a_quadratic() {
        let target = [3.0, -1.0, 0.25];
        let mut p = vec![0.0; 3];
        let mut adam = Adam::new(
            3,
            AdamConfig {
                lr: 1e-2,
                ..Default::default()
            },
        );
        for _ in 0..5000 {
            let g: Vec<f64> = p.iter().zip(target).map(|(x, t)| 2.0 * (x - t)).collect();
            adam.update(&mut p, &g);
        }
        for (a, b) in p.iter().zip(target) {
            assert!((a - b).abs() < 3e-2, "{a} vs {b}");
        }
    }
}
