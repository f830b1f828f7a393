//! The KMIP operations on symmetric keys, with the reference's lifecycle rules, error texts and
//! access checks (owner may do everything; others need a grant per operation; `*` = everyone).

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::crypto;
use crate::error::KmsError;
use crate::kmip::ttlv::{Enumeration, Ttlv, Value, decode_hex};
use crate::object::{Link, ManagedObject, Meta, SYMMETRIC_KEY_TAG, State, now};
use crate::store::Store;
use crate::wrapping::{Wrappers, Wrapping};

/// Usage mask bits used here (KMIP 2.1, 3.19).
const MASK_ENCRYPT: i32 = 0x4;
const MASK_DECRYPT: i32 = 0x8;
const MASK_UNRESTRICTED: i32 = 0x0020_0000;
const DEFAULT_CREATE_MASK: i32 = 2108;

/// The outcome of one operation, for the audit line.
pub struct Done {
    pub response: Ttlv,
    pub uid: String,
}

pub struct Kms {
    pub store: Store,
    keys: Wrappers,
}

fn node(tag: &str, value: Value) -> Ttlv {
    Ttlv::new(tag, value)
}
fn text(tag: &str, v: &str) -> Ttlv {
    node(tag, Value::TextString(v.to_owned()))
}
fn enumeration(tag: &str, v: &str) -> Ttlv {
    node(tag, Value::Enumeration(Enumeration::Name(v.to_owned())))
}
fn int(tag: &str, v: i32) -> Ttlv {
    node(tag, Value::Integer(v))
}
fn bytes(tag: &str, v: &[u8]) -> Ttlv {
    node(tag, Value::ByteString(v.to_vec()))
}
fn boolean(tag: &str, v: bool) -> Ttlv {
    node(tag, Value::Boolean(v))
}
fn date(tag: &str, secs: i64) -> Ttlv {
    node(
        tag,
        Value::DateTime(
            OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        ),
    )
}
fn structure(tag: &str, children: Vec<Ttlv>) -> Ttlv {
    node(tag, Value::Structure(children))
}

fn get_text<'a>(n: &'a Ttlv, tag: &str) -> Result<Option<&'a str>, KmsError> {
    match n.child(tag).map(|c| &c.value) {
        None => Ok(None),
        Some(Value::TextString(s)) => Ok(Some(s)),
        Some(_) => Err(KmsError::InvalidRequest(format!(
            "{tag} must be a TextString"
        ))),
    }
}
fn get_int(n: &Ttlv, tag: &str) -> Result<Option<i32>, KmsError> {
    match n.child(tag).map(|c| &c.value) {
        None => Ok(None),
        Some(Value::Integer(v)) => Ok(Some(*v)),
        Some(_) => Err(KmsError::InvalidRequest(format!(
            "{tag} must be an Integer"
        ))),
    }
}
fn get_bytes<'a>(n: &'a Ttlv, tag: &str) -> Result<Option<&'a [u8]>, KmsError> {
    match n.child(tag).map(|c| &c.value) {
        None => Ok(None),
        Some(Value::ByteString(v)) => Ok(Some(v)),
        Some(_) => Err(KmsError::InvalidRequest(format!(
            "{tag} must be a ByteString"
        ))),
    }
}
fn get_bool(n: &Ttlv, tag: &str) -> Result<Option<bool>, KmsError> {
    match n.child(tag).map(|c| &c.value) {
        None => Ok(None),
        Some(Value::Boolean(v)) => Ok(Some(*v)),
        Some(_) => Err(KmsError::InvalidRequest(format!("{tag} must be a Boolean"))),
    }
}
fn get_date(n: &Ttlv, tag: &str) -> Result<Option<i64>, KmsError> {
    match n.child(tag).map(|c| &c.value) {
        None => Ok(None),
        Some(Value::DateTime(t)) => Ok(Some(t.unix_timestamp())),
        Some(_) => Err(KmsError::InvalidRequest(format!(
            "{tag} must be a DateTime"
        ))),
    }
}

/// Known enumeration names per tag, so a wrong spelling is a Codec_Error as in the reference.
fn known_names(tag: &str) -> Option<&'static [&'static str]> {
    Some(match tag {
        "ObjectType" | "ExpectedObjectType" => &[
            "Certificate",
            "SymmetricKey",
            "PublicKey",
            "PrivateKey",
            "SplitKey",
            "SecretData",
            "OpaqueObject",
            "PGPKey",
            "CertificateRequest",
        ],
        "CryptographicAlgorithm" => &["AES", "RSA", "ECDSA", "ChaCha20", "SHA256"],
        "BlockCipherMode" => &["CBC", "ECB", "CTR", "GCM", "XTS", "AEAD"],
        "KeyFormatType" => &["Raw", "Opaque", "TransparentSymmetricKey", "PKCS8", "PKCS1"],
        "State" => &[
            "PreActive",
            "Active",
            "Deactivated",
            "Compromised",
            "Destroyed",
            "Destroyed_Compromised",
        ],
        "RevocationReasonCode" => &[
            "Unspecified",
            "KeyCompromise",
            "CACompromise",
            "AffiliationChanged",
            "Superseded",
            "CessationOfOperation",
            "PrivilegeWithdrawn",
        ],
        _ => return None,
    })
}

