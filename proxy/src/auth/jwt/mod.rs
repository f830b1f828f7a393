//! JWT bearer tokens from OpenID providers. The provider is chosen by the token's `iss`
//! (exact match); the signature is checked with the provider's key named by `kid`, under an
//! algorithm the key allows (the token's `alg` must agree; `none` and HMAC never pass); then
//! `exp` (required), `nbf`, `iat` with the leeways, `aud` when configured, and the user claim.
//! Every failure is a short, bounded reason; the token itself is never logged.

pub mod cache;
pub mod jwks;
pub mod keys;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::Algorithm;
use prometheus::{IntCounterVec, IntGaugeVec};
use serde_json::{Map, Value};
use tokio::sync::watch;

use self::cache::TokenCache;
use self::jwks::ProviderKeys;
use crate::config::jwt::{JwtConfig, JwtProvider};
use crate::identity::{AuthMethod, Identity};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest user name or mapped claim value forwarded upstream.
const MAX_VALUE_BYTES: usize = 1024;

/// Why a token was refused: a short, fixed text (also the metrics `reason` label).
pub type Reason = &'static str;

struct Provider {
    config: JwtProvider,
    keys: ProviderKeys,
}

pub struct JwtVerifier {
    providers: Vec<Provider>,
    /// Names equal to it are refused ([`crate::identity::check_user_name`]).
    default_user: String,
    cache: TokenCache,
    refresh_interval: Duration,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field(
                "providers",
                &self.providers.iter().map(|p| &p.keys).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn decode_json(part: &str) -> Result<Map<String, Value>, Reason> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "malformed token")?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err("malformed token"),
    }
}

/// A NumericDate claim as whole seconds; Err when present but not a number.
fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n.floor() as u64)),
            _ => Err("malformed time claim"),
        },
    }
}

/// The algorithm named by the header, refusing `none` and HMAC whatever the configuration.
fn header_algorithm(header: &Map<String, Value>) -> Result<Algorithm, Reason> {
    let name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("malformed token")?;
    if name.eq_ignore_ascii_case("none") {
        return Err("alg none refused");
    }
    if name.to_ascii_uppercase().starts_with("HS") {
        return Err("HMAC algorithms refused");
    }
    name.parse::<Algorithm>()
        .map_err(|_| "unsupported algorithm")
}

/// A claim as a header value: strings as they are, numbers and booleans stringified, lists
/// joined with commas. None for objects and null (no header is set).
fn claim_value(value: &Value) -> Option<Result<HeaderValue, Reason>> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?
            .join(","),
        Value::Object(_) | Value::Null => return None,
    };
    if text.len() > MAX_VALUE_BYTES {
        return Some(Err("claim value too long"));
    }
    Some(HeaderValue::from_str(&text).map_err(|_| "claim not header-safe"))
}

/// True when the token says its `email` is not verified (`email_verified` false, as a
/// boolean or the string some providers send).
fn email_unverified(claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(verified)) => !verified,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    }
}

/// A token taken apart before any key is involved.
pub struct Unverified<'a> {
    pub header: Map<String, Value>,
    /// The header's `alg`, never `none` or HMAC.
    pub alg: Algorithm,
    pub claims: Map<String, Value>,
    /// `header.payload`, what the signature covers.
    pub message: &'a str,
    /// The third part, base64url.
    pub signature: &'a str,
}

