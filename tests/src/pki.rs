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
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, cn);
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
