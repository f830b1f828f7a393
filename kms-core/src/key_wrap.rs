//! Wrapping a key under another key, as KMIP key wrapping does it (pure functions):
//! NIST key wrap (RFC 3394), key wrap with padding (RFC 5649), and AES-GCM as
//! `nonce || ciphertext || tag` with no additional data — the reference's three modes, checked
//! against its captured exchanges.

use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrap, KeyWrapPadded};
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, NONCE_LEN, TAG_LEN};

/// How a key is wrapped, by its KMIP `BlockCipherMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapMode {
    /// `NISTKeyWrap`: RFC 3394 (the wrapped data must be a multiple of 8 bytes, at least 16).
    Rfc3394,
    /// `AESKeyWrapPadding`: RFC 5649 (any length).
    Rfc5649,
    /// `GCM`: AES-GCM with a random nonce.
    Gcm,
}

impl WrapMode {
    /// The KMIP `BlockCipherMode` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rfc3394 => "NISTKeyWrap",
            Self::Rfc5649 => "AESKeyWrapPadding",
            Self::Gcm => "GCM",
        }
    }

    pub fn parse(mode: &str) -> Option<Self> {
        match mode {
            "NISTKeyWrap" => Some(Self::Rfc3394),
            "AESKeyWrapPadding" => Some(Self::Rfc5649),
            "GCM" => Some(Self::Gcm),
            _ => None,
        }
    }
}

fn kek(key: &[u8]) -> Result<AesKek, CryptoError> {
    let cipher = match key.len() {
        16 => &AES_128,
        32 => &AES_256,
        n => return Err(CryptoError::KeyLength(n)),
    };
    AesKek::new(cipher, key).map_err(|_| CryptoError::KeyLength(key.len()))
}

/// Wraps `plain` under `key`.
pub fn wrap(mode: WrapMode, key: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match mode {
        WrapMode::Rfc3394 => {
            if plain.len() < 16 || plain.len() % 8 != 0 {
                return Err(CryptoError::WrapLength(plain.len()));
            }
            let mut out = vec![0u8; plain.len() + 8];
            let n = kek(key)?
                .wrap(plain, &mut out)
                .map_err(|_| CryptoError::WrapLength(plain.len()))?
                .len();
            out.truncate(n);
            Ok(out)
        }
        WrapMode::Rfc5649 => {
            let mut out = vec![0u8; plain.len() + 15];
            let n = kek(key)?
                .wrap_with_padding(plain, &mut out)
                .map_err(|_| CryptoError::WrapLength(plain.len()))?
                .len();
            out.truncate(n);
            Ok(out)
        }
        WrapMode::Gcm => {
            let sealed = crypto::encrypt(key, None, b"", plain)?;
            let mut out = Vec::with_capacity(NONCE_LEN + sealed.ciphertext.len() + TAG_LEN);
            out.extend_from_slice(&sealed.nonce);
            out.extend_from_slice(&sealed.ciphertext);
            out.extend_from_slice(&sealed.tag);
            Ok(out)
        }
    }
}

