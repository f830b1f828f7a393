//! The `[auth]` table: JWT identity providers, from paired lists (`jwt_issuer_uri`,
//! `jwks_uri`, `jwt_audience`, as in the reference KMS) and from richer `[[auth.providers]]`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid, readable_file, seconds};

/// A list of strings that also accepts one comma-separated string (how environment variables
/// such as `KMS_JWT_ISSUER_URI=a,b` arrive) and scalars that figment guessed were numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings or a comma-separated string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StringList, E> {
                Ok(StringList(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StringList, E> {
                Ok(StringList(vec![v.to_string()]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StringList, E> {
                Ok(StringList(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(StringList(out))
            }
        }
        d.deserialize_any(ListVisitor)
    }
}

/// `[auth]` as it arrives from the sources.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub jwt_issuer_uri: StringList,
    pub jwks_uri: StringList,
    pub jwt_audience: StringList,
    pub jwt_discovery: bool,
    pub jwks_ca_cert_file: Option<PathBuf>,
    pub jwks_refresh_interval: f64,
    pub jwt_cache_size: u64,
    pub providers: Vec<RawProvider>,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            jwt_issuer_uri: StringList::default(),
            jwks_uri: StringList::default(),
            jwt_audience: StringList::default(),
            jwt_discovery: false,
            jwks_ca_cert_file: None,
            jwks_refresh_interval: 300.0,
            jwt_cache_size: 10_000,
            providers: Vec::new(),
        }
    }
}

/// One `[[auth.providers]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub discovery: bool,
    #[serde(default)]
    pub audiences: StringList,
    pub user_claim: Option<StringList>,
    pub algorithms: Option<StringList>,
    #[serde(default)]
    pub public_key_files: Vec<PathBuf>,
    #[serde(default)]
    pub expiration_leeway: i64,
    #[serde(default)]
    pub not_before_leeway: i64,
    #[serde(default)]
    pub clock_skew_leeway: i64,
    pub jwks_ca_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub claim_headers: BTreeMap<String, String>,
    /// Prepended to every user name from this provider (e.g. `google:`).
    pub user_prefix: Option<String>,
    /// Longest accepted lifetime (`exp` - `iat`), seconds: later `exp` are capped to it.
    pub max_token_lifetime: Option<u64>,
}

/// Algorithms accepted when a provider names none. HMAC is never accepted.
pub const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Only the static PEM keys.
    Static,
    /// A JWKS document at this URL.
    Jwks(String),
    /// The `jwks_uri` named by `<issuer>/.well-known/openid-configuration`.
    Discovery(String),
}

/// One validated identity provider.
#[derive(Debug, Clone)]
pub struct JwtProvider {
    pub issuer: String,
    pub keys: KeySource,
    pub public_key_files: Vec<PathBuf>,
    pub audiences: Vec<String>,
    pub user_claim: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub expiration_leeway: u64,
    pub not_before_leeway: u64,
    pub clock_skew_leeway: u64,
    pub ca_file: Option<PathBuf>,
    /// Claim name -> header forwarded upstream with its value.
    pub claim_headers: Vec<(String, HeaderName)>,
    /// Prepended to every user name from this provider.
    pub user_prefix: String,
    /// When set, a token is valid at most this long after its `iat` (which it must carry).
    pub max_token_lifetime: Option<u64>,
}

/// JWT authentication as a whole.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub providers: Vec<JwtProvider>,
    pub refresh_interval: Duration,
    pub cache_size: usize,
}

impl JwtConfig {
    /// Every header a claim mapping may set (stripped from inbound requests).
    pub fn mapped_headers(&self) -> Vec<HeaderName> {
        let mut out: Vec<HeaderName> = self
            .providers
            .iter()
            .flat_map(|p| p.claim_headers.iter().map(|(_, h)| h.clone()))
            .collect();
        out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        out.dedup();
        out
    }
}

/// The Consul leeway rule: 0 means the default, -1 disables, a positive value is seconds.
fn leeway(key: &'static str, value: i64, default: u64) -> Result<u64, ConfigError> {
    match value {
        0 => Ok(default),
        -1 => Ok(0),
        v if v > 0 && v <= 86_400 => Ok(v.unsigned_abs()),
        v => Err(invalid(
            key,
            format!("{v}: use 0 for the default, -1 to disable, or 1..86400 seconds"),
        )),
    }
}

/// A JWKS or discovery URL must be https, except on a loopback host (development and tests).
pub fn check_fetch_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    let parsed: http::Uri = url
        .parse()
        .map_err(|e| invalid(key, format!("{url:?} is not a URL: {e}")))?;
    let host = parsed
        .host()
        .ok_or_else(|| invalid(key, format!("{url:?} has no host")))?;
    match parsed.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(invalid(
            key,
            format!("{url:?}: keys must be fetched over https (plain http only on loopback)"),
        )),
        _ => Err(invalid(key, format!("{url:?}: expected an https:// URL"))),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn algorithm(name: &str) -> Result<Algorithm, ConfigError> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| invalid("auth.providers.algorithms", format!("unknown {name:?}")))?;
    if DEFAULT_ALGORITHMS.contains(&alg) {
        Ok(alg)
    } else {
        Err(invalid(
            "auth.providers.algorithms",
            format!("{name}: HMAC (shared-secret) algorithms are never accepted"),
        ))
    }
}

