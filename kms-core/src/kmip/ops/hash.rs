//! Hash: a digest of the data (SHA-2 or SHA-3), in one piece; no key involved.

use crate::error::KmsError;
use crate::hashing::{self, Hash};
use crate::kmip::build::{bytes, structure};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::Done;
use crate::kmip::ops::mac::one_shot;
use crate::kmip::params::CryptoParams;
use crate::kmip::ttlv::Ttlv;

pub fn run(node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "Hash")?;
    let params = CryptoParams::parse(f.structure("CryptographicParameters")?)?;
    let data = f
        .bytes("Data")?
        .ok_or_else(|| KmsError::InvalidRequest("Hash: missing Data".into()))?;
    one_shot(&mut f)?;
    f.finish()?;
    let name = params.hashing.ok_or_else(|| {
        KmsError::InvalidRequest("Hash: missing CryptographicParameters.HashingAlgorithm".into())
    })?;
    let only_hashing = CryptoParams {
        hashing: None,
        ..params
    };
    if only_hashing != CryptoParams::default() {
        return Err(unsupported(
            "Hash",
            "CryptographicParameters other than HashingAlgorithm",
        ));
    }
    let hash =
        Hash::parse(name).ok_or_else(|| unsupported("Hash", format!("HashingAlgorithm {name}")))?;
    Ok(Done::new(
        structure(
            "HashResponse",
            vec![bytes("Data", &hashing::digest(hash, data))],
        ),
        "",
    ))
}
