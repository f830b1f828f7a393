//! The core's error type and its one mapping to an HTTP status and body. Bodies follow the
//! reference server: plain text `<ResultReason>: <message>` (section 6).

use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("Object_Not_Found: object not found for identifier {0}")]
    ObjectNotFound(String),
    #[error("Item_Not_Found: {0}")]
    ItemNotFound(String),
    #[error("Item not found: {0}")]
    KeyNotFound(String),
    #[error("Invalid Request: {0}")]
    InvalidRequest(String),
    #[error("Codec_Error: {0}")]
    Codec(String),
    #[error("Wrong_Key_Lifecycle_State: {0}")]
    WrongState(String),
    #[error("Object_Destroyed: DENIED")]
    ObjectDestroyed,
    #[error("Permission_Denied: {0}")]
    PermissionDenied(String),
    #[error("Cryptographic_Failure: {0}")]
    Crypto(String),
    #[error("Database Error: {0}")]
    Database(String),
    #[error("Route not supported: Operation: {0}")]
    UnknownOperation(String),
    #[error("This KMIP server does not yet support place holder id")]
    PlaceholderId,
    #[error("Access denied: {0}")]
    AccessDenied(String),
    /// Authenticated and allowed to use the key, but not in the way asked (403).
    #[error("Permission_Denied: {0}")]
    Forbidden(String),
    #[error("No authentication provided.")]
    Unauthenticated,
    #[error("Json deserialize error: {0}")]
    Json(String),
    #[error("Request body too large: at most {0} bytes (kms-core --max-body-size)")]
    TooLarge(usize),
    #[error("Internal server error")]
    Internal(String),
    #[error("Service_Unavailable: {0}")]
    Unavailable(String),
    /// A valid request for something this server does not implement (a field, a value, a
    /// filter): refused by name, never ignored.
    #[error("Feature_Not_Supported: {0}")]
    NotSupported(String),
    /// A client tried to change an attribute only the server sets.
    #[error("Attribute_Read_Only: {0}")]
    ReadOnly(String),
    /// The object is `Sensitive`: its material is never returned.
    #[error("Sensitive: DENIED")]
    Sensitive,
}

impl KmsError {
    /// The one error -> HTTP status map (every variant named: no catch-all). KMIP failures
    /// are 422 as on the reference server.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownOperation(_) => StatusCode::NOT_FOUND,
            Self::AccessDenied(_) | Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Json(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::ObjectNotFound(_)
            | Self::ItemNotFound(_)
            | Self::KeyNotFound(_)
            | Self::InvalidRequest(_)
            | Self::Codec(_)
            | Self::WrongState(_)
            | Self::ObjectDestroyed
            | Self::PermissionDenied(_)
            | Self::Crypto(_)
            | Self::Database(_)
            | Self::PlaceholderId
            | Self::NotSupported(_)
            | Self::ReadOnly(_)
            | Self::Sensitive => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// KMIP ResultReason and ResultMessage for a failed batch item.
    pub fn reason_and_message(&self) -> (&'static str, String) {
        let text = self.to_string();
        let reason = match self {
            Self::ObjectNotFound(_) | Self::KeyNotFound(_) => "Object_Not_Found",
            Self::ItemNotFound(_) => "Item_Not_Found",
            Self::WrongState(_) => "Wrong_Key_Lifecycle_State",
            Self::ObjectDestroyed => "Object_Destroyed",
            Self::PermissionDenied(_)
            | Self::AccessDenied(_)
            | Self::Forbidden(_)
            | Self::Unauthenticated => "Permission_Denied",
            Self::Crypto(_) => "Cryptographic_Failure",
            Self::Codec(_) => "Codec_Error",
            Self::UnknownOperation(_) => "Operation_Not_Supported",
            Self::NotSupported(_) => "Feature_Not_Supported",
            Self::Sensitive => "Sensitive",
            Self::ReadOnly(_) => "Attribute_Read_Only",
            Self::InvalidRequest(_)
            | Self::Database(_)
            | Self::PlaceholderId
            | Self::Json(_)
            | Self::TooLarge(_)
            | Self::Internal(_)
            | Self::Unavailable(_) => "Invalid_Message",
        };
        let message = text
            .split_once(": ")
            .map_or(text.clone(), |(_, m)| m.to_owned());
        (reason, message)
    }

    /// Label for metrics and audit.
    pub fn outcome(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "denied",
            StatusCode::INTERNAL_SERVER_ERROR => "error",
            _ => "failed",
        }
    }
}

impl From<crate::store::StoreError> for KmsError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Exists => Self::Database(
                "Ext. store error: Database Error: one or more objects already exist".into(),
            ),
            e @ crate::store::StoreError::Retired(_) => Self::InvalidRequest(e.to_string()),
            e @ crate::store::StoreError::NotOwner { .. } => {
                Self::AccessDenied(format!("Import: {e}"))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<crate::crypto::CryptoError> for KmsError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        match e {
            crate::crypto::CryptoError::Random => Self::Internal(e.to_string()),
            crate::crypto::CryptoError::Unsupported(what) => {
                Self::NotSupported(format!("{what} is not supported by this server"))
            }
            other => Self::Crypto(format!("CRYPTO: error: {other}")),
        }
    }
}

/// An HSM that does not answer is a 503; any other HSM failure is ours (500, logged).
impl From<crate::hsm::HsmError> for KmsError {
    fn from(e: crate::hsm::HsmError) -> Self {
        match e {
            crate::hsm::HsmError::Unavailable(reason) => KmsError::Unavailable(reason),
            crate::hsm::HsmError::Refused(reason) => KmsError::InvalidRequest(reason),
            other => KmsError::Internal(other.to_string()),
        }
    }
}
