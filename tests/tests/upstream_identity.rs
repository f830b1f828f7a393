//! `upstream_identity = "jwt"`: the proxy in front of another KMS mints a short-lived JWT per
//! caller and publishes its keys. Checked with real processes: a second kms-proxy (with the
//! core behind it) configured with the first as its OpenID issuer — by discovery and by an
//! explicit JWKS URI — sees every caller as themselves; an independent verifier (PyJWT) gets
//! the right claims, keeps accepting tokens while the keys rotate, and refuses an expired
//! one; the client's own bearer token never reaches the upstream.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use kms_tests::idp::Idp;
use kms_tests::stack::Stack;
use kms_tests::{Proxy, ProxyCommand, Validity, openssl, tls_args};
use serde_json::Value;

const AUDIENCE: &str = "https://kms.local";
const UPSTREAM_AUDIENCE: &str = "kms-behind";

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A proxy on a chosen port (its issuer URL names it).
fn spawn_on(port: u16, args: Vec<String>) -> Result<Proxy> {
    ProxyCommand::new()
        .args(args)
        .args([
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--admin-address",
            "127.0.0.1:0",
        ])
        .spawn_as_is()
}

/// GET /me through `proxy`: the user the core was given, or the status.
async fn me(client: &reqwest::Client, proxy: &Proxy, bearer: Option<&str>) -> Result<String> {
    let mut request = client.get(proxy.url("/me"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    Ok(match response.status().as_u16() {
        200 => response.json::<Value>().await?["user"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
        status => format!("{status}: {}", response.text().await.unwrap_or_default()),
    })
}

/// Front proxy (mTLS optional, the test IdP's JWTs, API tokens) → second proxy trusting the
/// front as its only JWT issuer → kms-core, whose `/me` says who it was given.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_proxy_sees_each_caller_as_themselves() -> Result<()> {
    let stack = Stack::start(None).await?;
    let idp = Idp::start()?;
    let (uid, api_token) = stack.api_token().await?;
    let ca = stack.pki.ca_file.display().to_string();
    let (front_port, behind_port, behind2_port) = (free_port()?, free_port()?, free_port()?);
    let issuer = format!("https://127.0.0.1:{front_port}");
    let key_file = stack.pki.path("front-identity.key");
    let key_path = key_file.display().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &key_path,
    ])?;

    // Behind: JWT only, the front as issuer; by discovery, and by an explicit JWKS URI.
    let behind_cert = stack.pki.server("behind", Validity::Current)?;
    let behind_args = |discovery: bool| {
        let mut args = tls_args(&behind_cert, &format!("unix:{}", stack.socket.display()));
        args.extend(
            [
                "--jwt-issuer-uri",
                &issuer,
                "--jwt-audience",
                UPSTREAM_AUDIENCE,
                "--jwks-ca-cert-file",
                &ca,
                "--jwks-refresh-interval",
                "1",
                // The front mints for the default user "admin": not a reserved name here.
                "--default-username",
                "nobody",
            ]
            .map(str::to_owned),
        );
        if discovery {
            args.push("--jwt-discovery".into());
        } else {
            args.extend([
                "--jwks-uri".into(),
                format!("{issuer}/.well-known/jwks.json"),
            ]);
        }
        args
    };
    let behind = spawn_on(behind_port, behind_args(true))?;
    let behind2 = spawn_on(behind2_port, behind_args(false))?;

    // Front: every method; the identity goes on as a JWT it signs with the key file.
    let front_cert = stack.pki.server("front", Validity::Current)?;
    let front_args = |upstream_port: u16| {
        let mut args = tls_args(&front_cert, &format!("https://127.0.0.1:{upstream_port}"));
        args.extend(
            [
                "--upstream-ca-cert-file",
                &ca,
                "--authority-cert-file",
                &ca,
                "--client-cert",
                "optional",
                "--jwt-issuer-uri",
                &idp.issuer,
                "--jwks-uri",
                &idp.jwks_uri(),
                "--jwt-audience",
                AUDIENCE,
                "--api-token-id",
                &uid,
                "--upstream-identity",
                "jwt",
                "--upstream-jwt-issuer",
                &issuer,
                "--upstream-jwt-audience",
                UPSTREAM_AUDIENCE,
                "--upstream-jwt-key-file",
                &key_path,
                "--upstream-jwt-publish-ahead",
                "3",
                "--cert-reload-interval",
                "1",
            ]
            .map(str::to_owned),
        );
        args
    };
    let front = spawn_on(front_port, front_args(behind_port))?;
    ensure!(front.wait_ready().await, "{}", front.logs());

    let ca_pem = stack.pki.ca_pem.clone();
    let carol = stack.pki.client("carol", "carol")?;
    let with_cert = kms_tests::client::https_with_identity(&ca_pem, Some(&carol))?;
    let without = kms_tests::client::https(&ca_pem)?;
    let jwt = idp.machine_token().await?;

    // The keys are public at the issuer, without credentials, and hold no private part.
    let jwks: Value = without
        .get(format!("{issuer}/.well-known/jwks.json"))
        .send()
        .await?
        .json()
        .await?;
    ensure!(jwks["keys"][0]["kty"] == "EC", "{jwks}");
    ensure!(jwks["keys"][0].get("d").is_none(), "{jwks}");
    let discovery: Value = without
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await?
        .json()
        .await?;
    ensure!(discovery["issuer"] == issuer.as_str(), "{discovery}");

    let callers: [(&str, &reqwest::Client, Option<&str>, &str); 3] = [
        ("certificate", &with_cert, None, "carol"),
        ("JWT", &without, Some(&jwt), "kms-machine"),
        ("API token", &without, Some(&api_token), "admin"),
    ];
    for (what, client, bearer, user) in callers {
        let seen = me(client, &front, bearer).await?;
        ensure!(seen == user, "{what}: the core saw {seen}, not {user}");
    }
    // The second proxy took each of them from the front's token (not from a header).
    for user in ["carol", "kms-machine", "admin"] {
        let needle = format!("user={user} auth_method=\"jwt\" reason=\"verified\"");
        ensure!(
            behind.wait_for_log(&needle, Duration::from_secs(5)),
            "behind did not authenticate {user} by JWT: {}",
            behind.logs()
        );
    }
    // The client's own token never reaches the upstream: sent straight to the second
    // proxy, the IdP's token is refused there (another issuer).
    let direct = me(&without, &behind, Some(&jwt)).await?;
    ensure!(direct.starts_with("401"), "{direct}");

    // The same through the explicit JWKS URI.
    drop(front);
    let front = spawn_on(front_port, front_args(behind2_port))?;
    ensure!(front.wait_ready().await, "{}", front.logs());
    ensure!(me(&with_cert, &front, None).await? == "carol");
    ensure!(
        behind2.wait_for_log(
            "user=carol auth_method=\"jwt\" reason=\"verified\"",
            Duration::from_secs(5)
        ),
        "{}",
        behind2.logs()
    );

    // A new key file: published at once, signing 3 s later; no request fails meanwhile.
    let first_kid = jwks["keys"][0]["kid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &key_path,
    ])?;
    let started = Instant::now();
    let mut rotated = false;
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(12) {
        let seen = me(&with_cert, &front, None).await?;
        ensure!(seen == "carol", "during the key rotation: {seen}");
        requests += 1;
        if front
            .logs()
            .contains("upstream identity signing key rotated")
        {
            rotated = true;
            if requests > 20 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(rotated, "the key file was not picked up: {}", front.logs());
    let jwks: Value = without
        .get(format!("{issuer}/.well-known/jwks.json"))
        .send()
        .await?
        .json()
        .await?;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .map(|k| k.iter().filter_map(|k| k["kid"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        jwks["keys"][0]["kty"] == "RSA" && kids.contains(&first_kid.as_str()),
        "the new key signs and the old one stays published: {jwks}"
    );
    drop(behind);
    Ok(())
}

/// The PyJWT verifier (tests/pyjwt/verifier.py) on a free port.
struct Verifier {
    child: Child,
    port: u16,
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn verifier(jwks_url: &str, issuer: &str, ca: &str) -> Result<Verifier> {
    let port = free_port()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/pyjwt/verifier.py");
    let mut child = Command::new("python3")
        .args([
            script,
            &port.to_string(),
            jwks_url,
            issuer,
            UPSTREAM_AUDIENCE,
            ca,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("python3 (apt-get install python3)")?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("no stdout")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    ensure!(
        line.contains("verifier listening"),
        "the PyJWT verifier did not start (pip install 'pyjwt[crypto]'): {line}"
    );
    Ok(Verifier { child, port })
}

/// Client certificates required on the main listener: the keys are served on a listener of
/// their own, which PyJWT reads. Generated EdDSA keys rotate every second while requests flow.
#[tokio::test(flavor = "multi_thread")]
async fn an_independent_verifier_accepts_the_tokens_across_rotations() -> Result<()> {
    let pki = kms_tests::TestPki::new("pyjwt")?;
    let ca = pki.ca_file.display().to_string();
    let keys_port = free_port()?;
    let issuer = format!("https://127.0.0.1:{keys_port}/identity");
    let jwks_url = format!("{issuer}/.well-known/jwks.json");
    let upstream = verifier(&jwks_url, &issuer, &ca)?;
    let cert = pki.server("front", Validity::Current)?;
    let front = ProxyCommand::new()
        .args(tls_args(
            &cert,
            &format!("http://127.0.0.1:{}", upstream.port),
        ))
        .args([
            "--authority-cert-file",
            &ca,
            "--upstream-identity",
            "jwt",
            "--upstream-jwt-issuer",
            &issuer,
            "--upstream-jwt-audience",
            UPSTREAM_AUDIENCE,
            "--upstream-jwt-algorithm",
            "EdDSA",
            "--upstream-jwt-lifetime",
            "10",
            "--upstream-jwt-key-rotation",
            "1",
            "--upstream-jwt-jwks-address",
            &format!("127.0.0.1:{keys_port}"),
        ])
        .spawn()?;
    ensure!(front.wait_ready().await, "{}", front.logs());
    let ca_pem = pki.ca_pem.clone();
    let mut clients = Vec::new();
    for user in ["alice", "bob"] {
        let files = pki.client(user, user)?;
        clients.push((
            user,
            kms_tests::client::https_with_identity(&ca_pem, Some(&files))?,
        ));
    }
    // The main listener does not serve the keys to a client without a certificate; the
    // keys listener does, and nothing else.
    let anonymous = kms_tests::client::https(&ca_pem)?;
    ensure!(
        anonymous
            .get(front.url("/identity/.well-known/jwks.json"))
            .send()
            .await
            .is_err()
    );
    let other = anonymous
        .get(format!("https://127.0.0.1:{keys_port}/kmip/2_1"))
        .send()
        .await?;
    ensure!(other.status() == 404);

    let started = Instant::now();
    let mut kids = std::collections::BTreeSet::new();
    let mut last_token = String::new();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(5) {
        for (user, client) in &clients {
            let response = client
                .post(front.url("/kmip/2_1"))
                .bearer_auth("the-clients-own-token")
                .body("{}")
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await?;
            ensure!(status == 200, "request {count} as {user}: {status} {body}");
            let claims = &body["claims"];
            ensure!(claims["sub"] == *user && claims["email"] == *user, "{body}");
            ensure!(claims["aud"] == UPSTREAM_AUDIENCE && claims["iss"] == issuer.as_str());
            ensure!(claims["auth_method"] == "mtls", "{body}");
            ensure!(
                claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0) == 10
            );
            kids.insert(body["kid"].as_str().unwrap_or_default().to_owned());
            last_token = body["token"].as_str().unwrap_or_default().to_owned();
            count += 1;
        }
    }
    ensure!(
        kids.len() >= 3,
        "keys rotated every second for 5 s, tokens named {kids:?}"
    );
    // An expired token is refused by the verifier (no leeway there).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let replay = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/", upstream.port))
        .bearer_auth(&last_token)
        .send()
        .await?;
    let status = replay.status();
    let body = replay.text().await?;
    ensure!(
        status == 401 && body.contains("ExpiredSignature"),
        "{status} {body}"
    );
    Ok(())
}
