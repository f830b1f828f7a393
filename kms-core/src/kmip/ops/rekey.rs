//! ReKey: a new key of the same kind replaces an Active, Deactivated or Compromised one; the
//! two are linked, the old one is deactivated, user tags move to the new one.

use std::collections::BTreeSet;

use crate::error::KmsError;
use crate::kmip::build::{structure, text};
use crate::kmip::creation::NewKey;
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::{Link, ManagedObject, ObjectType, State, now};

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "ReKey")?;
    let id = required(f.text("UniqueIdentifier")?)?;
    if f.node("Offset")?.is_some() {
        return Err(unsupported(
            "ReKey",
            "Offset (the new key is active at once)",
        ));
    }
    if f.node("Attributes")?.is_some() {
        return Err(unsupported(
            "ReKey",
            "Attributes (the new key takes the old key's attributes)",
        ));
    }
    f.finish()?;
    let mut old = kms
        .resolve_one(user, id, Operation::ReKey, || {
            KmsError::ItemNotFound(id.to_owned())
        })
        .await?;
    if old.is_resident() {
        return Err(KmsError::InvalidRequest(format!(
            "ReKey: {} lives in the HSM; create a new HSM key instead",
            old.uid
        )));
    }
    if old.object_type != ObjectType::SymmetricKey {
        return Err(unsupported(
            "ReKey",
            format!(
                "re-keying a {} (only symmetric keys)",
                old.object_type.name()
            ),
        ));
    }
    if old.state == State::PreActive || old.state.is_destroyed() {
        return Err(KmsError::InvalidRequest(format!(
            "ReKey: key {} is in state {}; only Active, Deactivated or Compromised keys can be rotated",
            old.uid,
            old.state.name()
        )));
    }
    let new = replacement(kms, &mut old)?;
    kms.store.rekey(&old, &new).await?;
    Ok(Done::new(
        structure("ReKeyResponse", vec![text("UniqueIdentifier", &new.uid)]),
        new.uid,
    ))
}

/// The key that replaces `old` (same owner, kind, usage and user tags; linked both ways;
/// the name and rotation policy move to it), with `old` deactivated. The caller stores both.
pub fn replacement(kms: &Kms, old: &mut ManagedObject) -> Result<ManagedObject, KmsError> {
    let key = crate::crypto::random(usize::try_from(old.length_bits / 8).unwrap_or(32))?;
    replacement_holding(kms, old, &key, crate::kmip::creation::fresh_uid())
}

/// [`replacement`] with the given material and uid (a key pair's halves).
pub fn replacement_holding(
    kms: &Kms,
    old: &mut ManagedObject,
    key: &[u8],
    uid: String,
) -> Result<ManagedObject, KmsError> {
    let user_tags: BTreeSet<String> = old
        .tags
        .iter()
        .filter(|t| !t.starts_with('_'))
        .cloned()
        .collect();
    let new_key = NewKey {
        object_type: old.object_type,
        algorithm: old.algorithm,
        data_type: old.meta.data_type.clone(),
        owner: old.owner.clone(),
        uid,
        length_bits: old.length_bits,
        usage_mask: old.usage_mask,
        activation: Some(now()),
        tags: user_tags,
        sensitive: old.meta.sensitive,
    };
    let mut new = kms.new_key(new_key, key)?;
    new.length_bits = old.length_bits;
    new.meta.links = vec![Link {
        link_type: "ReplacedObjectLink".into(),
        uid: old.uid.clone(),
    }];
    new.meta.rotate_generation = Some(old.meta.rotate_generation.unwrap_or(0) + 1);
    new.meta.wrapped_by = old.meta.wrapped_by.clone();
    // The name and the rotation policy move to the replacement, which is now the current key.
    new.meta.names = std::mem::take(&mut old.meta.names);
    new.meta.rotate_interval = old.meta.rotate_interval.take();
    old.meta.rotate_offset = None;
    old.rotate_at = None;
    crate::kmip::mutable::schedule(&mut new);
    if old.state == State::Active {
        old.state = State::Deactivated;
        old.deactivation_date = Some(now());
    }
    old.meta
        .links
        .retain(|l| l.link_type != "ReplacementObjectLink");
    old.meta.links.push(Link {
        link_type: "ReplacementObjectLink".into(),
        uid: new.uid.clone(),
    });
    old.meta.rotate_generation.get_or_insert(0);
    old.last_change = now();
    Ok(new)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, create, fails, kms, leaf, run, uid};
    use crate::object::State;

    #[tokio::test]
    async fn rekey_links_both_keys_and_carries_the_grants() {
        let kms = kms().await;
        let old = create(&kms, "alice", vec![]).await;
        let _ = kms.store.grant(&old, "bob", &["encrypt".to_owned()]).await;
        assert!(
            fails(&kms, "bob", by_uid("ReKey", &old, vec![]))
                .await
                .starts_with("Item_Not_Found")
        );
        let new = uid(&run(&kms, "alice", by_uid("ReKey", &old, vec![]))
            .await
            .unwrap_or_else(|e| panic!("{e}")));
        let before = kms.store.load(&old).await.ok().flatten();
        assert_eq!(before.as_ref().map(|o| o.state), Some(State::Deactivated));
        assert!(before.is_some_and(|o| o.meta.links.iter().any(|l| l.uid == new)));
        let granted = kms.store.granted(&new, "bob").await.unwrap_or_default();
        assert!(granted.contains("encrypt"));
    }

    #[tokio::test]
    async fn after_a_rekey_its_tags_encrypt_with_the_new_key_and_still_name_both() {
        let kms = kms().await;
        let tag = leaf(
            "Attribute",
            "Structure",
            json!([
                {"tag": "VendorIdentification", "type": "TextString", "value": "cosmian"},
                {"tag": "AttributeName", "type": "TextString", "value": "tag"},
                {"tag": "AttributeValue", "type": "TextString", "value": "[\"kek\"]"},
            ]),
        );
        let old = create(&kms, "alice", vec![tag]).await;
        let new = uid(&run(&kms, "alice", by_uid("ReKey", &old, vec![]))
            .await
            .unwrap_or_else(|e| panic!("{e}")));
        let encrypt = by_uid(
            "Encrypt",
            "[\"kek\"]",
            vec![leaf("Data", "ByteString", json!("00112233"))],
        );
        let sealed = run(&kms, "alice", encrypt.clone()).await;
        assert_eq!(sealed.map(|r| uid(&r)).ok(), Some(new.clone()));
        // Only Encrypt (and MAC) pick the one key that can: Decrypt by the tag stays ambiguous.
        let decrypt = by_uid(
            "Decrypt",
            "[\"kek\"]",
            vec![leaf("Data", "ByteString", json!("00112233"))],
        );
        assert!(
            fails(&kms, "alice", decrypt)
                .await
                .contains("resolves to 2")
        );
        // Two keys that can both encrypt stay ambiguous.
        let _ = run(&kms, "alice", by_uid("Activate", &old, vec![])).await;
        create(
            &kms,
            "alice",
            vec![leaf(
                "Attribute",
                "Structure",
                json!([
                    {"tag": "VendorIdentification", "type": "TextString", "value": "cosmian"},
                    {"tag": "AttributeName", "type": "TextString", "value": "tag"},
                    {"tag": "AttributeValue", "type": "TextString", "value": "[\"kek\"]"},
                ]),
            )],
        )
        .await;
        assert!(fails(&kms, "alice", encrypt).await.contains("resolves to"));
    }
}
