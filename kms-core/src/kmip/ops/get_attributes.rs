//! GetAttributes: all of an object's attributes, or those named by `AttributeReference`
//! (those the object has; `Tag` names the reference's vendor tag attribute). Any grantee of
//! the object may read them.

use crate::error::KmsError;
use crate::kmip::attributes::{self, tag_attribute};
use crate::kmip::build::{structure, text};
use crate::kmip::fields::Fields;
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::{Enumeration, Ttlv, Value};

pub struct Request<'a> {
    pub id: &'a str,
    pub references: Vec<&'a str>,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "GetAttributes")?;
        let id = required(f.text("UniqueIdentifier")?)?;
        let mut references = Vec::new();
        for r in f.all("AttributeReference") {
            match &r.value {
                Value::Enumeration(Enumeration::Name(n)) | Value::TextString(n) => {
                    references.push(n.as_str());
                }
                _ => {
                    return Err(KmsError::InvalidRequest(
                        "GetAttributes.AttributeReference must name an attribute".into(),
                    ));
                }
            }
        }
        f.finish()?;
        Ok(Self { id, references })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let Request { id, references } = Request::parse(node)?;
    let o = kms
        .resolve_one(user, id, Operation::GetAttributes, || {
            KmsError::ObjectNotFound(id.to_owned())
        })
        .await?;
    let all = attributes::of(&o);
    let selected = if references.is_empty() {
        all
    } else {
        let mut chosen: Vec<Ttlv> = all
            .into_iter()
            .filter(|a| references.contains(&a.tag.as_str()))
            .collect();
        if references.contains(&"Tag") {
            chosen.push(tag_attribute(&o.tags));
        }
        chosen
    };
    Ok(Done::new(
        structure(
            "GetAttributesResponse",
            vec![
                text("UniqueIdentifier", &o.uid),
                structure("Attributes", selected),
            ],
        ),
        o.uid,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, create, fails, field, kms, leaf, run};

    #[tokio::test]
    async fn any_grantee_reads_the_selected_attributes() {
        let kms = kms().await;
        let uid = create(&kms, "alice", vec![]).await;
        let request = by_uid(
            "GetAttributes",
            &uid,
            vec![
                leaf(
                    "AttributeReference",
                    "Enumeration",
                    json!("CryptographicLength"),
                ),
                leaf("AttributeReference", "Enumeration", json!("Tag")),
            ],
        );
        assert!(
            fails(&kms, "bob", request.clone())
                .await
                .starts_with("Object_Not_Found")
        );
        let _ = kms.store.grant(&uid, "bob", &["decrypt".to_owned()]).await;
        let got = run(&kms, "bob", request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let attributes = field(&got, "Attributes").cloned().unwrap_or_default();
        let tags: Vec<&str> = attributes
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["tag"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(tags, vec!["CryptographicLength", "Attribute"]);
    }
}
