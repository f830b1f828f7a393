//! Asymmetric keys end to end through the stack with the real `ckms`: RSA and EC key pairs
//! created, exported and imported, signatures and RSA encryption — every result checked by
//! openssl (it verifies our signatures and decrypts our ciphertexts; we verify and decrypt
//! what it made; `openssl verify` accepts the certificates it issues), plus grants on key
//! pairs and the pair's lifecycle.

use anyhow::{Result, ensure};
use kms_tests::ckms::{Ckms, pinned_front};
use kms_tests::openssl;
use kms_tests::stack::Stack;
use serde_json::Value;

fn path(ckms: &Ckms, name: &str) -> String {
    ckms.path(name).display().to_string()
}

/// `ckms --json <family> keys create ...`: (private uid, public uid).
fn create_pair(ckms: &Ckms, args: &[&str]) -> Result<(String, String)> {
    let out = ckms.json(args)?;
    let get = |k: &str| out[k].as_str().unwrap_or_default().to_owned();
    let (sk, pk) = (
        get("private_key_unique_identifier"),
        get("public_key_unique_identifier"),
    );
    ensure!(!sk.is_empty() && !pk.is_empty(), "{args:?}: {out}");
    Ok((sk, pk))
}

fn write(ckms: &Ckms, name: &str, data: &[u8]) -> Result<String> {
    let p = path(ckms, name);
    std::fs::write(&p, data)?;
    Ok(p)
}

