//! Numbers written into a line digit by digit, without the formatting machinery (`write!`):
//! this runs for every request (the access line's numbers and timestamp), where `core::fmt`
//! costs several times as many instructions.

/// Appends `value` in decimal, with leading zeros up to `width` digits (at most 20, the
/// digits of `u64::MAX`). The digits are gathered on the stack and appended in one piece.
pub fn push_decimal(out: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    // ASCII digits: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_match_the_formatter() {
        for (value, width) in [
            (0, 0),
            (0, 3),
            (7, 2),
            (42, 1),
            (999_999, 6),
            (1_000, 6),
            (5, 20),
            (u64::MAX, 20),
        ] {
            let mut out = String::new();
            push_decimal(&mut out, value, width);
            assert_eq!(out, format!("{value:0width$}"));
        }
        let mut out = String::new();
        push_decimal(&mut out, u64::MAX, 0);
        assert_eq!(out, u64::MAX.to_string());
    }
}
