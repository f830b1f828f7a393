//! MAC and MACVerify: HMAC over data with a symmetric key (SHA-2 or SHA-3; an HMAC key's own
//! hash when none is given), in one piece — streaming (`InitIndicator`, `FinalIndicator`
//! true, `CorrelationValue`) is refused. The key's usage mask must allow MAC generation or
//! verification.

use crate::error::KmsError;
use crate::hashing::{self, Hash};
use crate::kmip::build::{bytes, enumeration, structure, text};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::params::CryptoParams;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::{ManagedObject, State};

/// Usage mask bits (KMIP 2.1).
const MASK_MAC_GENERATE: i32 = 0x80;
const MASK_MAC_VERIFY: i32 = 0x100;

pub struct Request<'a> {
    pub id: &'a str,
    pub params: CryptoParams<'a>,
    pub data: &'a [u8],
    /// MACVerify: the MAC to check.
    pub mac: Option<&'a [u8]>,
}

/// Refuses the streaming fields of MAC, MACVerify and Hash unless they ask for one piece.
pub fn one_shot(f: &mut Fields<'_>) -> Result<(), KmsError> {
    for indicator in ["InitIndicator", "FinalIndicator"] {
        if f.boolean(indicator)? == Some(true) {
            return Err(unsupported(
                f.path(),
                format!("{indicator} true (streaming)"),
            ));
        }
    }
    if f.bytes("CorrelationValue")?.is_some() {
        return Err(unsupported(f.path(), "CorrelationValue (streaming)"));
    }
    Ok(())
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv, op: Operation) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, op.name())?;
        let id = required(f.text("UniqueIdentifier")?)?;
        let params = CryptoParams::parse(f.structure("CryptographicParameters")?)?;
        let data = f.bytes("Data")?;
        let mac = match op {
            Operation::MacVerify => Some(
                f.bytes("MACData")?
                    .ok_or_else(|| KmsError::InvalidRequest("MACVerify: missing MACData".into()))?,
            ),
            _ => None,
        };
        one_shot(&mut f)?;
        f.finish()?;
        let data =
            data.ok_or_else(|| KmsError::InvalidRequest(format!("{}: missing Data", op.name())))?;
        Ok(Self {
            id,
            params,
            data,
            mac,
        })
    }
}

/// The hash to use: the one asked for (only that), else the key's own.
fn hash_for(op: &str, params: &CryptoParams<'_>, key: &ManagedObject) -> Result<Hash, KmsError> {
    if params.mode.is_some() || params.padding.is_some() || params.random_iv.is_some() {
        return Err(unsupported(
            op,
            "CryptographicParameters other than HashingAlgorithm",
        ));
    }
    if let Some(alg) = params.algorithm.filter(|a| !a.starts_with("HMAC")) {
        return Err(unsupported(
            op,
            format!("CryptographicAlgorithm {alg} for a MAC"),
        ));
    }
    let implied = key.algorithm.and_then(|a| a.mac_hash());
    match (params.hashing, implied) {
        (Some(name), _) => {
            Hash::parse(name).ok_or_else(|| unsupported(op, format!("HashingAlgorithm {name}")))
        }
        (None, Some(hash)) => Ok(hash),
        (None, None) => Err(KmsError::InvalidRequest(format!(
            "{op}: give CryptographicParameters.HashingAlgorithm (SHA256, SHA384, SHA512, SHA3256, SHA3384, SHA3512)"
        ))),
    }
}

pub async fn run(kms: &Kms, user: &str, op: Operation, node: &Ttlv) -> Result<Done, KmsError> {
    let r = Request::parse(node, op)?;
    let name = op.name();
    let o = kms.crypto_key(user, r.id, op).await?;
    let hash = hash_for(name, &r.params, &o)?;
    let (bit, allowed) = match op {
        Operation::MacVerify => (MASK_MAC_VERIFY, o.state != State::PreActive),
        _ => (MASK_MAC_GENERATE, o.state == State::Active),
    };
    if !allowed {
        return Err(KmsError::PermissionDenied(format!(
            "{name}: key {} is in state {}",
            o.uid,
            o.state.name()
        )));
    }
    if o.usage_mask & (bit | crate::kmip::creation::MASK_UNRESTRICTED) == 0 {
        return Err(KmsError::PermissionDenied(format!(
            "{name}: key {} usage mask does not allow {}",
            o.uid,
            if bit == MASK_MAC_VERIFY {
                "MACVerify"
            } else {
                "MACGenerate"
            }
        )));
    }
    if o.is_resident() {
        return Err(unsupported(name, "a MAC with an HSM key"));
    }
    let key = kms.keys.unwrap(o.wrapping, &o.uid, &o.wrapped_key)?;
    let children = match r.mac {
        Some(expected) => {
            let valid = hashing::mac_matches(hash, &key, r.data, expected)?;
            vec![
                text("UniqueIdentifier", &o.uid),
                enumeration("ValidityIndicator", if valid { "Valid" } else { "Invalid" }),
            ]
        }
        None => vec![
            text("UniqueIdentifier", &o.uid),
            bytes("MACData", &hashing::mac(hash, &key, r.data)?),
        ],
    };
    Ok(Done::new(
        structure(&format!("{name}Response"), children),
        o.uid,
    ))
}
