//! The typed KMIP layer end to end, through the real proxy, on SQLite and PostgreSQL: what a
//! client asks for is done or refused by name (never ignored), key wrapping checked with
//! openssl as the independent implementation, `Sensitive` keys, Locate filters, grants that
//! survive ReKey, and any grantee reading attributes.

use std::process::Command;

use anyhow::{Context, Result, bail};
use kms_tests::postgres::Postgres;
use kms_tests::stack::{Stack, by_uid, create_request, field, leaf};
use serde_json::{Value, json};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn uid_of(response: &Value) -> String {
    field(response, "UniqueIdentifier")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A Create as `ckms sym keys create` sends it, with extra attributes (replacing those of
/// the same name).
fn create_with(bits: i32, tags: &[&str], extra: Vec<Value>) -> Value {
    let mut request = create_request(bits, tags, Some(&now()));
    if let Some(attributes) = request["value"][1]["value"].as_array_mut() {
        attributes
            .retain(|a| a["tag"] == "Attribute" || !extra.iter().any(|e| e["tag"] == a["tag"]));
        attributes.extend(extra);
    }
    request
}

fn vendor(name: &str, value: &str) -> Value {
    json!({"tag": "Attribute", "value": [
        leaf("VendorIdentification", "TextString", json!("cosmian")),
        leaf("AttributeName", "TextString", json!(name)),
        leaf("AttributeValue", "TextString", json!(value)),
    ]})
}

/// The KeyBlock of a Get or Export answer.
fn key_block(response: &Value) -> Result<&Vec<Value>> {
    field(response, "SymmetricKey")
        .and_then(|k| k[0]["value"].as_array())
        .context("no SymmetricKey.KeyBlock")
}

/// The key bytes of a Get answer: the clear KeyMaterial, or the wrapped KeyValue.
fn key_bytes(response: &Value) -> Result<Vec<u8>> {
    let block = key_block(response)?;
    let value = block
        .iter()
        .find(|c| c["tag"] == "KeyValue")
        .context("no KeyValue")?;
    match &value["value"] {
        Value::String(wrapped) => Ok(unhex(wrapped)),
        Value::Array(_) => Ok(unhex(
            field(value, "KeyMaterial")
                .and_then(Value::as_str)
                .context("no KeyMaterial")?,
        )),
        other => bail!("unexpected KeyValue {other}"),
    }
}

fn wrapping_spec(kek: &str, mode: Option<&str>, encoding: &str) -> Value {
    let mut info = vec![leaf("UniqueIdentifier", "TextString", json!(kek))];
    if let Some(mode) = mode {
        info.push(json!({"tag": "CryptographicParameters", "value": [
            leaf("BlockCipherMode", "Enumeration", json!(mode)),
            leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
        ]}));
    }
    json!({"tag": "KeyWrappingSpecification", "value": [
        leaf("WrappingMethod", "Enumeration", json!("Encrypt")),
        {"tag": "EncryptionKeyInformation", "value": info},
        leaf("EncodingOption", "Enumeration", json!(encoding)),
    ]})
}

/// openssl's AES key unwrap: `-id-aes256-wrap` (RFC 3394) or `-id-aes256-wrap-pad` (5649).
fn openssl_unwrap(kek: &[u8], wrapped: &[u8], padded: bool) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("wrapped.bin");
    std::fs::write(&input, wrapped)?;
    let (cipher, iv) = if padded {
        ("-id-aes256-wrap-pad", "A65959A6")
    } else {
        ("-id-aes256-wrap", "A6A6A6A6A6A6A6A6")
    };
    let out = Command::new("openssl")
        .args(["enc", "-d", cipher, "-K", &hex(kek), "-iv", iv, "-in"])
        .arg(&input)
        .output()
        .context("openssl (apt-get install openssl)")?;
    if !out.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// openssl's RFC 3394 wrap, to import a key wrapped by someone else.
fn openssl_wrap(kek: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("plain.bin");
    std::fs::write(&input, plain)?;
    let out = Command::new("openssl")
        .args(["enc", "-id-aes256-wrap", "-K", &hex(kek)])
        .args(["-iv", "A6A6A6A6A6A6A6A6", "-in"])
        .arg(&input)
        .output()
        .context("openssl (apt-get install openssl)")?;
    if !out.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

async fn create(stack: &Stack, tags: &[&str]) -> Result<String> {
    Ok(uid_of(&stack.ok(&create_with(256, tags, vec![])).await?))
}

async fn clear_key(stack: &Stack, uid: &str) -> Result<Vec<u8>> {
    key_bytes(&stack.ok(&by_uid("Get", uid, vec![])).await?)
}

async fn expect(stack: &Stack, body: &Value, status: u16, text: &str) -> Result<()> {
    let (got, body_text) = stack.kmip(body).await?;
    assert_eq!((got, body_text.as_str()), (status, text), "request {body}");
    Ok(())
}

async fn nothing_is_ignored(stack: &Stack) -> Result<()> {
    let uid = create(stack, &[]).await?;
    let encrypt = |params: Vec<Value>, extra: Vec<Value>| {
        let mut children = vec![
            json!({"tag": "CryptographicParameters", "value": params}),
            leaf("Data", "ByteString", json!("00")),
        ];
        children.extend(extra);
        by_uid("Encrypt", &uid, children)
    };
    // A valid KMIP mode we do not implement is "not supported", not an invalid name.
    let xts = encrypt(
        vec![leaf("BlockCipherMode", "Enumeration", json!("XTS"))],
        vec![],
    );
    expect(
        stack,
        &xts,
        422,
        "Feature_Not_Supported: Encrypt: BlockCipherMode XTS with an AES key is not supported by this server",
    )
    .await?;
    let typo = encrypt(
        vec![leaf("BlockCipherMode", "Enumeration", json!("GCMX"))],
        vec![],
    );
    expect(
        stack,
        &typo,
        422,
        "Codec_Error: invalid value: string \"GCMX\", expected valid BlockCipherMode name",
    )
    .await?;
    // A field the operation does not read is refused by its name.
    let streaming = encrypt(vec![], vec![leaf("InitIndicator", "Boolean", json!(true))]);
    expect(
        stack,
        &streaming,
        422,
        "Feature_Not_Supported: Encrypt.InitIndicator is not supported by this server",
    )
    .await?;
    let padding = encrypt(
        vec![leaf("PaddingMethod", "Enumeration", json!("PKCS5"))],
        vec![],
    );
    let (status, text) = stack.kmip(&padding).await?;
    assert_eq!(status, 422);
    assert!(text.contains("PaddingMethod PKCS5"), "{text}");
    // A Locate filter we do not implement is refused, not dropped.
    let by_mask = json!({"tag": "Locate", "value": [{"tag": "Attributes", "value": [
        leaf("CryptographicUsageMask", "Integer", json!(4)),
    ]}]});
    expect(
        stack,
        &by_mask,
        422,
        "Feature_Not_Supported: Locate.Attributes.CryptographicUsageMask is not supported by this server",
    )
    .await?;
    // A batch that asks to stop at the first failure is refused (items always continue).
    let stop = json!({"tag": "RequestMessage", "value": [
        {"tag": "RequestHeader", "value": [
            {"tag": "ProtocolVersion", "value": [
                leaf("ProtocolVersionMajor", "Integer", json!(2)),
                leaf("ProtocolVersionMinor", "Integer", json!(1)),
            ]},
            leaf("BatchErrorContinuationOption", "Enumeration", json!("Stop")),
            leaf("BatchCount", "Integer", json!(1)),
        ]},
    ]});
    let (status, text) = stack.kmip(&stop).await?;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("BatchErrorContinuationOption Stop"), "{text}");
    // An unknown vendor attribute on Create is refused, and nothing is created.
    let before = locate(stack, vec![]).await?.len();
    let odd = create_with(256, &[], vec![vendor("colour", "blue")]);
    let (status, text) = stack.kmip(&odd).await?;
    assert_eq!(status, 422, "{text}");
    assert!(
        text.contains("the vendor attribute cosmian:colour"),
        "{text}"
    );
    assert_eq!(locate(stack, vec![]).await?.len(), before);
    Ok(())
}

async fn key_wrapping(stack: &Stack) -> Result<()> {
    let kek_uid = create(stack, &[]).await?;
    let kek = clear_key(stack, &kek_uid).await?;
    let uid = create(stack, &[]).await?;
    let key = clear_key(stack, &uid).await?;
    // Export wrapped, each mode; RFC 3394 and 5649 unwrapped by openssl.
    for (mode, padded) in [
        (None, false),
        (Some("NISTKeyWrap"), false),
        (Some("AESKeyWrapPadding"), true),
    ] {
        let get = by_uid(
            "Get",
            &uid,
            vec![wrapping_spec(&kek_uid, mode, "NoEncoding")],
        );
        let response = stack.ok(&get).await?;
        let wrapped = key_bytes(&response)?;
        assert_ne!(wrapped, key, "the key must not come back in clear");
        assert_eq!(openssl_unwrap(&kek, &wrapped, padded)?, key, "{mode:?}");
        let data = key_block(&response)?
            .iter()
            .find(|c| c["tag"] == "KeyWrappingData")
            .context("KeyWrappingData")?;
        assert!(data.to_string().contains(&kek_uid));
    }
    // TTLV encoding (KMIP's and the reference CLI's default) wraps the whole key value:
    // openssl unwraps a binary TTLV KeyValue holding the key, and it imports back.
    let get = by_uid(
        "Get",
        &uid,
        vec![wrapping_spec(&kek_uid, None, "TTLVEncoding")],
    );
    let wrapped = key_bytes(&stack.ok(&get).await?)?;
    let value = openssl_unwrap(&kek, &wrapped, false)?;
    assert_eq!(value[..4], [0x42, 0x00, 0x45, 0x01], "a KeyValue structure");
    assert!(value.windows(32).any(|w| w == key.as_slice()));
    let imported = stack
        .ok(&encoded_import(
            &wrapped,
            &kek_uid,
            "NISTKeyWrap",
            "NotWrapped",
            "TTLVEncoding",
        ))
        .await?;
    assert_eq!(clear_key(stack, &uid_of(&imported)).await?, key);
    // GCM: imported back through a wrapped Import, the same key comes out.
    let export = by_uid(
        "Export",
        &uid,
        vec![wrapping_spec(&kek_uid, Some("GCM"), "NoEncoding")],
    );
    let exported = stack.ok(&export).await?;
    assert!(field(&exported, "Attributes").is_some());
    let wrapped = key_bytes(&exported)?;
    assert_eq!(wrapped.len(), 12 + 32 + 16);
    let imported = stack
        .ok(&wrapped_import(&wrapped, &kek_uid, "GCM", "NotWrapped"))
        .await?;
    assert_eq!(clear_key(stack, &uid_of(&imported)).await?, key);

    // A key openssl wrapped imports in clear (NotWrapped) or stays wrapped (AsRegistered).
    let known: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(29).wrapping_add(7))
        .collect();
    let by_openssl = openssl_wrap(&kek, &known)?;
    let clear = stack
        .ok(&wrapped_import(
            &by_openssl,
            &kek_uid,
            "NISTKeyWrap",
            "NotWrapped",
        ))
        .await?;
    assert_eq!(clear_key(stack, &uid_of(&clear)).await?, known);
    let registered = stack
        .ok(&wrapped_import(
            &by_openssl,
            &kek_uid,
            "NISTKeyWrap",
            "AsRegistered",
        ))
        .await?;
    let registered = uid_of(&registered);
    let as_stored = key_bytes(&stack.ok(&by_uid("Get", &registered, vec![])).await?)?;
    assert_eq!(openssl_unwrap(&kek, &as_stored, true)?, known);
    let unwrapped = by_uid(
        "Get",
        &registered,
        vec![leaf("KeyWrapType", "Enumeration", json!("NotWrapped"))],
    );
    assert_eq!(key_bytes(&stack.ok(&unwrapped).await?)?, known);
    // A wrong wrapping key fails authentication instead of giving garbage.
    let other = create(stack, &[]).await?;
    let (status, text) = stack
        .kmip(&wrapped_import(
            &by_openssl,
            &other,
            "NISTKeyWrap",
            "NotWrapped",
        ))
        .await?;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("does not unwrap"), "{text}");

    // Created "wrapped by" a key: Get returns it wrapped by that key.
    let created = stack
        .ok(&create_with(
            256,
            &[],
            vec![vendor("wrapping_key_id", &kek_uid)],
        ))
        .await?;
    let created = uid_of(&created);
    let wrapped = key_bytes(&stack.ok(&by_uid("Get", &created, vec![])).await?)?;
    let inner = openssl_unwrap(&kek, &wrapped, true)?;
    assert_eq!(inner.len(), 32);
    // Someone granted the key but not the wrapping key gets it wrapped only.
    let bob = stack.proxy_as("bob@example.com")?;
    let grant = json!({"unique_identifier": created, "user_id": "bob@example.com", "operation_types": ["get"]});
    assert_eq!(
        stack
            .post_json(&stack.proxy, "/access/grant", &grant)
            .await?
            .0,
        200
    );
    let (status, _) = stack
        .kmip_via(&bob, &by_uid("Get", &created, vec![]))
        .await?;
    assert_eq!(status, 200);
    let unwrapped = by_uid(
        "Get",
        &created,
        vec![leaf("KeyWrapType", "Enumeration", json!("NotWrapped"))],
    );
    let (status, text) = stack.kmip_via(&bob, &unwrapped).await?;
    assert_eq!(status, 401, "{text}");
    // Wrapping with a key one may not use is refused.
    let spec = by_uid(
        "Get",
        &created,
        vec![wrapping_spec(&other, None, "NoEncoding")],
    );
    let (status, text) = stack.kmip_via(&bob, &spec).await?;
    assert_eq!(status, 401, "{text}");
    Ok(())
}

