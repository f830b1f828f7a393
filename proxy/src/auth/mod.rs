//! Authentication: one authenticator per method and a decision that fails closed. With no
//! method configured every request is the default user; with any method configured a request
//! without a valid credential is a 401, never the default user.

pub mod api_token;
pub mod mtls;

use std::sync::Arc;

use base64::Engine;
use http::HeaderMap;

use crate::config::Config;
use crate::error::ProxyError;
use crate::identity::{AuthMethod, Identity};

/// What a connection proved at the TLS handshake, read once and kept with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCertificate {
    /// No certificate (none requested, or optional and not sent).
    Absent,
    /// A certificate that chains to the authority bundle, and the user its CN names.
    Verified(Result<String, mtls::NameError>),
}

/// Decides the identity of each request.
#[derive(Debug, Clone)]
pub struct Authenticator {
    mtls: bool,
    force_default_username: bool,
    default_username: String,
    pub api_token: Option<Arc<api_token::ApiTokenVerifier>>,
}

/// True when `token` has the shape of a JWT: three dot-separated parts whose first decodes
/// (base64url) to a JSON object. Such a bearer is judged as a JWT only.
fn is_jwt_shaped(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[0].trim_end_matches('='))
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h.is_object())
}

/// The bearer credential of a request: None without one, Err when malformed or repeated.
fn bearer(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    let text = first.to_str().map_err(|_| ());
    Some(text.and_then(|t| {
        let (scheme, token) = t.split_once(' ').ok_or(())?;
        let token = token.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
            Ok(token)
        } else {
            Err(())
        }
    }))
}

impl Authenticator {
    pub fn new(config: &Config) -> Self {
        Self {
            mtls: config.auth.mtls.is_some(),
            force_default_username: config.auth.force_default_username,
            default_username: config.default_username.clone(),
            api_token: config
                .auth
                .api_token
                .as_ref()
                .map(|(uid, _)| Arc::new(api_token::ApiTokenVerifier::new(uid.clone()))),
        }
    }

    /// True when at least one authentication method is configured.
    pub fn is_configured(&self) -> bool {
        self.mtls || self.api_token.is_some()
    }

    /// The method a failed request tried, for metrics.
    pub fn attempted(&self, peer: &PeerCertificate, headers: &HeaderMap) -> AuthMethod {
        match (peer, bearer(headers)) {
            (PeerCertificate::Verified(_), _) => AuthMethod::Mtls,
            (PeerCertificate::Absent, Some(Ok(token))) if is_jwt_shaped(token) => AuthMethod::Jwt,
            (PeerCertificate::Absent, Some(_)) => AuthMethod::ApiToken,
            (PeerCertificate::Absent, None) => AuthMethod::None,
        }
    }

    fn as_user(&self, user: &str, method: AuthMethod) -> Identity {
        let user = if self.force_default_username {
            &self.default_username
        } else {
            user
        };
        Identity {
            user: user.to_owned(),
            method,
        }
    }

    /// The identity of a request on a connection that presented `peer`. Order: a verified
    /// client certificate wins; else a JWT-shaped bearer is judged as a JWT only; else an API
    /// token. With any method configured, no valid credential is a 401.
    pub fn authenticate(
        &self,
        peer: &PeerCertificate,
        headers: &HeaderMap,
    ) -> Result<Identity, ProxyError> {
        if !self.is_configured() {
            return Ok(Identity {
                user: self.default_username.clone(),
                method: AuthMethod::None,
            });
        }
        match peer {
            PeerCertificate::Verified(Ok(user)) => return Ok(self.as_user(user, AuthMethod::Mtls)),
            PeerCertificate::Verified(Err(e)) => {
                return Err(ProxyError::Unauthenticated(e.reason()));
            }
            PeerCertificate::Absent => {}
        }
        match bearer(headers) {
            None => Err(ProxyError::Unauthenticated("authentication required")),
            Some(Err(())) => Err(ProxyError::Unauthenticated(
                "malformed Authorization header",
            )),
            Some(Ok(token)) if is_jwt_shaped(token) => {
                // No identity provider is configured yet: a JWT cannot be verified.
                Err(ProxyError::Unauthenticated("invalid token"))
            }
            Some(Ok(token)) => match &self.api_token {
                Some(verifier) if verifier.verify(token) => {
                    Ok(self.as_user(&self.default_username, AuthMethod::ApiToken))
                }
                _ => Err(ProxyError::Unauthenticated("invalid token")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(mtls: bool, force: bool) -> Authenticator {
        Authenticator {
            mtls,
            force_default_username: force,
            default_username: "admin".into(),
            api_token: None,
        }
    }

    #[test]
    fn fails_closed() {
        let alice = PeerCertificate::Verified(Ok("alice".into()));
        assert_eq!(
            auth(false, false)
                .authenticate(&PeerCertificate::Absent, &HeaderMap::new())
                .map(|i| i.user)
                .ok(),
            Some("admin".into())
        );
        assert!(
            auth(true, false)
                .authenticate(&PeerCertificate::Absent, &HeaderMap::new())
                .is_err()
        );
        assert!(
            auth(true, false)
                .authenticate(
                    &PeerCertificate::Verified(Err(mtls::NameError::Wildcard)),
                    &HeaderMap::new()
                )
                .is_err()
        );
        let id = auth(true, false)
            .authenticate(&alice, &HeaderMap::new())
            .ok();
        assert_eq!(
            id,
            Some(Identity {
                user: "alice".into(),
                method: AuthMethod::Mtls
            })
        );
        let forced = auth(true, true)
            .authenticate(&alice, &HeaderMap::new())
            .ok();
        assert_eq!(
            forced,
            Some(Identity {
                user: "admin".into(),
                method: AuthMethod::Mtls
            })
        );
    }
    #[test]
    fn jwt_shape() {
        assert!(is_jwt_shaped("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."));
        assert!(!is_jwt_shaped(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        ));
        assert!(!is_jwt_shaped("a.b.c"));
    }
}
