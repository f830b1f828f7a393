//! Query: what this server really implements — the operations marked implemented in
//! [`Operation`], the object types it stores, and who it is. Functions about features it has
//! none of (extensions, RNGs, profiles, attestation, ...) answer an empty list.

use crate::error::KmsError;
use crate::kmip::build::{enumeration, structure, text};
use crate::kmip::fields::Fields;
use crate::kmip::kms::Done;
use crate::kmip::operation::Operation;
use crate::kmip::ttlv::Ttlv;
use crate::object::ObjectType;

/// The object types Create, Import, Get and the rest accept.
pub const STORED_TYPES: [ObjectType; 6] = [
    ObjectType::Certificate,
    ObjectType::SymmetricKey,
    ObjectType::PrivateKey,
    ObjectType::PublicKey,
    ObjectType::SecretData,
    ObjectType::OpaqueObject,
];

pub fn run(node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "Query")?;
    let mut functions = Vec::new();
    for function in f.all("QueryFunction") {
        functions.push(crate::kmip::fields::enum_name(function, "Query")?);
    }
    f.finish()?;
    let mut answer = Vec::new();
    for function in functions {
        match function {
            "QueryOperations" => answer.extend(
                Operation::ALL
                    .iter()
                    .filter(|op| op.implemented())
                    .map(|op| enumeration("Operation", op.name())),
            ),
            "QueryObjects" => answer.extend(
                STORED_TYPES
                    .iter()
                    .map(|t| enumeration("ObjectType", t.name())),
            ),
            "QueryServerInformation" => {
                answer.push(text("VendorIdentification", "kms-proxy"));
                answer.push(structure(
                    "ServerInformation",
                    vec![
                        text("ServerName", "kms-core"),
                        text("ServerVersion", env!("CARGO_PKG_VERSION")),
                    ],
                ));
            }
            // None of these features exist here: the truthful answer is an empty list.
            _ => {}
        }
    }
    Ok(Done::new(structure("QueryResponse", answer), ""))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{kms, leaf, run};

    #[tokio::test]
    async fn answers_only_what_is_implemented() {
        let kms = kms().await;
        let query = json!({"tag": "Query", "value": [
            leaf("QueryFunction", "Enumeration", json!("QueryOperations")),
            leaf("QueryFunction", "Enumeration", json!("QueryObjects")),
            leaf("QueryFunction", "Enumeration", json!("QueryRNGs")),
        ]});
        let answer = run(&kms, "alice", query)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        assert!(answer.contains(r#""value":"Encrypt""#));
        assert!(answer.contains(r#""value":"SymmetricKey""#));
        assert!(answer.contains(r#""value":"Sign""#));
        assert!(answer.contains(r#""value":"PrivateKey""#));
        assert!(answer.contains(r#""value":"Certify""#));
        assert!(answer.contains(r#""value":"Certificate""#));
        assert!(answer.contains(r#""value":"ReKeyKeyPair""#));
        assert!(!answer.contains(r#""value":"PGPKey""#));
        let versions = json!({"tag": "DiscoverVersions", "value": [{"tag": "ProtocolVersion", "value": [
            leaf("ProtocolVersionMajor", "Integer", json!(1)),
            leaf("ProtocolVersionMinor", "Integer", json!(4)),
        ]}]});
        let answer = run(&kms, "alice", versions)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer["value"], json!([]));
    }
}
