//! The managed object model: object types and key kinds as enums, an object with its state,
//! attributes, tags and wrapped material, and the lifecycle rules of the reference
//! (section 5).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    PreActive,
    Active,
    Deactivated,
    Compromised,
    Destroyed,
    DestroyedCompromised,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            Self::PreActive => "PreActive",
            Self::Active => "Active",
            Self::Deactivated => "Deactivated",
            Self::Compromised => "Compromised",
            Self::Destroyed => "Destroyed",
            Self::DestroyedCompromised => "Destroyed_Compromised",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::PreActive,
            Self::Active,
            Self::Deactivated,
            Self::Compromised,
            Self::Destroyed,
            Self::DestroyedCompromised,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// The state the dates lead to at `now`: a PreActive key whose activation date has come
    /// is Active; an Active key whose deactivation date has passed is Deactivated.
    pub fn settled(self, activation: Option<i64>, deactivation: Option<i64>, now: i64) -> Self {
        let mut state = self;
        if state == Self::PreActive && activation.is_some_and(|d| d <= now) {
            state = Self::Active;
        }
        if state == Self::Active && deactivation.is_some_and(|d| d <= now) {
            state = Self::Deactivated;
        }
        state
    }

    /// The stored states that [`Self::settled`] can turn into `self`.
    pub fn settling_into(self) -> &'static [Self] {
        match self {
            Self::Active => &[Self::PreActive, Self::Active],
            Self::Deactivated => &[Self::PreActive, Self::Active, Self::Deactivated],
            Self::PreActive => &[Self::PreActive],
            Self::Compromised => &[Self::Compromised],
            Self::Destroyed => &[Self::Destroyed],
            Self::DestroyedCompromised => &[Self::DestroyedCompromised],
        }
    }

    pub fn is_destroyed(self) -> bool {
        matches!(self, Self::Destroyed | Self::DestroyedCompromised)
    }
}

/// The KMIP object types. Only [`ObjectType::SymmetricKey`] can be stored today; the others
/// are named so that a request for them is refused as "not supported", never as invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Certificate,
    SymmetricKey,
    PublicKey,
    PrivateKey,
    SplitKey,
    SecretData,
    OpaqueObject,
    PgpKey,
    CertificateRequest,
}

impl ObjectType {
    pub const ALL: [Self; 9] = [
        Self::Certificate,
        Self::SymmetricKey,
        Self::PublicKey,
        Self::PrivateKey,
        Self::SplitKey,
        Self::SecretData,
        Self::OpaqueObject,
        Self::PgpKey,
        Self::CertificateRequest,
    ];

    /// The KMIP name, as on the wire and in the `object_type` column.
    pub fn name(self) -> &'static str {
        match self {
            Self::Certificate => "Certificate",
            Self::SymmetricKey => "SymmetricKey",
            Self::PublicKey => "PublicKey",
            Self::PrivateKey => "PrivateKey",
            Self::SplitKey => "SplitKey",
            Self::SecretData => "SecretData",
            Self::OpaqueObject => "OpaqueObject",
            Self::PgpKey => "PGPKey",
            Self::CertificateRequest => "CertificateRequest",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The key format its material is stored and returned in by default.
    pub fn default_format(self) -> &'static str {
        match self {
            Self::SymmetricKey | Self::SecretData => "Raw",
            Self::OpaqueObject => "Opaque",
            Self::Certificate => "X509",
            // PKCS#8 for a private key; SubjectPublicKeyInfo for a public key, which the
            // reference also calls PKCS8.
            Self::PrivateKey | Self::PublicKey => "PKCS8",
            _ => "Raw",
        }
    }
}

/// The kinds of key this KMS generates and uses. Symmetric: AES and ChaCha20 keys encrypt;
/// HMAC keys (named after their hash, as the reference names SHA-3 MAC keys) compute MACs,
/// as any symmetric key can. Asymmetric (private and public keys): RSA; elliptic-curve keys
/// on a NIST curve under the name the client gave (`EC`, `ECDSA` or `ECDH`, the reference's
/// choice), the curve following from the length; Ed25519.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Aes,
    ChaCha20,
    HmacSha256,
    HmacSha384,
    HmacSha512,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    Rsa,
    Ec,
    Ecdsa,
    Ecdh,
    Ed25519,
}

