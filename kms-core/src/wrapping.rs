//! Which key-encryption key protects key material at rest: the master key file, or the HSM's
//! KEK. New keys are wrapped by the HSM KEK when one is configured, else by the master key;
//! each stored key records its wrapping, so a database can hold both while `kms-core rewrap`
//! moves it from one to the other.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto::MasterKey;
use crate::error::KmsError;
use crate::hsm::Hsm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wrapping {
    /// The master key file (AES-256-GCM in software)
    Master,
    /// The HSM's key-encryption key (AES-GCM inside the HSM)
    Hsm,
    /// Not wrapped at all: the key lives in the HSM (`hsm::<slot>::<label>`)
    #[value(skip)]
    Resident,
}

impl Wrapping {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Hsm => "hsm",
            Self::Resident => "hsm-resident",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "master" => Some(Self::Master),
            "hsm" => Some(Self::Hsm),
            "hsm-resident" => Some(Self::Resident),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Wrappers {
    pub master: Option<MasterKey>,
    pub hsm: Option<Arc<Hsm>>,
    /// Users allowed to create and destroy HSM-resident keys.
    pub hsm_admins: Vec<String>,
}

impl Wrappers {
    /// The wrapping new keys get.
    pub fn active(&self) -> Wrapping {
        if self.hsm.as_ref().is_some_and(|h| h.has_kek()) {
            Wrapping::Hsm
        } else {
            Wrapping::Master
        }
    }

    pub fn wrap_with(
        &self,
        wrapping: Wrapping,
        uid: &str,
        key: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        match wrapping {
            Wrapping::Master => self
                .master
                .as_ref()
                .ok_or_else(|| KmsError::Internal("no master key configured".into()))?
                .wrap(uid, key)
                .map_err(|e| KmsError::Internal(e.to_string())),
            Wrapping::Hsm => Ok(self
                .hsm
                .as_ref()
                .ok_or_else(|| KmsError::Internal("no HSM configured".into()))?
                .wrap(uid, key)?),
            Wrapping::Resident => Err(KmsError::Internal("HSM keys are not wrapped".into())),
        }
    }

    /// Wraps with the active key-encryption key.
    pub fn wrap(&self, uid: &str, key: &[u8]) -> Result<(Wrapping, Vec<u8>), KmsError> {
        let wrapping = self.active();
        Ok((wrapping, self.wrap_with(wrapping, uid, key)?))
    }

    pub fn unwrap(
        &self,
        wrapping: Wrapping,
        uid: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        match wrapping {
            Wrapping::Master => self
                .master
                .as_ref()
                .ok_or_else(|| {
                    KmsError::Internal(format!(
                        "key {uid} is wrapped by the master key, which is not configured (kms-core rewrap --to hsm moves it)"
                    ))
                })?
                .unwrap(uid, wrapped)
                .map_err(|e| KmsError::Internal(e.to_string())),
            Wrapping::Hsm => Ok(self
                .hsm
                .as_ref()
                .ok_or_else(|| {
                    KmsError::Internal(format!(
                        "key {uid} is wrapped by the HSM, which is not configured"
                    ))
                })?
                .unwrap(uid, wrapped)?),
            Wrapping::Resident => Err(KmsError::InvalidRequest(format!(
                "the key {uid} lives in the HSM and is not extractable"
            ))),
        }
    }
}
