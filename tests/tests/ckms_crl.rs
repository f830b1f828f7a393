//! Validate checks CRLs: a certificate naming a CRL distribution point is judged by the CRL
//! served there (made by `openssl ca`, whose own `verify -crl_check` must agree), and the
//! check fails closed when that CRL is missing, unreachable, forged or not over http(s).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use anyhow::{Result, ensure};
use kms_tests::ckms::{Ckms, pinned_front};
use kms_tests::openssl;
use kms_tests::stack::Stack;

/// What the CRL server answers: a body, or 404 when there is none.
type Served = Arc<Mutex<Option<Vec<u8>>>>;

/// An HTTP server answering every GET with the current body.
fn crl_server() -> Result<(u16, Served)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let body: Served = Arc::new(Mutex::new(None));
    let serving = body.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let current = serving.lock().map(|b| b.clone()).unwrap_or_default();
            let (status, data) = match current {
                Some(d) => ("200 OK", d),
                None => ("404 Not Found", Vec::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/pkix-crl\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                data.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&data);
        }
    });
    Ok((port, body))
}

struct Ca {
    key: String,
    cert: String,
    config: String,
}

/// A root CA in `dir` under `name`, with an `openssl ca` database to revoke and publish CRLs.
fn ca(ckms: &Ckms, name: &str) -> Result<Ca> {
    let p = |f: &str| ckms.path(&format!("{name}.{f}")).display().to_string();
    let ca = Ca {
        key: p("key"),
        cert: p("pem"),
        config: p("cnf"),
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &ca.key,
        "-out",
        &ca.cert,
        "-days",
        "30",
        "-subj",
        "/CN=CRL Test Root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    std::fs::write(p("index"), "")?;
    std::fs::write(p("crlnumber"), "01\n")?;
    std::fs::write(
        &ca.config,
        format!(
            "[ca]\ndefault_ca = test_ca\n[test_ca]\ndatabase = {}\ncrlnumber = {}\n\
             default_md = sha256\ndefault_crl_days = 7\n",
            p("index"),
            p("crlnumber")
        ),
    )?;
    Ok(ca)
}

/// A leaf issued by `ca` whose CRL distribution point is `crl_uri`.
fn leaf(ckms: &Ckms, ca: &Ca, name: &str, crl_uri: &str) -> Result<String> {
    let p = |f: &str| ckms.path(&format!("{name}.{f}")).display().to_string();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("key"),
        "-out",
        &p("csr"),
        "-subj",
        &format!("/CN={name}"),
    ])?;
    std::fs::write(
        p("ext"),
        format!("basicConstraints=CA:FALSE\ncrlDistributionPoints=URI:{crl_uri}\n"),
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("csr"),
        "-CA",
        &ca.cert,
        "-CAkey",
        &ca.key,
        "-CAcreateserial",
        "-days",
        "10",
        "-extfile",
        &p("ext"),
        "-out",
        &p("pem"),
    ])?;
    Ok(p("pem"))
}

/// The CA's current CRL (PEM).
fn crl(ca: &Ca) -> Result<Vec<u8>> {
    openssl(&[
        "ca", "-config", &ca.config, "-keyfile", &ca.key, "-cert", &ca.cert, "-gencrl",
    ])
}

/// openssl's own verdict on the leaf with this CRL.
fn openssl_accepts(ckms: &Ckms, ca: &Ca, leaf: &str, crl_pem: &[u8]) -> Result<bool> {
    let file = ckms.path("check.crl");
    std::fs::write(&file, crl_pem)?;
    let file = file.display().to_string();
    Ok(openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        &ca.cert,
        "-CRLfile",
        &file,
        leaf,
    ])
    .is_ok())
}

#[tokio::test]
async fn validate_checks_the_crl_a_certificate_names() -> Result<()> {
    let stack = Stack::start(None).await?;
    let (_proxy, ckms) = pinned_front(&stack, "crl")?;
    let (port, served) = crl_server()?;
    let root = ca(&ckms, "root")?;
    let served_leaf = leaf(
        &ckms,
        &root,
        "served",
        &format!("http://127.0.0.1:{port}/root.crl"),
    )?;
    let validate = |leaf: &str| -> Result<Option<String>> {
        let (ok, _, stderr) =
            ckms.run(&["certificates", "validate", "-c", leaf, "-c", &root.cert])?;
        Ok((!ok).then_some(stderr))
    };
    let set = |body: Option<Vec<u8>>| {
        if let Ok(mut b) = served.lock() {
            *b = body;
        }
    };

    // A current CRL that does not list the leaf: Valid, as openssl says.
    let empty = crl(&root)?;
    ensure!(openssl_accepts(&ckms, &root, &served_leaf, &empty)?);
    set(Some(empty));
    ensure!(validate(&served_leaf)?.is_none(), "valid with an empty CRL");

    // The leaf revoked: the new CRL (served as DER) lists it; Invalid, as openssl says.
    openssl(&[
        "ca",
        "-config",
        &root.config,
        "-keyfile",
        &root.key,
        "-cert",
        &root.cert,
        "-revoke",
        &served_leaf,
    ])?;
    let listing = crl(&root)?;
    ensure!(!openssl_accepts(&ckms, &root, &served_leaf, &listing)?);
    let pem_file = ckms.path("listing.crl");
    std::fs::write(&pem_file, &listing)?;
    let der = openssl(&[
        "crl",
        "-in",
        &pem_file.display().to_string(),
        "-outform",
        "DER",
    ])?;
    set(Some(der));
    let refused = validate(&served_leaf)?;
    ensure!(refused.is_some_and(|e| e.contains("Invalid")));
    ensure!(
        stack.core.logs().contains("is revoked by its issuer's CRL"),
        "{}",
        stack.core.logs()
    );

    // A CRL with the right issuer name but signed by another key: Invalid.
    let forger = ca(&ckms, "forger")?;
    set(Some(crl(&forger)?));
    ensure!(validate(&served_leaf)?.is_some());
    ensure!(stack.core.logs().contains("is not signed by its key"));

    // Nothing to fetch (404), then no server at all: Invalid, not Valid by default.
    set(None);
    ensure!(validate(&served_leaf)?.is_some());
    ensure!(stack.core.logs().contains("HTTP 404"));
    let closed = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let unreachable = leaf(
        &ckms,
        &root,
        "unreachable",
        &format!("http://127.0.0.1:{closed}/root.crl"),
    )?;
    ensure!(validate(&unreachable)?.is_some());
    ensure!(stack.core.logs().contains("could not be read"));

    // A CRL only over LDAP cannot be fetched: Invalid, with that reason.
    let ldap = leaf(&ckms, &root, "ldap", "ldap://ldap.example/cn=CRL Test Root")?;
    ensure!(validate(&ldap)?.is_some());
    ensure!(stack.core.logs().contains("not at an http(s) location"));

    // Certificates held here are checked the same way.
    let imported = ckms.json(&["certificates", "import", "-f", "pem", &served_leaf])?;
    let uid = imported["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let root_uid = ckms.json(&["certificates", "import", "-f", "pem", &root.cert])?;
    let root_uid = root_uid["unique_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let listing = crl(&root)?;
    set(Some(listing));
    let held = ckms.fails(&["certificates", "validate", "-v", &uid, "-v", &root_uid])?;
    ensure!(held.contains("Invalid"), "{held}");
    Ok(())
}
