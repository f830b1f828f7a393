//! The envelope of `ckms sym encrypt --envelope` (or `-e`): a file of any size encrypted here
//! in constant memory, with a progress bar on a terminal, under a fresh AES-256 data key that
//! the KMS key wraps. Layout:
//!
//! `CKMSENV2 ‖ u8 key encryption (1 AES-GCM, 2 RFC 5649, 3 RFC 3394, 4 AES-GCM-SIV) ‖ u32
//! length ‖ wrapped data key (as the KMS returned it) ‖ u32 chunk size ‖ 7-byte nonce prefix ‖
//! chunks`. Each chunk is at most `chunk size` bytes of AES-256-GCM ciphertext and its tag,
//! under the nonce `prefix ‖ u32 counter ‖ last` (`last` is 1 on the final chunk only), so a
//! chunk reordered, dropped, or a file cut at a chunk boundary does not decrypt (the STREAM
//! construction). The whole-file `CKMSENV1` envelopes of earlier versions still decrypt.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use zeroize::Zeroizing;

use super::Outcome;
use super::crypt::{KeyEncryption, kms_decrypt, kms_encrypt, random};
use crate::error::CliError;
use crate::files::{Existing, Staged};
use crate::http::Kms;

pub const ENVELOPE_MAGIC: &[u8; 8] = b"CKMSENV2";
const ENVELOPE_V1: &[u8; 8] = b"CKMSENV1";
const TAG_LEN: usize = 16;
const CHUNK: usize = 1024 * 1024;
const WRAP_AAD_V1: &[u8] = b"ckms envelope v1";
const WRAP_AAD: &[u8] = b"ckms envelope v2";

/// Additional data for the data key's wrapping: only the AEAD modes take it.
fn wrap_aad(wrap: KeyEncryption) -> &'static [u8] {
    match wrap {
        KeyEncryption::AesGcm | KeyEncryption::AesGcmSiv => WRAP_AAD,
        KeyEncryption::Rfc5649 | KeyEncryption::Rfc3394 => &[],
    }
}

fn io(path: &Path, what: &str) -> impl Fn(std::io::Error) -> CliError {
    let name = format!("cannot {what} {}", path.display());
    move |e| CliError::io(&name, e)
}

/// How the data key of the envelope in `path` was wrapped; `None` when it is no envelope (an
/// unknown key-encryption byte is reported by [`decrypt`]).
pub fn key_encryption(path: &Path) -> Result<Option<Option<KeyEncryption>>, CliError> {
    let mut head = Vec::new();
    File::open(path)
        .map_err(io(path, "read"))?
        .take(9)
        .read_to_end(&mut head)
        .map_err(io(path, "read"))?;
    Ok(match head.get(..8) {
        Some(m) if m == ENVELOPE_V1 => Some(Some(KeyEncryption::AesGcm)),
        Some(m) if m == ENVELOPE_MAGIC => {
            Some(head.get(8).and_then(|b| KeyEncryption::from_id(*b)))
        }
        _ => None,
    })
}

/// Reads until `buf` holds `size` bytes or the input ends; whether the input has ended.
fn fill(reader: &mut impl BufRead, buf: &mut Vec<u8>, size: usize) -> std::io::Result<bool> {
    buf.clear();
    reader.take(size as u64).read_to_end(buf)?;
    Ok(buf.len() < size || reader.fill_buf()?.is_empty())
}

fn chunk_nonce(prefix: &[u8; 7], counter: u32, last: bool) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..7].copy_from_slice(prefix);
    nonce[7..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
}

fn data_key(dek: &[u8]) -> Result<LessSafeKey, CliError> {
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, dek)
            .map_err(|_| CliError::Protocol("the data key is not an AES-256 key".into()))?,
    ))
}

/// A progress bar on stderr, drawn only on a terminal.
fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

