//! KMIP key wrapping: reading a `KeyWrappingSpecification` (Get, Export) or a key block's
//! `KeyWrappingData` (Import), and wrapping or unwrapping key material with a key the caller
//! may use: encrypt right on the wrapping key to wrap, decrypt right to unwrap.

use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::key_wrap::{self, WrapMode};
use crate::kmip::build::{enumeration, structure, text};
use crate::kmip::creation::{MASK_UNRESTRICTED, MASK_UNWRAP_KEY, MASK_WRAP_KEY};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::Kms;
use crate::kmip::operation::Operation;
use crate::kmip::params::CryptoParams;
use crate::kmip::ttlv::Ttlv;
use crate::object::{Algorithm, State};

/// How the key material is laid out before wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The key bytes themselves.
    NoEncoding,
    /// The whole `KeyValue` (material and attributes) as binary TTLV, KMIP's default.
    Ttlv,
}

/// Which key wraps, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapSpec<'a> {
    pub key_id: &'a str,
    pub mode: WrapMode,
    pub encoding: Encoding,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Self::NoEncoding => "NoEncoding",
            Self::Ttlv => "TTLVEncoding",
        }
    }
}

/// Reads `KeyWrappingSpecification` or `KeyWrappingData` (they share these fields).
pub fn parse(mut f: Fields<'_>) -> Result<WrapSpec<'_>, KmsError> {
    let path = f.path().to_owned();
    match f.enumeration("WrappingMethod")? {
        None | Some("Encrypt") => {}
        Some(other) => return Err(unsupported(&path, format!("WrappingMethod {other}"))),
    }
    let mut info = f.structure("EncryptionKeyInformation")?.ok_or_else(|| {
        KmsError::InvalidRequest(format!("{path}: EncryptionKeyInformation is required"))
    })?;
    let key_id = info.text("UniqueIdentifier")?.ok_or_else(|| {
        KmsError::InvalidRequest(format!(
            "{path}.EncryptionKeyInformation: UniqueIdentifier is required"
        ))
    })?;
    let params = CryptoParams::parse(info.structure("CryptographicParameters")?)?;
    info.finish()?;
    // KMIP: without an EncodingOption the wrapped value is TTLV-encoded.
    let encoding = match f.enumeration("EncodingOption")? {
        Some("NoEncoding") => Encoding::NoEncoding,
        _ => Encoding::Ttlv,
    };
    f.finish()?;
    let mode = match params.mode {
        None => WrapMode::Rfc3394,
        Some(mode) => WrapMode::parse(mode).ok_or_else(|| {
            unsupported(&path, format!("BlockCipherMode {mode} for key wrapping"))
        })?,
    };
    if let Some(alg) = params.algorithm.filter(|a| *a != "AES") {
        return Err(unsupported(
            &path,
            format!("CryptographicAlgorithm {alg} for key wrapping"),
        ));
    }
    let rest = CryptoParams {
        mode: None,
        algorithm: None,
        ..params
    };
    if rest != CryptoParams::default() {
        return Err(unsupported(
            &path,
            "CryptographicParameters other than BlockCipherMode and CryptographicAlgorithm",
        ));
    }
    Ok(WrapSpec {
        key_id,
        mode,
        encoding,
    })
}

/// The `KeyWrappingData` a wrapped key block carries.
pub fn data(spec: &WrapSpec<'_>) -> Ttlv {
    structure(
        "KeyWrappingData",
        vec![
            enumeration("WrappingMethod", "Encrypt"),
            structure(
                "EncryptionKeyInformation",
                vec![
                    text("UniqueIdentifier", spec.key_id),
                    structure(
                        "CryptographicParameters",
                        vec![enumeration("BlockCipherMode", spec.mode.name())],
                    ),
                ],
            ),
            enumeration("EncodingOption", spec.encoding.name()),
        ],
    )
}

impl Kms {
    /// The clear material of the wrapping key `id`, for `user` to wrap (`wrap` true) or
    /// unwrap with it.
    async fn wrapping_key(
        &self,
        user: &str,
        id: &str,
        wrap: bool,
    ) -> Result<(String, Zeroizing<Vec<u8>>), KmsError> {
        let op = if wrap {
            Operation::Encrypt
        } else {
            Operation::Decrypt
        };
        let k = self.crypto_key(user, id, op).await?;
        let what = if wrap { "wrap" } else { "unwrap" };
        if k.algorithm != Some(Algorithm::Aes) {
            return Err(unsupported(
                "key wrapping",
                format!("a {} as the wrapping key", k.object_type.name()),
            ));
        }
        if k.is_resident() {
            return Err(unsupported("key wrapping", "an HSM-resident wrapping key"));
        }
        let usable = if wrap {
            k.state == State::Active
        } else {
            k.state != State::PreActive
        };
        if !usable {
            return Err(KmsError::PermissionDenied(format!(
                "the wrapping key {} is {} and cannot {what}",
                k.uid,
                k.state.name()
            )));
        }
        let bit = if wrap { MASK_WRAP_KEY } else { MASK_UNWRAP_KEY };
        if k.usage_mask & (bit | MASK_UNRESTRICTED) == 0 {
            return Err(KmsError::PermissionDenied(format!(
                "the usage mask of key {} does not allow it to {what} keys",
                k.uid
            )));
        }
        let material = self.keys.unwrap(k.wrapping, &k.uid, &k.wrapped_key)?;
        Ok((k.uid, material))
    }

    /// The uid of the key `id` names, when `user` may wrap with it.
    pub async fn check_may_wrap(&self, user: &str, id: &str) -> Result<String, KmsError> {
        self.wrapping_key(user, id, true).await.map(|(uid, _)| uid)
    }

    /// Fails unless `user` may unwrap with the key `id`.
    pub async fn check_may_unwrap(&self, user: &str, id: &str) -> Result<(), KmsError> {
        self.wrapping_key(user, id, false).await.map(|_| ())
    }

    /// A key stored wrapped by the key `uid`, wrapped again for the answer (RFC 5649, which
    /// gives the same bytes each time). The wrapping was decided when the key was stored, so
    /// the caller's rights on the wrapping key do not matter here.
    pub async fn rewrap_stored(&self, uid: &str, plain: &[u8]) -> Result<Vec<u8>, KmsError> {
        let k = self
            .store
            .load(uid)
            .await?
            .filter(|k| !k.state.is_destroyed() && !k.is_resident())
            .ok_or_else(|| {
                KmsError::InvalidRequest(format!(
                    "the key was stored wrapped by key {uid}, which is gone: ask for it with KeyWrapType NotWrapped"
                ))
            })?;
        let kek = self.keys.unwrap(k.wrapping, &k.uid, &k.wrapped_key)?;
        Ok(key_wrap::wrap(WrapMode::Rfc5649, &kek, plain)?)
    }

    /// `plain` wrapped as `spec` says, by a key `user` may encrypt with. Returns the wrapping
    /// key's uid (the spec may name it by tags) and the wrapped bytes.
    pub async fn wrap_key(
        &self,
        user: &str,
        spec: &WrapSpec<'_>,
        plain: &[u8],
    ) -> Result<(String, Vec<u8>), KmsError> {
        let (uid, kek) = self.wrapping_key(user, spec.key_id, true).await?;
        Ok((uid, key_wrap::wrap(spec.mode, &kek, plain)?))
    }

    /// `wrapped` unwrapped as `spec` says, by a key `user` may decrypt with.
    pub async fn unwrap_key(
        &self,
        user: &str,
        spec: &WrapSpec<'_>,
        wrapped: &[u8],
    ) -> Result<(String, Zeroizing<Vec<u8>>), KmsError> {
        let (uid, kek) = self.wrapping_key(user, spec.key_id, false).await?;
        let plain = key_wrap::unwrap(spec.mode, &kek, wrapped).map_err(|_| {
            KmsError::Crypto(format!(
                "CRYPTO: error: the key does not unwrap with key {uid} ({})",
                spec.mode.name()
            ))
        })?;
        Ok((uid, plain))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use crate::key_wrap::{self, WrapMode};
    use crate::kmip::binary;
    use crate::kmip::testing::{by_uid, field, kms, leaf, run, uid};
    use crate::kmip::text::{decode_hex, hex_upper};
    use crate::kmip::ttlv::Value;

    /// The reference's KEK (exchange 0051) and a key it exported wrapped by it, TTLV-encoded
    /// with NIST key wrap (exchange 0037); the key is 163BE40B...B632 (exchange 0032).
    const KEK_UID: &str = "de362985-8df5-4fa1-833c-6e035b43faa5";
    const KEK: &str = "05EA882785555265544168AB34FA82F9113D4E363C03C9AC9A3B4A585283A7A1";
    const KEY: &str = "163BE40B034AC35CA5B865DE78160632D37135D9C6C2B5C1D490CBC104D5B632";
    const WRAPPED: &str = "88C082E9F8595F5FD523B1D0C6A9FA1E590D7C2547EAB704C9E0A44B51FF3B38B12FE5807C81D34F471FC3A5A08AC168CC897A614E235ED58A71F6A70BCB983A62CB85F3EE5CB3ADFCA5C922205F2A9AA03A387AA9B5AA934F4908AFAE497C697462FE8F2927F45597AA63B84748A0CC0CE4E42900BBDEB5021CC2C585205B94E292617FD55B31B231AD8F24455E0FCA2A15D713770A516F709768B135C679B186F645BC6EC0EA58929916B1A64D4C13C8AC1EFF4F7D65450CD58D40EAFF3B3D4AA387DBFBFCF4A8549F4F98E7307EF8D69F8D105724C81F8E6B18A2F0C38F178F370E98963BEA37C823D59C334F0B93D862FBDD1E314CF8F950382E0F2755E629DCDA0C88878782A8C0ABB8101E5E199273D0ED826D9A3D3408C67CB6F827CBE9C703EAE373C62C9FB68AE344EF07C2789572190B87572B3A1516C04C323E47D4DC77D37FC0CDF9FC6E74BE925D81A8CE20ECC9932DCBEEE9A0D9D582ECFC082A833469CE691CD06F80DCAA99F47D7CC18799BB2986F9D44EE00C0A58178AB55FA69681486F6D764BB861C9F80CB32D60AC1F4FEEEEDF662DDBA58D1939D4FD82427BD913342A3BFA073B25B6512BEB1A4DC9CCF4258C01AB3993ED8B38AE16A20E823E385D4B62187896BB321C123A";

    fn import(uid: &str, key_value: Json, wrapping: Option<Json>) -> Json {
        let mut block = vec![
            leaf("KeyFormatType", "Enumeration", json!("Raw")),
            key_value,
            leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
            leaf("CryptographicLength", "Integer", json!(256)),
        ];
        block.extend(wrapping);
        json!({"tag": "Import", "value": [
            leaf("UniqueIdentifier", "TextString", json!(uid)),
            leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
            leaf("KeyWrapType", "Enumeration", json!("NotWrapped")),
            {"tag": "Attributes", "value": [
                leaf("ActivationDate", "DateTime", json!("2026-01-01T00:00:00Z")),
            ]},
            {"tag": "SymmetricKey", "value": [{"tag": "KeyBlock", "value": block}]},
        ]})
    }

    fn spec(tag: &str) -> Json {
        json!({"tag": tag, "value": [
            leaf("WrappingMethod", "Enumeration", json!("Encrypt")),
            {"tag": "EncryptionKeyInformation", "value": [
                leaf("UniqueIdentifier", "TextString", json!(KEK_UID)),
                {"tag": "CryptographicParameters", "value": [
                    leaf("BlockCipherMode", "Enumeration", json!("NISTKeyWrap")),
                ]},
            ]},
            leaf("EncodingOption", "Enumeration", json!("TTLVEncoding")),
        ]})
    }

    #[tokio::test]
    async fn ttlv_encoded_keys_import_from_the_reference_and_export_back() {
        let kms = kms().await;
        let clear = |hex: &str| json!({"tag": "KeyValue", "value": [leaf("KeyMaterial", "ByteString", json!(hex))]});
        let kek = run(&kms, "alice", import(KEK_UID, clear(KEK), None)).await;
        assert_eq!(kek.map(|r| uid(&r)).ok().as_deref(), Some(KEK_UID));
        // The reference's request 0048: unwrap on import.
        let wrapped = leaf("KeyValue", "ByteString", json!(WRAPPED));
        let request = import("impw", wrapped, Some(spec("KeyWrappingData")));
        let imported = run(&kms, "alice", request).await;
        assert_eq!(
            imported
                .map(|r| uid(&r))
                .map_err(|e| e.to_string())
                .as_deref(),
            Ok("impw")
        );
        let o = kms.store.load("impw").await.ok().flatten();
        let tags: Vec<String> = o.map(|o| o.tags.into_iter().collect()).unwrap_or_default();
        assert!(tags.contains(&"t1-capture-4885".to_owned()), "{tags:?}");
        let got = run(&kms, "alice", by_uid("Get", "impw", vec![])).await;
        let got = got.unwrap_or_else(|e| panic!("{e}"));
        assert!(got.to_string().contains(KEY));
        // Exported TTLV-encoded, it unwraps (RFC 3394) to a key value holding key and tags.
        let got = run(
            &kms,
            "alice",
            by_uid("Get", "impw", vec![spec("KeyWrappingSpecification")]),
        )
        .await;
        let got = got.unwrap_or_else(|e| panic!("{e}"));
        let block = &field(&got, "SymmetricKey").cloned().unwrap_or_default()[0];
        let wrapped = field(block, "KeyValue").cloned().unwrap_or_default();
        let data = field(block, "KeyWrappingData")
            .map(Json::to_string)
            .unwrap_or_default();
        assert!(data.contains("TTLVEncoding"), "{data}");
        let kek = decode_hex(KEK).unwrap_or_default();
        let plain = key_wrap::unwrap(
            WrapMode::Rfc3394,
            &kek,
            &decode_hex(wrapped.as_str().unwrap_or("")).unwrap_or_default(),
        );
        let value = binary::decode(&plain.map(|p| p.to_vec()).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        let text = value.to_json().to_string();
        assert!(
            text.contains(KEY) && text.contains("t2-capture-4885"),
            "{text}"
        );
        let key = Value::ByteString(decode_hex(KEY).unwrap_or_default());
        assert_eq!(value.child("KeyMaterial").map(|m| &m.value), Some(&key));
        // Garbage that unwraps is refused by name, not imported.
        let junk = key_wrap::wrap(
            WrapMode::Rfc3394,
            &kek,
            &[0x42, 0, 0x45, 1, 0, 0, 0, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0],
        )
        .unwrap_or_default();
        let request = import(
            "junk",
            leaf("KeyValue", "ByteString", json!(hex_upper(&junk))),
            Some(spec("KeyWrappingData")),
        );
        let err = run(&kms, "alice", request)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("binary TTLV"), "{err}");
    }
}
