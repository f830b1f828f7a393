//! What the certificate operations share: a certificate object made from DER, the chain of
//! a stored certificate, a signer for a stored private key, and PKCS#12 both ways (the
//! reference's layout: a Get of a certificate in `PKCS12` answers its private key object
//! holding the archive; an Import of a `PrivateKey` in `PKCS12` stores the key, its public key,
//! the certificate and its chain, linked).

use std::collections::BTreeSet;

use crate::certificates::{self, Signer};
use crate::error::KmsError;
use crate::kmip::build::{bytes, enumeration, structure, text};
use crate::kmip::creation::{NewKey, check_user_tags, new_uid};
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::pair::{self, DEFAULT_PRIVATE_MASK, DEFAULT_PUBLIC_MASK};
use crate::object::{Link, ManagedObject, ObjectType};

/// The longest chain followed through `CertificateLink`s.
const MAX_CHAIN: usize = 8;

pub fn link(o: &ManagedObject, link_type: &str) -> Option<String> {
    o.meta
        .links
        .iter()
        .find(|l| l.link_type == link_type)
        .map(|l| l.uid.clone())
}

pub fn add_link(o: &mut ManagedObject, link_type: &str, uid: &str) {
    o.meta.links.retain(|l| l.link_type != link_type);
    o.meta.links.push(Link {
        link_type: link_type.into(),
        uid: uid.into(),
    });
}

impl Kms {
    /// A certificate object (not yet stored) holding `der`.
    pub fn new_certificate(
        &self,
        user: &str,
        uid: String,
        der: &[u8],
        tags: BTreeSet<String>,
        activation: Option<i64>,
    ) -> Result<ManagedObject, KmsError> {
        let parsed = certificates::parse(der)?;
        check_user_tags(&tags)?;
        let new = NewKey {
            object_type: ObjectType::Certificate,
            algorithm: parsed.kind.map(pair::default_algorithm),
            data_type: None,
            owner: user.to_owned(),
            uid,
            length_bits: 0,
            usage_mask: pair::MASK_VERIFY | 0x4,
            activation: Some(activation.unwrap_or_else(crate::object::now)),
            tags,
            sensitive: false,
        };
        let mut o = self.new_key(new, der)?;
        o.length_bits = parsed.kind.map_or(0, |k| k.bits());
        Ok(o)
    }

    /// A stored certificate's DER followed by its issuers' held here (by `CertificateLink`).
    pub async fn chain_of(&self, cert: &ManagedObject) -> Result<Vec<Vec<u8>>, KmsError> {
        let mut chain = vec![self.material(cert)?.to_vec()];
        let mut next = link(cert, "CertificateLink");
        while let Some(uid) = next.take() {
            if chain.len() >= MAX_CHAIN {
                break;
            }
            let Some(parent) = self.store.load(&uid).await? else {
                break;
            };
            if parent.object_type != ObjectType::Certificate || parent.state.is_destroyed() {
                break;
            }
            chain.push(self.material(&parent)?.to_vec());
            next = link(&parent, "CertificateLink");
        }
        Ok(chain)
    }

    /// A signer for a stored private key.
    pub async fn signer(&self, key: &ManagedObject) -> Result<Signer, KmsError> {
        let kind = pair::require_kind(key, "Certify")?;
        if key.object_type != ObjectType::PrivateKey {
            return Err(KmsError::InvalidRequest(format!(
                "Certify: {} is a {}, not a private key",
                key.uid,
                key.object_type.name()
            )));
        }
        if key.is_resident() {
            // Its public key is the pair's other half, held in the database.
            let public_uid = link(key, "PublicKeyLink").ok_or_else(|| {
                KmsError::InvalidRequest(format!("{}: no public key linked", key.uid))
            })?;
            let public = self
                .store
                .load(&public_uid)
                .await?
                .ok_or_else(|| KmsError::ObjectNotFound(public_uid.clone()))?;
            let (hsm, label) = self.hsm_key(&key.uid)?;
            let hsm = self
                .keys
                .hsm
                .clone()
                .ok_or_else(|| KmsError::Internal(format!("no HSM for {}", hsm.slot_id())))?;
            return Signer::in_hsm(kind, &self.material(&public)?, hsm, label);
        }
        Signer::new(kind, self.material(key)?)
    }

