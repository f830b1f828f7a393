//! CreateKeyPair: an RSA (2048/3072/4096), EC (P-256/P-384/P-521) or Ed25519 key pair made in
//! software. The private key is stored as PKCS#8 wrapped by the active key-encryption key like
//! any key, the public key as SubjectPublicKeyInfo; each links to the other, both carry the
//! caller's tags (plus the system tags `_sk`/`_pk`), and both are stored in one transaction.

use crate::asymmetric::{self, Curve, KeyKind, RSA_SIZES};
use crate::error::KmsError;
use crate::kmip::attributes::{self, Purpose, RequestAttributes};
use crate::kmip::build::{structure, text};
use crate::kmip::creation::{HSM_PREFIX, NewKey, check_user_tags, new_uid};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::pair::{DEFAULT_PRIVATE_MASK, DEFAULT_PUBLIC_MASK};
use crate::kmip::ttlv::Ttlv;
use crate::object::{Algorithm, Link, ManagedObject, ObjectType, WrappedBy, now};

pub struct Request<'a> {
    pub common: RequestAttributes<'a>,
    pub private: RequestAttributes<'a>,
    pub public: RequestAttributes<'a>,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "CreateKeyPair")?;
        let common = attributes::parse(
            f.node("CommonAttributes")?,
            "CreateKeyPair.Common",
            Purpose::New,
        )?;
        let private = attributes::parse(
            f.node("PrivateKeyAttributes")?,
            "CreateKeyPair.PrivateKey",
            Purpose::New,
        )?;
        let public = attributes::parse(
            f.node("PublicKeyAttributes")?,
            "CreateKeyPair.PublicKey",
            Purpose::New,
        )?;
        f.finish()?;
        Ok(Self {
            common,
            private,
            public,
        })
    }
}

/// Key formats a creation request may name. They say how the reference stores the key; here
/// both halves are stored normalized (PKCS#8, SPKI) and Get returns the format it asks for.
const CREATION_FORMATS: [&str; 8] = [
    "PKCS8",
    "PKCS1",
    "ECPrivateKey",
    "X509",
    "TransparentRSAPrivateKey",
    "TransparentRSAPublicKey",
    "TransparentECPrivateKey",
    "TransparentECPublicKey",
];

/// The one value the three attribute sets give for a field, or a refusal when they differ.
fn agreed<T: PartialEq + Copy + std::fmt::Debug>(
    name: &str,
    values: [Option<T>; 3],
) -> Result<Option<T>, KmsError> {
    let mut found: Option<T> = None;
    for v in values.into_iter().flatten() {
        match found {
            Some(f) if f != v => {
                return Err(KmsError::InvalidRequest(format!(
                    "CreateKeyPair: {name} differs between the attribute sets ({f:?}, {v:?})"
                )));
            }
            _ => found = Some(v),
        }
    }
    Ok(found)
}

