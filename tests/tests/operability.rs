//! What an operator reads: one request id across proxy and core (taken from the client when
//! acceptable, else made, and returned), audit lines that name the object a refused operation
//! was about, grants and revokes audited and counted whatever their outcome, a default-user
//! request not audited as "verified", process and build metrics on both processes, and log
//! fields as plain values.

use std::time::Duration;

use anyhow::{Result, ensure};
use kms_tests::stack::{Stack, by_uid, create_request, field};
use kms_tests::{ProxyCommand, metric, promtool_check};
use serde_json::{Value, json};

/// The core's JSON lines whose `span` carries `request_id`.
fn core_lines_of(logs: &str, request_id: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["span"]["request_id"] == request_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_request_id_joins_proxy_and_core() -> Result<()> {
    let stack = Stack::start(None).await?;
    let client = kms_tests::client::https(&stack.pki.ca_pem)?;
    let create = create_request(256, &["ops"], None);

    // The client's id is kept, returned, and on the proxy's and the core's lines.
    let response = client
        .post(stack.proxy.url("/kmip/2_1"))
        .header("x-request-id", "client-id-4711")
        .json(&create)
        .send()
        .await?;
    ensure!(response.status() == 200);
    ensure!(response.headers()["x-request-id"] == "client-id-4711");
    ensure!(
        stack
            .core
            .wait_for_log("client-id-4711", Duration::from_secs(5))
    );
    let audit = core_lines_of(&stack.core.logs(), "client-id-4711");
    ensure!(
        audit
            .iter()
            .any(|v| v["target"] == "audit" && v["operation"] == "Create"),
        "{}",
        stack.core.logs()
    );
    ensure!(
        stack
            .proxy
            .wait_for_log("request_id=\"client-id-4711\"", Duration::from_secs(5))
    );
    let proxy_logs = stack.proxy.logs();
    let proxy_lines: Vec<&str> = proxy_logs
        .lines()
        .filter(|l| l.contains("request_id=\"client-id-4711\""))
        .collect();
    // One line per request: the access line, carrying the authentication decision.
    ensure!(
        proxy_lines.len() == 1
            && proxy_lines[0].contains("access:")
            && proxy_lines[0].contains("reason=\"no authentication configured\""),
        "{proxy_logs}"
    );

    // No id, or one that is not acceptable: the proxy makes one (128 bits, hex).
    for sent in [None, Some("has space"), Some("x".repeat(129).as_str())] {
        let mut request = client.post(stack.proxy.url("/kmip/2_1")).json(&create);
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await?;
        let id = response.headers()["x-request-id"].to_str()?.to_owned();
        ensure!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{sent:?} → {id}"
        );
        ensure!(stack.core.wait_for_log(&id, Duration::from_secs(5)));
        ensure!(
            stack
                .proxy
                .wait_for_log(&format!("request_id=\"{id}\""), Duration::from_secs(5))
        );
    }
    // Errors the proxy answers itself carry one too (431: headers over 16 KiB).
    let refused = client
        .post(stack.proxy.url("/kmip/2_1"))
        .header("x-big", "a".repeat(17_000))
        .json(&create)
        .send()
        .await?;
    ensure!(refused.status() == 431 && refused.headers().contains_key("x-request-id"));

    // A default-user request (no method configured) is not audited as verified.
    ensure!(
        proxy_logs.contains("reason=\"no authentication configured\""),
        "{proxy_logs}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_and_grants_are_audited_with_their_object() -> Result<()> {
    let stack = Stack::start(None).await?;
    // A refused operation names the uid it was about.
    let (status, _) = stack.kmip(&by_uid("Get", "no-such-key-42", vec![])).await?;
    ensure!(status != 200);
    let created = stack.ok(&create_request(256, &["grants"], None)).await?;
    let uid = field(&created, "UniqueIdentifier")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // A grant that succeeds, one that is refused (unknown object), and a revoke.
    let grant = |uid: &str| json!({"unique_identifier": uid, "user_id": "bob", "operation_types": ["get", "encrypt"]});
    let (ok, body) = stack
        .post_json(&stack.proxy, "/access/grant", &grant(&uid))
        .await?;
    ensure!(ok == 200, "{body}");
    let (refused, _) = stack
        .post_json(&stack.proxy, "/access/grant", &grant("no-such-key-43"))
        .await?;
    ensure!(refused != 200);
    let (ok, body) = stack
        .post_json(&stack.proxy, "/access/revoke", &grant(&uid))
        .await?;
    ensure!(ok == 200, "{body}");
    // The revoke is the last line logged: once it is out, so is every earlier one.
    ensure!(
        stack
            .core
            .wait_for_log("\"operation\":\"revoke\"", Duration::from_secs(5))
    );

    let logs = stack.core.logs();
    let audit: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit")
        .collect();
    let has = |op: &str, uid: &str, success: bool| {
        audit.iter().any(|v| {
            v["operation"] == op && v["uid"] == uid && (v["outcome"] == "success") == success
        })
    };
    ensure!(has("Get", "no-such-key-42", false), "{logs}");
    ensure!(
        has("grant", &uid, true) && has("revoke", &uid, true),
        "{logs}"
    );
    ensure!(has("grant", "no-such-key-43", false), "{logs}");
    ensure!(
        audit.iter().any(|v| v["operation"] == "grant"
            && v["grantee"] == "bob"
            && v["operations"] == "get,encrypt"),
        "{logs}"
    );

    // Counted, and the process and build metrics are there, on both processes.
    let core = reqwest::get(stack.core.admin_url("/metrics"))
        .await?
        .text()
        .await?;
    promtool_check(&core)?;
    ensure!(
        metric(
            &core,
            r#"kms_core_access_changes_total{operation="grant",outcome="success"}"#
        ) == Some(1.0),
        "{core}"
    );
    ensure!(
        metric(
            &core,
            r#"kms_core_access_changes_total{operation="revoke",outcome="success"}"#
        ) == Some(1.0)
    );
    let refused_grants: f64 = core
        .lines()
        .filter(|l| {
            l.starts_with("kms_core_access_changes_total{operation=\"grant\"")
                && !l.contains("success")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    ensure!(refused_grants == 1.0, "{core}");
    ensure!(
        metric(
            &core,
            &format!(
                "kms_core_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ) == Some(1.0),
        "{core}"
    );
    let proxy = reqwest::get(stack.proxy.admin_url("/metrics"))
        .await?
        .text()
        .await?;
    promtool_check(&proxy)?;
    for text in [&core, &proxy] {
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let value = metric(text, name);
            ensure!(
                value.is_some_and(|v| v > 0.0),
                "{name} missing or zero: {text}"
            );
        }
        // Whole seconds in this collector: a young process may show 0.
        ensure!(
            metric(text, "process_cpu_seconds_total").is_some(),
            "{text}"
        );
    }
    // Log lines dropped because stderr could not keep up: exported, none here.
    ensure!(
        metric(&core, "kms_core_log_lines_dropped_total") == Some(0.0),
        "{core}"
    );
    ensure!(
        metric(&proxy, "kms_proxy_log_lines_dropped_total") == Some(0.0),
        "{proxy}"
    );
    // Group commit (SQLite): the Create above was committed, in at most as many transactions.
    let inserts = metric(&core, "kms_core_inserts_total").unwrap_or(0.0);
    let transactions = metric(&core, "kms_core_insert_transactions_total").unwrap_or(0.0);
    ensure!(
        inserts >= 1.0 && transactions >= 1.0 && transactions <= inserts,
        "{core}"
    );
    Ok(())
}

/// JSON log fields are plain values: the upstream as configured, not Rust debug text.
#[tokio::test]
async fn json_log_fields_are_plain_values() -> Result<()> {
    let pki = kms_tests::TestPki::new("json-fields")?;
    let cert = pki.server("server", kms_tests::Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(kms_tests::tls_args(&cert, "unix:/run/kms/core.sock"))
        .args(["--log-format", "json"])
        .spawn()?;
    let logs = proxy.logs();
    let line: Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["address"].is_string() && v["upstream"].is_string())
        .ok_or_else(|| anyhow::anyhow!("no listening line: {logs}"))?;
    ensure!(line["upstream"] == "unix:/run/kms/core.sock", "{line}");
    Ok(())
}

/// `/readyz` and the log say why the upstream is not answering: refused, or a certificate
/// the proxy does not trust (with what to check).
#[tokio::test]
async fn upstream_failures_name_their_cause() -> Result<()> {
    let pki = kms_tests::TestPki::new("causes")?;
    let other = kms_tests::TestPki::new("causes-other")?;
    let cert = pki.server("front", kms_tests::Validity::Current)?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // An https server whose certificate comes from another CA than the one the proxy trusts.
    let foreign_cert = other.server("foreign", kms_tests::Validity::Current)?;
    let foreign = ProxyCommand::new()
        .args(kms_tests::tls_args(&foreign_cert, "unix:/nonexistent.sock"))
        .spawn()?;
    let ca = pki.ca_file.display().to_string();
    let cases = [
        (
            format!("http://127.0.0.1:{closed}"),
            vec![],
            "cannot connect to the upstream: Connection refused",
        ),
        (
            format!("https://127.0.0.1:{}", foreign.port()),
            vec!["--upstream-ca-cert-file".to_owned(), ca],
            "TLS handshake with the upstream failed",
        ),
    ];
    let client = kms_tests::client::https(&pki.ca_pem)?;
    for (upstream, extra, cause) in cases {
        let proxy = ProxyCommand::new()
            .args(kms_tests::tls_args(&cert, &upstream))
            .args(extra)
            .spawn()?;
        let ready = reqwest::get(proxy.admin_url("/readyz")).await?;
        ensure!(ready.status() == 503);
        let body: Value = ready.json().await?;
        ensure!(
            body["reason"] == "upstream not answering"
                && body["cause"].as_str().is_some_and(|c| c.contains(cause)),
            "{upstream}: {body}"
        );
        let response = client.get(proxy.url("/version")).send().await?;
        ensure!(response.status() == 502);
        ensure!(
            proxy.wait_for_log(cause, Duration::from_secs(5)),
            "{}",
            proxy.logs()
        );
    }
    Ok(())
}

/// A JWKS host that does not resolve: the fetch failure names the DNS lookup and the host
/// (`.invalid` never resolves, RFC 6761), and /readyz says which provider has no keys.
#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_host_that_does_not_resolve_is_named() -> Result<()> {
    let pki = kms_tests::TestPki::new("dns")?;
    let cert = pki.server("front", kms_tests::Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(kms_tests::tls_args(&cert, "unix:/nonexistent.sock"))
        .args(["--jwt-issuer-uri", "https://idp.no-such-host.invalid"])
        .args(["--jwks-uri", "https://idp.no-such-host.invalid/jwks.json"])
        .args(["--jwt-audience", "kms"])
        .spawn()?;
    ensure!(
        proxy.wait_for_log("JWKS fetch failed", Duration::from_secs(15)),
        "{}",
        proxy.logs()
    );
    let logs = proxy.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("JWKS fetch failed"))
        .unwrap_or_default();
    ensure!(
        line.contains("dns error") && line.contains("idp.no-such-host.invalid"),
        "the DNS cause and the host: {line}"
    );
    Ok(())
}

/// A refused client certificate leaves an info line with the reason, and is counted by it.
#[tokio::test]
async fn refused_handshakes_are_logged_and_counted_by_reason() -> Result<()> {
    let pki = kms_tests::TestPki::new("handshakes")?;
    let other = kms_tests::TestPki::new("handshakes-other")?;
    let cert = pki.server("server", kms_tests::Validity::Current)?;
    let revoked = pki.client("revoked", "mallory")?;
    let crl = pki.crl("ca", &[revoked.serial])?;
    let proxy = ProxyCommand::new()
        .args(kms_tests::tls_args(&cert, "unix:/nonexistent.sock"))
        .args([
            "--authority-cert-file",
            &pki.ca_file.display().to_string(),
            "--crl-file",
            &crl.display().to_string(),
        ])
        .spawn()?;
    let foreign = other.client("foreign", "eve")?;
    let expired = pki.client_with("expired", Some("old"), kms_tests::Validity::Expired)?;
    let cases = [
        (None, "no_certificate"),
        (Some(&foreign), "unknown_ca"),
        (Some(&expired), "expired"),
        (Some(&revoked), "revoked"),
    ];
    for (identity, _) in &cases {
        let client = kms_tests::client::https_with_identity(&pki.ca_pem, *identity)?;
        ensure!(client.get(proxy.url("/")).send().await.is_err());
    }
    let text = reqwest::get(proxy.admin_url("/metrics"))
        .await?
        .text()
        .await?;
    for (_, reason) in cases {
        ensure!(
            metric(
                &text,
                &format!("kms_proxy_tls_handshake_failures_total{{reason=\"{reason}\"}}")
            ) == Some(1.0),
            "{reason}: {text}"
        );
        ensure!(
            proxy.wait_for_log(&format!("reason=\"{reason}\""), Duration::from_secs(5)),
            "{reason}: {}",
            proxy.logs()
        );
    }
    ensure!(proxy.logs().contains("TLS handshake refused"));
    Ok(())
}

/// Certificate and key problems at start name the cause and what to do, once, with status 2.
#[test]
fn certificate_problems_at_start_say_what_to_do() -> Result<()> {
    let pki = kms_tests::TestPki::new("start-problems")?;
    let cert = pki.server("server", kms_tests::Validity::Current)?;
    // An encrypted private key, as `openssl pkcs8 -topk8` writes it with a passphrase.
    let encrypted = pki.path("encrypted.key");
    kms_tests::openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        &cert.key.display().to_string(),
        "-out",
        &encrypted.display().to_string(),
        "-passout",
        "pass:secret",
    ])?;
    let (status, _, stderr) = ProxyCommand::new()
        .args([
            "--tls-cert-file",
            &cert.cert.display().to_string(),
            "--tls-key-file",
            &encrypted.display().to_string(),
            "--upstream",
            "unix:/nonexistent.sock",
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--admin-address",
            "127.0.0.1:0",
        ])
        .output()?;
    ensure!(status.code() == Some(2), "{status:?}: {stderr}");
    ensure!(
        stderr.contains("encrypted") && stderr.contains("openssl pkey"),
        "{stderr}"
    );
    ensure!(
        stderr.matches("openssl pkey").count() == 1,
        "printed once: {stderr}"
    );
    // A CA certificate as the server certificate: served, with a warning that says what to use.
    let (ca_key, ca_cert) = (pki.path("self-ca.key"), pki.path("self-ca.pem"));
    kms_tests::openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &ca_key.display().to_string(),
        "-out",
        &ca_cert.display().to_string(),
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
    ])?;
    let proxy = ProxyCommand::new()
        .args([
            "--tls-cert-file",
            &ca_cert.display().to_string(),
            "--tls-key-file",
            &ca_key.display().to_string(),
            "--upstream",
            "unix:/nonexistent.sock",
        ])
        .spawn()?;
    ensure!(
        proxy
            .logs()
            .contains("the server certificate is a CA certificate"),
        "{}",
        proxy.logs()
    );
    Ok(())
}

