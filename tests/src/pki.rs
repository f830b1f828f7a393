//! A throwaway PKI generated per test with rcgen: CA, server, client, expired certificates.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
    pub serial: u64,
}

impl CertFiles {
    /// Certificate and key in one PEM buffer (a reqwest client identity).
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// A test certificate authority that writes everything under `dir`.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub ca_file: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

pub enum Validity {
    Current,
    Expired,
    NotYetValid,
}

impl TestPki {
    pub fn new(name: &str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("kms-test-").tempdir()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(30);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca_pem = issuer.pem();
        let ca_file = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, &ca_pem)?;
        Ok(Self {
            dir,
            ca_pem,
            ca_file,
            issuer,
        })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn issue(
        &self,
        file_stem: &str,
        cn: &str,
        sans: &[&str],
        server: bool,
        validity: Validity,
    ) -> Result<CertFiles> {
        self.issue_named(file_stem, Some(cn), sans, server, validity)
    }

    fn issue_named(
        &self,
        file_stem: &str,
        cn: Option<&str>,
        sans: &[&str],
        server: bool,
        validity: Validity,
    ) -> Result<CertFiles> {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        match cn {
            Some(cn) => params.distinguished_name.push(DnType::CommonName, cn),
            None => params
                .distinguished_name
                .push(DnType::OrganizationName, "no common name"),
        }
        let random = crate::random_u64();
        let serial = random >> 1;
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = match validity {
            Validity::Current => (now - Duration::hours(1), now + Duration::days(10)),
            Validity::Expired => (now - Duration::days(10), now - Duration::days(1)),
            Validity::NotYetValid => (now + Duration::days(1), now + Duration::days(10)),
        };
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: self.path(&format!("{file_stem}.crt")),
            key: self.path(&format!("{file_stem}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }

    /// A server certificate for localhost and 127.0.0.1.
    pub fn server(&self, file_stem: &str, validity: Validity) -> Result<CertFiles> {
        self.issue(
            file_stem,
            "localhost",
            &["localhost", "127.0.0.1"],
            true,
            validity,
        )
    }

    /// A client certificate with the given subject CN.
    pub fn client(&self, file_stem: &str, cn: &str) -> Result<CertFiles> {
        self.issue(file_stem, cn, &[], false, Validity::Current)
    }

    /// A client certificate with any subject CN (or none) and validity.
    pub fn client_with(
        &self,
        file_stem: &str,
        cn: Option<&str>,
        validity: Validity,
    ) -> Result<CertFiles> {
        self.issue_named(file_stem, cn, &[], false, validity)
    }

    /// A CRL (PEM file) from this CA revoking the given serial numbers.
    pub fn crl(&self, file_stem: &str, revoked: &[u64]) -> Result<PathBuf> {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*serial),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer)?;
        let path = self.path(&format!("{file_stem}.crl.pem"));
        std::fs::write(&path, crl.pem()?)?;
        Ok(path)
    }
}

/// Bundles a certificate and key into a PKCS#12 file with the openssl command, as users do.
pub fn pkcs12(files: &CertFiles, out: &Path, password: &str) -> Result<()> {
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(&files.cert)
        .arg("-inkey")
        .arg(&files.key)
        .arg("-out")
        .arg(out)
        .arg("-passout")
        .arg(format!("pass:{password}"))
        .status()?;
    anyhow::ensure!(
        status.success(),
        "openssl pkcs12 -export failed (is openssl installed?)"
    );
    Ok(())
}
