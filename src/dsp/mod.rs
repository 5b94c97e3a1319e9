//! Signal processing.
pub mod resample;
