//! Encrypt with AES-GCM under a stored key (or inside the HSM for a resident key). The server
//! picks the nonce; a caller-supplied one needs the decrypt right too.

use crate::acl::{self, Access};
use crate::error::KmsError;
use crate::kmip::build::{bytes, structure, text};
use crate::kmip::creation::{MASK_ENCRYPT, MASK_UNRESTRICTED};
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::params::CryptoParams;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::State;
use crate::symmetric::{Cipher, Encrypted};

pub struct Request<'a> {
    pub id: &'a str,
    pub params: CryptoParams<'a>,
    pub data: &'a [u8],
    pub nonce: Option<&'a [u8]>,
    pub aad: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn parse(node: &'a Ttlv) -> Result<Self, KmsError> {
        let mut f = Fields::of(node, "Encrypt")?;
        let id = required(f.text("UniqueIdentifier")?)?;
        let params = CryptoParams::parse(f.structure("CryptographicParameters")?)?;
        let data = f.bytes("Data")?;
        let nonce = f.bytes("IVCounterNonce")?;
        let aad = f
            .bytes("AuthenticatedEncryptionAdditionalData")?
            .unwrap_or_default();
        f.finish()?;
        let data = data.ok_or_else(|| KmsError::InvalidRequest("Encrypt: missing Data".into()))?;
        Ok(Self {
            id,
            params,
            data,
            nonce,
            aad,
        })
    }
}

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let r = Request::parse(node)?;
    let o = kms.crypto_key(user, r.id, Operation::Encrypt).await?;
    if o.state != State::Active {
        return Err(KmsError::PermissionDenied(format!(
            "Encrypt: key {} is in state {} but operation requires one of [Active]",
            o.uid,
            o.state.name()
        )));
    }
    if o.usage_mask & (MASK_ENCRYPT | MASK_UNRESTRICTED) == 0 {
        return Err(KmsError::PermissionDenied(format!(
            "Encrypt: key {} usage mask does not allow Encrypt",
            o.uid
        )));
    }
    if let Some(kind) = crate::kmip::pair::kind(&o) {
        if r.nonce.is_some() || !r.aad.is_empty() {
            return Err(KmsError::InvalidRequest(
                "Encrypt: public-key encryption takes no IVCounterNonce or additional data".into(),
            ));
        }
        let sealed = crate::asymmetric::rsa::encrypt(
            rsa_scheme(kind, &r.params, "Encrypt")?,
            &kms.public_material(&o, kind)?,
            r.data,
        )?;
        return Ok(Done::new(
            structure(
                "EncryptResponse",
                vec![text("UniqueIdentifier", &o.uid), bytes("Data", &sealed)],
            ),
            o.uid,
        ));
    }
    // With a nonce of its choosing, a caller who may only encrypt could re-encrypt under a
    // nonce seen in someone's ciphertext and XOR the keystream out (GCM is CTR mode): a
    // caller-supplied nonce is accepted only from a caller who may also decrypt.
    if r.nonce.is_some()
        && !acl::check(&kms.store, user, &o, Access::Run(Operation::Decrypt)).await?
    {
        return Err(KmsError::Forbidden(format!(
            "Encrypt: a caller-supplied IVCounterNonce needs the decrypt right on key {}; \
             leave it out and the server picks a fresh random nonce",
            o.uid
        )));
    }
    let cipher = r.params.cipher("Encrypt", o.algorithm)?;
    if !cipher.is_aead() && !r.aad.is_empty() {
        return Err(KmsError::InvalidRequest(format!(
            "Encrypt: {} takes no additional data",
            cipher.name()
        )));
    }
    if cipher.nonce_len() == 0 && r.nonce.is_some_and(|n| !n.is_empty()) {
        return Err(KmsError::InvalidRequest(format!(
            "Encrypt: {} takes no IVCounterNonce",
            cipher.name()
        )));
    }
    let sealed = if o.is_resident() {
        if cipher != Cipher::AesGcm {
            return Err(unsupported(
                "Encrypt",
                format!("{} with an HSM key", cipher.name()),
            ));
        }
        let (hsm, label) = kms.hsm_key(&o.uid)?;
        let sealed = hsm.encrypt(&label, r.nonce, r.aad, r.data)?;
        Encrypted {
            nonce: sealed.nonce.to_vec(),
            ciphertext: sealed.ciphertext,
            tag: sealed.tag,
        }
    } else {
        let key = kms.keys.unwrap(o.wrapping, &o.uid, &o.wrapped_key)?;
        let nonce = r.nonce.filter(|n| !n.is_empty());
        crate::symmetric::encrypt(cipher, &key, nonce, r.aad, r.data)?
    };
    let mut children = vec![
        text("UniqueIdentifier", &o.uid),
        bytes("Data", &sealed.ciphertext),
    ];
    if r.nonce.is_none() && !sealed.nonce.is_empty() {
        children.push(bytes("IVCounterNonce", &sealed.nonce));
    }
    if !sealed.tag.is_empty() {
        children.push(bytes("AuthenticatedEncryptionTag", &sealed.tag));
    }
    Ok(Done::new(structure("EncryptResponse", children), o.uid))
}

