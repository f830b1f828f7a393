//! A PKCS#11 HSM (tested with SoftHSM2): a pool of logged-in sessions and the key-encryption
//! key (KEK) that wraps every key at rest when configured. The KEK is an AES-256 key generated
//! inside the token (sensitive, never extractable); wrapping is AES-GCM run inside the HSM with
//! the object's uid as additional data. Calls are blocking FFI: they run in
//! `tokio::task::block_in_place`, one pooled session each.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Ulong};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Which token to use.
#[derive(Debug, Clone)]
pub enum TokenSelector {
    Slot(u64),
    Label(String),
}

/// Everything needed to open the HSM. The PIN never prints.
#[derive(Clone)]
pub struct HsmConfig {
    pub module: PathBuf,
    pub token: TokenSelector,
    pub pin: Zeroizing<String>,
    pub kek_label: Option<String>,
    pub sessions: usize,
}

impl std::fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmConfig")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("pin", &"***")
            .field("kek_label", &self.kek_label)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("cannot load the PKCS#11 module {module}: {reason}")]
    Module { module: String, reason: String },
    #[error("no HSM token {0}")]
    Token(String),
    #[error("HSM login refused: {0} (check KMS_HSM_PIN or --hsm-pin-file)")]
    Login(String),
    #[error("HSM key-encryption key {label:?}: {reason}")]
    Kek { label: String, reason: String },
    #[error("HSM unavailable: {0}")]
    Unavailable(String),
    #[error("HSM operation failed: {0}")]
    Operation(String),
    /// A request the HSM cannot honour because of what it asks (a client fault, 422).
    #[error("{0}")]
    Refused(String),
}

pub struct Hsm {
    _context: Pkcs11,
    slot: Slot,
    sessions: Mutex<Vec<Session>>,
    returned: Condvar,
    kek: Option<(String, ObjectHandle)>,
    /// Handles of HSM-resident keys by label, found once.
    resident: Mutex<HashMap<String, ObjectHandle>>,
}

/// AES-GCM output of the HSM.
pub struct HsmSealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
    pub tag: Vec<u8>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("slot", &self.slot.id())
            .field("kek", &self.kek.as_ref().map(|(label, _)| label))
            .finish()
    }
}

mod pair;
mod token;

use token::{classify, find_key, find_or_create_kek, generate_aes, op};