/// Unwraps what [`wrap`] made; any change to the wrapped bytes fails authentication.
pub fn unwrap(
    mode: WrapMode,
    key: &[u8],
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    match mode {
        WrapMode::Rfc3394 | WrapMode::Rfc5649 => {
            let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
            let kek = kek(key)?;
            let n = if mode == WrapMode::Rfc3394 {
                kek.unwrap(wrapped, &mut out)
            } else {
                kek.unwrap_with_padding(wrapped, &mut out)
            }
            .map_err(|_| CryptoError::Authentication)?
            .len();
            out.truncate(n);
            Ok(out)
        }
        WrapMode::Gcm => {
            if wrapped.len() < NONCE_LEN + TAG_LEN {
                return Err(CryptoError::Authentication);
            }
            let (nonce, rest) = wrapped.split_at(NONCE_LEN);
            let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
            crypto::decrypt(key, nonce, b"", ciphertext, tag)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        crate::kmip::ttlv::decode_hex(text).unwrap_or_default()
    }

    /// The reference exported key 62ddaedc… wrapped by key de362985… with `-f raw`
    /// (exchanges 0032, 0039 and 0051 of kmip-exchanges-5.26).
    #[test]
    fn unwraps_what_the_reference_wrapped_and_wraps_it_the_same() {
        let kek = hex("05EA882785555265544168AB34FA82F9113D4E363C03C9AC9A3B4A585283A7A1");
        let key = hex("163BE40B034AC35CA5B865DE78160632D37135D9C6C2B5C1D490CBC104D5B632");
        let wrapped =
            hex("7DBFEC3397D2C6D5D01D04A05ACADF4EBAD91F9C3DF2425F851ED89403E80156731BC2D35B5660F7");
        assert_eq!(
            unwrap(WrapMode::Rfc3394, &kek, &wrapped).map(|k| k.to_vec()),
            Ok(key.clone())
        );
        assert_eq!(wrap(WrapMode::Rfc3394, &kek, &key), Ok(wrapped.clone()));
        assert!(unwrap(WrapMode::Rfc5649, &kek, &wrapped).is_err());
    }

    /// The same key wrapped by the reference with `-m aes-gcm` (exchange 0038): the reference
    /// wraps its TTLV encoding, whose first bytes hold the key material.
    #[test]
    fn unwraps_the_reference_gcm_wrapping() {
        let kek = hex("05EA882785555265544168AB34FA82F9113D4E363C03C9AC9A3B4A585283A7A1");
        let key = hex("163BE40B034AC35CA5B865DE78160632D37135D9C6C2B5C1D490CBC104D5B632");
        let wrapped = hex(concat!(
            "3373B26646D8CE4A86E340423E91ECE2E409B5FB155CEC9EC0E199271AF87D4AA03EE7E73177E6A8",
            "88C79A14BF8430136D355A94913291869309D7BFC8540E3EB422AF3403CFB36345BEF97EF11F026D",
            "FF0508293C4ABFE0A05D02BF165C15C194EACDFD880E469C0C6A5E62416EFDAC8BEBBFF9912523C6",
            "7DC2B1E94516C90711D38531883B1A5B0630262E418B3294F54023B46D7CDC9DA378B8B628E80709",
            "868B195032872B35DE20E1E84286B1B7C506463DBA9046785A0B30F3B673544C73F5D91F91695571",
            "4B77CC5A426828D5D4859D8BAA37BE5A3F1A2152227E7A72D9F7CFFB4A635B19DD14A3A6A6539478",
            "4E36585AE5319ABCB8CEE51A9266B0499B30A25D5C9F3C41E17F63DF7EBD6FA175FB8A9E055F7F24",
            "48EFBC3B29DE2DC12C3AE58DC263D907F23CDBDC15829708B89B15A9F8AA06810A30871937147",
            "4F1EEADC4BD0480BED2668E954EB3B527205905246B43890EF5B42530E35F544D0838EDAC7B75EFE9",
            "8436A1BF94B4C7A4B90F8CB189F6EDF5E773F1F7699D2E84FF20402D7C15695E120024021DEB1E4D",
            "35615CE8D4850E2B6630CC07E1A255A7C10BCD9910D50FE5356C20831C0BE48AC9D41D04CB1653D3",
            "699C12684274FEFC44FCFC71671F86BB9C1577EB44E0F9480D5B500FA36C8EAB74D3766D0C98E9E7",
            "7EBC5BDB70"
        ));
        let plain = unwrap(WrapMode::Gcm, &kek, &wrapped).unwrap_or_default();
        assert_eq!(plain.len(), 456);
        assert_eq!(plain.get(16..48), Some(key.as_slice()));
    }

    #[test]
    fn every_mode_round_trips_and_detects_tampering() {
        let kek = [3u8; 32];
        for mode in [WrapMode::Rfc3394, WrapMode::Rfc5649, WrapMode::Gcm] {
            let wrapped = wrap(mode, &kek, &[9u8; 24]).unwrap_or_default();
            assert_eq!(
                unwrap(mode, &kek, &wrapped).map(|k| k.to_vec()),
                Ok(vec![9u8; 24])
            );
            let mut bad = wrapped.clone();
            bad[3] ^= 1;
            assert!(unwrap(mode, &kek, &bad).is_err(), "{mode:?}");
        }
        // Padding takes any length; RFC 3394 does not.
        assert!(wrap(WrapMode::Rfc5649, &kek, &[1u8; 5]).is_ok());
        assert_eq!(
            wrap(WrapMode::Rfc3394, &kek, &[1u8; 20]),
            Err(CryptoError::WrapLength(20))
        );
        assert_eq!(
            wrap(WrapMode::Rfc3394, &[0u8; 24], &[1u8; 16]),
            Err(CryptoError::KeyLength(24))
        );
    }
}
