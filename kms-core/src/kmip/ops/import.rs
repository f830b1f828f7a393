//! Import: an object given in clear or wrapped by a key the caller may unwrap with (a
//! symmetric key, secret data or an opaque object), stored wrapped by the active
//! key-encryption key; `ReplaceExisting` replaces an object the caller owns. Register shares
//! [`store_new`].

use std::collections::BTreeSet;

use crate::asymmetric;
use crate::error::KmsError;
use crate::kmip::attributes::{self, Purpose, RequestAttributes};
use crate::kmip::binary;
use crate::kmip::build::{structure, text};
use crate::kmip::creation::{HSM_PREFIX, MASK_UNRESTRICTED, NewKey, check_user_tags, new_uid};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::payload::{self, Payload};
use crate::kmip::ttlv::Ttlv;
use crate::kmip::wrap::Encoding;
use crate::object::{Algorithm, ManagedObject, ObjectType, WrappedBy};
use zeroize::Zeroizing;

pub struct Request<'a> {
    pub uid: Option<&'a str>,
    pub replace: bool,
    /// `KeyWrapType AsRegistered`: a wrapped key block stays "wrapped by" its key.
    pub as_registered: bool,
    pub attributes: RequestAttributes<'a>,
    pub payload: Payload<'a>,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "Import")?;
        let uid = f.text("UniqueIdentifier")?;
        let object_type = f
            .enumeration("ObjectType")?
            .map(attributes::object_type)
            .transpose()?
            .unwrap_or(ObjectType::SymmetricKey);
        let replace = f.boolean("ReplaceExisting")?.unwrap_or(false);
        // For an object given in clear both values mean the same.
        let as_registered = f.enumeration("KeyWrapType")? == Some("AsRegistered");
        let attributes = attributes::parse(f.node("Attributes")?, "Import", Purpose::Import)?;
        let payload = payload::parse(&mut f, object_type)?;
        f.finish()?;
        Ok(Self {
            uid,
            replace,
            as_registered,
            attributes,
            payload,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let r = Request::parse(node)?;
    let object = if r.payload.block.format == Some("PKCS12") {
        import_pkcs12(kms, user, &r).await?
    } else {
        store_new(kms, user, &r, "Import").await?
    };
    Ok(Done::new(
        structure(
            "ImportResponse",
            vec![text("UniqueIdentifier", &object.uid)],
        ),
        object.uid,
    ))
}

/// A PKCS#12 archive given as a `PrivateKey` (the reference's form), its password in a
/// `PKCS12PasswordLink`.
async fn import_pkcs12(kms: &Kms, user: &str, r: &Request<'_>) -> Result<ManagedObject, KmsError> {
    let a = &r.attributes;
    if r.replace {
        return Err(unsupported(
            "Import",
            "ReplaceExisting with a PKCS#12 archive",
        ));
    }
    if r.payload.block.wrapped.is_some() || a.wrapping_key_id.is_some() {
        return Err(unsupported("Import", "a wrapped PKCS#12 archive"));
    }
    let mut password = None;
    for l in &a.links {
        match l.link_type.as_str() {
            "PKCS12PasswordLink" => password = Some(l.uid.as_str()),
            other => {
                return Err(unsupported(
                    "Import",
                    format!("Link {other} with a PKCS#12 archive"),
                ));
            }
        }
    }
    let password = password.ok_or_else(|| {
        KmsError::InvalidRequest(
            "Import: a PKCS#12 archive needs its password (Link PKCS12PasswordLink)".into(),
        )
    })?;
    if a.sensitive == Some(true) || a.usage_mask.is_some() || !a.names.is_empty() {
        return Err(unsupported(
            "Import",
            "Sensitive, CryptographicUsageMask or Name with a PKCS#12 archive",
        ));
    }
    kms.pkcs12_import(
        user,
        r.uid,
        &r.payload.block.material,
        password,
        &a.tags.clone().unwrap_or_default(),
        a.activation_date,
    )
    .await
}

/// Checks, unwraps and stores the object of an Import or Register request.
pub async fn store_new(
    kms: &Kms,
    user: &str,
    r: &Request<'_>,
    op: &str,
) -> Result<ManagedObject, KmsError> {
    let outer = &r.attributes;
    let block = &r.payload.block;
    let mut inner = &block.attributes;
    let object_type = r.payload.object_type;
    let decoded: Ttlv;
    let unpacked: RequestAttributes<'_>;
    // A wrapped key block is unwrapped with a key the caller may decrypt with; as registered,
    // it stays wrapped by that key. A clear key may ask to be stored wrapped by one. A
    // TTLV-encoded one unwraps to a whole key value: its material and attributes.
    let (material, mut wrapped_by) = match &block.wrapped {
        Some(spec) => {
            let (kek, clear) = kms.unwrap_key(user, spec, &block.material).await?;
            let material = match spec.encoding {
                Encoding::NoEncoding => clear,
                Encoding::Ttlv => {
                    decoded = binary::decode(&clear)?;
                    let (material, attributes) =
                        payload::key_value(&decoded, &format!("{op} (unwrapped)"))?;
                    unpacked = attributes;
                    inner = &unpacked;
                    material
                }
            };
            (material, r.as_registered.then_some(kek))
        }
        None => (block.material.clone(), None),
    };
    if let Some(id) = outer.wrapping_key_id.or(inner.wrapping_key_id) {
        if matches!(
            object_type,
            ObjectType::OpaqueObject | ObjectType::Certificate
        ) {
            return Err(unsupported(
                op,
                format!(
                    "a {} wrapped by a key (it has no key block)",
                    object_type.name()
                ),
            ));
        }
        wrapped_by = Some(kms.check_may_wrap(user, id).await?);
    }
    for a in [outer, inner] {
        // Keys and secret data are stored as bytes and returned Raw (or, for keys,
        // transparent); an opaque object has its own format.
        if let Some(format) = a
            .key_format
            .filter(|f| !payload::format_fits(object_type, f))
        {
            return Err(unsupported(
                op,
                format!("KeyFormatType {format} for a {}", object_type.name()),
            ));
        }
        if a.object_type.is_some_and(|t| t != object_type) {
            return Err(KmsError::InvalidRequest(format!(
                "{op}: the attributes describe another object type than {}",
                object_type.name()
            )));
        }
    }
    if outer
        .links
        .iter()
        .chain(&inner.links)
        .any(|l| l.link_type == "PKCS12PasswordLink")
    {
        return Err(KmsError::InvalidRequest(format!(
            "{op}: a PKCS12PasswordLink goes with a PKCS#12 archive (KeyFormatType PKCS12) only"
        )));
    }
    let named_algorithm = outer.algorithm.or(inner.algorithm).or(block.algorithm);
    // A private or public key is checked and stored normalized (PKCS#8, SPKI).
    let mut pair_kind = None;
    let material = match object_type {
        ObjectType::PrivateKey | ObjectType::PublicKey => {
            let format = block.format.unwrap_or("PKCS8");
            let (kind, der) = if object_type == ObjectType::PrivateKey {
                asymmetric::import_private(format, &material)?
            } else {
                let (kind, der) = asymmetric::import_public(format, &material)?;
                (kind, Zeroizing::new(der))
            };
            pair_kind = Some(kind);
            der
        }
        ObjectType::Certificate => {
            pair_kind = crate::certificates::parse(&material)?.kind;
            material
        }
        _ => material,
    };
    let algorithm = match object_type {
        ObjectType::PrivateKey | ObjectType::PublicKey => {
            let kind = pair_kind.ok_or_else(|| KmsError::Internal("no key kind".into()))?;
            let algorithm = match named_algorithm {
                None => crate::kmip::pair::default_algorithm(kind),
                Some(name) => Algorithm::parse(name)
                    .filter(|a| a.family() == Some(kind.family()))
                    .ok_or_else(|| {
                        KmsError::InvalidRequest(format!(
                            "{op}: CryptographicAlgorithm {name} does not describe an {} key",
                            kind.describe()
                        ))
                    })?,
            };
            Some(algorithm)
        }
        ObjectType::Certificate => {
            if let Some(name) = named_algorithm {
                return Err(KmsError::InvalidRequest(format!(
                    "{op}: a Certificate's algorithm is its key's (got CryptographicAlgorithm {name})"
                )));
            }
            pair_kind.map(crate::kmip::pair::default_algorithm)
        }
        ObjectType::SymmetricKey => {
            let algorithm = match named_algorithm {
                None => Algorithm::Aes,
                Some(alg) => Algorithm::parse_symmetric(alg)
                    .ok_or_else(|| unsupported(op, format!("CryptographicAlgorithm {alg}")))?,
            };
            let bits = i32::try_from(material.len() * 8).unwrap_or(i32::MAX);
            if algorithm == Algorithm::Aes && !algorithm.accepts_length(bits) {
                return Err(KmsError::InvalidRequest(format!(
                    "{op}: an AES key must be 16, 24 or 32 bytes, got {}",
                    material.len()
                )));
            }
            if !algorithm.accepts_length(bits) {
                return Err(KmsError::InvalidRequest(format!(
                    "{op}: a {} key of {bits} bits: the length must be {}",
                    algorithm.name(),
                    algorithm.lengths_text()
                )));
            }
            Some(algorithm)
        }
        _ => {
            if let Some(alg) = named_algorithm {
                return Err(KmsError::InvalidRequest(format!(
                    "{op}: a {} has no CryptographicAlgorithm (got {alg})",
                    object_type.name()
                )));
            }
            None
        }
    };
    for bits in [block.length, outer.length, inner.length]
        .into_iter()
        .flatten()
    {
        if let Some(kind) = pair_kind {
            if bits != kind.bits() {
                return Err(KmsError::InvalidRequest(format!(
                    "{op}: CryptographicLength {bits} does not match an {} key",
                    kind.describe()
                )));
            }
        } else if usize::try_from(bits).ok() != Some(material.len() * 8) {
            return Err(KmsError::InvalidRequest(format!(
                "{op}: CryptographicLength {bits} does not match {} bytes",
                material.len()
            )));
        }
    }
    let tags = outer.tags.clone().unwrap_or_default();
    check_user_tags(&tags)?;
    // Tags exported with the object come back with it; its system tags are the server's.
    let kept: BTreeSet<String> = inner
        .tags
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !t.starts_with('_'))
        .collect();
    check_user_tags(&kept)?;
    let uid = new_uid(r.uid)?;
    if uid.starts_with(HSM_PREFIX) {
        return Err(KmsError::InvalidRequest(format!(
            "{uid}: objects cannot be imported into the HSM; create keys there"
        )));
    }
    let new = NewKey {
        object_type,
        algorithm,
        data_type: r.payload.data_type.map(str::to_owned),
        owner: user.to_owned(),
        uid,
        length_bits: 0,
        usage_mask: outer
            .usage_mask
            .or(inner.usage_mask)
            .unwrap_or(MASK_UNRESTRICTED),
        activation: outer.activation_date.or(inner.activation_date),
        tags: tags.into_iter().chain(kept).collect(),
        sensitive: outer.sensitive.or(inner.sensitive).unwrap_or(false),
    };
    let mut object = kms.new_key(new, &material)?;
    match pair_kind {
        Some(kind) => object.length_bits = kind.bits(),
        None if object_type == ObjectType::Certificate => object.length_bits = 0,
        None => {}
    }
    object.meta.wrapped_by = wrapped_by.map(|uid| WrappedBy { uid });
    object.meta.links = if outer.links.is_empty() {
        inner.links.clone()
    } else {
        outer.links.clone()
    };
    object.meta.names = if outer.names.is_empty() {
        inner.names.clone()
    } else {
        outer.names.clone()
    };
    if r.replace {
        kms.store.replace(&object).await?;
    } else {
        kms.store.insert(&object).await?;
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::key_wrap::{self, WrapMode};
    use crate::kmip::testing::{by_uid, create, fails, field, kms, leaf, run, uid};

    fn import(material: Value, extra_block: Vec<Value>, inner: Vec<Value>) -> Value {
        let mut value = vec![material];
        if !inner.is_empty() {
            value.push(json!({"tag": "Attributes", "value": inner}));
        }
        let mut block = vec![
            leaf("KeyFormatType", "Enumeration", json!("Raw")),
            json!({"tag": "KeyValue", "value": value}),
        ];
        block.extend(extra_block);
        json!({"tag": "Import", "value": [
            leaf("UniqueIdentifier", "TextString", json!("")),
            leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
            {"tag": "SymmetricKey", "value": [{"tag": "KeyBlock", "value": block}]},
        ]})
    }

    async fn material(kms: &crate::kmip::kms::Kms, uid: &str) -> Value {
        let got = run(kms, "alice", by_uid("Get", uid, vec![])).await;
        let got = got.unwrap_or_else(|e| panic!("{e}"));
        field(&got, "SymmetricKey").cloned().unwrap_or_default()[0]["value"][1]["value"][0]["value"]
            .clone()
    }

    #[tokio::test]
    async fn imports_a_clear_key_with_its_exported_tags() {
        let kms = kms().await;
        let key = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
        let tags = json!({"tag": "Attribute", "value": [
            leaf("VendorIdentification", "TextString", json!("cosmian")),
            leaf("AttributeName", "TextString", json!("tag")),
            leaf("AttributeValue", "TextString", json!("[\"_kk\",\"payments\"]")),
        ]});
        let request = import(
            leaf("KeyMaterial", "ByteString", json!(key)),
            vec![],
            vec![tags],
        );
        let imported = uid(&run(&kms, "alice", request)
            .await
            .unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(material(&kms, &imported).await, json!(key));
        let o = kms
            .store
            .load(&imported)
            .await
            .ok()
            .flatten()
            .map(|o| o.tags);
        let tags: Vec<String> = o.unwrap_or_default().into_iter().collect();
        assert_eq!(tags, vec!["_kk".to_owned(), "payments".to_owned()]);
        let pkcs8 = import(
            leaf("KeyMaterial", "ByteString", json!(key)),
            vec![],
            vec![leaf("KeyFormatType", "Enumeration", json!("PKCS8"))],
        );
        assert!(
            fails(&kms, "alice", pkcs8)
                .await
                .contains("KeyFormatType PKCS8")
        );
        let short = import(
            leaf("KeyMaterial", "ByteString", json!("0011")),
            vec![],
            vec![],
        );
        assert!(
            fails(&kms, "alice", short)
                .await
                .contains("16, 24 or 32 bytes")
        );
    }

    #[tokio::test]
    async fn a_wrapped_key_is_unwrapped_with_a_key_the_caller_may_use() {
        let kms = kms().await;
        let kek_uid = create(&kms, "alice", vec![]).await;
        let kek =
            crate::kmip::ttlv::decode_hex(material(&kms, &kek_uid).await.as_str().unwrap_or(""))
                .unwrap_or_default();
        let key = [7u8; 32];
        let wrapped = key_wrap::wrap(WrapMode::Rfc5649, &kek, &key).unwrap_or_default();
        let data = json!({"tag": "KeyWrappingData", "value": [
            leaf("WrappingMethod", "Enumeration", json!("Encrypt")),
            {"tag": "EncryptionKeyInformation", "value": [
                leaf("UniqueIdentifier", "TextString", json!(kek_uid)),
                {"tag": "CryptographicParameters", "value": [
                    leaf("BlockCipherMode", "Enumeration", json!("AESKeyWrapPadding")),
                ]},
            ]},
            leaf("EncodingOption", "Enumeration", json!("NoEncoding")),
        ]});
        let mut request = import(json!(null), vec![data], vec![]);
        request["value"][2]["value"][0]["value"][1] = leaf(
            "KeyValue",
            "ByteString",
            json!(crate::kmip::hex_upper(&wrapped)),
        );
        let text = fails(&kms, "bob", request.clone()).await;
        assert!(text.starts_with("Access denied"), "{text}");
        let imported = uid(&run(&kms, "alice", request)
            .await
            .unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            material(&kms, &imported).await,
            json!(crate::kmip::hex_upper(&key))
        );
    }
}
