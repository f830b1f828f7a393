//! RSA encryption: OAEP (SHA-1, SHA-256, SHA-384, SHA-512; SHA-256 unless asked), PKCS#1
//! v1.5, and CKM_RSA_AES_KEY_WRAP (PKCS#11: a fresh AES-256 key encrypted with OAEP, followed
//! by the data wrapped under it with RFC 5649 — the reference's `ckm-rsa-aes-key-wrap`, for
//! data longer than OAEP can carry).

use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
    OaepAlgorithm, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, Pkcs1PrivateDecryptingKey,
    Pkcs1PublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::key_wrap::{self, WrapMode};
use crate::kmip::fields::unsupported;
use crate::kmip::params::CryptoParams;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl OaepHash {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "SHA1" => Some(Self::Sha1),
            "SHA256" => Some(Self::Sha256),
            "SHA384" => Some(Self::Sha384),
            "SHA512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn algorithm(self) -> &'static OaepAlgorithm {
        match self {
            Self::Sha1 => &OAEP_SHA1_MGF1SHA1,
            Self::Sha256 => &OAEP_SHA256_MGF1SHA256,
            Self::Sha384 => &OAEP_SHA384_MGF1SHA384,
            Self::Sha512 => &OAEP_SHA512_MGF1SHA512,
        }
    }
}

/// An RSA encryption scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaScheme {
    Oaep(OaepHash),
    Pkcs1v15,
    AesKeyWrap(OaepHash),
}

impl RsaScheme {
    /// The scheme `params` ask for: `PaddingMethod OAEP` (the default), `PKCS1v15`, or `None`
    /// with a hash for CKM_RSA_AES_KEY_WRAP (the reference's encoding of it).
    pub fn of(params: &CryptoParams<'_>, op: &str) -> Result<Self, KmsError> {
        let refuse = |what: String| unsupported(op, format!("{what} with an RSA key"));
        if let Some(alg) = params.algorithm.filter(|a| *a != "RSA") {
            return Err(refuse(format!("CryptographicAlgorithm {alg}")));
        }
        if let Some(mode) = params.mode {
            return Err(refuse(format!("BlockCipherMode {mode}")));
        }
        if params.signature.is_some() || params.salt_length.is_some() {
            return Err(refuse("signature parameters for encryption".into()));
        }
        if params.random_iv.is_some() || params.iv_length.is_some() || params.tag_length.is_some() {
            return Err(refuse("IV and tag parameters".into()));
        }
        let hash = params
            .hashing
            .map(|h| OaepHash::parse(h).ok_or_else(|| refuse(format!("HashingAlgorithm {h}"))))
            .transpose()?;
        if let Some(mgf) = params
            .mgf_hash
            .filter(|m| Some(*m) != params.hashing.or(Some("SHA256")))
        {
            return Err(refuse(format!(
                "MaskGeneratorHashingAlgorithm {mgf} (MGF1 uses the OAEP hash)"
            )));
        }
        Ok(match (params.padding, hash) {
            (None | Some("OAEP"), h) => Self::Oaep(h.unwrap_or(OaepHash::Sha256)),
            (Some("PKCS1v15"), None) => Self::Pkcs1v15,
            (Some("PKCS1v15"), Some(_)) => {
                return Err(refuse(
                    "HashingAlgorithm with PKCS#1 v1.5 encryption".into(),
                ));
            }
            (Some("None"), Some(h)) => Self::AesKeyWrap(h),
            (Some("None"), None) => {
                return Err(refuse(
                    "PaddingMethod None without a HashingAlgorithm (raw RSA)".into(),
                ));
            }
            (Some(p), _) => return Err(refuse(format!("PaddingMethod {p}"))),
        })
    }
}

fn crypto(what: &str) -> impl Fn(aws_lc_rs::error::Unspecified) -> KmsError + '_ {
    move |_| KmsError::Crypto(format!("{what} failed"))
}

