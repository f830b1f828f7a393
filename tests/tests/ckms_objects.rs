//! `ckms` commands for objects other than plain keys, end to end through the stack: secret
//! data, opaque objects, attributes, MAC, key derivation, wrapped export and import, local
//! wrap and unwrap, rotation policy, and the chunked envelope. Results are checked with
//! openssl where it can compute the same thing.

use anyhow::{Result, ensure};
use base64::Engine;
use kms_tests::ckms::{Ckms, pinned_front, uid};
use kms_tests::openssl;
use kms_tests::stack::Stack;
use serde_json::Value;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `ckms --json args` and returns `unique_identifier`.
fn created(ckms: &Ckms, args: &[&str]) -> Result<String> {
    let id = uid(&ckms.json(args)?);
    ensure!(!id.is_empty(), "ckms {args:?}: no unique_identifier");
    Ok(id)
}

fn path(ckms: &Ckms, name: &str) -> String {
    ckms.path(name).display().to_string()
}

/// The clear bytes of the key `id`, exported raw to `name`.
fn raw_key(ckms: &Ckms, id: &str, name: &str) -> Result<Vec<u8>> {
    let file = path(ckms, name);
    ckms.json(&["sym", "keys", "export", "-k", id, "-f", "raw", &file])?;
    Ok(std::fs::read(&file)?)
}

fn secret_data_and_opaque_objects(ckms: &Ckms) -> Result<()> {
    let secret = created(
        ckms,
        &[
            "secret-data",
            "create",
            "--value",
            "s3cret!",
            "-t",
            "cli-sd",
        ],
    )?;
    let out = path(ckms, "secret.raw");
    ckms.json(&["secret-data", "export", "-k", &secret, "-f", "raw", &out])?;
    assert_eq!(std::fs::read(&out)?, b"s3cret!");
    // The KMS makes a random seed; base64 export decodes to 32 bytes.
    let seed = created(ckms, &["secret-data", "create", "--type", "seed"])?;
    let b64 = path(ckms, "seed.b64");
    ckms.json(&["secret-data", "export", "-k", &seed, "-f", "base64", &b64])?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(std::fs::read(&b64)?)?;
    assert_eq!(bytes.len(), 32);
    // json-ttlv out, imported back under a new id, same value.
    let json = path(ckms, "secret.json");
    ckms.json(&["secret-data", "export", "-k", &secret, &json])?;
    let copy = created(ckms, &["secret-data", "import", &json, "sd-copy"])?;
    assert_eq!(copy, "sd-copy");
    let back = path(ckms, "copy.raw");
    ckms.json(&["secret-data", "export", "-k", &copy, "-f", "raw", &back])?;
    assert_eq!(std::fs::read(&back)?, b"s3cret!");
    // A key file is not secret data; a key uid is not one either.
    let key = created(ckms, &["sym", "keys", "create"])?;
    let key_json = path(ckms, "key.json");
    ckms.json(&["sym", "keys", "export", "-k", &key, &key_json])?;
    let err = ckms.fails(&["secret-data", "import", &key_json])?;
    assert!(
        err.contains("holds a SymmetricKey, not a SecretData"),
        "{err}"
    );
    let err = ckms.fails(&["secret-data", "revoke", "-k", &key, "test"])?;
    assert!(err.contains("is not a SecretData"), "{err}");
    ckms.json(&["secret-data", "revoke", "-k", &secret, "done"])?;
    ckms.json(&["secret-data", "destroy", "-k", &secret, "--remove"])?;
    let err = ckms.fails(&["secret-data", "export", "-k", &secret, "-f", "raw", &out])?;
    assert!(err.contains(&secret), "{err}");

    let opaque = created(ckms, &["opaque-object", "create", "-d", "opaque bytes"])?;
    let raw = path(ckms, "opaque.raw");
    ckms.json(&["opaque-object", "export", "-k", &opaque, "-f", "raw", &raw])?;
    assert_eq!(std::fs::read(&raw)?, b"opaque bytes");
    let from_file = created(ckms, &["opaque-object", "import", "-f", "raw", &raw])?;
    ckms.json(&[
        "opaque-object",
        "export",
        "-k",
        &from_file,
        "-f",
        "raw",
        &back,
    ])?;
    assert_eq!(std::fs::read(&back)?, b"opaque bytes");
    let err = ckms.fails(&["opaque-object", "export", "-k", &opaque, "-w", &key, &raw])?;
    assert!(err.contains("cannot be wrapped"), "{err}");
    ckms.json(&["opaque-object", "revoke", "-k", &opaque, "done"])?;
    ckms.json(&["opaque-object", "destroy", "-k", &opaque])?;
    Ok(())
}

