//! Revocation by CRL. A certificate that names CRL distribution points is checked against the
//! CRL published there, fetched over HTTP(S) when Validate runs (as the reference does). The
//! check fails closed: a CRL that cannot be fetched, is not signed by the certificate's
//! issuer, is stale, or carries a critical extension we do not understand makes the chain
//! Invalid, with the reason.

use std::sync::OnceLock;
use std::time::Duration;

use x509_parser::prelude::{
    DistributionPointName, FromDer, GeneralName, ParsedExtension, X509Certificate,
};
use x509_parser::revocation_list::CertificateRevocationList;

use super::invalid;
use crate::error::KmsError;

/// The largest CRL fetched.
pub const MAX_CRL_BYTES: usize = 8 << 20;
/// Connecting and reading one CRL together.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many locations are tried per certificate.
const MAX_LOCATIONS: usize = 4;

/// The http(s) locations of `cert`'s CRL; `None` when it names no distribution point, an
/// empty list when it names only others (LDAP, relative names), which cannot be fetched.
pub fn crl_locations(cert: &X509Certificate<'_>) -> Option<Vec<String>> {
    let mut found = None;
    for ext in cert.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        let list: &mut Vec<String> = found.get_or_insert_with(Vec::new);
        for point in points.iter() {
            let Some(DistributionPointName::FullName(names)) = &point.distribution_point else {
                continue;
            };
            for name in names {
                if let GeneralName::URI(uri) = name
                    && (uri.starts_with("http://") || uri.starts_with("https://"))
                {
                    list.push((*uri).to_owned());
                }
            }
        }
    }
    found
}

/// Why the CRL `data` (DER or PEM) revokes `cert` at `at` or cannot be trusted, or `None`
/// when it is a current CRL of `issuer` that does not list `cert`. `now` judges freshness.
pub fn crl_problem(
    data: &[u8],
    cert: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    at: i64,
    now: i64,
) -> Result<Option<String>, String> {
    let der = match pem::parse(data) {
        Ok(p) if p.tag() == "X509 CRL" => p.into_contents(),
        Ok(p) => return Err(format!("a PEM {} is not a CRL", p.tag())),
        Err(_) => data.to_vec(),
    };
    let (_, crl) = CertificateRevocationList::from_der(&der)
        .map_err(|e| format!("not a CRL (DER or PEM): {e}"))?;
    if crl.issuer() != issuer.subject() {
        return Ok(Some(format!(
            "the CRL for {} was issued by {}, not by {}",
            cert.subject(),
            crl.issuer(),
            issuer.subject()
        )));
    }
    if crl.verify_signature(issuer.public_key()).is_err() {
        return Ok(Some(format!(
            "the CRL of {} is not signed by its key",
            issuer.subject()
        )));
    }
    let may_sign_crls = issuer
        .key_usage()
        .ok()
        .flatten()
        .is_none_or(|u| u.value.crl_sign());
    if !may_sign_crls {
        return Ok(Some(format!(
            "{} may not sign CRLs (its key usage lacks cRLSign)",
            issuer.subject()
        )));
    }
    if let Some(ext) = crl.extensions().iter().find(|e| {
        e.critical
            && !matches!(
                e.parsed_extension(),
                ParsedExtension::IssuingDistributionPoint(_)
                    | ParsedExtension::CRLNumber(_)
                    | ParsedExtension::AuthorityKeyIdentifier(_)
            )
    }) {
        return Ok(Some(format!(
            "the CRL of {} has a critical extension {} that is not understood here",
            issuer.subject(),
            ext.oid
        )));
    }
    if now < crl.last_update().timestamp() {
        return Ok(Some(format!(
            "the CRL of {} is not yet valid",
            issuer.subject()
        )));
    }
    if crl.next_update().is_some_and(|t| now > t.timestamp()) {
        return Ok(Some(format!(
            "the CRL of {} is stale (its next update is past)",
            issuer.subject()
        )));
    }
    let serial = cert.raw_serial();
    let revoked = crl
        .iter_revoked_certificates()
        .find(|r| r.raw_serial() == serial && r.revocation_date.timestamp() <= at);
    Ok(revoked.map(|r| {
        format!(
            "{} is revoked by its issuer's CRL (since {})",
            cert.subject(),
            r.revocation_date
        )
    }))
}

/// Why a chain (leaf first, each next one its issuer; already verified) is revoked by a CRL
/// its certificates name, or `None` when none is.
pub async fn revocation_problem(
    chain: &[Vec<u8>],
    at: i64,
    now: i64,
) -> Result<Option<String>, KmsError> {
    let mut parsed = Vec::new();
    for der in chain {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
        parsed.push(cert);
    }
    for pair in parsed.windows(2) {
        let (cert, issuer) = (&pair[0], &pair[1]);
        let Some(locations) = crl_locations(cert) else {
            continue;
        };
        if locations.is_empty() {
            return Ok(Some(format!(
                "the CRL of {} is not at an http(s) location, so its revocation cannot be checked",
                cert.subject()
            )));
        }
        let mut failures = Vec::new();
        let mut verdict = None;
        for url in locations.iter().take(MAX_LOCATIONS) {
            match fetch(url).await {
                Ok(data) => match crl_problem(&data, cert, issuer, at, now) {
                    Ok(v) => {
                        verdict = Some(v);
                        break;
                    }
                    Err(e) => failures.push(format!("{url}: {e}")),
                },
                Err(e) => failures.push(e),
            }
        }
        match verdict {
            Some(None) => {}
            Some(Some(problem)) => return Ok(Some(problem)),
            None => {
                return Ok(Some(format!(
                    "the CRL of {} could not be read, so its revocation cannot be checked: {}",
                    cert.subject(),
                    failures.join("; ")
                )));
            }
        }
    }
    Ok(None)
}

fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let built = reqwest::Client::builder()
        .connect_timeout(FETCH_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("kms-core/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    Ok(CLIENT.get_or_init(|| built))
}

/// GETs a CRL of at most [`MAX_CRL_BYTES`].
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let too_big = || format!("GET {url}: larger than {MAX_CRL_BYTES} bytes");
    let mut response = client()?
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", kms_common::error::chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_CRL_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {}", kms_common::error::chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_CRL_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
