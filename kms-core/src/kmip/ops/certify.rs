//! Certify: an X.509 certificate for a CSR, for a public key held here, or for a key pair made
//! for it; self-signed (a CA by default) or signed by a CA whose certificate and private key
//! are held here (`Link CertificateLink` or `PrivateKeyLink`). Subject from
//! `CertificateAttributes` (or the CSR), validity from the reference's `requested_validity_days`,
//! extensions from its `x509_extension_file`.

use rcgen::KeyUsagePurpose;

use crate::certificates::{self, IssuedBy, MAX_DAYS, Profile};
use crate::error::KmsError;
use crate::kmip::attributes::{self, Purpose, RequestAttributes};
use crate::kmip::build::{structure, text};
use crate::kmip::certs::{add_link, link};
use crate::kmip::creation::new_uid;
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::ops::create_key_pair;
use crate::kmip::ttlv::Ttlv;
use crate::object::{ManagedObject, ObjectType, State};

pub struct Request<'a> {
    pub id: Option<&'a str>,
    /// The CSR and whether it is PEM (else DER, `PKCS10`).
    pub csr: Option<(&'a [u8], bool)>,
    pub attributes: RequestAttributes<'a>,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "Certify")?;
        let id = f.text("UniqueIdentifier")?.filter(|i| !i.is_empty());
        let csr_type = f.enumeration("CertificateRequestType")?;
        let csr_value = f.bytes("CertificateRequestValue")?;
        let attributes = attributes::parse(f.node("Attributes")?, "Certify", Purpose::Certify)?;
        f.finish()?;
        let csr = match (csr_type, csr_value) {
            (None, None) => None,
            (Some("PEM"), Some(v)) => Some((v, true)),
            (Some("PKCS10"), Some(v)) => Some((v, false)),
            (Some(other), Some(_)) => {
                return Err(unsupported(
                    "Certify",
                    format!("CertificateRequestType {other}"),
                ));
            }
            _ => {
                return Err(KmsError::InvalidRequest(
                    "Certify: CertificateRequestType and CertificateRequestValue go together"
                        .into(),
                ));
            }
        };
        if csr.is_some() && id.is_some() {
            return Err(KmsError::InvalidRequest(
                "Certify: give a CSR or the UniqueIdentifier of a public key, not both".into(),
            ));
        }
        Ok(Self {
            id,
            csr,
            attributes,
        })
    }
}

