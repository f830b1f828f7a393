//! `ckms sym`: symmetric keys (create, export, import, wrap and unwrap files locally, revoke,
//! destroy, activate, re-key, rotation policy) and file encryption (see [`super::crypt`]).

use std::path::PathBuf;

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::key_wrap::{AES_128, AES_256, AesKek, KeyWrap, KeyWrapPadded};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Outcome;
use super::crypt::{self, CryptArgs};
use super::lifecycle::{self, DestroyArgs, RevokeArgs};
use super::objects::{self, ExportArgs, ImportArgs, Kind, Selector, WrappingAlgorithm};
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip::{self, leaf};

#[derive(Debug, Subcommand)]
pub enum SymCommand {
    /// Create, export, import, wrap, revoke, destroy keys
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Encrypt a file with a key of the KMS (AES-256-GCM)
    Encrypt(CryptArgs),
    /// Decrypt a file encrypted by `ckms sym encrypt`
    Decrypt(CryptArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlgorithm {
    Aes,
    Chacha20,
    /// An HMAC-SHA3 key (SHA3-256, -384 or -512 by --number-of-bits)
    Sha3,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key in the KMS
    Create {
        /// Key size in bits (AES: 128, 192 or 256; ChaCha20: 256; sha3: 256, 384 or 512;
        /// HMAC: a multiple of 8 from 128 to 1024)
        #[arg(short = 'l', long, default_value_t = 256)]
        number_of_bits: u32,
        /// Algorithm
        #[arg(short = 'a', long, value_enum, default_value = "aes")]
        algorithm: KeyAlgorithm,
        /// Tag to attach (repeatable)
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        /// The key may never leave the KMS in clear (only wrapped)
        #[arg(long)]
        sensitive: bool,
        /// Store the key wrapped by this key of the KMS
        #[arg(short = 'w', long)]
        wrapping_key_id: Option<String>,
        /// The identifier to give the key [default: chosen by the KMS]
        key_id: Option<String>,
    },
    /// Write a key to a file, in clear or wrapped by another key
    Export(ExportArgs),
    /// Import a key from a file
    Import(ImportArgs),
    /// Wrap a json-ttlv key file here with a key fetched from the KMS
    Wrap(WrapArgs),
    /// Unwrap a json-ttlv key file here with the key that wrapped it, fetched from the KMS
    Unwrap(WrapArgs),
    /// Revoke a key: it can no longer encrypt (it can still decrypt)
    Revoke(RevokeArgs),
    /// Destroy a key (revoke it first)
    Destroy(DestroyArgs),
    /// Activate a PreActive key now
    Activate {
        #[command(flatten)]
        key: Selector,
    },
    /// Replace a key with a new one (the old one is deactivated; grants and tags move on)
    ReKey {
        #[command(flatten)]
        key: Selector,
    },
    /// Re-key automatically every interval (0 turns it off)
    SetRotationPolicy {
        #[command(flatten)]
        key: Selector,
        /// Seconds between rotations (0: no automatic rotation)
        #[arg(long, visible_alias = "interval")]
        rotation_interval: i64,
        /// Seconds after the creation of the key before its first rotation
        #[arg(long, visible_alias = "offset")]
        rotation_offset: Option<i64>,
    },
}

#[derive(Debug, clap::Args)]
pub struct WrapArgs {
    /// The wrapping key (unwrap: default, the key named in the file's KeyWrappingData)
    #[arg(short = 'i', long = "wrap-key-id", alias = "unwrap-key-id")]
    pub wrap_key_id: Option<String>,
    /// How to wrap
    #[arg(short = 'm', long, value_enum, default_value = "nist-key-wrap")]
    pub wrapping_algorithm: WrappingAlgorithm,
    /// The json-ttlv key file to read
    pub key_file_in: PathBuf,
    /// The file to write [default: replace the input file]
    pub key_file_out: Option<PathBuf>,
}

pub async fn run(kms: &Kms, command: SymCommand) -> Result<Outcome, CliError> {
    match command {
        SymCommand::Keys { command } => keys(kms, command).await,
        SymCommand::Encrypt(args) => crypt::encrypt(kms, args).await,
        SymCommand::Decrypt(args) => crypt::decrypt(kms, args).await,
    }
}

async fn keys(kms: &Kms, command: KeysCommand) -> Result<Outcome, CliError> {
    let kind = Kind::SymmetricKey;
    match command {
        KeysCommand::Create {
            number_of_bits,
            algorithm,
            tags,
            sensitive,
            wrapping_key_id,
            key_id,
        } => {
            let bits = number_of_bits;
            let hmac = (128..=1024).contains(&bits) && bits % 8 == 0;
            let (name, fine) = match algorithm {
                KeyAlgorithm::Aes => ("AES", [128, 192, 256].contains(&bits)),
                KeyAlgorithm::Chacha20 => ("ChaCha20", bits == 256),
                KeyAlgorithm::Sha3 => match bits {
                    256 => ("SHA3256", true),
                    384 => ("SHA3384", true),
                    512 => ("SHA3512", true),
                    _ => ("SHA3", false),
                },
                KeyAlgorithm::HmacSha256 => ("HMACSHA256", hmac),
                KeyAlgorithm::HmacSha384 => ("HMACSHA384", hmac),
                KeyAlgorithm::HmacSha512 => ("HMACSHA512", hmac),
            };
            if !fine {
                return Err(CliError::Usage(format!(
                    "--number-of-bits {bits}: not a length for a {name} key"
                )));
            }
            // MAC keys compute and verify MACs; the others encrypt, decrypt and wrap.
            let mask = if matches!(algorithm, KeyAlgorithm::Aes | KeyAlgorithm::Chacha20) {
                2108
            } else {
                0x180
            };
            let mut extra = Vec::new();
            if sensitive {
                extra.push(leaf("Sensitive", "Boolean", json!(true)));
            }
            if let Some(kek) = &wrapping_key_id {
                extra.push(kmip::vendor("wrapping_key_id", kek));
            }
            let request = kmip::create(name, bits, mask, &tags, key_id.as_deref(), extra);
            let response = kms.kmip(&request).await?;
            let uid = kmip::text_field(&response, "UniqueIdentifier")?;
            Ok(Outcome::new(
                format!("The symmetric key was created with identifier {uid}"),
                json!({"unique_identifier": uid}),
            ))
        }
        KeysCommand::Export(args) => objects::export(kms, kind, args).await,
        KeysCommand::Import(args) => objects::import(kms, kind, args).await,
        KeysCommand::Revoke(args) => lifecycle::revoke(kms, kind, args).await,
        KeysCommand::Destroy(args) => lifecycle::destroy(kms, kind, args).await,
        KeysCommand::Wrap(args) => wrap(kms, args, true).await,
        KeysCommand::Unwrap(args) => wrap(kms, args, false).await,
        KeysCommand::Activate { key } => {
            let uid = lifecycle::by_id(kms, "Activate", &key.id()?).await?;
            Ok(Outcome::new(
                format!("The key {uid} was activated"),
                json!({"unique_identifier": uid}),
            ))
        }
        KeysCommand::ReKey { key } => {
            let id = key.id()?;
            let uid = lifecycle::by_id(kms, "ReKey", &id).await?;
            Ok(Outcome::new(
                format!("The key {id} was replaced by the key {uid}"),
                json!({"unique_identifier": uid}),
            ))
        }
        KeysCommand::SetRotationPolicy {
            key,
            rotation_interval,
            rotation_offset,
        } => {
            let id = key.id()?;
            if rotation_interval < 0 || rotation_offset.is_some_and(|o| o < 0) {
                return Err(CliError::Usage(
                    "the rotation interval and offset are seconds, 0 or more".into(),
                ));
            }
            let mut set = vec![("RotateInterval", rotation_interval)];
            set.extend(rotation_offset.map(|o| ("RotateOffset", o)));
            for (tag, value) in set {
                let attribute = leaf(tag, "LongInteger", json!(format!("0x{value:016X}")));
                let request = kmip::by_id(
                    "SetAttribute",
                    &id,
                    vec![json!({"tag": "NewAttribute", "value": [attribute]})],
                );
                kms.kmip(&request).await?;
            }
            let text = if rotation_interval == 0 {
                format!("The key {id} is no longer rotated automatically")
            } else {
                format!("The key {id} will be re-keyed every {rotation_interval} s")
            };
            Ok(Outcome::new(
                text,
                json!({"unique_identifier": id, "rotation_interval": rotation_interval}),
            ))
        }
    }
}

/// The clear bytes of the key `id`, fetched to wrap or unwrap with here.
async fn fetch_key(kms: &Kms, id: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let request = kmip::by_id(
        "Get",
        id,
        vec![leaf("KeyWrapType", "Enumeration", json!("NotWrapped"))],
    );
    Ok(Zeroizing::new(kmip::key_material(
        &kms.kmip(&request).await?,
    )?))
}

fn crypto(what: &str) -> CliError {
    CliError::Usage(format!(
        "{what} failed (wrong key, or the file was modified)"
    ))
}

/// AES key wrap (RFC 3394 or 5649) or AES-GCM (nonce ‖ ciphertext ‖ tag) of `data`.
fn local_wrap(
    alg: WrappingAlgorithm,
    kek: &[u8],
    data: &[u8],
    wrap: bool,
) -> Result<Vec<u8>, CliError> {
    let what = if wrap { "wrapping" } else { "unwrapping" };
    if alg == WrappingAlgorithm::AesGcm {
        let aead = match kek.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            n => {
                return Err(CliError::Usage(format!(
                    "a {n}-byte key cannot wrap with AES-GCM"
                )));
            }
        };
        let key = LessSafeKey::new(UnboundKey::new(aead, kek).map_err(|_| crypto(what))?);
        if wrap {
            let nonce: [u8; NONCE_LEN] = crypt::random()?;
            let mut out = data.to_vec();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut out,
            )
            .map_err(|_| crypto(what))?;
            return Ok([nonce.as_slice(), &out].concat());
        }
        let (nonce, sealed) = data
            .split_at_checked(NONCE_LEN)
            .ok_or_else(|| crypto(what))?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| crypto(what))?;
        let mut buffer = sealed.to_vec();
        let n = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut buffer,
            )
            .map_err(|_| crypto(what))?
            .len();
        buffer.truncate(n);
        return Ok(buffer);
    }
    let kek = AesKek::new(if kek.len() == 16 { &AES_128 } else { &AES_256 }, kek)
        .map_err(|_| CliError::Usage(format!("a {}-byte key cannot wrap", kek.len())))?;
    let mut out = vec![0u8; data.len() + 16];
    let n = match (alg, wrap) {
        (WrappingAlgorithm::NistKeyWrap, true) => kek.wrap(data, &mut out).map(|w| w.len()),
        (WrappingAlgorithm::NistKeyWrap, false) => kek.unwrap(data, &mut out).map(|w| w.len()),
        (_, true) => kek.wrap_with_padding(data, &mut out).map(|w| w.len()),
        (_, false) => kek.unwrap_with_padding(data, &mut out).map(|w| w.len()),
    }
    .map_err(|_| crypto(what))?;
    out.truncate(n);
    Ok(out)
}

