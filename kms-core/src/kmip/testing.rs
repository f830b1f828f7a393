//! The unit-test seam for operations: a [`Kms`] on an in-memory database with a random master
//! key, and requests written as JSON TTLV, as clients send them.

use serde_json::{Value, json};

use crate::crypto::{MasterKey, random};
use crate::error::KmsError;
use crate::kmip::kms::Kms;
use crate::kmip::ttlv::Ttlv;
use crate::store::Store;
use crate::wrapping::Wrappers;

pub async fn kms() -> Kms {
    let store = Store::memory()
        .await
        .unwrap_or_else(|e| panic!("memory store: {e}"));
    let master = MasterKey::new(random(32).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    Kms::new(
        store,
        Wrappers {
            master: Some(master),
            ..Wrappers::default()
        },
    )
}

/// Runs one request for `user`: the response as JSON, or the error.
pub async fn run(kms: &Kms, user: &str, request: Value) -> Result<Value, KmsError> {
    let node = Ttlv::from_json(&request).unwrap_or_else(|e| panic!("{request}: {e}"));
    kms.execute(user, &node)
        .await
        .result
        .map(|done| done.response.to_json())
}

/// A TTLV leaf.
pub fn leaf(tag: &str, kind: &str, value: Value) -> Value {
    json!({"tag": tag, "type": kind, "value": value})
}

/// `{"tag": op, "value": [UniqueIdentifier, extra...]}`.
pub fn by_uid(op: &str, uid: &str, extra: Vec<Value>) -> Value {
    let mut children = vec![leaf("UniqueIdentifier", "TextString", json!(uid))];
    children.extend(extra);
    json!({"tag": op, "value": children})
}

/// The value of the first child named `tag`.
pub fn field<'a>(node: &'a Value, tag: &str) -> Option<&'a Value> {
    node["value"]
        .as_array()?
        .iter()
        .find(|c| c["tag"] == tag)
        .map(|c| &c["value"])
}

pub fn uid(response: &Value) -> String {
    field(response, "UniqueIdentifier")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Creates an Active AES-256 key for `user` with `extra` attributes (replacing the defaults
/// of the same name); its uid.
pub async fn create(kms: &Kms, user: &str, extra: Vec<Value>) -> String {
    let mut attributes: Vec<Value> = [
        leaf("ActivationDate", "DateTime", json!("2020-01-01T00:00:00Z")),
        leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
        leaf("CryptographicLength", "Integer", json!(256)),
    ]
    .into_iter()
    .filter(|default| !extra.iter().any(|e| e["tag"] == default["tag"]))
    .collect();
    attributes.extend(extra);
    let request = json!({"tag": "Create", "value": [
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        {"tag": "Attributes", "value": attributes},
    ]});
    match run(kms, user, request).await {
        Ok(response) => uid(&response),
        Err(e) => panic!("create: {e}"),
    }
}

/// The error text of a request that must fail.
pub async fn fails(kms: &Kms, user: &str, request: Value) -> String {
    match run(kms, user, request).await {
        Ok(response) => panic!("expected a failure, got {response}"),
        Err(e) => e.to_string(),
    }
}
