//! Who the caller is, and the headers that carry it upstream. Only the proxy sets them:
//! every inbound spelling (any case, `_` for `-`, repeated) is removed first.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

/// The client's address, with its IP as `X-Forwarded-For` and the access line carry it:
/// formatted once per connection, not once per request.
#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    ip: HeaderValue,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        // An address's text is always a valid header value.
        let ip = HeaderValue::try_from(addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        Self { addr, ip }
    }

    pub fn ip_header(&self) -> &HeaderValue {
        &self.ip
    }

    pub fn ip_text(&self) -> &str {
        self.ip.to_str().unwrap_or("-")
    }
}

/// How the caller was authenticated; sent upstream as `X-KMS-Auth-Method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// Why a user name from a credential is not acceptable (the 401 reason and metrics label).
pub type NameRefusal = &'static str;

/// Longest user name forwarded upstream, in bytes.
pub const MAX_USER_BYTES: usize = 1024;

/// Characters that print nothing or change how the text around them is shown: format
/// characters (zero-width, bidirectional controls, BOM), fillers, variation selectors,
/// private-use code points and noncharacters. Control characters are tested apart.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FDD0}'..='\u{FDEF}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{E000}'..='\u{F8FF}'
        | '\u{E0000}'..='\u{E0FFF}' | '\u{F0000}'..)
        || (u32::from(c) & 0xFFFE) == 0xFFFE
}

/// The one rule for a user name taken from a credential (certificate CN, JWT claim), applied
/// by the proxy before anything is forwarded. The core uses the forwarded name byte for byte,
/// so what passes here is exactly who the user is everywhere, audit included:
/// * not empty, at most [`MAX_USER_BYTES`];
/// * not the default user (the identity of unauthenticated and API-token requests) and not `*`
///   (which means "everyone" in grants): `reserved user`;
/// * no whitespace but the plain space, and none at either end; no control, format or other
///   invisible character; Unicode text in NFC form (one name, one spelling):
///   `user name not canonical`.
///
/// Non-ASCII names (internationalised emails, accented CNs) are allowed and forwarded as
/// UTF-8 bytes; the core reads the header as strict UTF-8.
pub fn check_user_name(name: &str, default_user: &str) -> Result<(), NameRefusal> {
    check_canonical(name)?;
    if name == default_user || name == "*" {
        return Err("reserved user");
    }
    Ok(())
}

/// The shape half of [`check_user_name`]: not empty, not too long, canonical text.
pub fn check_canonical(name: &str) -> Result<(), NameRefusal> {
    if name.is_empty() {
        return Err("empty user name");
    }
    if name.len() > MAX_USER_BYTES {
        return Err("user name too long");
    }
    let edges = name.starts_with(' ') || name.ends_with(' ');
    let odd = name
        .chars()
        .any(|c| c.is_control() || is_invisible(c) || (c.is_whitespace() && c != ' '));
    if edges || odd || !unicode_normalization::is_nfc(name) {
        return Err("user name not canonical");
    }
    Ok(())
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
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        identity: &Identity,
        peer: &Peer,
        proto: &'static str,
    ) {
        // UTF-8 bytes as they are: names passed [`check_user_name`] (no control character),
        // and a header value may carry bytes above 0x7F.
        if let Ok(user) = HeaderValue::from_bytes(identity.user.as_bytes()) {
            headers.insert(self.user_header.clone(), user);
        }
        headers.insert(
            AUTH_METHOD_HEADER,
            HeaderValue::from_static(identity.method.as_str()),
        );
        headers.insert(X_FORWARDED_FOR, peer.ip_header().clone());
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        for (name, value) in &identity.claims {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_canonical() {
        for good in [
            "alice",
            "alice@example.com",
            "John Smith",
            "jos\u{e9}@\u{e9}xample.fr",
            "\u{5c71}\u{7530}",
        ] {
            assert_eq!(check_user_name(good, "admin"), Ok(()), "{good:?}");
        }
        for (bad, reason) in [
            ("admin", "reserved user"),
            ("*", "reserved user"),
            ("", "empty user name"),
            ("admin ", "user name not canonical"),
            (" admin", "user name not canonical"),
            ("\tadmin", "user name not canonical"),
            ("ad\nmin", "user name not canonical"),
            ("ad\u{200B}min", "user name not canonical"),
            ("ad\u{202E}nimda", "user name not canonical"),
            ("a\u{A0}b", "user name not canonical"),
            ("a\u{85}b", "user name not canonical"),
            ("jose\u{301}", "user name not canonical"),
        ] {
            assert_eq!(check_user_name(bad, "admin"), Err(reason), "{bad:?}");
        }
        assert_eq!(check_user_name("admin", "root"), Ok(()));
        assert!(check_user_name(&"a".repeat(MAX_USER_BYTES + 1), "admin").is_err());
    }

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
        let peer = Peer::new(SocketAddr::from(([127, 0, 0, 1], 40_000)));
        ids.apply(&mut h, &id, &peer, "https");
        assert_eq!(h.get_all("x-kms-user").iter().count(), 1);
        assert_eq!(h["x-kms-user"], "admin");
        assert_eq!(h["x-kms-auth-method"], "none");
        assert_eq!(h.get_all("x-kms-groups").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    }

    #[test]
    fn peers_read_as_their_ip() {
        for (addr, text) in [
            ("10.0.255.7:1", "10.0.255.7"),
            ("[::1]:443", "::1"),
            ("[::ffff:10.1.2.3]:8", "::ffff:10.1.2.3"),
        ] {
            let peer = Peer::new(addr.parse().expect("address"));
            assert_eq!(peer.ip_text(), text);
            assert_eq!(peer.ip_header(), text);
        }
    }
}
