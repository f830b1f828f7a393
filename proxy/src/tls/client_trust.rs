//! The client-certificate verifier in use, rebuilt from the CA bundle and CRL files when they
//! change (or on SIGHUP), so a new client CA or a fresh CRL applies to new connections without
//! a restart. A broken new file is refused and the current trust kept.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{TlsError, client_verifier};
use crate::config::MtlsConfig;

struct Current(Arc<dyn ClientCertVerifier>);

pub struct ClientTrust {
    config: MtlsConfig,
    current: ArcSwap<Current>,
}

impl std::fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTrust")
            .field("ca_file", &self.config.ca_file)
            .field("crl_file", &self.config.crl_file)
            .finish()
    }
}

impl ClientTrust {
    pub fn load(config: &MtlsConfig) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(Current(client_verifier(config)?)),
            config: config.clone(),
        }))
    }

    /// Rebuilds the verifier from the files; on error the current one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current
            .store(Arc::new(Current(client_verifier(&self.config)?)));
        Ok(())
    }

    /// The files whose change triggers a reload.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.config.ca_file.clone()];
        files.extend(self.config.crl_file.clone());
        files
    }

    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.load().0.clone()
    }
}

impl ClientCertVerifier for ClientTrust {
    fn offer_client_auth(&self) -> bool {
        self.verifier().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.verifier().client_auth_mandatory()
    }

    /// No CA names are sent as hints: they would have to outlive a reload. Clients with one
    /// certificate (the usual case) do not need them.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}