fn oaep_encrypt(
    key: &PublicEncryptingKey,
    hash: OaepHash,
    data: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let key = OaepPublicEncryptingKey::new(key.clone()).map_err(crypto("RSA key"))?;
    let max = key.max_plaintext_size(hash.algorithm());
    if data.len() > max {
        return Err(KmsError::InvalidRequest(format!(
            "RSA-OAEP with this key encrypts at most {max} bytes (got {}): use CKM_RSA_AES_KEY_WRAP or envelope encryption",
            data.len()
        )));
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(hash.algorithm(), data, &mut out, None)
        .map_err(crypto("RSA-OAEP encryption"))?
        .len();
    out.truncate(n);
    Ok(out)
}

fn oaep_decrypt(
    key: &PrivateDecryptingKey,
    hash: OaepHash,
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let key = OaepPrivateDecryptingKey::new(key.clone()).map_err(crypto("RSA key"))?;
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let n = key
        .decrypt(hash.algorithm(), data, &mut out, None)
        .map_err(crypto("RSA-OAEP decryption"))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Encrypts with an SPKI public key.
pub fn encrypt(scheme: RsaScheme, spki: &[u8], data: &[u8]) -> Result<Vec<u8>, KmsError> {
    let key = PublicEncryptingKey::from_der(spki)
        .map_err(|_| KmsError::Internal("the stored RSA public key does not load".into()))?;
    match scheme {
        RsaScheme::Oaep(hash) => oaep_encrypt(&key, hash, data),
        RsaScheme::Pkcs1v15 => {
            let key = Pkcs1PublicEncryptingKey::new(key).map_err(crypto("RSA key"))?;
            let max = key.max_plaintext_size();
            if data.len() > max {
                return Err(KmsError::InvalidRequest(format!(
                    "RSA PKCS#1 v1.5 with this key encrypts at most {max} bytes (got {})",
                    data.len()
                )));
            }
            let mut out = vec![0u8; key.ciphertext_size()];
            let n = key
                .encrypt(data, &mut out)
                .map_err(crypto("RSA PKCS#1 v1.5 encryption"))?
                .len();
            out.truncate(n);
            Ok(out)
        }
        RsaScheme::AesKeyWrap(hash) => {
            let kek = crate::crypto::random(32)?;
            let mut out = oaep_encrypt(&key, hash, &kek)?;
            out.extend(
                key_wrap::wrap(WrapMode::Rfc5649, &kek, data)
                    .map_err(|e| KmsError::Crypto(e.to_string()))?,
            );
            Ok(out)
        }
    }
}

/// Decrypts with a PKCS#8 private key.
pub fn decrypt(
    scheme: RsaScheme,
    pkcs8: &[u8],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let key = PrivateDecryptingKey::from_pkcs8(pkcs8)
        .map_err(|_| KmsError::Internal("the stored RSA private key does not load".into()))?;
    match scheme {
        RsaScheme::Oaep(hash) => oaep_decrypt(&key, hash, data),
        RsaScheme::Pkcs1v15 => {
            let key = Pkcs1PrivateDecryptingKey::new(key).map_err(crypto("RSA key"))?;
            let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
            let n = key
                .decrypt(data, &mut out)
                .map_err(crypto("RSA PKCS#1 v1.5 decryption"))?
                .len();
            out.truncate(n);
            Ok(out)
        }
        RsaScheme::AesKeyWrap(hash) => {
            let split = key.key_size_bytes();
            if data.len() <= split {
                return Err(KmsError::Crypto(
                    "CKM_RSA_AES_KEY_WRAP data shorter than the RSA block".into(),
                ));
            }
            let kek = oaep_decrypt(&key, hash, &data[..split])?;
            key_wrap::unwrap(WrapMode::Rfc5649, &kek, &data[split..])
                .map_err(|e| KmsError::Crypto(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asymmetric::{KeyKind, generate};

    #[test]
    fn every_scheme_round_trips() {
        let pair = generate(KeyKind::Rsa { bits: 2048 }).unwrap_or_else(|e| panic!("{e}"));
        let big = vec![7u8; 5000];
        for (scheme, data) in [
            (RsaScheme::Oaep(OaepHash::Sha256), &b"hello"[..]),
            (RsaScheme::Oaep(OaepHash::Sha1), b"hello"),
            (RsaScheme::Pkcs1v15, b"hello"),
            (RsaScheme::AesKeyWrap(OaepHash::Sha256), &big),
        ] {
            let sealed = encrypt(scheme, &pair.public, data).unwrap_or_else(|e| panic!("{e}"));
            let opened = decrypt(scheme, &pair.private, &sealed).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&opened[..], data, "{scheme:?}");
        }
        assert!(
            encrypt(RsaScheme::Oaep(OaepHash::Sha256), &pair.public, &big)
                .is_err_and(|e| e.to_string().contains("at most"))
        );
    }
}