/// The kind of pair the attributes ask for, and the algorithm name it is recorded under.
fn requested_kind(r: &Request<'_>) -> Result<(KeyKind, Algorithm), KmsError> {
    let sets = [&r.common, &r.private, &r.public];
    let algorithm = agreed("CryptographicAlgorithm", sets.map(|a| a.algorithm))?
        .ok_or_else(|| {
            KmsError::InvalidRequest(
                "CreateKeyPair: CryptographicAlgorithm is required (RSA, EC, ECDSA, ECDH or Ed25519)"
                    .into(),
            )
        })?;
    let length = agreed("CryptographicLength", sets.map(|a| a.length))?;
    let curve = agreed("RecommendedCurve", sets.map(|a| a.curve))?;
    let named = Algorithm::parse(algorithm)
        .filter(|a| a.family().is_some())
        .ok_or_else(|| {
            unsupported(
                "CreateKeyPair",
                format!("CryptographicAlgorithm {algorithm} (RSA, EC, ECDSA, ECDH or Ed25519)"),
            )
        })?;
    let kind = match named.family() {
        Some(asymmetric::Family::Rsa) => {
            if let Some(curve) = curve {
                return Err(KmsError::InvalidRequest(format!(
                    "CreateKeyPair: an RSA key has no curve (got {curve})"
                )));
            }
            let bits = length.unwrap_or(2048);
            if !RSA_SIZES.contains(&bits) {
                return Err(KmsError::InvalidRequest(format!(
                    "CreateKeyPair: an RSA key of {bits} bits: give 2048, 3072 or 4096"
                )));
            }
            KeyKind::Rsa { bits }
        }
        Some(asymmetric::Family::Ed25519) => match curve {
            None | Some("CURVEED25519") => KeyKind::Ed25519,
            Some(other) => {
                return Err(KmsError::InvalidRequest(format!(
                    "CreateKeyPair: an Ed25519 key is on CURVEED25519, not {other}"
                )));
            }
        },
        _ => {
            let curve = match curve {
                None => match length {
                    None => Curve::P256,
                    Some(bits) => Curve::ALL
                        .into_iter()
                        .find(|c| c.bits() == bits)
                        .ok_or_else(|| {
                            KmsError::InvalidRequest(format!(
                                "CreateKeyPair: no curve of {bits} bits (256, 384 or 521)"
                            ))
                        })?,
                },
                Some("CURVEED25519") => {
                    return Err(KmsError::InvalidRequest(format!(
                        "CreateKeyPair: CURVEED25519 takes CryptographicAlgorithm Ed25519, not {algorithm}"
                    )));
                }
                Some(name) => Curve::parse(name).ok_or_else(|| {
                    unsupported(
                        "CreateKeyPair",
                        format!("RecommendedCurve {name} (P256, P384, P521 or CURVEED25519)"),
                    )
                })?,
            };
            // A length given with a curve must be the curve's (the reference sends the curve).
            if let Some(bits) = length.filter(|b| *b != curve.bits()) {
                return Err(KmsError::InvalidRequest(format!(
                    "CreateKeyPair: CryptographicLength {bits} does not match the curve {}",
                    curve.kmip()
                )));
            }
            KeyKind::Ec(curve)
        }
    };
    Ok((kind, named))
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let r = Request::parse(node)?;
    let (private, public) = build(kms, user, &r).await?;
    if let Err(e) = kms.store.insert_all(&[&private, &public]).await {
        // A pair generated in the HSM for uids the store refused must not stay there.
        if private.is_resident() {
            if let Ok((hsm, label)) = kms.hsm_key(&private.uid) {
                let _ = hsm.destroy_key_pair(&label);
            }
        }
        return Err(e.into());
    }
    Ok(Done::new(
        structure(
            "CreateKeyPairResponse",
            vec![
                text("PrivateKeyUniqueIdentifier", &private.uid),
                text("PublicKeyUniqueIdentifier", &public.uid),
            ],
        ),
        format!("{},{}", private.uid, public.uid),
    ))
}

