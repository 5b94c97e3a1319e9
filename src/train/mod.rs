//! Teacher–student fine-tuning (paper sec. 2.5, spec secs. 1, 4, 6): the optimiser,
//! checkpoints, the training loop, and the planning and records of batch runs over a library.

pub mod adam;
pub mod batch;
pub mod checkpoint;
pub mod clip;
pub mod finetune;
pub mod lr;
