//! Signatures: the scheme a request's `CryptographicParameters` ask for with a key (RSA-PSS or
//! RSASSA-PKCS1-v1_5 with SHA-256/384/512, ECDSA with the curve's hash, Ed25519), refusing any
//! other combination by name; signing with a PKCS#8 key and verifying with an SPKI key, over
//! the data or over a digest the caller computed.

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, ParsedPublicKey, RsaEncoding};

use super::KeyKind;
use crate::error::KmsError;
use crate::kmip::fields::unsupported;
use crate::kmip::params::CryptoParams;

/// The SHA-2 hashes signatures are made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigHash {
    Sha256,
    Sha384,
    Sha512,
}

impl SigHash {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "SHA256" => Some(Self::Sha256),
            "SHA384" => Some(Self::Sha384),
            "SHA512" => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> i32 {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    RsaPss(SigHash),
    RsaPkcs1(SigHash),
    Ecdsa(super::Curve),
    Ed25519,
}

impl Scheme {
    pub fn name(self) -> String {
        match self {
            Self::RsaPss(h) => format!("RSASSA-PSS with {}", h.name()),
            Self::RsaPkcs1(h) => format!("RSASSA-PKCS1-v1_5 with {}", h.name()),
            Self::Ecdsa(c) => format!("ECDSA on {}", c.kmip()),
            Self::Ed25519 => "Ed25519".to_owned(),
        }
    }

