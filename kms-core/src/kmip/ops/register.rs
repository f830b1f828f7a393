//! Register: like Import, an object the client supplies (a symmetric key, secret data or an
//! opaque object), under the uid its attributes name or a new one the server picks; never
//! replacing an existing object.

use crate::error::KmsError;
use crate::kmip::attributes::{self, Purpose};
use crate::kmip::build::{structure, text};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::ops::import::{Request, store_new};
use crate::kmip::payload;
use crate::kmip::ttlv::Ttlv;

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "Register")?;
    let object_type = f
        .enumeration("ObjectType")?
        .map(attributes::object_type)
        .transpose()?
        .ok_or_else(|| KmsError::InvalidRequest("Register: ObjectType is required".into()))?;
    let attributes = attributes::parse(f.node("Attributes")?, "Register", Purpose::Import)?;
    if f.node("ProtectionStorageMasks")?.is_some() {
        return Err(unsupported("Register", "ProtectionStorageMasks"));
    }
    let payload = payload::parse(&mut f, object_type)?;
    f.finish()?;
    let request = Request {
        uid: attributes.uid,
        replace: false,
        as_registered: false,
        attributes,
        payload,
    };
    let object = store_new(kms, user, &request, "Register").await?;
    Ok(Done::new(
        structure(
            "RegisterResponse",
            vec![text("UniqueIdentifier", &object.uid)],
        ),
        object.uid,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, create, fails, field, kms, leaf, run, uid};

    #[tokio::test]
    async fn secret_data_and_opaque_objects_round_trip_and_are_not_keys() {
        let kms = kms().await;
        let secret = json!({"tag": "Register", "value": [
            leaf("ObjectType", "Enumeration", json!("SecretData")),
            {"tag": "Attributes", "value": [
                leaf("ActivationDate", "DateTime", json!("2020-01-01T00:00:00Z")),
            ]},
            {"tag": "SecretData", "value": [
                leaf("SecretDataType", "Enumeration", json!("Password")),
                {"tag": "KeyBlock", "value": [
                    leaf("KeyFormatType", "Enumeration", json!("Raw")),
                    {"tag": "KeyValue", "value": [leaf("KeyMaterial", "ByteString", json!("736563726574"))]},
                ]},
            ]},
        ]});
        let secret = uid(&run(&kms, "alice", secret)
            .await
            .unwrap_or_else(|e| panic!("{e}")));
        let got = run(&kms, "alice", by_uid("Get", &secret, vec![])).await;
        let got = got.unwrap_or_else(|e| panic!("{e}")).to_string();
        assert!(
            got.contains(r#""value":"736563726574""#) && got.contains("Password"),
            "{got}"
        );
        let encrypt = by_uid(
            "Encrypt",
            &secret,
            vec![leaf("Data", "ByteString", json!("00"))],
        );
        assert!(
            fails(&kms, "alice", encrypt)
                .await
                .contains("is a SecretData, not a key")
        );
        let opaque = json!({"tag": "Register", "value": [
            leaf("ObjectType", "Enumeration", json!("OpaqueObject")),
            {"tag": "OpaqueObject", "value": [
                leaf("OpaqueDataType", "Enumeration", json!("Vendor")),
                leaf("OpaqueDataValue", "ByteString", json!("6F7061717565")),
            ]},
        ]});
        let opaque = uid(&run(&kms, "alice", opaque)
            .await
            .unwrap_or_else(|e| panic!("{e}")));
        let got = run(&kms, "alice", by_uid("Get", &opaque, vec![])).await;
        let got = got.unwrap_or_else(|e| panic!("{e}"));
        let object = field(&got, "OpaqueObject").cloned().unwrap_or_default();
        assert_eq!(object[1]["value"], json!("6F7061717565"));
        // Wrapping needs a key block.
        let kek = create(&kms, "alice", vec![]).await;
        let wrapped = by_uid(
            "Get",
            &opaque,
            vec![json!({"tag": "KeyWrappingSpecification", "value": [
                {"tag": "EncryptionKeyInformation", "value": [leaf("UniqueIdentifier", "TextString", json!(kek))]},
                leaf("EncodingOption", "Enumeration", json!("NoEncoding")),
            ]})],
        );
        assert!(fails(&kms, "alice", wrapped).await.contains("OpaqueObject"));
        // A secret data object is not a wrapping key either.
        let by_secret = by_uid(
            "Get",
            &kek,
            vec![json!({"tag": "KeyWrappingSpecification", "value": [
                {"tag": "EncryptionKeyInformation", "value": [leaf("UniqueIdentifier", "TextString", json!(secret))]},
                leaf("EncodingOption", "Enumeration", json!("NoEncoding")),
            ]})],
        );
        assert!(
            fails(&kms, "alice", by_secret)
                .await
                .contains("is a SecretData, not a key")
        );
    }
}
