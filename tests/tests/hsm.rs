//! The HSM key-encryption key with a real SoftHSM2 token, through the real proxy and core:
//! keys created under the master key file move to the HSM KEK and back (`kms-core rewrap`)
//! without losing one; keys wrapped by the HSM survive a core restart; a wrong PIN, a missing
//! module or a missing PIN stop the core with a clear message; /readyz checks the HSM.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use kms_tests::softhsm::{PIN, SoftHsm};
use kms_tests::stack::{by_uid, create_request, field};
use kms_tests::{Proxy, ProxyCommand, TestPki, Validity, tls_args};
use serde_json::{Value, json};

/// A core on `data` with `extra` arguments, and a proxy in front of it.
struct Running {
    _core: Proxy,
    core_admin: String,
    proxy: Proxy,
    client: reqwest::Client,
}

fn core_base(data: &Path) -> Vec<String> {
    vec![
        "--socket".into(),
        data.join("core.sock").display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--admin-address".into(),
        "127.0.0.1:0".into(),
    ]
}

fn start(pki: &TestPki, hsm: &SoftHsm, data: &Path, extra: &[String]) -> Result<Running> {
    let core = ProxyCommand::core()
        .args(core_base(data))
        .args(extra)
        .env("SOFTHSM2_CONF", &hsm.conf.display().to_string())
        .env("KMS_HSM_PIN", PIN)
        .spawn_as_is()?;
    let cert = pki.server("server", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(
            &cert,
            &format!("unix:{}", data.join("core.sock").display()),
        ))
        .spawn()?;
    Ok(Running {
        core_admin: core.admin_url("/readyz"),
        _core: core,
        proxy,
        client: kms_tests::client::https(&pki.ca_pem)?,
    })
}

