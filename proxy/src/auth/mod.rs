//! Authentication: one authenticator per method and a decision that fails closed. With no
//! method configured every request is the default user; with any method configured a request
//! without a valid credential is a 401, never the default user.

pub mod api_token;
pub mod jwt;
pub mod mtls;

use std::sync::Arc;

use http::HeaderMap;

use crate::config::Config;
use crate::error::{ProxyError, StartError};
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
    pub jwt: Option<Arc<jwt::JwtVerifier>>,
}

/// True when `token` has the shape of a JWT: it contains a `.` (JWS compact form). An API
/// token is standard base64 and never does, so the two kinds cannot be confused; a
/// JWT-shaped bearer is judged as a JWT only, even a malformed one.
fn is_jwt_shaped(token: &str) -> bool {
    token.contains('.')
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
    pub fn new(config: &Config, metrics: &crate::metrics::Metrics) -> Result<Self, StartError> {
        let jwt = match &config.auth.jwt {
            Some(jwt) => Some(Arc::new(
                jwt::JwtVerifier::new(
                    jwt,
                    &config.default_username,
                    (
                        metrics.jwks_fetches.clone(),
                        metrics.jwks_last_success.clone(),
                    ),
                )
                .map_err(StartError::Jwt)?,
            )),
            None => None,
        };
        Ok(Self {
            mtls: config.auth.mtls.is_some(),
            force_default_username: config.auth.force_default_username,
            default_username: config.default_username.clone(),
            api_token: config
                .auth
                .api_token
                .as_ref()
                .map(|(uid, _)| Arc::new(api_token::ApiTokenVerifier::new(uid.clone()))),
            jwt,
        })
    }

    /// The user a verified client certificate names (read once, at the handshake).
    pub fn certificate_user(&self, der: &[u8]) -> Result<String, mtls::NameError> {
        mtls::user_from_certificate(der, &self.default_username)
    }

    /// True when at least one authentication method is configured.
    pub fn is_configured(&self) -> bool {
        self.mtls || self.api_token.is_some() || self.jwt.is_some()
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

    /// The identity forwarded: the authenticated one, or the default user when forced.
    fn as_user(&self, mut identity: Identity) -> Identity {
        if self.force_default_username {
            identity.user.clone_from(&self.default_username);
        }
        identity
    }

    /// The identity of a request on a connection that presented `peer`. Order: a verified
    /// client certificate wins; else a JWT-shaped bearer is judged as a JWT only; else an API
    /// token. With any method configured, no valid credential is a 401.
    pub async fn authenticate(
        &self,
        peer: &PeerCertificate,
        headers: &HeaderMap,
    ) -> Result<Identity, ProxyError> {
        if !self.is_configured() {
            return Ok(Identity::new(&self.default_username, AuthMethod::None));
        }
        match peer {
            PeerCertificate::Verified(Ok(user)) => {
                return Ok(self.as_user(Identity::new(user, AuthMethod::Mtls)));
            }
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
            Some(Ok(token)) if is_jwt_shaped(token) => match &self.jwt {
                Some(verifier) => verifier
                    .verify(token)
                    .await
                    .map(|identity| self.as_user(identity))
                    .map_err(ProxyError::Unauthenticated),
                None => Err(ProxyError::Unauthenticated(
                    "JWT authentication not configured",
                )),
            },
            Some(Ok(token)) => match &self.api_token {
                Some(verifier) if verifier.verify(token) => {
                    Ok(self.as_user(Identity::new(&self.default_username, AuthMethod::ApiToken)))
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
            jwt: None,
        }
    }

    #[tokio::test]
    async fn fails_closed() {
        let alice = PeerCertificate::Verified(Ok("alice".into()));
        let none = HeaderMap::new();
        let open = auth(false, false)
            .authenticate(&PeerCertificate::Absent, &none)
            .await;
        assert_eq!(open.map(|i| i.user).ok(), Some("admin".into()));
        let missing = auth(true, false)
            .authenticate(&PeerCertificate::Absent, &none)
            .await;
        assert!(missing.is_err());
        let refused = PeerCertificate::Verified(Err(mtls::NameError::Refused("reserved user")));
        assert!(
            auth(true, false)
                .authenticate(&refused, &none)
                .await
                .is_err()
        );
        let id = auth(true, false).authenticate(&alice, &none).await.ok();
        assert_eq!(id, Some(Identity::new("alice", AuthMethod::Mtls)));
        let forced = auth(true, true).authenticate(&alice, &none).await.ok();
        assert_eq!(forced, Some(Identity::new("admin", AuthMethod::Mtls)));
        let mut jwt_like = HeaderMap::new();
        jwt_like.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer a.b"),
        );
        assert!(
            auth(true, false)
                .authenticate(&PeerCertificate::Absent, &jwt_like)
                .await
                .is_err()
        );
    }

    #[test]
    fn jwt_shape() {
        assert!(is_jwt_shaped("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."));
        assert!(is_jwt_shaped("a.b"));
        assert!(!is_jwt_shaped(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        ));
    }
}
