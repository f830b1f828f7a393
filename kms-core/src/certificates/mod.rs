//! X.509 certificates as pure functions: issuing one (rcgen, signed by a key held here through
//! [`Signer`]), reading one (x509-parser), a CSR's public key and subject, the openssl-style
//! extension text the reference CLI sends, chain validation, and PKCS#12 both ways
//! (p12-keystore). No ASN.1 is written here.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, IsCa, Issuer, PublicKeyData, SignatureAlgorithm, SigningKey, SubjectPublicKeyInfo,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::asymmetric::sign::{Input, Scheme, SigHash};
use crate::asymmetric::{self, Curve, KeyKind};
use crate::error::KmsError;

mod chain;
mod crl;
mod extensions;

pub use chain::{Archive, chain_problem, order_chain, pkcs12, read_pkcs12};
pub use crl::revocation_problem;
pub use extensions::{MAX_DAYS, Profile, parse_extensions};

pub(crate) fn invalid(what: impl std::fmt::Display) -> KmsError {
    KmsError::InvalidRequest(what.to_string())
}

/// A private key held here (in software or in the HSM), signing certificates with its kind's
/// usual scheme (RSA PKCS#1 v1.5 with SHA-256, ECDSA with the curve's hash, Ed25519).
pub struct Signer {
    kind: KeyKind,
    key: SignerKey,
    /// The subjectPublicKey bits of its SubjectPublicKeyInfo.
    public_bits: Vec<u8>,
}

enum SignerKey {
    Software(Zeroizing<Vec<u8>>),
    Hsm(std::sync::Arc<crate::hsm::Hsm>, String),
}

impl Signer {
    pub fn new(kind: KeyKind, pkcs8: Zeroizing<Vec<u8>>) -> Result<Self, KmsError> {
        let spki = asymmetric::public_of(kind, &pkcs8)?;
        Ok(Self {
            kind,
            key: SignerKey::Software(pkcs8),
            public_bits: public_bits(&spki)?,
        })
    }

    /// A private key inside the HSM (its label), with its public key `spki`.
    pub fn in_hsm(
        kind: KeyKind,
        spki: &[u8],
        hsm: std::sync::Arc<crate::hsm::Hsm>,
        label: String,
    ) -> Result<Self, KmsError> {
        Ok(Self {
            kind,
            key: SignerKey::Hsm(hsm, label),
            public_bits: public_bits(spki)?,
        })
    }

    fn scheme(&self) -> Scheme {
        match self.kind {
            KeyKind::Rsa { .. } => Scheme::RsaPkcs1(SigHash::Sha256),
            KeyKind::Ec(curve) => Scheme::Ecdsa(curve),
            KeyKind::Ed25519 => Scheme::Ed25519,
        }
    }
}

fn rcgen_algorithm(kind: KeyKind) -> &'static SignatureAlgorithm {
    match kind {
        KeyKind::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        KeyKind::Ec(Curve::P256) => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyKind::Ec(Curve::P384) => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyKind::Ec(Curve::P521) => &rcgen::PKCS_ECDSA_P521_SHA512,
        KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
    }
}

impl PublicKeyData for Signer {
    fn der_bytes(&self) -> &[u8] {
        &self.public_bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        rcgen_algorithm(self.kind)
    }
}

impl SigningKey for Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match &self.key {
            SignerKey::Software(pkcs8) => {
                asymmetric::sign::sign(self.scheme(), pkcs8, Input::Data(msg))
                    .map_err(|_| rcgen::Error::RingUnspecified)
            }
            SignerKey::Hsm(hsm, label) => hsm
                .sign(label, self.scheme(), Input::Data(msg))
                .map_err(|_| rcgen::Error::RingUnspecified),
        }
    }
}

/// The subjectPublicKey bits of an SPKI.
fn public_bits(spki: &[u8]) -> Result<Vec<u8>, KmsError> {
    use pkcs8::der::Decode;
    let info = pkcs8::SubjectPublicKeyInfoRef::from_der(spki)
        .map_err(|_| invalid("not a SubjectPublicKeyInfo"))?;
    Ok(info.subject_public_key.raw_bytes().to_vec())
}

/// A subject name: (attribute, value) pairs in order.
pub type Subject = Vec<(SubjectField, String)>;

/// The subject attributes KMIP's `CertificateAttributes` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectField {
    Cn,
    O,
    Ou,
    Email,
    C,
    St,
    L,
    Uid,
    SerialNumber,
    Title,
    Dc,
    DnQualifier,
}

