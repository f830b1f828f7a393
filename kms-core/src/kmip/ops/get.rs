//! Get and Export: a key's material, in clear (Raw bytes or a transparent key, with its
//! attributes) or wrapped by another key (`KeyWrappingSpecification`, or as registered for a
//! key stored wrapped). Get refuses revoked keys (the reference's rule); Export returns them
//! as they are. HSM-resident keys are never returned; `Sensitive` keys only wrapped.

use zeroize::Zeroizing;

use crate::asymmetric;
use crate::error::KmsError;
use crate::key_wrap::WrapMode;
use crate::kmip::attributes::{self, tag_attribute};
use crate::kmip::binary;
use crate::kmip::build::{bytes, enumeration, structure, text};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::pair;
use crate::kmip::payload;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::kmip::wrap::{self, Encoding, WrapSpec};
use crate::object::{ManagedObject, ObjectType, State};

pub struct Request<'a> {
    pub id: &'a str,
    /// The `KeyFormatType` asked for (none: the object's default).
    pub format: Option<&'a str>,
    /// Wrap the key with this key before returning it.
    pub wrap: Option<WrapSpec<'a>>,
    /// `KeyWrapType NotWrapped`: a key stored wrapped is returned unwrapped.
    pub unwrapped: bool,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv, op: Operation) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, op.name())?;
        let id = required(f.text("UniqueIdentifier")?)?;
        let format = f.enumeration("KeyFormatType")?;
        let unwrapped = f.enumeration("KeyWrapType")? == Some("NotWrapped");
        let wrap = f
            .structure("KeyWrappingSpecification")?
            .map(wrap::parse)
            .transpose()?;
        f.finish()?;
        Ok(Self {
            id,
            format,
            wrap,
            unwrapped,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, op: Operation, node: &Ttlv) -> Result<Done, KmsError> {
    let Request {
        id,
        format,
        wrap,
        unwrapped,
    } = Request::parse(node, op)?;
    let export = op == Operation::Export;
    let o = kms
        .resolve_one(user, id, op, || KmsError::ObjectNotFound(id.to_owned()))
        .await?;
    if o.is_resident() {
        return Err(KmsError::InvalidRequest(format!(
            "the key {} lives in the HSM and is not extractable: Get and Export are refused",
            o.uid
        )));
    }
    match (o.state, export) {
        (s, false) if s.is_destroyed() => return Err(KmsError::ObjectDestroyed),
        (State::Deactivated | State::Compromised, false) => {
            return Err(KmsError::WrongState("DENIED".into()));
        }
        (s, true) if s.is_destroyed() => return Err(KmsError::ObjectNotFound(id.to_owned())),
        _ => {}
    }
    if wrap.is_some() && o.object_type == ObjectType::OpaqueObject {
        return Err(unsupported(
            op.name(),
            "wrapping an OpaqueObject (it has no key block)",
        ));
    }
    if o.object_type == ObjectType::Certificate {
        if format == Some("PKCS12") {
            // The reference's form: the password in the wrapping key's identifier.
            let password = match &wrap {
                Some(spec) if spec.encoding == Encoding::NoEncoding => spec.key_id,
                _ => {
                    return Err(KmsError::InvalidRequest(format!(
                        "{}: a PKCS#12 export needs its password as KeyWrappingSpecification.EncryptionKeyInformation.UniqueIdentifier with NoEncoding",
                        op.name()
                    )));
                }
            };
            return kms.pkcs12_export(user, op, &o, password).await;
        }
        if wrap.is_some() {
            return Err(unsupported(op.name(), "wrapping a Certificate"));
        }
    }
    let key = kms.keys.unwrap(o.wrapping, &o.uid, &o.wrapped_key)?;
    let (format_name, key_material, key) = formatted(&o, format, key, op.name())?;
    // A key stored wrapped comes back wrapped by the same key, unless the caller asks for it
    // unwrapped and may unwrap with that key.
    let stored = o.meta.wrapped_by.as_ref().filter(|_| !unwrapped);
    let (key_value, wrapping_data) = match (&wrap, stored) {
        (Some(spec), _) => {
            // TTLV encoding wraps the whole key value: material and the attributes binary
            // TTLV can number (the reference's rotation extensions stay outside).
            let plain = match spec.encoding {
                Encoding::NoEncoding => key,
                Encoding::Ttlv => {
                    let mut portable = attributes::of(&o);
                    portable.push(tag_attribute(&o.tags));
                    portable.retain(|a| binary::encode(a).is_ok());
                    let value = structure(
                        "KeyValue",
                        vec![key_material, structure("Attributes", portable)],
                    );
                    Zeroizing::new(binary::encode(&value)?)
                }
            };
            let (uid, wrapped) = kms.wrap_key(user, spec, &plain).await?;
            let spec = WrapSpec {
                key_id: &uid,
                ..spec.clone()
            };
            (bytes("KeyValue", &wrapped), Some(wrap::data(&spec)))
        }
        (None, Some(by)) => {
            let wrapped = kms.rewrap_stored(&by.uid, &key).await?;
            let spec = WrapSpec {
                key_id: &by.uid,
                mode: WrapMode::Rfc5649,
                encoding: Encoding::NoEncoding,
            };
            (bytes("KeyValue", &wrapped), Some(wrap::data(&spec)))
        }
        (None, None) => {
            if o.meta.sensitive {
                return Err(KmsError::Sensitive);
            }
            if let Some(by) = &o.meta.wrapped_by {
                // Returned in clear: the caller must be able to unwrap it.
                kms.check_may_unwrap(user, &by.uid).await?;
            }
            let mut key_attributes = attributes::of(&o);
            key_attributes.push(tag_attribute(&o.tags));
            (
                structure(
                    "KeyValue",
                    vec![key_material, structure("Attributes", key_attributes)],
                ),
                None,
            )
        }
    };
    let object = payload::object_node(&o, format_name, key_value, wrapping_data);
    let mut children = vec![
        enumeration("ObjectType", o.object_type.name()),
        text("UniqueIdentifier", &o.uid),
    ];
    if export {
        let mut all = attributes::of(&o);
        all.push(tag_attribute(&o.tags));
        children.push(structure("Attributes", all));
    }
    children.push(object);
    let tag = if export {
        "ExportResponse"
    } else {
        "GetResponse"
    };
    Ok(Done::new(structure(tag, children), o.uid))
}

/// The object's material in the format asked for: the format's name, the `KeyMaterial` node
/// and the bytes that stand for it when it is wrapped without encoding. Symmetric keys and
/// secret data: `Raw` or (keys) `TransparentSymmetricKey`; private keys: `PKCS8`, `PKCS1`
/// (RSA), `ECPrivateKey` (EC); public keys: SubjectPublicKeyInfo (`PKCS8` or `X509`),
/// `PKCS1` (RSA), `TransparentECPublicKey` (EC).
fn formatted(
    o: &ManagedObject,
    asked: Option<&str>,
    clear: Zeroizing<Vec<u8>>,
    op: &str,
) -> Result<(&'static str, Ttlv, Zeroizing<Vec<u8>>), KmsError> {
    let refuse = |format: &str| {
        unsupported(
            op,
            format!("KeyFormatType {format} for a {}", o.object_type.name()),
        )
    };
    if o.object_type == ObjectType::Certificate {
        return match asked {
            None | Some("X509") => Ok(("X509", bytes("KeyMaterial", &clear), clear)),
            Some(other) => Err(refuse(other)),
        };
    }
    let Some(kind) = pair::kind(o) else {
        return match asked {
            None | Some("Raw") => Ok(("Raw", bytes("KeyMaterial", &clear), clear)),
            Some("TransparentSymmetricKey") if o.object_type == ObjectType::SymmetricKey => Ok((
                "TransparentSymmetricKey",
                structure("KeyMaterial", vec![bytes("Key", &clear)]),
                clear,
            )),
            Some(other) => Err(refuse(other)),
        };
    };
    let asked = asked.unwrap_or(o.object_type.default_format());
    let name = FORMATS
        .into_iter()
        .find(|f| *f == asked)
        .ok_or_else(|| refuse(asked))?;
    let der = if o.object_type == ObjectType::PrivateKey {
        asymmetric::export_private(kind, &clear, name)?
    } else {
        Zeroizing::new(asymmetric::export_public(kind, &clear, name)?)
    };
    let node = match (name, kind.curve_name()) {
        ("TransparentECPublicKey", Some(curve)) => structure(
            "KeyMaterial",
            vec![
                enumeration("RecommendedCurve", curve),
                bytes("QString", &der),
            ],
        ),
        _ => bytes("KeyMaterial", &der),
    };
    Ok((name, node, der))
}

/// The asymmetric key formats, by their KMIP names.
const FORMATS: [&str; 5] = [
    "PKCS8",
    "PKCS1",
    "ECPrivateKey",
    "X509",
    "TransparentECPublicKey",
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, create, fails, field, kms, leaf, run};

    #[tokio::test]
    async fn get_export_formats_states_and_sensitivity() {
        let kms = kms().await;
        let uid = create(&kms, "alice", vec![]).await;
        let transparent = by_uid(
            "Get",
            &uid,
            vec![leaf(
                "KeyFormatType",
                "Enumeration",
                json!("TransparentSymmetricKey"),
            )],
        );
        let got = run(&kms, "alice", transparent)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let block = &field(&got, "SymmetricKey").cloned().unwrap_or_default()[0];
        assert_eq!(
            field(block, "KeyFormatType"),
            Some(&json!("TransparentSymmetricKey"))
        );
        let pkcs8 = by_uid(
            "Get",
            &uid,
            vec![leaf("KeyFormatType", "Enumeration", json!("PKCS8"))],
        );
        assert!(
            fails(&kms, "alice", pkcs8)
                .await
                .contains("KeyFormatType PKCS8")
        );
        // Only the owner or a grantee sees it.
        assert!(
            fails(&kms, "bob", by_uid("Get", &uid, vec![]))
                .await
                .starts_with("Object_Not_Found")
        );
        let _ = kms.store.grant(&uid, "bob", &["get".to_owned()]).await;
        assert!(run(&kms, "bob", by_uid("Get", &uid, vec![])).await.is_ok());
        assert!(
            run(&kms, "bob", by_uid("Export", &uid, vec![]))
                .await
                .is_err()
        );
        // Revoked: Get refuses, Export returns it with its attributes.
        let revoke = by_uid(
            "Revoke",
            &uid,
            vec![json!({"tag": "RevocationReason", "value": [
            leaf("RevocationReasonCode", "Enumeration", json!("Unspecified"))]})],
        );
        assert!(run(&kms, "alice", revoke).await.is_ok());
        assert_eq!(
            fails(&kms, "alice", by_uid("Get", &uid, vec![])).await,
            "Wrong_Key_Lifecycle_State: DENIED"
        );
        let exported = run(&kms, "alice", by_uid("Export", &uid, vec![])).await;
        assert!(exported.is_ok_and(|e| field(&e, "Attributes").is_some()));
        // Sensitive: never in clear.
        let sensitive = create(
            &kms,
            "alice",
            vec![leaf("Sensitive", "Boolean", json!(true))],
        )
        .await;
        assert_eq!(
            fails(&kms, "alice", by_uid("Get", &sensitive, vec![])).await,
            "Sensitive: DENIED"
        );
    }
}
