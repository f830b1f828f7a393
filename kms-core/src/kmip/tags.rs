//! KMIP tag numbers and enumeration codes (KMIP 2.1, section 11), for the binary TTLV of wrapped key values ([`crate::kmip::binary`]). The JSON
//! form names tags and enumeration values; the binary form numbers them. Only the tags a key
//! value and its attributes use are listed: an object needing another one is refused by name.

use crate::kmip::names;

/// Tag number and JSON name.
const TAGS: &[(u32, &str)] = &[
    (0x42_0001, "ActivationDate"),
    (0x42_0008, "Attribute"),
    (0x42_000A, "AttributeName"),
    (0x42_000B, "AttributeValue"),
    (0x42_0011, "BlockCipherMode"),
    (0x42_0020, "CompromiseDate"),
    (0x42_0021, "CompromiseOccurrenceDate"),
    (0x42_0022, "ContactInformation"),
    (0x42_0028, "CryptographicAlgorithm"),
    (0x42_002A, "CryptographicLength"),
    (0x42_002B, "CryptographicParameters"),
    (0x42_002C, "CryptographicUsageMask"),
    (0x42_002F, "DeactivationDate"),
    (0x42_0033, "DestroyDate"),
    (0x42_0034, "Digest"),
    (0x42_0035, "DigestValue"),
    (0x42_0038, "HashingAlgorithm"),
    (0x42_0039, "InitialDate"),
    (0x42_003F, "Key"),
    (0x42_0042, "KeyFormatType"),
    (0x42_0043, "KeyMaterial"),
    (0x42_0045, "KeyValue"),
    (0x42_0048, "LastChangeDate"),
    (0x42_0049, "LeaseTime"),
    (0x42_004A, "Link"),
    (0x42_004B, "LinkType"),
    (0x42_004C, "LinkedObjectIdentifier"),
    (0x42_0053, "Name"),
    (0x42_0054, "NameType"),
    (0x42_0055, "NameValue"),
    (0x42_0056, "ObjectGroup"),
    (0x42_0057, "ObjectType"),
    (0x42_0067, "ProcessStartDate"),
    (0x42_0068, "ProtectStopDate"),
    (0x42_0080, "RevocationMessage"),
    (0x42_0081, "RevocationReason"),
    (0x42_0082, "RevocationReasonCode"),
    (0x42_0086, "SecretDataType"),
    (0x42_008D, "State"),
    (0x42_0094, "UniqueIdentifier"),
    (0x42_009D, "VendorIdentification"),
    (0x42_00A8, "Fresh"),
    (0x42_00BC, "OriginalCreationDate"),
    (0x42_00DA, "RNGAlgorithm"),
    (0x42_00DE, "RandomNumberGenerator"),
    (0x42_00FC, "Description"),
    (0x42_00FD, "Comment"),
    (0x42_0120, "Sensitive"),
    (0x42_0121, "AlwaysSensitive"),
    (0x42_0122, "Extractable"),
    (0x42_0123, "NeverExtractable"),
    (0x42_0125, "Attributes"),
    (0x42_0136, "ShortUniqueIdentifier"),
];

/// The number of the tag `name`.
pub fn number(name: &str) -> Option<u32> {
    TAGS.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
}

/// The name of the tag `number`.
pub fn name(number: u32) -> Option<&'static str> {
    TAGS.iter().find(|(t, _)| *t == number).map(|(_, n)| *n)
}

const RNG_ALGORITHMS: &[&str] = &[
    "Unspecified",
    "FIPS186_2",
    "DRBG",
    "NRBG",
    "ANSI_X931",
    "ANSI_X962",
];
/// Codes with gaps (reserved values in between).
const OBJECT_TYPES: &[(u32, &str)] = &[
    (1, "Certificate"),
    (2, "SymmetricKey"),
    (3, "PublicKey"),
    (4, "PrivateKey"),
    (5, "SplitKey"),
    (7, "SecretData"),
    (8, "OpaqueObject"),
    (9, "PGPKey"),
    (10, "CertificateRequest"),
];
const KEY_FORMATS: &[(u32, &str)] = &[
    (1, "Raw"),
    (2, "Opaque"),
    (3, "PKCS1"),
    (4, "PKCS8"),
    (5, "X509"),
    (6, "ECPrivateKey"),
    (7, "TransparentSymmetricKey"),
    (8, "TransparentDSAPrivateKey"),
    (9, "TransparentDSAPublicKey"),
    (10, "TransparentRSAPrivateKey"),
    (11, "TransparentRSAPublicKey"),
    (12, "TransparentDHPrivateKey"),
    (13, "TransparentDHPublicKey"),
    (0x14, "TransparentECPrivateKey"),
    (0x15, "TransparentECPublicKey"),
    (0x16, "PKCS12"),
    (0x17, "PKCS10"),
];

