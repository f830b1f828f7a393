//! Symmetric encryption for Encrypt and Decrypt, as pure functions over aws-lc-rs: AES-GCM,
//! AES-GCM-SIV, ChaCha20-Poly1305, AES-CBC with PKCS#7 padding, and AES key wrap (RFC 3394 /
//! 5649) as an encryption mode. Hashes, MACs and key derivation are in [`crate::hashing`].

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, random};
use crate::key_wrap::{self, WrapMode};

/// An encryption scheme, by its KMIP parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    AesGcm,
    AesGcmSiv,
    AesCbc,
    ChaCha20Poly1305,
    /// `NISTKeyWrap`: RFC 3394.
    AesKeyWrap,
    /// `AESKeyWrapPadding`: RFC 5649.
    AesKeyWrapPadding,
}

impl Cipher {
    /// The nonce or IV length it uses (0 for key wrap).
    pub fn nonce_len(self) -> usize {
        match self {
            Self::AesGcm | Self::AesGcmSiv | Self::ChaCha20Poly1305 => 12,
            Self::AesCbc => 16,
            Self::AesKeyWrap | Self::AesKeyWrapPadding => 0,
        }
    }

    /// True for the authenticated modes (a tag, optional additional data).
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            Self::AesGcm | Self::AesGcmSiv | Self::ChaCha20Poly1305
        )
    }

    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::AesGcm => "AES-GCM",
            Self::AesGcmSiv => "AES-GCM-SIV",
            Self::AesCbc => "AES-CBC",
            Self::ChaCha20Poly1305 => "ChaCha20-Poly1305",
            Self::AesKeyWrap => "AES key wrap (RFC 3394)",
            Self::AesKeyWrapPadding => "AES key wrap with padding (RFC 5649)",
        }
    }
}

/// What Encrypt returns: the ciphertext, the nonce it used, and the tag of an AEAD.
#[derive(Debug, PartialEq, Eq)]
pub struct Encrypted {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub tag: Vec<u8>,
}

fn aead_key(cipher: Cipher, key: &[u8]) -> Result<LessSafeKey, CryptoError> {
    let algorithm = match (cipher, key.len()) {
        (Cipher::AesGcm, 16) => &aead::AES_128_GCM,
        (Cipher::AesGcm, 24) => &aead::AES_192_GCM,
        (Cipher::AesGcm, 32) => &aead::AES_256_GCM,
        (Cipher::AesGcmSiv, 16) => &aead::AES_128_GCM_SIV,
        (Cipher::AesGcmSiv, 32) => &aead::AES_256_GCM_SIV,
        (Cipher::ChaCha20Poly1305, 32) => &aead::CHACHA20_POLY1305,
        (_, n) => return Err(CryptoError::KeyLength(n)),
    };
    let key = UnboundKey::new(algorithm, key).map_err(|_| CryptoError::KeyLength(key.len()))?;
    Ok(LessSafeKey::new(key))
}

fn cbc_key(key: &[u8]) -> Result<UnboundCipherKey, CryptoError> {
    let algorithm = match key.len() {
        16 => &AES_128,
        24 => &AES_192,
        32 => &AES_256,
        n => return Err(CryptoError::KeyLength(n)),
    };
    UnboundCipherKey::new(algorithm, key).map_err(|_| CryptoError::KeyLength(key.len()))
}

/// Encrypts `data`; a random nonce is drawn unless one is given.
pub fn encrypt(
    cipher: Cipher,
    key: &[u8],
    nonce: Option<&[u8]>,
    aad: &[u8],
    data: &[u8],
) -> Result<Encrypted, CryptoError> {
    let nonce = match nonce {
        Some(n) if n.len() == cipher.nonce_len() => n.to_vec(),
        Some(_) => return Err(CryptoError::NonceLength),
        None => random(cipher.nonce_len())?.to_vec(),
    };
    match cipher {
        Cipher::AesGcm | Cipher::AesGcmSiv | Cipher::ChaCha20Poly1305 => {
            let sealing = aead_key(cipher, key)?;
            let nonce12: [u8; 12] = nonce
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::NonceLength)?;
            let mut ciphertext = data.to_vec();
            let tag = sealing
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce12),
                    Aad::from(aad),
                    &mut ciphertext,
                )
                .map_err(|_| CryptoError::Authentication)?;
            Ok(Encrypted {
                ciphertext,
                nonce,
                tag: tag.as_ref().to_vec(),
            })
        }
        Cipher::AesCbc => {
            let iv: [u8; 16] = nonce
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::NonceLength)?;
            let sealing = PaddedBlockEncryptingKey::cbc_pkcs7(cbc_key(key)?)
                .map_err(|_| CryptoError::KeyLength(key.len()))?;
            let mut buffer = data.to_vec();
            sealing
                .less_safe_encrypt(&mut buffer, EncryptionContext::Iv128(FixedLength::from(iv)))
                .map_err(|_| CryptoError::Authentication)?;
            Ok(Encrypted {
                ciphertext: buffer,
                nonce,
                tag: Vec::new(),
            })
        }
        Cipher::AesKeyWrap | Cipher::AesKeyWrapPadding => Ok(Encrypted {
            ciphertext: key_wrap::wrap(wrap_mode(cipher), key, data)?,
            nonce: Vec::new(),
            tag: Vec::new(),
        }),
    }
}

