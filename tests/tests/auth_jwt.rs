//! JWT authentication in kms-proxy against a real OpenID provider (`oidc-provider` on Node):
//! its tokens are accepted with the right user; after it restarts with a new signing key, new
//! tokens work without restarting the proxy and tokens of the old key stop working; every
//! forged token gets 401 and reaches nothing upstream.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kms_tests::idp::{Idp, rsa_key, sign};
use kms_tests::{Echo, Echoed, Proxy, ProxyCommand, TestPki, Validity, metric, scrape, tls_args};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://kms.local";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// GET / with `Authorization: Bearer <token>`: status and the JSON body.
async fn call(client: &reqwest::Client, proxy: &Proxy, token: &str) -> Result<(u16, Value)> {
    let r = client
        .get(proxy.url("/"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await?;
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status == 401 {
        assert_eq!(
            www.as_deref(),
            Some("Bearer"),
            "401 without WWW-Authenticate"
        );
    }
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_tokens_and_key_rotation() -> Result<()> {
    let mut idp = Idp::start()?;
    let pki = TestPki::new("jwt")?;
    let echo = Echo::tcp().await?;
    let server = pki.server("server", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .args(["--jwt-issuer-uri", &idp.issuer])
        .args(["--jwks-uri", &idp.jwks_uri()])
        .args(["--jwt-audience", AUDIENCE])
        .spawn()?;
    assert!(
        proxy.wait_ready().await,
        "JWKS never loaded: {}",
        proxy.logs()
    );
    let client = kms_tests::client::https(&pki.ca_pem)?;

    // A client_credentials token from the provider: sub is the client id (no email claim).
    let token = idp.machine_token().await?;
    let seen: Echoed = client
        .get(proxy.url("/"))
        .bearer_auth(&token)
        .header("x-kms-user", "mallory")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.all("x-kms-user"), vec!["kms-machine"]);
    assert_eq!(seen.one("x-kms-auth-method"), Some("jwt"));

    // The same token again comes from the verified-token cache: same answer.
    let (status, _) = call(&client, &proxy, &token).await?;
    assert_eq!(status, 200);

    // The provider restarts with a new signing key (new kid). A token of the new key is
    // accepted once the proxy refetches (unknown kid; at most one refetch per 10 s).
    let old_token = token;
    idp.restart_with_new_key()?;
    let new_token = idp.machine_token().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (0, Value::Null);
    while Instant::now() < deadline {
        last = call(&client, &proxy, &new_token).await?;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        last.0,
        200,
        "new key never accepted: {:?}\n{}",
        last.1,
        proxy.logs()
    );
    // The old key left the JWKS: its token, cached as verified before, is now refused.
    let (status, body) = call(&client, &proxy, &old_token).await?;
    assert_eq!(status, 401, "{body}");

    let metrics = scrape(&proxy).await?;
    let ok = metric(
        &metrics,
        r#"kms_proxy_auth_decisions_total{method="jwt",outcome="success",reason="verified"}"#,
    );
    assert!(ok.is_some_and(|n| n >= 3.0), "{metrics}");
    let fetched = metric(
        &metrics,
        &format!(
            r#"kms_proxy_jwks_fetches_total{{provider="{}",result="success"}}"#,
            idp.issuer
        ),
    );
    assert!(fetched.is_some_and(|n| n >= 2.0), "{metrics}");
    kms_tests::promtool_check(&metrics)?;
    let logs = proxy.logs();
    // The access line is the audit record: the decision's reason is on it.
    assert!(
        logs.lines().any(|l| l.contains("request")
            && l.contains("auth_method=\"jwt\"")
            && l.contains("reason=\"verified\"")),
        "no access line with the decision: {logs}"
    );
    assert!(
        !logs.contains("authentication decision"),
        "a second line per request"
    );
    assert!(
        !logs.contains(&new_token[new_token.len() - 20..]),
        "a token is in the logs"
    );
    Ok(())
}

/// Claims a valid token of `idp` would carry.
fn claims(idp: &Idp) -> Value {
    let now = now();
    json!({
        "iss": idp.issuer, "sub": "svc", "email": "alice@example.com", "aud": AUDIENCE,
        "iat": now, "exp": now + 300, "groups": ["kms-ops", "auditors"],
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    if let Some(map) = base.as_object_mut() {
        map.remove(key);
    }
    base
}

fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string()),
        B64URL.encode(signature)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_tokens_never_reach_the_upstream() -> Result<()> {
    let idp = Idp::start()?;
    let pki = TestPki::new("forged")?;
    let echo = Echo::tcp().await?;
    let server = pki.server("server", Validity::Current)?;
    // A second provider with a static PEM key: its valid signatures must not pass for the first.
    let other = rsa_key(pki.dir.path(), "other-provider")?;
    let config = pki.path("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[auth]
jwt_issuer_uri = ["{issuer}"]
jwks_uri = ["{jwks}"]
jwt_audience = ["{AUDIENCE}"]

[[auth.providers]]
issuer = "https://other.example"
public_key_files = ["{other}"]
"#,
            issuer = idp.issuer,
            jwks = idp.jwks_uri(),
            other = other.public_file.display()
        ),
    )?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .args(["--config", &config.display().to_string()])
        .spawn()?;
    assert!(
        proxy.wait_ready().await,
        "JWKS never loaded: {}",
        proxy.logs()
    );
    let client = kms_tests::client::https(&pki.ca_pem)?;

    // Control: the harness's own signature with the provider's key passes, and expiry inside
    // the leeways (150 s + 60 s) still passes.
    let good = idp.sign(&claims(&idp))?;
    assert_eq!(call(&client, &proxy, &good).await?.0, 200);
    let late = idp.sign(&with(claims(&idp), "exp", json!(now() - 100)))?;
    assert_eq!(
        call(&client, &proxy, &late).await?.0,
        200,
        "inside the leeway"
    );
    let other_ok = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = None;
        sign(
            &h,
            &with(claims(&idp), "iss", json!("https://other.example")),
            &other,
        )?
    };
    assert_eq!(call(&client, &proxy, &other_ok).await?.0, 200, "static key");
    let served = echo.count();

    let base = claims(&idp);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": idp.kid});
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(with(base.clone(), "email", json!("admin@example.com")).to_string()),
        parts[2]
    );
    let hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(idp.kid.clone());
        jsonwebtoken::encode(
            &h,
            &base,
            &EncodingKey::from_secret(idp.key.public_pem.as_bytes()),
        )?
    };
    let other_key_as_idp = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(idp.kid.clone());
        sign(&h, &base, &other)?
    };
    let crit = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(idp.kid.clone());
        h.crit = Some(vec!["urn:example:unknown".into()]);
        sign(&h, &base, &idp.key)?
    };
    let oversized = idp.sign(&with(base.clone(), "pad", json!("x".repeat(9 * 1024))))?;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none, three segments",
            raw_token(&json!({"alg": "none"}), &base, b""),
            "alg none refused",
        ),
        (
            "alg none, two segments",
            format!(
                "{}.{}",
                B64URL.encode(json!({"alg": "none"}).to_string()),
                B64URL.encode(base.to_string())
            ),
            "malformed token",
        ),
        (
            "HS256 signed with the RSA public key",
            hs256_with_public_key,
            "HMAC algorithms refused",
        ),
        ("another provider's key", other_key_as_idp, "bad signature"),
        ("tampered payload", tampered, "bad signature"),
        (
            "expired beyond the leeways",
            idp.sign(&with(base.clone(), "exp", json!(now() - 400)))?,
            "token expired",
        ),
        (
            "nbf in the future",
            idp.sign(&with(base.clone(), "nbf", json!(now() + 400)))?,
            "token not yet valid",
        ),
        (
            "issuer with a trailing slash",
            idp.sign(&with(
                base.clone(),
                "iss",
                json!(format!("{}/", idp.issuer)),
            ))?,
            "unknown issuer",
        ),
        (
            "wrong audience",
            idp.sign(&with(base.clone(), "aud", json!("https://other.local")))?,
            "wrong audience",
        ),
        (
            "missing exp",
            idp.sign(&without(base.clone(), "exp"))?,
            "missing exp",
        ),
        ("unknown critical header", crit, "unknown critical header"),
        ("oversized", oversized, "token too large"),
        ("garbage base64", "eyJ!!!.%%%.***".into(), "malformed token"),
        (
            "unknown kid",
            raw_token(&with(header.clone(), "kid", json!("nope")), &base, b"sig"),
            "unknown signing key",
        ),
    ];
    for (name, token, reason) in &cases {
        let (status, body) = call(&client, &proxy, token).await?;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"], *reason, "{name}");
    }
    assert_eq!(echo.count(), served, "a forged token reached the upstream");

    // Made-up kids in a burst: at most one JWKS fetch (single-flight, at most one per 10 s).
    let fetches = |text: &str| {
        ["success", "failure"]
            .iter()
            .filter_map(|r| {
                metric(
                    text,
                    &format!(
                        r#"kms_proxy_jwks_fetches_total{{provider="{}",result="{r}"}}"#,
                        idp.issuer
                    ),
                )
            })
            .sum::<f64>()
    };
    let before = fetches(&scrape(&proxy).await?);
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let token = raw_token(
                &with(header.clone(), "kid", json!(format!("kid-{i}"))),
                &base,
                b"s",
            );
            let client = client.clone();
            let url = proxy.url("/");
            tokio::spawn(async move {
                client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    for task in burst {
        assert_eq!(task.await??, 401);
    }
    let after = fetches(&scrape(&proxy).await?);
    assert!(
        after - before <= 1.0,
        "{before} -> {after} JWKS fetches for one burst"
    );

    let metrics = scrape(&proxy).await?;
    let expired = metric(
        &metrics,
        r#"kms_proxy_auth_decisions_total{method="jwt",outcome="failure",reason="token expired"}"#,
    );
    assert_eq!(expired, Some(1.0), "{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_kept_while_the_provider_is_down() -> Result<()> {
    let mut idp = Idp::start()?;
    let pki = TestPki::new("jwks-down")?;
    let echo = Echo::tcp().await?;
    let server = pki.server("server", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .args([
            "--jwt-issuer-uri",
            &idp.issuer,
            "--jwks-uri",
            &idp.jwks_uri(),
        ])
        .args(["--jwks-refresh-interval", "0.3", "--jwt-cache-size", "0"])
        .spawn()?;
    assert!(
        proxy.wait_ready().await,
        "JWKS never loaded: {}",
        proxy.logs()
    );
    let client = kms_tests::client::https(&pki.ca_pem)?;
    idp.stop();
    assert!(
        proxy.wait_for_log("JWKS fetch failed", Duration::from_secs(10)),
        "{}",
        proxy.logs()
    );
    // A token never seen before (no cache either) is still checked with the kept key.
    let token = idp.sign(&claims(&idp))?;
    let (status, body) = call(&client, &proxy, &token).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        reqwest::get(proxy.admin_url("/readyz")).await?.status(),
        200,
        "keys are held: still ready"
    );
    let metrics = scrape(&proxy).await?;
    let failed = metric(
        &metrics,
        &format!(
            r#"kms_proxy_jwks_fetches_total{{provider="{}",result="failure"}}"#,
            idp.issuer
        ),
    );
    assert!(failed.is_some_and(|n| n >= 1.0), "{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_claim_headers_and_forced_user() -> Result<()> {
    let idp = Idp::start()?;
    let pki = TestPki::new("discovery")?;
    let echo = Echo::tcp().await?;
    let server = pki.server("server", Validity::Current)?;
    let config = pki.path("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[auth.providers]]
issuer = "{issuer}"
discovery = true
audiences = ["{AUDIENCE}"]
user_claim = ["email", "client_id", "sub"]
algorithms = ["RS256"]
expiration_leeway = -1
clock_skew_leeway = -1
claim_headers = {{ groups = "X-KMS-Groups", client_id = "X-KMS-Client" }}
"#,
            issuer = idp.issuer
        ),
    )?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .args(["--config", &config.display().to_string()])
        .spawn()?;
    assert!(
        proxy.wait_ready().await,
        "JWKS never loaded: {}",
        proxy.logs()
    );
    let client = kms_tests::client::https(&pki.ca_pem)?;

    let token = idp.machine_token().await?;
    let seen: Echoed = client
        .get(proxy.url("/"))
        .bearer_auth(&token)
        .header("x-kms-groups", "admins")
        .header("X_KMS_Groups", "admins")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        seen.all("x-kms-user"),
        vec!["kms-machine"],
        "client_id is the user"
    );
    assert_eq!(seen.all("x-kms-groups"), vec!["kms-ops,auditors"]);
    assert_eq!(seen.all("x_kms_groups"), Vec::<&str>::new());
    assert_eq!(seen.one("x-kms-client"), Some("kms-machine"));

    // Leeways disabled: a token one second past exp is refused.
    let stale = idp.sign(&json!({
        "iss": idp.issuer, "sub": "svc", "aud": AUDIENCE, "exp": now() - 2,
    }))?;
    let (status, body) = call(&client, &proxy, &stale).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token expired"))
    );
    // RS384 is not in this provider's list, even though the key type allows it.
    let mut h = Header::new(Algorithm::RS384);
    h.kid = Some(idp.kid.clone());
    let rs384 = sign(&h, &claims(&idp), &idp.key)?;
    let (status, body) = call(&client, &proxy, &rs384).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("algorithm not allowed"))
    );
    drop(proxy);

    // force_default_username: still authenticated (a bad token is 401), forwarded as admin.
    let forced = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .args(["--config", &config.display().to_string()])
        .env("KMS_FORCE_DEFAULT_USERNAME", "true")
        .spawn()?;
    assert!(forced.wait_ready().await, "{}", forced.logs());
    let seen: Echoed = client
        .get(forced.url("/"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.all("x-kms-user"), vec!["admin"]);
    assert_eq!(seen.one("x-kms-auth-method"), Some("jwt"));
    assert_eq!(call(&client, &forced, &stale).await?.0, 401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_must_come_over_https_and_readyz_waits() -> Result<()> {
    let pki = TestPki::new("jwks-url")?;
    let server = pki.server("server", Validity::Current)?;
    // A plain-http JWKS on a non-loopback host is a configuration error (exit 2, names the key).
    let (status, _, stderr) = ProxyCommand::new()
        .args(tls_args(&server, "http://127.0.0.1:9"))
        .args(["--jwt-issuer-uri", "https://idp.example.com"])
        .args(["--jwks-uri", "http://idp.example.com/keys"])
        .output()?;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("jwks_uri") && stderr.contains("https"),
        "{stderr}"
    );
    // Issuers and JWKS URIs must pair up.
    let (status, _, stderr) = ProxyCommand::new()
        .args(tls_args(&server, "http://127.0.0.1:9"))
        .env("KMS_JWT_ISSUER_URI", "https://a.example,https://b.example")
        .env("KMS_JWKS_URI", "https://a.example/keys")
        .output()?;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("jwks_uri"), "{stderr}");

    // A provider whose JWKS cannot be fetched: the proxy serves 401s and /readyz says why.
    let echo = Echo::tcp().await?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .env("KMS_JWT_ISSUER_URI", "http://127.0.0.1:9")
        .spawn()?;
    let r = reqwest::get(proxy.admin_url("/readyz")).await?;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await?;
    assert_eq!(body["reason"], "JWKS not loaded", "{body}");
    let client = kms_tests::client::https(&pki.ca_pem)?;
    let r = client.get(proxy.url("/")).send().await?;
    assert_eq!(r.status(), 401);
    assert_eq!(echo.count(), 0);
    drop(proxy);

    // JWKS over https from a server signed by a private CA: trusted only with
    // --jwks-ca-cert-file. (The https endpoint is a second kms-proxy in front of the provider.)
    let idp = Idp::start()?;
    let front = pki.server("jwks-front", Validity::Current)?;
    let jwks_front = ProxyCommand::new()
        .args(tls_args(&front, &idp.issuer))
        .spawn()?;
    let jwks_uri = format!("https://localhost:{}/jwks", jwks_front.port());
    let untrusting = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .args(["--jwt-issuer-uri", &idp.issuer, "--jwks-uri", &jwks_uri])
        .spawn()?;
    let trusting = ProxyCommand::new()
        .args(tls_args(&server, &echo.url))
        .args(["--jwt-issuer-uri", &idp.issuer, "--jwks-uri", &jwks_uri])
        .args(["--jwks-ca-cert-file", &pki.ca_file.display().to_string()])
        .spawn()?;
    assert!(trusting.wait_ready().await, "{}", trusting.logs());
    let token = idp.machine_token().await?;
    assert_eq!(call(&client, &trusting, &token).await?.0, 200);
    assert_eq!(
        reqwest::get(untrusting.admin_url("/readyz"))
            .await?
            .status(),
        503,
        "JWKS fetched from a server signed by an untrusted CA"
    );
    assert_eq!(call(&client, &untrusting, &token).await?.0, 401);
    assert!(
        untrusting.wait_for_log("JWKS fetch failed", Duration::from_secs(5)),
        "{}",
        untrusting.logs()
    );
    Ok(())
}