pub async fn encrypt(
    kms: &Kms,
    id: &str,
    wrap: KeyEncryption,
    file: &Path,
    output: &Path,
    aad: &[u8],
) -> Result<Outcome, CliError> {
    let size = std::fs::metadata(file).map_err(io(file, "read"))?.len();
    let dek = Zeroizing::new(random::<32>()?);
    let wrapped = kms_encrypt(kms, id, wrap.mode(), &*dek, None, wrap_aad(wrap)).await?;
    let key = data_key(&*dek)?;
    let prefix: [u8; 7] = random()?;
    let mut input = BufReader::with_capacity(CHUNK, File::open(file).map_err(io(file, "read"))?);
    let mut out = Staged::create(output, Existing::Replace).map_err(io(output, "write"))?;
    let header = [
        ENVELOPE_MAGIC.as_slice(),
        &[wrap.id()],
        &u32::try_from(wrapped.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
        &wrapped,
        &u32::try_from(CHUNK).unwrap_or(u32::MAX).to_be_bytes(),
        &prefix,
    ]
    .concat();
    out.write_all(&header).map_err(io(output, "write"))?;
    let bar = progress(size, "encrypting");
    let mut buf = Vec::with_capacity(CHUNK + TAG_LEN);
    let mut written = header.len() as u64;
    for counter in 0u32.. {
        let last = fill(&mut input, &mut buf, CHUNK).map_err(io(file, "read"))?;
        bar.inc(buf.len() as u64);
        key.seal_in_place_append_tag(
            chunk_nonce(&prefix, counter, last),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| CliError::Io("local encryption failed".into()))?;
        out.write_all(&buf).map_err(io(output, "write"))?;
        written += buf.len() as u64;
        if last {
            break;
        }
    }
    out.commit().map_err(io(output, "write"))?;
    bar.finish_and_clear();
    Ok(Outcome::new(
        format!("The encrypted file is available at {}", output.display()),
        json!({"output_file": output, "envelope": true, "bytes": written}),
    ))
}

pub async fn decrypt(
    kms: &Kms,
    id: &str,
    file: &Path,
    output: &Path,
    aad: &[u8],
    force: bool,
) -> Result<Outcome, CliError> {
    let name = file.display().to_string();
    let truncated = || CliError::Usage(format!("{name}: truncated envelope"));
    let failed = || {
        CliError::Usage(format!(
            "{name}: authentication failed (wrong additional data, or the file was modified)"
        ))
    };
    let size = std::fs::metadata(file).map_err(io(file, "read"))?.len();
    let mut input =
        BufReader::with_capacity(CHUNK + TAG_LEN, File::open(file).map_err(io(file, "read"))?);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(|_| truncated())?;
    let v1 = &magic == ENVELOPE_V1;
    let wrap = if v1 {
        KeyEncryption::AesGcm
    } else {
        let mut id = [0u8; 1];
        input.read_exact(&mut id).map_err(|_| truncated())?;
        KeyEncryption::from_id(id[0])
            .ok_or_else(|| CliError::Usage(format!("{name}: unknown key encryption {}", id[0])))?
    };
    let u32_field = |input: &mut BufReader<File>| -> Result<usize, CliError> {
        let mut b = [0u8; 4];
        input.read_exact(&mut b).map_err(|_| truncated())?;
        Ok(usize::try_from(u32::from_be_bytes(b)).unwrap_or(usize::MAX))
    };
    let wrapped_len = u32_field(&mut input)?;
    if wrapped_len > 1024 {
        return Err(truncated());
    }
    let mut wrapped = vec![0u8; wrapped_len];
    input.read_exact(&mut wrapped).map_err(|_| truncated())?;
    let wrapping_aad = if v1 { WRAP_AAD_V1 } else { wrap_aad(wrap) };
    let dek = Zeroizing::new(kms_decrypt(kms, id, wrap.mode(), &wrapped, wrapping_aad).await?);
    let key = data_key(&dek)?;
    let existing = if force {
        Existing::Replace
    } else {
        Existing::Keep
    };
    let mut out = Staged::create(output, existing).map_err(io(output, "write"))?;
    let mut total = 0u64;
    if v1 {
        // One nonce and one tag over the whole file.
        let mut body = Zeroizing::new(Vec::new());
        input.read_to_end(&mut body).map_err(io(file, "read"))?;
        let (nonce, sealed) = body.split_at_checked(NONCE_LEN).ok_or_else(truncated)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| truncated())?;
        let mut buffer = Zeroizing::new(sealed.to_vec());
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| failed())?;
        out.write_all(plain).map_err(io(output, "write"))?;
        total = plain.len() as u64;
    } else {
        let chunk = u32_field(&mut input)?;
        if chunk == 0 || chunk > 64 * CHUNK {
            return Err(CliError::Usage(format!(
                "{name}: chunk size {chunk} out of range"
            )));
        }
        let mut prefix = [0u8; 7];
        input.read_exact(&mut prefix).map_err(|_| truncated())?;
        let bar = progress(size, "decrypting");
        let mut buf = Zeroizing::new(Vec::with_capacity(chunk + TAG_LEN));
        for counter in 0u32.. {
            let last = fill(&mut input, &mut buf, chunk + TAG_LEN).map_err(io(file, "read"))?;
            bar.inc(buf.len() as u64);
            let plain = key
                .open_in_place(
                    chunk_nonce(&prefix, counter, last),
                    Aad::from(aad),
                    &mut buf,
                )
                .map_err(|_| failed())?;
            out.write_all(plain).map_err(io(output, "write"))?;
            total += plain.len() as u64;
            if last {
                break;
            }
        }
        bar.finish_and_clear();
    }
    out.commit().map_err(io(output, "write"))?;
    Ok(Outcome::new(
        format!("The decrypted file is available at {}", output.display()),
        json!({"output_file": output, "envelope": true, "bytes": total}),
    ))
}