/// The key a certificate is for.
enum Subject {
    Csr(rcgen::CertificateParams),
    /// Held here: the public key, and the private key when it is held too.
    Stored {
        public: ManagedObject,
        private: Option<ManagedObject>,
    },
    /// Made for this certificate, stored with it.
    Generated {
        private: ManagedObject,
        public: ManagedObject,
    },
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let r = Request::parse(node)?;
    let a = &r.attributes;
    if let Some(t) = a.object_type.filter(|t| {
        !matches!(
            t,
            ObjectType::PrivateKey | ObjectType::PublicKey | ObjectType::Certificate
        )
    }) {
        return Err(KmsError::InvalidRequest(format!(
            "Certify: ObjectType {} in the attributes",
            t.name()
        )));
    }
    let (mut issuer_cert_uid, mut issuer_key_uid) = (None, None);
    for l in &a.links {
        match l.link_type.as_str() {
            "CertificateLink" => issuer_cert_uid = Some(l.uid.clone()),
            "PrivateKeyLink" => issuer_key_uid = Some(l.uid.clone()),
            other => return Err(unsupported("Certify", format!("Link {other}"))),
        }
    }
    let (spki, subject_key) = subject(kms, user, &r).await?;
    let days = a.validity_days.unwrap_or(365);
    let days = u32::try_from(days)
        .ok()
        .filter(|d| (1..=MAX_DAYS).contains(d))
        .ok_or_else(|| {
            KmsError::InvalidRequest(format!(
                "Certify: requested_validity_days {days}: from 1 to {MAX_DAYS}"
            ))
        })?;
    let self_signed = issuer_cert_uid.is_none() && issuer_key_uid.is_none();
    let mut profile = Profile {
        days,
        ..Profile::default()
    };
    if self_signed {
        // A self-signed certificate is a root: it can sign others (the reference's use).
        profile.ca = Some(None);
        profile.key_usage = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    }
    if let Some(text) = &a.extensions {
        certificates::parse_extensions(text, &mut profile)?;
    }
    let given_subject = a.subject.clone().filter(|s| !s.is_empty());
    let csr_params = match &subject_key {
        Subject::Csr(params) => {
            if given_subject.is_some() {
                return Err(KmsError::InvalidRequest(
                    "Certify: the subject comes from the CSR; leave CertificateAttributes empty"
                        .into(),
                ));
            }
            Some(params.clone())
        }
        _ => {
            if given_subject.is_none() {
                return Err(KmsError::InvalidRequest(
                    "Certify: CertificateAttributes must name the subject (CertificateSubjectCn, ...)".into(),
                ));
            }
            None
        }
    };
    // The issuer: a CA held here, or the subject's own private key.
    let mut issuer_cert = None;
    let issuer_key = if self_signed {
        let own = match &subject_key {
            Subject::Generated { private, .. } => Some(private.clone()),
            Subject::Stored { private, .. } => private.clone(),
            Subject::Csr(_) => None,
        };
        own.ok_or_else(|| {
            KmsError::InvalidRequest(
                "Certify: a self-signed certificate needs its private key in this KMS; name an issuer (Link CertificateLink) instead".into(),
            )
        })?
    } else {
        let cert = match (&issuer_cert_uid, &issuer_key_uid) {
            (Some(uid), _) => Some(uid.clone()),
            (None, Some(key_uid)) => {
                let key = kms.store.load(key_uid).await?;
                key.as_ref().and_then(|k| link(k, "CertificateLink"))
            }
            (None, None) => None,
        }
        .ok_or_else(|| {
            KmsError::InvalidRequest(
                "Certify: the issuer's private key has no certificate in this KMS".into(),
            )
        })?;
        let cert = kms
            .store
            .load(&cert)
            .await?
            .filter(|c| c.object_type == ObjectType::Certificate && !c.state.is_destroyed())
            .ok_or_else(|| KmsError::ObjectNotFound(cert.clone()))?;
        let key_uid = issuer_key_uid
            .clone()
            .or_else(|| link(&cert, "PrivateKeyLink"))
            .ok_or_else(|| {
                KmsError::InvalidRequest(format!(
                    "Certify: the issuer certificate {} has no private key in this KMS",
                    cert.uid
                ))
            })?;
        issuer_cert_uid = Some(cert.uid.clone());
        issuer_cert = Some(cert);
        kms.resolve_one(user, &key_uid, Operation::Certify, || {
            KmsError::ObjectNotFound(key_uid.clone())
        })
        .await?
    };
    if issuer_key.state != State::Active {
        return Err(KmsError::PermissionDenied(format!(
            "Certify: the signing key {} is {}",
            issuer_key.uid,
            issuer_key.state.name()
        )));
    }
    let signer = kms.signer(&issuer_key).await?;
    let issuer_der = match &issuer_cert {
        Some(c) => Some(kms.material(c)?),
        None => None,
    };
    let by = match &issuer_der {
        Some(der) => IssuedBy::Ca {
            certificate: der,
            key: &signer,
        },
        None => IssuedBy::Itself(&signer),
    };
    let der = certificates::issue(&spki, given_subject.as_ref(), csr_params, &profile, by)?;
    let mut cert = kms.new_certificate(
        user,
        new_uid(a.uid)?,
        &der,
        a.tags.clone().unwrap_or_default(),
        a.activation_date,
    )?;
    if let Some(issuer) = issuer_cert_uid.filter(|_| !self_signed) {
        add_link(&mut cert, "CertificateLink", &issuer);
    }
    let uid = cert.uid.clone();
    match subject_key {
        Subject::Csr(_) => kms.store.insert(&cert).await?,
        Subject::Generated {
            mut private,
            mut public,
        } => {
            add_link(&mut cert, "PrivateKeyLink", &private.uid);
            add_link(&mut cert, "PublicKeyLink", &public.uid);
            add_link(&mut private, "CertificateLink", &uid);
            add_link(&mut public, "CertificateLink", &uid);
            kms.store.insert_all(&[&private, &public, &cert]).await?;
        }
        Subject::Stored {
            mut public,
            private,
        } => {
            add_link(&mut cert, "PublicKeyLink", &public.uid);
            if let Some(p) = &private {
                add_link(&mut cert, "PrivateKeyLink", &p.uid);
            }
            kms.store.insert(&cert).await?;
            add_link(&mut public, "CertificateLink", &uid);
            kms.store.update(&public).await?;
            if let Some(mut p) = private {
                add_link(&mut p, "CertificateLink", &uid);
                kms.store.update(&p).await?;
            }
        }
    }
    Ok(Done::new(
        structure("CertifyResponse", vec![text("UniqueIdentifier", &uid)]),
        uid.clone(),
    ))
}