fn attributes(ckms: &Ckms) -> Result<()> {
    let key = created(ckms, &["sym", "keys", "create", "-l", "128"])?;
    ckms.json(&["attributes", "set", "-i", &key, "--name", "payments"])?;
    ckms.json(&[
        "attributes",
        "set",
        "-i",
        &key,
        "-v",
        "acme",
        "--attribute-name",
        "owner",
        "--attribute-value",
        "0102",
    ])?;
    let got = ckms.json(&["attributes", "get", "-i", &key])?;
    let attrs = &got["attributes"];
    assert_eq!(attrs["Name"][0]["NameValue"], "payments", "{got}");
    assert_eq!(attrs["acme:owner"][0], "0102", "{got}");
    let length = ckms.json(&["attributes", "get", "-i", &key, "-a", "CryptographicLength"])?;
    assert_eq!(length["attributes"]["CryptographicLength"], 128, "{length}");
    assert!(length["attributes"].get("Name").is_none(), "{length}");
    ckms.json(&["attributes", "modify", "-i", &key, "--name", "billing"])?;
    let got = ckms.json(&["attributes", "get", "-i", &key])?;
    assert_eq!(
        got["attributes"]["Name"][0]["NameValue"], "billing",
        "{got}"
    );
    ckms.json(&["attributes", "delete", "-i", &key, "--name", "billing"])?;
    let got = ckms.json(&["attributes", "get", "-i", &key])?;
    assert!(got["attributes"].get("Name").is_none(), "{got}");
    // A date in the future on an active key is refused by the KMS, by name.
    let err = ckms.fails(&[
        "attributes",
        "set",
        "-i",
        &key,
        "--activation-date",
        "2030-01-01T00:00:00Z",
    ])?;
    assert!(err.contains("ActivationDate"), "{err}");
    let err = ckms.fails(&["attributes", "set", "-i", &key])?;
    assert!(err.contains("at least one attribute"), "{err}");
    // Rotation policy, then the link to the replacement after a re-key.
    ckms.json(&[
        "sym",
        "keys",
        "set-rotation-policy",
        "-k",
        &key,
        "--rotation-interval",
        "86400",
    ])?;
    let got = ckms.json(&["attributes", "get", "-i", &key, "-a", "RotateInterval"])?;
    assert_eq!(
        got["attributes"]["RotateInterval"], "0x0000000000015180",
        "{got}"
    );
    let new = created(ckms, &["sym", "keys", "re-key", "-k", &key])?;
    let got = ckms.json(&["attributes", "get", "-i", &key, "-l", "replacement-object"])?;
    assert_eq!(
        got["attributes"]["Link"][0]["LinkedObjectIdentifier"],
        new.as_str(),
        "{got}"
    );
    Ok(())
}

