//! KMIP 2.1 JSON TTLV requests as ckms sends them, and the few response fields it reads.

use serde_json::{Value, json};

use crate::error::CliError;

pub fn leaf(tag: &str, kind: &str, value: Value) -> Value {
    json!({"tag": tag, "type": kind, "value": value})
}

pub fn text(tag: &str, value: &str) -> Value {
    leaf(tag, "TextString", json!(value))
}

pub fn bytes(tag: &str, value: &[u8]) -> Value {
    leaf(tag, "ByteString", json!(hex(value)))
}

pub use kms_common::hex::encode_upper as hex;

pub fn unhex(text: &str) -> Result<Vec<u8>, CliError> {
    kms_common::hex::decode(text)
        .ok_or_else(|| CliError::Protocol("a ByteString is not hexadecimal".into()))
}

/// The Cosmian tag attribute: a JSON array serialized into a TextString.
pub fn tags_attribute(tags: &[String]) -> Value {
    vendor(
        "tag",
        &serde_json::to_string(tags).unwrap_or_else(|_| "[]".into()),
    )
}

/// A key is named by its uid, or by tags (a JSON array as the identifier).
pub fn identifier(key_id: Option<&str>, tags: &[String]) -> Result<String, CliError> {
    match (key_id, tags.is_empty()) {
        (Some(id), true) => Ok(id.to_owned()),
        (None, false) => Ok(serde_json::to_string(tags).unwrap_or_default()),
        (Some(_), false) => Err(CliError::Usage(
            "give either --key-id or --tag, not both".into(),
        )),
        (None, true) => Err(CliError::Usage("give --key-id or --tag".into())),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, now, whole seconds.
pub fn now() -> String {
    date(time::OffsetDateTime::now_utc())
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as KMIP JSON writes a DateTime.
pub fn date(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A Create of a symmetric key of `algorithm` (KMIP name) as the reference CLI sends it.
pub fn create(
    algorithm: &str,
    bits: u32,
    usage_mask: i32,
    tags: &[String],
    id: Option<&str>,
    extra: Vec<Value>,
) -> Value {
    let mut attributes = vec![
        leaf("ActivationDate", "DateTime", json!(now())),
        leaf("CryptographicAlgorithm", "Enumeration", json!(algorithm)),
        leaf("CryptographicLength", "Integer", json!(bits)),
        leaf("CryptographicUsageMask", "Integer", json!(usage_mask)),
        leaf(
            "KeyFormatType",
            "Enumeration",
            json!("TransparentSymmetricKey"),
        ),
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
    ];
    if let Some(id) = id {
        attributes.push(text("UniqueIdentifier", id));
    }
    attributes.extend(extra);
    attributes.push(tags_attribute(tags));
    json!({"tag": "Create", "value": [
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        {"tag": "Attributes", "value": attributes},
    ]})
}

/// A Cosmian vendor attribute with a text value (`tag`, `wrapping_key_id`).
pub fn vendor(name: &str, value: &str) -> Value {
    json!({"tag": "Attribute", "value": [
        text("VendorIdentification", "cosmian"),
        text("AttributeName", name),
        text("AttributeValue", value),
    ]})
}

pub fn by_id(op: &str, id: &str, extra: Vec<Value>) -> Value {
    let mut children = vec![text("UniqueIdentifier", id)];
    children.extend(extra);
    json!({"tag": op, "value": children})
}

/// An Encrypt of `data` with `params` (a `CryptographicParameters` node).
pub fn encrypt(
    id: &str,
    params: Value,
    data: &[u8],
    nonce: Option<&[u8]>,
    aad: Option<&[u8]>,
) -> Value {
    let mut extra = vec![params, bytes("Data", data)];
    extra.extend(nonce.map(|n| bytes("IVCounterNonce", n)));
    extra.extend(aad.map(|a| bytes("AuthenticatedEncryptionAdditionalData", a)));
    by_id("Encrypt", id, extra)
}

/// A Decrypt: the parts of what Encrypt returned (nonce and tag when the mode has them).
pub fn decrypt(id: &str, params: Value, parts: [&[u8]; 3], aad: Option<&[u8]>) -> Value {
    let [nonce, data, tag] = parts;
    let mut extra = vec![params, bytes("Data", data)];
    if !nonce.is_empty() {
        extra.push(bytes("IVCounterNonce", nonce));
    }
    extra.extend(aad.map(|a| bytes("AuthenticatedEncryptionAdditionalData", a)));
    if !tag.is_empty() {
        extra.push(bytes("AuthenticatedEncryptionTag", tag));
    }
    by_id("Decrypt", id, extra)
}

/// The first direct child with `tag`.
pub fn field<'a>(node: &'a Value, tag: &str) -> Option<&'a Value> {
    node["value"].as_array()?.iter().find(|c| c["tag"] == tag)
}

/// The first node with `tag` anywhere below `node`, to change it.
pub fn find_mut<'a>(node: &'a mut Value, tag: &str) -> Option<&'a mut Value> {
    if node["tag"] == tag {
        return Some(node);
    }
    node["value"]
        .as_array_mut()?
        .iter_mut()
        .find_map(|c| find_mut(c, tag))
}

/// The first node with `tag` anywhere below `node`.
pub fn find<'a>(node: &'a Value, tag: &str) -> Option<&'a Value> {
    if node["tag"] == tag {
        return Some(node);
    }
    node["value"].as_array()?.iter().find_map(|c| find(c, tag))
}

pub fn text_field(node: &Value, tag: &str) -> Result<String, CliError> {
    field(node, tag)
        .and_then(|f| f["value"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| CliError::Protocol(format!("no {tag} in the answer")))
}

pub fn bytes_field(node: &Value, tag: &str) -> Result<Vec<u8>, CliError> {
    let hex = field(node, tag)
        .and_then(|f| f["value"].as_str())
        .ok_or_else(|| CliError::Protocol(format!("no {tag} in the answer")))?;
    unhex(hex)
}

/// The key bytes of an answer or object: `KeyMaterial` raw or `KeyMaterial{Key}`
/// (transparent), a wrapped `KeyValue`'s bytes, or an opaque object's value.
pub fn key_material(response: &Value) -> Result<Vec<u8>, CliError> {
    let hex = if let Some(material) = find(response, "KeyMaterial") {
        match material["value"].as_str() {
            Some(hex) => hex,
            None => find(material, "Key")
                .and_then(|k| k["value"].as_str())
                .ok_or_else(|| CliError::Protocol("no key bytes in KeyMaterial".into()))?,
        }
    } else {
        find(response, "KeyValue")
            .or_else(|| find(response, "OpaqueDataValue"))
            .and_then(|v| v["value"].as_str())
            .ok_or_else(|| CliError::Protocol("no key material in the object".into()))?
    };
    unhex(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_identifiers() {
        assert_eq!(hex(&[0, 171, 255]), "00ABFF");
        assert_eq!(unhex("00abFF").ok(), Some(vec![0, 171, 255]));
        assert!(unhex("0g").is_err());
        assert_eq!(
            identifier(None, &["a".into()]).ok().as_deref(),
            Some("[\"a\"]")
        );
        assert!(identifier(Some("x"), &["a".into()]).is_err());
        assert_eq!(now().len(), 20);
    }
}