fn rsa(ckms: &Ckms) -> Result<()> {
    let (sk, pk) = create_pair(
        ckms,
        &["rsa", "keys", "create", "-s", "2048", "-t", "asym-rsa"],
    )?;
    ensure!(pk == format!("{sk}_pk"));
    // Exports openssl reads; the public key it derives from our private key is ours.
    let priv_pem = path(ckms, "rsa.pem");
    let pub_pem = path(ckms, "rsa.pub.pem");
    let pkcs1_pem = path(ckms, "rsa1.pem");
    let pub1_pem = path(ckms, "rsa1.pub.pem");
    ckms.json(&[
        "rsa",
        "keys",
        "export",
        "-k",
        &sk,
        "-f",
        "pkcs8-pem",
        &priv_pem,
    ])?;
    ckms.json(&[
        "rsa", "keys", "export", "-k", &pk, "-f", "spki-pem", &pub_pem,
    ])?;
    ckms.json(&[
        "rsa",
        "keys",
        "export",
        "-k",
        &sk,
        "-f",
        "pkcs1-pem",
        &pkcs1_pem,
    ])?;
    ckms.json(&[
        "rsa",
        "keys",
        "export",
        "-k",
        &pk,
        "-f",
        "pkcs1-pem",
        &pub1_pem,
    ])?;
    ensure!(std::fs::read_to_string(&pkcs1_pem)?.starts_with("-----BEGIN RSA PRIVATE KEY"));
    let derived = openssl(&["pkey", "-in", &priv_pem, "-pubout"])?;
    ensure!(
        derived == std::fs::read(&pub_pem)?,
        "openssl derives another public key"
    );
    let from_pkcs1 = openssl(&["rsa", "-RSAPublicKey_in", "-in", &pub1_pem, "-pubout"])?;
    ensure!(
        from_pkcs1 == derived,
        "the PKCS#1 public key is another key"
    );
    let text = String::from_utf8(openssl(&["pkey", "-in", &pkcs1_pem, "-noout", "-text"])?)?;
    ensure!(text.contains("2048 bit"), "{text}");

    let data = write(ckms, "msg.txt", b"hello rsa\n")?;
    // RSA-PSS (the default): openssl verifies it.
    let sig = path(ckms, "msg.pss.sig");
    ckms.json(&["rsa", "sign", "-k", &sk, &data, "-o", &sig])?;
    openssl(&[
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-verify",
        &pub_pem,
        "-signature",
        &sig,
        &data,
    ])?;
    let ok = ckms.json(&["rsa", "sign-verify", "-k", &pk, &data, &sig])?;
    ensure!(ok["validity"] == "Valid", "{ok}");
    // A changed file does not verify, and the command fails.
    let other = write(ckms, "other.txt", b"hello rsA\n")?;
    let invalid = ckms.fails(&["rsa", "sign-verify", "-k", &pk, &other, &sig])?;
    ensure!(invalid.contains("Invalid"), "{invalid}");
    // PKCS#1 v1.5 with SHA-384.
    let sig384 = path(ckms, "msg.p1.sig");
    ckms.json(&[
        "rsa",
        "sign",
        "-k",
        &sk,
        "-a",
        "rsassa-pkcs1-v15",
        "-s",
        "sha384",
        &data,
        "-o",
        &sig384,
    ])?;
    openssl(&[
        "dgst",
        "-sha384",
        "-verify",
        &pub_pem,
        "-signature",
        &sig384,
        &data,
    ])?;
    // openssl signs, the KMS verifies.
    let theirs = path(ckms, "msg.openssl.sig");
    openssl(&[
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-sign",
        &priv_pem,
        "-out",
        &theirs,
        &data,
    ])?;
    ckms.json(&["rsa", "sign-verify", "-k", &pk, &data, &theirs])?;
    // A digest computed here, signed by the KMS, verifies over the data.
    let digest = write(
        ckms,
        "msg.sha256",
        &openssl(&["dgst", "-sha256", "-binary", &data])?,
    )?;
    let sig_digest = path(ckms, "msg.digest.sig");
    ckms.json(&[
        "rsa",
        "sign",
        "-k",
        &sk,
        "--digested",
        &digest,
        "-o",
        &sig_digest,
    ])?;
    openssl(&[
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-verify",
        &pub_pem,
        "-signature",
        &sig_digest,
        &data,
    ])?;

    // Encryption: openssl encrypts with OAEP-SHA256, the KMS decrypts, and back.
    let sealed = path(ckms, "msg.oaep");
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        &pub_pem,
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
        "-pkeyopt",
        "rsa_mgf1_md:sha256",
        "-in",
        &data,
        "-out",
        &sealed,
    ])?;
    let opened = path(ckms, "msg.oaep.plain");
    ckms.json(&["rsa", "decrypt", "-k", &sk, &sealed, "-o", &opened])?;
    ensure!(std::fs::read(&opened)? == b"hello rsa\n");
    let ours = path(ckms, "msg.kms.oaep");
    ckms.json(&["rsa", "encrypt", "-k", &pk, &data, "-o", &ours])?;
    let clear = openssl(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        &priv_pem,
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
        "-pkeyopt",
        "rsa_mgf1_md:sha256",
        "-in",
        &ours,
    ])?;
    ensure!(clear == b"hello rsa\n");
    // PKCS#1 v1.5 encryption, decrypted by openssl.
    let v15 = path(ckms, "msg.v15");
    ckms.json(&[
        "rsa",
        "encrypt",
        "-k",
        &pk,
        "-e",
        "ckm-rsa-pkcs",
        &data,
        "-o",
        &v15,
    ])?;
    ensure!(openssl(&["pkeyutl", "-decrypt", "-inkey", &priv_pem, "-in", &v15])? == b"hello rsa\n");
    // CKM_RSA_AES_KEY_WRAP of 4000 bytes (openssl enc unwraps at most 4 KiB): OAEP-wrapped
    // AES key, then RFC 5649 — openssl takes both parts apart.
    let big: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let big_file = write(ckms, "big.bin", &big)?;
    let wrapped = path(ckms, "big.kw");
    ckms.json(&[
        "rsa",
        "encrypt",
        "-k",
        &pk,
        "-e",
        "ckm-rsa-aes-key-wrap",
        &big_file,
        "-o",
        &wrapped,
    ])?;
    let all = std::fs::read(&wrapped)?;
    ensure!(all.len() == 256 + 4000 + 8, "{} bytes", all.len());
    let head = write(ckms, "big.kw.head", &all[..256])?;
    let kek = openssl(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        &priv_pem,
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
        "-pkeyopt",
        "rsa_mgf1_md:sha256",
        "-in",
        &head,
    ])?;
    let tail = write(ckms, "big.kw.tail", &all[256..])?;
    let kek_hex: String = kek.iter().map(|b| format!("{b:02x}")).collect();
    let unwrapped = openssl(&[
        "enc",
        "-d",
        "-id-aes256-wrap-pad",
        "-K",
        &kek_hex,
        "-iv",
        "A65959A6",
        "-in",
        &tail,
    ])?;
    ensure!(unwrapped == big, "openssl unwraps another payload");
    let back = path(ckms, "big.kw.plain");
    ckms.json(&[
        "rsa",
        "decrypt",
        "-k",
        &sk,
        "-e",
        "ckm-rsa-aes-key-wrap",
        &wrapped,
        "-o",
        &back,
    ])?;
    ensure!(std::fs::read(&back)? == big);
    // OAEP cannot carry 4000 bytes: the refusal says what to use.
    let too_big = ckms.fails(&[
        "rsa",
        "encrypt",
        "-k",
        &pk,
        &big_file,
        "-o",
        &path(ckms, "x"),
    ])?;
    ensure!(too_big.contains("CKM_RSA_AES_KEY_WRAP"), "{too_big}");

    // Keys made by openssl import (PEM), sign, and verify with openssl's own public key.
    let generated = path(ckms, "openssl-rsa.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:3072",
        "-out",
        &generated,
    ])?;
    let imported = ckms.json(&[
        "rsa",
        "keys",
        "import",
        "-f",
        "pem",
        &generated,
        "-t",
        "imported-rsa",
    ])?;
    let imported = imported["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sig_imported = path(ckms, "msg.imported.sig");
    ckms.json(&[
        "rsa",
        "sign",
        "-t",
        "imported-rsa",
        &data,
        "-o",
        &sig_imported,
    ])?;
    let generated_pub = write(
        ckms,
        "openssl-rsa.pub.pem",
        &openssl(&["pkey", "-in", &generated, "-pubout"])?,
    )?;
    openssl(&[
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-verify",
        &generated_pub,
        "-signature",
        &sig_imported,
        &data,
    ])?;
    let attrs = ckms.json(&["attributes", "get", "-i", &imported])?;
    ensure!(attrs.to_string().contains("3072"), "{attrs}");
    // A public key alone (PEM) verifies what its private key signed.
    let pub_only = ckms.json(&["rsa", "keys", "import", "-f", "pem", &generated_pub])?;
    let pub_only = pub_only["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ckms.json(&["rsa", "sign-verify", "-k", &pub_only, &data, &sig_imported])?;
    // The KMIP object round trip (json-ttlv) keeps the key.
    let object = path(ckms, "rsa.json");
    ckms.json(&["rsa", "keys", "export", "-k", &sk, &object])?;
    let copy = ckms.json(&["rsa", "keys", "import", &object, "rsa-copy"])?;
    ensure!(copy["unique_identifier"] == "rsa-copy", "{copy}");
    let copy_pem = path(ckms, "rsa-copy.pem");
    ckms.json(&[
        "rsa",
        "keys",
        "export",
        "-k",
        "rsa-copy",
        "-f",
        "pkcs8-pem",
        &copy_pem,
    ])?;
    ensure!(std::fs::read(&copy_pem)? == std::fs::read(&priv_pem)?);
    // An encrypted PEM is refused with what to do.
    let encrypted = path(ckms, "enc.pem");
    openssl(&[
        "pkey", "-in", &generated, "-aes256", "-passout", "pass:x", "-out", &encrypted,
    ])?;
    let refused = ckms.fails(&["rsa", "keys", "import", "-f", "pem", &encrypted])?;
    ensure!(refused.contains("encrypted private key"), "{refused}");
    revoke_and_destroy(ckms, "rsa", &sk, &pk, &data, &sig)
}

/// Revoking a pair (from its private key) retires both halves: no more signatures, but old
/// ones still verify; destroying removes both.
fn revoke_and_destroy(
    ckms: &Ckms,
    family: &str,
    sk: &str,
    pk: &str,
    data: &str,
    sig: &str,
) -> Result<()> {
    let destroy_active = ckms.fails(&[family, "keys", "destroy", "-k", sk])?;
    ensure!(
        destroy_active.contains("Wrong_Key_Lifecycle_State"),
        "{destroy_active}"
    );
    ckms.json(&[family, "keys", "revoke", "-k", sk, "retired"])?;
    let state = |id: &str| -> Result<String> {
        let a = ckms.json(&["attributes", "get", "-i", id, "-a", "State"])?;
        Ok(a.to_string())
    };
    ensure!(state(pk)?.contains("Deactivated"), "{}", state(pk)?);
    let no_sign = ckms.fails(&[
        family,
        "sign",
        "-k",
        sk,
        data,
        "-o",
        &path(ckms, "late.sig"),
    ])?;
    ensure!(no_sign.contains("Deactivated"), "{no_sign}");
    ckms.json(&[family, "sign-verify", "-k", pk, data, sig])?;
    ckms.json(&[family, "keys", "destroy", "-k", sk])?;
    ensure!(state(pk)?.contains("Destroyed"), "{}", state(pk)?);
    Ok(())
}

fn ec(ckms: &Ckms) -> Result<()> {
    let data = write(ckms, "ec.txt", b"hello ec\n")?;
    for (curve, hash) in [
        ("nist-p256", "-sha256"),
        ("nist-p384", "-sha384"),
        ("nist-p521", "-sha512"),
    ] {
        let (sk, pk) = create_pair(ckms, &["ec", "keys", "create", "-c", curve])?;
        let sec1 = path(ckms, &format!("{curve}.pem"));
        let spki = path(ckms, &format!("{curve}.pub.pem"));
        ckms.json(&["ec", "keys", "export", "-k", &sk, "-f", "sec1-pem", &sec1])?;
        ckms.json(&["ec", "keys", "export", "-k", &pk, "-f", "spki-pem", &spki])?;
        ensure!(std::fs::read_to_string(&sec1)?.starts_with("-----BEGIN EC PRIVATE KEY"));
        ensure!(openssl(&["pkey", "-in", &sec1, "-pubout"])? == std::fs::read(&spki)?);
        let sig = path(ckms, &format!("{curve}.sig"));
        ckms.json(&["ec", "sign", "-k", &sk, &data, "-o", &sig])?;
        openssl(&["dgst", hash, "-verify", &spki, "-signature", &sig, &data])?;
        let theirs = path(ckms, &format!("{curve}.openssl.sig"));
        openssl(&["dgst", hash, "-sign", &sec1, "-out", &theirs, &data])?;
        ckms.json(&["ec", "sign-verify", "-k", &pk, &data, &theirs])?;
        // ECDSA signs with the curve's hash only, and says so.
        let wrong = if curve == "nist-p256" {
            "sha512"
        } else {
            "sha256"
        };
        let refused = ckms.fails(&[
            "ec",
            "sign",
            "-k",
            &sk,
            "-s",
            wrong,
            &data,
            "-o",
            &path(ckms, "x.sig"),
        ])?;
        ensure!(refused.contains("signs with"), "{refused}");
        // Public-key encryption with an EC key (ECIES) is refused by name.
        let ecies = ckms.fails(&[
            "rsa",
            "encrypt",
            "-k",
            &pk,
            &data,
            "-o",
            &path(ckms, "x.enc"),
        ])?;
        ensure!(ecies.contains("ECIES"), "{ecies}");
    }
    let (sk, pk) = create_pair(
        ckms,
        &["ec", "keys", "create", "-c", "ed25519", "-t", "asym-ed"],
    )?;
    let pkcs8 = path(ckms, "ed.pem");
    let spki = path(ckms, "ed.pub.pem");
    ckms.json(&["ec", "keys", "export", "-k", &sk, "-f", "pkcs8-pem", &pkcs8])?;
    ckms.json(&["ec", "keys", "export", "-k", &pk, "-f", "spki-pem", &spki])?;
    let sig = path(ckms, "ed.sig");
    ckms.json(&["ec", "sign", "-t", "asym-ed", &data, "-o", &sig])?;
    openssl(&[
        "pkeyutl", "-verify", "-pubin", "-inkey", &spki, "-rawin", "-in", &data, "-sigfile", &sig,
    ])?;
    let theirs = path(ckms, "ed.openssl.sig");
    openssl(&[
        "pkeyutl", "-sign", "-inkey", &pkcs8, "-rawin", "-in", &data, "-out", &theirs,
    ])?;
    ckms.json(&["ec", "sign-verify", "-k", &pk, &data, &theirs])?;
    // openssl's EC keys import (SEC1 PEM) and sign.
    let generated = path(ckms, "openssl-ec.pem");
    openssl(&[
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-noout",
        "-out",
        &generated,
    ])?;
    let imported = ckms.json(&["ec", "keys", "import", "-f", "pem", &generated])?;
    let imported = imported["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sig384 = path(ckms, "imported.sig");
    ckms.json(&["ec", "sign", "-k", &imported, &data, "-o", &sig384])?;
    let generated_pub = write(
        ckms,
        "openssl-ec.pub.pem",
        &openssl(&["pkey", "-in", &generated, "-pubout"])?,
    )?;
    openssl(&[
        "dgst",
        "-sha384",
        "-verify",
        &generated_pub,
        "-signature",
        &sig384,
        &data,
    ])?;
    revoke_and_destroy(ckms, "ec", &sk, &pk, &data, &sig)
}

/// Another user needs the sign grant to sign; any grantee of the pair may read the public key,
/// never the private key.
fn grants(stack: &Stack, ckms: &Ckms) -> Result<()> {
    let (sk, pk) = create_pair(ckms, &["ec", "keys", "create"])?;
    let bob_proxy = stack.proxy_as("bob")?;
    let bob = Ckms::new(&format!(
        "server_url = \"{}\"\naccept_invalid_certs = true",
        bob_proxy.url("")
    ))?;
    let data = write(&bob, "bob.txt", b"bob\n")?;
    let sig = path(&bob, "bob.sig");
    let denied = bob.fails(&["ec", "sign", "-k", &sk, &data, "-o", &sig])?;
    ensure!(denied.contains("permission"), "{denied}");
    ckms.json(&["access-rights", "grant", "bob", "-i", &sk, "sign"])?;
    bob.json(&["ec", "sign", "-k", &sk, &data, "-o", &sig])?;
    let spki = path(&bob, "bob.pub.pem");
    bob.json(&["ec", "keys", "export", "-k", &pk, "-f", "spki-pem", &spki])?;
    openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &spki,
        "-signature",
        &sig,
        &data,
    ])?;
    let private = bob.fails(&[
        "ec",
        "keys",
        "export",
        "-k",
        &sk,
        "-f",
        "sec1-pem",
        &path(&bob, "no.pem"),
    ])?;
    ensure!(!private.is_empty());
    ensure!(!std::path::Path::new(&path(&bob, "no.pem")).exists());
    Ok(())
}

