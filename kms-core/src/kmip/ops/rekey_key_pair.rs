//! ReKeyKeyPair: a new key pair of the same kind replaces a software one. Each new half is
//! linked to the half it replaces (and the two new halves to each other), takes over its
//! grants, usage and user tags; the old halves are deactivated. All in one transaction.

use crate::asymmetric;
use crate::error::KmsError;
use crate::kmip::build::{structure, text};
use crate::kmip::certs::{add_link, link};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::ops::rekey::replacement_holding;
use crate::kmip::pair::require_kind;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::{ObjectType, State};

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "ReKeyKeyPair")?;
    let id = required(f.text("PrivateKeyUniqueIdentifier")?)?;
    if f.node("Offset")?.is_some() {
        return Err(unsupported(
            "ReKeyKeyPair",
            "Offset (the new pair is active at once)",
        ));
    }
    for set in [
        "CommonAttributes",
        "PrivateKeyAttributes",
        "PublicKeyAttributes",
    ] {
        if f.node(set)?.is_some() {
            return Err(unsupported(
                "ReKeyKeyPair",
                format!("{set} (the new pair takes the old pair's attributes)"),
            ));
        }
    }
    f.finish()?;
    let mut old_private = kms
        .resolve_one(user, id, Operation::ReKeyKeyPair, || {
            KmsError::ItemNotFound(id.to_owned())
        })
        .await?;
    if old_private.object_type != ObjectType::PrivateKey {
        return Err(KmsError::InvalidRequest(format!(
            "ReKeyKeyPair: {} is a {}, not a private key",
            old_private.uid,
            old_private.object_type.name()
        )));
    }
    if old_private.is_resident() {
        return Err(KmsError::InvalidRequest(format!(
            "ReKeyKeyPair: {} lives in the HSM; create a new HSM key pair instead",
            old_private.uid
        )));
    }
    if old_private.state == State::PreActive || old_private.state.is_destroyed() {
        return Err(KmsError::InvalidRequest(format!(
            "ReKeyKeyPair: key {} is in state {}; only Active, Deactivated or Compromised keys can be rotated",
            old_private.uid,
            old_private.state.name()
        )));
    }
    let public_uid = link(&old_private, "PublicKeyLink").ok_or_else(|| {
        KmsError::InvalidRequest(format!(
            "ReKeyKeyPair: {} has no public key in this KMS",
            old_private.uid
        ))
    })?;
    let mut old_public = kms
        .resolve_one(user, &public_uid, Operation::ReKeyKeyPair, || {
            KmsError::ItemNotFound(public_uid.clone())
        })
        .await?;
    let kind = require_kind(&old_private, "ReKeyKeyPair")?;
    let pair = asymmetric::generate(kind)?;
    let private_uid = crate::kmip::creation::fresh_uid();
    let mut new_private =
        replacement_holding(kms, &mut old_private, &pair.private, private_uid.clone())?;
    let mut new_public = replacement_holding(
        kms,
        &mut old_public,
        &pair.public,
        format!("{private_uid}_pk"),
    )?;
    add_link(&mut new_private, "PublicKeyLink", &new_public.uid);
    add_link(&mut new_public, "PrivateKeyLink", &new_private.uid);
    kms.store
        .rekey_all(&[(&old_private, &new_private), (&old_public, &new_public)])
        .await?;
    Ok(Done::new(
        structure(
            "ReKeyKeyPairResponse",
            vec![
                text("PrivateKeyUniqueIdentifier", &new_private.uid),
                text("PublicKeyUniqueIdentifier", &new_public.uid),
            ],
        ),
        format!("{},{}", new_private.uid, new_public.uid),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::kmip::testing::{fails, field, kms, leaf, run};
    use crate::object::State;

    #[tokio::test]
    async fn a_pair_is_replaced_by_a_linked_pair_with_its_grants() {
        let kms = kms().await;
        let created = run(
            &kms,
            "alice",
            json!({"tag": "CreateKeyPair", "value": [{"tag": "CommonAttributes", "value": [
                leaf("CryptographicAlgorithm", "Enumeration", json!("ECDSA")),
                leaf("ActivationDate", "DateTime", json!("2020-01-01T00:00:00Z")),
            ]}]}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let old_sk = field(&created, "PrivateKeyUniqueIdentifier")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let _ = kms.store.grant(&old_sk, "bob", &["sign".to_owned()]).await;
        let rekey = json!({"tag": "ReKeyKeyPair", "value": [
            leaf("PrivateKeyUniqueIdentifier", "TextString", json!(old_sk))]});
        assert!(
            fails(&kms, "bob", rekey.clone())
                .await
                .starts_with("Item_Not_Found")
        );
        let done = run(&kms, "alice", rekey)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let new_sk = field(&done, "PrivateKeyUniqueIdentifier")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let old = kms.store.load(&old_sk).await.ok().flatten();
        let old_pk = kms.store.load(&format!("{old_sk}_pk")).await.ok().flatten();
        let new = kms.store.load(&new_sk).await.ok().flatten();
        assert!(old.is_some_and(|o| {
            o.state == State::Deactivated
                && o.meta
                    .links
                    .iter()
                    .any(|l| l.link_type == "ReplacementObjectLink" && l.uid == new_sk)
        }));
        assert_eq!(old_pk.map(|o| o.state), Some(State::Deactivated));
        assert!(new.is_some_and(|o| {
            o.length_bits == 256
                && o.meta
                    .links
                    .iter()
                    .any(|l| l.link_type == "PublicKeyLink" && l.uid == format!("{new_sk}_pk"))
        }));
        // bob's sign grant moved to the new private key.
        let sign = json!({"tag": "Sign", "value": [
            leaf("UniqueIdentifier", "TextString", json!(new_sk)),
            leaf("Data", "ByteString", json!("00")),
        ]});
        assert!(run(&kms, "bob", sign).await.is_ok());
    }
}
