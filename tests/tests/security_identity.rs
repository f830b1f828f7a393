//! Who the user is (issue 11, items 1 and 10): a name from a credential can never become the
//! default user or `*`, is never trimmed or repaired, and proxy and core agree on it byte for
//! byte (non-ASCII names included). Per provider: `user_prefix`, `email_verified`,
//! `max_token_lifetime`. Through the real proxy, the real core and a real OpenID provider.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use jsonwebtoken::{Algorithm, Header};
use kms_tests::idp::{Idp, rsa_key, sign};
use kms_tests::stack::{Stack, create_request, field};
use kms_tests::{Proxy, ProxyCommand, Validity, tls_args};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://kms.local";
const SECOND: &str = "https://second.example";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// GET /me through `proxy`: the user the core saw, or the proxy's status and reason.
async fn me(client: &reqwest::Client, proxy: &Proxy, bearer: Option<&str>) -> Result<String> {
    let mut request = client.get(proxy.url("/me"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Ok(match status {
        200 => body["user"].as_str().unwrap_or("?").to_owned(),
        _ => format!("{status} {}", body["error"].as_str().unwrap_or("")),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_names_are_canonical_and_never_the_default_user() -> Result<()> {
    let stack = Stack::start(None).await?;
    let idp = Idp::start()?;
    let second_key = rsa_key(&stack.pki.path(""), "second")?;
    let config = stack.pki.path("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"
authority_cert_file = "{ca}"
client_cert = "optional"

[[auth.providers]]
issuer = "{issuer}"
jwks_uri = "{jwks}"
audiences = ["{AUDIENCE}"]

[[auth.providers]]
issuer = "{SECOND}"
public_key_files = ["{second}"]
user_claim = ["sub"]
user_prefix = "second:"
max_token_lifetime = 600
"#,
            ca = stack.pki.ca_file.display(),
            issuer = idp.issuer,
            jwks = idp.jwks_uri(),
            second = second_key.public_file.display(),
        ),
    )?;
    let cert = stack.pki.server("identity", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &format!("unix:{}", stack.socket.display())))
        .args(["--config", &config.display().to_string()])
        .spawn()?;
    assert!(proxy.wait_ready().await, "{}", proxy.logs());
    let client = kms_tests::client::https(&stack.pki.ca_pem)?;
    let t = now();
    let first = |claims: Value| {
        let mut all = json!({"iss": idp.issuer, "aud": AUDIENCE, "exp": t + 300, "iat": t});
        for (k, v) in claims.as_object().into_iter().flatten() {
            all[k] = v.clone();
        }
        idp.sign(&all)
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let second = |claims: Value| sign(&header, &claims, &second_key);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "email admin",
            first(json!({"email": "admin"}))?,
            "401 reserved user",
        ),
        (
            "sub admin",
            first(json!({"sub": "admin"}))?,
            "401 reserved user",
        ),
        (
            "trailing space",
            first(json!({"email": "admin "}))?,
            "401 user name not canonical",
        ),
        (
            "leading tab",
            first(json!({"sub": "\tadmin"}))?,
            "401 user name not canonical",
        ),
        (
            "newline",
            first(json!({"sub": "bob\nuser=admin"}))?,
            "401 user name not canonical",
        ),
        (
            "zero width",
            first(json!({"sub": "ad\u{200B}min"}))?,
            "401 user name not canonical",
        ),
        (
            "decomposed",
            first(json!({"sub": "jose\u{301}"}))?,
            "401 user name not canonical",
        ),
        (
            "wildcard",
            first(json!({"email": "*"}))?,
            "401 reserved user",
        ),
        (
            "email not verified",
            first(json!({"email": "bob@example.com", "email_verified": false}))?,
            "401 email not verified",
        ),
        (
            "email verified",
            first(json!({"email": "bob@example.com", "email_verified": true}))?,
            "bob@example.com",
        ),
        (
            "unverified email ignored when sub is the claim",
            second(
                json!({"iss": SECOND, "sub": "carol", "email": "x@y", "email_verified": false, "exp": t + 60, "iat": t}),
            )?,
            "second:carol",
        ),
        (
            "international email",
            first(json!({"email": "jos\u{e9}@\u{e9}xample.fr"}))?,
            "jos\u{e9}@\u{e9}xample.fr",
        ),
        (
            "prefix keeps providers apart",
            second(json!({"iss": SECOND, "sub": "admin", "exp": t + 60, "iat": t}))?,
            "second:admin",
        ),
        (
            "lifetime capped",
            second(
                json!({"iss": SECOND, "sub": "dave", "exp": t + 86_400 * 365, "iat": t - 3_600}),
            )?,
            "401 token expired",
        ),
        (
            "lifetime needs iat",
            second(json!({"iss": SECOND, "sub": "dave", "exp": t + 60}))?,
            "401 missing iat",
        ),
        (
            "far exp, recent iat",
            second(json!({"iss": SECOND, "sub": "dave", "exp": t + 86_400 * 365, "iat": t}))?,
            "second:dave",
        ),
    ];
    for (name, token, expected) in &cases {
        assert_eq!(
            me(&client, &proxy, Some(token)).await?,
            *expected,
            "{name}: {}",
            proxy.logs()
        );
    }

    // Client certificates: the CN exactly as written, under the same rule.
    for (cn, expected) in [
        ("admin", "401 reserved user"),
        ("*", "401 reserved user"),
        ("admin ", "401 user name not canonical"),
        (" admin", "401 user name not canonical"),
        ("Zo\u{eb} M\u{fc}ller", "Zo\u{eb} M\u{fc}ller"),
    ] {
        let files = stack
            .pki
            .client(&format!("cn-{}", kms_tests::random_u64()), cn)?;
        let with = kms_tests::client::https_with_identity(&stack.pki.ca_pem, Some(&files))?;
        assert_eq!(me(&with, &proxy, None).await?, expected, "CN {cn:?}");
    }

    // A non-ASCII user owns what it creates, and the core's audit shows the exact name.
    let jose = first(json!({"email": "jos\u{e9}@\u{e9}xample.fr"}))?;
    let created: Value = client
        .post(proxy.url("/kmip/2_1"))
        .bearer_auth(&jose)
        .json(&create_request(128, &["intl"], None))
        .send()
        .await?
        .json()
        .await?;
    let uid = field(&created, "UniqueIdentifier")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let owned: Value = client
        .get(proxy.url("/access/owned"))
        .bearer_auth(&jose)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(owned[0]["object_id"], json!(uid), "{owned}");
    assert!(
        stack
            .core
            .wait_for_log(&uid, std::time::Duration::from_secs(5)),
        "{}",
        stack.core.logs()
    );
    let audit = stack.core.logs();
    let line = audit
        .lines()
        .find(|l| l.contains(&uid) && l.contains("\"audit\""))
        .unwrap_or_default();
    assert!(
        line.contains("\"user\":\"jos\u{e9}@\u{e9}xample.fr\""),
        "audit line: {line}"
    );
    Ok(())
}
