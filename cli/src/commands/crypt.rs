//! `ckms sym encrypt|decrypt`. A file is encrypted by the KMS (AES-256-GCM, output
//! `nonce ‖ ciphertext ‖ tag`) up to [`MAX_SERVER_SIDE`]; with `--envelope`, a file of any
//! size is encrypted here, in constant memory, under a fresh data key that the KMS key wraps
//! (see [`ENVELOPE_MAGIC`]), with a progress bar on a terminal.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use zeroize::Zeroizing;

use super::Outcome;
use super::objects::{Selector, read, write};
use crate::error::CliError;
use crate::files::{Existing, Staged};
use crate::http::Kms;
use crate::kmip;

/// Largest file the KMS encrypts itself (its JSON request carries the data in hex).
pub const MAX_SERVER_SIDE: u64 = 16 * 1024 * 1024;
/// First bytes of an envelope file, then: u32 length of the wrapped data key ‖ wrapped key
/// (nonce ‖ ciphertext ‖ tag, by the KMS) ‖ u32 chunk size ‖ 7-byte nonce prefix ‖ chunks.
/// Each chunk is at most `chunk size` bytes of AES-256-GCM ciphertext and its tag, under the
/// nonce `prefix ‖ u32 counter ‖ last` (`last` is 1 on the final chunk only, so a file cut
/// at a chunk boundary does not decrypt: the STREAM construction).
pub const ENVELOPE_MAGIC: &[u8; 8] = b"CKMSENV2";
/// The whole-file envelope of earlier versions, still decrypted.
const ENVELOPE_V1: &[u8; 8] = b"CKMSENV1";
const TAG_LEN: usize = 16;
const CHUNK: usize = 1024 * 1024;
const WRAP_AAD_V1: &[u8] = b"ckms envelope v1";
const WRAP_AAD: &[u8] = b"ckms envelope v2";

#[derive(Debug, Args)]
pub struct CryptArgs {
    #[command(flatten)]
    pub key: Selector,
    /// Additional authenticated data, in hexadecimal (the same must be given to decrypt)
    #[arg(short = 'a', long, value_name = "HEX")]
    pub authentication_data: Option<String>,
    /// Output file [default: FILE.enc to encrypt, FILE without .enc (or FILE.plain) to decrypt]
    #[arg(short = 'o', long)]
    pub output_file: Option<PathBuf>,
    /// Encrypt here, in constant memory, under a fresh data key wrapped by the KMS key (any
    /// file size)
    #[arg(long)]
    pub envelope: bool,
    /// Overwrite the output file if it exists (decrypt refuses to otherwise)
    #[arg(long)]
    pub force: bool,
    /// The file to read
    pub file: PathBuf,
}

pub fn random<const N: usize>() -> Result<[u8; N], CliError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CliError::Io("no randomness available".into()))?;
    Ok(out)
}

fn aad(args: &CryptArgs) -> Result<Vec<u8>, CliError> {
    args.authentication_data
        .as_deref()
        .map(|h| {
            kmip::unhex(h)
                .map_err(|_| CliError::Usage("--authentication-data must be hexadecimal".into()))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// AES-256-GCM by the KMS: nonce ‖ ciphertext ‖ tag.
async fn kms_encrypt(kms: &Kms, id: &str, data: &[u8], aad: &[u8]) -> Result<Vec<u8>, CliError> {
    let aad = (!aad.is_empty()).then_some(aad);
    let response = kms.kmip(&kmip::encrypt(id, data, aad)).await?;
    Ok([
        kmip::bytes_field(&response, "IVCounterNonce")?,
        kmip::bytes_field(&response, "Data")?,
        kmip::bytes_field(&response, "AuthenticatedEncryptionTag")?,
    ]
    .concat())
}

async fn kms_decrypt(kms: &Kms, id: &str, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CliError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CliError::Usage(
            "the file is too short to be encrypted data".into(),
        ));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (data, tag) = rest.split_at(rest.len() - TAG_LEN);
    let aad = (!aad.is_empty()).then_some(aad);
    let response = kms.kmip(&kmip::decrypt(id, nonce, data, tag, aad)).await?;
    kmip::bytes_field(&response, "Data")
}

fn io(path: &Path, what: &str) -> impl Fn(std::io::Error) -> CliError {
    let name = format!("cannot {what} {}", path.display());
    move |e| CliError::io(&name, e)
}

/// Reads until `buf` is full or the input ends; whether the input has ended.
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

pub async fn encrypt(kms: &Kms, args: CryptArgs) -> Result<Outcome, CliError> {
    let id = args.key.id()?;
    let aad = aad(&args)?;
    let size = std::fs::metadata(&args.file)
        .map_err(io(&args.file, "read"))?
        .len();
    if !args.envelope && size > MAX_SERVER_SIDE {
        return Err(CliError::Usage(format!(
            "{} is {size} bytes; the KMS encrypts at most {MAX_SERVER_SIDE} bytes itself: add --envelope to encrypt it here under a data key wrapped by the KMS key",
            args.file.display()
        )));
    }
    let output = args.output_file.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".enc");
        PathBuf::from(name)
    });
    if !args.envelope {
        let sealed = kms_encrypt(kms, &id, &read(&args.file)?, &aad).await?;
        write(&output, &sealed, true)?;
        return Ok(Outcome::new(
            format!("The encrypted file is available at {}", output.display()),
            json!({"output_file": output, "envelope": false, "bytes": sealed.len()}),
        ));
    }
    let dek = Zeroizing::new(random::<32>()?);
    let wrapped = kms_encrypt(kms, &id, &*dek, WRAP_AAD).await?;
    let key = data_key(&*dek)?;
    let prefix: [u8; 7] = random()?;
    let mut input = BufReader::with_capacity(
        CHUNK,
        File::open(&args.file).map_err(io(&args.file, "read"))?,
    );
    let mut out = Staged::create(&output, Existing::Replace).map_err(io(&output, "write"))?;
    let header = [
        ENVELOPE_MAGIC.as_slice(),
        &u32::try_from(wrapped.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
        &wrapped,
        &u32::try_from(CHUNK).unwrap_or(u32::MAX).to_be_bytes(),
        &prefix,
    ]
    .concat();
    out.write_all(&header).map_err(io(&output, "write"))?;
    let bar = progress(size, "encrypting");
    let mut buf = Vec::with_capacity(CHUNK + TAG_LEN);
    let mut written = header.len() as u64;
    for counter in 0u32.. {
        let last = fill(&mut input, &mut buf, CHUNK).map_err(io(&args.file, "read"))?;
        bar.inc(buf.len() as u64);
        key.seal_in_place_append_tag(
            chunk_nonce(&prefix, counter, last),
            Aad::from(&aad),
            &mut buf,
        )
        .map_err(|_| CliError::Io("local encryption failed".into()))?;
        out.write_all(&buf).map_err(io(&output, "write"))?;
        written += buf.len() as u64;
        if last {
            break;
        }
    }
    out.commit().map_err(io(&output, "write"))?;
    bar.finish_and_clear();
    Ok(Outcome::new(
        format!("The encrypted file is available at {}", output.display()),
        json!({"output_file": output, "envelope": true, "bytes": written}),
    ))
}

