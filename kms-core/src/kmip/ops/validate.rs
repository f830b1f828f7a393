//! Validate: is a certificate chain good now (or at `ValidityDate`)? The certificates are
//! given (`Certificate`) or held here (`UniqueIdentifier`, needing the validate grant); the
//! issuers of held ones are followed through their `CertificateLink`s. Valid when the chain
//! from the first certificate reaches a self-signed root, every signature verifies, every
//! issuer is a CA, every certificate is within its dates, none held here is revoked or
//! destroyed, and none is listed in the CRL its CRL distribution points name (fetched then;
//! see `certificates::crl`).

use crate::certificates;
use crate::error::KmsError;
use crate::kmip::build::{enumeration, structure};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::ttlv::Ttlv;
use crate::object::{ObjectType, State, now};

/// The most certificates one request may name.
const MAX_CERTIFICATES: usize = 16;

pub struct Request<'a> {
    pub given: Vec<&'a [u8]>,
    pub ids: Vec<&'a str>,
    pub at: Option<i64>,
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "Validate")?;
        let mut given = Vec::new();
        for c in f.all("Certificate") {
            let mut c = Fields::of(c, "Validate.Certificate")?;
            if let Some(t) = c.enumeration("CertificateType")?.filter(|t| *t != "X509") {
                return Err(unsupported("Validate", format!("CertificateType {t}")));
            }
            given.push(c.bytes("CertificateValue")?.ok_or_else(|| {
                KmsError::InvalidRequest("Validate.Certificate: missing CertificateValue".into())
            })?);
            c.finish()?;
        }
        let mut ids = Vec::new();
        for id in f.all("UniqueIdentifier") {
            match &id.value {
                crate::kmip::ttlv::Value::TextString(t) => ids.push(t.as_str()),
                _ => {
                    return Err(KmsError::InvalidRequest(
                        "Validate: UniqueIdentifier must be a TextString".into(),
                    ));
                }
            }
        }
        let at = f.date("ValidityDate")?;
        f.finish()?;
        if given.is_empty() && ids.is_empty() {
            return Err(KmsError::InvalidRequest(
                "Validate: give a Certificate or a UniqueIdentifier".into(),
            ));
        }
        if given.len() + ids.len() > MAX_CERTIFICATES {
            return Err(KmsError::InvalidRequest(format!(
                "Validate: at most {MAX_CERTIFICATES} certificates"
            )));
        }
        Ok(Self { given, ids, at })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let r = Request::parse(node)?;
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut retired: Vec<Vec<u8>> = Vec::new();
    let mut uids = Vec::new();
    for id in &r.ids {
        let o = kms
            .resolve_one(user, id, Operation::Validate, || {
                KmsError::ObjectNotFound((*id).to_owned())
            })
            .await?;
        if o.object_type != ObjectType::Certificate {
            return Err(KmsError::InvalidRequest(format!(
                "Validate: {} is a {}, not a certificate",
                o.uid,
                o.object_type.name()
            )));
        }
        uids.push(o.uid.clone());
        // Its issuers held here come along (they are public).
        let mut next = Some(o);
        while let Some(c) = next.take() {
            if pool.len() >= MAX_CERTIFICATES {
                break;
            }
            let der = if c.state.is_destroyed() {
                return Ok(answer(false, &uids, "a certificate is destroyed"));
            } else {
                kms.material(&c)?.to_vec()
            };
            if !matches!(c.state, State::Active | State::PreActive) {
                retired.push(der.clone());
            }
            if !pool.contains(&der) {
                pool.push(der);
            }
            next = match crate::kmip::certs::link(&c, "CertificateLink") {
                Some(uid) => kms.store.load(&uid).await?,
                None => None,
            };
        }
    }
    // Given certificates go first: the first given one is the leaf.
    let mut ordered: Vec<Vec<u8>> = r.given.iter().map(|g| g.to_vec()).collect();
    ordered.extend(
        pool.into_iter()
            .filter(|d| !r.given.contains(&d.as_slice())),
    );
    let chain = certificates::order_chain(&ordered)?;
    if let Some(bad) = chain.iter().find(|c| retired.contains(c)) {
        let subject = certificates::parse(bad)
            .map(|p| p.subject)
            .unwrap_or_default();
        return Ok(answer(false, &uids, &format!("{subject} is revoked")));
    }
    let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let at = r.at.unwrap_or_else(now);
    let mut problem = certificates::chain_problem(&refs, at)?;
    if problem.is_none() {
        problem = certificates::revocation_problem(&chain, at, now()).await?;
    }
    Ok(match problem {
        None => answer(true, &uids, ""),
        Some(why) => answer(false, &uids, &why),
    })
}

fn answer(valid: bool, uids: &[String], why: &str) -> Done {
    if !why.is_empty() {
        tracing::info!(target: "audit", uids = %uids.join(","), reason = %why, "certificate chain not valid");
    }
    Done::new(
        structure(
            "ValidateResponse",
            vec![enumeration(
                "ValidityIndicator",
                if valid { "Valid" } else { "Invalid" },
            )],
        ),
        uids.join(","),
    )
}
