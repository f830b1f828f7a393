//! Binary TTLV (KMIP 2.1, section 9.1.1): the layout of a key value wrapped with
//! `EncodingOption TTLVEncoding`, the default of KMIP and of the reference CLI. Each item is a
//! 3-byte tag, a 1-byte type, a 4-byte big-endian length and the value padded to 8 bytes.
//!
//! Only what a wrapped `KeyValue` holds is known here: its material and the attributes of a
//! key (see [`tags`]). An unknown tag, or an enumeration name without a known code, is an
//! error that names it — never skipped.

use time::OffsetDateTime;

use crate::error::KmsError;
use crate::kmip::tags;
use crate::kmip::text::{MAX_DEPTH, MAX_NODES};
use crate::kmip::ttlv::{Enumeration, Ttlv, Value};

const STRUCTURE: u8 = 0x01;
const INTEGER: u8 = 0x02;
const LONG_INTEGER: u8 = 0x03;
const BIG_INTEGER: u8 = 0x04;
const ENUMERATION: u8 = 0x05;
const BOOLEAN: u8 = 0x06;
const TEXT_STRING: u8 = 0x07;
const BYTE_STRING: u8 = 0x08;
const DATE_TIME: u8 = 0x09;
const INTERVAL: u8 = 0x0A;
const DATE_TIME_EXTENDED: u8 = 0x0B;

fn codec(message: String) -> KmsError {
    KmsError::Codec(format!("binary TTLV: {message}"))
}

/// Encodes `node` (and its children).
pub fn encode(node: &Ttlv) -> Result<Vec<u8>, KmsError> {
    let mut out = Vec::new();
    write(node, &mut out)?;
    Ok(out)
}

fn write(node: &Ttlv, out: &mut Vec<u8>) -> Result<(), KmsError> {
    let tag = tags::number(&node.tag)
        .ok_or_else(|| codec(format!("no tag number is known for {}", node.tag)))?;
    out.extend_from_slice(&tag.to_be_bytes()[1..]);
    let start = out.len();
    let (kind, body): (u8, Vec<u8>) = match &node.value {
        Value::Structure(children) => {
            out.push(STRUCTURE);
            out.extend_from_slice(&[0; 4]);
            for child in children {
                write(child, out)?;
            }
            let len = u32::try_from(out.len() - start - 5)
                .map_err(|_| codec(format!("{} is too long", node.tag)))?;
            out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
            return Ok(());
        }
        Value::Integer(v) => (INTEGER, v.to_be_bytes().to_vec()),
        Value::LongInteger(v) => (LONG_INTEGER, v.to_be_bytes().to_vec()),
        Value::BigInteger(v) => (BIG_INTEGER, sign_extend(v)),
        Value::Enumeration(e) => {
            let code = match e {
                Enumeration::Code(code) => *code,
                Enumeration::Name(name) => tags::code(&node.tag, name)
                    .ok_or_else(|| codec(format!("no code is known for {} {name}", node.tag)))?,
            };
            (ENUMERATION, code.to_be_bytes().to_vec())
        }
        Value::Boolean(v) => (BOOLEAN, u64::from(*v).to_be_bytes().to_vec()),
        Value::TextString(v) => (TEXT_STRING, v.as_bytes().to_vec()),
        Value::ByteString(v) => (BYTE_STRING, v.clone()),
        Value::DateTime(t) => (DATE_TIME, t.unix_timestamp().to_be_bytes().to_vec()),
        Value::Interval(v) => (INTERVAL, v.to_be_bytes().to_vec()),
        Value::DateTimeExtended(v) => (DATE_TIME_EXTENDED, v.to_be_bytes().to_vec()),
    };
    let len = u32::try_from(body.len()).map_err(|_| codec(format!("{} is too long", node.tag)))?;
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    out.resize(out.len() + padding(body.len()), 0);
    Ok(())
}

/// A big integer's bytes, sign-extended to a multiple of 8 bytes as KMIP requires.
fn sign_extend(v: &[u8]) -> Vec<u8> {
    let fill = if v.first().is_some_and(|b| b & 0x80 != 0) {
        0xFF
    } else {
        0
    };
    let mut out = vec![fill; padding(v.len())];
    out.extend_from_slice(v);
    out
}