fn get_enum<'a>(n: &'a Ttlv, tag: &str) -> Result<Option<&'a str>, KmsError> {
    match n.child(tag).map(|c| &c.value) {
        None => Ok(None),
        Some(Value::Enumeration(Enumeration::Name(name))) => {
            if let Some(known) = known_names(tag) {
                if !known.contains(&name.as_str()) {
                    let what = if tag == "ExpectedObjectType" {
                        "ObjectType"
                    } else {
                        tag
                    };
                    return Err(KmsError::Codec(format!(
                        "invalid value: string \"{name}\", expected valid {what} name"
                    )));
                }
            }
            Ok(Some(name))
        }
        Some(Value::Enumeration(Enumeration::Code(code))) => Err(KmsError::Codec(format!(
            "unsupported numeric {tag} 0x{code:08X}; use the name"
        ))),
        Some(_) => Err(KmsError::InvalidRequest(format!(
            "{tag} must be an Enumeration"
        ))),
    }
}

/// The Cosmian vendor `tag` attribute inside an `Attributes` structure, if present.
fn tags_in(attributes: &Ttlv) -> Result<Option<BTreeSet<String>>, KmsError> {
    for attr in attributes.all("Attribute") {
        let vendor = get_text(attr, "VendorIdentification")?;
        let name = get_text(attr, "AttributeName")?;
        if vendor == Some("cosmian") && name == Some("tag") {
            let value = get_text(attr, "AttributeValue")?.unwrap_or("[]");
            let tags: Vec<String> = serde_json::from_str(value).map_err(|e| {
                KmsError::InvalidRequest(format!("tags must be a JSON array of strings: {e}"))
            })?;
            return Ok(Some(tags.into_iter().collect()));
        }
    }
    Ok(None)
}

/// A symmetric key object created now by `user`, with no key material yet (the caller sets
/// `wrapped_key` and `wrapping`): Active when its activation date has come, else PreActive.
fn fresh_object(
    user: &str,
    uid: String,
    length_bits: i32,
    usage_mask: i32,
    activation: Option<i64>,
    mut tags: BTreeSet<String>,
) -> ManagedObject {
    let t = now();
    tags.insert(SYMMETRIC_KEY_TAG.to_owned());
    ManagedObject {
        uid,
        owner: user.to_owned(),
        object_type: "SymmetricKey".into(),
        state: match activation {
            Some(d) if d <= t => State::Active,
            _ => State::PreActive,
        },
        algorithm: "AES".into(),
        length_bits,
        usage_mask,
        activation_date: activation,
        deactivation_date: None,
        created_at: t,
        last_change: t,
        wrapped_key: Vec::new(),
        wrapping: Wrapping::Master,
        meta: Meta::default(),
        tags,
    }
}

fn check_user_tags(tags: &BTreeSet<String>) -> Result<(), KmsError> {
    for tag in tags {
        if tag.is_empty() || tag.starts_with('_') {
            return Err(KmsError::InvalidRequest(format!(
                "tag {tag:?}: user tags must not be empty or start with _"
            )));
        }
        if tag.len() > 256 || tag.chars().any(char::is_control) {
            return Err(KmsError::InvalidRequest(format!(
                "tag {tag:?}: at most 256 bytes, no control characters"
            )));
        }
    }
    Ok(())
}

/// The prefix that puts a key inside the HSM, matched exactly.
const HSM_PREFIX: &str = "hsm::";

/// A uid a client chose for a new object: no control characters, no whitespace at either end
/// (it would log and compare as another), and nothing that looks like the HSM prefix without
/// being it (`HSM::`, ` hsm::`, `hsm:`): such a key would silently be a software key.
fn check_new_uid(uid: &str) -> Result<(), KmsError> {
    if uid.len() > 256 || uid.chars().any(char::is_control) || uid.trim() != uid {
        return Err(KmsError::InvalidRequest(format!(
            "UniqueIdentifier {uid:?}: at most 256 bytes, no control characters, no leading or trailing whitespace"
        )));
    }
    let folded = uid.trim_start().to_ascii_lowercase();
    if folded.starts_with("hsm:") && !uid.starts_with(HSM_PREFIX) {
        return Err(KmsError::InvalidRequest(format!(
            "UniqueIdentifier {uid:?} looks like an HSM key but is not one: HSM keys are named hsm::<slot>::<label> exactly"
        )));
    }
    Ok(())
}

fn tag_attribute(tags: &BTreeSet<String>) -> Ttlv {
    let list: Vec<&String> = tags.iter().collect();
    structure(
        "Attribute",
        vec![
            text("VendorIdentification", "cosmian"),
            text("AttributeName", "tag"),
            text(
                "AttributeValue",
                &serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()),
            ),
        ],
    )
}

/// How a request names its object: one uid, or a JSON list of tags that must all match.
enum Target {
    Uid(String),
    Tags(BTreeSet<String>),
}

fn target(id: &str) -> Result<Target, KmsError> {
    if id.starts_with('[') {
        let tags: Vec<String> = serde_json::from_str(id)
            .map_err(|e| KmsError::InvalidRequest(format!("invalid tag list {id}: {e}")))?;
        Ok(Target::Tags(tags.into_iter().collect()))
    } else {
        Ok(Target::Uid(id.to_owned()))
    }
}

