//! Revoke: Active or PreActive keys become Deactivated (Compromised for a compromise reason);
//! by tags, every key the caller may revoke.

use crate::error::KmsError;
use crate::kmip::build::{structure, text};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::{State, now};

pub struct Request<'a> {
    pub id: &'a str,
    pub code: Option<&'a str>,
    pub message: Option<&'a str>,
    /// Also revoke the other half of a key pair.
    pub cascade: bool,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "Revoke")?;
        let id = required(f.text("UniqueIdentifier")?)?;
        let (mut code, mut message) = (None, None);
        if let Some(mut reason) = f.structure("RevocationReason")? {
            code = reason.enumeration("RevocationReasonCode")?;
            message = reason.text("RevocationMessage")?;
            reason.finish()?;
        }
        let cascade = f.boolean("Cascade")?.unwrap_or(false);
        if f.date("CompromiseOccurrenceDate")?.is_some() {
            return Err(unsupported("Revoke", "CompromiseOccurrenceDate"));
        }
        f.finish()?;
        Ok(Self {
            id,
            code,
            message,
            cascade,
        })
    }
}

fn is_compromise(reason: Option<&str>) -> bool {
    matches!(reason, Some("KeyCompromise" | "CACompromise"))
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let Request {
        id,
        code,
        message,
        cascade,
    } = Request::parse(node)?;
    let mut objects = kms.resolve(user, id, Operation::Revoke).await?;
    if objects.is_empty() {
        return Err(KmsError::ItemNotFound(id.to_owned()));
    }
    if cascade {
        objects = kms
            .with_pair_halves(user, objects, Operation::Revoke)
            .await?;
    }
    let compromise = is_compromise(code);
    let mut uids = Vec::new();
    for mut o in objects {
        let next = match o.state {
            State::Active | State::PreActive if compromise => State::Compromised,
            State::Active | State::PreActive => State::Deactivated,
            State::Deactivated if compromise => State::Compromised,
            State::Deactivated => continue,
            State::Compromised => return Err(KmsError::ItemNotFound(id.to_owned())),
            State::Destroyed | State::DestroyedCompromised => continue,
        };
        o.state = next;
        o.deactivation_date = Some(now());
        o.last_change = now();
        o.meta.revocation_reason = code.map(str::to_owned);
        o.meta.revocation_message = message.map(str::to_owned);
        kms.store.update(&o).await?;
        uids.push(o.uid);
    }
    Ok(Done::new(
        structure("RevokeResponse", vec![text("UniqueIdentifier", id)]),
        uids.join(","),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, create, fails, kms, leaf, run};
    use crate::object::State;

    fn revoke(uid: &str, code: &str) -> serde_json::Value {
        by_uid(
            "Revoke",
            uid,
            vec![json!({"tag": "RevocationReason", "value": [
            leaf("RevocationReasonCode", "Enumeration", json!(code))]})],
        )
    }

    #[tokio::test]
    async fn revocation_moves_the_state() {
        let kms = kms().await;
        let uid = create(&kms, "alice", vec![]).await;
        assert!(
            fails(&kms, "bob", revoke(&uid, "Unspecified"))
                .await
                .starts_with("Item_Not_Found")
        );
        assert!(
            run(&kms, "alice", revoke(&uid, "Unspecified"))
                .await
                .is_ok()
        );
        let state = |o: Option<crate::object::ManagedObject>| o.map(|o| o.state);
        assert_eq!(
            state(kms.store.load(&uid).await.ok().flatten()),
            Some(State::Deactivated)
        );
        assert!(
            run(&kms, "alice", revoke(&uid, "KeyCompromise"))
                .await
                .is_ok()
        );
        assert_eq!(
            state(kms.store.load(&uid).await.ok().flatten()),
            Some(State::Compromised)
        );
        let dated = by_uid(
            "Revoke",
            &uid,
            vec![leaf(
                "CompromiseOccurrenceDate",
                "DateTime",
                json!("2024-01-01T00:00:00Z"),
            )],
        );
        assert!(
            fails(&kms, "alice", dated)
                .await
                .contains("CompromiseOccurrenceDate")
        );
    }
}