impl Algorithm {
    pub const ALL: [Self; 13] = [
        Self::Aes,
        Self::ChaCha20,
        Self::HmacSha256,
        Self::HmacSha384,
        Self::HmacSha512,
        Self::Sha3_256,
        Self::Sha3_384,
        Self::Sha3_512,
        Self::Rsa,
        Self::Ec,
        Self::Ecdsa,
        Self::Ecdh,
        Self::Ed25519,
    ];

    /// The KMIP `CryptographicAlgorithm` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes => "AES",
            Self::ChaCha20 => "ChaCha20",
            Self::HmacSha256 => "HMACSHA256",
            Self::HmacSha384 => "HMACSHA384",
            Self::HmacSha512 => "HMACSHA512",
            Self::Sha3_256 => "SHA3256",
            Self::Sha3_384 => "SHA3384",
            Self::Sha3_512 => "SHA3512",
            Self::Rsa => "RSA",
            Self::Ec => "EC",
            Self::Ecdsa => "ECDSA",
            Self::Ecdh => "ECDH",
            Self::Ed25519 => "Ed25519",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// A symmetric key's algorithm by name (asymmetric ones are not symmetric keys).
    pub fn parse_symmetric(name: &str) -> Option<Self> {
        Self::parse(name).filter(|a| a.family().is_none())
    }

    /// The asymmetric key family, or `None` for a symmetric algorithm.
    pub fn family(self) -> Option<crate::asymmetric::Family> {
        use crate::asymmetric::Family;
        match self {
            Self::Rsa => Some(Family::Rsa),
            Self::Ec | Self::Ecdsa | Self::Ecdh => Some(Family::Ec),
            Self::Ed25519 => Some(Family::Ed25519),
            _ => None,
        }
    }

    /// True when a key of `bits` bits is valid for it.
    pub fn accepts_length(self, bits: i32) -> bool {
        match self {
            Self::Aes => [128, 192, 256].contains(&bits),
            Self::ChaCha20 => bits == 256,
            Self::Rsa | Self::Ec | Self::Ecdsa | Self::Ecdh | Self::Ed25519 => false,
            _ => (128..=1024).contains(&bits) && bits % 8 == 0,
        }
    }

    /// The lengths it accepts, for messages.
    pub fn lengths_text(self) -> &'static str {
        match self {
            Self::Aes => "128, 192 or 256",
            Self::ChaCha20 => "256",
            _ => "a multiple of 8 from 128 to 1024",
        }
    }

    /// The hash a MAC key of this kind implies.
    pub fn mac_hash(self) -> Option<crate::hashing::Hash> {
        use crate::hashing::Hash;
        match self {
            Self::Aes
            | Self::ChaCha20
            | Self::Rsa
            | Self::Ec
            | Self::Ecdsa
            | Self::Ecdh
            | Self::Ed25519 => None,
            Self::HmacSha256 => Some(Hash::Sha256),
            Self::HmacSha384 => Some(Hash::Sha384),
            Self::HmacSha512 => Some(Hash::Sha512),
            Self::Sha3_256 => Some(Hash::Sha3_256),
            Self::Sha3_384 => Some(Hash::Sha3_384),
            Self::Sha3_512 => Some(Hash::Sha3_512),
        }
    }
}

/// A link to another object (ReKey sets them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub link_type: String,
    pub uid: String,
}

/// A key stored "wrapped by" another key of this KMS (Create or Import with the
/// `wrapping_key_id` attribute): Get and Export return it wrapped by that key unless the
/// caller asks for it unwrapped (and may unwrap with that key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedBy {
    pub uid: String,
}

/// A KMIP `Name` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Name {
    pub value: String,
    /// `UninterpretedTextString` or `URI`.
    pub name_type: String,
}

/// A vendor attribute other than the reference's tags, kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorAttribute {
    pub vendor: String,
    pub name: String,
    /// The `AttributeValue` node, as JSON TTLV (any type).
    pub value: serde_json::Value,
}

