//! Authentication: one authenticator per method and a decision that fails closed. With no
//! method configured every request is the default user; with any method configured a request
//! without a valid credential is a 401, never the default user.

pub mod mtls;

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
}

impl Authenticator {
    pub fn new(config: &Config) -> Self {
        Self {
            mtls: config.auth.mtls.is_some(),
            force_default_username: config.auth.force_default_username,
            default_username: config.default_username.clone(),
        }
    }

    /// True when at least one authentication method is configured.
    pub fn is_configured(&self) -> bool {
        self.mtls
    }

    /// The method a failed request tried, for metrics.
    pub fn attempted(&self, peer: &PeerCertificate) -> AuthMethod {
        match peer {
            PeerCertificate::Verified(_) => AuthMethod::Mtls,
            PeerCertificate::Absent => AuthMethod::None,
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

    /// The identity of a request on a connection that presented `peer`.
    pub fn authenticate(&self, peer: &PeerCertificate) -> Result<Identity, ProxyError> {
        if !self.is_configured() {
            return Ok(Identity {
                user: self.default_username.clone(),
                method: AuthMethod::None,
            });
        }
        match peer {
            PeerCertificate::Verified(Ok(user)) => Ok(self.as_user(user, AuthMethod::Mtls)),
            PeerCertificate::Verified(Err(e)) => Err(ProxyError::Unauthenticated(e.reason())),
            PeerCertificate::Absent => Err(ProxyError::Unauthenticated("authentication required")),
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
        }
    }

    #[test]
    fn fails_closed() {
        let alice = PeerCertificate::Verified(Ok("alice".into()));
        assert_eq!(
            auth(false, false)
                .authenticate(&PeerCertificate::Absent)
                .map(|i| i.user)
                .ok(),
            Some("admin".into())
        );
        assert!(
            auth(true, false)
                .authenticate(&PeerCertificate::Absent)
                .is_err()
        );
        assert!(
            auth(true, false)
                .authenticate(&PeerCertificate::Verified(Err(mtls::NameError::Wildcard)))
                .is_err()
        );
        let id = auth(true, false).authenticate(&alice).ok();
        assert_eq!(
            id,
            Some(Identity {
                user: "alice".into(),
                method: AuthMethod::Mtls
            })
        );
        let forced = auth(true, true).authenticate(&alice).ok();
        assert_eq!(
            forced,
            Some(Identity {
                user: "admin".into(),
                method: AuthMethod::Mtls
            })
        );
    }
}
