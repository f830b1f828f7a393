//! Log output for both binaries. Each event is formatted in one piece, and every control
//! character inside it (C0, DEL, C1), line and paragraph separators and bidirectional overrides
//! are escaped, in the text and the JSON format alike: no logged value (a uid, a tag, a user
//! name, an error a peer provoked) can start a line of its own, forge an `audit` line or hide
//! text in a terminal. Only the newline that ends the event is written as it is.
//!
//! Events do not cost a system call each: they are appended to a buffer that one thread of its
//! own writes to stderr, everything that gathered in one `write`: a line logged when nothing
//! was written for 2 ms is written at once, and while lines keep coming they are written every
//! 2 ms — every 10 ms once a write carries 4 KiB or more (a few thousand lines a second), until
//! one carries less — so that under load each call writes tens to hundreds of lines for one
//! wake-up of the writer, not one per line. A line waits at most about 2 ms, 10 ms under load.
//! The buffer is bounded
//! ([`MAX_PENDING`]): when stderr cannot keep up, whole lines are dropped, never silently —
//! [`dropped_lines`] counts them and each binary exports the count
//! (`kms_proxy_log_lines_dropped_total`, `kms_core_log_lines_dropped_total`,
//! `kms_plugin_log_lines_dropped_total`). The [`LogGuard`] `init` returns writes what is left when the
//! program ends.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, Once, OnceLock, PoisonError};
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;

/// The most bytes waiting for stderr; a line that would go beyond is dropped and counted.
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

static SINK: OnceLock<Sink> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static JSON: AtomicBool = AtomicBool::new(false);

/// Whether [`init`] chose JSON lines (else text), for code that formats its own lines.
pub fn json_format() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Writes one line formatted by the caller (ending in a newline) the way every event is
/// written: escaped, through the buffer and the writer thread, dropped and counted when full.
/// For the hottest lines (the proxy's access line), formatted without the fmt layer.
pub fn write_line(line: &[u8]) {
    sink().push(&escape_event(line));
}

/// Lines dropped because the buffer was full (stderr slower than the logging), since start.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closed: bool,
    /// The writer sleeps on the condition variable (so a new line must wake it).
    idle: bool,
}

/// The least time between two writes: lines that arrive sooner after a write gather until
/// then, so there is one `write` (and one wake-up) per interval under load, not one per line;
/// also the longest a line waits.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// The same under load: after a write of at least [`BUSY_WRITE`] bytes. Each write cycle (the
/// writer's sleep and wake-up, the `write` and the file's metadata) costs tens of
/// microseconds whatever it carries; at 7,000 lines a second the writer's CPU per line was
/// 2.5–3.4 µs with 2 ms, 1.2–1.9 µs with 5 ms, 0.6–1.3 µs with 10 ms.
const GATHER_BUSY: std::time::Duration = std::time::Duration::from_millis(10);

/// A write this large means lines are coming fast (4 KiB in 2 ms: about 6,000 access lines a
/// second to switch to [`GATHER_BUSY`], 4 KiB in 10 ms, about 1,200, to stay there).
const BUSY_WRITE: usize = 4096;

/// How long lines gather after a write of `written` bytes.
fn gather_after(written: usize) -> std::time::Duration {
    if written >= BUSY_WRITE {
        GATHER_BUSY
    } else {
        GATHER
    }
}

