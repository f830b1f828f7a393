//! Numbers and addresses written into a line digit by digit, without the formatting
//! machinery (`write!`): these run for every request (the access line, the forwarding
//! headers), where `core::fmt` costs several times as many instructions.

use std::net::IpAddr;

/// Appends `value` in decimal, with leading zeros up to `width` digits.
pub fn push_decimal(out: &mut String, value: u64, width: usize) {
    let mut digits = [0u8; 20];
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
    for _ in digits.len() - start..width {
        out.push('0');
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

/// Appends `ip` as its `Display` writes it (an IPv4 address octet by octet; IPv6, with its
/// shortening rules, through `Display`).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u64::from(octet), 0);
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_match_the_formatter() {
        for (value, width) in [(0, 0), (0, 3), (7, 2), (42, 1), (999_999, 6), (1_000, 6)] {
            let mut out = String::new();
            push_decimal(&mut out, value, width);
            assert_eq!(out, format!("{value:0width$}"));
        }
        let mut out = String::new();
        push_decimal(&mut out, u64::MAX, 0);
        assert_eq!(out, u64::MAX.to_string());
    }

    #[test]
    fn addresses_match_the_formatter() {
        for ip in [
            IpAddr::from([10, 0, 255, 7]),
            IpAddr::from([0, 0, 0, 0]),
            IpAddr::from([255, 255, 255, 255]),
            "::1".parse().expect("v6"),
            "2001:db8::ff00:42:8329".parse().expect("v6"),
            "::ffff:10.1.2.3".parse().expect("v4-mapped"),
        ] {
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }
}
