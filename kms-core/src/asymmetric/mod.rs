//! Asymmetric keys as pure functions over DER: generation, the forms keys are imported and
//! exported in, signatures ([`sign`]) and RSA encryption ([`rsa`]). A private key is kept as
//! PKCS#8 (v1) and a public key as SubjectPublicKeyInfo; every other form is converted at the
//! edge. aws-lc-rs does the cryptography and the conversions; the PKCS#8 and SPKI envelopes
//! are read with the `pkcs8`/`spki` crates (no ASN.1 written here).

mod forms;
pub mod rsa;
pub mod sign;

pub use forms::{ec_point_to_spki, export_private, export_public, import_private, import_public};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKey as RsaPublicKey};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, Ed25519KeyPair,
    KeyPair as _, ParsedPublicKey,
};
use pkcs8::der::Decode;
use pkcs8::der::asn1::ObjectIdentifier;
use pkcs8::{PrivateKeyInfoRef, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use crate::error::KmsError;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// The NIST curves this KMS makes ECDSA/ECDH keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    pub const ALL: [Self; 3] = [Self::P256, Self::P384, Self::P521];

    pub fn bits(self) -> i32 {
        match self {
            Self::P256 => 256,
            Self::P384 => 384,
            Self::P521 => 521,
        }
    }

    /// The KMIP `RecommendedCurve` name.
    pub fn kmip(self) -> &'static str {
        match self {
            Self::P256 => "P256",
            Self::P384 => "P384",
            Self::P521 => "P521",
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Self::P256 => P256,
            Self::P384 => P384,
            Self::P521 => P521,
        }
    }

    /// ECDSA with the curve's own hash (the only pairing signed here).
    pub fn signing(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            Self::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }

    pub fn verification(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Self::P384 => &signature::ECDSA_P384_SHA384_ASN1,
            Self::P521 => &signature::ECDSA_P521_SHA512_ASN1,
        }
    }

    /// The curve a KMIP `RecommendedCurve` names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.kmip() == name)
    }

    fn of_bits(bits: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.bits() == bits)
    }
}

/// What an asymmetric key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { bits: i32 },
    Ec(Curve),
    Ed25519,
}

/// RSA modulus sizes this KMS generates.
pub const RSA_SIZES: [i32; 3] = [2048, 3072, 4096];

impl KeyKind {
    /// Its size, as the `CryptographicLength` attribute.
    pub fn bits(self) -> i32 {
        match self {
            Self::Rsa { bits } => bits,
            Self::Ec(curve) => curve.bits(),
            Self::Ed25519 => 256,
        }
    }

    /// The kind a stored key of this algorithm family and length is.
    pub fn of(family: Family, bits: i32) -> Option<Self> {
        match family {
            Family::Rsa => Some(Self::Rsa { bits }),
            Family::Ec => Curve::of_bits(bits).map(Self::Ec),
            Family::Ed25519 => Some(Self::Ed25519),
        }
    }

    pub fn family(self) -> Family {
        match self {
            Self::Rsa { .. } => Family::Rsa,
            Self::Ec(_) => Family::Ec,
            Self::Ed25519 => Family::Ed25519,
        }
    }

    /// The KMIP `RecommendedCurve` of an elliptic-curve key.
    pub fn curve_name(self) -> Option<&'static str> {
        match self {
            Self::Rsa { .. } => None,
            Self::Ec(curve) => Some(curve.kmip()),
            Self::Ed25519 => Some("CURVEED25519"),
        }
    }

    pub fn describe(self) -> String {
        match self {
            Self::Rsa { bits } => format!("RSA-{bits}"),
            Self::Ec(curve) => format!("EC {}", curve.kmip()),
            Self::Ed25519 => "Ed25519".to_owned(),
        }
    }
}

/// The three key families, as the object's algorithm records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Rsa,
    Ec,
    Ed25519,
}

/// A new key pair: the private key as PKCS#8, the public key as SPKI.
pub struct Pair {
    pub private: Zeroizing<Vec<u8>>,
    pub public: Vec<u8>,
}