impl SubjectField {
    pub const ALL: [(Self, &'static str, &'static str); 12] = [
        (Self::Cn, "Cn", "CN"),
        (Self::O, "O", "O"),
        (Self::Ou, "Ou", "OU"),
        (Self::Email, "Email", "emailAddress"),
        (Self::C, "C", "C"),
        (Self::St, "St", "ST"),
        (Self::L, "L", "L"),
        (Self::Uid, "Uid", "UID"),
        (Self::SerialNumber, "SerialNumber", "serialNumber"),
        (Self::Title, "Title", "title"),
        (Self::Dc, "Dc", "DC"),
        (Self::DnQualifier, "DnQualifier", "dnQualifier"),
    ];

    fn dn_type(self) -> DnType {
        match self {
            Self::Cn => DnType::CommonName,
            Self::O => DnType::OrganizationName,
            Self::Ou => DnType::OrganizationalUnitName,
            Self::C => DnType::CountryName,
            Self::St => DnType::StateOrProvinceName,
            Self::L => DnType::LocalityName,
            Self::Email => DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]),
            Self::Uid => DnType::CustomDnType(vec![0, 9, 2342, 19_200_300, 100, 1, 1]),
            Self::SerialNumber => DnType::CustomDnType(vec![2, 5, 4, 5]),
            Self::Title => DnType::CustomDnType(vec![2, 5, 4, 12]),
            Self::Dc => DnType::CustomDnType(vec![0, 9, 2342, 19_200_300, 100, 1, 25]),
            Self::DnQualifier => DnType::CustomDnType(vec![2, 5, 4, 46]),
        }
    }
}

/// Who signs a new certificate: the subject's own key, or a CA (its certificate and key).
pub enum IssuedBy<'a> {
    Itself(&'a Signer),
    Ca {
        certificate: &'a [u8],
        key: &'a Signer,
    },
}

fn distinguished_name(subject: &Subject) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (field, value) in subject {
        dn.push(field.dn_type(), value.as_str());
    }
    dn
}

fn params(
    subject: Option<&Subject>,
    base: CertificateParams,
    profile: &Profile,
) -> CertificateParams {
    let mut p = base;
    if let Some(subject) = subject {
        p.distinguished_name = distinguished_name(subject);
    }
    let now = time::OffsetDateTime::now_utc();
    // A minute of slack for clocks slightly behind ours.
    p.not_before = now - Duration::from_secs(60);
    p.not_after = now + Duration::from_secs(u64::from(profile.days) * 86_400);
    let mut serial = [0u8; 16];
    if let Ok(random) = crate::crypto::random(16) {
        serial.copy_from_slice(&random);
    }
    serial[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    p.is_ca = match profile.ca {
        Some(path) => IsCa::Ca(path.map_or(
            BasicConstraints::Unconstrained,
            BasicConstraints::Constrained,
        )),
        None => IsCa::NoCa,
    };
    if !profile.key_usage.is_empty() {
        p.key_usages = profile.key_usage.clone();
    }
    if !profile.extended_key_usage.is_empty() {
        p.extended_key_usages = profile.extended_key_usage.clone();
    }
    p.subject_alt_names.extend(profile.san.iter().cloned());
    p.use_authority_key_identifier_extension = true;
    p
}

fn rcgen_failed(e: rcgen::Error) -> KmsError {
    KmsError::Crypto(format!("issuing the certificate failed: {e}"))
}

/// Issues a certificate (DER) for the public key `spki` with `subject`, signed as `by` says.
/// `csr_params` carries what a CSR asked for (its subject and SANs).
pub fn issue(
    spki: &[u8],
    subject: Option<&Subject>,
    csr_params: Option<CertificateParams>,
    profile: &Profile,
    by: IssuedBy<'_>,
) -> Result<Vec<u8>, KmsError> {
    let p = params(subject, csr_params.unwrap_or_default(), profile);
    let cert = match by {
        IssuedBy::Itself(key) => p.self_signed(key).map_err(rcgen_failed)?,
        IssuedBy::Ca { certificate, key } => {
            let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(certificate), key)
                .map_err(rcgen_failed)?;
            let public = SubjectPublicKeyInfo::from_der(spki)
                .map_err(|e| invalid(format!("the subject's public key: {e}")))?;
            p.signed_by(&public, &issuer).map_err(rcgen_failed)?
        }
    };
    Ok(cert.der().to_vec())
}

