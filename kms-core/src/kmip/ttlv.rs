//! The JSON TTLV codec: `{"tag": <name>, "type": <Type>, "value": <V>}` nodes, parsed leniently
//! as the reference server accepts them and emitted exactly as it emits them
//! (see `shared/reference/kmip-json-ttlv.md`, section 2).

use serde_json::{Map, Value as Json, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One TTLV node.
#[derive(Debug, Clone, PartialEq)]
pub struct Ttlv {
    pub tag: String,
    pub value: Value,
}

/// An enumeration value: its variant name, or a raw code when given as a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enumeration {
    Name(String),
    Code(u32),
}

/// The typed value of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Structure(Vec<Ttlv>),
    Integer(i32),
    LongInteger(i64),
    /// Signed big-endian two's complement bytes.
    BigInteger(Vec<u8>),
    Enumeration(Enumeration),
    Boolean(bool),
    TextString(String),
    ByteString(Vec<u8>),
    DateTime(OffsetDateTime),
    Interval(u32),
    DateTimeExtended(i64),
}

/// Why a JSON document is not valid TTLV. The message is what a client sees after
/// `Invalid Request: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TtlvError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, TtlvError> {
    Err(TtlvError(message.into()))
}

pub use crate::kmip::text::{MAX_DEPTH, MAX_NODES, check_shape, decode_hex};
use crate::kmip::text::{hex_upper, prefixed_hex};

impl Ttlv {
    pub fn new(tag: impl Into<String>, value: Value) -> Self {
        Self {
            tag: tag.into(),
            value,
        }
    }

