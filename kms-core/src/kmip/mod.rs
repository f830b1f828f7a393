//! KMIP 2.1 in JSON TTLV: the node codec ([`ttlv`]), typed reading of requests ([`fields`],
//! [`attributes`], [`params`]), the one list of operations ([`operation`]), one file per
//! operation ([`ops`]) and the dispatcher ([`kms`]).

pub mod attributes;
pub mod binary;
pub mod build;
pub mod certs;
pub mod creation;
pub mod fields;
pub mod kms;
pub mod mutable;
pub mod names;
pub mod operation;
pub mod ops;
pub mod pair;
pub mod params;
pub mod payload;
#[cfg(test)]
mod reference_asym;
pub mod resolve;
pub mod rotation;
pub mod tags;
#[cfg(test)]
pub mod testing;
pub mod text;
pub mod ttlv;
pub mod wrap;

pub use kms_common::hex::encode_upper as hex_upper;