#[tokio::test]
async fn rsa_and_ec_keys_checked_with_openssl() -> Result<()> {
    let stack = Stack::start(None).await?;
    let (_proxy, ckms) = pinned_front(&stack, "asym")?;
    rsa(&ckms)?;
    ec(&ckms)?;
    grants(&stack, &ckms)?;
    certificates(&ckms)?;
    // Query lists what now exists.
    let query: Value = ckms.json(&["server", "query"])?;
    ensure!(query.to_string().contains("SignatureVerify"), "{query}");
    Ok(())
}

/// Certificates issued by the KMS pass `openssl verify` and show what was asked for; openssl's
/// own certificates and PKCS#12 archives import and work.
fn certificates(ckms: &Ckms) -> Result<()> {
    let root = ckms.json(&[
        "certificates",
        "certify",
        "-g",
        "-a",
        "nist-p256",
        "-s",
        "CN=Test Root CA,O=KMS Tests,C=FR",
        "-d",
        "3650",
        "-t",
        "test-root",
    ])?;
    let root = root["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let root_pem = path(ckms, "root.pem");
    ckms.json(&[
        "certificates",
        "export",
        "-c",
        &root,
        "-f",
        "pem",
        &root_pem,
    ])?;
    let text = String::from_utf8(openssl(&["x509", "-in", &root_pem, "-noout", "-text"])?)?;
    ensure!(
        text.contains("CN = Test Root CA") && text.contains("CA:TRUE"),
        "{text}"
    );
    // A CSR made by openssl, issued by the root with SANs and an extended key usage.
    let leaf_key = path(ckms, "leaf.key");
    let csr = path(ckms, "leaf.csr");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &leaf_key,
        "-subj",
        "/CN=leaf.example/O=KMS Tests",
        "-out",
        &csr,
    ])?;
    let ext = write(
        ckms,
        "leaf.ext",
        b"[ v3 ]\nsubjectAltName = DNS:leaf.example, IP:127.0.0.1\nextendedKeyUsage = serverAuth, clientAuth\nkeyUsage = digitalSignature, keyEncipherment\n",
    )?;
    let leaf = ckms.json(&[
        "certificates",
        "certify",
        "-r",
        &csr,
        "-i",
        &root,
        "-d",
        "30",
        "-e",
        &ext,
    ])?;
    let leaf = leaf["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let leaf_pem = path(ckms, "leaf.pem");
    ckms.json(&[
        "certificates",
        "export",
        "-c",
        &leaf,
        "-f",
        "pem",
        &leaf_pem,
    ])?;
    let verified = String::from_utf8(openssl(&["verify", "-CAfile", &root_pem, &leaf_pem])?)?;
    ensure!(verified.contains(": OK"), "{verified}");
    let text = String::from_utf8(openssl(&["x509", "-in", &leaf_pem, "-noout", "-text"])?)?;
    for wanted in [
        "CN = leaf.example",
        "DNS:leaf.example",
        "IP Address:127.0.0.1",
        "TLS Web Server Authentication",
        "TLS Web Client Authentication",
        "Digital Signature, Key Encipherment",
        "Issuer: CN = Test Root CA",
    ] {
        ensure!(text.contains(wanted), "{wanted} missing from\n{text}");
    }
    let end = openssl(&[
        "x509",
        "-in",
        &leaf_pem,
        "-noout",
        "-checkend",
        &(29 * 86_400).to_string(),
    ]);
    ensure!(end.is_ok(), "the leaf expires within 29 days");
    let end = openssl(&[
        "x509",
        "-in",
        &leaf_pem,
        "-noout",
        "-checkend",
        &(31 * 86_400).to_string(),
    ]);
    ensure!(end.is_err(), "the leaf is valid beyond 30 days");
    // The leaf's key (openssl's) matches the certificate: openssl-made PKCS#12 imports.
    let p12 = path(ckms, "leaf.p12");
    openssl(&[
        "pkcs12",
        "-export",
        "-inkey",
        &leaf_key,
        "-in",
        &leaf_pem,
        "-certfile",
        &root_pem,
        "-passout",
        "pass:p12-secret",
        "-out",
        &p12,
    ])?;
    let imported = ckms.json(&[
        "certificates",
        "import",
        "-f",
        "pkcs12",
        "-p",
        "p12-secret",
        &p12,
        "leaf-from-p12",
    ])?;
    ensure!(
        imported["unique_identifier"] == "leaf-from-p12",
        "{imported}"
    );
    let data = write(ckms, "cert.txt", b"signed under a certificate\n")?;
    let sig = path(ckms, "cert.sig");
    ckms.json(&["rsa", "sign", "-k", "leaf-from-p12", &data, "-o", &sig])?;
    let leaf_pub = write(
        ckms,
        "leaf.pub.pem",
        &openssl(&["x509", "-in", &leaf_pem, "-noout", "-pubkey"])?,
    )?;
    openssl(&[
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-verify",
        &leaf_pub,
        "-signature",
        &sig,
        &data,
    ])?;
    ckms.json(&["certificates", "validate", "-v", "leaf-from-p12_cert"])?;
    let wrong = ckms.fails(&["certificates", "import", "-f", "pkcs12", "-p", "nope", &p12])?;
    ensure!(wrong.contains("password"), "{wrong}");
    // A certificate for a key pair of the KMS; the KMS's PKCS#12 opens in openssl.
    let (sk, pk) = create_pair(ckms, &["rsa", "keys", "create", "-s", "2048"])?;
    let for_key = ckms.json(&[
        "certificates",
        "certify",
        "-p",
        &pk,
        "-s",
        "CN=kms-key",
        "-i",
        &root,
    ])?;
    let for_key = for_key["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let exported = path(ckms, "kms-key.p12");
    ckms.json(&[
        "certificates",
        "export",
        "-c",
        &for_key,
        "-f",
        "pkcs12",
        "-p",
        "pw",
        &exported,
    ])?;
    let opened = String::from_utf8(openssl(&[
        "pkcs12", "-in", &exported, "-passin", "pass:pw", "-nodes",
    ])?)?;
    ensure!(
        opened.contains("PRIVATE KEY") && opened.matches("BEGIN CERTIFICATE").count() == 2,
        "{opened}"
    );
    // Encrypting to the certificate: the key pair's private key decrypts.
    let sealed = path(ckms, "to-cert.enc");
    ckms.json(&["rsa", "encrypt", "-k", &for_key, &data, "-o", &sealed])?;
    let back = path(ckms, "to-cert.plain");
    ckms.json(&["rsa", "decrypt", "-k", &sk, &sealed, "-o", &back])?;
    ensure!(std::fs::read(&back)? == std::fs::read(&data)?);
    // Validation: now, in the future (expired), a foreign chain, and after the root is revoked.
    ckms.json(&["certificates", "validate", "-v", &leaf])?;
    let late = ckms.fails(&[
        "certificates",
        "validate",
        "-v",
        &leaf,
        "-d",
        "2100-01-01T00:00:00Z",
    ])?;
    ensure!(late.contains("Invalid"), "{late}");
    let other_key = path(ckms, "other.key");
    let other = path(ckms, "other.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &other_key,
        "-subj",
        "/CN=Test Root CA/O=KMS Tests/C=FR",
        "-days",
        "1",
        "-out",
        &other,
    ])?;
    let forged = ckms.fails(&["certificates", "validate", "-c", &leaf_pem, "-c", &other])?;
    ensure!(forged.contains("Invalid"), "{forged}");
    ckms.json(&["certificates", "validate", "-c", &leaf_pem, "-c", &root_pem])?;
    // PEM chain import: leaf and root become two linked certificates that validate.
    let chain = write(
        ckms,
        "chain.pem",
        &[std::fs::read(&leaf_pem)?, std::fs::read(&root_pem)?].concat(),
    )?;
    let chain_leaf = ckms.json(&["certificates", "import", "-f", "pem", &chain])?;
    let chain_leaf = chain_leaf["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ckms.json(&["certificates", "validate", "-v", &chain_leaf])?;
    ckms.json(&["certificates", "revoke", "-k", &root, "compromised"])?;
    let revoked = ckms.fails(&["certificates", "validate", "-v", &leaf])?;
    ensure!(revoked.contains("Invalid"), "{revoked}");
    ckms.json(&["certificates", "destroy", "-k", &root])?;
    Ok(())
}