    /// Parses a node from JSON.
    pub fn from_json(json: &Json) -> Result<Self, TtlvError> {
        let Json::Object(map) = json else {
            return err("expected a TTLV object with `tag`, `type` and `value`");
        };
        if let Some(key) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "tag" | "type" | "value"))
        {
            return err(format!(
                "unknown field `{key}`, expected one of `tag`, `type`, `value`"
            ));
        }
        let Some(Json::String(tag)) = map.get("tag") else {
            return err("missing field `tag`");
        };
        let value = map
            .get("value")
            .ok_or_else(|| TtlvError(format!("{tag}: missing field `value`")))?;
        let kind = match map.get("type") {
            None => "Structure",
            Some(Json::String(kind)) => kind.as_str(),
            Some(_) => return err(format!("{tag}: `type` must be a string")),
        };
        // The offending value is echoed only when short, and never for byte strings, which
        // carry key material.
        let bad = |what: &str| {
            let shown = value.to_string();
            if what == "ByteString" || shown.len() > 64 {
                TtlvError(format!("Invalid value for a {what} in {tag}"))
            } else {
                TtlvError(format!("Invalid value for a {what} in {tag}: {shown}"))
            }
        };
        let value = match kind {
            "Structure" => match value {
                Json::Array(items) => Value::Structure(
                    items
                        .iter()
                        .map(Self::from_json)
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(bad("Structure")),
            },
            "Integer" => Value::Integer(match value {
                Json::Number(n) => n
                    .as_i64()
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| bad("Integer"))?,
                Json::String(s) => match prefixed_hex(s, &[8, 16]) {
                    Some(v) => u32::try_from(v)
                        .map(|v| v as i32)
                        .map_err(|_| bad("Integer"))?,
                    None => {
                        let shown = if s.len() > 64 { "(long string)" } else { s };
                        return err(format!(
                            "Invalid value for integer hex String: {shown} (should start with 0x)"
                        ));
                    }
                },
                _ => return Err(bad("Integer")),
            }),
            "LongInteger" => Value::LongInteger(match value {
                Json::Number(n) => n.as_i64().ok_or_else(|| bad("LongInteger"))?,
                Json::String(s) => prefixed_hex(s, &[16]).ok_or_else(|| bad("LongInteger"))? as i64,
                _ => return Err(bad("LongInteger")),
            }),
            "BigInteger" => match value {
                Json::String(s) => {
                    let hex = s.strip_prefix("0x").ok_or_else(|| bad("BigInteger"))?;
                    let padded = if hex.len() % 2 == 1 {
                        format!("0{hex}")
                    } else {
                        hex.to_owned()
                    };
                    Value::BigInteger(decode_hex(&padded).ok_or_else(|| bad("BigInteger"))?)
                }
                _ => return Err(bad("BigInteger")),
            },
            "Enumeration" => Value::Enumeration(match value {
                Json::String(s) if s.starts_with("0x") => Enumeration::Code(
                    prefixed_hex(s, &[8])
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad("Enumeration"))?,
                ),
                Json::String(s) => Enumeration::Name(s.clone()),
                Json::Number(n) => Enumeration::Code(
                    n.as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad("Enumeration"))?,
                ),
                _ => return Err(bad("Enumeration")),
            }),
            "Boolean" => Value::Boolean(value.as_bool().ok_or_else(|| bad("Boolean"))?),
            "TextString" => {
                Value::TextString(value.as_str().ok_or_else(|| bad("TextString"))?.to_owned())
            }
            "ByteString" => match value {
                Json::String(s) => Value::ByteString(decode_hex(s).ok_or_else(|| {
                    TtlvError(format!(
                        "Invalid value for a ByteString in {tag}: expected an even number of hex digits ({} characters given)",
                        s.len()
                    ))
                })?),
                _ => return Err(bad("ByteString")),
            },
            "DateTime" => Value::DateTime(match value {
                Json::String(s) if s.starts_with("0x") => {
                    let secs = prefixed_hex(s, &[16]).ok_or_else(|| bad("DateTime"))? as i64;
                    OffsetDateTime::from_unix_timestamp(secs).map_err(|_| bad("DateTime"))?
                }
                Json::String(s) => OffsetDateTime::parse(s, &Rfc3339)
                    .map_err(|_| bad("DateTime"))?
                    .to_offset(time::UtcOffset::UTC),
                _ => return Err(bad("DateTime")),
            }),
            "Interval" => Value::Interval(
                value
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| bad("Interval"))?,
            ),
            "DateTimeExtended" => Value::DateTimeExtended(match value {
                Json::String(s) => {
                    prefixed_hex(s, &[16]).ok_or_else(|| bad("DateTimeExtended"))? as i64
                }
                Json::Number(n) => n.as_i64().ok_or_else(|| bad("DateTimeExtended"))?,
                _ => return Err(bad("DateTimeExtended")),
            }),
            other => return err(format!("{tag}: unknown TTLV type `{other}`")),
        };
        Ok(Self {
            tag: tag.clone(),
            value,
        })
    }

    /// Parses a node from JSON text.
    pub fn parse(text: &[u8]) -> Result<Self, TtlvError> {
        check_shape(text, MAX_NODES, MAX_DEPTH)?;
        let json: Json = serde_json::from_slice(text).map_err(|e| TtlvError(e.to_string()))?;
        Self::from_json(&json)
    }

    /// Emits the node as the reference server does: keys in the order tag, type, value; no
    /// `type` on structures.
    pub fn to_json(&self) -> Json {
        let (kind, value) = match &self.value {
            Value::Structure(children) => (
                None,
                Json::Array(children.iter().map(Self::to_json).collect()),
            ),
            Value::Integer(v) => (Some("Integer"), json!(v)),
            Value::LongInteger(v) => (Some("LongInteger"), json!(format!("0x{v:016X}"))),
            Value::BigInteger(bytes) => {
                (Some("BigInteger"), json!(format!("0x{}", hex_upper(bytes))))
            }
            Value::Enumeration(Enumeration::Name(name)) => (Some("Enumeration"), json!(name)),
            Value::Enumeration(Enumeration::Code(code)) => {
                (Some("Enumeration"), json!(format!("0x{code:08X}")))
            }
            Value::Boolean(v) => (Some("Boolean"), json!(v)),
            Value::TextString(v) => (Some("TextString"), json!(v)),
            Value::ByteString(v) => (Some("ByteString"), json!(hex_upper(v))),
            Value::DateTime(t) => (Some("DateTime"), json!(format_datetime(*t))),
            Value::Interval(v) => (Some("Interval"), json!(v)),
            Value::DateTimeExtended(v) => (Some("DateTimeExtended"), json!(format!("0x{v:016X}"))),
        };
        let mut map = Map::new();
        map.insert("tag".into(), json!(self.tag));
        if let Some(kind) = kind {
            map.insert("type".into(), json!(kind));
        }
        map.insert("value".into(), value);
        Json::Object(map)
    }

    /// Compact JSON text, as sent on the wire.
    pub fn to_vec(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }

    /// The children of a structure (empty for other types).
    pub fn children(&self) -> &[Ttlv] {
        match &self.value {
            Value::Structure(children) => children,
            _ => &[],
        }
    }

    /// The first child with `tag`.
    pub fn child(&self, tag: &str) -> Option<&Ttlv> {
        self.children().iter().find(|c| c.tag == tag)
    }

    /// The uid a request names (its `UniqueIdentifier` text, at most 256 bytes), for the audit
    /// line of a refused or failed operation; empty when it names none.
    pub fn requested_uid(&self) -> &str {
        match self.child("UniqueIdentifier").map(|c| &c.value) {
            Some(Value::TextString(t)) => {
                let mut end = t.len().min(256);
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                &t[..end]
            }
            _ => "",
        }
    }

    /// Every child with `tag` (a repeated tag forms a list).
    pub fn all<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Ttlv> + 'a {
        self.children().iter().filter(move |c| c.tag == tag)
    }
}

