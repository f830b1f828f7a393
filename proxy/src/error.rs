//! The request-path error type and the only place where an error becomes an HTTP status.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::body::ProxyBody;

/// Everything that can stop a request inside the proxy. Client faults map to 4xx,
/// upstream faults to 502/504. Messages are short and never carry internal detail.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request headers too large")]
    HeadersTooLarge,
    #[error("request body too large")]
    BodyTooLarge,
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("malformed request")]
    BadRequest,
    #[error("upstream unavailable")]
    UpstreamConnect(UpstreamErrorKind),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream error")]
    UpstreamProtocol,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("the upstream identity token could not be made")]
    Mint,
}

/// Bounded label values for the `upstream_errors_total` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    ConnectTimeout,
    Tls,
}

impl ProxyError {
    /// The one mapping from error to status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::UpstreamConnect(_) | Self::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Mint => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Label for `upstream_errors_total`, when this error came from the upstream.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            Self::UpstreamConnect(UpstreamErrorKind::Connect) => Some("connect"),
            Self::UpstreamConnect(UpstreamErrorKind::ConnectTimeout) => Some("connect_timeout"),
            Self::UpstreamConnect(UpstreamErrorKind::Tls) => Some("tls"),
            Self::UpstreamTimeout => Some("timeout"),
            Self::UpstreamProtocol => Some("protocol"),
            _ => None,
        }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let mut response = json_error(self.status(), &self.to_string());
        if matches!(self, Self::Unauthenticated(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A short JSON error: `{"error": "...", "status": N}`.
pub fn json_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": message, "status": status.as_u16() }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why the proxy could not start. Every variant happens before traffic is served.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("JWT: {0}")]
    Jwt(String),
    #[error("{0}")]
    MintKey(#[from] crate::mint::KeyError),
}

impl StartError {
    /// 2 for what the operator must fix (configuration, certificates, keys), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Tls(_) | Self::Jwt(_) | Self::MintKey(_) => 2,
            Self::Bind { .. } | Self::Metrics(_) => 1,
        }
    }
}

/// A request body's fault is the client's: the status it gets.
impl From<crate::body::BodyFault> for ProxyError {
    fn from(fault: crate::body::BodyFault) -> Self {
        use crate::body::BodyFault;
        match fault {
            BodyFault::TooLarge => Self::BodyTooLarge,
            BodyFault::Timeout => Self::BodyTimeout,
            BodyFault::Malformed => Self::BadRequest,
        }
    }
}
