//! KMIP key wrapping: reading a `KeyWrappingSpecification` (Get, Export) or a key block's
//! `KeyWrappingData` (Import), and wrapping or unwrapping key material with a key the caller
//! may use: encrypt right on the wrapping key to wrap, decrypt right to unwrap.

use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::key_wrap::{self, WrapMode};
use crate::kmip::build::{enumeration, structure, text};
use crate::kmip::creation::{MASK_UNRESTRICTED, MASK_UNWRAP_KEY, MASK_WRAP_KEY};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::Kms;
use crate::kmip::operation::Operation;
use crate::kmip::params::CryptoParams;
use crate::kmip::ttlv::Ttlv;
use crate::object::{Algorithm, State};

/// How the key material is laid out before wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The key bytes themselves.
    NoEncoding,
    /// The key value as binary TTLV (not implemented yet: refused by name).
    Ttlv,
}

/// Which key wraps, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapSpec<'a> {
    pub key_id: &'a str,
    pub mode: WrapMode,
}

/// Reads `KeyWrappingSpecification` or `KeyWrappingData` (they share these fields).
pub fn parse(mut f: Fields<'_>) -> Result<WrapSpec<'_>, KmsError> {
    let path = f.path().to_owned();
    match f.enumeration("WrappingMethod")? {
        None | Some("Encrypt") => {}
        Some(other) => return Err(unsupported(&path, format!("WrappingMethod {other}"))),
    }
    let mut info = f.structure("EncryptionKeyInformation")?.ok_or_else(|| {
        KmsError::InvalidRequest(format!("{path}: EncryptionKeyInformation is required"))
    })?;
    let key_id = info.text("UniqueIdentifier")?.ok_or_else(|| {
        KmsError::InvalidRequest(format!(
            "{path}.EncryptionKeyInformation: UniqueIdentifier is required"
        ))
    })?;
    let params = CryptoParams::parse(info.structure("CryptographicParameters")?)?;
    info.finish()?;
    // KMIP: without an EncodingOption the wrapped value is TTLV-encoded.
    let encoding = match f.enumeration("EncodingOption")? {
        Some("NoEncoding") => Encoding::NoEncoding,
        _ => Encoding::Ttlv,
    };
    f.finish()?;
    if encoding == Encoding::Ttlv {
        return Err(unsupported(
            &path,
            "EncodingOption TTLVEncoding (wrap the key bytes: EncodingOption NoEncoding, ckms -f raw)",
        ));
    }
    let mode = match params.mode {
        None => WrapMode::Rfc3394,
        Some(mode) => WrapMode::parse(mode).ok_or_else(|| {
            unsupported(&path, format!("BlockCipherMode {mode} for key wrapping"))
        })?,
    };
    if let Some(alg) = params.algorithm.filter(|a| *a != "AES") {
        return Err(unsupported(
            &path,
            format!("CryptographicAlgorithm {alg} for key wrapping"),
        ));
    }
    let rest = CryptoParams {
        mode: None,
        algorithm: None,
        ..params
    };
    if rest != CryptoParams::default() {
        return Err(unsupported(
            &path,
            "CryptographicParameters other than BlockCipherMode and CryptographicAlgorithm",
        ));
    }
    Ok(WrapSpec { key_id, mode })
}

/// The `KeyWrappingData` a wrapped key block carries.
pub fn data(spec: &WrapSpec<'_>) -> Ttlv {
    structure(
        "KeyWrappingData",
        vec![
            enumeration("WrappingMethod", "Encrypt"),
            structure(
                "EncryptionKeyInformation",
                vec![
                    text("UniqueIdentifier", spec.key_id),
                    structure(
                        "CryptographicParameters",
                        vec![enumeration("BlockCipherMode", spec.mode.name())],
                    ),
                ],
            ),
            enumeration("EncodingOption", "NoEncoding"),
        ],
    )
}

impl Kms {
    /// The clear material of the wrapping key `id`, for `user` to wrap (`wrap` true) or
    /// unwrap with it.
    async fn wrapping_key(
        &self,
        user: &str,
        id: &str,
        wrap: bool,
    ) -> Result<(String, Zeroizing<Vec<u8>>), KmsError> {
        let op = if wrap {
            Operation::Encrypt
        } else {
            Operation::Decrypt
        };
        let k = self.crypto_key(user, id, op).await?;
        let what = if wrap { "wrap" } else { "unwrap" };
        if k.algorithm != Some(Algorithm::Aes) {
            return Err(unsupported(
                "key wrapping",
                format!("a {} as the wrapping key", k.object_type.name()),
            ));
        }
        if k.is_resident() {
            return Err(unsupported("key wrapping", "an HSM-resident wrapping key"));
        }
        let usable = if wrap {
            k.state == State::Active
        } else {
            k.state != State::PreActive
        };
        if !usable {
            return Err(KmsError::PermissionDenied(format!(
                "the wrapping key {} is {} and cannot {what}",
                k.uid,
                k.state.name()
            )));
        }
        let bit = if wrap { MASK_WRAP_KEY } else { MASK_UNWRAP_KEY };
        if k.usage_mask & (bit | MASK_UNRESTRICTED) == 0 {
            return Err(KmsError::PermissionDenied(format!(
                "the usage mask of key {} does not allow it to {what} keys",
                k.uid
            )));
        }
        let material = self.keys.unwrap(k.wrapping, &k.uid, &k.wrapped_key)?;
        Ok((k.uid, material))
    }

    /// The uid of the key `id` names, when `user` may wrap with it.
    pub async fn check_may_wrap(&self, user: &str, id: &str) -> Result<String, KmsError> {
        self.wrapping_key(user, id, true).await.map(|(uid, _)| uid)
    }

    /// Fails unless `user` may unwrap with the key `id`.
    pub async fn check_may_unwrap(&self, user: &str, id: &str) -> Result<(), KmsError> {
        self.wrapping_key(user, id, false).await.map(|_| ())
    }

    /// A key stored wrapped by the key `uid`, wrapped again for the answer (RFC 5649, which
    /// gives the same bytes each time). The wrapping was decided when the key was stored, so
    /// the caller's rights on the wrapping key do not matter here.
    pub async fn rewrap_stored(&self, uid: &str, plain: &[u8]) -> Result<Vec<u8>, KmsError> {
        let k = self
            .store
            .load(uid)
            .await?
            .filter(|k| !k.state.is_destroyed() && !k.is_resident())
            .ok_or_else(|| {
                KmsError::InvalidRequest(format!(
                    "the key was stored wrapped by key {uid}, which is gone: ask for it with KeyWrapType NotWrapped"
                ))
            })?;
        let kek = self.keys.unwrap(k.wrapping, &k.uid, &k.wrapped_key)?;
        Ok(key_wrap::wrap(WrapMode::Rfc5649, &kek, plain)?)
    }

    /// `plain` wrapped as `spec` says, by a key `user` may encrypt with. Returns the wrapping
    /// key's uid (the spec may name it by tags) and the wrapped bytes.
    pub async fn wrap_key(
        &self,
        user: &str,
        spec: &WrapSpec<'_>,
        plain: &[u8],
    ) -> Result<(String, Vec<u8>), KmsError> {
        let (uid, kek) = self.wrapping_key(user, spec.key_id, true).await?;
        Ok((uid, key_wrap::wrap(spec.mode, &kek, plain)?))
    }

    /// `wrapped` unwrapped as `spec` says, by a key `user` may decrypt with.
    pub async fn unwrap_key(
        &self,
        user: &str,
        spec: &WrapSpec<'_>,
        wrapped: &[u8],
    ) -> Result<(String, Zeroizing<Vec<u8>>), KmsError> {
        let (uid, kek) = self.wrapping_key(user, spec.key_id, false).await?;
        let plain = key_wrap::unwrap(spec.mode, &kek, wrapped).map_err(|_| {
            KmsError::Crypto(format!(
                "CRYPTO: error: the key does not unwrap with key {uid} ({})",
                spec.mode.name()
            ))
        })?;
        Ok((uid, plain))
    }
}
