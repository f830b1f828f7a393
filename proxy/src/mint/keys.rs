//! The signing keys of the upstream identity tokens: generated (aws-lc-rs) or read from a PEM
//! PKCS#8 file, each with its public JWK and RFC 7638 thumbprint as `kid`.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::MintAlgorithm;

/// Why the signing key cannot be loaded or made.
#[derive(Debug, thiserror::Error)]
#[error("upstream_jwt_key_file {path}: {reason}")]
pub struct KeyError {
    path: String,
    reason: String,
}

pub(super) fn key_error(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

enum Signer {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key with its public JWK.
pub(super) struct SigningKey {
    pub(super) kid: String,
    pub(super) algorithm: MintAlgorithm,
    signer: Signer,
    pub(super) jwk: Value,
}

impl SigningKey {
    pub(super) fn generate(algorithm: MintAlgorithm) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let fail = |e: aws_lc_rs::error::Unspecified| format!("cannot generate a key: {e}");
        let pkcs8 = match algorithm {
            MintAlgorithm::Es256 => Zeroizing::new(
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(fail)?
                    .as_ref()
                    .to_vec(),
            ),
            MintAlgorithm::EdDsa => Zeroizing::new(
                Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(fail)?
                    .as_ref()
                    .to_vec(),
            ),
            MintAlgorithm::Rs256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(fail)?;
                Zeroizing::new(pair.as_der().map_err(fail)?.as_ref().to_vec())
            }
        };
        Self::from_pkcs8(&pkcs8)
    }

    /// A PKCS#8 key: P-256 (ES256), RSA (RS256) or Ed25519 (EdDSA).
    fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let (algorithm, signer, jwk) = if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
        {
            let point = k.public_key().as_ref();
            let (x, y) = point[1..].split_at(32);
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(x), "y": B64.encode(y)});
            (MintAlgorithm::Es256, Signer::Ec(k), jwk)
        } else if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            if k.public_modulus_len() < 256 {
                return Err("an RSA key must have at least 2048 bits".into());
            }
            let public = k.public_key();
            let jwk = json!({
                "kty": "RSA",
                "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
                "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
            });
            (MintAlgorithm::Rs256, Signer::Rsa(k), jwk)
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            let jwk =
                json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(k.public_key().as_ref())});
            (MintAlgorithm::EdDsa, Signer::Ed(k), jwk)
        } else {
            return Err(
                "not a P-256, RSA or Ed25519 private key in PKCS#8 (convert one with \
                 `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`)"
                    .into(),
            );
        };
        let kid = thumbprint(&jwk);
        let mut jwk = jwk;
        jwk["kid"] = Value::String(kid.clone());
        jwk["alg"] = Value::String(algorithm.as_str().into());
        jwk["use"] = Value::String("sig".into());
        Ok(Self {
            kid,
            algorithm,
            signer,
            jwk,
        })
    }

    pub(super) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        let fail = |e: aws_lc_rs::error::Unspecified| format!("signing failed: {e}");
        match &self.signer {
            Signer::Ec(k) => Ok(k.sign(&rng, message).map_err(fail)?.as_ref().to_vec()),
            Signer::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
            Signer::Rsa(k) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(fail)?;
                Ok(out)
            }
        }
    }
}

/// The RFC 7638 thumbprint of a public JWK (its required members, sorted, no spaces).
fn thumbprint(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str() {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        _ => &["crv", "kty", "x"],
    };
    let body: Vec<String> = members
        .iter()
        .map(|m| format!("\"{m}\":{}", jwk[*m]))
        .collect();
    B64.encode(Sha256::digest(format!("{{{}}}", body.join(",")).as_bytes()))
}

pub(super) fn read_key_file(path: &Path) -> Result<SigningKey, KeyError> {
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| key_error(path, e.to_string()))?);
    let block = pem::parse(&*text).map_err(|e| key_error(path, format!("not PEM: {e}")))?;
    if block.tag() != "PRIVATE KEY" {
        return Err(key_error(
            path,
            format!(
                "a PEM {} is not a PKCS#8 PRIVATE KEY (convert it with `openssl pkcs8 -topk8 \
                 -nocrypt -in KEY -out KEY.p8`)",
                block.tag()
            ),
        ));
    }
    let der = Zeroizing::new(block.into_contents());
    SigningKey::from_pkcs8(&der).map_err(|e| key_error(path, e))
}