/// Headers a claim mapping may not set besides the proxy's own ([`crate::identity::OWNED`]):
/// those with a meaning of their own.
const RESERVED_HEADERS: [&str; 5] = [
    "host",
    "authorization",
    "content-length",
    "transfer-encoding",
    "connection",
];

fn provider(
    raw: RawProvider,
    shared_ca: &Option<PathBuf>,
    identity_header: &HeaderName,
) -> Result<JwtProvider, ConfigError> {
    let issuer = raw.issuer.trim().to_owned();
    if issuer.is_empty() {
        return Err(invalid(
            "auth.jwt_issuer_uri",
            "an issuer must not be empty",
        ));
    }
    for file in &raw.public_key_files {
        readable_file("auth.providers.public_key_files", file)?;
    }
    let keys = match (raw.jwks_uri, raw.discovery) {
        (Some(_), true) => {
            return Err(invalid(
                "auth.providers.discovery",
                format!("{issuer}: give jwks_uri or discovery, not both"),
            ));
        }
        (Some(uri), false) => {
            check_fetch_url("auth.jwks_uri", &uri)?;
            KeySource::Jwks(uri)
        }
        (None, true) => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            check_fetch_url("auth.jwt_issuer_uri", &url)?;
            KeySource::Discovery(url)
        }
        (None, false) if !raw.public_key_files.is_empty() => KeySource::Static,
        (None, false) => {
            let url = format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'));
            check_fetch_url("auth.jwt_issuer_uri", &url)?;
            KeySource::Jwks(url)
        }
    };
    let algorithms = match raw.algorithms {
        Some(list) if list.0.is_empty() => {
            return Err(invalid("auth.providers.algorithms", "must not be empty"));
        }
        Some(list) => list
            .0
            .iter()
            .map(|a| algorithm(a))
            .collect::<Result<_, _>>()?,
        None => DEFAULT_ALGORITHMS.to_vec(),
    };
    let user_claim = match raw.user_claim {
        Some(list) if list.0.is_empty() => {
            return Err(invalid("auth.providers.user_claim", "must not be empty"));
        }
        Some(list) => list.0,
        None => vec!["email".to_owned(), "sub".to_owned()],
    };
    let ca_file = raw.jwks_ca_cert_file.or_else(|| shared_ca.clone());
    if let Some(ca) = &ca_file {
        readable_file("auth.jwks_ca_cert_file", ca)?;
    }
    let mut claim_headers = Vec::new();
    for (claim, header) in raw.claim_headers {
        let name = HeaderName::try_from(header.as_str()).map_err(|_| {
            invalid(
                "auth.providers.claim_headers",
                format!("{header:?} is not a header name"),
            )
        })?;
        let normalized = name.as_str().replace('_', "-");
        if RESERVED_HEADERS.contains(&normalized.as_str())
            || crate::identity::OWNED.contains(&normalized.as_str())
            || normalized == identity_header.as_str().replace('_', "-")
        {
            return Err(invalid(
                "auth.providers.claim_headers",
                format!("{header} is reserved; pick another name (e.g. X-KMS-Claim-{claim})"),
            ));
        }
        claim_headers.push((claim, name));
    }
    let user_prefix = raw.user_prefix.unwrap_or_default();
    if user_prefix.len() > 64
        || user_prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "auth.providers.user_prefix",
            format!("{user_prefix:?}: at most 64 bytes, no whitespace or control characters"),
        ));
    }
    if raw.max_token_lifetime == Some(0) {
        return Err(invalid(
            "auth.providers.max_token_lifetime",
            "must be at least 1 second (leave it out for no cap)",
        ));
    }
    Ok(JwtProvider {
        user_prefix,
        max_token_lifetime: raw.max_token_lifetime,
        issuer,
        keys,
        public_key_files: raw.public_key_files,
        audiences: raw.audiences.0,
        user_claim,
        algorithms,
        expiration_leeway: leeway(
            "auth.providers.expiration_leeway",
            raw.expiration_leeway,
            150,
        )?,
        not_before_leeway: leeway(
            "auth.providers.not_before_leeway",
            raw.not_before_leeway,
            150,
        )?,
        clock_skew_leeway: leeway(
            "auth.providers.clock_skew_leeway",
            raw.clock_skew_leeway,
            60,
        )?,
        ca_file,
        claim_headers,
    })
}