/// Splits and decodes a compact JWS: size, three parts, JSON header and claims, an algorithm
/// that is neither `none` nor HMAC, no `crit`. The fuzzer's entry point into token parsing.
pub fn parse_unverified(token: &str) -> Result<Unverified<'_>, Reason> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err("token too large");
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed token");
    };
    let header = decode_json(h)?;
    let alg = header_algorithm(&header)?;
    if header.contains_key("crit") {
        return Err("unknown critical header");
    }
    let claims = decode_json(p)?;
    Ok(Unverified {
        header,
        alg,
        claims,
        message: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

impl Provider {
    /// The time, audience and user checks, after the signature: the identity and `exp`.
    fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: u64,
        default_user: &str,
    ) -> Result<(Identity, u64), Reason> {
        let c = &self.config;
        let skew = c.clock_skew_leeway;
        let mut exp = numeric(claims, "exp")?.ok_or("missing exp")?;
        let iat = numeric(claims, "iat")?;
        if let Some(max) = c.max_token_lifetime {
            // A token is good for at most `max` seconds after it was issued, whatever its exp.
            let issued = iat.ok_or("missing iat")?;
            exp = exp.min(issued.saturating_add(max));
        }
        if now > exp.saturating_add(c.expiration_leeway + skew) {
            return Err("token expired");
        }
        if let Some(nbf) = numeric(claims, "nbf")?
            && now.saturating_add(c.not_before_leeway + skew) < nbf
        {
            return Err("token not yet valid");
        }
        if let Some(iat) = iat
            && iat > now.saturating_add(skew)
        {
            return Err("token issued in the future");
        }
        if !c.audiences.is_empty() {
            let matches = |a: &str| c.audiences.iter().any(|want| want == a);
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => matches(a),
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(matches),
                _ => false,
            };
            if !ok {
                return Err("wrong audience");
            }
        }
        // The first configured claim that is a non-empty string names the user; it is used
        // as it is (never trimmed): a name that is not canonical is refused, not repaired.
        let (claim, user) = c
            .user_claim
            .iter()
            .find_map(|name| {
                claims
                    .get(name)
                    .and_then(Value::as_str)
                    .filter(|u| !u.is_empty())
                    .map(|u| (name.as_str(), u))
            })
            .ok_or("no user claim")?;
        if claim == "email" && email_unverified(claims) {
            return Err("email not verified");
        }
        // The claim itself must be canonical (a prefix must not hide a leading space), then
        // the whole name must pass the one rule; checked once, before the token is cached.
        crate::identity::check_canonical(user)?;
        let user = format!("{}{user}", c.user_prefix);
        crate::identity::check_user_name(&user, default_user)?;
        let mut mapped = Vec::new();
        for (claim, header) in &c.claim_headers {
            if let Some(value) = claims.get(claim).and_then(claim_value) {
                mapped.push((header.clone(), value?));
            }
        }
        let identity = Identity {
            user,
            method: AuthMethod::Jwt,
            claims: mapped,
        };
        Ok((identity, exp))
    }
}

