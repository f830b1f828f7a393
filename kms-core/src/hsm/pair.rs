//! Key pairs that live in the HSM: generated inside it (RSA, EC on P-256/P-384/P-521), the
//! private key sensitive and never extractable, its public key read out as SPKI; signing and
//! RSA decryption run inside the HSM. Both token objects carry the key's label.

use aws_lc_rs::encoding::AsDer;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use pkcs8::der::{Decode, Encode};
use zeroize::Zeroizing;

use super::token::{classify, op};
use super::{Hsm, HsmError};
use crate::asymmetric::rsa::{OaepHash, RsaScheme};
use crate::asymmetric::sign::{Input, Scheme, SigHash};
use crate::asymmetric::{Curve, KeyKind};

fn curve_oid(curve: Curve) -> &'static str {
    match curve {
        Curve::P256 => "1.2.840.10045.3.1.7",
        Curve::P384 => "1.3.132.0.34",
        Curve::P521 => "1.3.132.0.35",
    }
}

/// The objects of class `class` labelled `label`.
fn find(session: &Session, class: ObjectClass, label: &str) -> Result<Vec<ObjectHandle>, HsmError> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| classify(&e))
}

fn one(found: &[ObjectHandle], label: &str) -> Result<ObjectHandle, HsmError> {
    match found {
        [handle] => Ok(*handle),
        other => Err(HsmError::Operation(format!(
            "{} private key(s) labelled {label:?} in the HSM",
            other.len()
        ))),
    }
}

/// The SPKI of a token public key.
fn public_spki(session: &Session, key: ObjectHandle, kind: KeyKind) -> Result<Vec<u8>, HsmError> {
    match kind {
        KeyKind::Rsa { .. } => {
            let attrs = session
                .get_attributes(
                    key,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(|e| classify(&e))?;
            let (mut n, mut e) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Modulus(v) => n = v,
                    Attribute::PublicExponent(v) => e = v,
                    _ => {}
                }
            }
            let components = aws_lc_rs::rsa::PublicKeyComponents { n, e };
            let der = components
                .as_der()
                .map_err(|_| op("the HSM's RSA public key does not encode"))?;
            Ok(der.as_ref().to_vec())
        }
        KeyKind::Ec(curve) => {
            let attrs = session
                .get_attributes(key, &[AttributeType::EcPoint])
                .map_err(|e| classify(&e))?;
            let Some(Attribute::EcPoint(wrapped)) = attrs.into_iter().next() else {
                return Err(op("the HSM gave no EC point"));
            };
            // CKA_EC_POINT is the DER OCTET STRING holding the point.
            let point = <&pkcs8::der::asn1::OctetStringRef>::from_der(&wrapped)
                .map_err(|_| op("the HSM's EC point is not an OCTET STRING"))?;
            crate::asymmetric::ec_point_to_spki(curve, point.as_bytes())
                .map_err(|e| op(e.to_string()))
        }
        KeyKind::Ed25519 => Err(HsmError::Refused(
            "Ed25519 key pairs in the HSM are not supported (RSA and EC are)".into(),
        )),
    }
}