/// All attributes of an object, in the reference's order (tags only when asked).
fn attributes(o: &ManagedObject) -> Vec<Ttlv> {
    let mut out = Vec::new();
    if let Some(d) = o.activation_date {
        out.push(date("ActivationDate", d));
    }
    out.push(boolean("AlwaysSensitive", false));
    out.push(enumeration("CryptographicAlgorithm", &o.algorithm));
    out.push(int("CryptographicLength", o.length_bits));
    out.push(int("CryptographicUsageMask", o.usage_mask));
    if let Some(d) = o.deactivation_date {
        out.push(date("DeactivationDate", d));
    }
    if let Some(digest) = decode_hex(&o.meta.key_digest_hex).filter(|d| !d.is_empty()) {
        out.push(structure(
            "Digest",
            vec![
                enumeration("HashingAlgorithm", "SHA256"),
                bytes("DigestValue", &digest),
                enumeration("KeyFormatType", "Raw"),
            ],
        ));
    }
    out.push(boolean("Extractable", true));
    out.push(date("InitialDate", o.created_at));
    out.push(enumeration("KeyFormatType", "Raw"));
    out.push(date("LastChangeDate", o.last_change));
    out.push(node("LeaseTime", Value::Interval(3600)));
    for link in &o.meta.links {
        out.push(structure(
            "Link",
            vec![
                enumeration("LinkType", &link.link_type),
                text("LinkedObjectIdentifier", &link.uid),
            ],
        ));
    }
    out.push(boolean("NeverExtractable", false));
    out.push(enumeration("ObjectType", &o.object_type));
    out.push(date("OriginalCreationDate", o.created_at));
    out.push(structure(
        "RandomNumberGenerator",
        vec![
            enumeration("RNGAlgorithm", "ANSI_X931"),
            enumeration("CryptographicAlgorithm", "AES"),
            int("CryptographicLength", 256),
        ],
    ));
    if let Some(generation) = o.meta.rotate_generation {
        out.push(int("RotateGeneration", generation));
        out.push(node("RotateInterval", Value::LongInteger(0)));
        out.push(boolean(
            "RotateLatest",
            o.meta
                .links
                .iter()
                .all(|l| l.link_type != "ReplacementObjectLink"),
        ));
    }
    out.push(boolean("Sensitive", false));
    out.push(text("ShortUniqueIdentifier", ""));
    out.push(enumeration("State", o.state.name()));
    out.push(text("UniqueIdentifier", &o.uid));
    out
}

fn is_compromise(reason: Option<&str>) -> bool {
    matches!(reason, Some("KeyCompromise" | "CACompromise"))
}

impl Kms {
    pub fn new(store: Store, keys: Wrappers) -> Self {
        Self { store, keys }
    }

    /// False when an HSM is configured and does not answer.
    pub fn hsm_ready(&self) -> bool {
        self.keys.hsm.as_ref().is_none_or(|h| h.ping())
    }