impl JwtVerifier {
    pub fn new(
        config: &JwtConfig,
        default_user: &str,
        metrics: (IntCounterVec, IntGaugeVec),
    ) -> Result<Self, String> {
        let providers = config
            .providers
            .iter()
            .map(|p| {
                Ok(Provider {
                    keys: ProviderKeys::new(p, metrics.clone())
                        .map_err(|e| format!("identity provider {}: {e}", p.issuer))?,
                    config: p.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        for p in &providers {
            let keys = match &p.config.keys {
                crate::config::jwt::KeySource::Static => "static key files".to_owned(),
                crate::config::jwt::KeySource::Jwks(url) => format!("JWKS {url}"),
                crate::config::jwt::KeySource::Discovery(url) => format!("discovery {url}"),
            };
            tracing::info!(
                issuer = %p.config.issuer,
                keys = %keys,
                audiences = %p.config.audiences.join(","),
                user_claim = %p.config.user_claim.join(","),
                "JWT identity provider configured"
            );
        }
        Ok(Self {
            providers,
            default_user: default_user.to_owned(),
            cache: TokenCache::new(config.cache_size),
            refresh_interval: config.refresh_interval,
        })
    }

    /// Issuers whose keys are not loaded yet (for `/readyz`).
    pub fn not_ready(&self) -> Vec<&str> {
        self.providers
            .iter()
            .filter(|p| !p.keys.is_loaded())
            .map(|p| p.config.issuer.as_str())
            .collect()
    }

    /// The identity a token proves, or why it proves none.
    pub async fn verify(&self, token: &str) -> Result<Identity, Reason> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("token too large");
        }
        let now = now();
        let digest = cache::digest(token);
        if let Some(identity) = self.cache.get(&digest, now) {
            return Ok(identity);
        }
        let Unverified {
            header,
            alg,
            claims,
            message,
            signature,
        } = parse_unverified(token)?;
        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or("missing iss")?;
        let (index, provider) = self
            .providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.config.issuer == issuer)
            .ok_or("unknown issuer")?;
        if !provider.config.algorithms.contains(&alg) {
            return Err("algorithm not allowed");
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err("malformed token"),
        };
        let mut keys = provider.keys.keys();
        if let Some(kid) = kid
            && !keys.has_kid(kid)
        {
            if provider.keys.refetch_for(kid).await {
                self.purge(index);
            }
            keys = provider.keys.keys();
        }
        let mut candidates = keys
            .candidates(kid)
            .filter(|k| k.algorithms.contains(&alg))
            .peekable();
        if candidates.peek().is_none() {
            return Err("unknown signing key");
        }
        let key = candidates
            .find(|k| {
                jsonwebtoken::crypto::verify(signature, message.as_bytes(), &k.key, alg) == Ok(true)
            })
            .ok_or("bad signature")?;
        let (identity, exp) = provider.check_claims(&claims, now, &self.default_user)?;
        self.cache
            .insert(digest, identity.clone(), exp, index, key.fingerprint, now);
        Ok(identity)
    }

    fn purge(&self, index: usize) {
        if let Some(provider) = self.providers.get(index) {
            let keys = provider.keys.keys();
            self.cache.retain_keys(index, |fp| keys.contains(fp));
        }
    }

    /// Fetches each provider's keys at start (retrying until it has some), then refreshes them
    /// every `refresh_interval`, until shutdown.
    pub async fn keep_fresh(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let tasks: Vec<_> = (0..self.providers.len())
            .filter(|&i| self.providers[i].keys.fetches_remotely())
            .map(|i| {
                let verifier = self.clone();
                let mut shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let mut backoff = Duration::from_millis(500);
                    loop {
                        let provider = &verifier.providers[i];
                        let (_, changed) = provider.keys.fetch(None).await;
                        if changed {
                            verifier.purge(i);
                        }
                        let wait = if provider.keys.is_loaded() {
                            verifier.refresh_interval
                        } else {
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            backoff
                        };
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap_or_default()
    }

    #[test]
    fn none_and_hmac_never_pass() {
        assert_eq!(
            header_algorithm(&header(r#"{"alg":"none"}"#)),
            Err("alg none refused")
        );
        assert_eq!(
            header_algorithm(&header(r#"{"alg":"NoNe"}"#)),
            Err("alg none refused")
        );
        assert_eq!(
            header_algorithm(&header(r#"{"alg":"HS256"}"#)),
            Err("HMAC algorithms refused")
        );
        assert_eq!(
            header_algorithm(&header(r#"{"alg":"RS256"}"#)),
            Ok(Algorithm::RS256)
        );
        assert_eq!(
            header_algorithm(&header(r#"{"alg":"XX1"}"#)),
            Err("unsupported algorithm")
        );
    }

    #[test]
    fn claims_become_header_values() {
        let v = serde_json::json!(["ops", "kms", 3]);
        assert_eq!(
            claim_value(&v).and_then(Result::ok),
            Some(HeaderValue::from_static("ops,kms,3"))
        );
        assert!(claim_value(&serde_json::json!({"a": 1})).is_none());
        assert_eq!(
            claim_value(&serde_json::json!("a\nb")).map(|r| r.is_err()),
            Some(true)
        );
    }
}
