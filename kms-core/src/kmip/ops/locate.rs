//! Locate: the uids of the objects the caller owns or holds a grant on that match every
//! filter given (object type, state, algorithm, length, key format, tags), oldest first,
//! filtered in SQL. Destroyed objects only when their state is asked for.

use crate::error::KmsError;
use crate::kmip::attributes::{self, Purpose};
use crate::kmip::build::{count, structure, text};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::ttlv::Ttlv;
use crate::object::{Algorithm, ObjectType, now};
use crate::store::LocateFilter;

pub struct Request {
    pub filter: LocateFilter,
    pub maximum: Option<usize>,
    pub offset: usize,
}

impl Request {
    pub fn parse(node: &Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "Locate")?;
        let non_negative = |n: i32, what: &str| {
            usize::try_from(n)
                .map_err(|_| KmsError::InvalidRequest(format!("Locate: {what} must be >= 0")))
        };
        let maximum = f
            .int("MaximumItems")?
            .map(|n| non_negative(n, "MaximumItems"))
            .transpose()?;
        let offset = f
            .int("OffsetItems")?
            .map(|n| non_negative(n, "OffsetItems"))
            .transpose()?
            .unwrap_or(0);
        // Every object this server holds is on-line (bit 1): that filter keeps them all.
        if let Some(mask) = f.int("StorageStatusMask")? {
            if mask & 1 == 0 {
                return Err(unsupported(
                    "Locate",
                    format!("StorageStatusMask {mask} (objects are only on-line here)"),
                ));
            }
        }
        let a = attributes::parse(f.node("Attributes")?, "Locate", Purpose::Filter)?;
        f.finish()?;
        let mut filter = LocateFilter {
            object_type: a.object_type,
            state: a.state,
            length: a.length,
            tags: a.tags.unwrap_or_default(),
            ..LocateFilter::default()
        };
        if let Some(alg) = a.algorithm {
            // A valid algorithm no key here has matches nothing.
            match Algorithm::parse(alg) {
                Some(alg) => filter.algorithm = Some(alg),
                None => filter.impossible = true,
            }
        }
        if let Some(format) = a.key_format {
            // Symmetric keys are returned Raw or TransparentSymmetricKey, as asked; no object
            // here has another format.
            filter.format_of = match format {
                "Raw" => vec![ObjectType::SymmetricKey, ObjectType::SecretData],
                "TransparentSymmetricKey" => vec![ObjectType::SymmetricKey],
                "Opaque" => vec![ObjectType::OpaqueObject],
                _ => {
                    filter.impossible = true;
                    Vec::new()
                }
            };
        }
        filter.name = a.names.into_iter().next().map(|n| n.value);
        if a.wrapping_key_id.is_some() {
            return Err(unsupported(
                "Locate",
                "the vendor attribute cosmian:wrapping_key_id as a filter",
            ));
        }
        if let Some(uid) = a.uid {
            filter.uid = Some(uid.to_owned());
        }
        Ok(Self {
            filter,
            maximum,
            offset,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let Request {
        filter,
        maximum,
        offset,
    } = Request::parse(node)?;
    let t = now();
    let hits: Vec<String> = kms
        .store
        .locate(user, &filter)
        .await?
        .into_iter()
        .filter_map(|mut row| {
            // The stored state may lag the dates (PreActive -> Active -> Deactivated).
            row.settle(t);
            let keep = match filter.state {
                Some(s) => row.state == s,
                None => !row.state.is_destroyed(),
            };
            keep.then_some(row.uid)
        })
        .skip(offset)
        .take(maximum.unwrap_or(usize::MAX))
        .collect();
    let mut children = vec![count("LocatedItems", hits.len())];
    children.extend(hits.iter().map(|u| text("UniqueIdentifier", u)));
    Ok(Done::new(structure("LocateResponse", children), ""))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::kmip::testing::{create, fails, kms, leaf, run};

    async fn locate(kms: &crate::kmip::kms::Kms, user: &str, filters: Vec<Value>) -> Vec<String> {
        let request = json!({"tag": "Locate", "value": [{"tag": "Attributes", "value": filters}]});
        let response = run(kms, user, request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        response["value"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|c| c["tag"] == "UniqueIdentifier")
                    .filter_map(|c| c["value"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn filters_by_length_algorithm_type_and_owner() {
        let kms = kms().await;
        let small = create(
            &kms,
            "alice",
            vec![leaf("CryptographicLength", "Integer", json!(128))],
        )
        .await;
        let large = create(&kms, "alice", vec![]).await;
        let theirs = create(&kms, "bob", vec![]).await;
        let length = |n: i32| leaf("CryptographicLength", "Integer", json!(n));
        assert_eq!(
            locate(&kms, "alice", vec![length(128)]).await,
            vec![small.clone()]
        );
        assert_eq!(
            locate(&kms, "alice", vec![length(256)]).await,
            vec![large.clone()]
        );
        assert_eq!(locate(&kms, "alice", vec![]).await.len(), 2);
        assert_eq!(locate(&kms, "bob", vec![]).await, vec![theirs]);
        let secret = leaf("ObjectType", "Enumeration", json!("SecretData"));
        assert!(locate(&kms, "alice", vec![secret]).await.is_empty());
        let pkcs8 = leaf("KeyFormatType", "Enumeration", json!("PKCS8"));
        assert!(locate(&kms, "alice", vec![pkcs8]).await.is_empty());
        let _ = kms
            .store
            .grant(&small, "bob", &["encrypt".to_owned()])
            .await;
        assert_eq!(locate(&kms, "bob", vec![length(128)]).await, vec![small]);
        let mask =
            json!({"tag": "Locate", "value": [leaf("StorageStatusMask", "Integer", json!(2))]});
        assert!(
            fails(&kms, "alice", mask)
                .await
                .contains("StorageStatusMask")
        );
        let wrapped_by = json!({"tag": "Attribute", "value": [
            leaf("VendorIdentification", "TextString", json!("cosmian")),
            leaf("AttributeName", "TextString", json!("wrapping_key_id")),
            leaf("AttributeValue", "TextString", json!("k")),
        ]});
        let request =
            json!({"tag": "Locate", "value": [{"tag": "Attributes", "value": [wrapped_by]}]});
        assert!(
            fails(&kms, "alice", request)
                .await
                .contains("wrapping_key_id as a filter")
        );
        let usage = leaf("CryptographicUsageMask", "Integer", json!(4));
        let request = json!({"tag": "Locate", "value": [{"tag": "Attributes", "value": [usage]}]});
        assert!(
            fails(&kms, "alice", request)
                .await
                .contains("CryptographicUsageMask")
        );
    }
}
