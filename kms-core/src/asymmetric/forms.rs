//! The forms keys come in and go out in, by KMIP key format: private keys as PKCS#8, PKCS#1
//! (RSA) or SEC1 `ECPrivateKey`; public keys as SubjectPublicKeyInfo, PKCS#1 (RSA) or an EC
//! point (`TransparentECPublicKey`). Stored keys are always PKCS#8 and SPKI.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, PublicKey as RsaPublicKey};
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ParsedPublicKey};
use pkcs8::der::Decode;
use pkcs8::{PrivateKeyInfoRef, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use super::{Curve, KeyKind, failed, invalid, private_kind, public_kind, public_of, verifying_key};
use crate::error::KmsError;

/// A private key in a KMIP key format (`PKCS8`, `PKCS1` for RSA, `ECPrivateKey` for EC),
/// checked and turned into PKCS#8.
pub fn import_private(format: &str, der: &[u8]) -> Result<(KeyKind, Zeroizing<Vec<u8>>), KmsError> {
    let pkcs8 = match format {
        "PKCS8" => {
            // Checked by loading it; Ed25519 keys are stored in the v1 form.
            let kind = private_kind(der)?;
            match kind {
                KeyKind::Rsa { .. } => der.to_vec(),
                KeyKind::Ec(curve) => EcdsaKeyPair::from_pkcs8(curve.signing(), der)
                    .map_err(|_| invalid("a valid EC private key"))?
                    .to_pkcs8v1()
                    .map_err(failed("PKCS#8 encoding"))?
                    .as_ref()
                    .to_vec(),
                KeyKind::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|_| invalid("a valid Ed25519 private key"))?
                    .to_pkcs8v1()
                    .map_err(failed("PKCS#8 encoding"))?
                    .as_ref()
                    .to_vec(),
            }
        }
        "PKCS1" => RsaKeyPair::from_der(der)
            .map_err(|_| invalid("a PKCS#1 RSA private key (2048 to 8192 bits)"))?
            .as_der()
            .map_err(failed("PKCS#8 encoding"))?
            .as_ref()
            .to_vec(),
        "ECPrivateKey" => Curve::ALL
            .into_iter()
            .find_map(|c| EcdsaKeyPair::from_private_key_der(c.signing(), der).ok())
            .ok_or_else(|| invalid("a SEC1 ECPrivateKey on P-256, P-384 or P-521"))?
            .to_pkcs8v1()
            .map_err(failed("PKCS#8 encoding"))?
            .as_ref()
            .to_vec(),
        other => {
            return Err(KmsError::NotSupported(format!(
                "KeyFormatType {other} for a PrivateKey (PKCS8, PKCS1 or ECPrivateKey)"
            )));
        }
    };
    let pkcs8 = Zeroizing::new(pkcs8);
    let kind = private_kind(&pkcs8)?;
    // The material must load as the kind it claims.
    public_of(kind, &pkcs8)?;
    Ok((kind, pkcs8))
}

/// A public key in a KMIP key format (`X509`/`PKCS8` for SubjectPublicKeyInfo, `PKCS1` for
/// an RSA public key), checked and turned into SPKI.
pub fn import_public(format: &str, der: &[u8]) -> Result<(KeyKind, Vec<u8>), KmsError> {
    let spki = match format {
        "X509" | "PKCS8" => der.to_vec(),
        "PKCS1" => RsaPublicKey::from_der(der)
            .map_err(|_| invalid("a PKCS#1 RSA public key"))?
            .as_der()
            .map_err(failed("SPKI encoding"))?
            .as_ref()
            .to_vec(),
        other => {
            return Err(KmsError::NotSupported(format!(
                "KeyFormatType {other} for a PublicKey (X509, PKCS8 or PKCS1)"
            )));
        }
    };
    let kind = public_kind(&spki)?;
    verifying_key(kind, &spki)?;
    Ok((kind, spki))
}

/// An EC public key given as a point (`TransparentECPublicKey`'s `QString`), as SPKI.
pub fn ec_point_to_spki(curve: Curve, point: &[u8]) -> Result<Vec<u8>, KmsError> {
    let key = ParsedPublicKey::new(curve.verification(), point)
        .map_err(|_| invalid("a point on the curve"))?;
    Ok(key
        .as_der()
        .map_err(failed("SPKI encoding"))?
        .as_ref()
        .to_vec())
}

/// A stored private key in the KMIP format asked for.
pub fn export_private(
    kind: KeyKind,
    pkcs8: &[u8],
    format: &str,
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let out = match (format, kind) {
        ("PKCS8", _) => pkcs8.to_vec(),
        ("PKCS1", KeyKind::Rsa { .. }) => PrivateKeyInfoRef::from_der(pkcs8)
            .map_err(|_| KmsError::Internal("stored private key is not PKCS#8".into()))?
            .private_key
            .as_bytes()
            .to_vec(),
        ("ECPrivateKey", KeyKind::Ec(curve)) => EcdsaKeyPair::from_pkcs8(curve.signing(), pkcs8)
            .map_err(|_| KmsError::Internal("stored EC key does not load".into()))?
            .private_key()
            .as_der()
            .map_err(failed("SEC1 encoding"))?
            .as_ref()
            .to_vec(),
        (format, kind) => {
            return Err(KmsError::NotSupported(format!(
                "KeyFormatType {format} for an {} private key (PKCS8{})",
                kind.describe(),
                match kind {
                    KeyKind::Rsa { .. } => ", PKCS1",
                    KeyKind::Ec(_) => ", ECPrivateKey",
                    KeyKind::Ed25519 => "",
                }
            )));
        }
    };
    Ok(Zeroizing::new(out))
}

/// A stored public key in the KMIP format asked for: SPKI (`X509` or `PKCS8`), `PKCS1` for
/// RSA, or the raw point for `TransparentECPublicKey`.
pub fn export_public(kind: KeyKind, spki: &[u8], format: &str) -> Result<Vec<u8>, KmsError> {
    match (format, kind) {
        ("X509" | "PKCS8", _) => Ok(spki.to_vec()),
        ("PKCS1", KeyKind::Rsa { .. }) => Ok(RsaPublicKey::from_der(spki)
            .map_err(|_| KmsError::Internal("stored RSA public key does not load".into()))?
            .as_ref()
            .to_vec()),
        ("TransparentECPublicKey", KeyKind::Ec(_)) => {
            // The SPKI's key bits are the point, uncompressed as aws-lc-rs writes it.
            let info = SubjectPublicKeyInfoRef::from_der(spki)
                .map_err(|_| KmsError::Internal("stored EC public key is not SPKI".into()))?;
            Ok(info.subject_public_key.raw_bytes().to_vec())
        }
        (format, kind) => Err(KmsError::NotSupported(format!(
            "KeyFormatType {format} for an {} public key (X509, PKCS8{})",
            kind.describe(),
            match kind {
                KeyKind::Rsa { .. } => ", PKCS1",
                KeyKind::Ec(_) => ", TransparentECPublicKey",
                KeyKind::Ed25519 => "",
            }
        ))),
    }
}
