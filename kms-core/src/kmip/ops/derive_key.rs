//! DeriveKey: a new symmetric key (or secret data) derived from a key or secret data the
//! caller may derive from (grant `derivekey`, usage mask DeriveKey), by PBKDF2 (salt,
//! iterations) or HKDF (salt, `DerivationData` as context), with SHA-256, -384 or -512.

use crate::error::KmsError;
use crate::hashing::{self, Derivation, Hash};
use crate::kmip::attributes::{self, Purpose, RequestAttributes};
use crate::kmip::build::{structure, text};
use crate::kmip::creation::{MASK_UNRESTRICTED, NewKey, check_user_tags, new_uid};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::params::CryptoParams;
use crate::kmip::ttlv::Ttlv;
use crate::object::{Algorithm, Link, ObjectType, State, now};

const MASK_DERIVE_KEY: i32 = 0x200;
/// PBKDF2 iterations accepted: enough to mean something, few enough to bound the time.
const ITERATIONS: std::ops::RangeInclusive<i32> = 1_000..=1_000_000;

pub struct Request<'a> {
    pub object_type: ObjectType,
    pub base: &'a str,
    pub derivation: Derivation,
    pub hash: Hash,
    pub salt: &'a [u8],
    pub info: &'a [u8],
    pub attributes: RequestAttributes<'a>,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "DeriveKey")?;
        let object_type = f
            .enumeration("ObjectType")?
            .map(attributes::object_type)
            .transpose()?
            .unwrap_or(ObjectType::SymmetricKey);
        let bases = f.all("ObjectUniqueIdentifier");
        let [base] = bases.as_slice() else {
            return Err(KmsError::InvalidRequest(
                "DeriveKey: give exactly one ObjectUniqueIdentifier".into(),
            ));
        };
        let base = match &base.value {
            crate::kmip::ttlv::Value::TextString(s) => s.as_str(),
            _ => {
                return Err(KmsError::InvalidRequest(
                    "DeriveKey.ObjectUniqueIdentifier must be a TextString".into(),
                ));
            }
        };
        let method = f.enumeration("DerivationMethod")?.ok_or_else(|| {
            KmsError::InvalidRequest("DeriveKey: missing DerivationMethod".into())
        })?;
        let mut p = f.structure("DerivationParameters")?.ok_or_else(|| {
            KmsError::InvalidRequest("DeriveKey: missing DerivationParameters".into())
        })?;
        let params = CryptoParams::parse(p.structure("CryptographicParameters")?)?;
        let salt = p.bytes("Salt")?.unwrap_or_default();
        let iterations = p.int("IterationCount")?;
        let info = p.bytes("DerivationData")?.unwrap_or_default();
        p.finish()?;
        let attributes = attributes::parse(f.node("Attributes")?, "DeriveKey", Purpose::New)?;
        f.finish()?;
        let derivation = match (method, iterations) {
            ("PBKDF2", Some(n)) if ITERATIONS.contains(&n) => Derivation::Pbkdf2 {
                iterations: u32::try_from(n).unwrap_or(1_000),
            },
            ("PBKDF2", _) => {
                return Err(KmsError::InvalidRequest(format!(
                    "DeriveKey: PBKDF2 needs an IterationCount from {} to {}",
                    ITERATIONS.start(),
                    ITERATIONS.end()
                )));
            }
            ("HKDF", None) => Derivation::Hkdf,
            ("HKDF", Some(_)) => return Err(unsupported("DeriveKey", "IterationCount with HKDF")),
            (other, _) => {
                return Err(unsupported(
                    "DeriveKey",
                    format!("DerivationMethod {other}"),
                ));
            }
        };
        let hashing = params.hashing.unwrap_or("SHA256");
        let hash = Hash::parse(hashing)
            .ok_or_else(|| unsupported("DeriveKey", format!("HashingAlgorithm {hashing}")))?;
        if (CryptoParams {
            hashing: None,
            ..params
        }) != CryptoParams::default()
        {
            return Err(unsupported(
                "DeriveKey",
                "CryptographicParameters other than HashingAlgorithm",
            ));
        }
        Ok(Self {
            object_type,
            base,
            derivation,
            hash,
            salt,
            info,
            attributes,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let r = Request::parse(node)?;
    let a = &r.attributes;
    let base = kms
        .resolve_one(user, r.base, Operation::DeriveKey, || {
            KmsError::ItemNotFound(r.base.to_owned())
        })
        .await?;
    if !matches!(
        base.object_type,
        ObjectType::SymmetricKey | ObjectType::SecretData
    ) || base.is_resident()
    {
        return Err(unsupported(
            "DeriveKey",
            format!("deriving from a {}", base.object_type.name()),
        ));
    }
    if base.state != State::Active {
        return Err(KmsError::PermissionDenied(format!(
            "DeriveKey: base object {} is {}",
            base.uid,
            base.state.name()
        )));
    }
    if base.usage_mask & (MASK_DERIVE_KEY | MASK_UNRESTRICTED) == 0 {
        return Err(KmsError::InvalidRequest(
            "DeriveKey: base object does not have DeriveKey usage mask".into(),
        ));
    }
    let (algorithm, data_type) = match r.object_type {
        ObjectType::SymmetricKey => {
            let name = a.algorithm.unwrap_or("AES");
            let algorithm = Algorithm::parse_symmetric(name).ok_or_else(|| {
                unsupported("DeriveKey", format!("CryptographicAlgorithm {name}"))
            })?;
            (Some(algorithm), None)
        }
        ObjectType::SecretData => (None, Some("Seed".to_owned())),
        other => {
            return Err(unsupported(
                "DeriveKey",
                format!("ObjectType {}", other.name()),
            ));
        }
    };
    let bits = a.length.ok_or_else(|| {
        KmsError::InvalidRequest("DeriveKey: Attributes.CryptographicLength is required".into())
    })?;
    let fits = match algorithm {
        Some(alg) => alg.accepts_length(bits),
        None => (8..=4096).contains(&bits) && bits % 8 == 0,
    };
    if !fits {
        return Err(KmsError::InvalidRequest(format!(
            "DeriveKey: a length of {bits} bits does not fit"
        )));
    }
    if let Some(format) = a
        .key_format
        .filter(|f| !matches!(*f, "Raw" | "TransparentSymmetricKey"))
    {
        return Err(unsupported("DeriveKey", format!("KeyFormatType {format}")));
    }
    if a.object_type.is_some_and(|t| t != r.object_type) {
        return Err(KmsError::InvalidRequest(
            "DeriveKey: ObjectType and Attributes.ObjectType differ".into(),
        ));
    }
    if a.wrapping_key_id.is_some() {
        return Err(unsupported(
            "DeriveKey",
            "a derived key wrapped by another key",
        ));
    }
    let secret = kms
        .keys
        .unwrap(base.wrapping, &base.uid, &base.wrapped_key)?;
    let material = hashing::derive(
        r.derivation,
        r.hash,
        &secret,
        r.salt,
        r.info,
        usize::try_from(bits / 8).unwrap_or(32),
    )?;
    let tags = a.tags.clone().unwrap_or_default();
    check_user_tags(&tags)?;
    let new = NewKey {
        object_type: r.object_type,
        algorithm,
        data_type,
        owner: user.to_owned(),
        uid: new_uid(a.uid)?,
        length_bits: bits,
        usage_mask: a.usage_mask.unwrap_or(MASK_UNRESTRICTED),
        activation: Some(a.activation_date.unwrap_or_else(now).max(now())),
        tags,
        sensitive: a.sensitive.unwrap_or(false),
    };
    let mut object = kms.new_key(new, &material)?;
    object.meta.names = a.names.clone();
    object.meta.links.push(Link {
        link_type: "DerivationBaseObjectLink".into(),
        uid: base.uid.clone(),
    });
    kms.store.insert(&object).await?;
    Ok(Done::new(
        structure(
            "DeriveKeyResponse",
            vec![text("UniqueIdentifier", &object.uid)],
        ),
        object.uid,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, create, fails, field, kms, leaf, run, uid};

    fn derive(base: &str, method: &str, extra: Vec<serde_json::Value>) -> serde_json::Value {
        let mut parameters = vec![
            json!({"tag": "CryptographicParameters", "value": [
                leaf("HashingAlgorithm", "Enumeration", json!("SHA256"))]}),
            leaf("Salt", "ByteString", json!("0102030405060708")),
        ];
        parameters.extend(extra);
        json!({"tag": "DeriveKey", "value": [
            leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
            leaf("ObjectUniqueIdentifier", "TextString", json!(base)),
            leaf("DerivationMethod", "Enumeration", json!(method)),
            {"tag": "DerivationParameters", "value": parameters},
            {"tag": "Attributes", "value": [
                leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
                leaf("CryptographicLength", "Integer", json!(256)),
            ]},
        ]})
    }

    #[tokio::test]
    async fn derives_deterministically_from_a_base_that_allows_it() {
        let kms = kms().await;
        let plain = create(&kms, "alice", vec![]).await;
        let pbkdf2 = || vec![leaf("IterationCount", "Integer", json!(4096))];
        assert!(
            fails(&kms, "alice", derive(&plain, "PBKDF2", pbkdf2()))
                .await
                .contains("DeriveKey usage mask")
        );
        let base = create(
            &kms,
            "alice",
            vec![leaf("CryptographicUsageMask", "Integer", json!(0x200))],
        )
        .await;
        let kms_ref = &kms;
        let material = |response: serde_json::Value| async move {
            let id = uid(&response);
            let got = run(kms_ref, "alice", by_uid("Get", &id, vec![]))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            field(&got, "SymmetricKey").cloned().unwrap_or_default()[0]["value"][1]["value"][0]
                ["value"]
                .clone()
        };
        let first = run(&kms, "alice", derive(&base, "PBKDF2", pbkdf2()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let second = run(&kms, "alice", derive(&base, "PBKDF2", pbkdf2()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (material(first).await, material(second).await);
        assert_eq!(a, b, "same inputs, same key");
        let hkdf = run(&kms, "alice", derive(&base, "HKDF", vec![]))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(material(hkdf).await, a);
        assert!(
            fails(&kms, "alice", derive(&base, "PBKDF2", vec![]))
                .await
                .contains("IterationCount")
        );
        assert!(
            fails(&kms, "bob", derive(&base, "HKDF", vec![]))
                .await
                .starts_with("Item_Not_Found")
        );
        assert!(
            fails(&kms, "alice", derive(&base, "NIST800_108_C", vec![]))
                .await
                .starts_with("Feature_Not_Supported")
        );
    }
}
