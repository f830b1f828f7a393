//! kms-core: the key-management core behind kms-proxy. Work in progress: so far the KMIP 2.1
//! JSON TTLV codec that the API is built on.

pub mod kmip;
