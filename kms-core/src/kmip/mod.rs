//! KMIP 2.1 in JSON TTLV: the generic node codec ([`ttlv`]) and the operations ([`ops`]).

pub mod ops;
pub mod ttlv;

/// Uppercase hex, as the wire uses for byte strings.
pub fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
