//! The text layer under the JSON TTLV codec: hex as the wire writes byte strings and
//! numbers, and the bounds on a request's shape checked before it is parsed.

use crate::kmip::ttlv::TtlvError;

pub(crate) use kms_common::hex::encode_upper as hex_upper;

/// Decodes hex, either case, without a `0x` prefix.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    kms_common::hex::decode(text)
}

/// Parses `"0x"` followed by exactly `digits` hex digits as an unsigned number.
pub(crate) fn prefixed_hex(text: &str, digits: &[usize]) -> Option<u64> {
    let hex = text.strip_prefix("0x")?;
    if !digits.contains(&hex.len()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Most JSON objects (TTLV nodes) one request may hold. Real requests hold tens to a few
/// hundred; the bound keeps a body of many tiny nodes from costing gigabytes once parsed.
pub const MAX_NODES: usize = 10_000;
/// Deepest nesting of JSON objects and arrays one request may have (a TTLV structure level is
/// two: the node and its value array).
pub const MAX_DEPTH: usize = 64;

/// Counts objects and nesting in a JSON text without building anything, so that a request
/// past the bounds is refused before it costs memory. Strings (with escapes) are skipped;
/// whether the text is valid JSON is left to the parser.
pub fn check_shape(text: &[u8], max_nodes: usize, max_depth: usize) -> Result<(), TtlvError> {
    let (mut nodes, mut depth) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if b == b'{' {
                    nodes += 1;
                }
                if depth > max_depth {
                    return Err(TtlvError(format!(
                        "request nested deeper than {max_depth} levels"
                    )));
                }
                if nodes > max_nodes {
                    return Err(TtlvError(format!(
                        "request has more than {max_nodes} TTLV nodes"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}
