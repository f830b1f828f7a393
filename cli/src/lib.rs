//! ckms: the command-line client of the KMS, compatible with Cosmian's `ckms` for the commands
//! it has: symmetric keys, file encryption, access rights, locate, server version, and every
//! authentication method of kms-proxy (none, access token, PKCS#12 client certificate, OAuth2
//! login with PKCE).

pub mod commands;
pub mod config;
pub mod error;
pub mod files;
pub mod http;
pub mod kmip;
pub mod tls;
