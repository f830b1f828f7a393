//! The access line: one per request, the audit record of the authentication decision. It is
//! the one line logged for every request, so it is formatted here directly (no fmt layer, no
//! field visitor, one buffer per thread) and handed to the log writer in one piece. It reads
//! exactly like an event logged with `target: "access"`: same fields, same order, same JSON
//! object or text line, and `KMS_LOG` turns it off like any other info event (`access=warn`).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use kms_common::text::push_decimal;

/// A field's name as it precedes its value, in JSON (`,"name":`) and in text (` name=`), each
/// written with one copy.
#[derive(Clone, Copy)]
struct Key {
    json: &'static str,
    text: &'static str,
}

macro_rules! key {
    ($name:literal) => {
        Key {
            json: concat!(",\"", $name, "\":"),
            text: concat!(" ", $name, "="),
        }
    };
}

/// Who made the request and how that was decided; absent for requests the proxy answers
/// before authentication (its own public keys).
pub struct Decision<'a> {
    pub user: &'a str,
    pub auth_method: &'static str,
    pub reason: &'static str,
}

/// One request's access line.
pub struct AccessLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub decision: Option<Decision<'a>>,
    /// The client's IP address.
    pub peer: &'a str,
    pub request_id: &'a str,
    pub outcome: &'static str,
}

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// Whether access lines are wanted (`KMS_LOG` allows info events of target `access`).
fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

impl AccessLine<'_> {
    /// Formats and writes the line, unless the filter turns access lines off.
    pub fn log(&self) {
        if !enabled() {
            return;
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            self.format(line, SystemTime::now(), kms_common::log::json_format());
            kms_common::log::write_line(line.as_bytes());
            if line.capacity() > 16 * 1024 {
                *line = String::with_capacity(512);
            }
        });
    }

    /// The line as JSON (one flat object, as the fmt layer's JSON) or text, newline included.
    fn format(&self, out: &mut String, now: SystemTime, json: bool) {
        let mut f = Fields { out, json };
        if json {
            f.out.push_str("{\"timestamp\":\"");
            kms_common::timestamp::push_rfc3339(f.out, now);
            f.out
                .push_str("\",\"level\":\"INFO\",\"message\":\"request\"");
        } else {
            kms_common::timestamp::push_rfc3339(f.out, now);
            f.out.push_str("  INFO access: request");
        }
        f.plain(key!("method"), self.method);
        f.plain(key!("path"), self.path);
        f.number(key!("status"), u64::from(self.status));
        f.millis(key!("duration_ms"), self.duration);
        if let Some(decision) = &self.decision {
            f.plain(key!("user"), decision.user);
            f.quoted(key!("auth_method"), decision.auth_method);
            f.quoted(key!("reason"), decision.reason);
        }
        f.address(key!("peer"), self.peer);
        f.quoted(key!("request_id"), self.request_id);
        f.quoted(key!("outcome"), self.outcome);
        f.out.push_str(if json {
            ",\"target\":\"access\"}\n"
        } else {
            "\n"
        });
    }
}

/// Writes `name=value` (text) or `,"name":value` (JSON) pairs. In text, "plain" values are
/// written as they are and "quoted" ones quoted and escaped, as the fmt layer does for
/// `%value` and string fields; in JSON every string is a JSON string.
struct Fields<'a> {
    out: &'a mut String,
    json: bool,
}

impl Fields<'_> {
    fn name(&mut self, key: Key) {
        self.out
            .push_str(if self.json { key.json } else { key.text });
    }

    fn plain(&mut self, key: Key, value: &str) {
        self.name(key);
        if self.json {
            json_string(self.out, value);
        } else {
            self.out.push_str(value);
        }
    }

    fn quoted(&mut self, key: Key, value: &str) {
        self.name(key);
        if self.json {
            json_string(self.out, value);
        } else {
            let _ = write!(self.out, "{value:?}");
        }
    }

    /// An IP address's text: a JSON string in JSON, as it is in text (as the fmt layer
    /// writes `%peer`).
    fn address(&mut self, key: Key, ip: &str) {
        self.name(key);
        if self.json {
            json_string(self.out, ip);
        } else {
            self.out.push_str(ip);
        }
    }

    fn number(&mut self, key: Key, value: u64) {
        self.name(key);
        push_decimal(self.out, value, 0);
    }

    /// Milliseconds to the microsecond, as the shortest decimal (`0.39`, `12.0`).
    fn millis(&mut self, key: Key, duration: Duration) {
        self.name(key);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let (whole, mut fraction) = (micros / 1000, micros % 1000);
        let mut width = 3;
        while width > 1 && fraction % 10 == 0 {
            fraction /= 10;
            width -= 1;
        }
        push_decimal(self.out, whole, 0);
        self.out.push('.');
        push_decimal(self.out, fraction, width);
    }
}

