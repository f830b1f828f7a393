//! What kms-proxy and kms-core share, written once.

pub mod hex;
pub mod log;
pub mod signal;
