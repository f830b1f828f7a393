//! `ckms login`: OAuth2 authorization code flow with PKCE (S256) and a random state. The CLI
//! prints the authorization URL (and opens a browser when there is a display), receives the
//! redirect on `http://localhost:17899/authorization`, checks the state, exchanges the code
//! with the verifier (and the client secret when configured) and stores the token in
//! `access_token`: the ID token when the provider returns one (its audience is the client id,
//! as the reference's server examples expect), else the access token. `ckms logout` removes it.

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Outcome;
use crate::config::{Conf, Secret};
use crate::error::CliError;

pub const CALLBACK_PORT: u16 = 17899;
pub const REDIRECT_URI: &str = "http://localhost:17899/authorization";
/// How long the CLI waits for the browser to come back.
const WAIT: Duration = Duration::from_secs(300);

fn random_text(bytes: usize) -> Result<String, CliError> {
    let mut out = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CliError::Login("no randomness available".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(out))
}

/// `application/x-www-form-urlencoded` / query-string encoding.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Identity-provider URLs must be https, except on loopback (development, tests).
fn check_idp_url(name: &str, url: &str) -> Result<(), CliError> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        return if rest.is_empty() {
            Err(CliError::Config(format!(
                "oauth2_conf.{name}: no host in {url:?}"
            )))
        } else {
            Ok(())
        };
    } else if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else {
        return Err(CliError::Config(format!(
            "oauth2_conf.{name}: {url:?} is not an https URL"
        )));
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(CliError::Config(format!(
            "oauth2_conf.{name}: {url:?} must be https (plain http only on loopback)"
        )))
    }
}

/// Reads one HTTP request head (at most 8 KiB, 10 s) and returns its target.
async fn request_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => Some(target.to_owned()),
        _ => None,
    }
}

async fn respond(stream: &mut tokio::net::TcpStream, status: &str, message: &str) {
    let body = format!(
        "<!doctype html><html><body><p>{}</p></body></html>",
        message.replace('<', "&lt;")
    );
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Waits for the redirect carrying the authorization code; checks the state.
async fn wait_for_code(listener: &TcpListener, state: &str) -> Result<String, CliError> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|e| CliError::Login(format!("waiting for the redirect: {e}")))?;
        let Some(target) = request_target(&mut stream).await else {
            respond(&mut stream, "400 Bad Request", "Bad request.").await;
            continue;
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if path != "/authorization" {
            respond(&mut stream, "404 Not Found", "Not found.").await;
            continue;
        }
        let params: HashMap<String, String> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect();
        if let Some(error) = params.get("error") {
            let description = params.get("error_description").cloned().unwrap_or_default();
            respond(
                &mut stream,
                "400 Bad Request",
                "Login failed; see the terminal.",
            )
            .await;
            return Err(CliError::Login(format!(
                "the identity provider answered {error}: {description}"
            )));
        }
        if params.get("state").map(String::as_str) != Some(state) {
            respond(
                &mut stream,
                "400 Bad Request",
                "Login refused: the state does not match.",
            )
            .await;
            return Err(CliError::Login(
                "the redirect's state does not match this login (a stale or forged redirect): run `ckms login` again".into(),
            ));
        }
        let Some(code) = params.get("code") else {
            respond(&mut stream, "400 Bad Request", "No authorization code.").await;
            return Err(CliError::Login(
                "the redirect carries no authorization code".into(),
            ));
        };
        respond(
            &mut stream,
            "200 OK",
            "You are logged in to the KMS. You can close this window.",
        )
        .await;
        return Ok(code.clone());
    }
}

pub async fn login(conf: &mut Conf) -> Result<Outcome, CliError> {
    let oauth = conf.http.oauth2_conf.clone().ok_or_else(|| {
        CliError::Config(format!(
            "{}: add [http_config.oauth2_conf] with client_id, authorize_url, token_url and scopes",
            conf.path.display()
        ))
    })?;
    check_idp_url("authorize_url", &oauth.authorize_url)?;
    check_idp_url("token_url", &oauth.token_url)?;
    let listener = TcpListener::bind(("127.0.0.1", CALLBACK_PORT))
        .await
        .map_err(|e| {
            CliError::Login(format!(
                "cannot listen on 127.0.0.1:{CALLBACK_PORT} for the redirect ({e}): is another `ckms login` running? Stop it, or free the port"
            ))
        })?;
    let verifier = random_text(32)?;
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random_text(16)?;
    let scope = oauth.scopes.join(" ");
    let query = form(&[
        ("response_type", "code"),
        ("client_id", &oauth.client_id),
        ("redirect_uri", REDIRECT_URI),
        ("scope", &scope),
        ("state", &state),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let separator = if oauth.authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{separator}{query}", oauth.authorize_url);
    eprintln!("Open this URL in a browser to log in:\n{url}");
    if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some() {
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let code = tokio::time::timeout(WAIT, wait_for_code(&listener, &state))
        .await
        .map_err(|_| {
            CliError::Login(format!(
                "no redirect within {} s: run `ckms login` again",
                WAIT.as_secs()
            ))
        })??;

    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier.as_str()),
        ("client_id", oauth.client_id.as_str()),
    ];
    if let Some(secret) = &oauth.client_secret {
        pairs.push(("client_secret", secret.0.as_str()));
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| CliError::Login(format!("HTTP client: {e}")))?;
    let response = client
        .post(&oauth.token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form(&pairs))
        .send()
        .await
        .map_err(|e| {
            CliError::Login(format!(
                "cannot reach the token endpoint {}: {e}",
                oauth.token_url
            ))
        })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(CliError::Login(format!(
            "the token endpoint refused the code ({status}): {} {}",
            body["error"].as_str().unwrap_or(""),
            body["error_description"].as_str().unwrap_or("")
        )));
    }
    let token = body["id_token"]
        .as_str()
        .or_else(|| body["access_token"].as_str())
        .ok_or_else(|| CliError::Login("the token endpoint returned no token".into()))?;
    conf.http.access_token = Some(Secret(token.to_owned()));
    conf.save()?;
    Ok(Outcome::new(
        format!("Logged in; the token is saved in {}", conf.path.display()),
        json!({"logged_in": true, "configuration": conf.path}),
    ))
}

pub fn logout(conf: &mut Conf) -> Result<Outcome, CliError> {
    let had = conf.http.access_token.take().is_some();
    conf.save()?;
    Ok(Outcome::new(
        if had {
            format!(
                "Logged out; the token was removed from {}",
                conf.path.display()
            )
        } else {
            "No token was stored".to_owned()
        },
        json!({"logged_out": had}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_round_trips() {
        let text = "a b&c=d/é";
        assert_eq!(decode(&encode(text)), text);
        assert_eq!(decode("a+b%2"), "a b%2");
        assert!(check_idp_url("token_url", "http://127.0.0.1:9/token").is_ok());
        assert!(check_idp_url("token_url", "http://idp.example.com/token").is_err());
        assert!(check_idp_url("token_url", "https://idp.example.com/token").is_ok());
    }
}