fn mac_and_derivation(ckms: &Ckms) -> Result<()> {
    let key = created(ckms, &["sym", "keys", "create", "-a", "hmac-sha256"])?;
    let key_hex = hex(&raw_key(ckms, &key, "mac-key.raw")?);
    let data = std::fs::write(ckms.path("data.txt"), b"hello").map(|()| path(ckms, "data.txt"))?;
    let mac = ckms.json(&[
        "mac",
        "compute",
        "-k",
        &key,
        "-a",
        "sha256",
        "-d",
        "68656c6c6f",
    ])?;
    let mac = mac["mac"].as_str().unwrap_or_default().to_owned();
    let by_openssl = openssl(&[
        "dgst",
        "-sha256",
        "-mac",
        "HMAC",
        "-macopt",
        &format!("hexkey:{key_hex}"),
        "-r",
        &data,
    ])?;
    let by_openssl = String::from_utf8_lossy(&by_openssl);
    assert!(by_openssl.starts_with(&mac), "{mac} vs {by_openssl}");
    let valid = ckms.json(&[
        "mac",
        "verify",
        "-k",
        &key,
        "-a",
        "sha256",
        "-d",
        "68656c6c6f",
        "-m",
        &mac,
    ])?;
    assert_eq!(valid["validity"], "Valid");
    let err = ckms.fails(&[
        "mac",
        "verify",
        "-k",
        &key,
        "-a",
        "sha256",
        "-d",
        "68656c6c6e",
        "-m",
        &mac,
    ])?;
    assert!(err.contains("Invalid"), "{err}");

    // PBKDF2 from a password: the same key as openssl's PBKDF2.
    let derived = created(
        ckms,
        &[
            "derive-key",
            "--password",
            "correct horse",
            "-s",
            "0102030405060708",
            "-i",
            "4096",
        ],
    )?;
    let out = path(ckms, "derived.raw");
    ckms.json(&["sym", "keys", "export", "-k", &derived, "-f", "raw", &out])?;
    let expected = openssl(&[
        "kdf",
        "-keylen",
        "32",
        "-kdfopt",
        "digest:SHA256",
        "-kdfopt",
        "pass:correct horse",
        "-kdfopt",
        "hexsalt:0102030405060708",
        "-kdfopt",
        "iter:4096",
        "PBKDF2",
    ])?;
    let expected: String = String::from_utf8_lossy(&expected).replace([':', '\n'], "");
    assert_eq!(hex(&std::fs::read(&out)?), expected.to_lowercase());
    // An AES key made for encryption may not derive (its usage mask says so).
    let err = ckms.fails(&["derive-key", "-k", &key, "-m", "hkdf", "--info", "01"])?;
    assert!(err.contains("DeriveKey usage mask"), "{err}");
    Ok(())
}

fn wrapping(ckms: &Ckms) -> Result<()> {
    let kek = created(ckms, &["sym", "keys", "create"])?;
    let key = created(ckms, &["sym", "keys", "create", "-t", "wrapped-one"])?;
    let raw = path(ckms, "clear.raw");
    let clear = raw_key(ckms, &key, "clear.raw")?;
    let kek_hex = hex(&raw_key(ckms, &kek, "kek.raw")?);
    // Raw + RFC 5649: openssl unwraps the key bytes.
    let wrapped = path(ckms, "wrapped.raw");
    ckms.json(&[
        "sym",
        "keys",
        "export",
        "-k",
        &key,
        "-f",
        "raw",
        "-w",
        &kek,
        "-m",
        "aes-key-wrap-padding",
        &wrapped,
    ])?;
    let unwrapped = openssl(&[
        "enc",
        "-d",
        "-id-aes256-wrap-pad",
        "-K",
        &kek_hex,
        "-iv",
        "A65959A6",
        "-in",
        &wrapped,
    ])?;
    assert_eq!(unwrapped, clear);
    // json-ttlv (TTLV-encoded, the reference's default): imported back with -u, same key and
    // its tag; without -u it stays wrapped by the KEK.
    let json = path(ckms, "wrapped.json");
    ckms.json(&["sym", "keys", "export", "-k", &key, "-w", &kek, &json])?;
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    assert!(file.to_string().contains("TTLVEncoding"), "{file}");
    assert!(!file.to_string().contains(&hex(&clear).to_uppercase()));
    let back = created(ckms, &["sym", "keys", "import", "-u", &json])?;
    ckms.json(&["sym", "keys", "export", "-k", &back, "-f", "raw", &raw])?;
    assert_eq!(std::fs::read(&raw)?, clear);
    let tagged = ckms.json(&["locate", "-t", "wrapped-one"])?;
    assert!(tagged.to_string().contains(&back), "{tagged}");
    let kept = created(ckms, &["sym", "keys", "import", &json])?;
    let as_stored = path(ckms, "as-stored.json");
    ckms.json(&["sym", "keys", "export", "-k", &kept, &as_stored])?;
    assert!(std::fs::read_to_string(&as_stored)?.contains("KeyWrappingData"));
    ckms.json(&[
        "sym", "keys", "export", "-k", &kept, "-u", "-f", "raw", &raw,
    ])?;
    assert_eq!(std::fs::read(&raw)?, clear);
    // Local wrap and unwrap of a key file, each mode; the KMS never sees the key.
    for mode in ["nist-key-wrap", "aes-key-wrap-padding", "aes-gcm"] {
        let file = path(ckms, &format!("local-{mode}.json"));
        ckms.json(&["sym", "keys", "export", "-k", &key, &file])?;
        ckms.json(&["sym", "keys", "wrap", "-i", &kek, "-m", mode, &file])?;
        let text = std::fs::read_to_string(&file)?;
        assert!(text.contains("KeyWrappingData") && !text.contains(&hex(&clear).to_uppercase()));
        let err = ckms.fails(&["sym", "keys", "wrap", "-i", &kek, &file])?;
        assert!(err.contains("already wrapped"), "{err}");
        let out = path(ckms, &format!("local-{mode}.clear.json"));
        ckms.json(&["sym", "keys", "unwrap", &file, &out])?;
        let imported = created(ckms, &["sym", "keys", "import", &out])?;
        ckms.json(&["sym", "keys", "export", "-k", &imported, "-f", "raw", &raw])?;
        assert_eq!(std::fs::read(&raw)?, clear, "{mode}");
    }
    // A TTLV-encoded file is unwrapped by the KMS, not here: the error says how.
    let err = ckms.fails(&["sym", "keys", "unwrap", &json])?;
    assert!(err.contains("import -u"), "{err}");
    // Sensitive keys leave only wrapped; a key created wrapped by the KEK comes back wrapped.
    let sensitive = created(ckms, &["sym", "keys", "create", "--sensitive"])?;
    let err = ckms.fails(&["sym", "keys", "export", "-k", &sensitive, "-f", "raw", &raw])?;
    assert!(err.contains("Sensitive"), "{err}");
    ckms.json(&["sym", "keys", "export", "-k", &sensitive, "-w", &kek, &json])?;
    let under_kek = created(ckms, &["sym", "keys", "create", "-w", &kek])?;
    ckms.json(&["sym", "keys", "export", "-k", &under_kek, &as_stored])?;
    assert!(std::fs::read_to_string(&as_stored)?.contains(&kek));
    Ok(())
}

