//! From the merged raw values to a checked [`Config`]: every value validated, every file
//! checked readable, every error naming its key.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::{
    AuthConfig, ClientCertMode, Config, ConfigError, Limits, MtlsConfig, RawConfig, ServerCert,
    Upstream, UpstreamTls, invalid, jwt, upstream_identity,
};

pub(super) fn seconds(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value <= 0.0 || value > 86_400.0 * 365.0 {
        return Err(invalid(
            key,
            format!("{value} is not a positive number of seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

fn socket_addr(key: &'static str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()
        .map_err(|e| invalid(key, format!("cannot resolve {host:?}: {e}")))?
        .next()
        .ok_or_else(|| invalid(key, format!("{host:?} resolves to no address")))
}

pub(super) fn readable_file(key: &'static str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(invalid(key, format!("file {} not found", path.display())))
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let listen = socket_addr("hostname", &raw.hostname, raw.port)?;
        let pem = match (raw.tls_cert_file, raw.tls_key_file) {
            (Some(cert), Some(key)) => {
                readable_file("tls_cert_file", &cert)?;
                readable_file("tls_key_file", &key)?;
                Some(ServerCert::Pem { cert, key })
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid("tls_key_file", "tls_cert_file needs tls_key_file"));
            }
            (None, Some(_)) => {
                return Err(invalid("tls_cert_file", "tls_key_file needs tls_cert_file"));
            }
        };
        let p12 = match raw.https_p12_file {
            Some(file) => {
                readable_file("https_p12_file", &file)?;
                Some(ServerCert::Pkcs12 {
                    file,
                    password: raw.https_p12_password.unwrap_or_default(),
                })
            }
            None => None,
        };
        let server_cert = match (pem, p12) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "https_p12_file",
                    "give either tls_cert_file and tls_key_file or https_p12_file, not both",
                ));
            }
            (pem, p12) => pem.or(p12),
        };
        if server_cert.is_none() && !raw.insecure_http {
            return Err(invalid(
                "tls_cert_file",
                "no server certificate: set tls_cert_file and tls_key_file, or https_p12_file \
                 (insecure_http serves plain HTTP, for development only)",
            ));
        }
        let server_cert = if raw.insecure_http { None } else { server_cert };
        let upstream = Upstream::parse(raw.upstream.as_deref().ok_or_else(|| {
            invalid("upstream", "required: unix:/path.sock or https://host:port")
        })?)?;
        let client_cert = match (raw.upstream_client_cert_file, raw.upstream_client_key_file) {
            (Some(c), Some(k)) => {
                readable_file("upstream_client_cert_file", &c)?;
                readable_file("upstream_client_key_file", &k)?;
                Some((c, k))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "upstream_client_key_file",
                    "upstream_client_cert_file needs upstream_client_key_file",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "upstream_client_cert_file",
                    "upstream_client_key_file needs upstream_client_cert_file",
                ));
            }
        };
        if let Some(ca) = &raw.upstream_ca_cert_file {
            readable_file("upstream_ca_cert_file", ca)?;
        }
        let tls_options = raw.upstream_ca_cert_file.is_some() || client_cert.is_some();
        if tls_options && !matches!(upstream, Upstream::Https { .. }) {
            return Err(invalid(
                "upstream_ca_cert_file",
                "upstream TLS options need an https:// upstream",
            ));
        }
        if !raw.upstream_health_path.starts_with('/') {
            return Err(invalid("upstream_health_path", "must start with /"));
        }
        let default_username = raw.default_username.trim().to_owned();
        if default_username.is_empty() || http::HeaderValue::from_str(&default_username).is_err() {
            return Err(invalid(
                "default_username",
                "must be a non-empty header-safe string",
            ));
        }
        let identity_header = HeaderName::try_from(raw.identity_header.as_str())
            .map_err(|_| invalid("identity_header", "not a valid header name"))?;
        let admin_address = raw
            .admin_address
            .parse::<SocketAddr>()
            .map_err(|e| invalid("admin_address", format!("expected host:port: {e}")))?;
        if raw.max_header_size < 1024 || raw.max_header_size > 1024 * 1024 {
            return Err(invalid(
                "max_header_size",
                "must be between 1024 and 1048576 bytes",
            ));
        }
        if raw.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        if raw.max_body_size == 0 {
            return Err(invalid("max_body_size", "must be at least 1"));
        }
        let mtls = match raw.authority_cert_file {
            Some(ca_file) => {
                readable_file("authority_cert_file", &ca_file)?;
                if raw.insecure_http {
                    return Err(invalid(
                        "authority_cert_file",
                        "client certificates need TLS; remove insecure_http",
                    ));
                }
                if let Some(crl) = &raw.crl_file {
                    readable_file("crl_file", crl)?;
                }
                Some(MtlsConfig {
                    ca_file,
                    mode: raw.client_cert,
                    crl_file: raw.crl_file,
                })
            }
            None if raw.crl_file.is_some() => {
                return Err(invalid("crl_file", "a CRL needs authority_cert_file"));
            }
            None => None,
        };
        let api_token = match raw.api_token_id {
            // The uid goes into a URL path (`/access/list/<uid>`): unreserved characters only.
            Some(uid)
                if uid.is_empty()
                    || !uid
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) =>
            {
                return Err(invalid(
                    "api_token_id",
                    format!("{uid:?}: must be a key uid (letters, digits, - . _ ~)"),
                ));
            }
            Some(uid) => Some((
                uid,
                seconds("api_token_refresh_interval", raw.api_token_refresh_interval)?,
            )),
            None => None,
        };
        let client_cert_required = mtls
            .as_ref()
            .is_some_and(|m| m.mode == ClientCertMode::Required);
        let upstream_jwt = upstream_identity::validate(
            upstream_identity::RawUpstreamIdentity {
                mode: raw.upstream_identity,
                issuer: raw.upstream_jwt_issuer,
                audience: raw.upstream_jwt_audience,
                lifetime: raw.upstream_jwt_lifetime,
                algorithm: raw.upstream_jwt_algorithm,
                key_file: raw.upstream_jwt_key_file,
                key_rotation: raw.upstream_jwt_key_rotation,
                publish_ahead: raw.upstream_jwt_publish_ahead,
                jwks_address: raw.upstream_jwt_jwks_address,
            },
            server_cert.is_some(),
            client_cert_required,
        )?;
        let auth = AuthConfig {
            mtls,
            force_default_username: raw.force_default_username,
            api_token,
            jwt: jwt::validate(raw.auth, &identity_header)?,
        };
        let limits = Limits {
            max_body_size: raw.max_body_size,
            max_header_size: usize::try_from(raw.max_header_size).unwrap_or(usize::MAX),
            max_connections: usize::try_from(raw.max_connections).unwrap_or(usize::MAX),
            header_read_timeout: seconds("header_read_timeout", raw.header_read_timeout)?,
            body_read_timeout: seconds("body_read_timeout", raw.body_read_timeout)?,
            idle_timeout: seconds("idle_timeout", raw.idle_timeout)?,
            tls_handshake_timeout: seconds("tls_handshake_timeout", raw.tls_handshake_timeout)?,
            upstream_connect_timeout: seconds(
                "upstream_connect_timeout",
                raw.upstream_connect_timeout,
            )?,
            upstream_timeout: seconds("upstream_timeout", raw.upstream_timeout)?,
            shutdown_timeout: seconds("shutdown_timeout", raw.shutdown_timeout)?,
        };
        Ok(Self {
            listen,
            server_cert,
            upstream,
            upstream_tls: UpstreamTls {
                ca_file: raw.upstream_ca_cert_file,
                client_cert,
            },
            upstream_health_path: raw.upstream_health_path,
            default_username,
            identity_header,
            admin_address,
            log_format: raw.log_format,
            limits,
            cert_reload_interval: seconds("cert_reload_interval", raw.cert_reload_interval)?,
            auth,
            upstream_jwt,
        })
    }
}
