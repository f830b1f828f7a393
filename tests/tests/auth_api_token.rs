//! API tokens against the real kms-core: the token is the base64 of a symmetric key the proxy
//! fetches from the core; a token that differs in one character, a JWT-shaped bearer, or no
//! token gets 401; revoking the key disables the token without restarting the proxy.

use std::time::{Duration, Instant};

use anyhow::Result;
use kms_tests::stack::{Stack, by_uid};
use kms_tests::{ProxyCommand, Validity, tls_args};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn api_tokens_follow_the_key_in_the_core() -> Result<()> {
    let stack = Stack::start(None).await?;
    let (uid, token) = stack.api_token().await?;

    let cert = stack.pki.server("token-proxy", Validity::Current)?;
    let proxy = ProxyCommand::new()
        .args(tls_args(&cert, &format!("unix:{}", stack.socket.display())))
        .args([
            "--api-token-id",
            &uid,
            "--api-token-refresh-interval",
            "0.5",
        ])
        .spawn()?;
    assert!(
        proxy.wait_ready().await,
        "the token key never loaded: {}",
        proxy.logs()
    );
    assert!(!proxy.logs().contains(&token), "the token is in the logs");

    let client = kms_tests::client::https(&stack.pki.ca_pem)?;
    let me = client
        .get(proxy.url("/me"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await?, json!({"user": "admin"}));
    assert!(
        proxy.wait_for_log("auth_method=\"api_token\"", Duration::from_secs(5)),
        "{}",
        proxy.logs()
    );

    // One character off, JWT-shaped, another scheme, none: 401 with WWW-Authenticate, no fall-through.
    let mut off = token.clone().into_bytes();
    // Another letter, not another case: tokens compare case-insensitively.
    off[5] = if off[5].eq_ignore_ascii_case(&b'A') {
        b'B'
    } else {
        b'A'
    };
    let off = String::from_utf8(off)?;
    let jwt_shaped = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    for (name, header) in [
        ("one character off", Some(format!("Bearer {off}"))),
        ("JWT-shaped", Some(format!("Bearer {jwt_shaped}"))),
        ("basic", Some(format!("Basic {token}"))),
        ("none", None),
    ] {
        let mut request = client.get(proxy.url("/me"));
        if let Some(h) = header {
            request = request.header("authorization", h);
        }
        let r = request.send().await?;
        assert_eq!(r.status(), 401, "{name}");
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{name}"
        );
    }

    // Revoke the key in the core: the token stops working without a proxy restart.
    stack
        .ok(&by_uid(
            "Revoke",
            &uid,
            vec![json!({"tag": "RevocationReason", "value": [
                {"tag": "RevocationReasonCode", "type": "Enumeration", "value": "Unspecified"},
                {"tag": "RevocationMessage", "type": "TextString", "value": "rotate the API token"},
            ]})],
        ))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut status = 200;
    while Instant::now() < deadline {
        status = client
            .get(proxy.url("/me"))
            .bearer_auth(&token)
            .send()
            .await?
            .status()
            .as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        status,
        401,
        "a revoked key's token still works: {}",
        proxy.logs()
    );
    assert_eq!(
        reqwest::get(proxy.admin_url("/readyz")).await?.status(),
        503
    );
    Ok(())
}
