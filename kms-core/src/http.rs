//! The core's HTTP API on its Unix socket: `POST /kmip/2_1`, the access-rights endpoints,
//! `/me`, `/version`, `/health`. The caller is whoever `X-KMS-User` names: only the proxy can
//! reach the socket, and it always sets that header.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::acl::{self, Access};
use crate::error::KmsError;
use crate::kmip::kms::Kms;
use crate::kmip::operation::Operation;
use crate::kmip::ttlv::Ttlv;
use crate::metrics::Metrics;

pub type CoreBody = Full<Bytes>;

pub struct AppState {
    pub kms: Kms,
    pub metrics: Metrics,
    pub max_body_size: usize,
    /// Bodies over [`LARGE_BODY`] held at once: each one takes a permit until its answer is
    /// built, so memory stays bounded whatever the number of connections.
    pub large_bodies: Arc<tokio::sync::Semaphore>,
}

/// A body past this size needs a permit of [`AppState::large_bodies`].
pub const LARGE_BODY: usize = 1024 * 1024;
/// How long a large request waits for a permit before a 503.
const LARGE_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessBody {
    unique_identifier: String,
    user_id: String,
    operation_types: Vec<String>,
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<CoreBody> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(value: &serde_json::Value) -> Response<CoreBody> {
    respond(StatusCode::OK, "application/json", value.to_string())
}

fn error(e: &KmsError) -> Response<CoreBody> {
    if let KmsError::Internal(detail) = e {
        tracing::error!(error = %detail, "internal error");
    }
    let content_type = if matches!(e, KmsError::Json(_)) {
        "text/plain; charset=utf-8"
    } else {
        "text/html; charset=utf-8"
    };
    respond(e.status(), content_type, e.to_string())
}

/// Reads and discards what is left of a refused body (at most 256 MiB, for 5 s), so the
/// connection stays in step and the proxy relays the 413 instead of a broken pipe. Nothing is
/// kept: memory does not grow.
async fn drain(mut body: Incoming) {
    let mut left: u64 = 256 * 1024 * 1024;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// Reads a whole body of at most `limit` bytes (413 past it, before reading when the length
/// is announced). A body past [`LARGE_BODY`] first takes a large-body permit, returned with
/// the bytes: the caller keeps it until its answer is built.
async fn read_body(
    state: &AppState,
    mut body: Incoming,
    limit: usize,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), KmsError> {
    let announced = body
        .size_hint()
        .exact()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if announced.is_some_and(|n| n > limit) {
        drain(body).await;
        return Err(KmsError::TooLarge(limit));
    }
    let permit = || async {
        tokio::time::timeout(LARGE_BODY_WAIT, state.large_bodies.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                KmsError::Unavailable("too many large requests in flight; retry later".into())
            })
    };
    let mut held = None;
    if announced.is_some_and(|n| n > LARGE_BODY) {
        held = Some(permit().await?);
    }
    // Sized once when the length is known, so the bytes are never copied to grow.
    let mut buffer = bytes::BytesMut::with_capacity(announced.unwrap_or(0).min(limit));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| KmsError::InvalidRequest(format!("cannot read the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = buffer.len() + data.len();
        if total > limit {
            drop(buffer);
            drain(body).await;
            return Err(KmsError::TooLarge(limit));
        }
        if total > LARGE_BODY && held.is_none() {
            held = Some(permit().await?);
        }
        buffer.extend_from_slice(&data);
    }
    Ok((buffer.freeze(), held))
}

/// The caller, from the proxy's header: its bytes as strict UTF-8, used exactly as they are
/// (the proxy decided the name; nothing is trimmed or re-interpreted here). Exactly one
/// non-empty header without control characters, else the request is unauthenticated.
fn caller(request: &Request<Incoming>) -> Result<String, KmsError> {
    let values: Vec<&HeaderValue> = request.headers().get_all("x-kms-user").iter().collect();
    match values.as_slice() {
        [one] => match std::str::from_utf8(one.as_bytes()) {
            Ok(user) if !user.is_empty() && !user.chars().any(char::is_control) => {
                Ok(user.to_owned())
            }
            _ => Err(KmsError::Unauthenticated),
        },
        _ => Err(KmsError::Unauthenticated),
    }
}

/// Serves one request inside a span carrying its request id (the proxy's, else a new one),
/// so that every line it logs can be joined with the proxy's lines.
pub async fn handle(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Result<Response<CoreBody>, Infallible> {
    use tracing::Instrument;
    let id = request
        .headers()
        .get(kms_common::request_id::HEADER)
        .map(HeaderValue::as_bytes)
        .filter(|v| kms_common::request_id::acceptable(v))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let span = tracing::info_span!("request", request_id = %id);
    serve(state, request).instrument(span).await
}

async fn serve(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Result<Response<CoreBody>, Infallible> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if method == Method::GET && path == "/health" {
        return Ok(health(&state).await);
    }
    let user = match caller(&request) {
        Ok(user) => user,
        Err(e) => return Ok(error(&e)),
    };
    let result = match (method, path.as_str()) {
        (Method::POST, "/kmip/2_1") => kmip(&state, &user, request).await,
        (Method::POST, "/access/grant") => access(&state, &user, request, true).await,
        (Method::POST, "/access/revoke") => access(&state, &user, request, false).await,
        (Method::GET, "/access/owned") => owned(&state, &user).await,
        (Method::GET, "/access/obtained") => obtained(&state, &user).await,
        (Method::GET, p) if p.starts_with("/access/list/") => {
            list(&state, &user, &p["/access/list/".len()..]).await
        }
        (Method::GET, "/me") => Ok(json(&serde_json::json!({ "user": user }))),
        (Method::GET, "/version") => Ok(json(&serde_json::json!(format!(
            "kms-core {}",
            env!("CARGO_PKG_VERSION")
        )))),
        _ => Ok(respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "",
        )),
    };
    Ok(result.unwrap_or_else(|e| error(&e)))
}

async fn kmip(
    state: &AppState,
    user: &str,
    request: Request<Incoming>,
) -> Result<Response<CoreBody>, KmsError> {
    let (body, _permit) = read_body(state, request.into_body(), state.max_body_size).await?;
    let ttlv = Ttlv::parse(&body).map_err(|e| KmsError::InvalidRequest(e.0))?;
    drop(body);
    let started = Instant::now();
    let outcome = state.kms.execute(user, &ttlv).await;
    let label = outcome.label;
    let result = outcome.result;
    let status = match &result {
        Ok(_) => "success",
        Err(e) => e.outcome(),
    };
    state.metrics.observe(label, status, started.elapsed());
    match result {
        Ok(done) => {
            // A batch's items are audited one by one.
            if outcome.operation.is_some() {
                tracing::info!(target: "audit", user, operation = label, uid = %done.uid, outcome = status, "kmip");
            }
            Ok(respond(
                StatusCode::OK,
                "application/json",
                done.response.to_vec(),
            ))
        }
        Err(e) => {
            tracing::info!(target: "audit", user, operation = %ttlv.tag, uid = %ttlv.requested_uid(), outcome = status, error = %e, "kmip");
            Err(e)
        }
    }
}

/// Access rights of an object are managed by whoever the access rule lets do it (its owner).
async fn may_manage(state: &AppState, user: &str, uid: &str) -> Result<(), KmsError> {
    let allowed = match state.kms.store.load(uid).await? {
        Some(o) => acl::check(&state.kms.store, user, &o, Access::ManageGrants).await?,
        None => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(KmsError::AccessDenied(format!(
            "Object with uid `{uid}` is not owned by owner `{user}`"
        )))
    }
}

async fn access(
    state: &AppState,
    user: &str,
    request: Request<Incoming>,
    grant: bool,
) -> Result<Response<CoreBody>, KmsError> {
    let (body, _) = read_body(state, request.into_body(), 64 * 1024).await?;
    let access: AccessBody =
        serde_json::from_slice(&body).map_err(|e| KmsError::Json(e.to_string()))?;
    let verb = if grant { "grant" } else { "revoke" };
    let result = change_access(state, user, &access, grant).await;
    let outcome = match &result {
        Ok(_) => "success",
        Err(e) => e.outcome(),
    };
    state.metrics.access_changed(verb, outcome);
    let operations = access.operation_types.join(",");
    match &result {
        Ok(_) => {
            tracing::info!(target: "audit", user, operation = verb, uid = %access.unique_identifier, grantee = %access.user_id, operations = %operations, outcome, "access");
        }
        Err(e) => {
            tracing::info!(target: "audit", user, operation = verb, uid = %access.unique_identifier, grantee = %access.user_id, operations = %operations, outcome, error = %e, "access");
        }
    }
    result
}

async fn change_access(
    state: &AppState,
    user: &str,
    access: &AccessBody,
    grant: bool,
) -> Result<Response<CoreBody>, KmsError> {
    let grants = Operation::grant_names();
    if let Some(bad) = access
        .operation_types
        .iter()
        .find(|op| !grants.contains(&op.as_str()))
    {
        let expected: Vec<String> = grants.iter().map(|o| format!("`{o}`")).collect();
        return Err(KmsError::Json(format!(
            "unknown variant `{bad}`, expected one of {}",
            expected.join(", ")
        )));
    }
    if access.user_id == user {
        return Err(KmsError::AccessDenied(
            "You can't grant yourself, you have already all rights on your own objects".into(),
        ));
    }
    may_manage(state, user, &access.unique_identifier).await?;
    let done = if grant {
        state
            .kms
            .store
            .grant(
                &access.unique_identifier,
                &access.user_id,
                &access.operation_types,
            )
            .await?;
        "added"
    } else {
        state
            .kms
            .store
            .revoke_grants(
                &access.unique_identifier,
                &access.user_id,
                &access.operation_types,
            )
            .await?;
        "deleted"
    };
    Ok(json(
        &serde_json::json!({ "success": format!("Access for {} successfully {done}", access.user_id) }),
    ))
}

async fn list(state: &AppState, user: &str, uid: &str) -> Result<Response<CoreBody>, KmsError> {
    may_manage(state, user, uid).await?;
    let grants = state.kms.store.grants_on(uid).await?;
    let body: Vec<serde_json::Value> = grants
        .into_iter()
        .map(|g| serde_json::json!({ "user_id": g.user_id, "operations": g.operations }))
        .collect();
    Ok(json(&serde_json::Value::Array(body)))
}

async fn owned(state: &AppState, user: &str) -> Result<Response<CoreBody>, KmsError> {
    let body: Vec<serde_json::Value> = state
        .kms
        .store
        .owned(user)
        .await?
        .into_iter()
        .map(|(uid, st)| serde_json::json!({ "object_id": uid, "state": st, "attributes": {} }))
        .collect();
    Ok(json(&serde_json::Value::Array(body)))
}

async fn obtained(state: &AppState, user: &str) -> Result<Response<CoreBody>, KmsError> {
    let body: Vec<serde_json::Value> = state
        .kms
        .store
        .obtained(user)
        .await?
        .into_iter()
        .map(|(uid, owner, st, ops)| {
            serde_json::json!({ "object_id": uid, "owner_id": owner, "state": st, "operations": ops })
        })
        .collect();
    Ok(json(&serde_json::Value::Array(body)))
}

async fn health(state: &AppState) -> Response<CoreBody> {
    let started = Instant::now();
    let up = state.kms.store.ping().await;
    let status = if up { "UP" } else { "DOWN" };
    let body = serde_json::json!({
        "status": status,
        "latency_ms": started.elapsed().as_millis() as u64,
        "dependencies": { "database": { "name": state.kms.store.backend.name(), "status": status } },
    });
    let mut r = json(&body);
    if !up {
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    r
}