/// Validates `[auth]`; None when no provider is configured.
pub fn validate(
    raw: RawAuth,
    identity_header: &HeaderName,
) -> Result<Option<JwtConfig>, ConfigError> {
    let issuers = raw.jwt_issuer_uri.0;
    let n = issuers.len();
    if !raw.jwks_uri.0.is_empty() && raw.jwks_uri.0.len() != n {
        return Err(invalid(
            "auth.jwks_uri",
            format!(
                "{} JWKS URI(s) for {n} issuer(s): give one per jwt_issuer_uri, in the same order, or none",
                raw.jwks_uri.0.len()
            ),
        ));
    }
    if !raw.jwt_audience.0.is_empty() && raw.jwt_audience.0.len() != n {
        return Err(invalid(
            "auth.jwt_audience",
            format!(
                "{} audience(s) for {n} issuer(s): give one per jwt_issuer_uri, in the same order, or none",
                raw.jwt_audience.0.len()
            ),
        ));
    }
    if raw.jwt_discovery && !raw.jwks_uri.0.is_empty() {
        return Err(invalid(
            "auth.jwt_discovery",
            "discovery finds the JWKS URI; do not also give jwks_uri",
        ));
    }
    let mut raws: Vec<RawProvider> = issuers
        .into_iter()
        .enumerate()
        .map(|(i, issuer)| RawProvider {
            issuer,
            jwks_uri: raw.jwks_uri.0.get(i).cloned(),
            discovery: raw.jwt_discovery,
            audiences: StringList(raw.jwt_audience.0.get(i).cloned().into_iter().collect()),
            user_claim: None,
            algorithms: None,
            public_key_files: Vec::new(),
            expiration_leeway: 0,
            not_before_leeway: 0,
            clock_skew_leeway: 0,
            jwks_ca_cert_file: None,
            claim_headers: BTreeMap::new(),
            user_prefix: None,
            max_token_lifetime: None,
        })
        .collect();
    raws.extend(raw.providers);
    if raws.is_empty() {
        return Ok(None);
    }
    let providers: Vec<JwtProvider> = raws
        .into_iter()
        .map(|p| provider(p, &raw.jwks_ca_cert_file, identity_header))
        .collect::<Result<_, _>>()?;
    for (i, p) in providers.iter().enumerate() {
        if providers[..i].iter().any(|q| q.issuer == p.issuer) {
            return Err(invalid(
                "auth.jwt_issuer_uri",
                format!("issuer {} is configured twice", p.issuer),
            ));
        }
    }
    if raw.jwt_cache_size > 1_000_000 {
        return Err(invalid("auth.jwt_cache_size", "at most 1000000 entries"));
    }
    Ok(Some(JwtConfig {
        providers,
        refresh_interval: seconds("auth.jwks_refresh_interval", raw.jwks_refresh_interval)?,
        cache_size: usize::try_from(raw.jwt_cache_size).unwrap_or(usize::MAX),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> HeaderName {
        HeaderName::from_static("x-kms-user")
    }

    #[test]
    fn lists_pair_by_order() {
        let raw = RawAuth {
            jwt_issuer_uri: StringList(vec![
                "https://accounts.google.com".into(),
                "https://acme.eu.auth0.com/".into(),
            ]),
            jwt_audience: StringList(vec!["kms".into(), "other".into()]),
            ..RawAuth::default()
        };
        let config = validate(raw, &header()).ok().flatten();
        let providers = config.map(|c| c.providers).unwrap_or_default();
        assert_eq!(providers.len(), 2);
        assert_eq!(
            providers[1].keys,
            KeySource::Jwks("https://acme.eu.auth0.com/.well-known/jwks.json".into())
        );
        assert_eq!(providers[1].issuer, "https://acme.eu.auth0.com/");
        assert_eq!(providers[1].audiences, vec!["other".to_owned()]);
        assert_eq!(providers[0].user_claim, vec!["email", "sub"]);
        assert_eq!(
            (
                providers[0].expiration_leeway,
                providers[0].not_before_leeway,
                providers[0].clock_skew_leeway
            ),
            (150, 150, 60)
        );
    }

    #[test]
    fn refuses_what_is_unsafe() {
        let plain = RawAuth {
            jwt_issuer_uri: StringList(vec!["http://idp.example.com".into()]),
            ..RawAuth::default()
        };
        assert!(validate(plain, &header()).is_err());
        let loopback = RawAuth {
            jwt_issuer_uri: StringList(vec!["http://127.0.0.1:8080".into()]),
            ..RawAuth::default()
        };
        assert!(validate(loopback, &header()).is_ok());
        assert!(algorithm("HS256").is_err());
        assert!(algorithm("none").is_err());
        let unpaired = RawAuth {
            jwt_issuer_uri: StringList(vec!["https://a".into(), "https://b".into()]),
            jwks_uri: StringList(vec!["https://a/keys".into()]),
            ..RawAuth::default()
        };
        assert!(validate(unpaired, &header()).is_err());
        assert_eq!(leeway("k", -1, 150).ok(), Some(0));
        assert_eq!(leeway("k", 0, 150).ok(), Some(150));
        assert!(leeway("k", -2, 150).is_err());
    }

    #[test]
    fn comma_separated_strings_split() {
        let list: StringList = serde_json::from_str("\"a, b,,c\"").unwrap_or_default();
        assert_eq!(list.0, vec!["a", "b", "c"]);
        let list: StringList = serde_json::from_str("[\"x,y\"]").unwrap_or_default();
        assert_eq!(list.0, vec!["x,y"]);
    }
}