pub async fn decrypt(kms: &Kms, args: CryptArgs) -> Result<Outcome, CliError> {
    let id = args.key.id()?;
    let aad = aad(&args)?;
    let name = args.file.display().to_string();
    let output = args.output_file.clone().unwrap_or_else(|| {
        match args.file.extension().and_then(|e| e.to_str()) {
            Some("enc") => args.file.with_extension(""),
            _ => {
                let mut name = args.file.clone().into_os_string();
                name.push(".plain");
                PathBuf::from(name)
            }
        }
    });
    if !args.force && std::fs::symlink_metadata(&output).is_ok() {
        return Err(CliError::Usage(format!(
            "{} exists: pass --force to overwrite it",
            output.display()
        )));
    }
    let size = std::fs::metadata(&args.file)
        .map_err(io(&args.file, "read"))?
        .len();
    let mut input = BufReader::with_capacity(
        CHUNK + TAG_LEN,
        File::open(&args.file).map_err(io(&args.file, "read"))?,
    );
    let mut magic = Vec::new();
    (&mut input)
        .take(8)
        .read_to_end(&mut magic)
        .map_err(io(&args.file, "read"))?;
    let truncated = || CliError::Usage(format!("{name}: truncated envelope"));
    let failed = || {
        CliError::Usage(format!(
            "{name}: authentication failed (wrong additional data, or the file was modified)"
        ))
    };
    if magic != ENVELOPE_MAGIC && magic != ENVELOPE_V1 {
        let mut sealed = magic;
        input
            .read_to_end(&mut sealed)
            .map_err(io(&args.file, "read"))?;
        let plain = Zeroizing::new(kms_decrypt(kms, &id, &sealed, &aad).await?);
        write(&output, &plain, args.force)?;
        return Ok(Outcome::new(
            format!("The decrypted file is available at {}", output.display()),
            json!({"output_file": output, "envelope": false, "bytes": plain.len()}),
        ));
    }
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
    let v1 = magic == ENVELOPE_V1;
    let wrap_aad = if v1 { WRAP_AAD_V1 } else { WRAP_AAD };
    let dek = Zeroizing::new(kms_decrypt(kms, &id, &wrapped, wrap_aad).await?);
    let key = data_key(&dek)?;
    let mut out = Staged::create(
        &output,
        if args.force {
            Existing::Replace
        } else {
            Existing::Keep
        },
    )
    .map_err(io(&output, "write"))?;
    let mut total = 0u64;
    if v1 {
        // One nonce and one tag over the whole file.
        let mut body = Zeroizing::new(Vec::new());
        input
            .read_to_end(&mut body)
            .map_err(io(&args.file, "read"))?;
        let (nonce, sealed) = body.split_at_checked(NONCE_LEN).ok_or_else(truncated)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| truncated())?;
        let mut buffer = Zeroizing::new(sealed.to_vec());
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut buffer,
            )
            .map_err(|_| failed())?;
        out.write_all(plain).map_err(io(&output, "write"))?;
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
            let last =
                fill(&mut input, &mut buf, chunk + TAG_LEN).map_err(io(&args.file, "read"))?;
            bar.inc(buf.len() as u64);
            let plain = key
                .open_in_place(
                    chunk_nonce(&prefix, counter, last),
                    Aad::from(&aad),
                    &mut buf,
                )
                .map_err(|_| failed())?;
            out.write_all(plain).map_err(io(&output, "write"))?;
            total += plain.len() as u64;
            if last {
                break;
            }
        }
        bar.finish_and_clear();
    }
    out.commit().map_err(io(&output, "write"))?;
    Ok(Outcome::new(
        format!("The decrypted file is available at {}", output.display()),
        json!({"output_file": output, "envelope": true, "bytes": total}),
    ))
}
