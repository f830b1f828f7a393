//! `CryptographicParameters`: read whole, then turned into the scheme the operation runs
//! ([`Cipher`]); any mode, padding or option this server does not implement is refused by
//! name.

use crate::error::KmsError;
use crate::kmip::fields::{Fields, unsupported};
use crate::object::Algorithm;
use crate::symmetric::Cipher;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CryptoParams<'a> {
    pub mode: Option<&'a str>,
    pub algorithm: Option<&'a str>,
    pub padding: Option<&'a str>,
    pub hashing: Option<&'a str>,
    pub random_iv: Option<bool>,
    pub iv_length: Option<i32>,
    pub tag_length: Option<i32>,
    /// `DigitalSignatureAlgorithm`.
    pub signature: Option<&'a str>,
    /// `MaskGeneratorHashingAlgorithm` (MGF1's hash).
    pub mgf_hash: Option<&'a str>,
    pub salt_length: Option<i32>,
}

impl<'a> CryptoParams<'a> {
    /// Reads the structure (absent = defaults).
    pub fn parse(f: Option<Fields<'a>>) -> Result<Self, KmsError> {
        let Some(mut f) = f else {
            return Ok(Self::default());
        };
        let params = Self {
            mode: f.enumeration("BlockCipherMode")?,
            algorithm: f.enumeration("CryptographicAlgorithm")?,
            padding: f.enumeration("PaddingMethod")?,
            hashing: f.enumeration("HashingAlgorithm")?,
            random_iv: f.boolean("RandomIV")?,
            iv_length: f.int("IVLength")?,
            tag_length: f.int("TagLength")?,
            signature: f.enumeration("DigitalSignatureAlgorithm")?,
            mgf_hash: f.enumeration("MaskGeneratorHashingAlgorithm")?,
            salt_length: f.int("SaltLength")?,
        };
        if let Some(mgf) = f.enumeration("MaskGenerator")?.filter(|m| *m != "MGF1") {
            return Err(unsupported(f.path(), format!("MaskGenerator {mgf}")));
        }
        f.finish()?;
        Ok(params)
    }

    /// The scheme these parameters ask for with a key of `algorithm`, or a refusal that
    /// names what is not supported. No parameters mean AES-GCM for an AES key and
    /// ChaCha20-Poly1305 for a ChaCha20 key.
    pub fn cipher(&self, op: &str, algorithm: Option<Algorithm>) -> Result<Cipher, KmsError> {
        let cipher = match (algorithm, self.algorithm, self.mode) {
            (Some(Algorithm::Aes), None | Some("AES"), None | Some("GCM")) => Cipher::AesGcm,
            (Some(Algorithm::Aes), None | Some("AES"), Some("GCMSIV")) => Cipher::AesGcmSiv,
            (Some(Algorithm::Aes), None | Some("AES"), Some("CBC")) => Cipher::AesCbc,
            (Some(Algorithm::Aes), None | Some("AES"), Some("NISTKeyWrap")) => Cipher::AesKeyWrap,
            (Some(Algorithm::Aes), None | Some("AES"), Some("AESKeyWrapPadding")) => {
                Cipher::AesKeyWrapPadding
            }
            (Some(Algorithm::ChaCha20), None | Some("ChaCha20Poly1305"), None) => {
                Cipher::ChaCha20Poly1305
            }
            (Some(Algorithm::Aes), None | Some("AES"), Some(mode)) => {
                return Err(unsupported(
                    op,
                    format!("BlockCipherMode {mode} with an AES key"),
                ));
            }
            (Some(key), Some(asked), _) => {
                return Err(unsupported(
                    op,
                    format!("CryptographicAlgorithm {asked} with a {} key", key.name()),
                ));
            }
            (Some(key), None, mode) => {
                return Err(unsupported(
                    op,
                    format!(
                        "encryption with a {} key{}",
                        key.name(),
                        mode.map(|m| format!(" in mode {m}")).unwrap_or_default()
                    ),
                ));
            }
            (None, _, _) => {
                return Err(unsupported(
                    op,
                    "encryption with an object that is not a key",
                ));
            }
        };
        match (cipher, self.padding) {
            (_, None) => {}
            (Cipher::AesCbc, Some("PKCS5")) => {}
            (c, Some("None")) if c != Cipher::AesCbc => {}
            (c, Some(p)) => {
                return Err(unsupported(
                    op,
                    format!("PaddingMethod {p} with {}", c.name()),
                ));
            }
        }
        if let Some(s) = self.signature {
            return Err(unsupported(
                op,
                format!("DigitalSignatureAlgorithm {s} with {}", cipher.name()),
            ));
        }
        if self.mgf_hash.is_some() || self.salt_length.is_some() {
            return Err(unsupported(
                op,
                format!("MGF and salt parameters with {}", cipher.name()),
            ));
        }
        if let Some(hashing) = self.hashing {
            return Err(unsupported(
                op,
                format!("HashingAlgorithm {hashing} with {}", cipher.name()),
            ));
        }
        if self.random_iv == Some(false) {
            return Err(unsupported(
                op,
                "RandomIV false (the server picks the nonce)",
            ));
        }
        let nonce_bits = i32::try_from(cipher.nonce_len() * 8).unwrap_or(0);
        if let Some(n) = self.iv_length.filter(|n| *n != nonce_bits) {
            return Err(unsupported(
                op,
                format!("IVLength {n} ({} uses {nonce_bits} bits)", cipher.name()),
            ));
        }
        let tag_bytes = if cipher.is_aead() { 16 } else { 0 };
        if let Some(n) = self.tag_length.filter(|n| *n != tag_bytes) {
            return Err(unsupported(
                op,
                format!("TagLength {n} with {}", cipher.name()),
            ));
        }
        Ok(cipher)
    }
}
