//! The precedence of the authentication methods, every combination, through the real kms-core
//! (its `/me` says which user it was given) and a real OpenID provider: a verified client
//! certificate wins; else a JWT-shaped bearer is judged as a JWT only (an invalid one is 401,
//! never an API token or the default user); else an API token; else 401.

use anyhow::Result;
use kms_tests::idp::Idp;
use kms_tests::stack::Stack;
use kms_tests::{Proxy, ProxyCommand, Validity, tls_args};
use serde_json::Value;

const AUDIENCE: &str = "https://kms.local";

/// GET /me: the user the core was given, or the proxy's status when it refused.
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
        status => status.to_string(),
    })
}

fn proxy_args(stack: &Stack, idp: &Idp, uid: &str, stem: &str) -> Result<Vec<String>> {
    let cert = stack.pki.server(stem, Validity::Current)?;
    let mut args = tls_args(&cert, &format!("unix:{}", stack.socket.display()));
    args.extend(
        [
            "--authority-cert-file",
            &stack.pki.ca_file.display().to_string(),
            "--jwt-issuer-uri",
            &idp.issuer,
            "--jwks-uri",
            &idp.jwks_uri(),
            "--jwt-audience",
            AUDIENCE,
            "--api-token-id",
            uid,
        ]
        .map(str::to_owned),
    );
    Ok(args)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_combination_of_credentials() -> Result<()> {
    let stack = Stack::start(None).await?;
    let idp = Idp::start()?;
    let (uid, api_token) = stack.api_token().await?;
    let jwt = idp.machine_token().await?;
    let bad_jwt = format!("{}x", &jwt[..jwt.len() - 1]);
    let mut off = api_token.clone().into_bytes();
    // Another letter, not another case: tokens compare case-insensitively.
    off[3] = if off[3].eq_ignore_ascii_case(&b'A') {
        b'B'
    } else {
        b'A'
    };
    let bad_api_token = String::from_utf8(off)?;
    let dotted_api_token = format!("{api_token}.");
    let carol = stack.pki.client("carol", "carol")?;
    let ca = stack.pki.ca_pem.clone();
    let with_cert = kms_tests::client::https_with_identity(&ca, Some(&carol))?;
    let without = kms_tests::client::https(&ca)?;

    // Certificates optional: each method on its own, and together.
    let proxy = ProxyCommand::new()
        .args(proxy_args(&stack, &idp, &uid, "optional")?)
        .args(["--client-cert", "optional"])
        .spawn()?;
    assert!(proxy.wait_ready().await, "{}", proxy.logs());
    let table: Vec<(&str, &reqwest::Client, Option<&str>, &str)> = vec![
        ("certificate", &with_cert, None, "carol"),
        ("certificate + JWT", &with_cert, Some(&jwt), "carol"),
        (
            "certificate + invalid JWT",
            &with_cert,
            Some(&bad_jwt),
            "carol",
        ),
        (
            "certificate + API token",
            &with_cert,
            Some(&api_token),
            "carol",
        ),
        (
            "certificate + bad API token",
            &with_cert,
            Some(&bad_api_token),
            "carol",
        ),
        ("JWT", &without, Some(&jwt), "kms-machine"),
        (
            "invalid JWT (no fall-through)",
            &without,
            Some(&bad_jwt),
            "401",
        ),
        ("API token", &without, Some(&api_token), "admin"),
        (
            "API token one character off",
            &without,
            Some(&bad_api_token),
            "401",
        ),
        (
            "API token with a dot (JWT-shaped)",
            &without,
            Some(&dotted_api_token),
            "401",
        ),
        ("nothing", &without, None, "401"),
    ];
    for (name, c, bearer, want) in &table {
        assert_eq!(me(c, &proxy, *bearer).await?, *want, "{name}");
    }
    drop(proxy);

    // force_default_username: the same credentials are checked, then the default user goes.
    let forced = ProxyCommand::new()
        .args(proxy_args(&stack, &idp, &uid, "forced")?)
        .args(["--client-cert", "optional", "--force-default-username"])
        .spawn()?;
    assert!(forced.wait_ready().await, "{}", forced.logs());
    for (name, c, bearer, want) in [
        ("certificate", &with_cert, None, "admin"),
        ("JWT", &without, Some(jwt.as_str()), "admin"),
        ("API token", &without, Some(api_token.as_str()), "admin"),
        ("invalid JWT", &without, Some(bad_jwt.as_str()), "401"),
        ("nothing", &without, None, "401"),
    ] {
        assert_eq!(me(c, &forced, bearer).await?, want, "forced: {name}");
    }
    drop(forced);

    // Certificates required (the default): no certificate, no service, whatever the bearer.
    let required = ProxyCommand::new()
        .args(proxy_args(&stack, &idp, &uid, "required")?)
        .spawn()?;
    assert!(required.wait_ready().await, "{}", required.logs());
    assert_eq!(me(&with_cert, &required, Some(&jwt)).await?, "carol");
    for bearer in [Some(jwt.as_str()), Some(api_token.as_str()), None] {
        let refused = without
            .get(required.url("/me"))
            .header("authorization", format!("Bearer {}", bearer.unwrap_or("")))
            .send()
            .await;
        assert!(refused.is_err(), "served without a certificate: {bearer:?}");
    }
    Ok(())
}
