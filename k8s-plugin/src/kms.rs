//! The plugin's calls to the KMS: KMIP JSON over HTTPS to kms-proxy with the configured
//! credential, each bounded by the configured timeout, and failures sorted into what the
//! apiserver should do (retry later, fix the configuration, or give up on bad input).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::config::{Config, Credential};

/// Binds every ciphertext to this plugin: the same key used elsewhere never yields or accepts
/// a plugin ciphertext.
pub const AAD: &[u8] = b"kms-k8s-plugin/v2";
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// Why a call to the KMS failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsFailure {
    /// Not reachable, timed out, or failing (5xx): retry later.
    #[error("KMS unavailable: {0}")]
    Unavailable(String),
    /// The KMS does not accept the plugin's credential (401).
    #[error("KMS refused the plugin's credential: {0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed (403, or no grant on the key).
    #[error("KMS denied: {0}")]
    Denied(String),
    /// The KMS refused the request itself (unknown key, key not usable, data that does not
    /// decrypt).
    #[error("KMS refused: {0}")]
    Refused(String),
}

/// A bearer token read from a file, read again when the file changes (a projected
/// ServiceAccount token is replaced before it expires).
struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, u64, Zeroizing<String>)>>,
}

impl TokenFile {
    fn token(&self) -> Result<Zeroizing<String>, KmsFailure> {
        let unreadable = |e: std::io::Error| {
            KmsFailure::Unauthenticated(format!("cannot read {}: {e}", self.path.display()))
        };
        let meta = std::fs::metadata(&self.path).map_err(unreadable)?;
        let stamp = (meta.modified().map_err(unreadable)?, meta.len());
        let mut cached = self
            .cached
            .lock()
            .map_err(|_| KmsFailure::Unavailable("token cache poisoned".into()))?;
        if let Some((modified, len, token)) = cached.as_ref() {
            if (*modified, *len) == stamp {
                return Ok(token.clone());
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(&self.path).map_err(unreadable)?);
        let token = Zeroizing::new(text.trim().to_owned());
        if token.is_empty() {
            return Err(KmsFailure::Unauthenticated(format!(
                "{} is empty",
                self.path.display()
            )));
        }
        *cached = Some((stamp.0, stamp.1, token.clone()));
        Ok(token)
    }
}

pub struct Kms {
    http: reqwest::Client,
    url: String,
    bearer: Option<TokenFile>,
}

fn tls(config: &Config) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &config.kms_ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("kms_ca_file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("kms_ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("kms_ca_file {}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut tls = match &config.credential {
        Credential::ClientCertificate { cert, key } => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("client_cert_file {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("client_key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

impl Kms {
    pub fn new(config: &Config) -> Result<Self, String> {
        // HTTP/1.1 keep-alive connections, one per concurrent call: measured faster than one
        // multiplexed HTTP/2 connection through kms-proxy (tests/bench/k8s-plugin.sh).
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls(config)?)
            .http1_only()
            .timeout(config.kms_timeout)
            .connect_timeout(config.kms_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let bearer = match &config.credential {
            Credential::ApiToken(path) | Credential::JwtFile(path) => Some(TokenFile {
                path: path.clone(),
                cached: Mutex::new(None),
            }),
            Credential::ClientCertificate { .. } => None,
        };
        if let Some(file) = &bearer {
            file.token().map_err(|e| e.to_string())?;
        }
        Ok(Self {
            http,
            url: format!("{}/kmip/2_1", config.kms_url),
            bearer,
        })
    }

    /// One KMIP request; the answer's JSON.
    async fn kmip(&self, body: &Value) -> Result<Value, KmsFailure> {
        let mut request = self.http.post(&self.url).json(body);
        if let Some(file) = &self.bearer {
            request = request.bearer_auth(file.token()?.as_str());
        }
        let response = request.send().await.map_err(|e| {
            let mut cause = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                cause = format!("{cause}: {s}");
                source = s.source();
            }
            KmsFailure::Unavailable(cause)
        })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| KmsFailure::Unavailable(format!("reading the answer: {e}")))?;
        let short: String = text.chars().take(300).collect();
        // kms-core answers a missing grant with 401 and "Access denied" (as the reference
        // does); the proxy's own 401 is about the credential.
        let denied = short.starts_with("Access denied") || short.starts_with("Permission_Denied");
        match status {
            200 => serde_json::from_str(&text)
                .map_err(|e| KmsFailure::Unavailable(format!("the answer is not JSON: {e}"))),
            _ if denied => Err(KmsFailure::Denied(short)),
            401 => Err(KmsFailure::Unauthenticated(short)),
            403 => Err(KmsFailure::Denied(short)),
            500..=599 => Err(KmsFailure::Unavailable(format!("{status}: {short}"))),
            _ => Err(KmsFailure::Refused(format!("{status}: {short}"))),
        }
    }

    /// AES-256-GCM by the KMS key `identifier` (a uid, or tags as a JSON array): the uid of
    /// the key used, and `nonce ‖ ciphertext ‖ tag`.
    pub async fn encrypt(
        &self,
        identifier: &str,
        plaintext: &[u8],
    ) -> Result<(String, Vec<u8>), KmsFailure> {
        let request = json!({"tag": "Encrypt", "value": [
            text("UniqueIdentifier", identifier),
            params(),
            bytes("Data", plaintext),
            bytes("AuthenticatedEncryptionAdditionalData", AAD),
        ]});
        let answer = self.kmip(&request).await?;
        let uid = field(&answer, "UniqueIdentifier")
            .and_then(Value::as_str)
            .ok_or_else(|| KmsFailure::Unavailable("no UniqueIdentifier in the answer".into()))?
            .to_owned();
        let part = |tag: &str| {
            field(&answer, tag)
                .and_then(Value::as_str)
                .and_then(kms_common::hex::decode)
                .ok_or_else(|| KmsFailure::Unavailable(format!("no {tag} in the answer")))
        };
        let sealed = [
            part("IVCounterNonce")?,
            part("Data")?,
            part("AuthenticatedEncryptionTag")?,
        ]
        .concat();
        Ok((uid, sealed))
    }

    /// The plaintext of `sealed` (`nonce ‖ ciphertext ‖ tag`) under the key `uid`.
    pub async fn decrypt(
        &self,
        uid: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsFailure> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(KmsFailure::Refused("the ciphertext is too short".into()));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (data, tag) = rest.split_at(rest.len() - TAG_LEN);
        let request = json!({"tag": "Decrypt", "value": [
            text("UniqueIdentifier", uid),
            params(),
            bytes("Data", data),
            bytes("IVCounterNonce", nonce),
            bytes("AuthenticatedEncryptionAdditionalData", AAD),
            bytes("AuthenticatedEncryptionTag", tag),
        ]});
        let answer = self.kmip(&request).await?;
        field(&answer, "Data")
            .and_then(Value::as_str)
            .and_then(kms_common::hex::decode)
            .map(Zeroizing::new)
            .ok_or_else(|| KmsFailure::Unavailable("no Data in the answer".into()))
    }

    /// The key that replaced `uid` (its `ReplacementObjectLink`), if any.
    pub async fn replacement(&self, uid: &str) -> Result<Option<String>, KmsFailure> {
        let request = json!({"tag": "GetAttributes", "value": [text("UniqueIdentifier", uid)]});
        let answer = self.kmip(&request).await?;
        let attributes = field(&answer, "Attributes").and_then(Value::as_array);
        Ok(attributes
            .into_iter()
            .flatten()
            .filter(|a| a["tag"] == "Link")
            .filter_map(|link| link["value"].as_array())
            .find(|parts| {
                parts
                    .iter()
                    .any(|p| p["tag"] == "LinkType" && p["value"] == "ReplacementObjectLink")
            })
            .and_then(|parts| {
                parts
                    .iter()
                    .find(|p| p["tag"] == "LinkedObjectIdentifier")
                    .and_then(|p| p["value"].as_str())
                    .map(str::to_owned)
            }))
    }
}

fn text(tag: &str, value: &str) -> Value {
    json!({"tag": tag, "type": "TextString", "value": value})
}

fn bytes(tag: &str, value: &[u8]) -> Value {
    json!({"tag": tag, "type": "ByteString", "value": kms_common::hex::encode_upper(value)})
}

fn params() -> Value {
    json!({"tag": "CryptographicParameters", "value": [
        {"tag": "BlockCipherMode", "type": "Enumeration", "value": "GCM"},
        {"tag": "CryptographicAlgorithm", "type": "Enumeration", "value": "AES"},
    ]})
}

fn field<'a>(node: &'a Value, tag: &str) -> Option<&'a Value> {
    node["value"]
        .as_array()?
        .iter()
        .find(|c| c["tag"] == tag)
        .map(|c| &c["value"])
}
