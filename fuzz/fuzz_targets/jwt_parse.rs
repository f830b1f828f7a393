//! kms-proxy's JWT front door on arbitrary text: splitting, base64url, header and claims JSON,
//! the algorithm rules, then the user-name rule on whatever names the claims carry. Never
//! panics; an accepted header never names `none` or an HMAC algorithm.
#![no_main]

use kms_proxy::auth::jwt::parse_unverified;
use kms_proxy::identity::check_user_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = parse_unverified(token) {
        let name = format!("{:?}", parsed.alg);
        assert!(!name.starts_with("HS"), "HMAC accepted: {name}");
        for claim in ["sub", "email"] {
            if let Some(user) = parsed.claims.get(claim).and_then(|v| v.as_str()) {
                if check_user_name(user, "admin").is_ok() {
                    assert!(user != "admin" && user != "*" && !user.starts_with(' '));
                    assert!(!user.chars().any(char::is_control));
                }
            }
        }
    }
});
