//! Activate: a PreActive key becomes Active now.

use crate::error::KmsError;
use crate::kmip::build::{structure, text};
use crate::kmip::fields::Fields;
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::{State, now};

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "Activate")?;
    let id = required(f.text("UniqueIdentifier")?)?;
    f.finish()?;
    let mut o = kms
        .resolve_one(user, id, Operation::Activate, || {
            KmsError::ItemNotFound(id.to_owned())
        })
        .await?;
    if o.state != State::PreActive {
        return Err(KmsError::WrongState(format!(
            "Activate: Object {} is already in {} state",
            o.uid,
            o.state.name()
        )));
    }
    o.state = State::Active;
    o.activation_date = Some(now());
    o.last_change = now();
    kms.store.update(&o).await?;
    Ok(Done::new(
        structure("ActivateResponse", vec![text("UniqueIdentifier", &o.uid)]),
        o.uid,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, fails, kms, leaf, run, uid};

    #[tokio::test]
    async fn activates_a_pre_active_key_once() {
        let kms = kms().await;
        let create = json!({"tag": "Create", "value": [
            leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        ]});
        let key = uid(&run(&kms, "alice", create)
            .await
            .unwrap_or_else(|e| panic!("{e}")));
        let state = kms
            .store
            .load(&key)
            .await
            .ok()
            .flatten()
            .map(|o| o.state.name());
        assert_eq!(state, Some("PreActive"));
        assert!(
            run(&kms, "alice", by_uid("Activate", &key, vec![]))
                .await
                .is_ok()
        );
        assert!(
            fails(&kms, "alice", by_uid("Activate", &key, vec![]))
                .await
                .contains("already in Active")
        );
    }
}