/// How the values of an enumeration are numbered.
enum Codes {
    /// Consecutive codes from the first, in the order of the names.
    From(u32, &'static [&'static str]),
    Listed(&'static [(u32, &'static str)]),
}

/// The first `count` names [`names::valid_names`] lists for `tag`, which follow KMIP's order
/// (the reference's extensions come after).
fn spec_order(first: u32, tag: &str, count: usize) -> Option<Codes> {
    let all = names::valid_names(tag)?;
    Some(Codes::From(first, all.get(..count)?))
}

fn codes(tag: &str) -> Option<Codes> {
    match tag {
        // DES (1) to SHAKE256 (0x28).
        "CryptographicAlgorithm" => spec_order(1, tag, 0x28),
        // MD2 (1) to SHA3-512 (0x11).
        "HashingAlgorithm" => spec_order(1, tag, 0x11),
        "State" => spec_order(1, tag, 6),
        // CBC (1) to AEAD (0x12).
        "BlockCipherMode" => spec_order(1, tag, 0x12),
        "RevocationReasonCode" => spec_order(1, tag, 7),
        "NameType" => spec_order(1, tag, 2),
        "SecretDataType" => spec_order(1, tag, 2),
        "LinkType" => spec_order(0x101, tag, 14),
        "RNGAlgorithm" => Some(Codes::From(1, RNG_ALGORITHMS)),
        "ObjectType" => Some(Codes::Listed(OBJECT_TYPES)),
        "KeyFormatType" => Some(Codes::Listed(KEY_FORMATS)),
        _ => None,
    }
}

/// The code of the value `name` of the enumeration `tag`.
pub fn code(tag: &str, name: &str) -> Option<u32> {
    match codes(tag)? {
        Codes::From(first, names) => names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| u32::try_from(i).ok())
            .map(|i| first + i),
        Codes::Listed(list) => list.iter().find(|(_, n)| *n == name).map(|(c, _)| *c),
    }
}

/// The name of the value `code` of the enumeration `tag`.
pub fn code_name(tag: &str, code: u32) -> Option<&'static str> {
    match codes(tag)? {
        Codes::From(first, names) => {
            let i = usize::try_from(code.checked_sub(first)?).ok()?;
            names.get(i).copied()
        }
        Codes::Listed(list) => list.iter().find(|(c, _)| *c == code).map(|(_, n)| *n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_agree_and_are_unique() {
        for (number, tag) in TAGS {
            assert_eq!(name(*number), Some(*tag));
            assert_eq!(super::number(tag), Some(*number));
        }
        // Spot checks against KMIP 2.1's tables.
        assert_eq!(code("CryptographicAlgorithm", "SHAKE256"), Some(0x28));
        assert_eq!(code("CryptographicAlgorithm", "ChaCha20"), Some(0x1C));
        assert_eq!(code("BlockCipherMode", "NISTKeyWrap"), Some(0x0D));
        assert_eq!(code("LinkType", "WrappingKeyLink"), Some(0x10E));
        assert_eq!(code("HashingAlgorithm", "SHA3512"), Some(0x11));
        assert_eq!(code("State", "Destroyed_Compromised"), Some(6));
        assert_eq!(
            code("BlockCipherMode", "GCMSIV"),
            None,
            "a reference extension"
        );
        assert_eq!(code("ObjectType", "SecretData"), Some(7));
        assert_eq!(
            code_name("KeyFormatType", 0x14),
            Some("TransparentECPrivateKey")
        );
        assert_eq!(code_name("State", 0), None);
        // Every name listed is a valid KMIP name for its tag.
        for tag in [
            "CryptographicAlgorithm",
            "HashingAlgorithm",
            "State",
            "BlockCipherMode",
            "NameType",
            "SecretDataType",
            "LinkType",
            "ObjectType",
            "KeyFormatType",
        ] {
            let valid = crate::kmip::names::valid_names(tag).unwrap_or(&[]);
            for c in 0..0x200 {
                if let Some(n) = code_name(tag, c) {
                    assert!(valid.contains(&n), "{tag} {n}");
                }
            }
        }
    }
}
