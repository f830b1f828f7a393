//! The request id that joins the proxy's access and audit lines with the core's: the proxy
//! takes a client's `X-Request-Id` when it is acceptable (or makes one), forwards it, returns
//! it, and both processes log it.

/// The header's name, lowercase.
pub const HEADER: &str = "x-request-id";
/// The longest id taken from a client.
pub const MAX_LEN: usize = 128;

/// An id a client may choose: 1 to 128 characters among letters, digits and `-_.:+/=`
/// (UUIDs, hex, base64 and trace ids pass; nothing that could confuse a log reader does).
pub fn acceptable(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_a_client_may_choose() {
        for good in [
            &b"0b7c6f1e-3f3a-4c1e-9d59-1f0a2b3c4d5e"[..],
            b"abc",
            b"trace:1/2+3=",
        ] {
            assert!(acceptable(good), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"a b",
            b"x\ny",
            b"\"quoted\"",
            b"id;drop",
            &[b'a'; 129][..],
        ] {
            assert!(!acceptable(bad), "{bad:?}");
        }
    }
}