/// The chunked envelope: a file cut at a chunk boundary, or changed, does not decrypt, and
/// nothing is written.
fn envelope_integrity(ckms: &Ckms) -> Result<()> {
    let key = created(ckms, &["sym", "keys", "create"])?;
    let plain = ckms.path("three-chunks.bin");
    let data: Vec<u8> = (0..(2 * 1024 * 1024 + 5))
        .map(|i: u32| (i % 251) as u8)
        .collect();
    std::fs::write(&plain, &data)?;
    let enc = path(ckms, "three-chunks.enc");
    let plain = plain.display().to_string();
    ckms.json(&[
        "sym",
        "encrypt",
        "--envelope",
        "-k",
        &key,
        "-o",
        &enc,
        &plain,
    ])?;
    let sealed = std::fs::read(&enc)?;
    assert_eq!(&sealed[..8], b"CKMSENV2");
    let out = path(ckms, "three-chunks.out");
    ckms.json(&["sym", "decrypt", "-k", &key, "-o", &out, &enc])?;
    assert!(std::fs::read(&out)? == data);
    // Cut after the first two chunks (each 1 MiB + 16-byte tag): refused.
    let header = sealed.len() - (data.len() + 3 * 16);
    let cut = path(ckms, "cut.enc");
    std::fs::write(&cut, &sealed[..header + 2 * (1024 * 1024 + 16)])?;
    let cut_out = path(ckms, "cut.out");
    let err = ckms.fails(&["sym", "decrypt", "-k", &key, "-o", &cut_out, &cut])?;
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        std::fs::metadata(&cut_out).is_err(),
        "a partial file was left"
    );
    let mut changed = sealed.clone();
    let at = changed.len() - 20;
    changed[at] ^= 1;
    std::fs::write(&cut, &changed)?;
    let err = ckms.fails(&["sym", "decrypt", "-k", &key, "-o", &cut_out, &cut])?;
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        std::fs::metadata(&cut_out).is_err(),
        "a partial file was left"
    );
    Ok(())
}

