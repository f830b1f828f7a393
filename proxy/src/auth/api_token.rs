//! API tokens: the token is the base64 of a symmetric key held by the upstream KMS. The proxy
//! fetches that key with a KMIP Get as the default user, keeps only the SHA-256 of its base64
//! form, compares presented tokens in constant time, and re-fetches it periodically so that a
//! revoked or destroyed key stops working.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::forward::Forwarder;
use crate::identity::{AuthMethod, Identity};

pub struct ApiTokenVerifier {
    uid: String,
    digest: ArcSwapOption<[u8; 32]>,
}

impl std::fmt::Debug for ApiTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTokenVerifier")
            .field("uid", &self.uid)
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

fn digest(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

/// The key bytes of a KMIP `GetResponse` (Raw or TransparentSymmetricKey form).
fn key_material(response: &serde_json::Value) -> Option<Vec<u8>> {
    fn find<'a>(node: &'a serde_json::Value, tag: &str) -> Option<&'a serde_json::Value> {
        if node["tag"] == tag {
            return Some(node);
        }
        node["value"].as_array()?.iter().find_map(|c| find(c, tag))
    }
    let material = find(response, "KeyMaterial")?;
    let hex = match material["value"].as_str() {
        Some(hex) => hex,
        None => find(material, "Key")?["value"].as_str()?,
    };
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

impl ApiTokenVerifier {
    pub fn new(uid: String) -> Self {
        Self {
            uid,
            digest: ArcSwapOption::empty(),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.digest.load().is_some()
    }

    /// Constant-time check of a presented token against the current key.
    pub fn verify(&self, token: &str) -> bool {
        match self.digest.load().as_deref() {
            Some(expected) => digest(token.as_bytes()).ct_eq(expected).into(),
            None => false,
        }
    }

    /// Fetches the key from the upstream. A refusal (revoked, destroyed, unknown) disables the
    /// token; an unreachable upstream keeps the current one.
    pub async fn refresh(&self, forwarder: &Forwarder, identity: &Identity) {
        let request = serde_json::json!({"tag": "Get", "value": [
            {"tag": "UniqueIdentifier", "type": "TextString", "value": self.uid},
        ]});
        match forwarder
            .call_as(identity, "/kmip/2_1", request.to_string().into())
            .await
        {
            Ok((status, body)) if status.is_success() => {
                let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
                match parsed.as_ref().and_then(key_material) {
                    Some(key) => {
                        let token = zeroize::Zeroizing::new(B64.encode(&key));
                        let fresh = digest(token.as_bytes());
                        let changed = self.digest.load().as_deref() != Some(&fresh);
                        self.digest.store(Some(Arc::new(fresh)));
                        if changed {
                            tracing::info!(uid = %self.uid, "API token key loaded");
                        }
                    }
                    None => {
                        tracing::error!(uid = %self.uid, "API token key: the upstream's answer holds no key material")
                    }
                }
            }
            Ok((status, body)) => {
                if self.digest.swap(None).is_some() || status.is_client_error() {
                    tracing::warn!(
                        uid = %self.uid,
                        status = status.as_u16(),
                        reason = %String::from_utf8_lossy(&body[..body.len().min(200)]),
                        "API token key unavailable (revoked, destroyed or unknown): API tokens are refused"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(uid = %self.uid, error = %e, "cannot refresh the API token key; keeping the current one")
            }
        }
    }
}

/// Loads the key at start and re-fetches it every `interval` until shutdown.
pub async fn keep_fresh(
    verifier: Arc<ApiTokenVerifier>,
    forwarder: Arc<Forwarder>,
    identity: Identity,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {
                // Retry quickly until the first load succeeds (the upstream may start later).
                verifier.refresh(&forwarder, &identity).await;
                if !verifier.is_loaded() {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500).min(interval)) => {}
                    }
                    ticker.reset_immediately();
                }
            }
        }
    }
}

/// The identity the proxy uses for its own upstream calls.
pub fn service_identity(default_username: &str) -> Identity {
    Identity::new(default_username, AuthMethod::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_key_forms_and_compares_digests() {
        let raw = serde_json::json!({"tag":"GetResponse","value":[{"tag":"SymmetricKey","value":[{"tag":"KeyBlock","value":[
            {"tag":"KeyValue","value":[{"tag":"KeyMaterial","type":"ByteString","value":"00FF10"}]}]}]}]});
        assert_eq!(key_material(&raw), Some(vec![0, 255, 16]));
        let transparent = serde_json::json!({"tag":"KeyMaterial","value":[{"tag":"Key","type":"ByteString","value":"0a0b"}]});
        assert_eq!(key_material(&transparent), Some(vec![10, 11]));
        let v = ApiTokenVerifier::new("k".into());
        assert!(!v.verify("AP8Q"));
        v.digest.store(Some(Arc::new(digest(
            B64.encode([0u8, 255, 16]).as_bytes(),
        ))));
        assert!(v.verify("AP8Q"));
        assert!(!v.verify("AP8R"));
        assert!(!format!("{v:?}").contains("AP8Q"));
    }
}
