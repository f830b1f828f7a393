//! Hashes, MACs and key derivation for Hash, MAC, MACVerify and DeriveKey, as pure functions:
//! SHA-2 and SHA-3 digests and HMACs (aws-lc-rs; HMAC with SHA-3 from RustCrypto, which
//! aws-lc-rs lacks), PBKDF2 and HKDF.

use ::hmac::{KeyInit, Mac};
use aws_lc_rs::digest;
use aws_lc_rs::hmac as aws_hmac;
use zeroize::Zeroizing;

use crate::crypto::CryptoError;

/// A hash function, by its KMIP `HashingAlgorithm` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
    Sha3_256,
    Sha3_384,
    Sha3_512,
}

impl Hash {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "SHA256" => Self::Sha256,
            "SHA384" => Self::Sha384,
            "SHA512" => Self::Sha512,
            "SHA3256" => Self::Sha3_256,
            "SHA3384" => Self::Sha3_384,
            "SHA3512" => Self::Sha3_512,
            _ => return None,
        })
    }
}

pub fn digest(hash: Hash, data: &[u8]) -> Vec<u8> {
    let algorithm = match hash {
        Hash::Sha256 => &digest::SHA256,
        Hash::Sha384 => &digest::SHA384,
        Hash::Sha512 => &digest::SHA512,
        Hash::Sha3_256 => &digest::SHA3_256,
        Hash::Sha3_384 => &digest::SHA3_384,
        Hash::Sha3_512 => &digest::SHA3_512,
    };
    digest::digest(algorithm, data).as_ref().to_vec()
}

fn hmac_sha3<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut mac =
        <M as KeyInit>::new_from_slice(key).map_err(|_| CryptoError::KeyLength(key.len()))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// HMAC of `data` under `key`.
pub fn mac(hash: Hash, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let sha2 = |algorithm| {
        aws_hmac::sign(&aws_hmac::Key::new(algorithm, key), data)
            .as_ref()
            .to_vec()
    };
    Ok(match hash {
        Hash::Sha256 => sha2(aws_hmac::HMAC_SHA256),
        Hash::Sha384 => sha2(aws_hmac::HMAC_SHA384),
        Hash::Sha512 => sha2(aws_hmac::HMAC_SHA512),
        Hash::Sha3_256 => hmac_sha3::<::hmac::Hmac<sha3::Sha3_256>>(key, data)?,
        Hash::Sha3_384 => hmac_sha3::<::hmac::Hmac<sha3::Sha3_384>>(key, data)?,
        Hash::Sha3_512 => hmac_sha3::<::hmac::Hmac<sha3::Sha3_512>>(key, data)?,
    })
}

/// How DeriveKey derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derivation {
    Pbkdf2 { iterations: u32 },
    Hkdf,
}

struct OkmLength(usize);

impl aws_lc_rs::hkdf::KeyType for OkmLength {
    fn len(&self) -> usize {
        self.0
    }
}

/// `len` bytes derived from `secret` with SHA-256, -384 or -512 (PBKDF2 or HKDF; `info` is
/// HKDF's context data).
pub fn derive(
    how: Derivation,
    hash: Hash,
    secret: &[u8],
    salt: &[u8],
    info: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    use aws_lc_rs::{hkdf, pbkdf2};
    let mut out = Zeroizing::new(vec![0u8; len]);
    match how {
        Derivation::Pbkdf2 { iterations } => {
            let algorithm = match hash {
                Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
                Hash::Sha384 => pbkdf2::PBKDF2_HMAC_SHA384,
                Hash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
                _ => return Err(CryptoError::Unsupported("PBKDF2 with SHA-3")),
            };
            let iterations = std::num::NonZeroU32::new(iterations)
                .ok_or(CryptoError::Unsupported("0 iterations"))?;
            pbkdf2::derive(algorithm, iterations, salt, secret, &mut out);
        }
        Derivation::Hkdf => {
            let algorithm = match hash {
                Hash::Sha256 => hkdf::HKDF_SHA256,
                Hash::Sha384 => hkdf::HKDF_SHA384,
                Hash::Sha512 => hkdf::HKDF_SHA512,
                _ => return Err(CryptoError::Unsupported("HKDF with SHA-3")),
            };
            let info = [info];
            hkdf::Salt::new(algorithm, salt)
                .extract(secret)
                .expand(&info, OkmLength(len))
                .and_then(|okm| okm.fill(&mut out))
                .map_err(|_| CryptoError::Unsupported("an HKDF output that long"))?;
        }
    }
    Ok(out)
}

/// Compares a MAC in constant time.
pub fn mac_matches(
    hash: Hash,
    key: &[u8],
    data: &[u8],
    expected: &[u8],
) -> Result<bool, CryptoError> {
    let computed = mac(hash, key, data)?;
    Ok(aws_lc_rs::constant_time::verify_slices_are_equal(&computed, expected).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        crate::kmip::ttlv::decode_hex(text).unwrap_or_default()
    }

    #[test]
    fn derivations_match_the_rfc_vectors() {
        // RFC 5869, test case 1 (HKDF-SHA256).
        let okm = derive(
            Derivation::Hkdf,
            Hash::Sha256,
            &[0x0b; 22],
            &hex("000102030405060708090A0B0C"),
            &hex("F0F1F2F3F4F5F6F7F8F9"),
            42,
        );
        assert_eq!(
            okm.map(|k| k.to_vec()),
            Ok(hex(
                "3CB25F25FAACD57A90434F64D0362F2A2D2D0A90CF1A5A4C5DB02D56ECC4C5BF34007208D5B887185865"
            ))
        );
        // RFC 7914 section 11 (PBKDF2-HMAC-SHA256, 1 iteration).
        let dk = derive(
            Derivation::Pbkdf2 { iterations: 1 },
            Hash::Sha256,
            b"passwd",
            b"salt",
            b"",
            64,
        );
        assert_eq!(
            dk.map(|k| k.to_vec()),
            Ok(hex(concat!(
                "55AC046E56E3089FEC1691C22544B605F94185216DDE0465E68B9D57C20DACBC",
                "49CA9CCCF179B645991664B39D77EF317C71B845B1E30BD509112041D3A19783"
            )))
        );
    }

    #[test]
    fn macs_and_digests_match_known_values() {
        // Exchange 0175: HMAC-SHA256 of "hello" under key de362985… (exported in 0051).
        let key = hex("05EA882785555265544168AB34FA82F9113D4E363C03C9AC9A3B4A585283A7A1");
        assert_eq!(
            mac(Hash::Sha256, &key, b"hello"),
            Ok(hex(
                "A2671A42AA7D4B35D181B3A2571869229D51BBDA7DA9976677419F41F8FBAC24"
            ))
        );
        assert_eq!(
            digest(Hash::Sha256, b"hello"),
            hex("2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824")
        );
        // FIPS 202: SHA3-256 of the empty string.
        assert_eq!(
            digest(Hash::Sha3_256, b""),
            hex("A7FFC6F8BF1ED76651C14756A061D662F580FF4DE43B49FA82D80A4B80F8434A")
        );
        // HMAC-SHA3-256, checked with Python's hmac and hashlib.sha3_256.
        let tag = mac(Hash::Sha3_256, &key, b"hello").unwrap_or_default();
        assert_eq!(
            tag,
            hex("67744B78AB82CB0B650844F442F939FCEED87DB249FE42317FEFD107A2B6818F")
        );
        assert_eq!(mac_matches(Hash::Sha3_256, &key, b"hello", &tag), Ok(true));
        assert_eq!(mac_matches(Hash::Sha3_256, &key, b"hellO", &tag), Ok(false));
    }
}
