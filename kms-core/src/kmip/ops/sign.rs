//! Sign and SignatureVerify: a signature by a private key over data or a digest the caller
//! computed (`DigestedData`), checked with the public key (or the public half of a private
//! key). Streaming signatures (`CorrelationValue`, `InitIndicator`) are refused by name.

use crate::asymmetric::sign::{self, Input, Scheme};
use crate::error::KmsError;
use crate::kmip::build::{bytes, enumeration, structure, text};
use crate::kmip::fields::Fields;
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::pair::{MASK_SIGN, MASK_VERIFY, check_usage, require_kind};
use crate::kmip::params::CryptoParams;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::State;

pub struct Request<'a> {
    pub id: &'a str,
    pub params: CryptoParams<'a>,
    pub input: Input<'a>,
    /// SignatureVerify only.
    pub signature: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv, op: Operation) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, op.name())?;
        let id = required(f.text("UniqueIdentifier")?)?;
        let params = CryptoParams::parse(f.structure("CryptographicParameters")?)?;
        let data = f.bytes("Data")?;
        let digested = f.bytes("DigestedData")?;
        let signature = if op == Operation::SignatureVerify {
            Some(f.bytes("SignatureData")?.ok_or_else(|| {
                KmsError::InvalidRequest("SignatureVerify: missing SignatureData".into())
            })?)
        } else {
            None
        };
        f.finish()?;
        let input = match (data, digested) {
            (Some(d), None) => Input::Data(d),
            (None, Some(d)) => Input::Digest(d),
            (Some(_), Some(_)) => {
                return Err(KmsError::InvalidRequest(format!(
                    "{}: give Data or DigestedData, not both",
                    op.name()
                )));
            }
            (None, None) => {
                return Err(KmsError::InvalidRequest(format!(
                    "{}: missing Data (or DigestedData)",
                    op.name()
                )));
            }
        };
        Ok(Self {
            id,
            params,
            input,
            signature,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, op: Operation, node: &Ttlv) -> Result<Done, KmsError> {
    let r = Request::parse(node, op)?;
    let name = op.name();
    let o = kms.crypto_key(user, r.id, op).await?;
    let kind = require_kind(&o, name)?;
    let scheme = Scheme::of(kind, &r.params, name)?;
    match r.signature {
        None => {
            if o.state != State::Active {
                return Err(KmsError::PermissionDenied(format!(
                    "Sign: key {} is in state {} but operation requires one of [Active]",
                    o.uid,
                    o.state.name()
                )));
            }
            check_usage(&o, MASK_SIGN, name)?;
            let signature = if o.is_resident() {
                let (hsm, label) = kms.hsm_key(&o.uid)?;
                hsm.sign(&label, scheme, r.input)?
            } else {
                let loaded = kms.signing.get(&o.uid, &o.meta.key_digest_hex, || {
                    sign::Loaded::load(kind, &kms.material(&o)?)
                })?;
                sign::sign_with(scheme, &loaded, r.input)?
            };
            Ok(Done::new(
                structure(
                    "SignResponse",
                    vec![
                        text("UniqueIdentifier", &o.uid),
                        bytes("SignatureData", &signature),
                    ],
                ),
                o.uid,
            ))
        }
        Some(signature) => {
            // Signatures made before a key was retired must still be checkable.
            if o.state == State::PreActive {
                return Err(KmsError::PermissionDenied(format!(
                    "SignatureVerify: key {} is in state PreActive",
                    o.uid
                )));
            }
            check_usage(&o, MASK_VERIFY | MASK_SIGN, name)?;
            let public = kms.public_material(&o, kind)?;
            let valid = sign::verify(scheme, &public, r.input, signature)?;
            Ok(Done::new(
                structure(
                    "SignatureVerifyResponse",
                    vec![
                        text("UniqueIdentifier", &o.uid),
                        enumeration("ValidityIndicator", if valid { "Valid" } else { "Invalid" }),
                    ],
                ),
                o.uid,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::kmip::testing::{by_uid, fails, field, kms, leaf, run};

    async fn pair(kms: &crate::kmip::kms::Kms, algorithm: &str) -> (String, String) {
        let created = run(
            kms,
            "alice",
            json!({"tag": "CreateKeyPair", "value": [{"tag": "CommonAttributes", "value": [
                leaf("CryptographicAlgorithm", "Enumeration", json!(algorithm)),
                leaf("ActivationDate", "DateTime", json!("2020-01-01T00:00:00Z")),
            ]}]}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let get = |tag| {
            field(&created, tag)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        (
            get("PrivateKeyUniqueIdentifier"),
            get("PublicKeyUniqueIdentifier"),
        )
    }

    #[tokio::test]
    async fn sign_verify_grants_and_refusals() {
        let kms = kms().await;
        for algorithm in ["RSA", "ECDSA", "Ed25519"] {
            let (sk, pk) = pair(&kms, algorithm).await;
            let data = leaf("Data", "ByteString", json!("68656C6C6F"));
            let signed = run(&kms, "alice", by_uid("Sign", &sk, vec![data.clone()]))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let signature = field(&signed, "SignatureData").cloned().unwrap_or_default();
            let verify = |data: &str| {
                by_uid(
                    "SignatureVerify",
                    &pk,
                    vec![
                        leaf("Data", "ByteString", json!(data)),
                        leaf("SignatureData", "ByteString", signature.clone()),
                    ],
                )
            };
            let valid = run(&kms, "alice", verify("68656C6C6F")).await;
            assert_eq!(
                valid
                    .ok()
                    .as_ref()
                    .and_then(|v| field(v, "ValidityIndicator")),
                Some(&json!("Valid"))
            );
            let invalid = run(&kms, "alice", verify("68656C6C6E")).await;
            assert_eq!(
                invalid
                    .ok()
                    .as_ref()
                    .and_then(|v| field(v, "ValidityIndicator")),
                Some(&json!("Invalid"))
            );
            // The public key does not sign; bob needs the sign grant.
            assert!(
                fails(&kms, "alice", by_uid("Sign", &pk, vec![data.clone()]))
                    .await
                    .contains("not a private key")
            );
            assert!(
                fails(&kms, "bob", by_uid("Sign", &sk, vec![data.clone()]))
                    .await
                    .contains("permission")
            );
            let _ = kms.store.grant(&sk, "bob", &["sign".to_owned()]).await;
            assert!(
                run(&kms, "bob", by_uid("Sign", &sk, vec![data]))
                    .await
                    .is_ok()
            );
        }
        let (sk, _) = pair(&kms, "Ed25519").await;
        let streaming = by_uid(
            "Sign",
            &sk,
            vec![
                leaf("Data", "ByteString", json!("00")),
                leaf("InitIndicator", "Boolean", json!(true)),
            ],
        );
        assert!(
            fails(&kms, "alice", streaming)
                .await
                .contains("InitIndicator")
        );
    }
}