impl Hsm {
    /// Loads the module, finds the token, logs in, opens the session pool, finds (or makes)
    /// the KEK. Blocking: call at start.
    pub fn open(config: &HsmConfig) -> Result<Self, HsmError> {
        let module = config.module.display().to_string();
        if !config.module.is_file() {
            return Err(HsmError::Module {
                module,
                reason: "file not found (Debian: apt-get install softhsm2 for /usr/lib/softhsm/libsofthsm2.so)".into(),
            });
        }
        let context = Pkcs11::new(&config.module).map_err(|e| HsmError::Module {
            module: module.clone(),
            reason: e.to_string(),
        })?;
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| HsmError::Module {
                module,
                reason: format!("C_Initialize: {e}"),
            })?;
        let slots = context
            .get_slots_with_token()
            .map_err(|e| HsmError::Token(e.to_string()))?;
        let slot = slots
            .into_iter()
            .find(|slot| match &config.token {
                TokenSelector::Slot(id) => slot.id() == *id,
                TokenSelector::Label(label) => context
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == label),
            })
            .ok_or_else(|| HsmError::Token(format!("{:?} on this module", config.token)))?;
        let pin = AuthPin::from(config.pin.as_str());
        let mut sessions = Vec::with_capacity(config.sessions.max(1));
        for i in 0..config.sessions.max(1) {
            let session = context
                .open_rw_session(slot)
                .map_err(|e| HsmError::Unavailable(format!("cannot open a session: {e}")))?;
            // Login is per application: the first session logs in, the others share it.
            if i == 0 {
                session
                    .login(UserType::User, Some(&pin))
                    .map_err(|e| HsmError::Login(e.to_string()))?;
            }
            sessions.push(session);
        }
        let kek = match &config.kek_label {
            Some(label) => Some((label.clone(), find_or_create_kek(&sessions[0], label)?)),
            None => None,
        };
        Ok(Self {
            _context: context,
            slot,
            sessions: Mutex::new(sessions),
            returned: Condvar::new(),
            kek,
            resident: Mutex::new(HashMap::new()),
        })
    }

    pub fn has_kek(&self) -> bool {
        self.kek.is_some()
    }

    /// The key-encryption key's label ("" without one).
    fn kek_label(&self) -> &str {
        self.kek.as_ref().map_or("", |(l, _)| l.as_str())
    }

    /// Runs `f` with a pooled session, waiting (up to 10 s) for a free one.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let run = || {
            let mut pool = self
                .sessions
                .lock()
                .map_err(|_| HsmError::Unavailable("session pool poisoned".into()))?;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let session = loop {
                if let Some(s) = pool.pop() {
                    break s;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(HsmError::Unavailable("no free HSM session in 10 s".into()));
                }
                pool = self
                    .returned
                    .wait_timeout(pool, left)
                    .map_err(|_| HsmError::Unavailable("session pool poisoned".into()))?
                    .0;
            };
            drop(pool);
            let result = f(&session);
            if let Ok(mut pool) = self.sessions.lock() {
                pool.push(session);
            }
            self.returned.notify_one();
            result
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(run)
            }
            _ => run(),
        }
    }

    fn kek(&self) -> Result<ObjectHandle, HsmError> {
        self.kek
            .as_ref()
            .map(|(_, handle)| *handle)
            .ok_or_else(|| HsmError::Operation("no key-encryption key configured".into()))
    }

    /// AES-GCM under the KEK inside the HSM: `nonce ‖ ciphertext ‖ tag`, the uid as AAD.
    pub fn wrap(&self, uid: &str, key: &[u8]) -> Result<Vec<u8>, HsmError> {
        let sealed = self.seal(self.kek()?, None, uid.as_bytes(), key)?;
        Ok([&sealed.nonce[..], &sealed.ciphertext, &sealed.tag].concat())
    }

    pub fn unwrap(&self, uid: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let kek = self.kek()?;
        if wrapped.len() < NONCE_LEN + TAG_LEN {
            return Err(op("wrapped key too short"));
        }
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        self.unseal(kek, nonce, uid.as_bytes(), ciphertext, tag)
    }

    /// AES-GCM encryption inside the HSM; a random nonce unless one is given.
    fn seal(
        &self,
        key: ObjectHandle,
        nonce: Option<&[u8]>,
        aad: &[u8],
        data: &[u8],
    ) -> Result<HsmSealed, HsmError> {
        let mut iv = [0u8; NONCE_LEN];
        match nonce {
            Some(n) if n.len() == NONCE_LEN => iv.copy_from_slice(n),
            Some(_) => return Err(op("the nonce must be 12 bytes")),
            None => aws_lc_rs::rand::fill(&mut iv).map_err(|_| op("no randomness"))?,
        }
        let nonce = iv;
        let mut sealed = self.with_session(|session| {
            let params = GcmParams::new(&mut iv, aad, Ulong::from(128u64)).map_err(op)?;
            session
                .encrypt(&Mechanism::AesGcm(params), key, data)
                .map_err(|e| classify(&e))
        })?;
        if sealed.len() < TAG_LEN {
            return Err(op("short GCM output"));
        }
        let tag = sealed.split_off(sealed.len() - TAG_LEN);
        Ok(HsmSealed {
            nonce,
            ciphertext: sealed,
            tag,
        })
    }

    /// AES-GCM decryption and authentication inside the HSM.
    fn unseal(
        &self,
        key: ObjectHandle,
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let mut iv: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| op("the nonce must be 12 bytes"))?;
        let input = [ciphertext, tag].concat();
        self.with_session(|session| {
            let params = GcmParams::new(&mut iv, aad, Ulong::from(128u64)).map_err(op)?;
            session
                .decrypt(&Mechanism::AesGcm(params), key, &input)
                .map(Zeroizing::new)
                .map_err(|e| classify(&e))
        })
    }

    pub fn slot_id(&self) -> u64 {
        self.slot.id()
    }

    fn resident_key(&self, label: &str) -> Result<ObjectHandle, HsmError> {
        if let Some(handle) = self
            .resident
            .lock()
            .ok()
            .and_then(|m| m.get(label).copied())
        {
            return Ok(handle);
        }
        let found = self.with_session(|session| find_key(session, label))?;
        let [handle] = found.as_slice() else {
            return Err(HsmError::Operation(format!(
                "{} key(s) labelled {label:?} in the HSM",
                found.len()
            )));
        };
        if let Ok(mut map) = self.resident.lock() {
            map.insert(label.to_owned(), *handle);
        }
        Ok(*handle)
    }

    /// Generates a resident AES key inside the HSM (see [`generate_aes`]).
    pub fn create_key(&self, label: &str, bits: u64) -> Result<(), HsmError> {
        if label == self.kek.as_ref().map_or("", |(l, _)| l.as_str()) {
            return Err(HsmError::Refused(format!(
                "the label {label:?} is the HSM's key-encryption key; choose another label"
            )));
        }
        let handle = self.with_session(|session| {
            if !find_key(session, label)?.is_empty() {
                return Err(HsmError::Refused(format!(
                    "a key labelled {label:?} already exists in the HSM"
                )));
            }
            generate_aes(session, label, bits / 8)
        })?;
        if let Ok(mut map) = self.resident.lock() {
            map.insert(label.to_owned(), handle);
        }
        Ok(())
    }

    pub fn destroy_key(&self, label: &str) -> Result<(), HsmError> {
        let handle = self.resident_key(label)?;
        self.with_session(|session| session.destroy_object(handle).map_err(|e| classify(&e)))?;
        if let Ok(mut map) = self.resident.lock() {
            map.remove(label);
        }
        Ok(())
    }

    /// AES-GCM inside the HSM with a resident key.
    pub fn encrypt(
        &self,
        label: &str,
        nonce: Option<&[u8]>,
        aad: &[u8],
        data: &[u8],
    ) -> Result<HsmSealed, HsmError> {
        self.seal(self.resident_key(label)?, nonce, aad, data)
    }

    pub fn decrypt(
        &self,
        label: &str,
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.unseal(self.resident_key(label)?, nonce, aad, ciphertext, tag)
    }

    /// True when the token answers and still holds the KEK (for `/readyz`).
    pub fn ping(&self) -> bool {
        self.with_session(|session| {
            session.get_session_info().map_err(op)?;
            match &self.kek {
                Some((label, _)) if find_key(session, label)?.len() != 1 => Err(
                    HsmError::Unavailable("the key-encryption key is not in the HSM".into()),
                ),
                _ => Ok(()),
            }
        })
        .is_ok()
    }
}
