//! The keys of one identity provider: static PEM keys plus a JWKS document fetched with
//! reqwest (directly, or at the URL its OIDC discovery document names). Fetched at start,
//! refreshed periodically, refetched when a token names an unknown `kid` (single-flight, at
//! most once per [`MIN_REFETCH`]); a failed fetch keeps the keys already held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use prometheus::{IntCounterVec, IntGaugeVec};

use super::keys::{self, KeySet, VerifyingKey};
use crate::config::jwt::{JwtProvider, KeySource, check_fetch_url};

/// The least time between two fetches of one provider's keys triggered by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// The largest JWKS or discovery document accepted.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// What a fetch did, as the `result` label of `kms_proxy_jwks_fetches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchResult {
    Success,
    Failure,
    RateLimited,
}

impl FetchResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::RateLimited => "rate_limited",
        }
    }
}

pub struct ProviderKeys {
    pub issuer: String,
    source: KeySource,
    allowed: Vec<Algorithm>,
    static_keys: Vec<Arc<VerifyingKey>>,
    current: ArcSwap<KeySet>,
    loaded: AtomicBool,
    client: Option<reqwest::Client>,
    /// When the last fetch started; held across a fetch so that fetches never overlap.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: IntCounterVec,
    last_success: IntGaugeVec,
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("issuer", &self.issuer)
            .field("source", &self.source)
            .field("keys", &self.current.load().keys.len())
            .finish()
    }
}

fn http_client(provider: &JwtProvider) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kms-proxy/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &provider.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in the file", ca.display()));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| e.to_string())
}

/// GETs a JSON document of at most [`MAX_DOCUMENT`] bytes.
async fn get_document(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut response = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", crate::forward::error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT as u64)
    {
        return Err(format!(
            "GET {url}: document larger than {MAX_DOCUMENT} bytes"
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", crate::forward::error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!(
                "GET {url}: document larger than {MAX_DOCUMENT} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl ProviderKeys {
    /// Loads the static keys and builds the HTTP client; fetches nothing yet.
    pub fn new(
        provider: &JwtProvider,
        (fetches, last_success): (IntCounterVec, IntGaugeVec),
    ) -> Result<Self, String> {
        let static_keys = provider
            .public_key_files
            .iter()
            .map(|file| keys::from_pem_file(file, &provider.algorithms).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let client = match provider.keys {
            KeySource::Static => None,
            _ => Some(http_client(provider)?),
        };
        let loaded = client.is_none();
        fetches.with_label_values(&[&provider.issuer, "success"]);
        fetches.with_label_values(&[&provider.issuer, "failure"]);
        Ok(Self {
            issuer: provider.issuer.clone(),
            source: provider.keys.clone(),
            allowed: provider.algorithms.clone(),
            current: ArcSwap::from_pointee(KeySet {
                keys: static_keys.clone(),
            }),
            static_keys,
            loaded: AtomicBool::new(loaded),
            client,
            last_fetch: tokio::sync::Mutex::new(None),
            fetches,
            last_success,
        })
    }

    /// True once the provider has keys to check tokens with.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn fetches_remotely(&self) -> bool {
        self.client.is_some()
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    async fn jwks_url(&self, client: &reqwest::Client) -> Result<String, String> {
        match &self.source {
            KeySource::Jwks(url) => Ok(url.clone()),
            KeySource::Discovery(url) => {
                let body = get_document(client, url).await?;
                let doc: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("discovery document is not JSON: {e}"))?;
                if doc.get("issuer").and_then(serde_json::Value::as_str)
                    != Some(self.issuer.as_str())
                {
                    return Err(format!(
                        "discovery document at {url} names another issuer than {}",
                        self.issuer
                    ));
                }
                let jwks = doc
                    .get("jwks_uri")
                    .and_then(serde_json::Value::as_str)
                    .ok_or("discovery document has no jwks_uri")?;
                check_fetch_url("jwks_uri", jwks).map_err(|e| e.to_string())?;
                Ok(jwks.to_owned())
            }
            KeySource::Static => Err("no JWKS for this provider".into()),
        }
    }

    /// One fetch, whatever the time since the last; returns true when the key set changed.
    async fn fetch_now(&self) -> Result<bool, String> {
        let Some(client) = &self.client else {
            return Ok(false);
        };
        let url = self.jwks_url(client).await?;
        let body = get_document(client, &url).await?;
        let mut set = keys::from_jwks(&body, &self.allowed, &self.issuer)?;
        set.keys.extend(self.static_keys.iter().cloned());
        let old = self.current.load();
        let changed = old.keys.len() != set.keys.len()
            || set.keys.iter().any(|k| !old.contains(&k.fingerprint));
        let count = set.keys.len();
        self.current.store(Arc::new(set));
        if !self.loaded.swap(true, Ordering::AcqRel) || changed {
            tracing::info!(issuer = %self.issuer, keys = count, "JWKS loaded");
        }
        Ok(changed)
    }

    /// Fetches (holding the single-flight lock) and counts the outcome. `min_gap` rate-limits.
    pub async fn fetch(&self, min_gap: Option<Duration>) -> (FetchResult, bool) {
        let mut last = self.last_fetch.lock().await;
        if let (Some(gap), Some(at)) = (min_gap, *last)
            && at.elapsed() < gap
        {
            self.count(FetchResult::RateLimited);
            return (FetchResult::RateLimited, false);
        }
        *last = Some(Instant::now());
        let outcome = self.fetch_now().await;
        drop(last);
        match outcome {
            Ok(changed) => {
                self.count(FetchResult::Success);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.last_success
                    .with_label_values(&[&self.issuer])
                    .set(i64::try_from(now).unwrap_or(i64::MAX));
                (FetchResult::Success, changed)
            }
            Err(error) => {
                self.count(FetchResult::Failure);
                tracing::warn!(issuer = %self.issuer, %error, "JWKS fetch failed; keeping the keys already held");
                (FetchResult::Failure, false)
            }
        }
    }

    /// A token named `kid`, which no key has: refetch unless another request just did.
    /// Returns true when this call fetched and the key set changed (the caller then purges
    /// its cache); the caller looks the key up again in any case.
    pub async fn refetch_for(&self, kid: &str) -> bool {
        if self.client.is_none() {
            return false;
        }
        // Requests waiting here while another fetches find the new key without fetching.
        let before = self.current.load_full();
        let guard = self.last_fetch.lock().await;
        let after = self.current.load_full();
        drop(guard);
        if !Arc::ptr_eq(&before, &after) || after.has_kid(kid) {
            return false;
        }
        let (_, changed) = self.fetch(Some(MIN_REFETCH)).await;
        changed
    }

    fn count(&self, result: FetchResult) {
        self.fetches
            .with_label_values(&[&self.issuer, result.as_str()])
            .inc();
    }
}
