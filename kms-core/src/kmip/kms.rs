//! The KMS: runs one operation or a `RequestMessage` batch for a user. Each request is named
//! by an [`Operation`] before anything else happens; each operation lives in its own file
//! under `ops/`.

use crate::error::KmsError;
use crate::kmip::build::{count, date, enumeration, structure, text};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::operation::Operation;
use crate::kmip::ops;
use crate::kmip::ttlv::Ttlv;
use crate::object::now;
use crate::store::Store;
use crate::wrapping::Wrappers;

/// The outcome of one operation, for the response and the audit line.
pub struct Done {
    pub response: Ttlv,
    /// The uid(s) the operation acted on, comma-separated (empty when none).
    pub uid: String,
}

impl Done {
    pub fn new(response: Ttlv, uid: impl Into<String>) -> Self {
        Self {
            response,
            uid: uid.into(),
        }
    }
}

/// What a request asked for, and what came of it.
pub struct Outcome {
    /// The operation, when the request named one this server knows.
    pub operation: Option<Operation>,
    /// The name used in metrics and the audit line: the operation's, or `RequestMessage`,
    /// or `other`.
    pub label: &'static str,
    pub result: Result<Done, KmsError>,
}

pub struct Kms {
    pub store: Store,
    pub keys: Wrappers,
    /// Private keys loaded for Sign.
    pub signing: crate::asymmetric::sign::SigningKeys,
}

impl Kms {
    pub fn new(store: Store, keys: Wrappers) -> Self {
        Self {
            store,
            keys,
            signing: crate::asymmetric::sign::SigningKeys::default(),
        }
    }

    /// False when an HSM is configured and does not answer.
    pub fn hsm_ready(&self) -> bool {
        self.keys.hsm.as_ref().is_none_or(|h| h.ping())
    }

    /// Runs a bare operation or a RequestMessage batch for `user`.
    pub async fn execute(&self, user: &str, request: &Ttlv) -> Outcome {
        if request.tag == "RequestMessage" {
            return Outcome {
                operation: None,
                label: "RequestMessage",
                result: self.batch(user, request).await,
            };
        }
        let operation = Operation::parse(&request.tag);
        let result = match operation {
            Some(op) => self.run(user, op, request).await,
            None => Err(KmsError::UnknownOperation(request.tag.clone())),
        };
        Outcome {
            operation,
            label: operation.map_or("other", Operation::label),
            result,
        }
    }

    async fn batch(&self, user: &str, message: &Ttlv) -> Result<Done, KmsError> {
        let mut f = Fields::of(message, "RequestMessage")?;
        if let Some(header) = f.structure("RequestHeader")? {
            check_header(header)?;
        }
        let mut items = Vec::new();
        for item in f.all("BatchItem") {
            let mut fields = Fields::of(item, "RequestMessage.BatchItem")?;
            let name = fields
                .enumeration("Operation")?
                .ok_or_else(|| KmsError::InvalidRequest("BatchItem without Operation".into()))?;
            let payload = fields.all("RequestPayload").into_iter().next();
            fields.finish()?;
            let payload = payload.map_or_else(
                || structure(name, vec![]),
                |p| Ttlv::new(name, p.value.clone()),
            );
            let result = match Operation::parse(name) {
                Some(op) => self.run(user, op, &payload).await,
                None => Err(KmsError::UnknownOperation(name.to_owned())),
            };
            let mut children = vec![enumeration("Operation", name)];
            match result {
                Ok(done) => {
                    tracing::info!(target: "audit", user, operation = %name, uid = %done.uid, outcome = "success", "kmip");
                    children.push(enumeration("ResultStatus", "Success"));
                    children.push(Ttlv::new("ResponsePayload", done.response.value));
                }
                Err(e) => {
                    tracing::info!(target: "audit", user, operation = %name, uid = %payload.requested_uid(), outcome = e.outcome(), error = %e, "kmip");
                    let (reason, message) = e.reason_and_message();
                    children.push(enumeration("ResultStatus", "OperationFailed"));
                    children.push(enumeration("ResultReason", reason));
                    children.push(text("ResultMessage", &message));
                }
            }
            items.push(structure("BatchItem", children));
        }
        f.finish()?;
        let mut children = vec![structure(
            "ResponseHeader",
            vec![
                ops::discover_versions::version_node(),
                date("TimeStamp", now()),
                count("BatchCount", items.len()),
            ],
        )];
        children.extend(items);
        Ok(Done::new(structure("ResponseMessage", children), ""))
    }
}

