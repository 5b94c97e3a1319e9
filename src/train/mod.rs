//! Teacher–student fine-tuning (paper sec. 2.5, spec secs. 1, 4, 6): the optimiser,
//! checkpoints, and the training loop.

pub mod adam;
pub mod checkpoint;
pub mod finetune;
pub mod lr;
