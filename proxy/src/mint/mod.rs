//! Identity tokens for the upstream (`upstream_identity = "jwt"`): a JWT per user, signed by
//! this proxy, cached and reused for three quarters of its lifetime; the public keys published
//! as a JWKS with a minimal OpenID discovery document.
//!
//! Keys rotate without downtime. A generated key is replaced every `upstream_jwt_key_rotation`
//! by a key that was already published for a whole period (so upstreams that cache the JWKS
//! know it before its first token); a key file is reloaded when it changes. A replaced key
//! stays published for the token lifetime plus a leeway, so no token in flight is orphaned.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::HeaderValue;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::UpstreamJwt;
use crate::identity::{AuthMethod, Identity};

mod keys;

pub use keys::KeyError;
use keys::{SigningKey, key_error, read_key_file};

/// How long a replaced key stays published beyond the token lifetime (clock skew, caches).
const LEEWAY: Duration = Duration::from_secs(60);
/// Users whose tokens are kept; past it, expired entries go, then a tenth of the others.
const MAX_CACHED: usize = 10_000;

/// The keys in use: the active one signs; the next one and the retired ones (until their
/// tokens have expired) are published too.
#[derive(Clone)]
struct KeySet {
    active: Arc<SigningKey>,
    next: Option<Arc<SigningKey>>,
    /// When a new key file's key takes over (it is published from the moment it is read).
    next_signs_at: Option<Instant>,
    retired: Vec<(Arc<SigningKey>, Instant)>,
    /// Bumped at each rotation: cached tokens of older generations are re-minted.
    generation: u64,
    /// The key file's state when it was read (None for generated keys).
    file_stamp: Option<FileStamp>,
}

type FileStamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

struct Cached {
    value: HeaderValue,
    generation: u64,
    refresh_at: Instant,
}

/// Mints and caches the upstream identity tokens; serves the public keys.
pub struct Minter {
    config: UpstreamJwt,
    keys: ArcSwap<KeySet>,
    /// By user, then by authentication method (one slot each).
    cache: RwLock<HashMap<String, [Option<Cached>; 4]>>,
    jwks_path: String,
    discovery_path: String,
}

