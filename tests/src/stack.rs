//! The real stack for end-to-end tests: kms-core (SQLite or PostgreSQL, dev master key) on a
//! Unix socket, and kms-proxy over TLS in front of it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::{Proxy, ProxyCommand, TestPki, Validity, client, tls_args};

pub struct Stack {
    pub pki: TestPki,
    pub core: Proxy,
    pub proxy: Proxy,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    client: reqwest::Client,
}

/// kms-core arguments for a data directory and an optional database URL.
pub fn core_args(data_dir: &std::path::Path, database_url: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--socket".into(),
        data_dir.join("core.sock").display().to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--dev".into(),
        "--admin-address".into(),
        "127.0.0.1:0".into(),
        // Rotation policies in tests use intervals of seconds.
        "--rotation-check-interval".into(),
        "1".into(),
    ];
    if let Some(url) = database_url {
        args.extend(["--database-url".into(), url.into()]);
    }
    args
}

impl Stack {
    pub async fn start(database_url: Option<&str>) -> Result<Self> {
        let pki = TestPki::new("stack")?;
        let data_dir = pki.path("data");
        let core = ProxyCommand::core()
            .args(core_args(&data_dir, database_url))
            .spawn_as_is()?;
        let socket = data_dir.join("core.sock");
        let cert = pki.server("server", Validity::Current)?;
        let proxy = ProxyCommand::new()
            .args(tls_args(&cert, &format!("unix:{}", socket.display())))
            .spawn()?;
        let client = client::https(&pki.ca_pem)?;
        Ok(Self {
            pki,
            core,
            proxy,
            socket,
            data_dir,
            database_url: database_url.map(str::to_owned),
            client,
        })
    }

    /// Restarts kms-core on the same data (after it was killed or stopped).
    pub fn restart_core(&mut self) -> Result<()> {
        self.core = ProxyCommand::core()
            .args(core_args(&self.data_dir, self.database_url.as_deref()))
            .spawn_as_is()?;
        Ok(())
    }

    /// Another proxy on the same core that forwards every request as `user`.
    pub fn proxy_as(&self, user: &str) -> Result<Proxy> {
        let cert = self
            .pki
            .server(&format!("server-{user}"), Validity::Current)?;
        ProxyCommand::new()
            .args(tls_args(&cert, &format!("unix:{}", self.socket.display())))
            .args(["--default-username", user])
            .spawn()
    }

    /// POSTs a TTLV request through `proxy`: status and body text.
    pub async fn kmip_via(&self, proxy: &Proxy, body: &Value) -> Result<(u16, String)> {
        let r = self
            .client
            .post(proxy.url("/kmip/2_1"))
            .json(body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    pub async fn kmip(&self, body: &Value) -> Result<(u16, String)> {
        self.kmip_via(&self.proxy, body).await
    }

    /// A request that must succeed; returns the parsed TTLV response.
    pub async fn ok(&self, body: &Value) -> Result<Value> {
        let (status, text) = self.kmip(body).await?;
        anyhow::ensure!(status == 200, "{status}: {text}");
        serde_json::from_str(&text).context("response is not JSON")
    }

    /// Creates an active 256-bit key and returns its uid and its API token (base64 of the key).
    pub async fn api_token(&self) -> Result<(String, String)> {
        use base64::Engine;
        let created = self
            .ok(&create_request(
                256,
                &["api-token"],
                Some("2026-01-01T00:00:00Z"),
            ))
            .await?;
        let uid = field(&created, "UniqueIdentifier")
            .and_then(Value::as_str)
            .context("no uid in the Create response")?
            .to_owned();
        let got = self.ok(&by_uid("Get", &uid, vec![])).await?;
        let hex = field(&got, "SymmetricKey").context("no key in the Get response")?[0]["value"][1]
            ["value"][0]["value"]
            .as_str()
            .context("no key material")?
            .to_owned();
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()?;
        Ok((uid, base64::engine::general_purpose::STANDARD.encode(bytes)))
    }

    pub async fn get_json(&self, proxy: &Proxy, path: &str) -> Result<(u16, Value)> {
        let r = self.client.get(proxy.url(path)).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await?))
    }

    pub async fn post_json(
        &self,
        proxy: &Proxy,
        path: &str,
        body: &Value,
    ) -> Result<(u16, String)> {
        let r = self.client.post(proxy.url(path)).json(body).send().await?;
        Ok((r.status().as_u16(), r.text().await?))
    }
}

/// The value of the first child with `tag` in a TTLV structure.
pub fn field<'a>(node: &'a Value, tag: &str) -> Option<&'a Value> {
    node["value"]
        .as_array()?
        .iter()
        .find(|c| c["tag"] == tag)
        .map(|c| &c["value"])
}

/// A TTLV leaf.
pub fn leaf(tag: &str, kind: &str, value: Value) -> Value {
    json!({"tag": tag, "type": kind, "value": value})
}

/// `Create` of an AES key with tags (and an activation date now, as ckms sends).
pub fn create_request(bits: i32, tags: &[&str], activation: Option<&str>) -> Value {
    let tag_list = serde_json::to_string(tags).unwrap_or_default();
    let mut attributes = vec![
        leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
        leaf("CryptographicLength", "Integer", json!(bits)),
        leaf("CryptographicUsageMask", "Integer", json!(2108)),
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        json!({"tag": "Attribute", "value": [
            leaf("VendorIdentification", "TextString", json!("cosmian")),
            leaf("AttributeName", "TextString", json!("tag")),
            leaf("AttributeValue", "TextString", json!(tag_list)),
        ]}),
    ];
    if let Some(date) = activation {
        attributes.insert(0, leaf("ActivationDate", "DateTime", json!(date)));
    }
    json!({"tag": "Create", "value": [
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        {"tag": "Attributes", "value": attributes},
    ]})
}

/// `{"tag": op, "value": [UniqueIdentifier, extra...]}`.
pub fn by_uid(op: &str, uid: &str, extra: Vec<Value>) -> Value {
    let mut children = vec![leaf("UniqueIdentifier", "TextString", json!(uid))];
    children.extend(extra);
    json!({"tag": op, "value": children})
}

/// Raw HTTP/1.1 on the core's Unix socket (to test it without the proxy): status and body.
pub async fn unix_http(socket: &std::path::Path, request: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