/// The RSA encryption scheme the parameters ask for; other key kinds are refused by name.
pub fn rsa_scheme(
    kind: crate::asymmetric::KeyKind,
    params: &CryptoParams<'_>,
    op: &str,
) -> Result<crate::asymmetric::rsa::RsaScheme, KmsError> {
    match kind {
        crate::asymmetric::KeyKind::Rsa { .. } => crate::asymmetric::rsa::RsaScheme::of(params, op),
        other => Err(unsupported(
            op,
            format!(
                "encryption with an {} key (ECIES): use an RSA key or a symmetric key",
                other.describe()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::kmip::testing::{by_uid, create, fails, field, kms, leaf, run};

    #[tokio::test]
    async fn encrypts_and_decrypts_and_guards_the_nonce() {
        let kms = kms().await;
        let uid = create(&kms, "alice", vec![]).await;
        let encrypt = by_uid(
            "Encrypt",
            &uid,
            vec![
                leaf("Data", "ByteString", json!("48656C6C6F")),
                leaf(
                    "AuthenticatedEncryptionAdditionalData",
                    "ByteString",
                    json!("AA"),
                ),
            ],
        );
        let sealed = run(&kms, "alice", encrypt)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let part = |tag: &str| {
            leaf(
                tag,
                "ByteString",
                field(&sealed, tag).cloned().unwrap_or_default(),
            )
        };
        let decrypt = by_uid(
            "Decrypt",
            &uid,
            vec![
                part("Data"),
                part("IVCounterNonce"),
                part("AuthenticatedEncryptionTag"),
                leaf(
                    "AuthenticatedEncryptionAdditionalData",
                    "ByteString",
                    json!("AA"),
                ),
            ],
        );
        let plain = run(&kms, "alice", decrypt.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(field(&plain, "Data"), Some(&json!("48656C6C6F")));
        let mut tampered = decrypt;
        tampered["value"][4]["value"] = json!("AB");
        assert!(
            fails(&kms, "alice", tampered)
                .await
                .starts_with("Cryptographic_Failure")
        );
        // An encrypt-only grantee may not choose the nonce.
        let _ = kms.store.grant(&uid, "bob", &["encrypt".to_owned()]).await;
        let nonce = by_uid(
            "Encrypt",
            &uid,
            vec![
                leaf("Data", "ByteString", json!("00")),
                leaf(
                    "IVCounterNonce",
                    "ByteString",
                    json!("000000000000000000000000"),
                ),
            ],
        );
        assert!(
            fails(&kms, "bob", nonce)
                .await
                .contains("needs the decrypt right")
        );
        let xts = by_uid(
            "Encrypt",
            &uid,
            vec![
                json!({"tag": "CryptographicParameters", "value": [
                leaf("BlockCipherMode", "Enumeration", json!("XTS"))]}),
                leaf("Data", "ByteString", json!("00")),
            ],
        );
        assert!(
            fails(&kms, "alice", xts)
                .await
                .starts_with("Feature_Not_Supported")
        );
    }
}
