//! kms-proxy's configuration loader on arbitrary TOML text (defaults underneath, as with
//! `--config`): never panics; every refusal names what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = kms_proxy::config::from_toml(text) {
        assert!(!e.to_string().is_empty());
    }
});
