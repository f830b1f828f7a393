//! Chains (their order and validity) and PKCS#12 archives of a key and its chain.

use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use super::invalid;
use crate::error::KmsError;

/// Why a chain is not valid, or `None` when it is: `chain[0]` the leaf, each next one its
/// issuer, the last self-signed; all valid at `at` (Unix seconds); issuers are CAs.
pub fn chain_problem(chain: &[&[u8]], at: i64) -> Result<Option<String>, KmsError> {
    let mut parsed = Vec::new();
    for der in chain {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
        parsed.push(cert);
    }
    let Some(last) = parsed.last() else {
        return Ok(Some("no certificate".into()));
    };
    for cert in &parsed {
        let v = cert.validity();
        if at < v.not_before.timestamp() || at > v.not_after.timestamp() {
            return Ok(Some(format!(
                "{} is not valid at that time",
                cert.subject()
            )));
        }
    }
    for pair in parsed.windows(2) {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.issuer() != parent.subject() {
            return Ok(Some(format!(
                "{} was not issued by {}",
                child.subject(),
                parent.subject()
            )));
        }
        if child.verify_signature(Some(parent.public_key())).is_err() {
            return Ok(Some(format!(
                "the signature on {} does not verify",
                child.subject()
            )));
        }
        let ca = parent
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca);
        if !ca {
            return Ok(Some(format!("{} is not a CA", parent.subject())));
        }
    }
    if last.subject() != last.issuer() || last.verify_signature(None).is_err() {
        return Ok(Some(format!(
            "the chain ends at {}, which is not a self-signed root",
            last.subject()
        )));
    }
    Ok(None)
}

/// The certificates in chain order, from `pool[0]` (the leaf) up through the issuers found in
/// the pool (by name) until a self-signed one; a certificate whose issuer is not in the pool
/// ends the chain there.
pub fn order_chain(pool: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, KmsError> {
    let mut parsed = Vec::new();
    for der in pool {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
        parsed.push((cert.subject().to_string(), cert.issuer().to_string()));
    }
    let mut chain = Vec::new();
    let mut at = 0;
    while chain.len() < pool.len() {
        chain.push(pool[at].clone());
        let (subject, issuer) = &parsed[at];
        if subject == issuer {
            break;
        }
        match (0..pool.len()).find(|&i| parsed[i].0 == *issuer && !chain.contains(&pool[i])) {
            Some(next) => at = next,
            None => break,
        }
    }
    Ok(chain)
}

/// A PKCS#12 archive of a private key (PKCS#8) and its certificate chain (leaf first).
pub fn pkcs12(pkcs8: &[u8], chain: &[Vec<u8>], password: &str) -> Result<Vec<u8>, KmsError> {
    let fail = |e: p12_keystore::error::Error| KmsError::Crypto(format!("PKCS#12: {e}"));
    let key = p12_keystore::PrivateKey::from_der(pkcs8).map_err(fail)?;
    let mut certs = Vec::new();
    for der in chain {
        certs.push(p12_keystore::Certificate::from_der(der).map_err(fail)?);
    }
    let local_id = crate::crypto::sha256(chain.first().map_or(&[][..], Vec::as_slice));
    let entry = p12_keystore::PrivateKeyChain::new(local_id.to_vec(), key, certs);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("key", p12_keystore::KeyStoreEntry::PrivateKeyChain(entry));
    store.writer(password).write().map_err(fail)
}

/// What a PKCS#12 archive holds: a private key (PKCS#8) and certificates (leaf first).
pub struct Archive {
    pub key: Zeroizing<Vec<u8>>,
    pub certificates: Vec<Vec<u8>>,
}

/// The private key and certificates of a PKCS#12 archive.
pub fn read_pkcs12(data: &[u8], password: &str) -> Result<Archive, KmsError> {
    let store = p12_keystore::KeyStore::from_pkcs12(
        data,
        password,
        p12_keystore::Pkcs12ImportPolicy::Relaxed,
    )
    .map_err(|e| invalid(format!("PKCS#12 (wrong password?): {e}")))?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| invalid("the PKCS#12 archive holds no private key"))?;
    let certs = chain.certs().iter().map(|c| c.as_der().to_vec()).collect();
    Ok(Archive {
        key: Zeroizing::new(chain.key().as_der().to_vec()),
        certificates: certs,
    })
}