    /// Get/Export of a certificate as PKCS#12: the private key linked to it (which the caller
    /// must be allowed to get too) and the chain, under `password`.
    pub async fn pkcs12_export(
        &self,
        user: &str,
        op: Operation,
        cert: &ManagedObject,
        password: &str,
    ) -> Result<Done, KmsError> {
        let key_uid = link(cert, "PrivateKeyLink").ok_or_else(|| {
            KmsError::InvalidRequest(format!(
                "{}: certificate {} has no private key in this KMS to put in a PKCS#12",
                op.name(),
                cert.uid
            ))
        })?;
        let key = self
            .resolve_one(user, &key_uid, op, || {
                KmsError::ObjectNotFound(key_uid.clone())
            })
            .await?;
        if key.meta.sensitive {
            return Err(KmsError::Sensitive);
        }
        if key.is_resident() {
            return Err(KmsError::InvalidRequest(format!(
                "the key {} lives in the HSM and is not extractable",
                key.uid
            )));
        }
        let chain = self.chain_of(cert).await?;
        let archive = certificates::pkcs12(&self.material(&key)?, &chain, password)?;
        let response = if op == Operation::Export {
            "ExportResponse"
        } else {
            "GetResponse"
        };
        Ok(Done::new(
            structure(
                response,
                vec![
                    enumeration("ObjectType", "PrivateKey"),
                    text("UniqueIdentifier", &key.uid),
                    structure(
                        "PrivateKey",
                        vec![structure(
                            "KeyBlock",
                            vec![
                                enumeration("KeyFormatType", "PKCS12"),
                                structure("KeyValue", vec![bytes("KeyMaterial", &archive)]),
                            ],
                        )],
                    ),
                ],
            ),
            format!("{},{}", cert.uid, key.uid),
        ))
    }

    /// Import of a PKCS#12 archive: its private key (uid `uid`, or new), the public key
    /// (`<uid>_pk`), the certificate (`<uid>_cert`) and the chain (new uids), linked and
    /// stored at once. Returns the private key.
    pub async fn pkcs12_import(
        &self,
        user: &str,
        uid: Option<&str>,
        archive: &[u8],
        password: &str,
        tags: &BTreeSet<String>,
        activation: Option<i64>,
    ) -> Result<ManagedObject, KmsError> {
        let certificates::Archive {
            key: pkcs8,
            certificates: certs,
        } = certificates::read_pkcs12(archive, password)?;
        let (kind, pkcs8) = crate::asymmetric::import_private("PKCS8", &pkcs8)?;
        let spki = crate::asymmetric::public_of(kind, &pkcs8)?;
        let leaf_der = certs.first().ok_or_else(|| {
            KmsError::InvalidRequest("the PKCS#12 archive holds no certificate".into())
        })?;
        if certificates::parse(leaf_der)?.spki != spki {
            return Err(KmsError::InvalidRequest(
                "the PKCS#12 archive's first certificate is not for its private key".into(),
            ));
        }
        check_user_tags(tags)?;
        let sk = new_uid(uid)?;
        let half = |uid: String, object_type, mask| NewKey {
            object_type,
            algorithm: Some(pair::default_algorithm(kind)),
            data_type: None,
            owner: user.to_owned(),
            uid,
            length_bits: kind.bits(),
            usage_mask: mask,
            activation: Some(activation.unwrap_or_else(crate::object::now)),
            tags: tags.clone(),
            sensitive: false,
        };
        let mut private = self.new_key(
            half(sk.clone(), ObjectType::PrivateKey, DEFAULT_PRIVATE_MASK),
            &pkcs8,
        )?;
        let mut public = self.new_key(
            half(
                format!("{sk}_pk"),
                ObjectType::PublicKey,
                DEFAULT_PUBLIC_MASK,
            ),
            &spki,
        )?;
        private.length_bits = kind.bits();
        public.length_bits = kind.bits();
        let mut chain = Vec::new();
        for (i, der) in certs.iter().enumerate() {
            let uid = if i == 0 {
                format!("{sk}_cert")
            } else {
                crate::kmip::creation::fresh_uid()
            };
            chain.push(self.new_certificate(user, uid, der, tags.clone(), activation)?);
        }
        for i in 0..chain.len().saturating_sub(1) {
            let parent = chain[i + 1].uid.clone();
            add_link(&mut chain[i], "CertificateLink", &parent);
        }
        let leaf = chain[0].uid.clone();
        add_link(&mut private, "PublicKeyLink", &public.uid);
        add_link(&mut public, "PrivateKeyLink", &private.uid);
        add_link(&mut private, "CertificateLink", &leaf);
        add_link(&mut public, "CertificateLink", &leaf);
        add_link(&mut chain[0], "PrivateKeyLink", &private.uid);
        add_link(&mut chain[0], "PublicKeyLink", &public.uid);
        let mut all = vec![&private, &public];
        all.extend(chain.iter());
        self.store.insert_all(&all).await?;
        Ok(private)
    }
}
