//! API tokens: the token is the base64 of a symmetric key held by the upstream KMS. The proxy
//! fetches that key as the default user and accepts it only when the key is owned by the
//! default user (`/access/list/<uid>` answers only its owner) and is Active (GetAttributes
//! State); it keeps only the SHA-256 of the lower-cased base64 form, compares presented tokens
//! (lower-cased: the reference CLI writes them so) in constant time, and re-fetches the key
//! periodically so that a revoked, destroyed or replaced key stops the token.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::Method;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::forward::Forwarder;
use crate::identity::{AuthMethod, Identity};

pub struct ApiTokenVerifier {
    uid: String,
    digest: ArcSwapOption<[u8; 32]>,
    /// Set once an unusable key was reported, cleared when a key loads (one warning per episode).
    reported: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ApiTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTokenVerifier")
            .field("uid", &self.uid)
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

/// SHA-256 of the token with ASCII letters lower-cased. Base64 lower-cased keeps over 200 bits
/// of a 256-bit key (each of the 44 characters loses at most one bit), so comparing
/// case-insensitively, as the reference server does, costs no practical strength.
fn digest(token: &[u8]) -> [u8; 32] {
    let lower = Zeroizing::new(token.to_ascii_lowercase());
    Sha256::digest(&lower[..]).into()
}

fn find<'a>(node: &'a serde_json::Value, tag: &str) -> Option<&'a serde_json::Value> {
    if node["tag"] == tag {
        return Some(node);
    }
    node["value"].as_array()?.iter().find_map(|c| find(c, tag))
}

/// The key bytes of a KMIP `GetResponse` (Raw or TransparentSymmetricKey form).
fn key_material(response: &serde_json::Value) -> Option<Zeroizing<Vec<u8>>> {
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
        .collect::<Option<Vec<u8>>>()
        .map(Zeroizing::new)
}

/// Why the token key cannot be used.
#[derive(Debug)]
enum Unusable {
    /// The upstream answered and refused or disqualified the key: the token is turned off.
    Refused(String),
    /// The upstream could not be asked: the current key is kept.
    Unreachable(String),
}

impl ApiTokenVerifier {
    pub fn new(uid: String) -> Self {
        Self {
            uid,
            digest: ArcSwapOption::empty(),
            reported: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.digest.load().is_some()
    }

    /// Constant-time check of a presented token against the current key (either case).
    pub fn verify(&self, token: &str) -> bool {
        match self.digest.load().as_deref() {
            Some(expected) => digest(token.as_bytes()).ct_eq(expected).into(),
            None => false,
        }
    }

    async fn call(
        &self,
        forwarder: &Forwarder,
        identity: &Identity,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Unusable> {
        let body = body.map_or_else(bytes::Bytes::new, |b| b.to_string().into());
        match forwarder.call_as(identity, method, path, body).await {
            Ok((status, body)) if status.is_success() => serde_json::from_slice(&body)
                .map_err(|_| Unusable::Refused(format!("{path}: the answer is not JSON"))),
            Ok((status, body)) => Err(Unusable::Refused(format!(
                "{path}: {} {}",
                status.as_u16(),
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))),
            Err(e) => Err(Unusable::Unreachable(e.to_string())),
        }
    }

    /// The key's base64 form, once it is known to be owned by the default user and Active.
    async fn fetch(
        &self,
        forwarder: &Forwarder,
        identity: &Identity,
    ) -> Result<Zeroizing<String>, Unusable> {
        // Only the owner may list a key's grants: a key someone else created under this uid
        // (after the real one was removed) is refused here.
        self.call(
            forwarder,
            identity,
            Method::GET,
            &format!("/access/list/{}", self.uid),
            None,
        )
        .await
        .map_err(|e| match e {
            Unusable::Refused(why) => {
                Unusable::Refused(format!("not owned by the default user ({why})"))
            }
            other => other,
        })?;
        let uid =
            serde_json::json!({"tag": "UniqueIdentifier", "type": "TextString", "value": self.uid});
        let attributes = self
            .call(
                forwarder,
                identity,
                Method::POST,
                "/kmip/2_1",
                Some(serde_json::json!({"tag": "GetAttributes", "value": [uid,
                    {"tag": "AttributeReference", "type": "Enumeration", "value": "State"}]})),
            )
            .await?;
        let state = find(&attributes, "State").and_then(|s| s["value"].as_str());
        if state != Some("Active") {
            return Err(Unusable::Refused(format!(
                "the key is {}, not Active",
                state.unwrap_or("in an unknown state")
            )));
        }
        let got = self
            .call(
                forwarder,
                identity,
                Method::POST,
                "/kmip/2_1",
                Some(serde_json::json!({"tag": "Get", "value": [uid]})),
            )
            .await?;
        let key = key_material(&got).ok_or_else(|| {
            Unusable::Refused("the upstream's answer holds no key material".into())
        })?;
        Ok(Zeroizing::new(B64.encode(&key[..])))
    }

    /// Fetches the key from the upstream. A refusal (revoked, destroyed, unknown, owned by
    /// someone else) disables the token; an unreachable upstream keeps the current one.
    pub async fn refresh(&self, forwarder: &Forwarder, identity: &Identity) {
        match self.fetch(forwarder, identity).await {
            Ok(token) => {
                let fresh = digest(token.as_bytes());
                let changed = self.digest.load().as_deref() != Some(&fresh);
                self.digest.store(Some(Arc::new(fresh)));
                self.reported
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                if changed {
                    tracing::info!(uid = %self.uid, "API token key loaded");
                }
            }
            Err(Unusable::Refused(reason)) => {
                let was_loaded = self.digest.swap(None).is_some();
                if was_loaded
                    || !self
                        .reported
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(uid = %self.uid, %reason, "API token key unusable: API tokens are refused");
                } else {
                    tracing::debug!(uid = %self.uid, %reason, "API token key still unusable");
                }
            }
            Err(Unusable::Unreachable(error)) => {
                tracing::warn!(uid = %self.uid, %error, "cannot refresh the API token key; keeping the current one")
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
        assert_eq!(key_material(&raw).as_deref(), Some(&vec![0, 255, 16]));
        let transparent = serde_json::json!({"tag":"KeyMaterial","value":[{"tag":"Key","type":"ByteString","value":"0a0b"}]});
        assert_eq!(key_material(&transparent).as_deref(), Some(&vec![10, 11]));
        let v = ApiTokenVerifier::new("k".into());
        assert!(!v.verify("AP8Q"));
        v.digest.store(Some(Arc::new(digest(
            B64.encode([0u8, 255, 16]).as_bytes(),
        ))));
        assert!(v.verify("AP8Q"));
        assert!(v.verify("ap8q"), "tokens compare case-insensitively");
        assert!(!v.verify("AP8R"));
        assert!(!format!("{v:?}").contains("AP8Q"));
    }
}