fn padding(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// Decodes one item filling all of `bytes`, within the request bounds (nodes, depth).
pub fn decode(bytes: &[u8]) -> Result<Ttlv, KmsError> {
    let mut nodes = 0;
    let (node, used) = read(bytes, 0, &mut nodes)?;
    if used != bytes.len() {
        return Err(codec(format!(
            "{} bytes follow the item",
            bytes.len() - used
        )));
    }
    Ok(node)
}

fn read(bytes: &[u8], depth: usize, nodes: &mut usize) -> Result<(Ttlv, usize), KmsError> {
    *nodes += 1;
    if *nodes > MAX_NODES || depth > MAX_DEPTH {
        return Err(codec(
            "more items, or deeper, than a request may hold".into(),
        ));
    }
    let header = bytes
        .get(..8)
        .ok_or_else(|| codec("truncated item header".into()))?;
    let number = u32::from_be_bytes([0, header[0], header[1], header[2]]);
    let tag = tags::name(number).ok_or_else(|| codec(format!("unknown tag 0x{number:06X}")))?;
    let kind = header[3];
    let len = usize::try_from(u32::from_be_bytes([
        header[4], header[5], header[6], header[7],
    ]))
    .map_err(|_| codec(format!("{tag}: length too large")))?;
    let body = bytes
        .get(8..8usize.saturating_add(len))
        .ok_or_else(|| codec(format!("{tag}: truncated value")))?;
    let fixed = |want: usize| -> Result<[u8; 8], KmsError> {
        if len != want {
            return Err(codec(format!("{tag}: length {len}, expected {want}")));
        }
        let mut buf = [0u8; 8];
        buf[8 - want..].copy_from_slice(body);
        Ok(buf)
    };
    let value = match kind {
        STRUCTURE => {
            let mut children = Vec::new();
            let mut at = 0;
            while at < body.len() {
                let (child, used) = read(&body[at..], depth + 1, nodes)?;
                children.push(child);
                at += used;
            }
            Value::Structure(children)
        }
        INTEGER => Value::Integer(i64::from_be_bytes(fixed(4)?) as i32),
        LONG_INTEGER => Value::LongInteger(i64::from_be_bytes(fixed(8)?)),
        BIG_INTEGER => Value::BigInteger(body.to_vec()),
        ENUMERATION => {
            let code = u64::from_be_bytes(fixed(4)?) as u32;
            Value::Enumeration(match tags::code_name(tag, code) {
                Some(name) => Enumeration::Name(name.to_owned()),
                None => Enumeration::Code(code),
            })
        }
        BOOLEAN => match u64::from_be_bytes(fixed(8)?) {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            other => return Err(codec(format!("{tag}: boolean {other}"))),
        },
        TEXT_STRING => Value::TextString(
            String::from_utf8(body.to_vec())
                .map_err(|_| codec(format!("{tag}: text is not UTF-8")))?,
        ),
        BYTE_STRING => Value::ByteString(body.to_vec()),
        DATE_TIME => Value::DateTime(
            OffsetDateTime::from_unix_timestamp(i64::from_be_bytes(fixed(8)?))
                .map_err(|_| codec(format!("{tag}: date out of range")))?,
        ),
        INTERVAL => Value::Interval(u64::from_be_bytes(fixed(4)?) as u32),
        DATE_TIME_EXTENDED => Value::DateTimeExtended(i64::from_be_bytes(fixed(8)?)),
        other => return Err(codec(format!("{tag}: unknown type 0x{other:02X}"))),
    };
    let used = 8 + len + padding(len);
    if bytes.len() < used {
        return Err(codec(format!("{tag}: truncated padding")));
    }
    Ok((Ttlv::new(tag, value), used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmip::build::{boolean, bytes, date, enumeration, int, structure, text};

    /// The reference server's wrapped key value of exchange 0037 (unwrapped with openssl
    /// `-id-aes256-wrap` under the KEK of 0051), re-encoded: identical bytes.
    const REFERENCE: &str = "42004501000001C04200430800000020163BE40B034AC35CA5B865DE78160632D37135D9C6C2B5C1D490CBC104D5B63242012501000001904200010900000008000000006B0BB599420121060000000800000000000000004200280500000004000000030000000042002A0200000004000001000000000042002C02000000040000083C000000004200340100000048420038050000000400000006000000004200350800000020DA323C76F43FBFB62C0AF195805E60C5F72E451A75ECEF76B0C3A12D3AEAAC5B420042050000000400000001000000004200390900000008000000006B0BB599420042050000000400000007000000004200480900000008000000006B0BB599420057050000000400000002000000004200BC0900000008000000006B0BB59942008D05000000040000000200000000420094070000002436326464616564632D663138662D343130622D626539662D62366564636336316665653600000000420008010000005842009D0700000007636F736D69616E0042000A0700000003746167000000000042000B070000002B5B2274312D636170747572652D34383835222C2274322D636170747572652D34383835222C225F6B6B225D0000000000";

    #[test]
    fn the_reference_key_value_decodes_and_encodes_back_to_the_same_bytes() {
        let raw = crate::kmip::text::decode_hex(REFERENCE).unwrap_or_default();
        let node = decode(&raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(node.tag, "KeyValue");
        let material = node.child("KeyMaterial").map(|m| m.value.clone());
        assert!(matches!(material, Some(Value::ByteString(k)) if k.len() == 32 && k[0] == 0x16));
        let attributes = node.child("Attributes").map(Ttlv::children).unwrap_or(&[]);
        let names: Vec<&str> = attributes.iter().map(|a| a.tag.as_str()).collect();
        assert!(
            names.contains(&"Digest") && names.contains(&"Attribute"),
            "{names:?}"
        );
        let state = attributes.iter().find(|a| a.tag == "State");
        assert_eq!(
            state.map(|s| &s.value),
            Some(&Value::Enumeration(Enumeration::Name("Active".into())))
        );
        assert_eq!(encode(&node).ok(), Some(raw));
    }

    #[test]
    fn every_type_round_trips_and_bad_input_is_named() {
        let node = structure(
            "KeyValue",
            vec![
                bytes("KeyMaterial", &[1, 2, 3]),
                structure(
                    "Attributes",
                    vec![
                        int("CryptographicLength", -5),
                        enumeration("CryptographicAlgorithm", "ChaCha20"),
                        boolean("Sensitive", true),
                        text("UniqueIdentifier", "abc"),
                        date("ActivationDate", 0),
                        Ttlv::new("Comment", Value::LongInteger(-2)),
                        Ttlv::new("LeaseTime", Value::Interval(7)),
                    ],
                ),
            ],
        );
        let raw = encode(&node).unwrap_or_default();
        assert_eq!(raw.len() % 8, 0);
        let unknown_tag = encode(&text("NoSuchTag", "x"));
        assert!(unknown_tag.is_err_and(|e| e.to_string().contains("NoSuchTag")));
        assert_eq!(decode(&raw).ok(), Some(node));
        // Every failure names what is wrong.
        let err = |b: &[u8]| decode(b).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&raw[..raw.len() - 8]).contains("truncated"));
        assert!(err(&[0x42, 0xFF, 0xFF, 1, 0, 0, 0, 0]).contains("unknown tag 0x42FFFF"));
        let mut extra = raw.clone();
        extra.extend_from_slice(&[0; 8]);
        assert!(err(&extra).contains("follow"));
        let unknown = encode(&enumeration("CryptographicAlgorithm", "NoSuch"));
        assert!(unknown.is_err_and(|e| e.to_string().contains("NoSuch")));
        // An enumeration code without a name stays a code (refused later, by name).
        let mut coded = encode(&enumeration("State", "Active")).unwrap_or_default();
        coded[11] = 0x77;
        assert_eq!(
            decode(&coded).ok().map(|n| n.value),
            Some(Value::Enumeration(Enumeration::Code(0x77)))
        );
        // Depth is bounded.
        let mut deep = Ttlv::new("KeyValue", Value::Structure(vec![]));
        for _ in 0..(MAX_DEPTH + 2) {
            deep = structure("KeyValue", vec![deep]);
        }
        let deep = encode(&deep).unwrap_or_default();
        assert!(err(&deep).contains("deeper"));
    }
}