    /// The HSM and the key label of an `hsm::<slot>::<label>` identifier.
    fn hsm_key(&self, uid: &str) -> Result<(&crate::hsm::Hsm, String), KmsError> {
        let hsm = self.keys.hsm.as_deref().ok_or_else(|| {
            KmsError::InvalidRequest(format!("{uid}: no HSM is configured on this KMS"))
        })?;
        let mut parts = uid.splitn(3, "::");
        let (Some("hsm"), Some(slot), Some(label)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KmsError::InvalidRequest(format!(
                "{uid}: HSM keys are named hsm::<slot>::<label>"
            )));
        };
        if slot.parse::<u64>().ok() != Some(hsm.slot_id()) || label.is_empty() {
            return Err(KmsError::InvalidRequest(format!(
                "{uid}: this KMS uses HSM slot {}; name the key hsm::{}::<label>",
                hsm.slot_id(),
                hsm.slot_id()
            )));
        }
        Ok((hsm, label.to_owned()))
    }

    fn require_hsm_admin(&self, user: &str, what: &str) -> Result<(), KmsError> {
        if self.keys.hsm_admins.iter().any(|a| a == user) {
            Ok(())
        } else {
            Err(KmsError::AccessDenied(format!(
                "only HSM administrators (--hsm-admin) may {what} keys in the HSM"
            )))
        }
    }

    /// Create of an `hsm::<slot>::<label>` key: generated inside the HSM, never extractable.
    async fn create_in_hsm(
        &self,
        user: &str,
        uid: String,
        bits: i64,
        activation: Option<i64>,
        mask: i32,
        tags: BTreeSet<String>,
    ) -> Result<ManagedObject, KmsError> {
        self.require_hsm_admin(user, "create")?;
        let (hsm, label) = self.hsm_key(&uid)?;
        if self.store.uid_used(&uid).await? {
            return Err(match self.store.load(&uid).await? {
                Some(_) => KmsError::Database(format!("{uid}: one or more objects already exist")),
                None => crate::store::StoreError::Retired(uid).into(),
            });
        }
        hsm.create_key(&label, u64::try_from(bits).unwrap_or(256))?;
        let bits = i32::try_from(bits).unwrap_or(256);
        let mut object = fresh_object(user, uid, bits, mask, activation, tags);
        object.wrapping = Wrapping::Resident;
        Ok(object)
    }

    /// Runs a bare operation or a RequestMessage batch for `user`.
    pub async fn execute(&self, user: &str, request: &Ttlv) -> Result<Vec<Done>, KmsError> {
        if request.tag == "RequestMessage" {
            return Ok(vec![self.batch(user, request).await?]);
        }
        Ok(vec![self.operation(user, &request.tag, request).await?])
    }

    async fn batch(&self, user: &str, message: &Ttlv) -> Result<Done, KmsError> {
        let mut items = Vec::new();
        for item in message.all("BatchItem") {
            let operation = get_enum(item, "Operation")?
                .ok_or_else(|| KmsError::InvalidRequest("BatchItem without Operation".into()))?
                .to_owned();
            let payload = item
                .child("RequestPayload")
                .map(|p| Ttlv::new(operation.clone(), p.value.clone()))
                .unwrap_or_else(|| structure(&operation, vec![]));
            let result = self.operation(user, &operation, &payload).await;
            let mut children = vec![enumeration("Operation", &operation)];
            match result {
                Ok(done) => {
                    tracing::info!(target: "audit", user, operation = %operation, uid = %done.uid, outcome = "success", "kmip");
                    children.push(enumeration("ResultStatus", "Success"));
                    children.push(Ttlv::new("ResponsePayload", done.response.value));
                }
                Err(e) => {
                    tracing::info!(target: "audit", user, operation = %operation, uid = "", outcome = e.outcome(), "kmip");
                    let (reason, message) = e.reason_and_message();
                    children.push(enumeration("ResultStatus", "OperationFailed"));
                    children.push(enumeration("ResultReason", reason));
                    children.push(text("ResultMessage", &message));
                }
            }
            items.push(structure("BatchItem", children));
        }
        let count = i32::try_from(items.len()).unwrap_or(i32::MAX);
        let mut children = vec![structure(
            "ResponseHeader",
            vec![
                structure(
                    "ProtocolVersion",
                    vec![
                        int("ProtocolVersionMajor", 2),
                        int("ProtocolVersionMinor", 1),
                    ],
                ),
                date("TimeStamp", now()),
                int("BatchCount", count),
            ],
        )];
        children.extend(items);
        Ok(Done {
            response: structure("ResponseMessage", children),
            uid: String::new(),
        })
    }

    async fn operation(&self, user: &str, op: &str, req: &Ttlv) -> Result<Done, KmsError> {
        match op {
            "Create" => self.create(user, req).await,
            "Import" => self.import(user, req).await,
            "Get" => self.get(user, req, false).await,
            "Export" => self.get(user, req, true).await,
            "Encrypt" => self.encrypt(user, req).await,
            "Decrypt" => self.decrypt(user, req).await,
            "Revoke" => self.revoke(user, req).await,
            "Destroy" => self.destroy(user, req).await,
            "Locate" => self.locate(user, req).await,
            "GetAttributes" => self.get_attributes(user, req).await,
            "Activate" => self.activate(user, req).await,
            "ReKey" => self.rekey(user, req).await,
            other => Err(KmsError::UnknownOperation(other.to_owned())),
        }
    }

    async fn may(&self, user: &str, o: &ManagedObject, grant: &str) -> Result<bool, KmsError> {
        Ok(o.owner == user || self.store.is_granted(&o.uid, user, grant).await?)
    }

    /// Loads the objects `id` names that `user` may use for `grant`, settling their state.
    async fn resolve(
        &self,
        user: &str,
        id: &str,
        grant: &str,
    ) -> Result<Vec<ManagedObject>, KmsError> {
        let (uids, by_tags) = match target(id)? {
            Target::Uid(uid) => (vec![uid], false),
            Target::Tags(tags) => (self.store.uids_with_tags(&tags).await?, true),
        };
        let mut found = Vec::new();
        for uid in uids {
            if let Some(o) = self.store.load(&uid).await? {
                if self.may(user, &o, grant).await? {
                    found.push(o);
                }
            }
        }
        // As in crypto_key: by tags, the caller's own objects win over shared ones.
        if by_tags && found.iter().any(|o| o.owner == user) {
            found.retain(|o| o.owner == user);
        }
        for o in &mut found {
            if o.settle(now()) {
                o.last_change = now();
                self.store.update(o).await?;
            }
        }
        Ok(found)
    }

    fn required_uid(req: &Ttlv) -> Result<&str, KmsError> {
        get_text(req, "UniqueIdentifier")?.ok_or(KmsError::PlaceholderId)
    }

    /// A new AES key object, its material wrapped by the active key-encryption key.
    fn new_object(
        &self,
        user: &str,
        uid: String,
        key: &[u8],
        usage_mask: i32,
        activation: Option<i64>,
        tags: BTreeSet<String>,
    ) -> Result<ManagedObject, KmsError> {
        let (wrapping, wrapped) = self.keys.wrap(&uid, key)?;
        let bits = i32::try_from(key.len() * 8).unwrap_or(0);
        let mut object = fresh_object(user, uid, bits, usage_mask, activation, tags);
        object.wrapped_key = wrapped;
        object.wrapping = wrapping;
        object.meta.key_digest_hex = crate::kmip::hex_upper(&crypto::sha256(key));
        Ok(object)
    }

    async fn create(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let object_type = get_enum(req, "ObjectType")?.unwrap_or("SymmetricKey");
        if object_type != "SymmetricKey" {
            return Err(KmsError::InvalidRequest(format!(
                "Create: {object_type} is not supported; only SymmetricKey"
            )));
        }
        let empty = structure("Attributes", vec![]);
        let attrs = req.child("Attributes").unwrap_or(&empty);
        if let Some(alg) = get_enum(attrs, "CryptographicAlgorithm")? {
            if alg != "AES" {
                return Err(KmsError::InvalidRequest(format!(
                    "Create: algorithm {alg} is not supported; only AES"
                )));
            }
        }
        let bits = get_int(attrs, "CryptographicLength")?.unwrap_or(256);
        if ![128, 192, 256].contains(&bits) {
            return Err(KmsError::InvalidRequest(format!(
                "Create: AES key length {bits} must be 128, 192 or 256"
            )));
        }
        let tags = tags_in(attrs)?.unwrap_or_default();
        check_user_tags(&tags)?;
        let uid = match get_text(attrs, "UniqueIdentifier")? {
            Some(uid) if !uid.is_empty() => uid.to_owned(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        check_new_uid(&uid)?;
        // Create resets an activation date in the past to the creation time.
        let activation = get_date(attrs, "ActivationDate")?.map(|d| d.max(now()));
        let mask = get_int(attrs, "CryptographicUsageMask")?.unwrap_or(DEFAULT_CREATE_MASK);
        let object = if uid.starts_with(HSM_PREFIX) {
            self.create_in_hsm(user, uid, i64::from(bits), activation, mask, tags)
                .await?
        } else {
            let key = crypto::random(usize::try_from(bits / 8).unwrap_or(32))
                .map_err(|e| KmsError::Internal(e.to_string()))?;
            self.new_object(user, uid, &key, mask, activation, tags)?
        };
        if let Err(e) = self.store.insert(&object).await {
            // A key generated in the HSM for a uid the store refused must not stay there.
            if object.wrapping == Wrapping::Resident {
                if let Ok((hsm, label)) = self.hsm_key(&object.uid) {
                    let _ = hsm.destroy_key(&label);
                }
            }
            return Err(e.into());
        }
        Ok(Done {
            response: structure(
                "CreateResponse",
                vec![
                    enumeration("ObjectType", "SymmetricKey"),
                    text("UniqueIdentifier", &object.uid),
                ],
            ),
            uid: object.uid,
        })
    }

    async fn import(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let object_type = get_enum(req, "ObjectType")?.unwrap_or("SymmetricKey");
        if object_type != "SymmetricKey" {
            return Err(KmsError::InvalidRequest(format!(
                "Import: {object_type} is not supported; only SymmetricKey"
            )));
        }
        let block = req
            .child("SymmetricKey")
            .and_then(|k| k.child("KeyBlock"))
            .ok_or_else(|| {
                KmsError::InvalidRequest("Import: missing SymmetricKey.KeyBlock".into())
            })?;
        let value = block
            .child("KeyValue")
            .ok_or_else(|| KmsError::InvalidRequest("Import: missing KeyValue".into()))?;
        let key = match value.child("KeyMaterial").map(|m| &m.value) {
            Some(Value::ByteString(raw)) => raw.clone(),
            Some(Value::Structure(_)) => value
                .child("KeyMaterial")
                .and_then(|m| get_bytes(m, "Key").transpose())
                .transpose()?
                .map(<[u8]>::to_vec)
                .ok_or_else(|| {
                    KmsError::InvalidRequest("Import: missing KeyMaterial.Key".into())
                })?,
            _ => {
                return Err(KmsError::InvalidRequest(
                    "Import: missing KeyMaterial".into(),
                ));
            }
        };
        let key = zeroize::Zeroizing::new(key);
        if ![16, 24, 32].contains(&key.len()) {
            return Err(KmsError::InvalidRequest(format!(
                "Import: an AES key must be 16, 24 or 32 bytes, got {}",
                key.len()
            )));
        }
        if let Some(bits) = get_int(block, "CryptographicLength")? {
            if usize::try_from(bits).ok() != Some(key.len() * 8) {
                return Err(KmsError::InvalidRequest(format!(
                    "Import: CryptographicLength {bits} does not match a {}-byte key",
                    key.len()
                )));
            }
        }
        let empty = structure("Attributes", vec![]);
        let attrs = req.child("Attributes").unwrap_or(&empty);
        let tags = tags_in(attrs)?.unwrap_or_default();
        check_user_tags(&tags)?;
        let uid = match get_text(req, "UniqueIdentifier")? {
            Some(uid) if !uid.is_empty() => uid.to_owned(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        check_new_uid(&uid)?;
        if uid.starts_with(HSM_PREFIX) {
            return Err(KmsError::InvalidRequest(format!(
                "{uid}: keys cannot be imported into the HSM; create them there"
            )));
        }
        let mask = get_int(attrs, "CryptographicUsageMask")?.unwrap_or(MASK_UNRESTRICTED);
        let object = self.new_object(
            user,
            uid,
            &key,
            mask,
            get_date(attrs, "ActivationDate")?,
            tags,
        )?;
        if get_bool(req, "ReplaceExisting")?.unwrap_or(false) {
            self.store.replace(&object).await?;
        } else {
            self.store.insert(&object).await?;
        }
        Ok(Done {
            response: structure(
                "ImportResponse",
                vec![text("UniqueIdentifier", &object.uid)],
            ),
            uid: object.uid,
        })
    }

    async fn get(&self, user: &str, req: &Ttlv, export: bool) -> Result<Done, KmsError> {
        let id = Self::required_uid(req)?;
        let grant = if export { "export" } else { "get" };
        let o = self
            .resolve(user, id, grant)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| KmsError::ObjectNotFound(id.to_owned()))?;
        if o.wrapping == Wrapping::Resident {
            return Err(KmsError::InvalidRequest(format!(
                "the key {} lives in the HSM and is not extractable: Get and Export are refused",
                o.uid
            )));
        }
        match (o.state, export) {
            (s, false) if s.is_destroyed() => return Err(KmsError::ObjectDestroyed),
            // A revoked key is never handed out by Get (the reference's rule); Export, which
            // asks for the key as it is, still returns it.
            (State::Deactivated | State::Compromised, false) => {
                return Err(KmsError::WrongState("DENIED".into()));
            }
            (s, true) if s.is_destroyed() => return Err(KmsError::ObjectNotFound(id.to_owned())),
            _ => {}
        }
        let key = self.keys.unwrap(o.wrapping, &o.uid, &o.wrapped_key)?;
        let transparent = get_enum(req, "KeyFormatType")? == Some("TransparentSymmetricKey");
        let mut key_attributes = attributes(&o);
        key_attributes.push(tag_attribute(&o.tags));
        let material = if transparent {
            structure("KeyMaterial", vec![bytes("Key", &key)])
        } else {
            bytes("KeyMaterial", &key)
        };
        let symmetric_key = structure(
            "SymmetricKey",
            vec![structure(
                "KeyBlock",
                vec![
                    enumeration(
                        "KeyFormatType",
                        if transparent {
                            "TransparentSymmetricKey"
                        } else {
                            "Raw"
                        },
                    ),
                    structure(
                        "KeyValue",
                        vec![material, structure("Attributes", key_attributes)],
                    ),
                    enumeration("CryptographicAlgorithm", &o.algorithm),
                    int("CryptographicLength", o.length_bits),
                ],
            )],
        );
        let mut children = vec![
            enumeration("ObjectType", &o.object_type),
            text("UniqueIdentifier", &o.uid),
        ];
        if export {
            let mut all = attributes(&o);
            all.push(tag_attribute(&o.tags));
            children.push(structure("Attributes", all));
        }
        children.push(symmetric_key);
        let tag = if export {
            "ExportResponse"
        } else {
            "GetResponse"
        };
        Ok(Done {
            response: structure(tag, children),
            uid: o.uid,
        })
    }

    /// The single key an Encrypt or Decrypt names, with the reference's errors.
    async fn crypto_key(
        &self,
        user: &str,
        req: &Ttlv,
        op: &str,
    ) -> Result<ManagedObject, KmsError> {
        let id = Self::required_uid(req)?;
        let grant = op.to_ascii_lowercase();
        if let Some(params) = req.child("CryptographicParameters") {
            if let Some(mode) = get_enum(params, "BlockCipherMode")? {
                if mode != "GCM" {
                    return Err(KmsError::InvalidRequest(format!(
                        "{op}: block cipher mode {mode} is not supported; use GCM"
                    )));
                }
            }
            if let Some(alg) = get_enum(params, "CryptographicAlgorithm")? {
                if alg != "AES" {
                    return Err(KmsError::InvalidRequest(format!(
                        "{op}: algorithm {alg} is not supported; use AES"
                    )));
                }
            }
        }
        let target = target(id)?;
        let by_tags = matches!(target, Target::Tags(_));
        let candidates = match target {
            Target::Uid(uid) => self.store.load(&uid).await?.into_iter().collect::<Vec<_>>(),
            Target::Tags(tags) => {
                let mut all = Vec::new();
                for uid in self.store.uids_with_tags(&tags).await? {
                    all.extend(self.store.load(&uid).await?);
                }
                all
            }
        };
        let candidates: Vec<ManagedObject> = candidates
            .into_iter()
            .filter(|o| !o.state.is_destroyed())
            .collect();
        let mut allowed = Vec::new();
        for o in &candidates {
            if self.may(user, o, &grant).await? {
                allowed.push(o.clone());
            }
        }
        // Tags are anyone's to put on their own keys: a tag resolves among the caller's own
        // keys first, and among keys shared with the caller only when it owns none, so that
        // nobody can make someone's tag ambiguous or take it over by tagging a key of theirs.
        if by_tags && allowed.iter().any(|o| o.owner == user) {
            allowed.retain(|o| o.owner == user);
        }
        match (candidates.len(), allowed.len()) {
            (0, _) => Err(KmsError::KeyNotFound(format!(
                "{op}: key id: {id}, not found"
            ))),
            // Keys the caller may not use are never named: by tags they do not exist for it.
            (_, 0) if by_tags => Err(KmsError::KeyNotFound(format!(
                "{op}: key id: {id}, not found"
            ))),
            (_, 0) => Err(KmsError::AccessDenied(format!(
                "{op}: the user {user} does not have permission to {grant} using the key: {id}"
            ))),
            (_, 1) => {
                let mut o = allowed.remove(0);
                if o.settle(now()) {
                    o.last_change = now();
                    self.store.update(&o).await?;
                }
                Ok(o)
            }
            (_, n) => {
                let uids: Vec<&str> = allowed.iter().map(|o| o.uid.as_str()).collect();
                Err(KmsError::InvalidRequest(format!(
                    "{op}: identifier '{id}' resolves to {n} valid keys {uids:?}; use a unique identifier"
                )))
            }
        }
    }

    async fn encrypt(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let o = self.crypto_key(user, req, "Encrypt").await?;
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
        let data = get_bytes(req, "Data")?
            .ok_or_else(|| KmsError::InvalidRequest("Encrypt: missing Data".into()))?;
        let nonce = get_bytes(req, "IVCounterNonce")?;
        // With a nonce of its choosing, a caller who may only encrypt could re-encrypt under a
        // nonce seen in someone's ciphertext and XOR the keystream out (GCM is CTR mode): a
        // caller-supplied nonce is accepted only from a caller who may also decrypt.
        if nonce.is_some() && !self.may(user, &o, "decrypt").await? {
            return Err(KmsError::Forbidden(format!(
                "Encrypt: a caller-supplied IVCounterNonce needs the decrypt right on key {}; \
                 leave it out and the server picks a fresh random nonce",
                o.uid
            )));
        }
        let aad = get_bytes(req, "AuthenticatedEncryptionAdditionalData")?.unwrap_or_default();
        let sealed = if o.wrapping == Wrapping::Resident {
            let (hsm, label) = self.hsm_key(&o.uid)?;
            let sealed = hsm.encrypt(&label, nonce, aad, data)?;
            crypto::Sealed {
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
                tag: sealed
                    .tag
                    .as_slice()
                    .try_into()
                    .map_err(|_| KmsError::Internal("HSM tag length".into()))?,
            }
        } else {
            let key = self.keys.unwrap(o.wrapping, &o.uid, &o.wrapped_key)?;
            crypto::encrypt(&key, nonce, aad, data)
                .map_err(|e| KmsError::Crypto(format!("CRYPTO: error: {e}")))?
        };
        let mut children = vec![
            text("UniqueIdentifier", &o.uid),
            bytes("Data", &sealed.ciphertext),
        ];
        if nonce.is_none() {
            children.push(bytes("IVCounterNonce", &sealed.nonce));
        }
        children.push(bytes("AuthenticatedEncryptionTag", &sealed.tag));
        Ok(Done {
            response: structure("EncryptResponse", children),
            uid: o.uid,
        })
    }

    async fn decrypt(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let o = self.crypto_key(user, req, "Decrypt").await?;
        if o.state == State::PreActive {
            return Err(KmsError::PermissionDenied(format!(
                "Decrypt: key {} is in state PreActive but operation requires one of [Active, Deactivated, Compromised]",
                o.uid
            )));
        }
        if o.usage_mask & (MASK_DECRYPT | MASK_UNRESTRICTED) == 0 {
            return Err(KmsError::PermissionDenied(format!(
                "Decrypt: key {} usage mask does not allow Decrypt",
                o.uid
            )));
        }
        let missing = |what: &str| KmsError::InvalidRequest(format!("Decrypt: missing {what}"));
        let data = get_bytes(req, "Data")?.ok_or_else(|| missing("Data"))?;
        let nonce = get_bytes(req, "IVCounterNonce")?.ok_or_else(|| missing("IVCounterNonce"))?;
        let tag = get_bytes(req, "AuthenticatedEncryptionTag")?
            .ok_or_else(|| missing("AuthenticatedEncryptionTag"))?;
        let aad = get_bytes(req, "AuthenticatedEncryptionAdditionalData")?.unwrap_or_default();
        let plain = if o.wrapping == Wrapping::Resident {
            let (hsm, label) = self.hsm_key(&o.uid)?;
            hsm.decrypt(&label, nonce, aad, data, tag)
                .map_err(|e| match e {
                    crate::hsm::HsmError::Operation(_) => {
                        KmsError::Crypto("CRYPTO: error: authentication failed".into())
                    }
                    other => other.into(),
                })?
        } else {
            let key = self.keys.unwrap(o.wrapping, &o.uid, &o.wrapped_key)?;
            crypto::decrypt(&key, nonce, aad, data, tag)
                .map_err(|e| KmsError::Crypto(format!("CRYPTO: error: {e}")))?
        };
        Ok(Done {
            response: structure(
                "DecryptResponse",
                vec![text("UniqueIdentifier", &o.uid), bytes("Data", &plain)],
            ),
            uid: o.uid,
        })
    }

    async fn revoke(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let id = Self::required_uid(req)?;
        let reason = req.child("RevocationReason");
        let code = reason
            .map(|r| get_enum(r, "RevocationReasonCode"))
            .transpose()?
            .flatten()
            .map(str::to_owned);
        let message = reason
            .map(|r| get_text(r, "RevocationMessage"))
            .transpose()?
            .flatten()
            .map(str::to_owned);
        let objects = self.resolve(user, id, "revoke").await?;
        if objects.is_empty() {
            return Err(KmsError::ItemNotFound(id.to_owned()));
        }
        let compromise = is_compromise(code.as_deref());
        let mut uids = Vec::new();
        for mut o in objects {
            let next = match o.state {
                State::Active | State::PreActive if compromise => State::Compromised,
                State::Active | State::PreActive => State::Deactivated,
                State::Deactivated if compromise => State::Compromised,
                State::Deactivated => continue,
                State::Compromised => return Err(KmsError::ItemNotFound(id.to_owned())),
                State::Destroyed | State::DestroyedCompromised => continue,
            };
            o.state = next;
            o.deactivation_date = Some(now());
            o.last_change = now();
            o.meta.revocation_reason = code.clone();
            o.meta.revocation_message = message.clone();
            self.store.update(&o).await?;
            uids.push(o.uid);
        }
        Ok(Done {
            response: structure("RevokeResponse", vec![text("UniqueIdentifier", id)]),
            uid: uids.join(","),
        })
    }

    async fn destroy(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let id = Self::required_uid(req)?;
        if let Some(expected) = get_enum(req, "ExpectedObjectType")? {
            if expected != "SymmetricKey" {
                return Err(KmsError::ItemNotFound(id.to_owned()));
            }
        }
        let remove = get_bool(req, "Remove")?.unwrap_or(false);
        let objects = self.resolve(user, id, "destroy").await?;
        if objects.is_empty() {
            return Err(KmsError::ItemNotFound(id.to_owned()));
        }
        if objects.iter().any(|o| o.state == State::Active) {
            return Err(KmsError::WrongState("DENIED".into()));
        }
        if objects.iter().any(|o| o.wrapping == Wrapping::Resident) {
            self.require_hsm_admin(user, "destroy")?;
        }
        let mut uids = Vec::new();
        for mut o in objects {
            if o.wrapping == Wrapping::Resident && !o.state.is_destroyed() {
                let (hsm, label) = self.hsm_key(&o.uid)?;
                hsm.destroy_key(&label)?;
            }
            if remove {
                self.store.remove(&o.uid).await?;
            } else if !o.state.is_destroyed() {
                o.state = if o.state == State::Compromised {
                    State::DestroyedCompromised
                } else {
                    State::Destroyed
                };
                o.last_change = now();
                // The material goes with the object: nothing usable stays in the database.
                o.wrapped_key.clear();
                self.store.destroy(&o).await?;
            }
            uids.push(o.uid);
        }
        Ok(Done {
            response: structure("DestroyResponse", vec![text("UniqueIdentifier", id)]),
            uid: uids.join(","),
        })
    }

    async fn locate(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let empty = structure("Attributes", vec![]);
        let attrs = req.child("Attributes").unwrap_or(&empty);
        let tags = tags_in(attrs)?.unwrap_or_default();
        let object_type = get_enum(attrs, "ObjectType")?;
        let state = get_enum(attrs, "State")?.and_then(State::parse);
        let mut hits = Vec::new();
        for uid in self.store.uids_with_tags(&tags).await? {
            let Some(mut o) = self.store.load(&uid).await? else {
                continue;
            };
            if o.owner != user
                && self
                    .store
                    .grants_on(&uid)
                    .await?
                    .iter()
                    .all(|g| g.user_id != user && g.user_id != "*")
            {
                continue;
            }
            o.settle(now());
            if object_type.is_some_and(|t| t != o.object_type) {
                continue;
            }
            match state {
                Some(s) if s != o.state => continue,
                None if o.state.is_destroyed() => continue,
                _ => {}
            }
            hits.push(o.uid);
        }
        let mut children = vec![int(
            "LocatedItems",
            i32::try_from(hits.len()).unwrap_or(i32::MAX),
        )];
        children.extend(hits.iter().map(|u| text("UniqueIdentifier", u)));
        Ok(Done {
            response: structure("LocateResponse", children),
            uid: String::new(),
        })
    }

    async fn get_attributes(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let id = Self::required_uid(req)?;
        let o = self
            .resolve(user, id, "getattributes")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| KmsError::ObjectNotFound(id.to_owned()))?;
        let references: Vec<String> = req
            .all("AttributeReference")
            .filter_map(|r| match &r.value {
                Value::Enumeration(Enumeration::Name(n)) | Value::TextString(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let all = attributes(&o);
        let selected = if references.is_empty() {
            all
        } else {
            let mut chosen: Vec<Ttlv> = all
                .into_iter()
                .filter(|a| references.contains(&a.tag))
                .collect();
            if references.iter().any(|r| r == "Tag") {
                chosen.push(tag_attribute(&o.tags));
            }
            chosen
        };
        Ok(Done {
            response: structure(
                "GetAttributesResponse",
                vec![
                    text("UniqueIdentifier", &o.uid),
                    structure("Attributes", selected),
                ],
            ),
            uid: o.uid,
        })
    }

    async fn activate(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let id = Self::required_uid(req)?;
        let mut o = self
            .resolve(user, id, "activate")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| KmsError::ItemNotFound(id.to_owned()))?;
        if o.state != State::PreActive {
            return Err(KmsError::WrongState(format!(
                "Activate: Object {} is already in {} state",
                o.uid,
                o.state.name()
            )));
        }
        o.state = State::Active;
        o.activation_date = Some(now());
        o.last_change = now();
        self.store.update(&o).await?;
        Ok(Done {
            response: structure("ActivateResponse", vec![text("UniqueIdentifier", &o.uid)]),
            uid: o.uid,
        })
    }

    async fn rekey(&self, user: &str, req: &Ttlv) -> Result<Done, KmsError> {
        let id = Self::required_uid(req)?;
        let mut old = self
            .resolve(user, id, "rekey")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| KmsError::ItemNotFound(id.to_owned()))?;
        if old.wrapping == Wrapping::Resident {
            return Err(KmsError::InvalidRequest(format!(
                "ReKey: {} lives in the HSM; create a new HSM key instead",
                old.uid
            )));
        }
        if old.state == State::PreActive || old.state.is_destroyed() {
            return Err(KmsError::InvalidRequest(format!(
                "ReKey: key {} is in state {}; only Active, Deactivated or Compromised keys can be rotated",
                old.uid,
                old.state.name()
            )));
        }
        let bytes_len = usize::try_from(old.length_bits / 8).unwrap_or(32);
        let key = crypto::random(bytes_len).map_err(|e| KmsError::Internal(e.to_string()))?;
        let user_tags: BTreeSet<String> = old
            .tags
            .iter()
            .filter(|t| !t.starts_with('_'))
            .cloned()
            .collect();
        let mut new = self.new_object(
            &old.owner,
            uuid::Uuid::new_v4().to_string(),
            &key,
            old.usage_mask,
            Some(now()),
            user_tags,
        )?;
        new.meta.links = vec![Link {
            link_type: "ReplacedObjectLink".into(),
            uid: old.uid.clone(),
        }];
        new.meta.rotate_generation = Some(old.meta.rotate_generation.unwrap_or(0) + 1);
        if old.state == State::Active {
            old.state = State::Deactivated;
            old.deactivation_date = Some(now());
        }
        old.meta
            .links
            .retain(|l| l.link_type != "ReplacementObjectLink");
        old.meta.links.push(Link {
            link_type: "ReplacementObjectLink".into(),
            uid: new.uid.clone(),
        });
        old.meta.rotate_generation.get_or_insert(0);
        old.last_change = now();
        self.store.rekey(&old, &new).await?;
        Ok(Done {
            response: structure("ReKeyResponse", vec![text("UniqueIdentifier", &new.uid)]),
            uid: new.uid,
        })
    }
}
