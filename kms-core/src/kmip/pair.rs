//! What the operations on private and public keys share: the key kind of a stored object,
//! its clear material, the public half of a pair, and the usage-mask check.

use zeroize::Zeroizing;

use crate::asymmetric::{self, KeyKind};
use crate::error::KmsError;
use crate::kmip::kms::Kms;
use crate::object::{ManagedObject, ObjectType};

/// Usage mask bits of asymmetric keys (KMIP 2.1, 3.19).
pub const MASK_SIGN: i32 = 0x1;
pub const MASK_VERIFY: i32 = 0x2;

/// The default usage of each half: the private key signs, decrypts and unwraps; the public
/// key verifies, encrypts and wraps.
pub const DEFAULT_PRIVATE_MASK: i32 = MASK_SIGN | 0x8 | 0x20;
pub const DEFAULT_PUBLIC_MASK: i32 = MASK_VERIFY | 0x4 | 0x10;

/// The key kind of a stored private or public key, or of a certificate's public key.
pub fn kind(o: &ManagedObject) -> Option<KeyKind> {
    if !matches!(
        o.object_type,
        ObjectType::PrivateKey | ObjectType::PublicKey | ObjectType::Certificate
    ) {
        return None;
    }
    KeyKind::of(o.algorithm?.family()?, o.length_bits)
}

/// The algorithm name a key of `kind` is recorded under when the client named none (the
/// reference's: `ECDH` for NIST-curve keys).
pub fn default_algorithm(kind: KeyKind) -> crate::object::Algorithm {
    use crate::object::Algorithm;
    match kind.family() {
        asymmetric::Family::Rsa => Algorithm::Rsa,
        asymmetric::Family::Ec => Algorithm::Ecdh,
        asymmetric::Family::Ed25519 => Algorithm::Ed25519,
    }
}

/// [`kind`], for an operation that needs one.
pub fn require_kind(o: &ManagedObject, op: &str) -> Result<KeyKind, KmsError> {
    kind(o).ok_or_else(|| {
        KmsError::InvalidRequest(format!(
            "{op}: {} is a {}, not a private or public key",
            o.uid,
            o.object_type.name()
        ))
    })
}

/// Refuses an object whose usage mask forbids `bit` (Unrestricted allows everything).
pub fn check_usage(o: &ManagedObject, bit: i32, op: &str) -> Result<(), KmsError> {
    if o.usage_mask & (bit | crate::kmip::creation::MASK_UNRESTRICTED) == 0 {
        return Err(KmsError::PermissionDenied(format!(
            "{op}: key {} usage mask does not allow {op}",
            o.uid
        )));
    }
    Ok(())
}

/// The link types that join the two halves of a key pair.
const PAIR_LINKS: [&str; 2] = ["PublicKeyLink", "PrivateKeyLink"];

impl Kms {
    /// `Cascade`: the objects plus the other half of each key pair among them, when `user`
    /// may run `op` on it too (else the whole request is refused: nothing half done).
    pub async fn with_pair_halves(
        &self,
        user: &str,
        mut objects: Vec<ManagedObject>,
        op: crate::kmip::operation::Operation,
    ) -> Result<Vec<ManagedObject>, KmsError> {
        let linked: Vec<String> = objects
            .iter()
            .flat_map(|o| o.meta.links.iter())
            .filter(|l| PAIR_LINKS.contains(&l.link_type.as_str()))
            .map(|l| l.uid.clone())
            .collect();
        for uid in linked {
            if objects.iter().any(|o| o.uid == uid) {
                continue;
            }
            let Some(other) = self.store.load(&uid).await? else {
                continue;
            };
            if !crate::acl::check(&self.store, user, &other, crate::acl::Access::Run(op)).await? {
                return Err(KmsError::Forbidden(format!(
                    "{}: Cascade would also act on the linked key {uid}, which the user {user} may not {}",
                    op.name(),
                    op.grant().unwrap_or_default()
                )));
            }
            objects.push(other);
        }
        Ok(objects)
    }

    /// The clear DER of a stored key (PKCS#8 or SPKI).
    pub fn material(&self, o: &ManagedObject) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.keys.unwrap(o.wrapping, &o.uid, &o.wrapped_key)
    }

    /// The public key (SPKI) of `o`: its material for a public key, derived for a private key,
    /// read from a certificate.
    pub fn public_material(&self, o: &ManagedObject, kind: KeyKind) -> Result<Vec<u8>, KmsError> {
        let der = self.material(o)?;
        match o.object_type {
            ObjectType::PublicKey => Ok(der.to_vec()),
            ObjectType::Certificate => Ok(crate::certificates::parse(&der)?.spki),
            _ => asymmetric::public_of(kind, &der),
        }
    }
}
