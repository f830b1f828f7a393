//! The managed object model: a symmetric key with its state, attributes, tags and wrapped
//! material, and the lifecycle rules of the reference (section 5).

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

    pub fn is_destroyed(self) -> bool {
        matches!(self, Self::Destroyed | Self::DestroyedCompromised)
    }
}

/// A link to another object (ReKey sets them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub link_type: String,
    pub uid: String,
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
}

/// One managed object as stored.
#[derive(Debug, Clone)]
pub struct ManagedObject {
    pub uid: String,
    pub owner: String,
    pub object_type: String,
    pub state: State,
    pub algorithm: String,
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
}

impl ManagedObject {
    /// Applies the time-driven transitions: a PreActive key whose activation date has come
    /// is Active; an Active key whose deactivation date has passed is Deactivated. Returns
    /// true when the state changed (the caller persists it).
    pub fn settle(&mut self, now: i64) -> bool {
        let before = self.state;
        if self.state == State::PreActive && self.activation_date.is_some_and(|d| d <= now) {
            self.state = State::Active;
        }
        if self.state == State::Active && self.deactivation_date.is_some_and(|d| d <= now) {
            self.state = State::Deactivated;
        }
        before != self.state
    }
}

/// The system tag the reference adds to every symmetric key.
pub const SYMMETRIC_KEY_TAG: &str = "_kk";

/// Now, in Unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(state: State, activation: Option<i64>, deactivation: Option<i64>) -> ManagedObject {
        ManagedObject {
            uid: "u".into(),
            owner: "o".into(),
            object_type: "SymmetricKey".into(),
            state,
            algorithm: "AES".into(),
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
