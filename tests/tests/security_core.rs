//! Holes found by an attack on the running stack (issue 11, items 2–5, 7 and 10), each
//! through the real proxy and core: API tokens follow the key's state and owner and compare
//! case-insensitively; uids are never reused; a caller-chosen nonce needs the decrypt right;
//! Import with ReplaceExisting cannot race Create (SQLite and PostgreSQL) and drops grants;
//! tags resolve among the caller's own keys and errors never name others' keys; look-alike
//! HSM identifiers and bad byte strings are refused without echoing anything.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use kms_tests::postgres::Postgres;
use kms_tests::stack::{Stack, by_uid, create_request, field, leaf};
use kms_tests::{Proxy, ProxyCommand, Validity, tls_args};
use serde_json::{Value, json};

fn uid_of(response: &Value) -> String {
    field(response, "UniqueIdentifier")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn revoke(uid: &str, reason: &str) -> Value {
    by_uid(
        "Revoke",
        uid,
        vec![json!({"tag": "RevocationReason", "value": [
            leaf("RevocationReasonCode", "Enumeration", json!(reason)),
        ]})],
    )
}

fn destroy_remove(uid: &str) -> Value {
    by_uid("Destroy", uid, vec![leaf("Remove", "Boolean", json!(true))])
}

/// An Import of raw AES key bytes under `uid`.
fn import(uid: &str, key: &[u8], replace: bool) -> Value {
    let hex: String = key.iter().map(|b| format!("{b:02X}")).collect();
    json!({"tag": "Import", "value": [
        leaf("UniqueIdentifier", "TextString", json!(uid)),
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        leaf("ReplaceExisting", "Boolean", json!(replace)),
        {"tag": "Attributes", "value": [
            leaf("ActivationDate", "DateTime", json!("2026-01-01T00:00:00Z")),
        ]},
        {"tag": "SymmetricKey", "value": [{"tag": "KeyBlock", "value": [
            leaf("KeyFormatType", "Enumeration", json!("Raw")),
            {"tag": "KeyValue", "value": [leaf("KeyMaterial", "ByteString", json!(hex))]},
            leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
            leaf("CryptographicLength", "Integer", json!(key.len() * 8)),
        ]}]},
    ]})
}

fn encrypt(id: &str, nonce: Option<&str>) -> Value {
    let mut extra = vec![leaf(
        "Data",
        "ByteString",
        json!("00000000000000000000000000000000"),
    )];
    if let Some(n) = nonce {
        extra.push(leaf("IVCounterNonce", "ByteString", json!(n)));
    }
    by_uid("Encrypt", id, extra)
}

async fn grant(stack: &Stack, as_proxy: &Proxy, uid: &str, user: &str, ops: &[&str]) -> Result<()> {
    let (status, body) = stack
        .post_json(
            as_proxy,
            "/access/grant",
            &json!({"unique_identifier": uid, "user_id": user, "operation_types": ops}),
        )
        .await?;
    anyhow::ensure!(status == 200, "grant: {status} {body}");
    Ok(())
}

/// A proxy accepting API tokens of key `uid`, refreshing every half second.
fn token_proxy(stack: &Stack, uid: &str) -> Result<Proxy> {
    let cert = stack.pki.server(
        &format!("token-{}", kms_tests::random_u64()),
        Validity::Current,
    )?;
    ProxyCommand::new()
        .args(tls_args(&cert, &format!("unix:{}", stack.socket.display())))
        .args(["--api-token-id", uid, "--api-token-refresh-interval", "0.5"])
        .spawn()
}

async fn me_with(client: &reqwest::Client, proxy: &Proxy, token: &str) -> Result<u16> {
    Ok(client
        .get(proxy.url("/me"))
        .bearer_auth(token)
        .send()
        .await?
        .status()
        .as_u16())
}

/// Waits up to 5 s for `/me` with `token` to answer `want`.
async fn until(client: &reqwest::Client, proxy: &Proxy, token: &str, want: u16) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if me_with(client, proxy, token).await? == want {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn api_tokens_need_an_active_key_owned_by_the_default_user() -> Result<()> {
    let stack = Stack::start(None).await?;
    let client = kms_tests::client::https(&stack.pki.ca_pem)?;

    // Accepted as written and lower-cased (the reference CLI writes it lower-cased).
    let (uid, token) = stack.api_token().await?;
    let proxy = token_proxy(&stack, &uid)?;
    assert!(proxy.wait_ready().await, "{}", proxy.logs());
    assert_eq!(me_with(&client, &proxy, &token).await?, 200);
    assert_eq!(me_with(&client, &proxy, &token.to_lowercase()).await?, 200);

    // Revoked as compromised: Get refuses it (Export still returns it), the token stops.
    stack.ok(&revoke(&uid, "KeyCompromise")).await?;
    let (status, body) = stack.kmip(&by_uid("Get", &uid, vec![])).await?;
    assert_eq!(
        (status, body.as_str()),
        (422, "Wrong_Key_Lifecycle_State: DENIED")
    );
    stack.ok(&by_uid("Export", &uid, vec![])).await?;
    assert!(
        until(&client, &proxy, &token, 401).await?,
        "a compromised key still authenticates: {}",
        proxy.logs()
    );

    // Destroyed and removed: its uid can never be taken again, by anyone.
    stack.ok(&destroy_remove(&uid)).await?;
    let mallory = stack.proxy_as("mallory")?;
    let mut retake = create_request(256, &["api-token"], Some("2026-01-01T00:00:00Z"));
    retake["value"][1]["value"]
        .as_array_mut()
        .context("attributes")?
        .push(leaf("UniqueIdentifier", "TextString", json!(uid)));
    for (name, request) in [
        ("create", retake),
        ("import", import(&uid, &[7; 32], false)),
        ("import replace", import(&uid, &[7; 32], true)),
    ] {
        let (status, body) = stack.kmip_via(&mallory, &request).await?;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body.contains("never reused"), "{name}: {body}");
    }
    assert_eq!(me_with(&client, &proxy, &token).await?, 401);
    assert_eq!(
        me_with(
            &client,
            &proxy,
            &base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        )
        .await?,
        401
    );

    // A key that is not the default user's, even one shared with everyone, is no token key.
    let hers = uid_of(
        &stack
            .kmip_via(
                &mallory,
                &create_request(256, &["t"], Some("2026-01-01T00:00:00Z")),
            )
            .await
            .and_then(|(s, b)| {
                anyhow::ensure!(s == 200, "{s} {b}");
                Ok(serde_json::from_str::<Value>(&b)?)
            })?,
    );
    grant(&stack, &mallory, &hers, "*", &["get", "getattributes"]).await?;
    let (_, got) = stack.kmip(&by_uid("Get", &hers, vec![])).await?;
    let hex = got
        .split("\"KeyMaterial\",\"type\":\"ByteString\",\"value\":\"")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .context("the shared key is readable by admin")?
        .to_owned();
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()?;
    let her_token = base64::engine::general_purpose::STANDARD.encode(bytes);
    let pinned = token_proxy(&stack, &hers)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(me_with(&client, &pinned, &her_token).await?, 401);
    assert!(
        pinned.logs().contains("not owned by the default user"),
        "{}",
        pinned.logs()
    );

    // A key that is not Active yet (no activation date) is no token key either.
    let pre = stack.ok(&create_request(256, &["pre"], None)).await?;
    let pre_uid = uid_of(&pre);
    let pre_proxy = token_proxy(&stack, &pre_uid)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        pre_proxy.logs().contains("not Active"),
        "{}",
        pre_proxy.logs()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chosen_nonce_needs_the_decrypt_right() -> Result<()> {
    let stack = Stack::start(None).await?;
    let key = uid_of(
        &stack
            .ok(&create_request(256, &["n"], Some("2026-01-01T00:00:00Z")))
            .await?,
    );
    let bob = stack.proxy_as("bob")?;
    grant(&stack, &stack.proxy, &key, "bob", &["encrypt"]).await?;
    let nonce = "0102030405060708090A0B0C";
    let (status, body) = stack.kmip_via(&bob, &encrypt(&key, Some(nonce))).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("IVCounterNonce"), "{body}");
    // Without a nonce the server picks a fresh one each time.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let (status, body) = stack.kmip_via(&bob, &encrypt(&key, None)).await?;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body)?;
        seen.insert(
            field(&v, "IVCounterNonce")
                .cloned()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 5, "the server reused a nonce: {seen:?}");
    // With the decrypt right too, a chosen nonce is the caller's business.
    grant(&stack, &stack.proxy, &key, "bob", &["decrypt"]).await?;
    let (status, body) = stack.kmip_via(&bob, &encrypt(&key, Some(nonce))).await?;
    assert_eq!(status, 200, "{body}");
    // The owner may always.
    stack.ok(&encrypt(&key, Some(nonce))).await?;
    Ok(())
}

/// `trials` rounds of Create (alice) against Import with ReplaceExisting (mallory) of the same
/// uid, both sent at once: whoever the store lets in, a user told "created" owns the key.
/// A Create of an AES key under a uid the caller chooses.
fn create_with_uid(uid: &str) -> Result<Value> {
    let mut create = create_request(256, &["race"], Some("2026-01-01T00:00:00Z"));
    create["value"][1]["value"]
        .as_array_mut()
        .context("attributes")?
        .push(leaf("UniqueIdentifier", "TextString", json!(uid)));
    Ok(create)
}

/// Creates under each of `uids`, all sent at once through `proxy`: each answer, in order.
async fn create_at_once(
    stack: &Stack,
    proxy: &Proxy,
    uids: &[String],
) -> Result<Vec<Result<(u16, String)>>> {
    let requests = uids
        .iter()
        .map(|uid| create_with_uid(uid))
        .collect::<Result<Vec<_>>>()?;
    let answers = requests.iter().map(|r| stack.kmip_via(proxy, r));
    Ok(futures_util::future::join_all(answers).await)
}

async fn replace_cannot_race_create(stack: &Stack, trials: usize) -> Result<()> {
    let alice = stack.proxy_as("alice")?;
    let mallory = stack.proxy_as("mallory")?;
    let run = kms_tests::random_u64();
    let mut alice_won = 0;
    for i in 0..trials {
        let uid = format!("race-{run}-{i}");
        let create = create_with_uid(&uid)?;
        let replace = import(&uid, &[9; 32], true);
        let (created, replaced) = tokio::join!(
            stack.kmip_via(&alice, &create),
            stack.kmip_via(&mallory, &replace)
        );
        let (created, replaced) = (created?.0, replaced?.0);
        let (status, body) = stack.kmip_via(&alice, &by_uid("Get", &uid, vec![])).await?;
        if created == 200 {
            alice_won += 1;
            assert_eq!(
                status, 200,
                "trial {i}: alice was told she created {uid}: {body}"
            );
            assert!(
                !body.contains("0909090909090909"),
                "trial {i}: alice's key was replaced by mallory's"
            );
        } else {
            assert_eq!(replaced, 200, "trial {i}: nobody got {uid}");
        }
    }
    assert!(
        alice_won > 0,
        "Create never won: the race was not exercised"
    );

    // Creates racing for one uid among Creates of uids of their own (the core commits them in
    // shared groups): one of the racers gets it, every other is told it exists, and every
    // other Create is stored.
    for i in 0..10 {
        let contested = format!("contested-{run}-{i}");
        let uids: Vec<String> = (0..16)
            .map(|n| match n % 2 {
                0 => contested.clone(),
                _ => format!("{contested}-own-{n}"),
            })
            .collect();
        let answers = create_at_once(stack, &alice, &uids).await?;
        let mut winners = 0;
        for (uid, answer) in uids.iter().zip(answers) {
            let (status, body) = answer?;
            if *uid != contested {
                assert_eq!(status, 200, "{uid}: {body}");
            } else if status == 200 {
                winners += 1;
            } else {
                assert_eq!(status, 422, "{uid}: {body}");
                assert!(body.contains("already exist"), "{uid}: {body}");
            }
        }
        assert_eq!(winners, 1, "{contested} was created {winners} times");
        for uid in &uids {
            let (status, body) = stack.kmip_via(&alice, &by_uid("Get", uid, vec![])).await?;
            assert_eq!(status, 200, "{uid}: {body}");
        }
    }

    // The uid of a removed key, asked for among fresh Creates: refused as never reused, and
    // the others are stored.
    let retired = format!("retired-{run}");
    for request in [
        create_with_uid(&retired)?,
        revoke(&retired, "CessationOfOperation"),
        destroy_remove(&retired),
    ] {
        let (status, body) = stack.kmip_via(&alice, &request).await?;
        assert_eq!(status, 200, "{body}");
    }
    let uids: Vec<String> = (0..8)
        .map(|n| match n {
            0 => retired.clone(),
            _ => format!("{retired}-fresh-{n}"),
        })
        .collect();
    let answers = create_at_once(stack, &alice, &uids).await?;
    for (uid, answer) in uids.iter().zip(answers) {
        let (status, body) = answer?;
        if *uid == retired {
            assert_eq!(status, 422, "{uid}: {body}");
            assert!(body.contains("never reused"), "{uid}: {body}");
        } else {
            assert_eq!(status, 200, "{uid}: {body}");
        }
    }

    // Replacing one's own key drops the grants of the old one.
    let uid = format!("regrant-{run}");
    stack
        .kmip_via(&alice, &import(&uid, &[1; 32], false))
        .await?;
    grant(stack, &alice, &uid, "bob", &["get"]).await?;
    let bob = stack.proxy_as("bob")?;
    assert_eq!(
        stack.kmip_via(&bob, &by_uid("Get", &uid, vec![])).await?.0,
        200
    );
    let (status, body) = stack
        .kmip_via(&alice, &import(&uid, &[2; 32], true))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_ne!(
        stack.kmip_via(&bob, &by_uid("Get", &uid, vec![])).await?.0,
        200,
        "a grant on the replaced key survived"
    );
    // And another user cannot replace it.
    let (status, body) = stack
        .kmip_via(&mallory, &import(&uid, &[3; 32], true))
        .await?;
    assert_eq!(status, 401, "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_existing_cannot_race_create_sqlite() -> Result<()> {
    let stack = Stack::start(None).await?;
    replace_cannot_race_create(&stack, 100).await
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_existing_cannot_race_create_postgres() -> Result<()> {
    let pg = Postgres::start()?;
    let stack = Stack::start(Some(&pg.url("kms"))).await?;
    replace_cannot_race_create(&stack, 100).await
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_resolve_among_the_callers_keys_and_errors_name_nothing_else() -> Result<()> {
    let stack = Stack::start(None).await?;
    let alice = stack.proxy_as("alice")?;
    let mallory = stack.proxy_as("mallory")?;
    let active = Some("2026-01-01T00:00:00Z");
    let (_, hers) = stack
        .kmip_via(&alice, &create_request(256, &["payments"], active))
        .await?;
    let hers = uid_of(&serde_json::from_str(&hers)?);
    let (_, squat) = stack
        .kmip_via(
            &mallory,
            &create_request(256, &["payments", "secret-x"], active),
        )
        .await?;
    let squat = uid_of(&serde_json::from_str(&squat)?);
    grant(
        &stack,
        &mallory,
        &squat,
        "*",
        &["encrypt", "get", "getattributes"],
    )
    .await?;

    // Alice's tag still means her key, for Encrypt and for Get.
    let (status, body) = stack
        .kmip_via(&alice, &encrypt("[\"payments\"]", None))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&hers), "{body}");
    let (status, body) = stack
        .kmip_via(&alice, &by_uid("GetAttributes", "[\"payments\"]", vec![]))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&hers) && !body.contains(&squat), "{body}");

    // A tag only someone else's key carries: not found, and nothing named.
    let (_, private) = stack
        .kmip_via(&alice, &create_request(256, &["alice-only"], active))
        .await?;
    let private = uid_of(&serde_json::from_str(&private)?);
    let (status, body) = stack
        .kmip_via(&mallory, &encrypt("[\"alice-only\"]", None))
        .await?;
    assert_eq!(status, 422, "{body}");
    assert!(
        !body.contains(&private),
        "the error names alice's key: {body}"
    );
    let (_, body) = stack
        .kmip_via(&mallory, &by_uid("Get", "[\"alice-only\"]", vec![]))
        .await?;
    assert!(!body.contains(&private), "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn look_alike_identifiers_and_bad_bytes_are_refused_quietly() -> Result<()> {
    let stack = Stack::start(None).await?;
    for uid in [
        "HSM::1::x",
        " hsm::1::x",
        "hsm:1::x",
        "Hsm::1::x",
        "a\nb",
        "trailing ",
    ] {
        let mut create = create_request(256, &["t"], None);
        create["value"][1]["value"]
            .as_array_mut()
            .context("attributes")?
            .push(leaf("UniqueIdentifier", "TextString", json!(uid)));
        let (status, body) = stack.kmip(&create).await?;
        assert_eq!(status, 422, "{uid:?} was accepted: {body}");
        let (status, _) = stack.kmip(&import(uid, &[5; 32], false)).await?;
        assert_eq!(status, 422, "{uid:?} was imported");
    }
    let secret = "5EC2E75EC2E75EC2E75EC2E75EC2E75EC2E75EC2E75EC2E75EC2E75EC2E75EC";
    let mut bad = import("bad-bytes", &[0; 32], false);
    bad["value"][4]["value"][0]["value"][1]["value"][0]["value"] = json!(secret);
    let (status, body) = stack.kmip(&bad).await?;
    assert_eq!(status, 422, "{body}");
    assert!(
        !body.contains("5EC2E7"),
        "the key material is echoed: {body}"
    );
    assert!(
        !stack.core.logs().contains("5EC2E7"),
        "the key material is logged"
    );
    Ok(())
}