impl Minter {
    pub fn new(config: &UpstreamJwt) -> Result<Self, KeyError> {
        let (active, next, file_stamp) = match &config.key_file {
            Some(path) => {
                let key = read_key_file(path)?;
                if let Some(wanted) = config.algorithm
                    && wanted != key.algorithm
                {
                    return Err(key_error(
                        path,
                        format!(
                            "holds a {} key but upstream_jwt_algorithm is {}",
                            key.algorithm.as_str(),
                            wanted.as_str()
                        ),
                    ));
                }
                (key, None, Some(stamp(path)))
            }
            None => {
                let algorithm = config.algorithm.unwrap_or_default();
                let generate = |_| {
                    SigningKey::generate(algorithm)
                        .map_err(|e| key_error(Path::new("(generated)"), e))
                };
                (generate(0)?, Some(Arc::new(generate(1)?)), None)
            }
        };
        Ok(Self {
            jwks_path: format!("{}/.well-known/jwks.json", config.issuer_path),
            discovery_path: format!("{}/.well-known/openid-configuration", config.issuer_path),
            config: config.clone(),
            keys: ArcSwap::from_pointee(KeySet {
                active: Arc::new(active),
                next,
                next_signs_at: None,
                retired: Vec::new(),
                generation: 0,
                file_stamp,
            }),
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// `Bearer <token>` for this identity: a cached token while it has a quarter of its
    /// lifetime left and its key is still the active one, else a new one.
    pub fn authorization(&self, identity: &Identity) -> Result<HeaderValue, String> {
        let keys = self.keys.load();
        let slot = match identity.method {
            AuthMethod::None => 0,
            AuthMethod::Mtls => 1,
            AuthMethod::Jwt => 2,
            AuthMethod::ApiToken => 3,
        };
        let now = Instant::now();
        if let Ok(cache) = self.cache.read()
            && let Some(Some(c)) = cache.get(identity.user.as_str()).map(|s| &s[slot])
            && c.generation == keys.generation
            && now < c.refresh_at
        {
            return Ok(c.value.clone());
        }
        let token = self.mint(&keys.active, identity)?;
        let value = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|e| format!("token not header-safe: {e}"))?;
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= MAX_CACHED && !cache.contains_key(identity.user.as_str()) {
                cache.retain(|_, slots| slots.iter().flatten().any(|c| now < c.refresh_at));
                // Still full of live tokens: drop a tenth (in the map's arbitrary order), so
                // that a burst of new users costs a few re-mints, not a flush of all.
                if cache.len() >= MAX_CACHED {
                    let doomed: Vec<String> = cache.keys().take(MAX_CACHED / 10).cloned().collect();
                    for user in doomed {
                        cache.remove(&user);
                    }
                }
            }
            cache.entry(identity.user.clone()).or_default()[slot] = Some(Cached {
                value: value.clone(),
                generation: keys.generation,
                refresh_at: now + self.config.lifetime * 3 / 4,
            });
        }
        Ok(value)
    }

    fn mint(&self, key: &SigningKey, identity: &Identity) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|e| format!("no randomness: {e}"))?;
        let header = json!({"alg": key.algorithm.as_str(), "typ": "JWT", "kid": key.kid});
        let claims = json!({
            "iss": self.config.issuer,
            "sub": identity.user,
            "email": identity.user,
            "aud": self.config.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.config.lifetime.as_secs(),
            "jti": B64.encode(jti),
            "auth_method": identity.method.as_str(),
        });
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = key.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", B64.encode(signature)))
    }

    /// The document served at `path` (JWKS or discovery), if it is one of the two.
    pub fn document(&self, path: &str) -> Option<Bytes> {
        if path == self.jwks_path {
            Some(Bytes::from(self.jwks().to_string()))
        } else if path == self.discovery_path {
            let keys = self.keys.load();
            Some(Bytes::from(
                json!({
                    "issuer": self.config.issuer,
                    "jwks_uri": format!("{}/.well-known/jwks.json", self.config.issuer),
                    "id_token_signing_alg_values_supported": [keys.active.algorithm.as_str()],
                    "subject_types_supported": ["public"],
                    "response_types_supported": ["id_token"],
                    "claims_supported": ["iss", "sub", "email", "aud", "iat", "nbf", "exp", "jti", "auth_method"],
                })
                .to_string(),
            ))
        } else {
            None
        }
    }

    /// The published public keys: active, next, and retired ones still in their grace time.
    pub fn jwks(&self) -> Value {
        let keys = self.keys.load();
        let now = Instant::now();
        let mut list = vec![keys.active.jwk.clone()];
        list.extend(keys.next.iter().map(|k| k.jwk.clone()));
        list.extend(
            keys.retired
                .iter()
                .filter(|(_, until)| now < *until)
                .map(|(k, _)| k.jwk.clone()),
        );
        json!({ "keys": list })
    }

    /// Makes `set.next` the active key (a new `next` given), keeping the old one published.
    fn rotate(&self, mut set: KeySet, next: Option<Arc<SigningKey>>) {
        let Some(new) = set.next.take() else { return };
        let now = Instant::now();
        set.retired.retain(|(_, until)| now < *until);
        set.retired
            .push((set.active.clone(), now + self.config.lifetime + LEEWAY));
        tracing::info!(
            old_kid = %set.active.kid,
            new_kid = %new.kid,
            "upstream identity signing key rotated"
        );
        set.active = new;
        set.next = next;
        set.next_signs_at = None;
        set.generation += 1;
        self.keys.store(Arc::new(set));
    }

    /// Rotates a generated key every period; reloads a key file when it changes (checked every
    /// `poll`): its key is published at once and signs `publish_ahead` later. A broken new
    /// file is logged and the current key kept.
    pub async fn keep_fresh(self: Arc<Self>, poll: Duration, mut shutdown: watch::Receiver<bool>) {
        let period = match &self.config.key_file {
            Some(_) => poll.min(Duration::from_secs(1)),
            None => self.config.key_rotation,
        };
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_poll = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {}
            }
            match &self.config.key_file {
                Some(path) => {
                    if last_poll.elapsed() >= poll {
                        last_poll = Instant::now();
                        self.reload_file(path);
                    }
                    let set = self.keys.load_full();
                    if set.next_signs_at.is_some_and(|at| Instant::now() >= at) {
                        self.rotate(KeySet::clone(&set), None);
                    }
                }
                None => self.rotate_generated().await,
            }
        }
    }

    fn reload_file(&self, path: &Path) {
        let now = stamp(path);
        let mut set = KeySet::clone(&self.keys.load());
        if set.file_stamp.as_ref() == Some(&now) {
            return;
        }
        set.file_stamp = Some(now);
        match read_key_file(path) {
            // Back to the active key: forget a pending one.
            Ok(key) if key.kid == set.active.kid => {
                set.next = None;
                set.next_signs_at = None;
            }
            Ok(key) if set.next.as_ref().is_some_and(|n| n.kid == key.kid) => {}
            Ok(key) => {
                let ahead = self.config.publish_ahead;
                tracing::info!(
                    kid = %key.kid,
                    signs_in_seconds = ahead.as_secs_f64(),
                    "new upstream identity key published"
                );
                set.next = Some(Arc::new(key));
                set.next_signs_at = Some(Instant::now() + ahead);
            }
            Err(e) => {
                // Not retried until the file changes again.
                tracing::error!(error = %e, "upstream identity key reload failed; keeping the current key");
            }
        }
        self.keys.store(Arc::new(set));
    }

    async fn rotate_generated(&self) {
        let algorithm = self.config.algorithm.unwrap_or_default();
        let made = tokio::task::spawn_blocking(move || SigningKey::generate(algorithm)).await;
        let next = match made {
            Ok(Ok(k)) => Arc::new(k),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot make the next upstream identity key; keeping the current one");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "key generation task failed");
                return;
            }
        };
        let mut set = KeySet::clone(&self.keys.load());
        if set.next.is_none() {
            set.next = Some(next.clone());
        }
        self.rotate(set, Some(next));
    }
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("issuer", &self.config.issuer)
            .field("kid", &self.keys.load().active.kid)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MintAlgorithm;

    fn config(algorithm: MintAlgorithm) -> UpstreamJwt {
        UpstreamJwt {
            issuer: "https://proxy.test:9998".into(),
            issuer_path: String::new(),
            audience: "kms".into(),
            lifetime: Duration::from_secs(60),
            algorithm: Some(algorithm),
            key_file: None,
            key_rotation: Duration::from_secs(3600),
            publish_ahead: Duration::from_secs(60),
            jwks_address: None,
        }
    }

    #[test]
    fn tokens_verify_with_the_published_key() {
        for algorithm in [
            MintAlgorithm::Es256,
            MintAlgorithm::Rs256,
            MintAlgorithm::EdDsa,
        ] {
            let minter = Minter::new(&config(algorithm)).unwrap_or_else(|e| panic!("{e}"));
            let alice = Identity::new("alice", AuthMethod::Mtls);
            let header = minter
                .authorization(&alice)
                .unwrap_or_else(|e| panic!("{e}"));
            let token = header
                .to_str()
                .unwrap_or_default()
                .trim_start_matches("Bearer ")
                .to_owned();
            // Cached: the same token again; another user gets another token.
            assert_eq!(minter.authorization(&alice).ok(), Some(header.clone()));
            let bob = Identity::new("bob", AuthMethod::Jwt);
            assert_ne!(minter.authorization(&bob).ok(), Some(header));
            // jsonwebtoken (another implementation) verifies it with the JWKS.
            let jwks: jsonwebtoken::jwk::JwkSet =
                serde_json::from_value(minter.jwks()).unwrap_or_else(|e| panic!("{e}"));
            let kid = jsonwebtoken::decode_header(&token)
                .ok()
                .and_then(|h| h.kid)
                .unwrap_or_default();
            let jwk = jwks.find(&kid).unwrap_or_else(|| panic!("kid {kid}"));
            let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap_or_else(|e| panic!("{e}"));
            let alg = match algorithm {
                MintAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
                MintAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
                MintAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            };
            let mut validation = jsonwebtoken::Validation::new(alg);
            validation.set_audience(&["kms"]);
            validation.set_issuer(&["https://proxy.test:9998"]);
            let data = jsonwebtoken::decode::<Value>(&token, &key, &validation)
                .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
            assert_eq!(data.claims["sub"], "alice");
            assert_eq!(data.claims["auth_method"], "mtls");
            // Two keys published (active and next); the discovery document names the JWKS.
            assert_eq!(jwks.keys.len(), 2);
            let discovery: Value = serde_json::from_slice(
                &minter
                    .document("/.well-known/openid-configuration")
                    .unwrap_or_default(),
            )
            .unwrap_or_default();
            assert_eq!(
                discovery["jwks_uri"],
                "https://proxy.test:9998/.well-known/jwks.json"
            );
            assert!(minter.document("/other").is_none());
            assert!(!minter.jwks().to_string().contains("\"d\""));
        }
    }
}
