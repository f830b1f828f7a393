//! Cryptography as pure functions: AES-GCM for data and for wrapping keys at rest, random key
//! generation, digests. One provider (aws-lc-rs) for the whole workspace.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest;
use zeroize::Zeroizing;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("unsupported AES key length {0} bytes")]
    KeyLength(usize),
    #[error("the nonce must be {NONCE_LEN} bytes")]
    NonceLength,
    #[error("the authentication tag must be {TAG_LEN} bytes")]
    TagLength,
    #[error("authentication failed: wrong key, nonce, tag or additional data")]
    Authentication,
    #[error("random generator failure")]
    Random,
    #[error("cannot key-wrap {0} bytes this way (RFC 3394 needs a multiple of 8, at least 16)")]
    WrapLength(usize),
    #[error("{0} is not supported")]
    Unsupported(&'static str),
}

fn aes_gcm(key: &[u8]) -> Result<LessSafeKey, CryptoError> {
    let algorithm = match key.len() {
        16 => &aead::AES_128_GCM,
        24 => &aead::AES_192_GCM,
        32 => &aead::AES_256_GCM,
        n => return Err(CryptoError::KeyLength(n)),
    };
    let key = UnboundKey::new(algorithm, key).map_err(|_| CryptoError::KeyLength(key.len()))?;
    Ok(LessSafeKey::new(key))
}

/// Fresh random bytes (keys, nonces).
pub fn random(len: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

/// AES-GCM encryption output.
#[derive(Debug, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
    pub tag: [u8; TAG_LEN],
}

/// AES-GCM encrypts `data`; a random nonce is drawn unless one is given.
pub fn encrypt(
    key: &[u8],
    nonce: Option<&[u8]>,
    aad: &[u8],
    data: &[u8],
) -> Result<Sealed, CryptoError> {
    let sealing = aes_gcm(key)?;
    let nonce: [u8; NONCE_LEN] = match nonce {
        Some(n) => n.try_into().map_err(|_| CryptoError::NonceLength)?,
        None => {
            let mut n = [0u8; NONCE_LEN];
            aws_lc_rs::rand::fill(&mut n).map_err(|_| CryptoError::Random)?;
            n
        }
    };
    let mut ciphertext = data.to_vec();
    let tag = sealing
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut ciphertext,
        )
        .map_err(|_| CryptoError::Authentication)?;
    let tag: [u8; TAG_LEN] = tag
        .as_ref()
        .try_into()
        .map_err(|_| CryptoError::TagLength)?;
    Ok(Sealed {
        nonce,
        ciphertext,
        tag,
    })
}

/// AES-GCM decrypts and authenticates.
pub fn decrypt(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let opening = aes_gcm(key)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::NonceLength)?;
    if tag.len() != TAG_LEN {
        return Err(CryptoError::TagLength);
    }
    let mut buffer = Zeroizing::new(Vec::with_capacity(ciphertext.len() + TAG_LEN));
    buffer.extend_from_slice(ciphertext);
    buffer.extend_from_slice(tag);
    let plain_len = opening
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buffer,
        )
        .map_err(|_| CryptoError::Authentication)?
        .len();
    buffer.truncate(plain_len);
    Ok(buffer)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// The key-encryption key for key material at rest (AES-256-GCM, the object's uid as
/// additional data, so a wrapped key cannot be moved to another object).
pub struct MasterKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::KeyLength(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// `nonce || ciphertext || tag`.
    pub fn wrap(&self, uid: &str, key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sealed = encrypt(&self.0, None, uid.as_bytes(), key)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.ciphertext.len() + TAG_LEN);
        out.extend_from_slice(&sealed.nonce);
        out.extend_from_slice(&sealed.ciphertext);
        out.extend_from_slice(&sealed.tag);
        Ok(out)
    }

    pub fn unwrap(&self, uid: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if wrapped.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Authentication);
        }
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        decrypt(&self.0, nonce, uid.as_bytes(), ciphertext, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_round_trip_and_tamper_detection() {
        for bits in [128, 192, 256] {
            let key = random(bits / 8).unwrap_or_default();
            let sealed =
                encrypt(&key, None, b"aad", b"Hello, world!").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(sealed.ciphertext.len(), 13);
            let plain = decrypt(&key, &sealed.nonce, b"aad", &sealed.ciphertext, &sealed.tag);
            assert_eq!(
                plain.as_deref().map(Vec::as_slice),
                Ok(b"Hello, world!".as_slice())
            );
            let mut bad_tag = sealed.tag;
            bad_tag[0] ^= 1;
            assert_eq!(
                decrypt(&key, &sealed.nonce, b"aad", &sealed.ciphertext, &bad_tag),
                Err(CryptoError::Authentication)
            );
            assert_eq!(
                decrypt(
                    &key,
                    &sealed.nonce,
                    b"other",
                    &sealed.ciphertext,
                    &sealed.tag
                ),
                Err(CryptoError::Authentication)
            );
        }
        assert_eq!(
            encrypt(&[0u8; 20], None, b"", b"").err(),
            Some(CryptoError::KeyLength(20))
        );
    }

    #[test]
    fn a_given_nonce_is_used() {
        let key = [7u8; 32];
        let a = encrypt(&key, Some(&[1u8; 12]), b"", b"x").unwrap_or_else(|e| panic!("{e}"));
        let b = encrypt(&key, Some(&[1u8; 12]), b"", b"x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b);
        assert_eq!(
            encrypt(&key, Some(&[1u8; 8]), b"", b"x").err(),
            Some(CryptoError::NonceLength)
        );
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_uid() {
        let master =
            MasterKey::new(random(32).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        let wrapped = master.wrap("uid-1", &[9u8; 32]).unwrap_or_default();
        assert!(!wrapped.windows(32).any(|w| w == [9u8; 32]));
        assert_eq!(
            master.unwrap("uid-1", &wrapped).map(|k| k.to_vec()),
            Ok(vec![9u8; 32])
        );
        assert_eq!(
            master.unwrap("uid-2", &wrapped).err(),
            Some(CryptoError::Authentication)
        );
        assert_eq!(format!("{master:?}"), "MasterKey(***)");
    }
}