/// `value` as a JSON string. Beyond what JSON requires (`"`, `\`, C0), DEL, C1 controls, line
/// and paragraph separators and bidirectional overrides are written as `\uXXXX` too: the line
/// stays valid JSON and needs no further escaping.
fn json_string(out: &mut String, value: &str) {
    out.push('"');
    // The common case: printable ASCII without a quote or a backslash, written as it is.
    if value.bytes().fold(true, |plain, b| {
        plain & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
    }) {
        out.push_str(value);
        out.push('"');
        return;
    }
    let mut plain = 0;
    for (i, c) in value.char_indices() {
        let escape = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let numeric = escape.is_none()
            && (c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'));
        if escape.is_none() && !numeric {
            continue;
        }
        out.push_str(&value[plain..i]);
        match escape {
            Some(text) => out.push_str(text),
            None => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
        }
        plain = i + c.len_utf8();
    }
    out.push_str(&value[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(decision: Option<Decision<'_>>, json: bool) -> String {
        let access = AccessLine {
            method: "POST",
            path: "/kmip/2_1",
            status: 200,
            duration: Duration::from_micros(1_390),
            decision,
            peer: "127.0.0.1",
            request_id: "0f1e",
            outcome: "forwarded",
        };
        let mut out = String::new();
        let when = std::time::UNIX_EPOCH + Duration::from_micros(1_798_761_599_000_042);
        access.format(&mut out, when, json);
        out
    }

    fn alice() -> Option<Decision<'static>> {
        Some(Decision {
            user: "alice \"a\"\u{202e}\n",
            auth_method: "jwt",
            reason: "verified",
        })
    }

    #[test]
    fn json_lines_are_one_flat_object_with_every_field() {
        let text = line(alice(), true);
        assert!(text.ends_with("}\n") && !text[..text.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["timestamp"], "2026-12-31T23:59:59.000042Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "request");
        assert_eq!(v["target"], "access");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/kmip/2_1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.39);
        assert_eq!(v["user"], "alice \"a\"\u{202e}\n");
        assert_eq!(v["auth_method"], "jwt");
        assert_eq!(v["reason"], "verified");
        assert_eq!(v["peer"], "127.0.0.1");
        assert_eq!(v["request_id"], "0f1e");
        assert_eq!(v["outcome"], "forwarded");
        // Nothing raw that a terminal or a line-based reader would act on.
        assert!(text.contains("\\u202e") && !text.contains('\u{202e}'));
        assert_eq!(
            kms_common::log::escape_event(text.as_bytes()),
            text.as_bytes()
        );
        let without = line(None, true);
        let v: serde_json::Value = serde_json::from_str(&without).expect("valid JSON");
        assert!(v.get("user").is_none() && v.get("reason").is_none());
    }

    #[test]
    fn text_lines_read_like_the_fmt_layer() {
        assert_eq!(
            line(None, false),
            "2026-12-31T23:59:59.000042Z  INFO access: request method=POST path=/kmip/2_1 \
             status=200 duration_ms=1.39 peer=127.0.0.1 request_id=\"0f1e\" \
             outcome=\"forwarded\"\n"
        );
        let with = line(alice(), false);
        assert!(
            with.contains(" user=alice \"a\"\u{202e}\n auth_method=\"jwt\" reason=\"verified\" ")
        );
        // The writer escapes what the text format leaves raw.
        let written = kms_common::log::escape_event(with.as_bytes()).into_owned();
        let written = String::from_utf8(written).expect("utf-8");
        assert!(written.contains("user=alice \"a\"\\u{202e}\\n auth_method="));
    }

    /// What `write` puts in a line through [`Fields`], in JSON or text.
    fn field(json: bool, write: impl FnOnce(&mut Fields<'_>)) -> String {
        let mut out = String::new();
        write(&mut Fields {
            out: &mut out,
            json,
        });
        out
    }

    #[test]
    fn peers_are_quoted_in_json_only() {
        let peer = |json| field(json, |f| f.address(key!("peer"), "::1"));
        assert_eq!(peer(true), ",\"peer\":\"::1\"");
        assert_eq!(peer(false), " peer=::1");
    }

    #[test]
    fn plain_and_escaped_json_strings() {
        for value in [
            "/kmip/2_1",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "\u{7f}",
            "é",
        ] {
            let mut out = String::new();
            json_string(&mut out, value);
            let back: String = serde_json::from_str(&out).expect("valid JSON string");
            assert_eq!(back, value);
        }
    }

    #[test]
    fn milliseconds_are_the_shortest_decimal() {
        let ms = |micros| {
            field(false, |f| {
                f.millis(key!("d"), Duration::from_micros(micros))
            })
        };
        assert_eq!(ms(390), " d=0.39");
        assert_eq!(ms(12_000), " d=12.0");
        assert_eq!(ms(1), " d=0.001");
        assert_eq!(ms(123_456_789), " d=123456.789");
    }
}