/// The two linked halves the request asks for, generated and wrapped, not yet stored.
pub async fn build(
    kms: &Kms,
    user: &str,
    r: &Request<'_>,
) -> Result<(ManagedObject, ManagedObject), KmsError> {
    let (kind, algorithm) = requested_kind(r)?;
    for (half, a) in [
        ("Common", &r.common),
        ("PrivateKey", &r.private),
        ("PublicKey", &r.public),
    ] {
        if let Some(t) = a
            .object_type
            .filter(|t| !matches!(t, ObjectType::PrivateKey | ObjectType::PublicKey))
        {
            return Err(KmsError::InvalidRequest(format!(
                "CreateKeyPair: {half} attributes name ObjectType {}",
                t.name()
            )));
        }
        if let Some(format) = a.key_format.filter(|f| !CREATION_FORMATS.contains(f)) {
            return Err(unsupported(
                "CreateKeyPair",
                format!("KeyFormatType {format}"),
            ));
        }
    }
    if r.public.wrapping_key_id.is_some() {
        return Err(unsupported(
            "CreateKeyPair",
            "a public key stored wrapped (wrap the private key)",
        ));
    }
    let private_uid = new_uid(r.private.uid.or(r.common.uid))?;
    let in_hsm = private_uid.starts_with(HSM_PREFIX);
    let public_uid = match r.public.uid {
        Some(uid) if !uid.is_empty() => new_uid(Some(uid))?,
        _ => format!("{private_uid}_pk"),
    };
    if public_uid == private_uid {
        return Err(KmsError::InvalidRequest(
            "CreateKeyPair: the two halves need different identifiers".into(),
        ));
    }
    let wrapped_by = match r.private.wrapping_key_id.or(r.common.wrapping_key_id) {
        Some(id) => Some(WrappedBy {
            uid: kms.check_may_wrap(user, id).await?,
        }),
        None => None,
    };
    let common_tags = r.common.tags.clone().unwrap_or_default();
    let half = |a: &RequestAttributes<'_>, uid: String, object_type, mask| {
        let mut tags = common_tags.clone();
        tags.extend(a.tags.clone().unwrap_or_default());
        NewKey {
            object_type,
            algorithm: Some(algorithm),
            data_type: None,
            owner: user.to_owned(),
            uid,
            length_bits: kind.bits(),
            usage_mask: a.usage_mask.or(r.common.usage_mask).unwrap_or(mask),
            activation: a
                .activation_date
                .or(r.common.activation_date)
                .map(|d| d.max(now())),
            tags,
            sensitive: a.sensitive.or(r.common.sensitive).unwrap_or(false),
        }
    };
    let private_new = half(
        &r.private,
        private_uid.clone(),
        ObjectType::PrivateKey,
        DEFAULT_PRIVATE_MASK,
    );
    let public_new = half(
        &r.public,
        public_uid.clone(),
        ObjectType::PublicKey,
        DEFAULT_PUBLIC_MASK,
    );
    check_user_tags(&private_new.tags)?;
    check_user_tags(&public_new.tags)?;
    let (mut private, mut public) = if in_hsm {
        if wrapped_by.is_some() {
            return Err(unsupported(
                "CreateKeyPair",
                "an HSM key pair stored wrapped (it never leaves the HSM)",
            ));
        }
        let (private, spki) = kms.new_pair_in_hsm(private_new, kind, &public_uid).await?;
        (private, kms.new_key(public_new, &spki)?)
    } else {
        let pair = asymmetric::generate(kind)?;
        (
            kms.new_key(private_new, &pair.private)?,
            kms.new_key(public_new, &pair.public)?,
        )
    };
    for o in [&mut private, &mut public] {
        o.length_bits = kind.bits();
    }
    private.meta.wrapped_by = wrapped_by;
    private.meta.names = if r.private.names.is_empty() {
        r.common.names.clone()
    } else {
        r.private.names.clone()
    };
    public.meta.names = r.public.names.clone();
    private.meta.links.push(Link {
        link_type: "PublicKeyLink".into(),
        uid: public_uid.clone(),
    });
    public.meta.links.push(Link {
        link_type: "PrivateKeyLink".into(),
        uid: private_uid,
    });
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::kmip::testing::{fails, field, kms, leaf, run};

    pub fn pair_request(algorithm: &str, extra: Vec<Value>) -> Value {
        let mut common = vec![
            leaf("CryptographicAlgorithm", "Enumeration", json!(algorithm)),
            leaf("CryptographicUsageMask", "Integer", json!(2_097_152)),
            leaf("ActivationDate", "DateTime", json!("2020-01-01T00:00:00Z")),
        ];
        common.extend(extra);
        json!({"tag": "CreateKeyPair", "value": [
            {"tag": "CommonAttributes", "value": common},
        ]})
    }

    #[tokio::test]
    async fn pairs_are_linked_tagged_and_refuse_what_is_not_supported() {
        let kms = kms().await;
        let created = run(
            &kms,
            "alice",
            pair_request(
                "ECDH",
                vec![json!({"tag": "CryptographicDomainParameters", "value": [
                    leaf("Qlength", "Integer", json!(256)),
                    leaf("RecommendedCurve", "Enumeration", json!("P384")),
                ]})],
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let sk = field(&created, "PrivateKeyUniqueIdentifier")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let pk = field(&created, "PublicKeyUniqueIdentifier")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        assert_eq!(pk, format!("{sk}_pk"));
        let private = kms.store.load(&sk).await.ok().flatten();
        let public = kms.store.load(&pk).await.ok().flatten();
        assert!(private.as_ref().is_some_and(|o| o.length_bits == 384
            && o.tags.contains("_sk")
            && o.meta.links[0].uid == pk));
        assert!(public.is_some_and(|o| o.tags.contains("_pk") && o.meta.links[0].uid == sk));
        for (algorithm, extra, error) in [
            (
                "RSA",
                vec![leaf("CryptographicLength", "Integer", json!(1024))],
                "2048, 3072 or 4096",
            ),
            ("DSA", vec![], "CryptographicAlgorithm DSA"),
            (
                "EC",
                vec![json!({"tag": "CryptographicDomainParameters", "value": [
                    leaf("RecommendedCurve", "Enumeration", json!("SECP256K1"))]})],
                "RecommendedCurve SECP256K1",
            ),
        ] {
            let message = fails(&kms, "alice", pair_request(algorithm, extra)).await;
            assert!(message.contains(error), "{message}");
        }
    }
}
