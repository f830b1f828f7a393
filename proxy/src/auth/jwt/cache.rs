//! A bounded cache of verified tokens, keyed by the SHA-256 of the token, so that a repeated
//! token costs a hash and a map lookup instead of a signature check. An entry lives until the
//! token's `exp` at most and is dropped when the key that verified it leaves its JWKS.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::identity::Identity;

#[derive(Clone)]
struct Entry {
    identity: Identity,
    /// Unix seconds: the token's `exp` (no leeway: after it the full check runs again).
    expires_at: u64,
    provider: usize,
    key: [u8; 32],
}

pub struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        // A panic while holding the lock cannot leave a half-written entry: recover the map.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The identity of a token verified before and not yet expired.
    pub fn get(&self, digest: &[u8; 32], now: u64) -> Option<Identity> {
        if self.capacity == 0 {
            return None;
        }
        let mut entries = self.lock();
        match entries.get(digest) {
            Some(entry) if entry.expires_at > now => Some(entry.identity.clone()),
            Some(_) => {
                entries.remove(digest);
                None
            }
            None => None,
        }
    }

    pub fn insert(
        &self,
        digest: [u8; 32],
        identity: Identity,
        expires_at: u64,
        provider: usize,
        key: [u8; 32],
        now: u64,
    ) {
        if self.capacity == 0 || expires_at <= now {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.expires_at > now);
        }
        if entries.len() >= self.capacity {
            // Still full of live tokens: drop about a tenth, arbitrarily (HashMap order).
            let doomed: Vec<[u8; 32]> = entries
                .keys()
                .take(self.capacity / 10 + 1)
                .copied()
                .collect();
            for d in doomed {
                entries.remove(&d);
            }
        }
        entries.insert(
            digest,
            Entry {
                identity,
                expires_at,
                provider,
                key,
            },
        );
    }

    /// Drops the entries of `provider` whose key is no longer in its set.
    pub fn retain_keys(&self, provider: usize, still_present: impl Fn(&[u8; 32]) -> bool) {
        self.lock()
            .retain(|_, e| e.provider != provider || still_present(&e.key));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;

    fn alice() -> Identity {
        Identity {
            user: "alice".into(),
            method: AuthMethod::Jwt,
            claims: Vec::new(),
        }
    }

    #[test]
    fn bounded_expiring_and_purged_with_the_key() {
        let cache = TokenCache::new(20);
        for i in 0..100u8 {
            cache.insert([i; 32], alice(), 1_000, 0, [1; 32], 10);
        }
        assert!(cache.len() <= 20);
        let cache = TokenCache::new(20);
        cache.insert([200; 32], alice(), 1_000, 0, [1; 32], 10);
        cache.insert([201; 32], alice(), 1_000, 1, [2; 32], 10);
        assert!(cache.get(&[200; 32], 999).is_some());
        assert!(cache.get(&[200; 32], 1_000).is_none(), "expired at exp");
        cache.retain_keys(1, |_| false);
        assert!(cache.get(&[201; 32], 10).is_none(), "dropped with its key");
    }
}
