//! What the apiserver relies on: `Status` is `ok` only after a real Encrypt/Decrypt round trip
//! through the KMS succeeded within the health TTL (one round trip at a time, the others wait
//! for its result); `key_id` is the uid of the key that encrypts now, so it changes when the
//! key is re-keyed; each ciphertext carries the uid that made it in an annotation, so old
//! ciphertexts keep decrypting. Inputs are bounded and every failure is a gRPC status that
//! says what happened.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tonic::Status;

use crate::api::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, KeyManagement,
    StatusResponse, VERSION,
};
use crate::config::KeySelector;
use crate::kms::{Kms, KmsFailure, NONCE_LEN, TAG_LEN};
use crate::metrics::Metrics;

/// The annotation holding the uid of the key that encrypted.
pub const KEY_ANNOTATION: &str = "kms-proxy.io/key-uid";
/// Limits of the KMS v2 API.
pub const MAX_CIPHERTEXT: usize = 1024;
pub const MAX_KEY_ID: usize = 1024;
pub const MAX_ANNOTATIONS: usize = 32 * 1024;
/// Largest plaintext whose ciphertext fits in [`MAX_CIPHERTEXT`].
pub const MAX_PLAINTEXT: usize = MAX_CIPHERTEXT - NONCE_LEN - TAG_LEN;
/// Most re-keys followed from a configured uid to the current key.
const MAX_REPLACEMENTS: usize = 16;

struct Health {
    checked: Option<Instant>,
    /// The current key's uid, or why the last round trip failed.
    result: Result<String, String>,
    /// The last key known to work (Status keeps reporting it while unhealthy).
    last_key: String,
}

pub struct Plugin {
    kms: Kms,
    key: KeySelector,
    ttl: Duration,
    health: Mutex<Health>,
    /// The key a configured uid leads to now.
    resolved: Mutex<Option<String>>,
    metrics: Metrics,
}

fn status_of(failure: &KmsFailure) -> Status {
    match failure {
        KmsFailure::Unavailable(_) => Status::unavailable(failure.to_string()),
        KmsFailure::Unauthenticated(_) => Status::unauthenticated(failure.to_string()),
        KmsFailure::Denied(_) => Status::permission_denied(failure.to_string()),
        KmsFailure::Refused(_) => Status::failed_precondition(failure.to_string()),
    }
}

impl Plugin {
    pub fn new(kms: Kms, key: KeySelector, ttl: Duration, metrics: Metrics) -> Self {
        Self {
            kms,
            key,
            ttl,
            health: Mutex::new(Health {
                checked: None,
                result: Err("no round trip with the KMS yet".into()),
                last_key: String::new(),
            }),
            resolved: Mutex::new(None),
            metrics,
        }
    }

    /// The identifier to encrypt with: the configured tags, or the configured uid followed
    /// to the key that replaced it (looked up again when `refresh`, else remembered). A key
    /// whose attributes the plugin may not read is used as it is: Encrypt then says why.
    async fn current(&self, refresh: bool) -> Result<String, KmsFailure> {
        let KeySelector::Uid(configured) = &self.key else {
            return Ok(self.key.identifier());
        };
        let known = self.resolved.lock().await.clone();
        if let (false, Some(uid)) = (refresh, &known) {
            return Ok(uid.clone());
        }
        let mut uid = known.unwrap_or_else(|| configured.clone());
        for _ in 0..MAX_REPLACEMENTS {
            match self.kms.replacement(&uid).await {
                Ok(Some(next)) => uid = next,
                Ok(None) | Err(KmsFailure::Refused(_) | KmsFailure::Denied(_)) => {
                    *self.resolved.lock().await = Some(uid.clone());
                    return Ok(uid);
                }
                Err(e) => return Err(e),
            }
        }
        Err(KmsFailure::Refused(format!(
            "more than {MAX_REPLACEMENTS} re-keys from {configured}"
        )))
    }

    /// Encrypts with the current key; a key refused (re-keyed since it was looked up) is
    /// looked up again once.
    async fn encrypt_current(&self, plaintext: &[u8]) -> Result<(String, Vec<u8>), KmsFailure> {
        let identifier = self.current(false).await?;
        match self.kms.encrypt(&identifier, plaintext).await {
            Err(KmsFailure::Refused(reason)) if matches!(self.key, KeySelector::Uid(_)) => {
                let again = self.current(true).await?;
                if again == identifier {
                    return Err(KmsFailure::Refused(reason));
                }
                self.kms.encrypt(&again, plaintext).await
            }
            other => other,
        }
    }