fn wrap_mode(cipher: Cipher) -> WrapMode {
    if cipher == Cipher::AesKeyWrap {
        WrapMode::Rfc3394
    } else {
        WrapMode::Rfc5649
    }
}

/// Decrypts what [`encrypt`] made; tampering fails (AEAD, key wrap) or, for CBC, gives a
/// padding error or garbage, as CBC has no integrity.
pub fn decrypt(
    cipher: Cipher,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &[u8],
    tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    match cipher {
        Cipher::AesGcm | Cipher::AesGcmSiv | Cipher::ChaCha20Poly1305 => {
            let opening = aead_key(cipher, key)?;
            let nonce12: [u8; 12] = nonce.try_into().map_err(|_| CryptoError::NonceLength)?;
            if tag.len() != 16 {
                return Err(CryptoError::TagLength);
            }
            let mut buffer = Zeroizing::new(Vec::with_capacity(data.len() + 16));
            buffer.extend_from_slice(data);
            buffer.extend_from_slice(tag);
            let n = opening
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce12),
                    Aad::from(aad),
                    &mut buffer,
                )
                .map_err(|_| CryptoError::Authentication)?
                .len();
            buffer.truncate(n);
            Ok(buffer)
        }
        Cipher::AesCbc => {
            let iv: [u8; 16] = nonce.try_into().map_err(|_| CryptoError::NonceLength)?;
            let opening = PaddedBlockDecryptingKey::cbc_pkcs7(cbc_key(key)?)
                .map_err(|_| CryptoError::KeyLength(key.len()))?;
            let mut buffer = Zeroizing::new(data.to_vec());
            let n = opening
                .decrypt(&mut buffer, DecryptionContext::Iv128(FixedLength::from(iv)))
                .map_err(|_| CryptoError::Authentication)?
                .len();
            buffer.truncate(n);
            Ok(buffer)
        }
        Cipher::AesKeyWrap | Cipher::AesKeyWrapPadding => {
            key_wrap::unwrap(wrap_mode(cipher), key, data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        crate::kmip::ttlv::decode_hex(text).unwrap_or_default()
    }

    const KEY: &str = "163BE40B034AC35CA5B865DE78160632D37135D9C6C2B5C1D490CBC104D5B632";

    /// Exchanges 0079, 0081 and 0083 of the reference (key 62ddaedc…, exported in 0032).
    #[test]
    fn matches_the_reference_ciphertexts() {
        let key = hex(KEY);
        let kwp = encrypt(
            Cipher::AesKeyWrapPadding,
            &key,
            None,
            b"",
            &hex("3DA40C8EA002F566572F2389459ED4117DDB86982507929218E41705D5DA47A5"),
        );
        assert_eq!(
            kwp.map(|e| e.ciphertext),
            Ok(hex(
                "19F2D00869DCEEA32DC845B352BCB627EC56E4192FC4E6DE2281408761C4677F563E27D78B65B547"
            ))
        );
        let kw = encrypt(
            Cipher::AesKeyWrap,
            &key,
            None,
            b"",
            &hex("EDFC54463E47BEBF5E5626A21B7E08ECDF5CF586339488A75BC69380DDB7A51A"),
        );
        assert_eq!(
            kw.map(|e| e.ciphertext),
            Ok(hex(
                "20D1F67DB3184773C7BB8E8879FC02A48AE56AD57BB7BFFB148A20A5E91799502743C9BA1917159F"
            ))
        );
        let siv = encrypt(
            Cipher::AesGcmSiv,
            &key,
            Some(&hex("987ADCE196E0C6C67934CBAE")),
            b"",
            &hex("58E790DB2CEE3728856FEBD31582C5F2C337BEF04A0AE494E5F8C2F61290C160"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            siv.ciphertext,
            hex("E92B8480573796BDB1A3FC32DA50CCC86A2CBE5072E8993A5E041EE934A8A70F")
        );
        assert_eq!(siv.tag, hex("6D91A600309D6A2EE9B946285377B529"));
    }

    #[test]
    fn every_cipher_round_trips() {
        let key = [5u8; 32];
        for cipher in [
            Cipher::AesGcm,
            Cipher::AesGcmSiv,
            Cipher::AesCbc,
            Cipher::ChaCha20Poly1305,
            Cipher::AesKeyWrap,
            Cipher::AesKeyWrapPadding,
        ] {
            let aad: &[u8] = if cipher.is_aead() { b"aad" } else { b"" };
            let e = encrypt(cipher, &key, None, aad, &[1u8; 32]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(e.nonce.len(), cipher.nonce_len());
            let plain = decrypt(cipher, &key, &e.nonce, aad, &e.ciphertext, &e.tag);
            assert_eq!(plain.map(|p| p.to_vec()), Ok(vec![1u8; 32]), "{cipher:?}");
        }
        let cbc =
            encrypt(Cipher::AesCbc, &key, None, b"", b"abc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cbc.ciphertext.len(), 16, "PKCS#7 pads to a block");
    }
}
