//! Verification keys: from a JWKS document or static PEM files, each with the algorithms it
//! may verify. A key decides its algorithm; the token's `alg` only has to agree with it.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};

/// One public key and what it may verify.
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// The algorithms this key verifies: its own `alg`, else those of its type, always
    /// narrowed to the provider's allowed list.
    pub algorithms: Vec<Algorithm>,
    /// SHA-256 of the key's public parameters: tells whether a key left the set.
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// The keys of one provider at one moment.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Arc<VerifyingKey>>,
}

impl KeySet {
    /// Keys that may verify a token with this `kid` (all keys when the token names none).
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<VerifyingKey>> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn contains(&self, fingerprint: &[u8; 32]) -> bool {
        self.keys.iter().any(|k| &k.fingerprint == fingerprint)
    }
}

const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

fn narrow(candidates: &[Algorithm], allowed: &[Algorithm]) -> Vec<Algorithm> {
    candidates
        .iter()
        .copied()
        .filter(|a| allowed.contains(a))
        .collect()
}

fn fingerprint(parts: &[&str]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    hash.finalize().into()
}

/// Why one JWK was left out of the set (logged, the rest of the set still loads).
pub fn from_jwk(
    jwk: &serde_json::Value,
    allowed: &[Algorithm],
) -> Result<VerifyingKey, &'static str> {
    let text = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return Err("not a signing key (use)");
    }
    let declared = match text("alg") {
        Some(alg) => Some(
            alg.parse::<Algorithm>()
                .map_err(|_| "unsupported alg on the key")?,
        ),
        None => None,
    };
    let (key, family, print) = match text("kty") {
        Some("RSA") => {
            let (n, e) = text("n").zip(text("e")).ok_or("RSA key without n or e")?;
            let key = DecodingKey::from_rsa_components(n, e).map_err(|_| "bad RSA key")?;
            (key, RSA.to_vec(), fingerprint(&["RSA", n, e]))
        }
        Some("EC") => {
            let (x, y) = text("x").zip(text("y")).ok_or("EC key without x or y")?;
            let alg = match text("crv") {
                Some("P-256") => Algorithm::ES256,
                Some("P-384") => Algorithm::ES384,
                _ => return Err("unsupported EC curve"),
            };
            let key = DecodingKey::from_ec_components(x, y).map_err(|_| "bad EC key")?;
            (key, vec![alg], fingerprint(&["EC", x, y]))
        }
        Some("OKP") if text("crv") == Some("Ed25519") => {
            let x = text("x").ok_or("OKP key without x")?;
            let key = DecodingKey::from_ed_components(x).map_err(|_| "bad Ed25519 key")?;
            (key, vec![Algorithm::EdDSA], fingerprint(&["OKP", x]))
        }
        Some("oct") => return Err("symmetric keys are never accepted"),
        _ => return Err("unsupported key type"),
    };
    let candidates = match declared {
        Some(alg) if family.contains(&alg) => vec![alg],
        Some(_) => return Err("alg does not match the key type"),
        None => family,
    };
    let algorithms = narrow(&candidates, allowed);
    if algorithms.is_empty() {
        return Err("no allowed algorithm for this key");
    }
    Ok(VerifyingKey {
        kid: text("kid").map(str::to_owned),
        key,
        algorithms,
        fingerprint: print,
    })
}

/// The signing keys of a JWKS document; keys that cannot verify anything are skipped.
pub fn from_jwks(body: &[u8], allowed: &[Algorithm], issuer: &str) -> Result<KeySet, String> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let entries = document
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("JWKS has no \"keys\" array")?;
    let mut keys = Vec::new();
    for entry in entries {
        match from_jwk(entry, allowed) {
            Ok(key) => keys.push(Arc::new(key)),
            Err(reason) => {
                let kid = entry.get("kid").and_then(serde_json::Value::as_str);
                tracing::debug!(issuer, kid, reason, "JWKS key skipped");
            }
        }
    }
    if keys.is_empty() {
        return Err("JWKS holds no usable signing key".into());
    }
    Ok(KeySet { keys })
}

/// A static PEM public key (RSA, EC or Ed25519 `PUBLIC KEY`).
pub fn from_pem_file(path: &Path, allowed: &[Algorithm]) -> Result<VerifyingKey, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let print: [u8; 32] = Sha256::digest(&pem).into();
    let (key, family) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        (key, RSA.to_vec())
    } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        (key, vec![Algorithm::ES256, Algorithm::ES384])
    } else if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        (key, vec![Algorithm::EdDSA])
    } else {
        return Err(format!(
            "{}: not an RSA, EC or Ed25519 public key in PEM",
            path.display()
        ));
    };
    let algorithms = narrow(&family, allowed);
    if algorithms.is_empty() {
        return Err(format!(
            "{}: none of the provider's algorithms fits this key",
            path.display()
        ));
    }
    Ok(VerifyingKey {
        kid: None,
        key,
        algorithms,
        fingerprint: print,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Algorithm; 9] = crate::config::jwt::DEFAULT_ALGORITHMS;

    #[test]
    fn a_key_pins_its_algorithm() {
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let rsa = serde_json::json!({"kty":"RSA","n":n,"e":"AQAB","alg":"RS256","kid":"a"});
        let key = from_jwk(&rsa, &ALL).ok();
        assert_eq!(key.map(|k| k.algorithms), Some(vec![Algorithm::RS256]));
        let no_alg = serde_json::json!({"kty":"RSA","n":n,"e":"AQAB"});
        assert_eq!(
            from_jwk(&no_alg, &ALL).map(|k| k.algorithms.len()).ok(),
            Some(6)
        );
        let hs = serde_json::json!({"kty":"oct","k":"c2VjcmV0"});
        assert!(from_jwk(&hs, &ALL).is_err());
        let mismatch = serde_json::json!({"kty":"RSA","n":n,"e":"AQAB","alg":"ES256"});
        assert!(from_jwk(&mismatch, &ALL).is_err());
        let enc = serde_json::json!({"kty":"RSA","n":n,"e":"AQAB","use":"enc"});
        assert!(from_jwk(&enc, &ALL).is_err());
        let narrowed = from_jwk(&no_alg, &[Algorithm::ES256]);
        assert!(narrowed.is_err());
    }
}
