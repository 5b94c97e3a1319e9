//! Evaluation: the paper's metrics of whole models (sec. 2.6, Table 1) and reports.

pub mod summary;
