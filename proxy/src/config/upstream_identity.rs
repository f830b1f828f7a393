//! How the caller's identity travels to the upstream: the `X-KMS-User` header (kms-core reads
//! it), or a short-lived JWT the proxy signs for each user (`upstream_identity = "jwt"`), which
//! any OIDC resource server (the reference KMS, Vault, ...) can verify with the keys the proxy
//! publishes at `<issuer>/.well-known/jwks.json`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid, readable_file, seconds};

/// `header` (default) or `jwt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamIdentityMode {
    #[default]
    Header,
    Jwt,
}

/// The signature algorithm of minted tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum MintAlgorithm {
    #[default]
    #[serde(rename = "ES256")]
    #[value(name = "ES256")]
    Es256,
    #[serde(rename = "RS256")]
    #[value(name = "RS256")]
    Rs256,
    #[serde(rename = "EdDSA")]
    #[value(name = "EdDSA")]
    EdDsa,
}

impl MintAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// The upstream identity keys as they arrive from the sources.
#[derive(Debug, Clone, Default)]
pub struct RawUpstreamIdentity {
    pub mode: UpstreamIdentityMode,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub lifetime: Option<f64>,
    pub algorithm: Option<MintAlgorithm>,
    pub key_file: Option<PathBuf>,
    pub key_rotation: Option<f64>,
    pub publish_ahead: Option<f64>,
    pub jwks_address: Option<String>,
}

/// Minted upstream tokens, validated.
#[derive(Debug, Clone)]
pub struct UpstreamJwt {
    /// `iss`, an https URL without a trailing slash.
    pub issuer: String,
    /// The issuer URL's path ("" or "/x/y"): the well-known documents live under it.
    pub issuer_path: String,
    pub audience: String,
    pub lifetime: Duration,
    /// For a generated key; a key file's own kind decides otherwise.
    pub algorithm: Option<MintAlgorithm>,
    pub key_file: Option<PathBuf>,
    /// How often a generated key is replaced (the next one is published a whole period ahead).
    pub key_rotation: Duration,
    /// How long a new key file's key is published before it signs (so verifiers that cache
    /// the JWKS know it first).
    pub publish_ahead: Duration,
    /// A listener of its own for the well-known documents (TLS, no client certificate).
    pub jwks_address: Option<SocketAddr>,
}

/// Shortest and longest token lifetime, seconds.
const LIFETIME_RANGE: (f64, f64) = (10.0, 3600.0);

