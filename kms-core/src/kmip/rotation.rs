//! Automatic rotation: keys with a rotation policy (`RotateInterval`, set by SetAttribute as
//! `ckms sym keys set-rotation-policy` does) are re-keyed when due, by a task that looks every
//! `--rotation-check-interval`. The replacement takes the name, grants and policy; each
//! rotation is audited. Several cores sharing a database rotate each key once.

use std::time::Duration;

use crate::error::KmsError;
use crate::kmip::kms::Kms;
use crate::kmip::ops::rekey::replacement;
use crate::object::now;

/// Keys rotated per pass at most (the rest wait for the next pass).
const PER_PASS: i64 = 100;

impl Kms {
    /// Rotates every key due now; the uids of the replacements.
    pub async fn rotate_due(&self) -> Result<Vec<String>, KmsError> {
        let mut rotated = Vec::new();
        for (uid, due) in self.store.due_for_rotation(now(), PER_PASS).await? {
            let Some(mut old) = self.store.load(&uid).await? else {
                continue;
            };
            if old.state.is_destroyed()
                || old.is_resident()
                || old.object_type != crate::object::ObjectType::SymmetricKey
            {
                continue;
            }
            let new = replacement(self, &mut old)?;
            if self.store.rekey_if_due(&old, &new, due).await? {
                tracing::info!(target: "audit", user = %old.owner, operation = "ReKey", uid = %new.uid, replaced = %old.uid, reason = "rotation policy", outcome = "success", "kmip");
                rotated.push(new.uid);
            }
        }
        Ok(rotated)
    }
}

/// Runs [`Kms::rotate_due`] every `every` until the task is dropped.
pub async fn run(kms: &Kms, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = kms.rotate_due().await {
            tracing::warn!(error = %e, "automatic key rotation failed; retrying at the next check");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, create, field, kms, leaf, run};

    #[tokio::test]
    async fn a_due_key_is_rotated_once_and_its_policy_moves_on() {
        let kms = kms().await;
        let uid = create(&kms, "alice", vec![]).await;
        let _ = kms.store.grant(&uid, "bob", &["encrypt".to_owned()]).await;
        let policy = by_uid(
            "SetAttribute",
            &uid,
            vec![json!({"tag": "NewAttribute", "value": [
                leaf("RotateInterval", "LongInteger", json!(3600)),
            ]})],
        );
        assert!(run(&kms, "alice", policy).await.is_ok());
        assert!(
            kms.rotate_due().await.unwrap_or_default().is_empty(),
            "not due yet"
        );
        // Make it due.
        let mut o = kms
            .store
            .load(&uid)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("key"));
        o.rotate_at = Some(1);
        let _ = kms.store.update(&o).await;
        let rotated = kms.rotate_due().await.unwrap_or_default();
        assert_eq!(rotated.len(), 1);
        assert!(
            kms.rotate_due().await.unwrap_or_default().is_empty(),
            "rotated once"
        );
        let new = kms.store.load(&rotated[0]).await.ok().flatten();
        assert!(
            new.as_ref()
                .is_some_and(|n| n.rotate_at.is_some() && n.meta.rotate_interval == Some(3600))
        );
        let granted = kms
            .store
            .granted(&rotated[0], "bob")
            .await
            .unwrap_or_default();
        assert!(granted.contains("encrypt"));
        let old = run(&kms, "alice", by_uid("GetAttributes", &uid, vec![])).await;
        let old = old.unwrap_or_else(|e| panic!("{e}"));
        let attributes = field(&old, "Attributes")
            .cloned()
            .unwrap_or_default()
            .to_string();
        assert!(attributes.contains("Deactivated") && attributes.contains(&rotated[0]));
    }
}
