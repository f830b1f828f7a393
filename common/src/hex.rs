//! Hexadecimal as KMIP JSON TTLV writes byte strings: upper case out, either case in.

const DIGITS: &[u8; 16] = b"0123456789ABCDEF";

const LOWER_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Upper-case hex of `bytes`.
pub fn encode_upper(bytes: &[u8]) -> String {
    encode_with(bytes, DIGITS)
}

/// Lower-case hex of `bytes`.
pub fn encode_lower(bytes: &[u8]) -> String {
    encode_with(bytes, LOWER_DIGITS)
}

fn encode_with(bytes: &[u8], digits: &[u8; 16]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xF)]);
    }
    // Hex digits: always UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The bytes of hex text, either case, no `0x` prefix; None unless every pair is hex.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_non_hex() {
        assert_eq!(encode_upper(&[0x00, 0xAB, 0x7f]), "00AB7F");
        assert_eq!(encode_lower(&[0x00, 0xAB, 0x7f]), "00ab7f");
        assert_eq!(decode("00ab7F"), Some(vec![0x00, 0xAB, 0x7F]));
        assert_eq!(decode("0"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode(""), Some(vec![]));
    }
}
