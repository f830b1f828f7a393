//! Who the caller is, and the headers that carry it upstream. Only the proxy sets them:
//! every inbound spelling (any case, `_` for `-`, repeated) is removed first.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

/// How the caller was authenticated; sent upstream as `X-KMS-Auth-Method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    Mtls,
    Jwt,
    ApiToken,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Mtls => "mtls",
            Self::Jwt => "jwt",
            Self::ApiToken => "api_token",
        }
    }
}

/// The identity decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub method: AuthMethod,
    /// Headers set from token claims by the configured claim mappings.
    pub claims: Vec<(HeaderName, HeaderValue)>,
}

impl Identity {
    pub fn new(user: impl Into<String>, method: AuthMethod) -> Self {
        Self {
            user: user.into(),
            method,
            claims: Vec::new(),
        }
    }
}

pub const AUTH_METHOD_HEADER: HeaderName = HeaderName::from_static("x-kms-auth-method");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers the proxy owns, in normalized spelling (lowercase, `-`).
pub const OWNED: [&str; 7] = [
    "x-kms-user",
    "x-kms-auth-method",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

/// Strips inbound identity headers and sets the proxy's own.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    user_header: HeaderName,
    owned: Vec<String>,
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// `name` equals the normalized `owned` when compared case-insensitively with `_` as `-`.
fn same_header(name: &str, owned: &str) -> bool {
    name.len() == owned.len()
        && name.bytes().zip(owned.bytes()).all(|(a, b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == b
        })
}

impl IdentityHeaders {
    /// `mapped` are the headers claim mappings may set: stripped inbound like the others.
    pub fn new(user_header: HeaderName, mapped: &[HeaderName]) -> Self {
        let mut owned: Vec<String> = OWNED.iter().map(|s| (*s).to_owned()).collect();
        owned.push(normalize(user_header.as_str()));
        owned.extend(mapped.iter().map(|h| normalize(h.as_str())));
        Self { user_header, owned }
    }

    /// Removes every header that could be mistaken for one the proxy sets.
    pub fn strip_inbound(&self, headers: &mut HeaderMap) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.owned.iter().any(|o| same_header(name.as_str(), o)))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(&name);
        }
    }

    /// Sets the identity and forwarding headers (after [`Self::strip_inbound`]).
    pub fn apply(&self, headers: &mut HeaderMap, identity: &Identity, peer: IpAddr, proto: &str) {
        if let Ok(user) = HeaderValue::from_str(&identity.user) {
            headers.insert(self.user_header.clone(), user);
        }
        headers.insert(
            AUTH_METHOD_HEADER,
            HeaderValue::from_static(identity.method.as_str()),
        );
        if let Ok(ip) = HeaderValue::from_str(&peer.to_string()) {
            headers.insert(X_FORWARDED_FOR, ip);
        }
        if let Ok(proto) = HeaderValue::from_str(proto) {
            headers.insert(X_FORWARDED_PROTO, proto);
        }
        for (name, value) in &identity.claims {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_spelling() {
        let ids = IdentityHeaders::new(
            HeaderName::from_static("x-kms-user"),
            &[HeaderName::from_static("x-kms-groups")],
        );
        let mut h = HeaderMap::new();
        for name in [
            "x-kms-user",
            "X_KMS_USER",
            "x_kms-user",
            "X-Kms-Auth-Method",
            "forwarded",
            "X_KMS_GROUPS",
        ] {
            h.append(
                HeaderName::try_from(name).unwrap_or(AUTH_METHOD_HEADER),
                HeaderValue::from_static("mallory"),
            );
        }
        h.append("x-kms-user", HeaderValue::from_static("mallory2"));
        h.insert("x-other", HeaderValue::from_static("kept"));
        ids.strip_inbound(&mut h);
        assert_eq!(h.len(), 1);
        let mut id = Identity::new("admin", AuthMethod::None);
        id.claims.push((
            HeaderName::from_static("x-kms-groups"),
            HeaderValue::from_static("ops"),
        ));
        ids.apply(&mut h, &id, IpAddr::from([127, 0, 0, 1]), "https");
        assert_eq!(h.get_all("x-kms-user").iter().count(), 1);
        assert_eq!(h["x-kms-user"], "admin");
        assert_eq!(h["x-kms-auth-method"], "none");
        assert_eq!(h.get_all("x-kms-groups").iter().count(), 1);
    }
}