fn wrapped_import(wrapped: &[u8], kek: &str, mode: &str, wrap_type: &str) -> Value {
    encoded_import(wrapped, kek, mode, wrap_type, "NoEncoding")
}

fn encoded_import(wrapped: &[u8], kek: &str, mode: &str, wrap_type: &str, encoding: &str) -> Value {
    json!({"tag": "Import", "value": [
        leaf("UniqueIdentifier", "TextString", json!("")),
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        leaf("ReplaceExisting", "Boolean", json!(false)),
        leaf("KeyWrapType", "Enumeration", json!(wrap_type)),
        {"tag": "Attributes", "value": [vendor("tag", "[]")]},
        {"tag": "SymmetricKey", "value": [{"tag": "KeyBlock", "value": [
            leaf("KeyFormatType", "Enumeration", json!("Raw")),
            leaf("KeyValue", "ByteString", json!(hex(wrapped))),
            leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
            leaf("CryptographicLength", "Integer", json!(256)),
            {"tag": "KeyWrappingData", "value": [
                leaf("WrappingMethod", "Enumeration", json!("Encrypt")),
                {"tag": "EncryptionKeyInformation", "value": [
                    leaf("UniqueIdentifier", "TextString", json!(kek)),
                    {"tag": "CryptographicParameters", "value": [
                        leaf("BlockCipherMode", "Enumeration", json!(mode)),
                    ]},
                ]},
                leaf("EncodingOption", "Enumeration", json!(encoding)),
            ]},
        ]}]},
    ]})
}

