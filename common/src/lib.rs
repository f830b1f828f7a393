//! What kms-proxy and kms-core share, written once.

pub mod error;
pub mod hex;
pub mod log;
pub mod metrics;
pub mod request_id;
pub mod signal;
pub mod text;
pub mod timestamp;