/// `sym keys wrap|unwrap`: the key file's `KeyValue` replaced by its wrapped bytes and a
/// `KeyWrappingData` (NoEncoding: the key bytes are wrapped), or the reverse.
async fn wrap(kms: &Kms, args: WrapArgs, wrapping: bool) -> Result<Outcome, CliError> {
    let path = &args.key_file_in;
    let name = path.display();
    let mut object: Value = serde_json::from_slice(&objects::read(path)?)
        .map_err(|e| CliError::Usage(format!("{name}: not JSON TTLV: {e}")))?;
    let data = kmip::find(&object, "KeyWrappingData").cloned();
    let (kek_id, alg, plain) = if wrapping {
        if data.is_some() {
            return Err(CliError::Usage(format!("{name} is already wrapped")));
        }
        let kek_id = args
            .wrap_key_id
            .clone()
            .ok_or_else(|| CliError::Usage("give the wrapping key with --wrap-key-id".into()))?;
        let kek = fetch_key(kms, &kek_id).await?;
        let key = Zeroizing::new(kmip::key_material(&object)?);
        let wrapped = local_wrap(args.wrapping_algorithm, &kek, &key, true)?;
        (kek_id, args.wrapping_algorithm, wrapped)
    } else {
        let data = data.ok_or_else(|| CliError::Usage(format!("{name} is not wrapped")))?;
        let text = data.to_string();
        if text.contains("TTLVEncoding") || !text.contains("NoEncoding") {
            return Err(CliError::Usage(format!(
                "{name} holds a TTLV-encoded key value: have the KMS unwrap it with `ckms sym keys import -u {name}`"
            )));
        }
        let named = kmip::find(&data, "UniqueIdentifier").and_then(|u| u["value"].as_str());
        let kek_id = args
            .wrap_key_id
            .clone()
            .or(named.map(str::to_owned))
            .ok_or_else(|| CliError::Usage(format!("{name} does not name its wrapping key")))?;
        let alg = match kmip::find(&data, "BlockCipherMode").and_then(|m| m["value"].as_str()) {
            None | Some("NISTKeyWrap") => WrappingAlgorithm::NistKeyWrap,
            Some("AESKeyWrapPadding") => WrappingAlgorithm::AesKeyWrapPadding,
            Some("GCM") => WrappingAlgorithm::AesGcm,
            Some(other) => {
                return Err(CliError::Usage(format!(
                    "{name}: unknown wrapping mode {other}"
                )));
            }
        };
        let kek = fetch_key(kms, &kek_id).await?;
        let wrapped = kmip::key_material(&object)?;
        let clear = local_wrap(alg, &kek, &wrapped, false)?;
        (kek_id, alg, clear)
    };
    let block = kmip::find_mut(&mut object, "KeyBlock")
        .and_then(|b| b["value"].as_array_mut())
        .ok_or_else(|| CliError::Usage(format!("{name}: no KeyBlock")))?;
    block.retain(|c| c["tag"] != "KeyWrappingData");
    for child in block.iter_mut().filter(|c| c["tag"] == "KeyValue") {
        *child = if wrapping {
            kmip::bytes("KeyValue", &plain)
        } else {
            json!({"tag": "KeyValue", "value": [kmip::bytes("KeyMaterial", &plain)]})
        };
    }
    if wrapping {
        block.push(json!({"tag": "KeyWrappingData", "value": [
            leaf("WrappingMethod", "Enumeration", json!("Encrypt")),
            {"tag": "EncryptionKeyInformation", "value": [
                kmip::text("UniqueIdentifier", &kek_id),
                {"tag": "CryptographicParameters", "value": [
                    leaf("BlockCipherMode", "Enumeration", json!(alg.kmip())),
                ]},
            ]},
            leaf("EncodingOption", "Enumeration", json!("NoEncoding")),
        ]}));
    }
    let out = args.key_file_out.clone().unwrap_or_else(|| path.clone());
    let text =
        serde_json::to_string_pretty(&object).map_err(|e| CliError::Protocol(e.to_string()))?;
    objects::write(&out, text.as_bytes(), true)?;
    let verb = if wrapping { "wrapped" } else { "unwrapped" };
    Ok(Outcome::new(
        format!(
            "The key in {name} was {verb} with key {kek_id} into {}",
            out.display()
        ),
        json!({"file": out, "wrapping_key_id": kek_id}),
    ))
}
