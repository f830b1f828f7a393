//! PKCS#11 objects and errors: finding and generating AES keys in the token, and the split
//! of PKCS#11 errors into "the HSM is gone" and "this operation failed".

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;

use super::HsmError;

pub(super) fn op(e: impl std::fmt::Display) -> HsmError {
    HsmError::Operation(e.to_string())
}

/// Secret keys labelled `label` in the token.
pub(super) fn find_key(session: &Session, label: &str) -> Result<Vec<ObjectHandle>, HsmError> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| classify(&e))
}

/// Generates an AES key inside the token: a token object, sensitive, never extractable, for
/// encryption and decryption only.
pub(super) fn generate_aes(
    session: &Session,
    label: &str,
    bytes: u64,
) -> Result<ObjectHandle, HsmError> {
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(Ulong::from(bytes)),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
        .map_err(|e| classify(&e))
}

/// Finds the key-encryption key labelled `label`, or generates it (AES-256).
pub(super) fn find_or_create_kek(session: &Session, label: &str) -> Result<ObjectHandle, HsmError> {
    let err = |reason: String| HsmError::Kek {
        label: label.to_owned(),
        reason,
    };
    match find_key(session, label)
        .map_err(|e| err(e.to_string()))?
        .as_slice()
    {
        [one] => Ok(*one),
        [] => {
            let key = generate_aes(session, label, 32)
                .map_err(|e| err(format!("cannot generate it: {e}")))?;
            tracing::warn!(label, "generated a new key-encryption key in the HSM");
            Ok(key)
        }
        _ => Err(err("several keys carry this label".into())),
    }
}

/// A token gone or a session closed is "unavailable" (503); anything else an operation error.
pub(super) fn classify(e: &cryptoki::error::Error) -> HsmError {
    let text = e.to_string();
    use cryptoki::error::{Error, RvError};
    match e {
        Error::Pkcs11(
            RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent
            | RvError::SessionClosed
            | RvError::SessionHandleInvalid
            | RvError::UserNotLoggedIn
            // Objects that vanished under an open session: the token was removed or replaced.
            | RvError::ObjectHandleInvalid
            | RvError::KeyHandleInvalid,
            _,
        ) => HsmError::Unavailable(text),
        _ => HsmError::Operation(text),
    }
}
