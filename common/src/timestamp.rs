//! Timestamps in log lines, as tracing-subscriber's fmt layer writes them, for lines the
//! project formats itself (`crate::log::write_line`).

use std::cell::RefCell;

use crate::text::push_decimal;

thread_local! {
    /// The second this thread formatted last, and its text up to the fraction
    /// (`2026-11-30T00:38:52.`): the lines logged within one second share it.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `now` as the fmt layer writes it: RFC 3339, UTC, microseconds
/// (`2026-11-30T00:38:52.397058Z`). Written digit by digit (no formatting machinery: this runs
/// for every access line), the date and time of day once per second and thread.
pub fn push_rfc3339(out: &mut String, now: std::time::SystemTime) {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let cached = SECOND.try_with(|second| {
        let Ok(mut second) = second.try_borrow_mut() else {
            return false;
        };
        let (at, text) = &mut *second;
        if *at != secs {
            text.clear();
            push_second(text, secs);
            *at = secs;
        }
        out.push_str(text);
        true
    });
    if cached != Ok(true) {
        // The thread is ending (its cache is gone): written in full.
        push_second(out, secs);
    }
    push_decimal(out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SS.`.
fn push_second(out: &mut String, secs: u64) {
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    push_decimal(out, year, 4);
    out.push('-');
    push_decimal(out, month, 2);
    out.push('-');
    push_decimal(out, day, 2);
    out.push('T');
    push_decimal(out, of_day / 3600, 2);
    out.push(':');
    push_decimal(out, of_day / 60 % 60, 2);
    out.push(':');
    push_decimal(out, of_day % 60, 2);
    out.push('.');
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let at = |secs: u64, micros: u64| {
            let mut out = String::new();
            let when = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(secs)
                + std::time::Duration::from_micros(micros);
            push_rfc3339(&mut out, when);
            out
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        // A leap day, a century leap year, the last second of a year.
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_798_761_599, 999_999), "2026-12-31T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        // The same second again (its text reused), then another (written anew).
        assert_eq!(at(4_107_542_400, 31), "2100-03-01T00:00:00.000031Z");
        assert_eq!(at(4_107_542_401, 0), "2100-03-01T00:00:01.000000Z");
        assert_eq!(at(0, 999_999), "1970-01-01T00:00:00.999999Z");
    }
}
