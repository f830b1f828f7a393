//! The `ckms` CLI end to end: the real binary against kms-proxy and kms-core, with every
//! authentication method (none, access token, PKCS#12 client certificate, OAuth2 PKCE login
//! against the test OpenID provider), certificate pinning, every command, and a 100 MiB file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use kms_tests::Validity;
use kms_tests::ckms::{Ckms, front, pinned_front, uid};
use kms_tests::idp::Idp;
use kms_tests::proxy::{Logs, binary};
use kms_tests::stack::Stack;
use serde_json::Value;

/// `size` bytes that are not all alike (a 1 MiB pseudo-random block, numbered per copy).
fn big_file(path: &Path, size: usize) -> Result<()> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let block: Vec<u8> = (0..1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let mut data = Vec::with_capacity(size);
    let mut n = 0u64;
    while data.len() < size {
        let mut copy = block.clone();
        copy[..8].copy_from_slice(&n.to_le_bytes());
        data.extend_from_slice(&copy[..copy.len().min(size - data.len())]);
        n += 1;
    }
    std::fs::write(path, data)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_through_the_stack() -> Result<()> {
    let stack = Stack::start(None).await?;
    let (_proxy, ckms) = pinned_front(&stack, "ckms-front")?;

    let version = ckms.json(&["server", "version"])?;
    assert!(
        version["version"]
            .as_str()
            .is_some_and(|v| v.contains("kms-core")),
        "{version}"
    );

    let key = uid(&ckms.json(&["sym", "keys", "create", "--tag", "ckms-test"])?);
    assert_eq!(key.len(), 36, "a UUID: {key}");
    let named = ckms.json(&[
        "sym",
        "keys",
        "create",
        "-t",
        "other",
        "--number-of-bits",
        "128",
        "my-key-id",
    ])?;
    assert_eq!(uid(&named), "my-key-id");
    let found = ckms.json(&["locate", "--tag", "ckms-test"])?;
    assert_eq!(found["unique_identifiers"], serde_json::json!([key]));
    let (ok, text, _) = ckms.run(&["locate", "--tag", "nothing-has-this"])?;
    assert!(ok && text.contains("no key found"), "{text}");

    // Export in the three formats; import each back; the bytes are the same.
    let raw_file = ckms.path("key.raw");
    let b64_file = ckms.path("key.b64");
    let ttlv_file = ckms.path("key.json");
    for (format, file) in [
        ("raw", &raw_file),
        ("base64", &b64_file),
        ("json-ttlv", &ttlv_file),
    ] {
        ckms.json(&[
            "sym",
            "keys",
            "export",
            "-k",
            &key,
            "-f",
            format,
            &file.display().to_string(),
        ])?;
    }
    let raw = std::fs::read(&raw_file)?;
    assert_eq!(raw.len(), 32);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(std::fs::read_to_string(&b64_file)?.trim())?,
        raw
    );
    let ttlv: Value = serde_json::from_str(&std::fs::read_to_string(&ttlv_file)?)?;
    assert_eq!(ttlv["tag"], "SymmetricKey");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&raw_file)?.permissions().mode() & 0o777,
        0o600
    );
    for (format, file, id) in [
        ("raw", &raw_file, "imported-raw"),
        ("base64", &b64_file, "imported-b64"),
        ("json-ttlv", &ttlv_file, "imported-ttlv"),
    ] {
        let imported = ckms.json(&[
            "sym",
            "keys",
            "import",
            "-f",
            format,
            "-t",
            "imported",
            &file.display().to_string(),
            id,
        ])?;
        assert_eq!(uid(&imported), id);
        let back = ckms.path(&format!("{id}.raw"));
        ckms.json(&[
            "sym",
            "keys",
            "export",
            "-k",
            id,
            "-f",
            "raw",
            &back.display().to_string(),
        ])?;
        assert_eq!(std::fs::read(&back)?, raw, "{format}");
    }
    // A json-ttlv file carries its tags: the copy has the original's tag too. It goes away
    // so that the tag names one key again.
    let found = ckms.json(&["locate", "--tag", "ckms-test"])?;
    assert_eq!(
        found["unique_identifiers"].as_array().map(Vec::len),
        Some(2)
    );
    ckms.json(&["sym", "keys", "revoke", "-k", "imported-ttlv", "copy"])?;
    ckms.json(&["sym", "keys", "destroy", "-k", "imported-ttlv", "--remove"])?;
    assert!(
        ckms.fails(&[
            "sym",
            "keys",
            "import",
            "-f",
            "raw",
            &ttlv_file.display().to_string()
        ])?
        .contains("16, 24 or 32 bytes")
    );

    // A small file, encrypted by the KMS with additional data: nonce ‖ ciphertext ‖ tag.
    let plain = ckms.path("notes.txt");
    std::fs::write(&plain, b"the quarterly numbers")?;
    let sealed = ckms.path("notes.sealed");
    ckms.json(&[
        "sym",
        "encrypt",
        "-k",
        &key,
        "-a",
        "0a0b0c",
        "-o",
        &sealed.display().to_string(),
        &plain.display().to_string(),
    ])?;
    assert_eq!(std::fs::metadata(&sealed)?.len(), 12 + 21 + 16);
    let opened = ckms.path("notes.opened");
    let (opened_arg, sealed_arg) = (opened.display().to_string(), sealed.display().to_string());
    let decrypt_to_opened = [
        "sym",
        "decrypt",
        "-k",
        &key,
        "-a",
        "0a0b0c",
        "-o",
        &opened_arg,
        &sealed_arg,
    ];
    ckms.json(&decrypt_to_opened)?;
    assert_eq!(std::fs::read(&opened)?, b"the quarterly numbers");
    // An existing output is never overwritten without --force, nor written through a link.
    let victim = ckms.path("victim.txt");
    std::fs::write(&victim, b"precious")?;
    std::fs::remove_file(&opened)?;
    std::os::unix::fs::symlink(&victim, &opened)?;
    let refused = ckms.fails(&decrypt_to_opened)?;
    assert!(refused.contains("--force"), "{refused}");
    let mut forced = decrypt_to_opened.to_vec();
    forced.push("--force");
    ckms.json(&forced)?;
    assert_eq!(
        std::fs::read(&victim)?,
        b"precious",
        "decrypt wrote through a symlink"
    );
    assert_eq!(std::fs::read(&opened)?, b"the quarterly numbers");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&opened)?.permissions());
    assert_eq!(mode & 0o777, 0o600, "decrypted data readable by others");
    // Without the additional data, decryption fails (and writes nothing).
    ckms.fails(&[
        "sym",
        "decrypt",
        "-k",
        &key,
        "--force",
        "-o",
        &opened.display().to_string(),
        &sealed.display().to_string(),
    ])?;
    // By tag, with the default output names.
    let (ok, _, stderr) = ckms.run(&[
        "sym",
        "encrypt",
        "-t",
        "ckms-test",
        &plain.display().to_string(),
    ])?;
    assert!(ok, "{stderr}");
    let default_out = ckms.path("notes.txt.enc");
    assert!(default_out.is_file());
    std::fs::remove_file(&plain)?;
    let (ok, _, stderr) = ckms.run(&[
        "sym",
        "decrypt",
        "-t",
        "ckms-test",
        &default_out.display().to_string(),
    ])?;
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(&plain)?, b"the quarterly numbers");

    // 100 MiB: too large for the KMS to encrypt itself; with --envelope, back to the same bytes.
    let big = ckms.path("big.bin");
    big_file(&big, 100 * 1024 * 1024)?;
    let stderr = ckms.fails(&["sym", "encrypt", "-k", &key, &big.display().to_string()])?;
    assert!(stderr.contains("--envelope"), "{stderr}");
    let big_enc = ckms.path("big.enc");
    let started = Instant::now();
    // In constant memory: chunks of 1 MiB, never the whole file (the earlier envelope read
    // all 100 MiB and held the ciphertext too).
    let enc_peak = ckms.peak_rss_kib(&[
        "sym",
        "encrypt",
        "--envelope",
        "-k",
        &key,
        "-a",
        "ff",
        "-o",
        &big_enc.display().to_string(),
        &big.display().to_string(),
    ])?;
    assert!(
        enc_peak < 40 * 1024,
        "encrypting 100 MiB peaked at {enc_peak} KiB"
    );
    let big_back = ckms.path("big.back");
    let dec_peak = ckms.peak_rss_kib(&[
        "sym",
        "decrypt",
        "-k",
        &key,
        "-a",
        "ff",
        "-o",
        &big_back.display().to_string(),
        &big_enc.display().to_string(),
    ])?;
    assert!(
        dec_peak < 40 * 1024,
        "decrypting 100 MiB peaked at {dec_peak} KiB"
    );
    eprintln!(
        "100 MiB encrypted and decrypted in {:?}, peak RSS {enc_peak} / {dec_peak} KiB",
        started.elapsed()
    );
    assert!(
        std::fs::read(&big)? == std::fs::read(&big_back)?,
        "100 MiB round trip differs"
    );
    std::fs::remove_file(&big_back)?;
    std::fs::remove_file(&big)?;

    // Access rights, with a second user (a proxy that forwards as bob; accept_invalid_certs).
    let bob_proxy = stack.proxy_as("bob")?;
    let bob = Ckms::new(&format!(
        "server_url = \"{}\"\naccept_invalid_certs = true",
        bob_proxy.url("")
    ))?;
    let denied = bob.fails(&[
        "sym",
        "encrypt",
        "-k",
        &key,
        &ckms.path("notes.sealed").display().to_string(),
    ])?;
    assert!(denied.contains("permission denied"), "{denied}");
    assert!(
        denied.contains("ckms access-rights grant"),
        "the hint the README promises: {denied}"
    );
    // A misspelt operation: named, with the nearest name and the KMS's own list of grants.
    let misspelt = ckms.fails(&["access-rights", "grant", "bob", "-i", &key, "encrpyt"])?;
    assert!(
        misspelt.contains("`encrpyt` is not an operation the KMS grants")
            && misspelt.contains("did you mean `encrypt`?")
            && misspelt.contains("signatureverify")
            && !misspelt.contains("unknown variant"),
        "{misspelt}"
    );
    let granted = ckms.json(&[
        "access-rights",
        "grant",
        "bob",
        "-i",
        &key,
        "encrypt",
        "get",
    ])?;
    assert!(
        granted["success"]
            .as_str()
            .is_some_and(|s| s.contains("bob")),
        "{granted}"
    );
    let list = ckms.json(&["access-rights", "list", "-i", &key])?;
    assert_eq!(list[0]["user_id"], "bob");
    let owned = ckms.json(&["access-rights", "owned"])?;
    assert!(
        owned
            .as_array()
            .is_some_and(|o| o.iter().any(|e| e["object_id"] == key.as_str())),
        "{owned}"
    );
    let obtained = bob.json(&["access-rights", "obtained"])?;
    assert_eq!(obtained[0]["object_id"], key.as_str(), "{obtained}");
    assert_eq!(obtained[0]["owner_id"], "admin");
    bob.json(&[
        "sym",
        "encrypt",
        "-k",
        &key,
        "-o",
        &bob.path("x.enc").display().to_string(),
        &ckms.path("notes.sealed").display().to_string(),
    ])?;
    ckms.json(&["access-rights", "revoke", "bob", "-i", &key, "encrypt"])?;
    let list = ckms.json(&["access-rights", "list", "-i", &key])?;
    assert_eq!(list[0]["operations"], serde_json::json!(["get"]));
    // Re-key: a new key, with the grants of the old one.
    let rekeyed = ckms.json(&["sym", "keys", "re-key", "--key-id", &key])?;
    let new_key = uid(&rekeyed);
    assert!(!new_key.is_empty() && new_key != key, "{rekeyed}");
    let moved = ckms.json(&["access-rights", "list", &new_key])?;
    assert_eq!(moved[0]["operations"], serde_json::json!(["get"]));
    let again = ckms.fails(&["sym", "keys", "activate", "--key-id", &new_key])?;
    assert!(again.contains("already in Active"), "{again}");
    // The reference's 5.26 form: the uid as a positional argument.
    let positional = ckms.json(&["access-rights", "list", &key])?;
    assert_eq!(positional, list);

    // Server-side tools, checked against openssl.
    let hash = ckms.json(&["hash", "-a", "sha3-256", "-d", "68656c6c6f"])?;
    let expected = std::process::Command::new("openssl")
        .args(["dgst", "-sha3-256", "-r"])
        .stdin(std::fs::File::open({
            let p = ckms.path("hello.bin");
            std::fs::write(&p, b"hello")?;
            p
        })?)
        .output()?;
    let expected = String::from_utf8_lossy(&expected.stdout);
    assert_eq!(hash["hash"].as_str(), expected.split_whitespace().next());
    let random = ckms.json(&["rng", "retrieve", "-l", "16"])?;
    assert_eq!(random["data"].as_str().map(str::len), Some(32));
    let seed = ckms.json(&["rng", "seed", "-d", "000102030405060708090a0b0c0d0e0f"])?;
    assert_eq!(seed["amount_of_seed_data"], 0);
    let versions = ckms.json(&["server", "discover-versions"])?;
    assert_eq!(versions["versions"], serde_json::json!(["2.1"]));
    let query = ckms.json(&["server", "query"])?;
    let operations = query["operations"].as_array().cloned().unwrap_or_default();
    assert!(operations.contains(&serde_json::json!("Encrypt")));
    for op in [
        "Sign",
        "SignatureVerify",
        "CreateKeyPair",
        "Certify",
        "Validate",
    ] {
        assert!(operations.contains(&serde_json::json!(op)), "{op}");
    }

    // Revoke, then destroy; the key is gone.
    ckms.json(&["sym", "keys", "revoke", "-k", &key, "no longer needed"])?;
    ckms.fails(&[
        "sym",
        "encrypt",
        "-k",
        &key,
        &ckms.path("notes.sealed").display().to_string(),
    ])?;
    let destroyed = ckms.json(&["sym", "keys", "destroy", "-k", &key, "--remove"])?;
    assert_eq!(destroyed["removed"], true);
    let gone = ckms.fails(&[
        "sym",
        "keys",
        "export",
        "-k",
        &key,
        "-f",
        "raw",
        &ckms.path("gone").display().to_string(),
    ])?;
    assert!(gone.contains("unknown key"), "{gone}");
    let active = ckms.fails(&["sym", "keys", "destroy", "-k", "my-key-id"])?;
    assert!(
        active.contains("Wrong_Key_Lifecycle_State") && active.contains("revoke it first"),
        "an active key cannot be destroyed: {active}"
    );
    // Usage errors exit non-zero too.
    assert!(
        ckms.fails(&["sym", "encrypt", &plain.display().to_string()])?
            .contains("--key-id")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn trust_pinning_and_configuration_errors() -> Result<()> {
    let stack = Stack::start(None).await?;
    let (proxy, cert) = front(&stack, "trust-front", &[])?;
    let url = proxy.url("");

    // The test CA is not in the system store: refused, with the options to fix it.
    let plain = Ckms::new(&format!("server_url = \"{url}\""))?;
    let stderr = plain.fails(&["server", "version"])?;
    assert!(
        stderr.contains("not trusted")
            && stderr.contains("verified_cert")
            && stderr.contains("accept_invalid_certs"),
        "{stderr}"
    );
    // Pinned to another certificate: refused.
    let other = stack.pki.server("not-the-server", Validity::Current)?;
    let wrong_pin = Ckms::pinned(&url, &other, "")?;
    let stderr = wrong_pin.fails(&["server", "version"])?;
    assert!(stderr.contains("not the one pinned"), "{stderr}");
    // Pinned to the right one, or accepting anything: served.
    Ckms::pinned(&url, &cert, "")?.json(&["server", "version"])?;
    Ckms::new(&format!(
        "server_url = \"{url}\"\naccept_invalid_certs = true"
    ))?
    .json(&["server", "version"])?;
    // Nothing listening.
    let stderr =
        Ckms::new("server_url = \"https://127.0.0.1:1\"")?.fails(&["server", "version"])?;
    assert!(stderr.contains("cannot reach"), "{stderr}");

    // A misspelt key: named, with the file.
    let typo = Ckms::new(&format!(
        "server_url = \"{url}\"\naccept_invalid_cert = true"
    ))?;
    let stderr = typo.fails(&["server", "version"])?;
    assert!(
        stderr.contains("accept_invalid_cert") && stderr.contains("ckms.toml"),
        "{stderr}"
    );
    // --help on every command.
    for path in [
        vec![],
        vec!["sym"],
        vec!["sym", "keys"],
        vec!["sym", "keys", "create"],
        vec!["sym", "keys", "export"],
        vec!["sym", "keys", "import"],
        vec!["sym", "keys", "revoke"],
        vec!["sym", "keys", "destroy"],
        vec!["sym", "keys", "activate"],
        vec!["sym", "keys", "re-key"],
        vec!["sym", "encrypt"],
        vec!["sym", "decrypt"],
        vec!["access-rights"],
        vec!["access-rights", "grant"],
        vec!["access-rights", "revoke"],
        vec!["access-rights", "list"],
        vec!["access-rights", "owned"],
        vec!["access-rights", "obtained"],
        vec!["locate"],
        vec!["server", "version"],
        vec!["server", "discover-versions"],
        vec!["server", "query"],
        vec!["hash"],
        vec!["rng", "retrieve"],
        vec!["rng", "seed"],
        vec!["login"],
        vec!["logout"],
    ] {
        let mut args = path.clone();
        args.push("--help");
        let (ok, stdout, _) = plain.run(&args)?;
        assert!(ok && stdout.contains("Usage:"), "{path:?} --help: {stdout}");
    }
    // No file yet: created with defaults (CKMS_CONF_PATH is accepted as well).
    let fresh = tempfile::tempdir()?;
    let path = fresh.path().join("sub/ckms.toml");
    let out = Command::new(binary("ckms"))
        .args(["server", "version"])
        .env_remove("CKMS_CONF")
        .env("CKMS_CONF_PATH", &path)
        .output()?;
    assert!(path.is_file(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&path)?.contains("server_url"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn access_token_and_client_certificate() -> Result<()> {
    let stack = Stack::start(None).await?;
    let (open, open_cert) = front(&stack, "open-front", &[])?;
    // The reference's API-token workflow: create a key, export it in base64, start the proxy
    // with --api-token-id, put the base64 in access_token.
    let admin = Ckms::pinned(&open.url(""), &open_cert, "")?;
    let token_key = uid(&admin.json(&["sym", "keys", "create", "-t", "api-token"])?);
    let token_file = admin.path("token.b64");
    admin.json(&[
        "sym",
        "keys",
        "export",
        "-k",
        &token_key,
        "-f",
        "base64",
        &token_file.display().to_string(),
    ])?;
    let token = std::fs::read_to_string(&token_file)?;
    let (guarded, guarded_cert) = front(&stack, "token-front", &["--api-token-id", &token_key])?;
    assert!(guarded.wait_ready().await, "{}", guarded.logs());
    let with_token = Ckms::pinned(
        &guarded.url(""),
        &guarded_cert,
        &format!("access_token = \"{}\"", token.trim()),
    )?;
    with_token.json(&["server", "version"])?;
    let without = Ckms::pinned(&guarded.url(""), &guarded_cert, "")?;
    let stderr = without.fails(&["server", "version"])?;
    assert!(
        stderr.contains("401") && stderr.contains("access_token"),
        "{stderr}"
    );

    // A PKCS#12 client certificate (the newer key names), through a proxy that requires one.
    let (mtls, mtls_cert) = front(
        &stack,
        "mtls-front",
        &[
            "--authority-cert-file",
            &stack.pki.ca_file.display().to_string(),
        ],
    )?;
    let carol = stack.pki.client("carol", "carol")?;
    let p12 = stack.pki.path("carol.p12");
    kms_tests::pki::pkcs12(&carol, &p12, "p12 secret")?;
    let carol_cli = Ckms::pinned(
        &mtls.url(""),
        &mtls_cert,
        &format!(
            "tls_client_pkcs12_path = \"{}\"\ntls_client_pkcs12_password = \"p12 secret\"",
            p12.display()
        ),
    )?;
    let carols = uid(&carol_cli.json(&["sym", "keys", "create"])?);
    let owned = carol_cli.json(&["access-rights", "owned"])?;
    assert!(
        owned
            .as_array()
            .is_some_and(|o| o.iter().any(|e| e["object_id"] == carols.as_str())),
        "{owned}"
    );
    let bad_password = Ckms::pinned(
        &mtls.url(""),
        &mtls_cert,
        &format!(
            "ssl_client_pkcs12_path = \"{}\"\nssl_client_pkcs12_password = \"wrong\"",
            p12.display()
        ),
    )?;
    assert!(
        bad_password
            .fails(&["server", "version"])?
            .contains("ssl_client_pkcs12_password")
    );
    let no_cert = Ckms::pinned(&mtls.url(""), &mtls_cert, "")?;
    let stderr = no_cert.fails(&["server", "version"])?;
    assert!(stderr.contains("ssl_client_pkcs12_path"), "{stderr}");
    Ok(())
}

/// Follows the provider's redirects and submits its development login and consent forms, until
/// it redirects to the CLI; then delivers that redirect.
async fn drive_login(url: &str, user: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()?;
    let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
    let absolute = |location: &str| {
        if location.starts_with("http") {
            location.to_owned()
        } else {
            format!("{origin}{location}")
        }
    };
    let mut next = url.to_owned();
    for _ in 0..20 {
        if next.starts_with("http://localhost:17899/") {
            let r = client.get(&next).send().await?;
            ensure!(
                r.status() == 200,
                "the CLI's callback answered {}",
                r.status()
            );
            return Ok(());
        }
        let r = client.get(&next).send().await?;
        if let Some(location) = r.headers().get("location").and_then(|l| l.to_str().ok()) {
            next = absolute(location);
            continue;
        }
        let html = r.text().await?;
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .context("no form on the provider's page")?
            .to_owned();
        let body = if html.contains("name=\"login\"") {
            format!("prompt=login&login={user}&password=anything")
        } else {
            "prompt=consent".to_owned()
        };
        let r = client
            .post(absolute(&action))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        next = absolute(
            r.headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .context("the form post did not redirect")?,
        );
    }
    anyhow::bail!("the login did not reach the CLI's callback")
}

/// Starts `ckms login` and returns it with the authorization URL it printed.
fn start_login(ckms: &Ckms) -> Result<(std::process::Child, String, Logs)> {
    let mut child = ckms
        .command(&["login"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let logs = kms_tests::proxy::capture_output(&mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = logs
            .lock()
            .ok()
            .and_then(|l| l.iter().find(|line| line.starts_with("http")).cloned());
        if let Some(url) = url {
            return Ok((child, url, logs));
        }
        ensure!(
            child.try_wait()?.is_none(),
            "ckms login exited: {:?}",
            logs.lock().map(|l| l.join("\n"))
        );
        ensure!(Instant::now() < deadline, "ckms login printed no URL");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child's output once it contains `needle` (its reader threads may lag its exit).
fn output_with(logs: &Logs, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = logs.lock().map(|l| l.join("\n")).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut std::process::Child) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        ensure!(Instant::now() < deadline, "ckms login did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_pkce_login_and_logout() -> Result<()> {
    let stack = Stack::start(None).await?;
    let idp = Idp::start()?;
    let (proxy, cert) = front(
        &stack,
        "oidc-front",
        &[
            "--jwt-issuer-uri",
            &idp.issuer,
            "--jwks-uri",
            &idp.jwks_uri(),
            "--jwt-audience",
            "ckms",
        ],
    )?;
    assert!(proxy.wait_ready().await, "{}", proxy.logs());
    let oauth = format!(
        "[http_config.oauth2_conf]\nclient_id = \"ckms\"\nauthorize_url = \"{0}/auth\"\ntoken_url = \"{0}/token\"\nscopes = [\"openid\", \"email\"]",
        idp.issuer
    );
    let ckms = Ckms::pinned(&proxy.url(""), &cert, &oauth)?;
    let stderr = ckms.fails(&["server", "version"])?;
    assert!(stderr.contains("ckms login"), "{stderr}");

    let (mut child, url, logs) = start_login(&ckms)?;
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("state="),
        "{url}"
    );
    drive_login(&url, "alice").await?;
    assert!(
        wait_exit(&mut child)?,
        "{:?}",
        logs.lock().map(|l| l.join("\n"))
    );
    assert!(std::fs::read_to_string(&ckms.conf)?.contains("access_token"));
    let created = uid(&ckms.json(&["sym", "keys", "create", "-t", "sso"])?);
    let owned = ckms.json(&["access-rights", "owned"])?;
    assert!(
        owned
            .as_array()
            .is_some_and(|o| o.iter().any(|e| e["object_id"] == created.as_str())),
        "{owned}"
    );
    // The key belongs to the user the provider logged in (the ID token's email).
    let admin = Ckms::new(&format!(
        "server_url = \"{}\"\naccept_invalid_certs = true",
        stack.proxy.url("")
    ))?;
    let stderr = admin.fails(&["access-rights", "list", "-i", &created])?;
    assert!(stderr.contains("permission denied"), "{stderr}");

    // Logout removes the token.
    ckms.json(&["logout"])?;
    assert!(!std::fs::read_to_string(&ckms.conf)?.contains("access_token"));
    assert!(ckms.fails(&["server", "version"])?.contains("401"));

    // A redirect with another state is refused.
    let (mut child, _, logs) = start_login(&ckms)?;
    let r = reqwest::get("http://localhost:17899/authorization?code=stolen&state=forged").await?;
    assert_eq!(r.status(), 400);
    assert!(!wait_exit(&mut child)?);
    let text = output_with(&logs, "state does not match");
    assert!(text.contains("state does not match"), "{text}");
    // The provider's own error (the user declined) is reported.
    let (mut child, url, logs) = start_login(&ckms)?;
    let state = url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("state="))
        .unwrap_or_default()
        .to_owned();
    let r = reqwest::get(format!(
        "http://localhost:17899/authorization?error=access_denied&error_description=declined&state={state}"
    ))
    .await?;
    assert_eq!(r.status(), 400);
    assert!(!wait_exit(&mut child)?);
    let text = output_with(&logs, "declined");
    assert!(
        text.contains("access_denied") && text.contains("declined"),
        "{text}"
    );
    // The callback port busy: a clear error.
    let _holder = std::net::TcpListener::bind(("127.0.0.1", 17899))?;
    let stderr = ckms.fails(&["login"])?;
    assert!(stderr.contains("17899"), "{stderr}");
    Ok(())
}
