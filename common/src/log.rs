//! Log output for both binaries. Each event is written to stderr in one piece, and every
//! control character inside it (C0, DEL, C1), line and paragraph separators and bidirectional
//! overrides are escaped, in the text and the JSON format alike: no logged value (a uid, a tag,
//! a user name, an error a peer provoked) can start a line of its own, forge an `audit` line or
//! hide text in a terminal. Only the newline that ends the event is written as it is.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// A [`MakeWriter`] for `tracing_subscriber::fmt` that escapes as described above.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedStderr;

/// One event's writer (the fmt layer formats an event, then writes it with one `write_all`).
#[derive(Debug)]
pub struct EscapedLine;

impl<'a> MakeWriter<'a> for EscapedStderr {
    type Writer = EscapedLine;

    fn make_writer(&'a self) -> Self::Writer {
        EscapedLine
    }
}

impl Write for EscapedLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::stderr().lock().write_all(&escape_event(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// True for characters that must not reach a log line raw.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// One formatted event with its inner control characters escaped (`\n`, `\r`, `\t`,
/// `\u{..}`); its final newline, if any, is kept.
pub fn escape_event(event: &[u8]) -> Cow<'_, [u8]> {
    let (body, newline) = match event.strip_suffix(b"\n") {
        Some(body) => (body, true),
        None => (event, false),
    };
    let text = String::from_utf8_lossy(body);
    if !text.chars().any(needs_escape) && matches!(text, Cow::Borrowed(_)) {
        return Cow::Borrowed(event);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    if newline {
        out.push('\n');
    }
    Cow::Owned(out.into_bytes())
}

/// Installs the global subscriber every binary uses: the `KMS_LOG` filter (default `info`),
/// escaped lines on stderr, JSON (one flat object per event) or plain text.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KMS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(EscapedStderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_ansi(false).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_stays_one_line() {
        let clean = b"INFO audit: user=alice uid=k1\n";
        assert!(matches!(escape_event(clean), Cow::Borrowed(_)));
        let forged =
            "INFO audit: uid=x\n2026-01-01T00:00:00Z INFO audit: user=admin outcome=success\n";
        let out =
            String::from_utf8(escape_event(forged.as_bytes()).into_owned()).unwrap_or_default();
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(out.ends_with('\n'));
        assert!(out.contains("uid=x\\n2026"), "{out}");
        let hidden = "user=\u{1b}[2Kadmin\r\u{85}\u{2028}\u{202e}x\t\u{7f}";
        let out =
            String::from_utf8(escape_event(hidden.as_bytes()).into_owned()).unwrap_or_default();
        assert_eq!(
            out,
            "user=\\u{1b}[2Kadmin\\r\\u{85}\\u{2028}\\u{202e}x\\t\\u{7f}"
        );
        let invalid = b"bytes \xff\x00 end\n";
        let out = escape_event(invalid);
        assert!(
            out.ends_with(b"\\u{0} end\n"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
}
