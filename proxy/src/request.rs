//! One request on a client connection: its request id, the authentication decision, the
//! forward upstream, the metrics and the access line (the audit record).

use std::cell::RefCell;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::access::{AccessLine, Decision};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::identity::{AuthMethod, Identity};
use crate::metrics::{Metrics, method_label, status_class};
use crate::server::{Handler, InFlight};

const REQUEST_ID: http::HeaderName = http::HeaderName::from_static(kms_common::request_id::HEADER);

/// The client's `X-Request-Id` when acceptable, else 128 random bits in hex.
fn request_id(headers: &http::HeaderMap) -> http::HeaderValue {
    if let Some(id) = headers.get(&REQUEST_ID)
        && kms_common::request_id::acceptable(id.as_bytes())
    {
        return id.clone();
    }
    http::HeaderValue::try_from(kms_common::hex::encode_lower(&random_bits()))
        .unwrap_or(http::HeaderValue::from_static("-"))
}

thread_local! {
    /// Random bytes for request ids, drawn from the system's generator 4 KiB at a time: one
    /// call per 256 ids instead of one each (a call costs far more than its 16 bytes).
    static RANDOM: RefCell<(Box<[u8; 4096]>, usize)> = RefCell::new((Box::new([0; 4096]), 4096));
}

fn random_bits() -> [u8; 16] {
    const N: usize = 16;
    let mut bits = [0u8; N];
    RANDOM.with_borrow_mut(|(pool, used)| {
        if *used + N > pool.len() {
            if aws_lc_rs::rand::fill(&mut pool[..]).is_err() {
                tracing::warn!("no randomness for request ids");
            }
            *used = 0;
        }
        bits.copy_from_slice(&pool[*used..*used + N]);
        *used += N;
    });
    bits
}

/// Serves one request: decide the identity, forward, count, log; the request id goes
/// upstream, back to the client, and on every line logged for it.
pub(crate) async fn handle(
    connection: &Handler,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let id = request_id(request.headers());
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let mut response = handle_identified(connection, request, id.to_str().unwrap_or("-")).await;
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

async fn handle_identified(
    connection: &Handler,
    request: Request<Incoming>,
    request_id: &str,
) -> Response<ProxyBody> {
    let Handler {
        shared,
        activity,
        peer,
        proto,
        certificate,
        lane,
    } = connection;
    let proto = *proto;
    let started = Instant::now();
    let guard = InFlight::new(shared.metrics.in_flight.clone(), activity.clone());
    let method = request.method().clone();
    // A cheap clone (shared bytes) for the access line, once the request has moved on.
    let uri = request.uri().clone();
    // The upstream identity keys: public, answered here, never forwarded.
    if let Some(minter) = shared.forwarder.minter()
        && let Some(response) = crate::jwks::answer(minter, &request)
    {
        AccessLine {
            method: method.as_str(),
            path: uri.path(),
            status: response.status().as_u16(),
            duration: started.elapsed(),
            decision: None,
            peer: peer.ip_text(),
            request_id,
            outcome: "served",
        }
        .log();
        return response;
    }
    // A refusal carries the method the request tried (for the access line and the metrics).
    let decision = match shared
        .authenticator
        .authenticate(certificate, request.headers())
        .await
    {
        Ok(identity) => Ok(identity),
        Err(error) => {
            let attempted = shared
                .authenticator
                .attempted(certificate, request.headers());
            Err((error, attempted))
        }
    };
    let reason = count_decision(&shared.metrics, &decision);
    let (response, outcome, identity) = match decision {
        Ok(identity) => match shared
            .forwarder
            .forward(request, &identity, peer, proto, guard, lane.as_deref())
            .await
        {
            Ok(response) => (response, "forwarded", identity),
            Err(error) => {
                let outcome = match error.upstream_kind() {
                    Some(kind) => {
                        shared
                            .metrics
                            .upstream_errors
                            .with_label_values(&[kind])
                            .inc();
                        "upstream_error"
                    }
                    None => "rejected",
                };
                (error.into_response(), outcome, identity)
            }
        },
        Err((error, attempted)) => {
            let identity = Identity::new(String::new(), attempted);
            (error.into_response(), "unauthenticated", identity)
        }
    };
    let elapsed = started.elapsed();
    let status = response.status();
    shared
        .metrics
        .requests
        .with_label_values(&[
            method_label(&method),
            status_class(status),
            identity.method.as_str(),
            outcome,
        ])
        .inc();
    shared
        .metrics
        .request_duration
        .with_label_values(&[outcome])
        .observe(elapsed.as_secs_f64());
    AccessLine {
        method: method.as_str(),
        path: uri.path(),
        status: status.as_u16(),
        duration: elapsed,
        decision: Some(Decision {
            user: &identity.user,
            auth_method: identity.method.as_str(),
            reason,
        }),
        peer: peer.ip_text(),
        request_id,
        outcome,
    }
    .log();
    response
}

/// One metric sample per authentication decision, and the reason the request's access line
/// carries (that line is the audit record: user, method, reason, outcome; never the credential).
fn count_decision(
    metrics: &Metrics,
    decision: &Result<Identity, (ProxyError, AuthMethod)>,
) -> &'static str {
    let (method, outcome, reason) = match decision {
        // No method configured: nothing was verified, the default user stands in.
        Ok(identity) if identity.method == AuthMethod::None => {
            (identity.method, "success", "no authentication configured")
        }
        Ok(identity) => (identity.method, "success", "verified"),
        Err((error, attempted)) => {
            let reason: &'static str = match error {
                ProxyError::Unauthenticated(reason) => reason,
                _ => "error",
            };
            (*attempted, "failure", reason)
        }
    };
    metrics
        .auth_decisions
        .with_label_values(&[method.as_str(), outcome, reason])
        .inc();
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_request_ids_are_128_random_bits_in_hex_never_repeated() {
        let headers = http::HeaderMap::new();
        // Past several refills of the thread's pool of random bytes.
        let ids: std::collections::HashSet<_> = (0..1000)
            .map(|_| request_id(&headers).to_str().expect("ascii").to_owned())
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert!(kms_common::request_id::acceptable(id.as_bytes()));
        }
        // Not a counter: the bits differ everywhere, not only at the end.
        let firsts: std::collections::HashSet<_> = ids.iter().map(|id| &id[..8]).collect();
        assert!(firsts.len() > 990, "{}", firsts.len());
        let mut given = http::HeaderMap::new();
        given.insert(REQUEST_ID, http::HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&given), "abc-123");
    }
}