fn failed(what: &str) -> impl Fn(aws_lc_rs::error::Unspecified) -> KmsError + '_ {
    move |_| KmsError::Crypto(format!("{what} failed"))
}

pub fn generate(kind: KeyKind) -> Result<Pair, KmsError> {
    let (private, public) = match kind {
        KeyKind::Rsa { bits } => {
            let size = match bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                other => {
                    return Err(KmsError::InvalidRequest(format!(
                        "an RSA key of {other} bits: this KMS makes 2048, 3072 or 4096"
                    )));
                }
            };
            let pair = RsaKeyPair::generate(size).map_err(failed("RSA key generation"))?;
            let private = pair.as_der().map_err(failed("PKCS#8 encoding"))?;
            let public = pair
                .public_key()
                .as_der()
                .map_err(failed("SPKI encoding"))?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        KeyKind::Ec(curve) => {
            let pair =
                EcdsaKeyPair::generate(curve.signing()).map_err(failed("EC key generation"))?;
            let private = pair.to_pkcs8v1().map_err(failed("PKCS#8 encoding"))?;
            let public = pair
                .public_key()
                .as_der()
                .map_err(failed("SPKI encoding"))?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        KeyKind::Ed25519 => {
            let pair = Ed25519KeyPair::generate().map_err(failed("Ed25519 key generation"))?;
            let private = pair.to_pkcs8v1().map_err(failed("PKCS#8 encoding"))?;
            let public = pair
                .public_key()
                .as_der()
                .map_err(failed("SPKI encoding"))?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
    };
    Ok(Pair {
        private: Zeroizing::new(private),
        public,
    })
}

fn invalid(what: &str) -> KmsError {
    KmsError::InvalidRequest(format!("the key material is not {what}"))
}

/// The kind of a PKCS#8 private key (read from its algorithm identifier).
pub fn private_kind(pkcs8: &[u8]) -> Result<KeyKind, KmsError> {
    let info = PrivateKeyInfoRef::from_der(pkcs8).map_err(|_| invalid("a PKCS#8 private key"))?;
    let (oid, params) = info
        .algorithm
        .oids()
        .map_err(|_| invalid("a PKCS#8 private key"))?;
    kind_of(oid, params, || {
        RsaKeyPair::from_pkcs8(pkcs8)
            .map(|k| bits_of(k.public_modulus_len()))
            .map_err(|_| invalid("a valid RSA private key (2048 to 8192 bits)"))
    })
}

/// The kind of an SPKI public key.
pub fn public_kind(spki: &[u8]) -> Result<KeyKind, KmsError> {
    let info = SubjectPublicKeyInfoRef::from_der(spki)
        .map_err(|_| invalid("a SubjectPublicKeyInfo public key"))?;
    let (oid, params) = info
        .algorithm
        .oids()
        .map_err(|_| invalid("a SubjectPublicKeyInfo public key"))?;
    kind_of(oid, params, || {
        aws_lc_rs::rsa::PublicEncryptingKey::from_der(spki)
            .map(|k| i32::try_from(k.key_size_bits()).unwrap_or(0))
            .map_err(|_| invalid("a valid RSA public key"))
    })
}

fn bits_of(modulus_bytes: usize) -> i32 {
    i32::try_from(modulus_bytes * 8).unwrap_or(0)
}

fn kind_of(
    oid: ObjectIdentifier,
    params: Option<ObjectIdentifier>,
    rsa_bits: impl FnOnce() -> Result<i32, KmsError>,
) -> Result<KeyKind, KmsError> {
    if oid == RSA_ENCRYPTION {
        return Ok(KeyKind::Rsa { bits: rsa_bits()? });
    }
    if oid == ED25519 {
        return Ok(KeyKind::Ed25519);
    }
    if oid == EC_PUBLIC_KEY {
        return Curve::ALL
            .into_iter()
            .find(|c| Some(c.oid()) == params)
            .map(KeyKind::Ec)
            .ok_or_else(|| {
                KmsError::NotSupported(format!(
                    "an elliptic-curve key on the curve {}: this KMS supports P-256, P-384 and P-521",
                    params.map_or_else(|| "(none named)".to_owned(), |p| p.to_string())
                ))
            });
    }
    Err(KmsError::NotSupported(format!(
        "a key of algorithm {oid}: this KMS supports RSA, EC (P-256, P-384, P-521) and Ed25519"
    )))
}

/// The public key (SPKI) of a PKCS#8 private key.
pub fn public_of(kind: KeyKind, pkcs8: &[u8]) -> Result<Vec<u8>, KmsError> {
    let der = match kind {
        KeyKind::Rsa { .. } => RsaKeyPair::from_pkcs8(pkcs8)
            .map_err(|_| invalid("a valid RSA private key"))?
            .public_key()
            .as_der(),
        KeyKind::Ec(curve) => EcdsaKeyPair::from_pkcs8(curve.signing(), pkcs8)
            .map_err(|_| invalid("a valid EC private key"))?
            .public_key()
            .as_der(),
        KeyKind::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| invalid("a valid Ed25519 private key"))?
            .public_key()
            .as_der(),
    };
    Ok(der.map_err(failed("SPKI encoding"))?.as_ref().to_vec())
}

/// The verification key of an SPKI public key, checked to load.
pub fn verifying_key(kind: KeyKind, spki: &[u8]) -> Result<(), KmsError> {
    let loaded = match kind {
        KeyKind::Rsa { .. } => RsaPublicKey::from_der(spki).is_ok(),
        KeyKind::Ec(curve) => ParsedPublicKey::new(curve.verification(), spki).is_ok(),
        KeyKind::Ed25519 => ParsedPublicKey::new(&signature::ED25519, spki).is_ok(),
    };
    if loaded {
        Ok(())
    } else {
        Err(invalid(&format!("a valid {} public key", kind.describe())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_generates_and_converts_both_ways() {
        for kind in [
            KeyKind::Rsa { bits: 2048 },
            KeyKind::Ec(Curve::P256),
            KeyKind::Ec(Curve::P384),
            KeyKind::Ec(Curve::P521),
            KeyKind::Ed25519,
        ] {
            let pair = generate(kind).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(private_kind(&pair.private).ok(), Some(kind));
            assert_eq!(public_kind(&pair.public).ok(), Some(kind));
            assert_eq!(
                public_of(kind, &pair.private).ok(),
                Some(pair.public.clone())
            );
            let native = match kind {
                KeyKind::Rsa { .. } => "PKCS1",
                KeyKind::Ec(_) => "ECPrivateKey",
                KeyKind::Ed25519 => "PKCS8",
            };
            let exported =
                export_private(kind, &pair.private, native).unwrap_or_else(|e| panic!("{e}"));
            let (back_kind, back) =
                import_private(native, &exported).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back_kind, kind);
            assert_eq!(public_of(kind, &back).ok(), Some(pair.public.clone()));
            if let KeyKind::Rsa { .. } = kind {
                let pkcs1 = export_public(kind, &pair.public, "PKCS1").unwrap_or_default();
                assert_eq!(
                    import_public("PKCS1", &pkcs1).ok(),
                    Some((kind, pair.public.clone()))
                );
            }
            if let KeyKind::Ec(curve) = kind {
                let point =
                    export_public(kind, &pair.public, "TransparentECPublicKey").unwrap_or_default();
                assert_eq!(point.first(), Some(&4));
                assert_eq!(
                    ec_point_to_spki(curve, &point).ok(),
                    Some(pair.public.clone())
                );
            }
        }
        assert!(import_private("PKCS8", b"not a key").is_err());
        assert!(
            export_private(KeyKind::Ed25519, &[], "PKCS1")
                .is_err_and(|e| e.to_string().contains("KeyFormatType PKCS1"))
        );
    }
}