impl Running {
    async fn kmip(&self, body: &Value) -> Result<(u16, String)> {
        let r = self
            .client
            .post(self.proxy.url("/kmip/2_1"))
            .json(body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    async fn ok(&self, body: &Value) -> Result<Value> {
        let (status, text) = self.kmip(body).await?;
        ensure!(status == 200, "{status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    async fn create(&self) -> Result<String> {
        let created = self
            .ok(&create_request(
                256,
                &["hsm-test"],
                Some("2026-01-01T00:00:00Z"),
            ))
            .await?;
        field(&created, "UniqueIdentifier")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("uid")
    }

    /// Encrypts `plain`: (nonce, ciphertext, tag) as hex.
    async fn encrypt(&self, uid: &str, plain: &[u8]) -> Result<[String; 3]> {
        let hex = plain.iter().map(|b| format!("{b:02X}")).collect::<String>();
        let response = self
            .ok(&by_uid(
                "Encrypt",
                uid,
                vec![json!({"tag": "Data", "type": "ByteString", "value": hex})],
            ))
            .await?;
        let get = |tag: &str| {
            field(&response, tag)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .context("field")
        };
        Ok([
            get("IVCounterNonce")?,
            get("Data")?,
            get("AuthenticatedEncryptionTag")?,
        ])
    }

    async fn decrypt(&self, uid: &str, sealed: &[String; 3]) -> Result<(u16, String)> {
        let request = by_uid(
            "Decrypt",
            uid,
            vec![
                json!({"tag": "Data", "type": "ByteString", "value": sealed[1]}),
                json!({"tag": "IVCounterNonce", "type": "ByteString", "value": sealed[0]}),
                json!({"tag": "AuthenticatedEncryptionTag", "type": "ByteString", "value": sealed[2]}),
            ],
        );
        let (status, text) = self.kmip(&request).await?;
        if status != 200 {
            return Ok((status, text));
        }
        let response: Value = serde_json::from_str(&text)?;
        Ok((
            200,
            field(&response, "Data")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02X}")).collect()
}

fn rewrap(hsm: &SoftHsm, data: &Path, master: &Path, to: &str) -> Result<String> {
    let (status, stdout, stderr) = ProxyCommand::core()
        .args(core_base(data))
        .args(["--master-key-file", &master.display().to_string()])
        .args(hsm.core_args("kms-kek"))
        .args(["rewrap", "--to", to])
        .env("SOFTHSM2_CONF", &hsm.conf.display().to_string())
        .env("KMS_HSM_PIN", PIN)
        .output()?;
    ensure!(status.success(), "rewrap --to {to}: {stderr}");
    Ok(stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_move_to_the_hsm_kek_and_back() -> Result<()> {
    let hsm = SoftHsm::new("kms-test")?;
    let pki = TestPki::new("hsm")?;
    let data = pki.path("data");
    std::fs::create_dir_all(&data)?;
    let master = pki.path("master.key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&master)?;
        f.write_all(
            base64::engine::general_purpose::STANDARD
                .encode([42u8; 32])
                .as_bytes(),
        )?;
    }
    let master_only = vec!["--master-key-file".to_owned(), master.display().to_string()];
    let hsm_only = hsm.core_args("kms-kek");

    // 1. Keys under the master key file, in use.
    let stack = start(&pki, &hsm, &data, &master_only)?;
    let first = stack.create().await?;
    let sealed_first = stack.encrypt(&first, b"before the move").await?;
    drop(stack);

    // 2. To the HSM KEK; the core then runs with the HSM only (no master key at all).
    let out = rewrap(&hsm, &data, &master, "hsm")?;
    assert!(out.contains("re-wrapped 1 key(s) under the hsm"), "{out}");
    let stack = start(&pki, &hsm, &data, &hsm_only)?;
    assert_eq!(
        stack.decrypt(&first, &sealed_first).await?,
        (200, hex("before the move"))
    );
    let second = stack.create().await?;
    let sealed_second = stack.encrypt(&second, b"made under the hsm").await?;
    assert_eq!(
        reqwest::get(&stack.core_admin).await?.status(),
        200,
        "/readyz with the HSM"
    );
    drop(stack);
    // A key wrapped by the HSM survives a restart.
    let stack = start(&pki, &hsm, &data, &hsm_only)?;
    assert_eq!(
        stack.decrypt(&second, &sealed_second).await?,
        (200, hex("made under the hsm"))
    );
    drop(stack);
    // Without the HSM those keys cannot be read: a server error, never a wrong answer.
    let stack = start(&pki, &hsm, &data, &master_only)?;
    let (status, _) = stack.decrypt(&second, &sealed_second).await?;
    assert_eq!(status, 500);
    drop(stack);

    // 3. Back to the master key file; every key still works.
    let out = rewrap(&hsm, &data, &master, "master")?;
    assert!(
        out.contains("re-wrapped 2 key(s) under the master"),
        "{out}"
    );
    let out = rewrap(&hsm, &data, &master, "master")?;
    assert!(
        out.contains("re-wrapped 0 key(s)"),
        "a second run moves nothing: {out}"
    );
    let stack = start(&pki, &hsm, &data, &master_only)?;
    assert_eq!(
        stack.decrypt(&first, &sealed_first).await?,
        (200, hex("before the move"))
    );
    assert_eq!(
        stack.decrypt(&second, &sealed_second).await?,
        (200, hex("made under the hsm"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hsm_failures_stop_the_core_with_a_clear_message() -> Result<()> {
    let hsm = SoftHsm::new("kms-fail")?;
    let pki = TestPki::new("hsm-fail")?;
    let data = pki.path("data");
    let run = |args: Vec<String>, pin: Option<&str>| -> Result<String> {
        let mut command = ProxyCommand::core()
            .args(core_base(&data))
            .args(args)
            .env("SOFTHSM2_CONF", &hsm.conf.display().to_string());
        if let Some(pin) = pin {
            command = command.env("KMS_HSM_PIN", pin);
        }
        let (status, _, stderr) = command.output()?;
        ensure!(!status.success(), "the core started: {stderr}");
        Ok(stderr)
    };
    let stderr = run(hsm.core_args("kek"), Some("wrong-pin"))?;
    assert!(stderr.contains("HSM login refused"), "{stderr}");
    assert!(!stderr.contains("wrong-pin"), "the PIN is in the output");
    let stderr = run(hsm.core_args("kek"), None)?;
    assert!(stderr.contains("KMS_HSM_PIN"), "{stderr}");
    let mut missing = hsm.core_args("kek");
    missing[1] = "/usr/lib/nowhere/libpkcs11.so".into();
    let stderr = run(missing, Some(PIN))?;
    assert!(
        stderr.contains("cannot load the PKCS#11 module") && stderr.contains("softhsm2"),
        "{stderr}"
    );
    let mut no_token = hsm.core_args("kek");
    no_token[3] = "no-such-token".into();
    let stderr = run(no_token, Some(PIN))?;
    assert!(stderr.contains("no HSM token"), "{stderr}");

    // The token goes away under a running core: 503, and /readyz says so.
    std::fs::create_dir_all(&data)?;
    let stack = start(&pki, &hsm, &data, &hsm.core_args("kek"))?;
    let uid = stack.create().await?;
    stack.encrypt(&uid, b"fine").await?;
    assert_eq!(reqwest::get(&stack.core_admin).await?.status(), 200);
    for entry in std::fs::read_dir(hsm.dir.path().join("tokens"))? {
        std::fs::remove_dir_all(entry?.path())?;
    }
    let (status, text) = stack
        .kmip(&by_uid(
            "Encrypt",
            &uid,
            vec![json!({"tag": "Data", "type": "ByteString", "value": "00"})],
        ))
        .await?;
    assert_eq!(status, 503, "{text}");
    let ready = reqwest::get(&stack.core_admin).await?;
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await?.contains("HSM unavailable"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_live_in_the_hsm() -> Result<()> {
    let hsm = SoftHsm::new("kms-resident")?;
    let pki = TestPki::new("hsm-resident")?;
    let data = pki.path("data");
    std::fs::create_dir_all(&data)?;
    let mut args = hsm.core_args("kms-kek");
    args.extend(["--hsm-admin".into(), "admin".into()]);
    let stack = start(&pki, &hsm, &data, &args)?;
    let id = format!("hsm::{}::payments", hsm.slot);
    let create = |id: &str| {
        let mut request = create_request(256, &["in-hsm"], Some("2026-01-01T00:00:00Z"));
        if let Some(attrs) = request["value"][1]["value"].as_array_mut() {
            attrs.push(json!({"tag": "UniqueIdentifier", "type": "TextString", "value": id}));
        }
        request
    };
    let created = stack.ok(&create(&id)).await?;
    assert_eq!(field(&created, "UniqueIdentifier"), Some(&json!(id)));
    // Encrypt and decrypt run inside the HSM.
    let sealed = stack.encrypt(&id, b"card numbers").await?;
    assert_eq!(
        stack.decrypt(&id, &sealed).await?,
        (200, hex("card numbers"))
    );
    let mut tampered = sealed.clone();
    tampered[2] = "00".repeat(16);
    assert_eq!(stack.decrypt(&id, &tampered).await?.0, 422);
    // The key never leaves: Get and Export are refused.
    for op in ["Get", "Export"] {
        let (status, text) = stack.kmip(&by_uid(op, &id, vec![])).await?;
        assert_eq!(status, 422, "{op}: {text}");
        assert!(text.contains("not extractable"), "{op}: {text}");
    }
    // The same label twice, the wrong slot, a key without HSM: clear refusals.
    let (status, text) = stack.kmip(&create(&id)).await?;
    assert!(
        status != 200 && text.contains("already exist"),
        "{status} {text}"
    );
    // The label of the key-encryption key, and look-alikes of the prefix: 422, never a 500
    // and never a software key.
    let (status, text) = stack
        .kmip(&create(&format!("hsm::{}::kms-kek", hsm.slot)))
        .await?;
    assert!(
        status == 422 && text.contains("key-encryption key"),
        "{status} {text}"
    );
    for look_alike in [
        format!("HSM::{}::x", hsm.slot),
        format!(" hsm::{}::x", hsm.slot),
    ] {
        let (status, text) = stack.kmip(&create(&look_alike)).await?;
        assert!(
            status == 422
                && (text.contains("looks like an HSM key") || text.contains("whitespace")),
            "{status} {text}"
        );
    }
    let (status, text) = stack.kmip(&create("hsm::999::x")).await?;
    assert!(
        status == 422 && text.contains(&format!("hsm::{}::", hsm.slot)),
        "{status} {text}"
    );

    // Other users: no creation, and use only with a grant, as for any key.
    let bob_cert = pki.server("bob", Validity::Current)?;
    let bob = ProxyCommand::new()
        .args(tls_args(
            &bob_cert,
            &format!("unix:{}", data.join("core.sock").display()),
        ))
        .args(["--default-username", "bob"])
        .spawn()?;
    let bob_kmip = |body: Value| {
        let client = stack.client.clone();
        let url = bob.url("/kmip/2_1");
        async move {
            let r = client.post(url).json(&body).send().await?;
            anyhow::Ok((r.status().as_u16(), r.text().await?))
        }
    };
    let (status, text) = bob_kmip(create(&format!("hsm::{}::bobs", hsm.slot))).await?;
    assert!(
        status == 401 && text.contains("HSM administrators"),
        "{status} {text}"
    );
    let encrypt = by_uid(
        "Encrypt",
        &id,
        vec![json!({"tag": "Data", "type": "ByteString", "value": "00"})],
    );
    assert_eq!(bob_kmip(encrypt.clone()).await?.0, 401);
    let granted = stack
        .client
        .post(stack.proxy.url("/access/grant"))
        .json(&json!({"unique_identifier": id, "user_id": "bob", "operation_types": ["encrypt"]}))
        .send()
        .await?;
    assert_eq!(granted.status(), 200);
    assert_eq!(bob_kmip(encrypt.clone()).await?.0, 200);

    // Many clients at once share the session pool.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let client = stack.client.clone();
            let url = stack.proxy.url("/kmip/2_1");
            let body = by_uid(
                "Encrypt",
                &id,
                vec![json!({"tag": "Data", "type": "ByteString", "value": format!("{i:02X}").repeat(512)})],
            );
            tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..20 {
                    if client.post(&url).json(&body).send().await?.status() == 200 {
                        ok += 1;
                    }
                }
                anyhow::Ok(ok)
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await??, 20);
    }

    // Even with a destroy grant, a user who is not an HSM administrator cannot destroy it.
    let granted = stack
        .client
        .post(stack.proxy.url("/access/grant"))
        .json(&json!({"unique_identifier": id, "user_id": "bob", "operation_types": ["revoke", "destroy"]}))
        .send()
        .await?;
    assert_eq!(granted.status(), 200);
    let (status, text) = bob_kmip(by_uid(
        "Revoke",
        &id,
        vec![json!({"tag": "RevocationReason", "value": [
            {"tag": "RevocationReasonCode", "type": "Enumeration", "value": "Unspecified"},
        ]})],
    ))
    .await?;
    assert_eq!(status, 200, "{text}");
    let (status, text) = bob_kmip(by_uid("Destroy", &id, vec![])).await?;
    assert!(
        status == 401 && text.contains("HSM administrators"),
        "{status} {text}"
    );

    // Destroy: revoke first; only an HSM administrator; then the key is gone from the HSM.
    stack
        .ok(&by_uid(
            "Revoke",
            &id,
            vec![json!({"tag": "RevocationReason", "value": [
                {"tag": "RevocationReasonCode", "type": "Enumeration", "value": "Unspecified"},
            ]})],
        ))
        .await?;
    stack
        .ok(&by_uid(
            "Destroy",
            &id,
            vec![json!({"tag": "Remove", "type": "Boolean", "value": true})],
        ))
        .await?;
    let (status, _) = stack.decrypt(&id, &sealed).await?;
    assert_ne!(status, 200, "a destroyed HSM key still decrypts");
    // The uid stays retired: nobody can create a key under it again (the HSM object is gone,
    // as the failed decrypt above shows).
    let (status, text) = stack.kmip(&create(&id)).await?;
    assert!(
        status == 422 && text.contains("never reused"),
        "{status} {text}"
    );
    Ok(())
}

/// The PEM of an SPKI (DER) for openssl.
fn public_pem(spki: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn key_pairs_that_live_in_the_hsm() -> Result<()> {
    let hsm = SoftHsm::new("kms-pairs")?;
    let pki = TestPki::new("hsm-pairs")?;
    let data = pki.path("data");
    std::fs::create_dir_all(&data)?;
    let mut args = hsm.core_args("kms-kek");
    args.extend(["--hsm-admin".into(), "admin".into()]);
    let stack = start(&pki, &hsm, &data, &args)?;
    let message = pki.path("message.txt");
    std::fs::write(&message, b"signed inside the HSM\n")?;
    let message_hex = hex("signed inside the HSM\n");
    for (name, algorithm, extra, dgst) in [
        (
            "rsa-signer",
            "RSA",
            json!({"tag": "CryptographicLength", "type": "Integer", "value": 2048}),
            "-sha256",
        ),
        (
            "ec-signer",
            "ECDSA",
            json!({"tag": "CryptographicDomainParameters", "value": [
                {"tag": "RecommendedCurve", "type": "Enumeration", "value": "P384"}]}),
            "-sha384",
        ),
    ] {
        let sk = format!("hsm::{}::{name}", hsm.slot);
        let created = stack
            .ok(&json!({"tag": "CreateKeyPair", "value": [
                {"tag": "CommonAttributes", "value": [
                    {"tag": "CryptographicAlgorithm", "type": "Enumeration", "value": algorithm},
                    extra,
                    {"tag": "ActivationDate", "type": "DateTime", "value": "2026-01-01T00:00:00Z"},
                ]},
                {"tag": "PrivateKeyAttributes", "value": [
                    {"tag": "UniqueIdentifier", "type": "TextString", "value": sk},
                ]},
            ]}))
            .await?;
        let pk = field(&created, "PublicKeyUniqueIdentifier")
            .and_then(Value::as_str)
            .context("public uid")?
            .to_owned();
        // The private key never leaves; the public key does.
        let (status, text) = stack.kmip(&by_uid("Get", &sk, vec![])).await?;
        ensure!(
            status == 422 && text.contains("not extractable"),
            "{status} {text}"
        );
        let got = stack
            .ok(&by_uid(
                "Get",
                &pk,
                vec![json!({"tag": "KeyFormatType", "type": "Enumeration", "value": "PKCS8"})],
            ))
            .await?;
        let spki = unhex(
            &got.to_string()
                .split("\"KeyMaterial\",\"type\":\"ByteString\",\"value\":\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(str::to_owned)
                .context("KeyMaterial")?,
        );
        let public = pki.path(&format!("{name}.pub.pem"));
        std::fs::write(&public, public_pem(&spki))?;
        // Signed inside the HSM, verified by openssl.
        let signed = stack
            .ok(&by_uid(
                "Sign",
                &sk,
                vec![json!({"tag": "Data", "type": "ByteString", "value": message_hex})],
            ))
            .await?;
        let signature = unhex(
            field(&signed, "SignatureData")
                .and_then(Value::as_str)
                .context("signature")?,
        );
        let sig = pki.path(&format!("{name}.sig"));
        std::fs::write(&sig, signature)?;
        let (public_s, sig_s, message_s) = (
            public.display().to_string(),
            sig.display().to_string(),
            message.display().to_string(),
        );
        let mut verify = vec!["dgst", dgst, "-verify", &public_s, "-signature", &sig_s];
        if algorithm == "RSA" {
            verify.extend([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
            ]);
        }
        verify.push(&message_s);
        kms_tests::openssl(&verify)?;
        if algorithm == "RSA" {
            // openssl encrypts to the public key; the HSM decrypts (OAEP with SHA-1: SoftHSM2
            // 2.6 takes no other OAEP hash, and the refusal of SHA-256 says so).
            let sealed = pki.path("sealed.bin");
            let sealed_s = sealed.display().to_string();
            kms_tests::openssl(&[
                "pkeyutl",
                "-encrypt",
                "-pubin",
                "-inkey",
                &public_s,
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                "rsa_oaep_md:sha1",
                "-pkeyopt",
                "rsa_mgf1_md:sha1",
                "-in",
                &message_s,
                "-out",
                &sealed_s,
            ])?;
            let sealed_hex: String = std::fs::read(&sealed)?
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect();
            let oaep = |hash: &str| {
                by_uid(
                    "Decrypt",
                    &sk,
                    vec![
                        json!({"tag": "CryptographicParameters", "value": [
                            {"tag": "PaddingMethod", "type": "Enumeration", "value": "OAEP"},
                            {"tag": "HashingAlgorithm", "type": "Enumeration", "value": hash}]}),
                        json!({"tag": "Data", "type": "ByteString", "value": sealed_hex}),
                    ],
                )
            };
            let opened = stack.ok(&oaep("SHA1")).await?;
            let (status, text) = stack.kmip(&oaep("SHA256")).await?;
            ensure!(
                status == 422 && text.contains("does not support"),
                "{status} {text}"
            );
            ensure!(
                field(&opened, "Data") == Some(&json!(message_hex)),
                "{opened}"
            );
            // A self-signed certificate signed inside the HSM passes openssl verify.
            let certified = stack
                .ok(&json!({"tag": "Certify", "value": [
                    {"tag": "UniqueIdentifier", "type": "TextString", "value": pk},
                    {"tag": "Attributes", "value": [{"tag": "CertificateAttributes", "value": [
                        {"tag": "CertificateSubjectCn", "type": "TextString", "value": "HSM root"},
                    ]}]},
                ]}))
                .await?;
            let cert_uid = field(&certified, "UniqueIdentifier")
                .and_then(Value::as_str)
                .context("cert")?;
            let cert = stack.ok(&by_uid("Get", cert_uid, vec![])).await?;
            let der = unhex(
                &cert
                    .to_string()
                    .split("\"CertificateValue\",\"type\":\"ByteString\",\"value\":\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .map(str::to_owned)
                    .context("CertificateValue")?,
            );
            let cert_file = pki.path("hsm-root.der");
            std::fs::write(&cert_file, der)?;
            let cert_pem = pki.path("hsm-root.pem");
            let (der_s, pem_s) = (
                cert_file.display().to_string(),
                cert_pem.display().to_string(),
            );
            kms_tests::openssl(&["x509", "-inform", "DER", "-in", &der_s, "-out", &pem_s])?;
            let ok = kms_tests::openssl(&["verify", "-CAfile", &pem_s, &pem_s])?;
            ensure!(String::from_utf8_lossy(&ok).contains(": OK"));
        }
        // Revoke and destroy the pair: both token objects go; the label is free again.
        let revoke = by_uid(
            "Revoke",
            &sk,
            vec![
                json!({"tag": "RevocationReason", "value": [
                    {"tag": "RevocationReasonCode", "type": "Enumeration", "value": "Unspecified"}]}),
                json!({"tag": "Cascade", "type": "Boolean", "value": true}),
            ],
        );
        stack.ok(&revoke).await?;
        stack
            .ok(&by_uid(
                "Destroy",
                &sk,
                vec![json!({"tag": "Cascade", "type": "Boolean", "value": true})],
            ))
            .await?;
        let (status, text) = stack
            .kmip(&by_uid(
                "Sign",
                &sk,
                vec![json!({"tag": "Data", "type": "ByteString", "value": "00"})],
            ))
            .await?;
        ensure!(status != 200, "{text}");
    }
    // Ed25519 is refused in the HSM, by name.
    let (status, text) = stack
        .kmip(&json!({"tag": "CreateKeyPair", "value": [
            {"tag": "CommonAttributes", "value": [
                {"tag": "CryptographicAlgorithm", "type": "Enumeration", "value": "Ed25519"}]},
            {"tag": "PrivateKeyAttributes", "value": [
                {"tag": "UniqueIdentifier", "type": "TextString", "value": format!("hsm::{}::ed", hsm.slot)}]},
        ]}))
        .await?;
    ensure!(status == 422 && text.contains("Ed25519"), "{status} {text}");
    Ok(())
}