/// An unreachable PostgreSQL is named (host, port, database, never the password) with the
/// system's cause, at once rather than as a pool timeout.
#[test]
fn an_unreachable_database_is_named_with_its_cause() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("postgres://kms:hunter2pw@127.0.0.1:{port}/kms");
    let started = std::time::Instant::now();
    let (status, _, stderr) = ProxyCommand::core()
        .args(kms_tests::stack::core_args(dir.path(), Some(&url)))
        .output()?;
    ensure!(!status.success());
    ensure!(
        stderr.contains(&format!("127.0.0.1:{port}/kms")) && stderr.contains("Connection refused"),
        "{stderr}"
    );
    ensure!(
        !stderr.contains("hunter2pw"),
        "the password leaked: {stderr}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

/// ckms says what to do when the URL or the server's certificate is wrong, in words.
#[tokio::test]
async fn ckms_explains_a_wrong_url_and_an_untrusted_certificate() -> Result<()> {
    let pki = kms_tests::TestPki::new("ckms-messages")?;
    let cert = pki.server("server", kms_tests::Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(kms_tests::tls_args(&cert, "unix:/nonexistent.sock"))
        .spawn()?;
    let plain = kms_tests::ckms::Ckms::new(&format!(
        "server_url = \"http://127.0.0.1:{}\"",
        proxy.port()
    ))?;
    let stderr = plain.fails(&["server", "version"])?;
    ensure!(stderr.contains("use https://"), "{stderr}");
    let untrusted = kms_tests::ckms::Ckms::new(&format!(
        "server_url = \"https://127.0.0.1:{}\"",
        proxy.port()
    ))?;
    let stderr = untrusted.fails(&["server", "version"])?;
    ensure!(
        stderr.contains("not signed by a CA this client trusts")
            && !stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    Ok(())
}