/// The batch items are answered one by one, in order, each on its own (a failed item does not
/// stop the others): a header asking for anything else is refused.
fn check_header(mut header: Fields<'_>) -> Result<(), KmsError> {
    for informational in [
        "ProtocolVersion",
        "BatchCount",
        "TimeStamp",
        "ClientCorrelationValue",
    ] {
        header.accept(informational);
    }
    if header.boolean("AsynchronousIndicator")? == Some(true) {
        return Err(unsupported(header.path(), "AsynchronousIndicator true"));
    }
    if header.boolean("BatchOrderOption")? == Some(false) {
        return Err(unsupported(header.path(), "BatchOrderOption false"));
    }
    if let Some(option) = header.enumeration("BatchErrorContinuationOption")? {
        if option != "Continue" {
            return Err(unsupported(
                header.path(),
                format!("BatchErrorContinuationOption {option} (items always continue)"),
            ));
        }
    }
    header.finish()
}

impl Kms {
    /// One operation: its typed request is read and checked, then run.
    async fn run(&self, user: &str, op: Operation, request: &Ttlv) -> Result<Done, KmsError> {
        match op {
            Operation::Create => ops::create::run(self, user, request).await,
            Operation::ReKeyKeyPair => ops::rekey_key_pair::run(self, user, request).await,
            Operation::Certify => ops::certify::run(self, user, request).await,
            Operation::Validate => ops::validate::run(self, user, request).await,
            Operation::CreateKeyPair => ops::create_key_pair::run(self, user, request).await,
            Operation::Sign | Operation::SignatureVerify => {
                ops::sign::run(self, user, op, request).await
            }
            Operation::Import => ops::import::run(self, user, request).await,
            Operation::Register => ops::register::run(self, user, request).await,
            Operation::Get | Operation::Export => ops::get::run(self, user, op, request).await,
            Operation::Encrypt => ops::encrypt::run(self, user, request).await,
            Operation::Decrypt => ops::decrypt::run(self, user, request).await,
            Operation::Revoke => ops::revoke::run(self, user, request).await,
            Operation::Destroy => ops::destroy::run(self, user, request).await,
            Operation::Locate => ops::locate::run(self, user, request).await,
            Operation::GetAttributes => ops::get_attributes::run(self, user, request).await,
            Operation::Activate => ops::activate::run(self, user, request).await,
            Operation::ReKey => ops::rekey::run(self, user, request).await,
            Operation::SetAttribute => ops::set_attribute::run(self, user, request).await,
            Operation::AddAttribute => ops::add_attribute::run(self, user, request).await,
            Operation::ModifyAttribute => ops::modify_attribute::run(self, user, request).await,
            Operation::DeleteAttribute => ops::delete_attribute::run(self, user, request).await,
            Operation::GetAttributeList => ops::get_attribute_list::run(self, user, request).await,
            Operation::Mac | Operation::MacVerify => ops::mac::run(self, user, op, request).await,
            Operation::Hash => ops::hash::run(request),
            Operation::DeriveKey => ops::derive_key::run(self, user, request).await,
            Operation::RngRetrieve => ops::rng::retrieve(request),
            Operation::RngSeed => ops::rng::seed(request),
            Operation::Query => ops::query::run(request),
            Operation::DiscoverVersions => ops::discover_versions::run(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::error::KmsError;
    use crate::kmip::operation::Operation;
    use crate::kmip::testing::{kms, leaf, run};

    #[tokio::test]
    async fn every_implemented_operation_is_dispatched_and_no_other() {
        let kms = kms().await;
        for op in Operation::ALL {
            let result = run(&kms, "alice", json!({"tag": op.name(), "value": []})).await;
            let unknown = matches!(result, Err(KmsError::UnknownOperation(_)));
            assert_eq!(unknown, !op.implemented(), "{}", op.name());
        }
    }

    #[tokio::test]
    async fn a_batch_answers_each_item() {
        let kms = kms().await;
        let batch = json!({"tag": "RequestMessage", "value": [
            {"tag": "RequestHeader", "value": [
                leaf("BatchCount", "Integer", json!(2)),
            ]},
            {"tag": "BatchItem", "value": [
                leaf("Operation", "Enumeration", json!("Query")),
                {"tag": "RequestPayload", "value": []},
            ]},
            {"tag": "BatchItem", "value": [
                leaf("Operation", "Enumeration", json!("Get")),
                {"tag": "RequestPayload", "value": [
                    leaf("UniqueIdentifier", "TextString", json!("missing")),
                ]},
            ]},
        ]});
        let answer = run(&kms, "alice", batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        assert!(answer.contains(r#""value":"Success""#));
        assert!(answer.contains(r#""value":"OperationFailed""#));
    }
}
