//! The connection to the KMS: one reqwest client on the CLI's TLS configuration, the bearer
//! token when configured, and the mapping of every failure to an error a person can act on.

use std::time::Duration;

use serde_json::Value;

use crate::config::Conf;
use crate::error::CliError;
use crate::tls;

pub struct Kms {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    database_secret: Option<String>,
    /// What to suggest when the KMS answers 401.
    auth_hint: &'static str,
}

impl Kms {
    pub fn new(conf: &Conf) -> Result<Self, CliError> {
        let http = &conf.http;
        let base = http.server_url.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") && !base.starts_with("http://") {
            return Err(CliError::Config(format!(
                "server_url {base:?} in {}: expected https://host:port",
                conf.path.display()
            )));
        }
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls::client_config(http)?)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| CliError::Config(format!("HTTP client: {e}")))?;
        let token = http.access_token.as_ref().map(|t| t.0.clone());
        let auth_hint = match (&token, &http.ssl_client_pkcs12_path, &http.oauth2_conf) {
            (Some(_), _, Some(_)) => "The access token may have expired: run `ckms login` again",
            (Some(_), _, None) => {
                "Check access_token in the configuration file (expired, or not a token this KMS accepts)"
            }
            (None, Some(_), _) => {
                "The client certificate was not accepted: check ssl_client_pkcs12_path and the KMS's client CA"
            }
            (None, None, Some(_)) => "Run `ckms login` first",
            (None, None, None) => {
                "Configure access_token, ssl_client_pkcs12_path, or [http_config.oauth2_conf] and `ckms login`"
            }
        };
        Ok(Self {
            client,
            base,
            token,
            database_secret: http.database_secret.as_ref().map(|s| s.0.clone()),
            auth_hint,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let mut request = request;
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(secret) = &self.database_secret {
            request = request.header("KmsDatabaseSecret", secret);
        }
        let response = request.send().await.map_err(|e| {
            tls::classify(&e, &self.base).unwrap_or_else(|| CliError::Unreachable {
                url: self.base.clone(),
                reason: if e.is_timeout() {
                    "timed out".into()
                } else if e.is_connect() {
                    "connection refused or host unknown".into()
                } else if self.base.starts_with("http://") {
                    // A TLS port answers plain HTTP with bytes that are not HTTP.
                    format!(
                        "{} (the KMS may only speak TLS: use https:// in server_url)",
                        tls::error_text(&e)
                    )
                } else {
                    tls::error_text(&e)
                },
            })
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: format!("reading the answer: {e}"),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| CliError::Protocol(format!("the answer is not JSON: {e}")));
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(2000)]).into_owned();
        // The proxy answers JSON {"error": ...}; the core answers plain text.
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        Err(match status.as_u16() {
            // The core says 401 "Access denied: ..." for a missing grant (the reference's table);
            // the proxy's 401 is about the credential.
            401 if message.starts_with("Access denied") => CliError::PermissionDenied(message),
            401 => CliError::Unauthenticated {
                reason: message,
                hint: self.auth_hint.to_owned(),
            },
            403 => CliError::PermissionDenied(message),
            _ if message.starts_with("Permission_Denied") => CliError::PermissionDenied(message),
            _ if message.starts_with("Object_Not_Found")
                || message.starts_with("Item_Not_Found")
                || message.starts_with("Item not found") =>
            {
                CliError::NotFound(message)
            }
            code => CliError::Server {
                status: code,
                message,
            },
        })
    }

    /// A KMIP operation in JSON TTLV.
    pub async fn kmip(&self, body: &Value) -> Result<Value, CliError> {
        self.send(
            self.client
                .post(format!("{}/kmip/2_1", self.base))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }
}
