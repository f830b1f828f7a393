//! One file per KMIP operation: each reads its typed request (refusing what it does not
//! implement, by name) and runs it. Dispatch is in [`crate::kmip::kms`].

pub mod activate;
pub mod add_attribute;
pub mod certify;
pub mod create;
pub mod create_key_pair;
pub mod decrypt;
pub mod delete_attribute;
pub mod derive_key;
pub mod destroy;
pub mod discover_versions;
pub mod encrypt;
pub mod get;
pub mod get_attribute_list;
pub mod get_attributes;
pub mod hash;
pub mod import;
pub mod locate;
pub mod mac;
pub mod modify_attribute;
pub mod query;
pub mod register;
pub mod rekey;
pub mod rekey_key_pair;
pub mod revoke;
pub mod rng;
pub mod set_attribute;
pub mod sign;
pub mod validate;