/// The buffer between the threads that log and the one that writes.
struct Sink {
    pending: Mutex<Pending>,
    wake: Condvar,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Sink {
    fn start() -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            writer: Mutex::new(None),
        }
    }

    /// Appends one whole line, or counts it dropped. Wakes the writer only when it sleeps
    /// waiting for lines (otherwise it is gathering or writing and will find this one): no
    /// system call per line.
    fn push(&self, line: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.closed {
            drop(pending);
            // After the guard's flush (the last lines of a process): straight to stderr.
            let _ = io::stderr().lock().write_all(line);
            return;
        }
        if pending.bytes.len() + line.len() > MAX_PENDING {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.bytes.extend_from_slice(line);
        let wake = std::mem::take(&mut pending.idle);
        drop(pending);
        if wake {
            self.wake.notify_one();
        }
    }

    /// The writer thread: takes everything pending and writes it in one go, until closed and
    /// empty. A line is written at once when the last write is older than the gathering time
    /// ([`gather_after`] that write); otherwise lines gather until then.
    fn write_loop(&self) {
        let mut spare = Vec::new();
        let mut last_write: Option<std::time::Instant> = None;
        let mut gather = GATHER;
        loop {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            while pending.bytes.is_empty() && !pending.closed {
                pending.idle = true;
                pending = self
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            pending.idle = false;
            if pending.bytes.is_empty() {
                return;
            }
            // Lines keep coming (the last write was less than `gather` ago): let them gather
            // until `gather` after it, so that under load the writer wakes and writes once per
            // `gather`, not once per line.
            let since = last_write.map_or(gather, |at| at.elapsed());
            if since < gather && !pending.closed && pending.bytes.len() < MAX_PENDING / 4 {
                drop(pending);
                std::thread::sleep(gather - since);
                pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::swap(&mut pending.bytes, &mut spare);
            drop(pending);
            // A write error (stderr closed) leaves nothing else to do with the lines.
            let _ = io::stderr().lock().write_all(&spare);
            last_write = Some(std::time::Instant::now());
            gather = gather_after(spare.len());
            spare.clear();
            // Keep a big buffer from a burst only while it is in use.
            if spare.capacity() > 1024 * 1024 {
                spare = Vec::new();
            }
        }
    }

    /// Writes what is pending and stops the writer; later lines go straight to stderr.
    fn close(&self) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.closed = true;
            pending.idle = false;
        }
        self.wake.notify_one();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// The sink, its writer thread started on first use. If no thread can be started, lines go
/// straight to stderr.
fn sink() -> &'static Sink {
    static STARTED: Once = Once::new();
    let sink = SINK.get_or_init(Sink::start);
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || sink.write_loop());
        match spawned {
            Ok(handle) => {
                *sink.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
            }
            Err(_) => {
                sink.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .closed = true;
            }
        }
    });
    sink
}

/// Returned by [`init`]: dropping it (at the end of `main`) writes every pending line.
#[must_use = "keep it until the program ends, or the last lines may be lost"]
#[derive(Debug)]
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        flush();
    }
}

/// Writes every pending line and stops the writer thread; lines logged afterwards are written
/// directly. Called by [`LogGuard`]; call it before `std::process::exit`.
pub fn flush() {
    if let Some(sink) = SINK.get() {
        sink.close();
    }
}

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
        sink().push(&escape_event(buf));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
    // The common case: printable ASCII only, nothing to do (checked without an early exit,
    // which the compiler turns into a few wide comparisons).
    if body
        .iter()
        .fold(true, |plain, &b| plain & (0x20..0x7f).contains(&b))
    {
        return Cow::Borrowed(event);
    }
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
/// escaped lines on stderr (through the writer thread), JSON (one flat object per event) or
/// plain text. Keep the guard until the program ends.
pub fn init(json: bool) -> LogGuard {
    JSON.store(json, Ordering::Relaxed);
    sink();
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
    LogGuard(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_drops_whole_lines_and_counts_them() {
        // A sink whose writer never runs: stderr "blocked".
        let sink = Sink::start();
        let mut line = vec![b'x'; 999];
        line.push(b'\n');
        let fits = MAX_PENDING / line.len();
        let before = dropped_lines();
        for _ in 0..fits + 7 {
            sink.push(&line);
        }
        assert_eq!(dropped_lines() - before, 7);
        let pending = sink.pending.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(pending.bytes.len(), fits * line.len(), "whole lines only");
    }

    #[test]
    fn the_writer_writes_what_was_pending_when_closed() {
        let sink: &'static Sink = Box::leak(Box::new(Sink::start()));
        sink.push(b"first\n");
        let handle = std::thread::spawn(move || sink.write_loop());
        *sink.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        sink.push(b"second\n");
        sink.close();
        let pending = sink.pending.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(pending.closed && pending.bytes.is_empty(), "all written");
        assert!(
            sink.writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none()
        );
    }

    #[test]
    fn lines_gather_longer_only_under_load() {
        // A few lines at a time (a person, a test): each waits at most 2 ms.
        assert_eq!(gather_after(0), GATHER);
        assert_eq!(gather_after(3 * 400), GATHER);
        // Thousands of lines a second: fewer, larger writes.
        assert_eq!(gather_after(BUSY_WRITE), GATHER_BUSY);
        assert_eq!(gather_after(MAX_PENDING), GATHER_BUSY);
        assert!(GATHER < GATHER_BUSY && GATHER_BUSY <= std::time::Duration::from_millis(10));
    }

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