pub fn validate(
    raw: RawUpstreamIdentity,
    tls: bool,
    client_cert_required: bool,
) -> Result<Option<UpstreamJwt>, ConfigError> {
    if raw.mode == UpstreamIdentityMode::Header {
        let stray = [
            ("upstream_jwt_issuer", raw.issuer.is_some()),
            ("upstream_jwt_audience", raw.audience.is_some()),
            ("upstream_jwt_lifetime", raw.lifetime.is_some()),
            ("upstream_jwt_key_rotation", raw.key_rotation.is_some()),
            ("upstream_jwt_publish_ahead", raw.publish_ahead.is_some()),
            ("upstream_jwt_algorithm", raw.algorithm.is_some()),
            ("upstream_jwt_key_file", raw.key_file.is_some()),
            ("upstream_jwt_jwks_address", raw.jwks_address.is_some()),
        ];
        if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
            return Err(invalid(
                key,
                "only used with upstream_identity = \"jwt\" (the identity goes as a header now)",
            ));
        }
        return Ok(None);
    }
    let issuer = raw.issuer.ok_or_else(|| {
        invalid(
            "upstream_jwt_issuer",
            "required with upstream_identity = \"jwt\": the https URL the upstream fetches \
             <issuer>/.well-known/jwks.json from (this proxy's own address as the upstream sees it)",
        )
    })?;
    let issuer = issuer.trim_end_matches('/').to_owned();
    let uri: http::Uri = issuer.parse().map_err(|e| {
        invalid(
            "upstream_jwt_issuer",
            format!("{issuer:?} is not a URL: {e}"),
        )
    })?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(invalid(
            "upstream_jwt_issuer",
            format!(
                "{issuer:?} must be an https:// URL (upstreams refuse keys fetched over plain http)"
            ),
        ));
    }
    if uri.query().is_some() || issuer.contains('#') {
        return Err(invalid(
            "upstream_jwt_issuer",
            "must not have a query or a fragment",
        ));
    }
    if !tls {
        return Err(invalid(
            "upstream_jwt_issuer",
            "the keys are published over HTTPS: remove insecure_http",
        ));
    }
    let audience = raw
        .audience
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| {
            invalid(
                "upstream_jwt_audience",
                "required with upstream_identity = \"jwt\": the `aud` the upstream expects",
            )
        })?;
    // Each applies to one kind of key: refused, not ignored, with the other.
    if raw.key_file.is_some() && raw.key_rotation.is_some() {
        return Err(invalid(
            "upstream_jwt_key_rotation",
            "applies to a generated key; a key file's key changes when the file does",
        ));
    }
    if raw.key_file.is_none() && raw.publish_ahead.is_some() {
        return Err(invalid(
            "upstream_jwt_publish_ahead",
            "applies to a key file; a generated key is published a whole rotation ahead",
        ));
    }
    let lifetime = raw.lifetime.unwrap_or(60.0);
    let key_rotation = raw.key_rotation.unwrap_or(86_400.0);
    let publish_ahead = raw.publish_ahead.unwrap_or(60.0);
    if !(LIFETIME_RANGE.0..=LIFETIME_RANGE.1).contains(&lifetime) {
        return Err(invalid(
            "upstream_jwt_lifetime",
            format!(
                "{} is not between {} and {} seconds",
                lifetime, LIFETIME_RANGE.0, LIFETIME_RANGE.1
            ),
        ));
    }
    if let Some(file) = &raw.key_file {
        readable_file("upstream_jwt_key_file", file)?;
    }
    let key_rotation = seconds("upstream_jwt_key_rotation", key_rotation)?;
    if key_rotation < Duration::from_secs(1) {
        return Err(invalid(
            "upstream_jwt_key_rotation",
            "must be at least 1 second",
        ));
    }
    let lifetime = Duration::from_secs_f64(lifetime);
    if !(0.0..=3600.0).contains(&publish_ahead) {
        return Err(invalid(
            "upstream_jwt_publish_ahead",
            format!("{publish_ahead} is not between 0 and 3600 seconds"),
        ));
    }
    let jwks_address = match raw.jwks_address {
        Some(a) => Some(a.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "upstream_jwt_jwks_address",
                format!("expected host:port: {e}"),
            )
        })?),
        None => None,
    };
    if client_cert_required && jwks_address.is_none() {
        return Err(invalid(
            "upstream_jwt_jwks_address",
            "the main listener requires client certificates, so the upstream could not fetch \
             the keys there: set upstream_jwt_jwks_address (a listener without client \
             certificates for the two well-known documents) or client_cert = \"optional\"",
        ));
    }
    let issuer_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Some(UpstreamJwt {
        issuer,
        issuer_path,
        audience,
        lifetime,
        algorithm: raw.algorithm,
        key_file: raw.key_file,
        key_rotation,
        publish_ahead: Duration::from_secs_f64(publish_ahead),
        jwks_address,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_mode() -> RawUpstreamIdentity {
        RawUpstreamIdentity {
            mode: UpstreamIdentityMode::Jwt,
            issuer: Some("https://proxy.kms.svc:9998/".into()),
            audience: Some("kms".into()),
            ..RawUpstreamIdentity::default()
        }
    }

    fn refusal(raw: RawUpstreamIdentity, tls: bool, required: bool) -> String {
        validate(raw, tls, required)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn jwt_mode_needs_what_the_upstream_checks() {
        let ok = validate(jwt_mode(), true, false).ok().flatten();
        assert!(ok.is_some_and(|c| c.issuer == "https://proxy.kms.svc:9998" && c.issuer_path.is_empty()));
        let mut raw = jwt_mode();
        raw.issuer = Some("http://proxy:9998".into());
        assert!(refusal(raw, true, false).contains("https://"));
        let mut raw = jwt_mode();
        raw.issuer = None;
        assert!(refusal(raw, true, false).contains("upstream_jwt_issuer"));
        let mut raw = jwt_mode();
        raw.audience = Some(" ".into());
        assert!(refusal(raw, true, false).contains("upstream_jwt_audience"));
        let mut raw = jwt_mode();
        raw.lifetime = Some(5.0);
        assert!(refusal(raw, true, false).contains("upstream_jwt_lifetime"));
        assert!(refusal(jwt_mode(), false, false).contains("insecure_http"));
        assert!(refusal(jwt_mode(), true, true).contains("upstream_jwt_jwks_address"));
        let mut raw = jwt_mode();
        raw.jwks_address = Some("127.0.0.1:9470".into());
        assert!(validate(raw, true, true).is_ok_and(|c| c.is_some()));
        // Header mode refuses the jwt keys instead of ignoring them.
        let mut raw = jwt_mode();
        raw.mode = UpstreamIdentityMode::Header;
        assert!(refusal(raw, true, false).contains("only used with upstream_identity"));
        let mut raw = jwt_mode();
        raw.key_file = Some("/etc/kms/identity/signing.key".into());
        raw.key_rotation = Some(3600.0);
        assert!(refusal(raw, true, false).contains("upstream_jwt_key_rotation"));
        let mut raw = jwt_mode();
        raw.publish_ahead = Some(5.0);
        assert!(refusal(raw, true, false).contains("upstream_jwt_publish_ahead"));
        let header = RawUpstreamIdentity::default();
        assert!(validate(header, true, true).is_ok_and(|c| c.is_none()));
    }
}