impl Hsm {
    /// Generates a key pair labelled `label` inside the HSM; its public key as SPKI.
    pub fn create_key_pair(&self, label: &str, kind: KeyKind) -> Result<Vec<u8>, HsmError> {
        if label == self.kek_label() {
            return Err(HsmError::Refused(format!(
                "the label {label:?} is the HSM's key-encryption key; choose another label"
            )));
        }
        let id = label.as_bytes().to_vec();
        let (mechanism, mut public, private_usage) = match kind {
            KeyKind::Rsa { bits } => (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(Ulong::from(u64::try_from(bits).unwrap_or(2048))),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                    Attribute::Encrypt(true),
                ],
                vec![Attribute::Decrypt(true)],
            ),
            KeyKind::Ec(curve) => {
                let oid = pkcs8::der::asn1::ObjectIdentifier::new_unwrap(curve_oid(curve));
                let mut params = [0u8; 16];
                let encoded = oid
                    .encode_to_slice(&mut params)
                    .map_err(|_| op("curve OID"))?
                    .to_vec();
                (
                    Mechanism::EccKeyPairGen,
                    vec![Attribute::EcParams(encoded)],
                    vec![],
                )
            }
            KeyKind::Ed25519 => {
                return Err(HsmError::Refused(
                    "Ed25519 key pairs in the HSM are not supported (RSA and EC are)".into(),
                ));
            }
        };
        public.extend([
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Label(id.clone()),
            Attribute::Id(id.clone()),
        ]);
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(id.clone()),
            Attribute::Id(id),
        ];
        private.extend(private_usage);
        self.with_session(|session| {
            if !find(session, ObjectClass::PRIVATE_KEY, label)?.is_empty()
                || !super::token::find_key(session, label)?.is_empty()
            {
                return Err(HsmError::Refused(format!(
                    "a key labelled {label:?} already exists in the HSM"
                )));
            }
            let (public_key, _) = session
                .generate_key_pair(&mechanism, &public, &private)
                .map_err(|e| classify(&e))?;
            public_spki(session, public_key, kind)
        })
    }

    /// Removes both objects of the key pair labelled `label`.
    pub fn destroy_key_pair(&self, label: &str) -> Result<(), HsmError> {
        self.with_session(|session| {
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                for handle in find(session, class, label)? {
                    session.destroy_object(handle).map_err(|e| classify(&e))?;
                }
            }
            Ok(())
        })
    }

    /// Signs inside the HSM with the private key labelled `label`: RSA with the combined
    /// hash-and-sign mechanisms, ECDSA over a digest computed here (returned DER-encoded, as
    /// software signatures are).
    pub fn sign(&self, label: &str, scheme: Scheme, input: Input<'_>) -> Result<Vec<u8>, HsmError> {
        let pss = |hash: MechanismType, mgf: PkcsMgfType, len: u64| PkcsPssParams {
            hash_alg: hash,
            mgf,
            s_len: Ulong::from(len),
        };
        let hash_of = |h: SigHash, data: &[u8]| {
            let alg = match h {
                SigHash::Sha256 => &aws_lc_rs::digest::SHA256,
                SigHash::Sha384 => &aws_lc_rs::digest::SHA384,
                SigHash::Sha512 => &aws_lc_rs::digest::SHA512,
            };
            aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
        };
        let (mechanism, message) = match (scheme, input) {
            (_, Input::Digest(_)) if !matches!(scheme, Scheme::Ecdsa(_)) => {
                return Err(HsmError::Refused(
                    "DigestedData with an RSA key in the HSM is not supported (give the data)"
                        .into(),
                ));
            }
            (Scheme::RsaPss(SigHash::Sha256), Input::Data(d)) => (
                Mechanism::Sha256RsaPkcsPss(pss(
                    MechanismType::SHA256,
                    PkcsMgfType::MGF1_SHA256,
                    32,
                )),
                d.to_vec(),
            ),
            (Scheme::RsaPss(SigHash::Sha384), Input::Data(d)) => (
                Mechanism::Sha384RsaPkcsPss(pss(
                    MechanismType::SHA384,
                    PkcsMgfType::MGF1_SHA384,
                    48,
                )),
                d.to_vec(),
            ),
            (Scheme::RsaPss(SigHash::Sha512), Input::Data(d)) => (
                Mechanism::Sha512RsaPkcsPss(pss(
                    MechanismType::SHA512,
                    PkcsMgfType::MGF1_SHA512,
                    64,
                )),
                d.to_vec(),
            ),
            (Scheme::RsaPkcs1(SigHash::Sha256), Input::Data(d)) => {
                (Mechanism::Sha256RsaPkcs, d.to_vec())
            }
            (Scheme::RsaPkcs1(SigHash::Sha384), Input::Data(d)) => {
                (Mechanism::Sha384RsaPkcs, d.to_vec())
            }
            (Scheme::RsaPkcs1(SigHash::Sha512), Input::Data(d)) => {
                (Mechanism::Sha512RsaPkcs, d.to_vec())
            }
            (Scheme::Ecdsa(curve), input) => {
                let hash = match curve {
                    Curve::P256 => SigHash::Sha256,
                    Curve::P384 => SigHash::Sha384,
                    Curve::P521 => SigHash::Sha512,
                };
                let digest = match input {
                    Input::Data(d) => hash_of(hash, d),
                    Input::Digest(d) => d.to_vec(),
                };
                (Mechanism::Ecdsa, digest)
            }
            (Scheme::Ed25519, _) => {
                return Err(HsmError::Refused(
                    "Ed25519 in the HSM is not supported".into(),
                ));
            }
            _ => return Err(op("unreachable signature scheme")),
        };
        let raw = self.with_session(|session| {
            let key = one(&find(session, ObjectClass::PRIVATE_KEY, label)?, label)?;
            session
                .sign(&mechanism, key, &message)
                .map_err(|e| classify(&e))
        })?;
        if !matches!(scheme, Scheme::Ecdsa(_)) {
            return Ok(raw);
        }
        // PKCS#11 gives r ‖ s; X.509 and openssl use the DER SEQUENCE of two INTEGERs.
        let (r, s) = raw.split_at(raw.len() / 2);
        Ok(yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_bigint_bytes(r, true);
                w.next().write_bigint_bytes(s, true);
            });
        }))
    }

    /// RSA decryption inside the HSM (OAEP or PKCS#1 v1.5).
    pub fn rsa_decrypt(
        &self,
        label: &str,
        scheme: RsaScheme,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let oaep = |h: OaepHash| {
            let (hash, mgf) = match h {
                OaepHash::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
                OaepHash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
                OaepHash::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
                OaepHash::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
            };
            Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
        };
        let mechanism = match scheme {
            RsaScheme::Oaep(h) => oaep(h),
            RsaScheme::Pkcs1v15 => Mechanism::RsaPkcs,
            RsaScheme::AesKeyWrap(_) => {
                return Err(HsmError::Refused(
                    "CKM_RSA_AES_KEY_WRAP with an HSM key is not supported (OAEP and PKCS#1 v1.5 are)"
                        .into(),
                ));
            }
        };
        self.with_session(|session| {
            let key = one(&find(session, ObjectClass::PRIVATE_KEY, label)?, label)?;
            session
                .decrypt(&mechanism, key, data)
                .map(Zeroizing::new)
                .map_err(|e| {
                    use cryptoki::error::{Error, RvError};
                    match (&e, classify(&e)) {
                        // The token does not take these parameters (SoftHSM2 2.6 does OAEP
                        // with SHA-1 only): say so, it reveals nothing about the data.
                        (
                            Error::Pkcs11(
                                RvError::ArgumentsBad
                                | RvError::MechanismInvalid
                                | RvError::MechanismParamInvalid,
                                _,
                            ),
                            _,
                        ) => HsmError::Refused(format!(
                            "the HSM does not support {scheme:?} decryption ({e})"
                        )),
                        (_, HsmError::Operation(_)) => {
                            HsmError::Refused("RSA decryption failed".into())
                        }
                        (_, other) => other,
                    }
                })
        })
    }
}