/// The public key (SPKI) to certify, and where it comes from.
async fn subject(kms: &Kms, user: &str, r: &Request<'_>) -> Result<(Vec<u8>, Subject), KmsError> {
    let a = &r.attributes;
    if !a.names.is_empty() || a.wrapping_key_id.is_some() {
        return Err(unsupported(
            "Certify",
            "Name or wrapping_key_id on a certificate",
        ));
    }
    // Key attributes describe a key pair made for the certificate: with a CSR or a key held
    // here there is none to apply them to.
    let key_attribute = [
        a.algorithm.map(|_| "CryptographicAlgorithm"),
        a.length.map(|_| "CryptographicLength"),
        a.curve.map(|_| "CryptographicDomainParameters"),
        a.usage_mask.map(|_| "CryptographicUsageMask"),
        a.sensitive.map(|_| "Sensitive"),
        a.key_format.map(|_| "KeyFormatType"),
    ]
    .into_iter()
    .flatten()
    .next();
    if let (Some(name), true) = (key_attribute, r.csr.is_some() || r.id.is_some()) {
        return Err(KmsError::InvalidRequest(format!(
            "Certify: {name} applies to a key pair made for the certificate, not to a CSR or a key held here"
        )));
    }
    if let Some((csr, pem)) = r.csr {
        let (spki, params) = certificates::read_csr(csr, pem)?;
        crate::asymmetric::public_kind(&spki)?;
        return Ok((spki, Subject::Csr(params)));
    }
    if let Some(id) = r.id {
        let o = kms
            .resolve_one(user, id, Operation::Certify, || {
                KmsError::ObjectNotFound(id.to_owned())
            })
            .await?;
        let (public, private) = match o.object_type {
            ObjectType::PublicKey => {
                let private = match link(&o, "PrivateKeyLink") {
                    Some(uid) => kms
                        .resolve(user, &uid, Operation::Certify)
                        .await?
                        .into_iter()
                        .next(),
                    None => None,
                };
                (o, private)
            }
            ObjectType::PrivateKey => {
                let uid = link(&o, "PublicKeyLink").ok_or_else(|| {
                    KmsError::InvalidRequest(format!(
                        "Certify: private key {} has no public key in this KMS; name the public key",
                        o.uid
                    ))
                })?;
                let public = kms
                    .store
                    .load(&uid)
                    .await?
                    .ok_or_else(|| KmsError::ObjectNotFound(uid.clone()))?;
                (public, Some(o))
            }
            other => {
                return Err(KmsError::InvalidRequest(format!(
                    "Certify: {} is a {}, not a public key",
                    o.uid,
                    other.name()
                )));
            }
        };
        let kind = crate::kmip::pair::require_kind(&public, "Certify")?;
        let spki = kms.public_material(&public, kind)?;
        return Ok((spki, Subject::Stored { public, private }));
    }
    if a.algorithm.is_none() {
        return Err(KmsError::InvalidRequest(
            "Certify: give a CSR, the UniqueIdentifier of a public key, or a CryptographicAlgorithm to make a key pair".into(),
        ));
    }
    // A key pair made for the certificate, with the request's key attributes and tags.
    let pair_request = create_key_pair::Request {
        common: RequestAttributes {
            algorithm: a.algorithm,
            length: a.length,
            curve: a.curve,
            usage_mask: a.usage_mask,
            activation_date: a.activation_date,
            key_format: a.key_format,
            sensitive: a.sensitive,
            tags: a.tags.clone(),
            ..RequestAttributes::default()
        },
        private: RequestAttributes::default(),
        public: RequestAttributes::default(),
    };
    let (private, public) = create_key_pair::build(kms, user, &pair_request).await?;
    let spki = kms.public_material(
        &public,
        crate::kmip::pair::require_kind(&public, "Certify")?,
    )?;
    Ok((spki, Subject::Generated { private, public }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{fails, kms, leaf};

    #[tokio::test]
    async fn key_attributes_without_a_key_to_make_are_refused() {
        let kms = kms().await;
        let request = json!({"tag": "Certify", "value": [
            leaf("UniqueIdentifier", "TextString", json!("some-public-key")),
            {"tag": "Attributes", "value": [
                leaf("CryptographicAlgorithm", "Enumeration", json!("RSA")),
                {"tag": "CertificateAttributes", "value": [
                    leaf("CertificateSubjectCn", "TextString", json!("x"))]},
            ]},
        ]});
        let message = fails(&kms, "alice", request).await;
        assert!(
            message.contains("CryptographicAlgorithm applies to a key pair"),
            "{message}"
        );
    }
}