/// A CSR (PEM or DER): its signature checked, its public key (SPKI) and what it asks for.
pub fn read_csr(data: &[u8], pem: bool) -> Result<(Vec<u8>, CertificateParams), KmsError> {
    let der = if pem {
        let text = std::str::from_utf8(data).map_err(|_| invalid("the CSR is not PEM text"))?;
        let block = ::pem::parse(text).map_err(|e| invalid(format!("the CSR is not PEM: {e}")))?;
        block.into_contents()
    } else {
        data.to_vec()
    };
    let parsed = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
        der.as_slice(),
    ))
    .map_err(|e| invalid(format!("the CSR: {e}")))?;
    let (_, request) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|_| invalid("the CSR does not parse"))?;
    let spki = request.certification_request_info.subject_pki.raw.to_vec();
    Ok((spki, parsed.params))
}

/// What this server records about a certificate.
pub struct Parsed {
    pub spki: Vec<u8>,
    pub kind: Option<KeyKind>,
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    pub self_signed: bool,
    pub ca: bool,
}

pub fn parse(der: &[u8]) -> Result<Parsed, KmsError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| invalid(format!("not an X.509 certificate (DER): {e}")))?;
    if !rest.is_empty() {
        return Err(invalid("trailing bytes after the certificate"));
    }
    let spki = cert.tbs_certificate.subject_pki.raw.to_vec();
    Ok(Parsed {
        kind: asymmetric::public_kind(&spki).ok(),
        spki,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        self_signed: cert.subject() == cert.issuer() && cert.verify_signature(None).is_ok(),
        ca: cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca),
    })
}

#[cfg(test)]
mod tests {
    use rcgen::KeyUsagePurpose;

    use super::*;

    fn signer(kind: KeyKind) -> (Signer, Vec<u8>) {
        let pair = asymmetric::generate(kind).unwrap_or_else(|e| panic!("{e}"));
        let spki = pair.public.clone();
        (
            Signer::new(kind, pair.private).unwrap_or_else(|e| panic!("{e}")),
            spki,
        )
    }

    #[test]
    fn a_ca_issues_a_leaf_that_validates() {
        let (root_key, root_spki) = signer(KeyKind::Ec(Curve::P256));
        let root_profile = Profile {
            days: 30,
            ca: Some(None),
            key_usage: vec![KeyUsagePurpose::KeyCertSign],
            ..Profile::default()
        };
        let subject = vec![(SubjectField::Cn, "root".to_owned())];
        let root = issue(
            &root_spki,
            Some(&subject),
            None,
            &root_profile,
            IssuedBy::Itself(&root_key),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (_, leaf_spki) = signer(KeyKind::Rsa { bits: 2048 });
        let mut leaf_profile = Profile {
            days: 10,
            ..Profile::default()
        };
        parse_extensions(
            "[ext]\nsubjectAltName = DNS:kms.example, IP:10.0.0.1\nextendedKeyUsage = serverAuth",
            &mut leaf_profile,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let leaf_subject = vec![
            (SubjectField::Cn, "leaf".to_owned()),
            (SubjectField::O, "Org".to_owned()),
        ];
        let leaf = issue(
            &leaf_spki,
            Some(&leaf_subject),
            None,
            &leaf_profile,
            IssuedBy::Ca {
                certificate: &root,
                key: &root_key,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let now = crate::object::now();
        assert_eq!(chain_problem(&[&leaf, &root], now).ok(), Some(None));
        assert!(chain_problem(&[&leaf, &root], now + 20 * 86_400).is_ok_and(|p| p.is_some()));
        assert!(chain_problem(&[&leaf], now).is_ok_and(|p| p.is_some()));
        let parsed = parse(&leaf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.spki, leaf_spki);
        assert!(parsed.subject.contains("CN=leaf") && !parsed.self_signed);
        let SignerKey::Software(root_pkcs8) = &root_key.key else {
            panic!("software key");
        };
        let p12 =
            pkcs12(root_pkcs8, std::slice::from_ref(&root), "pw").unwrap_or_else(|e| panic!("{e}"));
        let archive = read_pkcs12(&p12, "pw").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(archive.certificates, vec![root]);
        assert_eq!(
            asymmetric::private_kind(&archive.key).ok(),
            Some(KeyKind::Ec(Curve::P256))
        );
        assert!(read_pkcs12(&p12, "wrong").is_err());
        assert!(parse_extensions("nameConstraints = x", &mut Profile::default()).is_err());
    }
}