    /// Encrypt and decrypt 32 random bytes through the KMS; the uid of the key used.
    async fn round_trip(&self) -> Result<String, String> {
        let mut probe = [0u8; 32];
        aws_lc_rs::rand::fill(&mut probe).map_err(|_| "no randomness available".to_owned())?;
        self.current(true).await.map_err(|e| e.to_string())?;
        let (uid, sealed) = self
            .encrypt_current(&probe)
            .await
            .map_err(|e| e.to_string())?;
        let back = self
            .kms
            .decrypt(&uid, &sealed)
            .await
            .map_err(|e| e.to_string())?;
        if back.as_slice() != probe {
            return Err("the KMS round trip returned other bytes".into());
        }
        if uid.len() > MAX_KEY_ID {
            return Err(format!("the key uid is longer than {MAX_KEY_ID} bytes"));
        }
        Ok(uid)
    }

    /// The cached health, refreshed when older than the TTL, and the last key known.
    async fn health(&self) -> (Result<String, String>, String) {
        let mut health = self.health.lock().await;
        let fresh = health.checked.is_some_and(|at| at.elapsed() < self.ttl);
        if !fresh {
            health.result = self.round_trip().await;
            health.checked = Some(Instant::now());
            if let Ok(uid) = &health.result {
                health.last_key = uid.clone();
            }
            self.metrics.healthy(health.result.is_ok());
        }
        (health.result.clone(), health.last_key.clone())
    }

    /// Records that the key `uid` encrypts now (a re-key seen by Encrypt).
    async fn seen(&self, uid: &str) {
        let mut health = self.health.lock().await;
        if let Ok(current) = &mut health.result {
            if current != uid {
                *current = uid.to_owned();
                health.last_key = uid.to_owned();
            }
        }
    }
}

impl KeyManagement for Plugin {
    async fn status(&self) -> Result<StatusResponse, Status> {
        let started = Instant::now();
        let (healthz, key_id) = match self.health().await {
            (Ok(uid), _) => ("ok".to_owned(), uid),
            // The last key known stays the key_id; the reason is short, one line.
            (Err(reason), last) => (reason.chars().take(200).collect(), last),
        };
        let outcome = if healthz == "ok" { "ok" } else { "unhealthy" };
        self.metrics.call("Status", outcome, started.elapsed());
        Ok(StatusResponse {
            version: VERSION.into(),
            healthz,
            key_id,
        })
    }

    async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse, Status> {
        let started = Instant::now();
        let result = async {
            if request.plaintext.is_empty() || request.plaintext.len() > MAX_PLAINTEXT {
                return Err(Status::invalid_argument(format!(
                    "plaintext of {} bytes: give 1 to {MAX_PLAINTEXT}",
                    request.plaintext.len()
                )));
            }
            let (uid, ciphertext) = self
                .encrypt_current(&request.plaintext)
                .await
                .map_err(|e| status_of(&e))?;
            if uid.len() > MAX_KEY_ID || ciphertext.len() > MAX_CIPHERTEXT {
                return Err(Status::internal("the KMS answer exceeds the KMS v2 limits"));
            }
            self.seen(&uid).await;
            let annotations =
                HashMap::from([(KEY_ANNOTATION.to_owned(), uid.clone().into_bytes())]);
            Ok(EncryptResponse {
                ciphertext,
                key_id: uid,
                annotations,
            })
        }
        .await;
        self.metrics
            .finish("Encrypt", &request.uid, &result, started);
        result
    }

    async fn decrypt(&self, request: DecryptRequest) -> Result<DecryptResponse, Status> {
        let started = Instant::now();
        let result = async {
            let size: usize = request
                .annotations
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum();
            if size > MAX_ANNOTATIONS {
                return Err(Status::invalid_argument(format!(
                    "annotations of {size} bytes: at most {MAX_ANNOTATIONS}"
                )));
            }
            let len = request.ciphertext.len();
            if !(NONCE_LEN + TAG_LEN + 1..=MAX_CIPHERTEXT).contains(&len) {
                return Err(Status::invalid_argument(format!(
                    "ciphertext of {len} bytes is not one this plugin made"
                )));
            }
            if request.key_id.len() > MAX_KEY_ID {
                return Err(Status::invalid_argument("key_id longer than 1 KiB"));
            }
            // The key that encrypted: the annotation, else the key_id the apiserver kept.
            let uid = match request.annotations.get(KEY_ANNOTATION) {
                Some(bytes) => String::from_utf8(bytes.clone()).map_err(|_| {
                    Status::invalid_argument(format!("annotation {KEY_ANNOTATION} is not UTF-8"))
                })?,
                None => request.key_id.clone(),
            };
            if uid.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "no key: neither the {KEY_ANNOTATION} annotation nor key_id is set"
                )));
            }
            let plaintext =
                self.kms
                    .decrypt(&uid, &request.ciphertext)
                    .await
                    .map_err(|e| match e {
                        // Data that does not authenticate under that key is bad input.
                        KmsFailure::Refused(reason) => Status::invalid_argument(format!(
                            "the ciphertext does not decrypt with key {uid}: {reason}"
                        )),
                        other => status_of(&other),
                    })?;
            Ok(DecryptResponse {
                plaintext: plaintext.to_vec(),
            })
        }
        .await;
        self.metrics
            .finish("Decrypt", &request.uid, &result, started);
        result
    }
}
