//! Errors a person can act on: each says what went wrong and, where there is one, what to do.

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the KMS at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the server certificate of {url} is not trusted ({reason}). Trust its CA in the system store, pin it with verified_cert = \"<PEM>\" in [http_config], or, for development only, set accept_invalid_certs = true"
    )]
    Untrusted { url: String, reason: String },
    #[error(
        "the server certificate of {url} is not the one pinned by verified_cert: refusing to talk to it (update verified_cert if the server's certificate was renewed)"
    )]
    PinMismatch { url: String },
    #[error("authentication refused by the KMS (401): {reason}. {hint}")]
    Unauthenticated { reason: String, hint: String },
    #[error(
        "permission denied: {0}. The object's owner can grant it: ckms access-rights grant <user> -i <object id> <operation>"
    )]
    PermissionDenied(String),
    #[error("unknown key: {0}")]
    NotFound(String),
    #[error("the KMS refused the request ({status}): {message}")]
    Server { status: u16, message: String },
    #[error("unexpected answer from the KMS: {0}")]
    Protocol(String),
    #[error("{0}")]
    Io(String),
    #[error("login: {0}")]
    Login(String),
}

impl CliError {
    pub fn io(what: &str, e: impl std::fmt::Display) -> Self {
        Self::Io(format!("{what}: {e}"))
    }
}
