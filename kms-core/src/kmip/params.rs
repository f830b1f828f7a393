//! `CryptographicParameters`: read whole, then checked against what the operation implements.
//! Today that is AES-GCM (16-byte tag, 12-byte nonce); any other mode, padding or option is
//! refused by name.

use crate::error::KmsError;
use crate::kmip::fields::{Fields, unsupported};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CryptoParams<'a> {
    pub mode: Option<&'a str>,
    pub algorithm: Option<&'a str>,
    pub padding: Option<&'a str>,
    pub hashing: Option<&'a str>,
    pub random_iv: Option<bool>,
    pub iv_length: Option<i32>,
    pub tag_length: Option<i32>,
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
        };
        f.finish()?;
        Ok(params)
    }

    /// Refuses anything but AES-GCM with a 16-byte tag and a 12-byte nonce.
    pub fn require_aes_gcm(&self, op: &str) -> Result<(), KmsError> {
        if let Some(mode) = self.mode.filter(|m| *m != "GCM") {
            return Err(unsupported(
                op,
                format!("BlockCipherMode {mode} (only GCM)"),
            ));
        }
        if let Some(alg) = self.algorithm.filter(|a| *a != "AES") {
            return Err(unsupported(
                op,
                format!("CryptographicAlgorithm {alg} (only AES)"),
            ));
        }
        if let Some(padding) = self.padding.filter(|p| *p != "None") {
            return Err(unsupported(
                op,
                format!("PaddingMethod {padding} (GCM has none)"),
            ));
        }
        if let Some(hashing) = self.hashing {
            return Err(unsupported(
                op,
                format!("HashingAlgorithm {hashing} with AES-GCM"),
            ));
        }
        if self.random_iv == Some(false) {
            return Err(unsupported(
                op,
                "RandomIV false (the server picks the nonce)",
            ));
        }
        if let Some(n) = self.iv_length.filter(|n| *n != 96) {
            return Err(unsupported(op, format!("IVLength {n} (GCM uses 96 bits)")));
        }
        if let Some(n) = self.tag_length.filter(|n| *n != 16) {
            return Err(unsupported(
                op,
                format!("TagLength {n} (GCM uses 16 bytes)"),
            ));
        }
        Ok(())
    }
}