/// Attributes kept as JSON in the `meta` column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub links: Vec<Link>,
    pub rotate_generation: Option<i32>,
    pub revocation_reason: Option<String>,
    pub revocation_message: Option<String>,
    pub key_digest_hex: String,
    /// Created or imported `Sensitive`: its material is never returned (Get and Export
    /// refuse it), only used.
    pub sensitive: bool,
    pub wrapped_by: Option<WrappedBy>,
    pub names: Vec<Name>,
    pub vendor: Vec<VendorAttribute>,
    /// `SecretDataType` of secret data, `OpaqueDataType` of an opaque object.
    pub data_type: Option<String>,
    /// Rotation policy: rotate automatically every this many seconds.
    pub rotate_interval: Option<i64>,
    /// Rotation policy: the first rotation this many seconds after activation.
    pub rotate_offset: Option<i64>,
}

/// One managed object as stored.
#[derive(Debug, Clone)]
pub struct ManagedObject {
    pub uid: String,
    pub owner: String,
    pub object_type: ObjectType,
    pub state: State,
    /// The key's algorithm; none for secret data and opaque objects.
    pub algorithm: Option<Algorithm>,
    pub length_bits: i32,
    pub usage_mask: i32,
    pub activation_date: Option<i64>,
    pub deactivation_date: Option<i64>,
    pub created_at: i64,
    pub last_change: i64,
    /// `nonce || ciphertext || tag` under the key-encryption key; never the clear key.
    pub wrapped_key: Vec<u8>,
    /// Which key-encryption key `wrapped_key` is under.
    pub wrapping: crate::wrapping::Wrapping,
    pub meta: Meta,
    pub tags: BTreeSet<String>,
    /// When an automatic rotation is next due (rotation policy), in Unix seconds.
    pub rotate_at: Option<i64>,
}

impl ManagedObject {
    /// True for a key that lives in the HSM (never extractable).
    pub fn is_resident(&self) -> bool {
        self.wrapping == crate::wrapping::Wrapping::Resident
    }

    /// Applies the time-driven transitions: a PreActive key whose activation date has come
    /// is Active; an Active key whose deactivation date has passed is Deactivated. Returns
    /// true when the state changed (the caller persists it).
    pub fn settle(&mut self, now: i64) -> bool {
        let before = self.state;
        self.state = before.settled(self.activation_date, self.deactivation_date, now);
        before != self.state
    }
}

/// The system tag the reference adds to every symmetric key.
pub const SYMMETRIC_KEY_TAG: &str = "_kk";

impl ObjectType {
    /// The system tag the reference adds to objects of this type, if any.
    pub fn system_tag(self) -> Option<&'static str> {
        match self {
            Self::SymmetricKey => Some(SYMMETRIC_KEY_TAG),
            Self::SecretData => Some("_sd"),
            Self::PrivateKey => Some("_sk"),
            Self::PublicKey => Some("_pk"),
            Self::Certificate => Some("_cert"),
            _ => None,
        }
    }
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key(
        state: State,
        activation: Option<i64>,
        deactivation: Option<i64>,
    ) -> ManagedObject {
        ManagedObject {
            uid: "u".into(),
            owner: "o".into(),
            object_type: ObjectType::SymmetricKey,
            state,
            algorithm: Some(Algorithm::Aes),
            length_bits: 256,
            usage_mask: 12,
            activation_date: activation,
            deactivation_date: deactivation,
            created_at: 0,
            last_change: 0,
            wrapped_key: vec![],
            wrapping: crate::wrapping::Wrapping::Master,
            meta: Meta::default(),
            tags: BTreeSet::new(),
            rotate_at: None,
        }
    }

    #[test]
    fn dates_drive_the_state() {
        let mut k = key(State::PreActive, Some(100), None);
        assert!(!k.settle(99));
        assert!(k.settle(100));
        assert_eq!(k.state, State::Active);
        let mut k = key(State::Active, Some(1), Some(50));
        assert!(k.settle(60));
        assert_eq!(k.state, State::Deactivated);
        let mut k = key(State::PreActive, None, None);
        assert!(!k.settle(1_000));
        assert_eq!(
            State::parse("Destroyed_Compromised"),
            Some(State::DestroyedCompromised)
        );
    }
}