    /// The scheme `params` ask for with a key of `kind`. No parameters: RSA-PSS with SHA-256
    /// for RSA (the reference's default), ECDSA with the curve's hash, Ed25519.
    pub fn of(kind: KeyKind, params: &CryptoParams<'_>, op: &str) -> Result<Self, KmsError> {
        let refuse =
            |what: String| unsupported(op, format!("{what} with an {} key", kind.describe()));
        if let Some(mode) = params.mode {
            return Err(refuse(format!("BlockCipherMode {mode}")));
        }
        if params.random_iv.is_some() || params.iv_length.is_some() || params.tag_length.is_some() {
            return Err(refuse("IV and tag parameters".into()));
        }
        let hash = params
            .hashing
            .map(|h| SigHash::parse(h).ok_or_else(|| refuse(format!("HashingAlgorithm {h}"))))
            .transpose()?;
        let scheme = match kind {
            KeyKind::Rsa { .. } => {
                if let Some(alg) = params.algorithm.filter(|a| *a != "RSA") {
                    return Err(refuse(format!("CryptographicAlgorithm {alg}")));
                }
                let (pss, named_hash) = match params.signature {
                    None => (None, None),
                    Some("RSASSAPSS") => (Some(true), None),
                    Some("SHA256WithRSAEncryption") => (Some(false), Some(SigHash::Sha256)),
                    Some("SHA384WithRSAEncryption") => (Some(false), Some(SigHash::Sha384)),
                    Some("SHA512WithRSAEncryption") => (Some(false), Some(SigHash::Sha512)),
                    Some(other) => {
                        return Err(refuse(format!("DigitalSignatureAlgorithm {other}")));
                    }
                };
                let padding_pss = match params.padding {
                    None => None,
                    Some("PSS") => Some(true),
                    Some("PKCS1v15") => Some(false),
                    Some(other) => {
                        return Err(refuse(format!("PaddingMethod {other} for a signature")));
                    }
                };
                let pss = match (pss, padding_pss) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(KmsError::InvalidRequest(format!(
                            "{op}: DigitalSignatureAlgorithm and PaddingMethod disagree"
                        )));
                    }
                    (a, b) => a.or(b).unwrap_or(true),
                };
                let hash = match (named_hash, hash) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(KmsError::InvalidRequest(format!(
                            "{op}: DigitalSignatureAlgorithm hashes with {} but HashingAlgorithm is {}",
                            a.name(),
                            b.name()
                        )));
                    }
                    (a, b) => a.or(b).unwrap_or(SigHash::Sha256),
                };
                if pss {
                    if let Some(mgf) = params.mgf_hash.filter(|m| *m != hash.name()) {
                        return Err(refuse(format!(
                            "MaskGeneratorHashingAlgorithm {mgf} (MGF1 uses the signature hash, {})",
                            hash.name()
                        )));
                    }
                    if let Some(salt) = params.salt_length.filter(|s| *s != hash.len()) {
                        return Err(refuse(format!(
                            "SaltLength {salt} (the salt is the hash length, {})",
                            hash.len()
                        )));
                    }
                    Self::RsaPss(hash)
                } else {
                    if params.mgf_hash.is_some() || params.salt_length.is_some() {
                        return Err(refuse("MGF and salt parameters with PKCS#1 v1.5".into()));
                    }
                    Self::RsaPkcs1(hash)
                }
            }
            KeyKind::Ec(curve) => {
                if let Some(alg) = params
                    .algorithm
                    .filter(|a| !matches!(*a, "EC" | "ECDSA" | "ECDH"))
                {
                    return Err(refuse(format!("CryptographicAlgorithm {alg}")));
                }
                let own = match curve {
                    super::Curve::P256 => SigHash::Sha256,
                    super::Curve::P384 => SigHash::Sha384,
                    super::Curve::P521 => SigHash::Sha512,
                };
                let named = match params.signature {
                    None => None,
                    Some("ECDSAWithSHA256") => Some(SigHash::Sha256),
                    Some("ECDSAWithSHA384") => Some(SigHash::Sha384),
                    Some("ECDSAWithSHA512") => Some(SigHash::Sha512),
                    Some(other) => {
                        return Err(refuse(format!("DigitalSignatureAlgorithm {other}")));
                    }
                };
                for h in [named, hash].into_iter().flatten() {
                    if h != own {
                        return Err(refuse(format!(
                            "ECDSA with {} (a {} key signs with {})",
                            h.name(),
                            curve.kmip(),
                            own.name()
                        )));
                    }
                }
                if let Some(p) = params.padding {
                    return Err(refuse(format!("PaddingMethod {p}")));
                }
                Self::Ecdsa(curve)
            }
            KeyKind::Ed25519 => {
                if let Some(alg) = params.algorithm.filter(|a| *a != "Ed25519") {
                    return Err(refuse(format!("CryptographicAlgorithm {alg}")));
                }
                if let Some(h) = params.hashing {
                    return Err(refuse(format!(
                        "HashingAlgorithm {h} (Ed25519 hashes itself)"
                    )));
                }
                if let Some(s) = params.signature {
                    return Err(refuse(format!("DigitalSignatureAlgorithm {s}")));
                }
                if let Some(p) = params.padding {
                    return Err(refuse(format!("PaddingMethod {p}")));
                }
                Self::Ed25519
            }
        };
        if !matches!(scheme, Self::RsaPss(_))
            && (params.mgf_hash.is_some() || params.salt_length.is_some())
        {
            return Err(refuse("MaskGeneratorHashingAlgorithm or SaltLength".into()));
        }
        Ok(scheme)
    }

    fn hash(self) -> Option<SigHash> {
        match self {
            Self::RsaPss(h) | Self::RsaPkcs1(h) => Some(h),
            Self::Ecdsa(super::Curve::P256) => Some(SigHash::Sha256),
            Self::Ecdsa(super::Curve::P384) => Some(SigHash::Sha384),
            Self::Ecdsa(super::Curve::P521) => Some(SigHash::Sha512),
            Self::Ed25519 => None,
        }
    }

    fn rsa_encoding(self) -> &'static dyn RsaEncoding {
        match self {
            Self::RsaPss(SigHash::Sha256) => &signature::RSA_PSS_SHA256,
            Self::RsaPss(SigHash::Sha384) => &signature::RSA_PSS_SHA384,
            Self::RsaPss(SigHash::Sha512) => &signature::RSA_PSS_SHA512,
            Self::RsaPkcs1(SigHash::Sha384) => &signature::RSA_PKCS1_SHA384,
            Self::RsaPkcs1(SigHash::Sha512) => &signature::RSA_PKCS1_SHA512,
            _ => &signature::RSA_PKCS1_SHA256,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Self::RsaPss(SigHash::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
            Self::RsaPss(SigHash::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
            Self::RsaPss(SigHash::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
            Self::RsaPkcs1(SigHash::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::RsaPkcs1(SigHash::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::RsaPkcs1(SigHash::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::Ecdsa(curve) => curve.verification(),
            Self::Ed25519 => &signature::ED25519,
        }
    }
}

/// What is signed: the data, or its digest computed by the caller (`DigestedData`).
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Data(&'a [u8]),
    Digest(&'a [u8]),
}

fn digest_of(scheme: Scheme, digest: &[u8]) -> Result<Digest, KmsError> {
    let hash = scheme.hash().ok_or_else(|| {
        unsupported(
            "Sign",
            "DigestedData with Ed25519 (it signs the data itself)",
        )
    })?;
    Digest::import_less_safe(digest, hash.digest()).map_err(|_| {
        KmsError::InvalidRequest(format!(
            "DigestedData of {} bytes: a {} digest is {} bytes",
            digest.len(),
            hash.name(),
            hash.len()
        ))
    })
}

fn crypto(what: &str) -> impl Fn(aws_lc_rs::error::Unspecified) -> KmsError + '_ {
    move |_| KmsError::Crypto(format!("{what} failed"))
}

/// A private key loaded for signing (loading checks it, which for RSA costs about as much as
/// a signature: [`SigningKeys`] keeps loaded keys).
pub enum Loaded {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Loaded {
    pub fn load(kind: super::KeyKind, pkcs8: &[u8]) -> Result<Self, KmsError> {
        let corrupt = |_| KmsError::Internal("the stored private key does not load".into());
        Ok(match kind {
            super::KeyKind::Rsa { .. } => {
                Self::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(corrupt)?)
            }
            super::KeyKind::Ec(curve) => {
                Self::Ecdsa(EcdsaKeyPair::from_pkcs8(curve.signing(), pkcs8).map_err(corrupt)?)
            }
            super::KeyKind::Ed25519 => {
                Self::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(corrupt)?)
            }
        })
    }
}

/// Loaded signing keys by uid and material digest (a replaced key has another digest, so a
/// stale entry is never used), at most [`SigningKeys::MAX`]; a destroyed key is forgotten.
#[derive(Default)]
pub struct SigningKeys {
    map: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Loaded>>>,
}

impl SigningKeys {
    pub const MAX: usize = 1024;

    /// The loaded key for `uid` whose material has `digest`, loading it with `load` when not
    /// held (an empty digest is never cached).
    pub fn get(
        &self,
        uid: &str,
        digest: &str,
        load: impl FnOnce() -> Result<Loaded, KmsError>,
    ) -> Result<std::sync::Arc<Loaded>, KmsError> {
        let key = format!("{uid}\n{digest}");
        if !digest.is_empty() {
            if let Some(found) = self.map.lock().ok().and_then(|m| m.get(&key).cloned()) {
                return Ok(found);
            }
        }
        let loaded = std::sync::Arc::new(load()?);
        if !digest.is_empty() {
            if let Ok(mut map) = self.map.lock() {
                if map.len() >= Self::MAX {
                    map.clear();
                }
                map.insert(key, loaded.clone());
            }
        }
        Ok(loaded)
    }

    /// Drops every loaded key of `uid`.
    pub fn forget(&self, uid: &str) {
        let prefix = format!("{uid}\n");
        if let Ok(mut map) = self.map.lock() {
            map.retain(|k, _| !k.starts_with(&prefix));
        }
    }
}

/// Signs with a PKCS#8 private key.
pub fn sign(scheme: Scheme, pkcs8: &[u8], input: Input<'_>) -> Result<Vec<u8>, KmsError> {
    let kind = match scheme {
        Scheme::RsaPss(_) | Scheme::RsaPkcs1(_) => super::KeyKind::Rsa { bits: 0 },
        Scheme::Ecdsa(curve) => super::KeyKind::Ec(curve),
        Scheme::Ed25519 => super::KeyKind::Ed25519,
    };
    sign_with(scheme, &Loaded::load(kind, pkcs8)?, input)
}

/// Signs with a loaded private key.
pub fn sign_with(scheme: Scheme, loaded: &Loaded, input: Input<'_>) -> Result<Vec<u8>, KmsError> {
    let mismatch = || KmsError::Internal("the key does not fit the signature scheme".into());
    match scheme {
        Scheme::RsaPss(_) | Scheme::RsaPkcs1(_) => {
            let Loaded::Rsa(key) = loaded else {
                return Err(mismatch());
            };
            let mut out = vec![0u8; key.public_modulus_len()];
            match input {
                Input::Data(data) => {
                    key.sign(scheme.rsa_encoding(), &SystemRandom::new(), data, &mut out)
                }
                Input::Digest(d) => {
                    key.sign_digest(scheme.rsa_encoding(), &digest_of(scheme, d)?, &mut out)
                }
            }
            .map_err(crypto("RSA signature"))?;
            Ok(out)
        }
        Scheme::Ecdsa(_) => {
            let Loaded::Ecdsa(key) = loaded else {
                return Err(mismatch());
            };
            let sig = match input {
                Input::Data(data) => key.sign(&SystemRandom::new(), data),
                Input::Digest(d) => key.sign_digest(&digest_of(scheme, d)?),
            }
            .map_err(crypto("ECDSA signature"))?;
            Ok(sig.as_ref().to_vec())
        }
        Scheme::Ed25519 => {
            let Input::Data(data) = input else {
                return Err(unsupported(
                    "Sign",
                    "DigestedData with Ed25519 (it signs the data itself)",
                ));
            };
            let Loaded::Ed25519(key) = loaded else {
                return Err(mismatch());
            };
            Ok(key.sign(data).as_ref().to_vec())
        }
    }
}

/// True when `signature` is valid for the input under an SPKI public key.
pub fn verify(
    scheme: Scheme,
    spki: &[u8],
    input: Input<'_>,
    signature: &[u8],
) -> Result<bool, KmsError> {
    let key = ParsedPublicKey::new(scheme.verification(), spki)
        .map_err(|_| KmsError::Internal("the stored public key does not load".into()))?;
    Ok(match input {
        Input::Data(data) => key.verify_sig(data, signature).is_ok(),
        Input::Digest(d) => key
            .verify_digest_sig(&digest_of(scheme, d)?, signature)
            .is_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asymmetric::{Curve, generate};

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let params = CryptoParams::default();
        for kind in [
            KeyKind::Rsa { bits: 2048 },
            KeyKind::Ec(Curve::P384),
            KeyKind::Ed25519,
        ] {
            let pair = generate(kind).unwrap_or_else(|e| panic!("{e}"));
            let scheme = Scheme::of(kind, &params, "Sign").unwrap_or_else(|e| panic!("{e}"));
            let sig = sign(scheme, &pair.private, Input::Data(b"hello")).unwrap_or_default();
            assert!(verify(scheme, &pair.public, Input::Data(b"hello"), &sig).unwrap_or(false));
            assert!(!verify(scheme, &pair.public, Input::Data(b"hellO"), &sig).unwrap_or(true));
            if let Some(h) = scheme.hash() {
                let d = digest::digest(h.digest(), b"hello");
                let sig =
                    sign(scheme, &pair.private, Input::Digest(d.as_ref())).unwrap_or_default();
                assert!(verify(scheme, &pair.public, Input::Data(b"hello"), &sig).unwrap_or(false));
            }
        }
        let ecdsa_sha512 = CryptoParams {
            signature: Some("ECDSAWithSHA512"),
            ..CryptoParams::default()
        };
        assert!(
            Scheme::of(KeyKind::Ec(Curve::P256), &ecdsa_sha512, "Sign")
                .is_err_and(|e| e.to_string().contains("ECDSA with SHA512"))
        );
        let pkcs1 = CryptoParams {
            signature: Some("SHA384WithRSAEncryption"),
            ..CryptoParams::default()
        };
        assert_eq!(
            Scheme::of(KeyKind::Rsa { bits: 2048 }, &pkcs1, "Sign").ok(),
            Some(Scheme::RsaPkcs1(SigHash::Sha384))
        );
    }
}
