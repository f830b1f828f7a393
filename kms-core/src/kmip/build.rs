//! Building response nodes: one short constructor per TTLV type.

use time::OffsetDateTime;

use crate::kmip::ttlv::{Enumeration, Ttlv, Value};

pub fn text(tag: &str, v: &str) -> Ttlv {
    Ttlv::new(tag, Value::TextString(v.to_owned()))
}

pub fn enumeration(tag: &str, v: &str) -> Ttlv {
    Ttlv::new(tag, Value::Enumeration(Enumeration::Name(v.to_owned())))
}

pub fn int(tag: &str, v: i32) -> Ttlv {
    Ttlv::new(tag, Value::Integer(v))
}

pub fn long(tag: &str, v: i64) -> Ttlv {
    Ttlv::new(tag, Value::LongInteger(v))
}

/// An Integer count (saturating: no response holds more than `i32::MAX` items).
pub fn count(tag: &str, n: usize) -> Ttlv {
    int(tag, i32::try_from(n).unwrap_or(i32::MAX))
}

pub fn bytes(tag: &str, v: &[u8]) -> Ttlv {
    Ttlv::new(tag, Value::ByteString(v.to_vec()))
}

pub fn boolean(tag: &str, v: bool) -> Ttlv {
    Ttlv::new(tag, Value::Boolean(v))
}

pub fn interval(tag: &str, v: u32) -> Ttlv {
    Ttlv::new(tag, Value::Interval(v))
}

/// A DateTime from Unix seconds.
pub fn date(tag: &str, secs: i64) -> Ttlv {
    Ttlv::new(
        tag,
        Value::DateTime(
            OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        ),
    )
}

pub fn structure(tag: &str, children: Vec<Ttlv>) -> Ttlv {
    Ttlv::new(tag, Value::Structure(children))
}