async fn sensitive_keys(stack: &Stack) -> Result<()> {
    let kek = create(stack, &[]).await?;
    let sensitive = create_with(256, &[], vec![leaf("Sensitive", "Boolean", json!(true))]);
    let uid = uid_of(&stack.ok(&sensitive).await?);
    expect(
        stack,
        &by_uid("Get", &uid, vec![]),
        422,
        "Sensitive: DENIED",
    )
    .await?;
    expect(
        stack,
        &by_uid("Export", &uid, vec![]),
        422,
        "Sensitive: DENIED",
    )
    .await?;
    // Usable, and exportable wrapped.
    let encrypt = by_uid(
        "Encrypt",
        &uid,
        vec![leaf("Data", "ByteString", json!("0102"))],
    );
    stack.ok(&encrypt).await?;
    let wrapped = by_uid("Get", &uid, vec![wrapping_spec(&kek, None, "NoEncoding")]);
    assert_eq!(key_bytes(&stack.ok(&wrapped).await?)?.len(), 40);
    let attributes = stack.ok(&by_uid("GetAttributes", &uid, vec![])).await?;
    assert!(
        attributes
            .to_string()
            .contains(r#"{"tag":"Sensitive","type":"Boolean","value":true}"#)
    );
    Ok(())
}

async fn locate(stack: &Stack, filters: Vec<Value>) -> Result<Vec<String>> {
    let request = json!({"tag": "Locate", "value": [{"tag": "Attributes", "value": filters}]});
    let response = stack.ok(&request).await?;
    Ok(response["value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|c| c["tag"] == "UniqueIdentifier")
                .filter_map(|c| c["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

async fn locate_filters(stack: &Stack) -> Result<()> {
    let tag = format!("loc-{}", std::process::id());
    let tags = vendor("tag", &serde_json::to_string(&[&tag])?);
    let small = uid_of(&stack.ok(&create_with(128, &[&tag], vec![])).await?);
    let large = uid_of(&stack.ok(&create_with(256, &[&tag], vec![])).await?);
    let length = |bits: i32| leaf("CryptographicLength", "Integer", json!(bits));
    assert_eq!(
        locate(stack, vec![tags.clone(), length(128)]).await?,
        vec![small.clone()]
    );
    assert_eq!(
        locate(stack, vec![tags.clone(), length(256)]).await?,
        vec![large.clone()]
    );
    assert_eq!(
        locate(stack, vec![tags.clone(), length(192)]).await?,
        Vec::<String>::new()
    );
    let aes = leaf("CryptographicAlgorithm", "Enumeration", json!("AES"));
    let mut both = locate(stack, vec![tags.clone(), aes]).await?;
    both.sort();
    let mut expected = vec![small.clone(), large.clone()];
    expected.sort();
    assert_eq!(both, expected);
    let chacha = leaf("CryptographicAlgorithm", "Enumeration", json!("ChaCha20"));
    assert!(locate(stack, vec![tags.clone(), chacha]).await?.is_empty());
    let secret = leaf("ObjectType", "Enumeration", json!("SecretData"));
    assert!(locate(stack, vec![tags.clone(), secret]).await?.is_empty());
    let raw = leaf("KeyFormatType", "Enumeration", json!("Raw"));
    assert_eq!(locate(stack, vec![tags.clone(), raw]).await?.len(), 2);
    let revoke = by_uid(
        "Revoke",
        &small,
        vec![{
            json!({"tag": "RevocationReason", "value": [
                leaf("RevocationReasonCode", "Enumeration", json!("Unspecified")),
            ]})
        }],
    );
    stack.ok(&revoke).await?;
    let state = |s: &str| leaf("State", "Enumeration", json!(s));
    assert_eq!(
        locate(stack, vec![tags.clone(), state("Deactivated")]).await?,
        vec![small.clone()]
    );
    assert_eq!(
        locate(stack, vec![tags.clone(), state("Active")]).await?,
        vec![large.clone()]
    );
    // MaximumItems and OffsetItems page the answer (oldest first).
    let everything = locate(stack, vec![tags.clone()]).await?;
    assert_eq!(everything.len(), 2);
    let page = json!({"tag": "Locate", "value": [
        leaf("MaximumItems", "Integer", json!(1)),
        leaf("OffsetItems", "Integer", json!(1)),
        {"tag": "Attributes", "value": [tags.clone()]},
    ]});
    let response = stack.ok(&page).await?;
    assert_eq!(uid_of(&response), everything[1]);
    assert_eq!(field(&response, "LocatedItems"), Some(&json!(1)));
    // Someone else's keys are not found by their tag.
    let bob = stack.proxy_as("bob@example.com")?;
    let request = json!({"tag": "Locate", "value": [{"tag": "Attributes", "value": [tags]}]});
    let (status, text) = stack.kmip_via(&bob, &request).await?;
    assert_eq!((status, text.contains(&large)), (200, false), "{text}");
    Ok(())
}

async fn grants_follow_rekey_and_show_attributes(stack: &Stack) -> Result<()> {
    let uid = create(stack, &[]).await?;
    let bob = stack.proxy_as("bob@example.com")?;
    let grant = json!({"unique_identifier": uid, "user_id": "bob@example.com", "operation_types": ["encrypt"]});
    assert_eq!(
        stack
            .post_json(&stack.proxy, "/access/grant", &grant)
            .await?
            .0,
        200
    );
    // Any grantee may read the attributes.
    let (status, text) = stack
        .kmip_via(&bob, &by_uid("GetAttributes", &uid, vec![]))
        .await?;
    assert_eq!(status, 200, "{text}");
    let (status, _) = stack.kmip_via(&bob, &by_uid("Get", &uid, vec![])).await?;
    assert_eq!(status, 422);
    let new = uid_of(&stack.ok(&by_uid("ReKey", &uid, vec![])).await?);
    assert_ne!(new, uid);
    let encrypt = by_uid(
        "Encrypt",
        &new,
        vec![leaf("Data", "ByteString", json!("01"))],
    );
    let (status, text) = stack.kmip_via(&bob, &encrypt).await?;
    assert_eq!(status, 200, "the grant must follow the new key: {text}");
    Ok(())
}

fn new_attribute(op: &str, uid: &str, attribute: Value) -> Value {
    by_uid(
        op,
        uid,
        vec![json!({"tag": "NewAttribute", "value": [attribute]})],
    )
}

fn name(value: &str) -> Value {
    json!({"tag": "Name", "value": [
        leaf("NameValue", "TextString", json!(value)),
        leaf("NameType", "Enumeration", json!("UninterpretedTextString")),
    ]})
}

async fn attributes_and_rotation(stack: &Stack) -> Result<()> {
    let uid = create(stack, &[]).await?;
    let first = format!("payments-{}", std::process::id());
    let second = format!("{first}-v2");
    stack
        .ok(&new_attribute("SetAttribute", &uid, name(&first)))
        .await?;
    assert_eq!(locate(stack, vec![name(&first)]).await?, vec![uid.clone()]);
    stack
        .ok(&new_attribute("ModifyAttribute", &uid, name(&second)))
        .await?;
    assert!(locate(stack, vec![name(&first)]).await?.is_empty());
    assert_eq!(locate(stack, vec![name(&second)]).await?, vec![uid.clone()]);
    // A vendor attribute of any type is kept and returned.
    let vendor_bytes = json!({"tag": "Attribute", "value": [
        leaf("VendorIdentification", "TextString", json!("cosmian")),
        leaf("AttributeName", "TextString", json!("myattr")),
        leaf("AttributeValue", "ByteString", json!("0102")),
    ]});
    stack
        .ok(&new_attribute("SetAttribute", &uid, vendor_bytes))
        .await?;
    let got = stack
        .ok(&by_uid("GetAttributes", &uid, vec![]))
        .await?
        .to_string();
    assert!(
        got.contains("myattr") && got.contains(r#""value":"0102""#),
        "{got}"
    );
    assert!(got.contains(&second));
    let list = stack
        .ok(&by_uid("GetAttributeList", &uid, vec![]))
        .await?
        .to_string();
    assert!(list.contains(r#""value":"Name""#), "{list}");
    // What only the server sets, or may no longer change, is refused.
    let length = leaf("CryptographicLength", "Integer", json!(128));
    let (status, text) = stack
        .kmip(&new_attribute("SetAttribute", &uid, length))
        .await?;
    assert_eq!(status, 422);
    assert!(text.starts_with("Attribute_Read_Only"), "{text}");
    let activation = leaf("ActivationDate", "DateTime", json!("2030-01-01T00:00:00Z"));
    let (status, text) = stack
        .kmip(&new_attribute("SetAttribute", &uid, activation))
        .await?;
    assert_eq!(status, 422);
    assert!(text.starts_with("Wrong_Key_Lifecycle_State"), "{text}");
    let delete = by_uid(
        "DeleteAttribute",
        &uid,
        vec![json!({"tag": "CurrentAttribute", "value": [name(&second)]})],
    );
    stack.ok(&delete).await?;
    assert!(locate(stack, vec![name(&second)]).await?.is_empty());

    // A rotation policy of one second: the core re-keys on its own; the name follows.
    stack
        .ok(&new_attribute("SetAttribute", &uid, name(&first)))
        .await?;
    let interval = leaf("RotateInterval", "LongInteger", json!("0x0000000000000001"));
    stack
        .ok(&new_attribute("SetAttribute", &uid, interval))
        .await?;
    let mut current = uid.clone();
    for _ in 0..100 {
        current = locate(stack, vec![name(&first)])
            .await?
            .pop()
            .unwrap_or_default();
        if current != uid {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ne!(current, uid, "the key was not rotated within 10 s");
    let old = stack
        .ok(&by_uid("GetAttributes", &uid, vec![]))
        .await?
        .to_string();
    assert!(
        old.contains("ReplacementObjectLink") && old.contains("Deactivated"),
        "{old}"
    );
    // Turning the policy off stops the rotations.
    let off = leaf("RotateInterval", "LongInteger", json!("0x0000000000000000"));
    let newest = locate(stack, vec![name(&first)])
        .await?
        .pop()
        .unwrap_or_default();
    stack
        .ok(&new_attribute("SetAttribute", &newest, off))
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(locate(stack, vec![name(&first)]).await?, vec![newest]);
    Ok(())
}

/// `ckms secret-data create` and `opaque-object create` as the reference CLI sends them
/// (exchanges 0164 and 0169), then get, revoke and destroy.
async fn secret_data_and_opaque_objects(stack: &Stack) -> Result<()> {
    let tag = format!("sd-{}", std::process::id());
    let secret = json!({"tag": "Import", "value": [
        leaf("UniqueIdentifier", "TextString", json!("")),
        leaf("ObjectType", "Enumeration", json!("SecretData")),
        leaf("ReplaceExisting", "Boolean", json!(false)),
        {"tag": "Attributes", "value": [
            leaf("ActivationDate", "DateTime", json!(now())),
            leaf("CryptographicUsageMask", "Integer", json!(1_051_136)),
            leaf("KeyFormatType", "Enumeration", json!("Raw")),
            leaf("ObjectType", "Enumeration", json!("SecretData")),
            vendor("tag", &serde_json::to_string(&[&tag])?),
        ]},
        {"tag": "SecretData", "value": [
            leaf("SecretDataType", "Enumeration", json!("Seed")),
            {"tag": "KeyBlock", "value": [
                leaf("KeyFormatType", "Enumeration", json!("Raw")),
                {"tag": "KeyValue", "value": [
                    leaf("KeyMaterial", "ByteString", json!(hex(b"s3cret"))),
                    {"tag": "Attributes", "value": [
                        leaf("CryptographicUsageMask", "Integer", json!(1_051_136)),
                        leaf("KeyFormatType", "Enumeration", json!("Raw")),
                        leaf("ObjectType", "Enumeration", json!("SecretData")),
                    ]},
                ]},
            ]},
        ]},
    ]});
    let uid = uid_of(&stack.ok(&secret).await?);
    let got = stack
        .ok(&by_uid(
            "Get",
            &uid,
            vec![leaf("KeyWrapType", "Enumeration", json!("AsRegistered"))],
        ))
        .await?;
    let object = field(&got, "SecretData").context("SecretData")?;
    assert_eq!(object[0]["value"], json!("Seed"));
    let material = &object[1]["value"][1]["value"][0]["value"];
    assert_eq!(material, &json!(hex(b"s3cret")));
    assert!(object.to_string().contains("_sd"), "system tag: {object}");
    let secret_type = leaf("ObjectType", "Enumeration", json!("SecretData"));
    assert_eq!(
        locate(
            stack,
            vec![secret_type, vendor("tag", &serde_json::to_string(&[&tag])?)]
        )
        .await?,
        vec![uid.clone()]
    );
    // A secret is not a key: no Encrypt with it.
    let encrypt = by_uid(
        "Encrypt",
        &uid,
        vec![leaf("Data", "ByteString", json!("00"))],
    );
    let (status, text) = stack.kmip(&encrypt).await?;
    assert_eq!((status, text.contains("not a key")), (422, true), "{text}");
    // A random seed from Create.
    let seed = json!({"tag": "Create", "value": [
        leaf("ObjectType", "Enumeration", json!("SecretData")),
        {"tag": "Attributes", "value": [leaf("ActivationDate", "DateTime", json!(now()))]},
    ]});
    let seed = uid_of(&stack.ok(&seed).await?);
    let got = stack.ok(&by_uid("Get", &seed, vec![])).await?;
    let material =
        field(&got, "SecretData").context("SecretData")?[1]["value"][1]["value"][0]["value"]
            .clone();
    assert_eq!(material.as_str().map(str::len), Some(64), "a 32-byte seed");
    let opaque = json!({"tag": "Import", "value": [
        leaf("UniqueIdentifier", "TextString", json!("")),
        leaf("ObjectType", "Enumeration", json!("OpaqueObject")),
        leaf("ReplaceExisting", "Boolean", json!(false)),
        {"tag": "Attributes", "value": [leaf("ActivationDate", "DateTime", json!(now())), vendor("tag", "[]")]},
        {"tag": "OpaqueObject", "value": [
            leaf("OpaqueDataType", "Enumeration", json!("Vendor")),
            leaf("OpaqueDataValue", "ByteString", json!(hex(b"opaque"))),
        ]},
    ]});
    let opaque = uid_of(&stack.ok(&opaque).await?);
    let got = stack
        .ok(&by_uid(
            "Get",
            &opaque,
            vec![leaf("KeyWrapType", "Enumeration", json!("AsRegistered"))],
        ))
        .await?;
    assert_eq!(
        field(&got, "OpaqueObject").map(|o| o[1]["value"].clone()),
        Some(json!(hex(b"opaque")))
    );
    for id in [&uid, &opaque] {
        let revoke = by_uid(
            "Revoke",
            id,
            vec![
                json!({"tag": "RevocationReason", "value": [
                    leaf("RevocationReasonCode", "Enumeration", json!("Unspecified")),
                    leaf("RevocationMessage", "TextString", json!("x")),
                ]}),
                leaf("Cascade", "Boolean", json!(true)),
            ],
        );
        stack.ok(&revoke).await?;
        stack
            .ok(&by_uid(
                "Destroy",
                id,
                vec![leaf("Cascade", "Boolean", json!(true))],
            ))
            .await?;
    }
    Ok(())
}

fn openssl(args: &[&str], input: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("openssl (apt-get install openssl)")?;
    child.stdin.take().context("stdin")?.write_all(input)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

fn params(mode: Option<&str>, algorithm: Option<&str>, hashing: Option<&str>) -> Value {
    let mut children = Vec::new();
    if let Some(mode) = mode {
        children.push(leaf("BlockCipherMode", "Enumeration", json!(mode)));
    }
    if let Some(algorithm) = algorithm {
        children.push(leaf(
            "CryptographicAlgorithm",
            "Enumeration",
            json!(algorithm),
        ));
    }
    if let Some(hashing) = hashing {
        children.push(leaf("HashingAlgorithm", "Enumeration", json!(hashing)));
    }
    json!({"tag": "CryptographicParameters", "value": children})
}

fn bytes_of(response: &Value, tag: &str) -> Vec<u8> {
    unhex(
        field(response, tag)
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

/// Encrypts `message` with `params` and decrypts it back (nonce and tag from the answer).
async fn aead_round_trip(stack: &Stack, uid: &str, params: Value, message: &[u8]) -> Result<()> {
    let sealed = stack
        .ok(&by_uid(
            "Encrypt",
            uid,
            vec![
                params.clone(),
                leaf("Data", "ByteString", json!(hex(message))),
            ],
        ))
        .await?;
    let part = |tag: &str| leaf(tag, "ByteString", json!(hex(&bytes_of(&sealed, tag))));
    let back = stack
        .ok(&by_uid(
            "Decrypt",
            uid,
            vec![
                params,
                part("Data"),
                part("IVCounterNonce"),
                part("AuthenticatedEncryptionTag"),
            ],
        ))
        .await?;
    assert_eq!(bytes_of(&back, "Data"), message);
    Ok(())
}

/// Encrypt modes, MAC, Hash, RNG and DeriveKey, each checked against openssl.
async fn symmetric_crypto(stack: &Stack) -> Result<()> {
    let mask = leaf(
        "CryptographicUsageMask",
        "Integer",
        json!(0x4 | 0x8 | 0x80 | 0x100 | 0x200),
    );
    let uid = uid_of(&stack.ok(&create_with(256, &[], vec![mask.clone()])).await?);
    let key = clear_key(stack, &uid).await?;
    let message = b"attack at dawn, bring the snacks".to_vec();
    // AES-CBC (PKCS#7): openssl decrypts what we encrypted.
    let cbc = stack
        .ok(&by_uid(
            "Encrypt",
            &uid,
            vec![
                params(Some("CBC"), Some("AES"), None),
                leaf("Data", "ByteString", json!(hex(&message))),
            ],
        ))
        .await?;
    let iv = bytes_of(&cbc, "IVCounterNonce");
    assert_eq!(iv.len(), 16);
    assert!(field(&cbc, "AuthenticatedEncryptionTag").is_none());
    let clear = openssl(
        &[
            "enc",
            "-d",
            "-aes-256-cbc",
            "-K",
            &hex(&key),
            "-iv",
            &hex(&iv),
        ],
        &bytes_of(&cbc, "Data"),
    )?;
    assert_eq!(clear, message);
    // And we decrypt what openssl encrypted.
    let theirs = openssl(
        &["enc", "-aes-256-cbc", "-K", &hex(&key), "-iv", &hex(&iv)],
        &message,
    )?;
    let ours = stack
        .ok(&by_uid(
            "Decrypt",
            &uid,
            vec![
                params(Some("CBC"), Some("AES"), None),
                leaf("Data", "ByteString", json!(hex(&theirs))),
                leaf("IVCounterNonce", "ByteString", json!(hex(&iv))),
            ],
        ))
        .await?;
    assert_eq!(bytes_of(&ours, "Data"), message);
    // AES key wrap with padding as an encryption mode.
    let kwp = stack
        .ok(&by_uid(
            "Encrypt",
            &uid,
            vec![
                params(Some("AESKeyWrapPadding"), Some("AES"), None),
                leaf("Data", "ByteString", json!(hex(&message))),
            ],
        ))
        .await?;
    assert_eq!(
        openssl_unwrap(&key, &bytes_of(&kwp, "Data"), true)?,
        message
    );
    // GCM-SIV and ChaCha20-Poly1305 round trips.
    aead_round_trip(
        stack,
        &uid,
        params(Some("GCMSIV"), Some("AES"), None),
        &message,
    )
    .await?;
    let chacha = json!({"tag": "Create", "value": [
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        {"tag": "Attributes", "value": [
            leaf("ActivationDate", "DateTime", json!(now())),
            leaf("CryptographicAlgorithm", "Enumeration", json!("ChaCha20")),
            leaf("CryptographicLength", "Integer", json!(256)),
            leaf("CryptographicUsageMask", "Integer", json!(12)),
        ]},
    ]});
    let chacha = uid_of(&stack.ok(&chacha).await?);
    aead_round_trip(
        stack,
        &chacha,
        params(None, Some("ChaCha20Poly1305"), None),
        &message,
    )
    .await?;
    // MAC (HMAC-SHA-256 and HMAC-SHA3-256) as openssl computes it; MACVerify both ways.
    for (kmip, openssl_name) in [("SHA256", "-sha256"), ("SHA3256", "-sha3-256")] {
        let mac = stack
            .ok(&by_uid(
                "MAC",
                &uid,
                vec![
                    params(None, None, Some(kmip)),
                    leaf("Data", "ByteString", json!(hex(b"hello"))),
                ],
            ))
            .await?;
        let theirs = openssl(
            &[
                "dgst",
                openssl_name,
                "-mac",
                "HMAC",
                "-macopt",
                &format!("hexkey:{}", hex(&key)),
                "-binary",
            ],
            b"hello",
        )?;
        assert_eq!(bytes_of(&mac, "MACData"), theirs, "{kmip}");
        for (data, verdict) in [
            (b"hello".as_slice(), "Valid"),
            (b"hellO".as_slice(), "Invalid"),
        ] {
            let verify = stack
                .ok(&by_uid(
                    "MACVerify",
                    &uid,
                    vec![
                        params(None, None, Some(kmip)),
                        leaf("Data", "ByteString", json!(hex(data))),
                        leaf("MACData", "ByteString", json!(hex(&theirs))),
                    ],
                ))
                .await?;
            assert_eq!(field(&verify, "ValidityIndicator"), Some(&json!(verdict)));
        }
    }
    // Hash, as `ckms hash` sends it.
    let hash = json!({"tag": "Hash", "value": [
        params(None, None, Some("SHA3256")),
        leaf("Data", "ByteString", json!(hex(b"hello"))),
        leaf("InitIndicator", "Boolean", json!(false)),
        leaf("FinalIndicator", "Boolean", json!(false)),
    ]});
    let digest = stack.ok(&hash).await?;
    assert_eq!(
        bytes_of(&digest, "Data"),
        openssl(&["dgst", "-sha3-256", "-binary"], b"hello")?
    );
    let random = stack
        .ok(&json!({"tag": "RNGRetrieve", "value": [leaf("DataLength", "Integer", json!(32))]}))
        .await?;
    assert_eq!(bytes_of(&random, "Data").len(), 32);
    // DeriveKey (PBKDF2) equals openssl's PBKDF2 of the base key.
    let derive = json!({"tag": "DeriveKey", "value": [
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        leaf("ObjectUniqueIdentifier", "TextString", json!(uid)),
        leaf("DerivationMethod", "Enumeration", json!("PBKDF2")),
        {"tag": "DerivationParameters", "value": [
            params(None, None, Some("SHA256")),
            leaf("Salt", "ByteString", json!("0102030405060708")),
            leaf("IterationCount", "Integer", json!(4096)),
        ]},
        {"tag": "Attributes", "value": [
            leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
            leaf("CryptographicLength", "Integer", json!(256)),
        ]},
    ]});
    let derived = uid_of(&stack.ok(&derive).await?);
    let theirs = openssl(
        &[
            "kdf",
            "-keylen",
            "32",
            "-kdfopt",
            "digest:SHA256",
            "-kdfopt",
            &format!("hexpass:{}", hex(&key)),
            "-kdfopt",
            "hexsalt:0102030405060708",
            "-kdfopt",
            "iter:4096",
            "-binary",
            "PBKDF2",
        ],
        b"",
    )?;
    assert_eq!(clear_key(stack, &derived).await?, theirs);
    Ok(())
}

async fn all(stack: &Stack) -> Result<()> {
    symmetric_crypto(stack).await?;
    secret_data_and_opaque_objects(stack).await?;
    attributes_and_rotation(stack).await?;
    nothing_is_ignored(stack).await?;
    key_wrapping(stack).await?;
    sensitive_keys(stack).await?;
    locate_filters(stack).await?;
    grants_follow_rekey_and_show_attributes(stack).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_kmip_on_sqlite() -> Result<()> {
    all(&Stack::start(None).await?).await
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_kmip_on_postgres() -> Result<()> {
    let pg = Postgres::start()?;
    all(&Stack::start(Some(&pg.url("kms"))).await?).await
}
