//! One file per KMIP operation: each reads its typed request (refusing what it does not
//! implement, by name) and runs it. Dispatch is in [`crate::kmip::kms`].

pub mod activate;
pub mod create;
pub mod decrypt;
pub mod destroy;
pub mod discover_versions;
pub mod encrypt;
pub mod get;
pub mod get_attributes;
pub mod import;
pub mod locate;
pub mod query;
pub mod rekey;
pub mod revoke;