/// `-d` (how the KMS encrypts), `-n`, and `-e` (how the KMS key wraps an envelope's data key),
/// with the reference CLI's names; AES-CBC checked with openssl.
fn encryption_modes(ckms: &Ckms) -> Result<()> {
    let aes = created(ckms, &["sym", "keys", "create"])?;
    let chacha = created(ckms, &["sym", "keys", "create", "-a", "chacha20"])?;
    let aes_hex = hex(&raw_key(ckms, &aes, "aes.raw")?);
    let plain = path(ckms, "modes.txt");
    std::fs::write(&plain, b"seventeen bytes!!")?;
    let enc = path(ckms, "modes.enc");
    let back = path(ckms, "modes.back");
    for (key, mode) in [
        (&aes, "aes-gcm"),
        (&aes, "aes-cbc"),
        (&aes, "aes-gcm-siv"),
        (&chacha, "chacha20-poly1305"),
    ] {
        ckms.json(&["sym", "encrypt", "-k", key, "-d", mode, "-o", &enc, &plain])?;
        ckms.json(&[
            "sym", "decrypt", "-k", key, "-d", mode, "--force", "-o", &back, &enc,
        ])?;
        assert_eq!(std::fs::read(&back)?, b"seventeen bytes!!", "{mode}");
    }
    // AES-CBC: IV ‖ ciphertext (PKCS#7), which openssl decrypts.
    ckms.json(&[
        "sym", "encrypt", "-k", &aes, "-d", "aes-cbc", "-o", &enc, &plain,
    ])?;
    let sealed = std::fs::read(&enc)?;
    assert_eq!(sealed.len(), 16 + 32);
    let body = path(ckms, "cbc.body");
    std::fs::write(&body, &sealed[16..])?;
    let opened = openssl(&[
        "enc",
        "-d",
        "-aes-256-cbc",
        "-K",
        &aes_hex,
        "-iv",
        &hex(&sealed[..16]),
        "-in",
        &body,
    ])?;
    assert_eq!(opened, b"seventeen bytes!!");
    let err = ckms.fails(&[
        "sym", "encrypt", "-k", &aes, "-d", "aes-xts", "-o", &enc, &plain,
    ])?;
    assert!(err.contains("XTS"), "{err}");
    // A nonce the caller gives is used.
    let nonce = "000102030405060708090a0b";
    ckms.json(&[
        "sym", "encrypt", "-k", &aes, "-n", nonce, "-o", &enc, &plain,
    ])?;
    assert_eq!(hex(&std::fs::read(&enc)?[..12]), nonce);
    // Envelopes under each key encryption; the header records it.
    for (mode, id) in [
        ("aes-gcm", 1u8),
        ("rfc5649", 2),
        ("rfc3394", 3),
        ("aes-gcm-siv", 4),
    ] {
        ckms.json(&["sym", "encrypt", "-k", &aes, "-e", mode, "-o", &enc, &plain])?;
        let sealed = std::fs::read(&enc)?;
        assert_eq!((&sealed[..8], sealed[8]), (&b"CKMSENV2"[..], id), "{mode}");
        ckms.json(&["sym", "decrypt", "-k", &aes, "--force", "-o", &back, &enc])?;
        assert_eq!(std::fs::read(&back)?, b"seventeen bytes!!", "{mode}");
    }
    let err = ckms.fails(&[
        "sym", "encrypt", "-k", &aes, "-e", "rfc5649", "-d", "aes-cbc", &plain,
    ])?;
    assert!(err.contains("-d applies"), "{err}");
    // Decrypt options that contradict the file are refused, not ignored.
    ckms.json(&[
        "sym", "encrypt", "-k", &aes, "-e", "rfc5649", "-o", &enc, &plain,
    ])?;
    let err = ckms.fails(&[
        "sym", "decrypt", "-k", &aes, "-e", "aes-gcm", "--force", "-o", &back, &enc,
    ])?;
    assert!(err.contains("not AesGcm"), "{err}");
    let err = ckms.fails(&[
        "sym", "decrypt", "-k", &aes, "-n", nonce, "--force", "-o", &back, &enc,
    ])?;
    assert!(err.contains("--nonce applies to encrypt"), "{err}");
    ckms.json(&["sym", "encrypt", "-k", &aes, "-o", &enc, &plain])?;
    let err = ckms.fails(&[
        "sym",
        "decrypt",
        "-k",
        &aes,
        "--envelope",
        "--force",
        "-o",
        &back,
        &enc,
    ])?;
    assert!(err.contains("is not an envelope"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_attributes_mac_derivation_and_wrapping() -> Result<()> {
    let stack = Stack::start(None).await?;
    let (_proxy, ckms) = pinned_front(&stack, "ckms-objects")?;
    secret_data_and_opaque_objects(&ckms)?;
    attributes(&ckms)?;
    mac_and_derivation(&ckms)?;
    wrapping(&ckms)?;
    encryption_modes(&ckms)?;
    envelope_integrity(&ckms)?;
    Ok(())
}