/// RFC 3339 in UTC with `Z`, a fraction only when non-zero.
pub fn format_datetime(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    match t.nanosecond() {
        0 => format!("{base}Z"),
        ns => {
            let fraction = format!("{ns:09}");
            format!("{base}.{}Z", fraction.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: Json) -> Result<Ttlv, TtlvError> {
        Ttlv::from_json(&json)
    }

    #[test]
    fn emits_the_reference_formats() {
        let node = Ttlv::new(
            "S",
            Value::Structure(vec![
                Ttlv::new("L", Value::LongInteger(0)),
                Ttlv::new("B", Value::ByteString(vec![0x48, 0x65, 0xab])),
                Ttlv::new("E", Value::Enumeration(Enumeration::Code(7))),
                Ttlv::new(
                    "D",
                    Value::DateTime(
                        OffsetDateTime::from_unix_timestamp(1_795_384_600)
                            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    ),
                ),
            ]),
        );
        assert_eq!(
            String::from_utf8(node.to_vec()).unwrap_or_default(),
            r#"{"tag":"S","value":[{"tag":"L","type":"LongInteger","value":"0x0000000000000000"},{"tag":"B","type":"ByteString","value":"4865AB"},{"tag":"E","type":"Enumeration","value":"0x00000007"},{"tag":"D","type":"DateTime","value":"2026-11-22T21:56:40Z"}]}"#
        );
    }

    #[test]
    fn accepts_the_alternative_input_forms() {
        let int = parse(json!({"tag":"I","type":"Integer","value":"0x00000100"}));
        assert_eq!(int.map(|t| t.value), Ok(Value::Integer(256)));
        let long = parse(json!({"tag":"L","type":"LongInteger","value":5}));
        assert_eq!(long.map(|t| t.value), Ok(Value::LongInteger(5)));
        let bytes = parse(json!({"tag":"B","type":"ByteString","value":"4865ab"}));
        assert_eq!(
            bytes.map(|t| t.value),
            Ok(Value::ByteString(vec![0x48, 0x65, 0xab]))
        );
        let date = parse(json!({"tag":"D","type":"DateTime","value":"2026-11-22T23:56:40+02:00"}));
        assert_eq!(
            date.map(|t| t.to_json()["value"].clone()),
            Ok(json!("2026-11-22T21:56:40Z"))
        );
        let date = parse(json!({"tag":"D","type":"DateTime","value":"0x0000000000000001"}));
        assert_eq!(
            date.map(|t| t.to_json()["value"].clone()),
            Ok(json!("1970-01-01T00:00:01Z"))
        );
        let structure = parse(json!({"tag":"S","type":"Structure","value":[]}));
        assert_eq!(structure.map(|t| t.value), Ok(Value::Structure(vec![])));
    }

    #[test]
    fn bounds_nodes_and_depth_before_parsing() {
        let wide = format!("[{}]", [r#"{"tag":"a","value":"{[\""}"#; 11].join(","));
        assert_eq!(check_shape(wide.as_bytes(), 11, 4), Ok(()));
        assert!(check_shape(wide.as_bytes(), 10, 4).is_err_and(|e| e.0.contains("10 TTLV")));
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(Ttlv::parse(deep.as_bytes()).is_err_and(|e| e.0.contains("deeper")));
        let bomb = format!("[{}]", vec!["{}"; MAX_NODES + 1].join(","));
        assert!(Ttlv::parse(bomb.as_bytes()).is_err_and(|e| e.0.contains("TTLV nodes")));
    }

    #[test]
    fn refuses_what_the_reference_refuses() {
        assert!(
            parse(json!({"tag":"I","type":"Integer","value":"256"}))
                .is_err_and(|e| e.0.contains("should start with 0x"))
        );
        // A bad byte string is refused without echoing it (it may be key material).
        let secret = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEF";
        assert!(
            parse(json!({"tag":"Key","type":"ByteString","value":secret}))
                .is_err_and(|e| e.0.contains("ByteString in Key") && !e.0.contains("0011"))
        );
        assert!(
            parse(json!({"tag":"Key","type":"ByteString","value":[1, 2]}))
                .is_err_and(|e| !e.0.contains('1'))
        );
        assert!(
            parse(json!({"tag":"X","foo":1,"value":[]}))
                .is_err_and(|e| e.0.contains("unknown field `foo`"))
        );
        assert!(parse(json!({"tag":"I","type":"Integer","value":4_294_967_296_u64})).is_err());
        assert!(parse(json!({"tag":"Q","type":"Float","value":1})).is_err());
        assert!(Ttlv::parse(b"").is_err());
    }
}
