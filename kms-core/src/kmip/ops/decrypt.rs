//! Decrypt with AES-GCM under a stored key (or inside the HSM for a resident key).

use crate::asymmetric::rsa::RsaScheme;
use crate::error::KmsError;
use crate::key_wrap::WrapMode;
use crate::kmip::build::{bytes, structure, text};
use crate::kmip::creation::{MASK_DECRYPT, MASK_UNRESTRICTED};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::params::CryptoParams;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::State;
use crate::symmetric::Cipher;

pub struct Request<'a> {
    pub id: &'a str,
    pub params: CryptoParams<'a>,
    pub data: &'a [u8],
    /// Empty when not given (key wrap has none).
    pub nonce: &'a [u8],
    pub tag: &'a [u8],
    pub aad: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "Decrypt")?;
        let id = required(f.text("UniqueIdentifier")?)?;
        let params = CryptoParams::parse(f.structure("CryptographicParameters")?)?;
        let data = f.bytes("Data")?;
        let nonce = f.bytes("IVCounterNonce")?;
        let tag = f.bytes("AuthenticatedEncryptionTag")?;
        let aad = f
            .bytes("AuthenticatedEncryptionAdditionalData")?
            .unwrap_or_default();
        f.finish()?;
        Ok(Self {
            id,
            params,
            data: data.ok_or_else(|| KmsError::InvalidRequest("Decrypt: missing Data".into()))?,
            nonce: nonce.unwrap_or_default(),
            tag: tag.unwrap_or_default(),
            aad,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let r = Request::parse(node)?;
    let o = kms.crypto_key(user, r.id, Operation::Decrypt).await?;
    if o.state == State::PreActive {
        return Err(KmsError::PermissionDenied(format!(
            "Decrypt: key {} is in state PreActive but operation requires one of [Active, Deactivated, Compromised]",
            o.uid
        )));
    }
    if o.usage_mask & (MASK_DECRYPT | MASK_UNRESTRICTED) == 0 {
        return Err(KmsError::PermissionDenied(format!(
            "Decrypt: key {} usage mask does not allow Decrypt",
            o.uid
        )));
    }
    if let Some(kind) = crate::kmip::pair::kind(&o) {
        if !r.nonce.is_empty() || !r.tag.is_empty() || !r.aad.is_empty() {
            return Err(KmsError::InvalidRequest(
                "Decrypt: public-key decryption takes no IVCounterNonce, tag or additional data"
                    .into(),
            ));
        }
        let scheme = super::encrypt::rsa_scheme(kind, &r.params, "Decrypt")?;
        let plain = if o.is_resident() {
            let (hsm, label) = kms.hsm_key(&o.uid)?;
            match scheme {
                // The AES key is unwrapped inside the HSM, the data here.
                RsaScheme::AesKeyWrap(hash) => {
                    let split = usize::try_from(kind.bits() / 8).unwrap_or(0);
                    if r.data.len() <= split {
                        return Err(KmsError::Crypto(
                            "CKM_RSA_AES_KEY_WRAP data shorter than the RSA block".into(),
                        ));
                    }
                    let kek = hsm.rsa_decrypt(&label, RsaScheme::Oaep(hash), &r.data[..split])?;
                    crate::key_wrap::unwrap(WrapMode::Rfc5649, &kek, &r.data[split..])
                        .map_err(|e| KmsError::Crypto(e.to_string()))?
                }
                other => hsm.rsa_decrypt(&label, other, r.data)?,
            }
        } else {
            crate::asymmetric::rsa::decrypt(scheme, &kms.material(&o)?, r.data)?
        };
        return Ok(Done::new(
            structure(
                "DecryptResponse",
                vec![text("UniqueIdentifier", &o.uid), bytes("Data", &plain)],
            ),
            o.uid,
        ));
    }
    let cipher = r.params.cipher("Decrypt", o.algorithm)?;
    let missing = |what: &str| KmsError::InvalidRequest(format!("Decrypt: missing {what}"));
    if cipher.nonce_len() > 0 && r.nonce.is_empty() {
        return Err(missing("IVCounterNonce"));
    }
    if cipher.is_aead() && r.tag.is_empty() {
        return Err(missing("AuthenticatedEncryptionTag"));
    }
    let authenticated_parts = !r.tag.is_empty() || !r.aad.is_empty();
    if !cipher.is_aead() && authenticated_parts {
        return Err(KmsError::InvalidRequest(format!(
            "Decrypt: {} takes no authentication tag or additional data",
            cipher.name()
        )));
    }
    let plain = if o.is_resident() {
        if cipher != Cipher::AesGcm {
            return Err(unsupported(
                "Decrypt",
                format!("{} with an HSM key", cipher.name()),
            ));
        }
        let (hsm, label) = kms.hsm_key(&o.uid)?;
        hsm.decrypt(&label, r.nonce, r.aad, r.data, r.tag)
            .map_err(|e| match e {
                crate::hsm::HsmError::Operation(_) => {
                    KmsError::Crypto("CRYPTO: error: authentication failed".into())
                }
                other => other.into(),
            })?
    } else {
        let key = kms.keys.unwrap(o.wrapping, &o.uid, &o.wrapped_key)?;
        crate::symmetric::decrypt(cipher, &key, r.nonce, r.aad, r.data, r.tag)?
    };
    Ok(Done::new(
        structure(
            "DecryptResponse",
            vec![text("UniqueIdentifier", &o.uid), bytes("Data", &plain)],
        ),
        o.uid,
    ))
}
