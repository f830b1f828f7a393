//! The attributes a client may change after creation (SetAttribute, AddAttribute,
//! ModifyAttribute, DeleteAttribute), read from one attribute node and applied to an object
//! with KMIP's rules. Everything else is read-only (`Attribute_Read_Only`) or not supported.

use std::collections::BTreeSet;

use crate::error::KmsError;
use crate::kmip::attributes::SERVER_MAINTAINED;
use crate::kmip::creation::check_user_tags;
use crate::kmip::fields::{Fields, unsupported};
use crate::kmip::ttlv::Ttlv;
use crate::object::{ManagedObject, Name, State, VendorAttribute, now};

/// Attributes fixed when the object is made (besides those the server maintains, which are
/// read-only too).
const FIXED: [&str; 7] = [
    "UniqueIdentifier",
    "ObjectType",
    "CryptographicAlgorithm",
    "CryptographicLength",
    "CryptographicUsageMask",
    "KeyFormatType",
    "Link",
];

/// One changeable attribute, with its value.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutable {
    Name(Name),
    ActivationDate(i64),
    DeactivationDate(i64),
    RotateInterval(i64),
    RotateOffset(i64),
    RotateAutomatic(bool),
    Sensitive(bool),
    /// The reference's `cosmian:tag` vendor attribute: the user tags.
    Tags(BTreeSet<String>),
    Vendor(VendorAttribute),
}

impl Mutable {
    /// Reads the single attribute inside `NewAttribute` / `CurrentAttribute`.
    pub fn parse(holder: &Ttlv, path: &str) -> Result<Self, KmsError> {
        let children = holder.children();
        let [node] = children else {
            return Err(KmsError::InvalidRequest(format!(
                "{path} must hold exactly one attribute"
            )));
        };
        let tag = node.tag.as_str();
        if SERVER_MAINTAINED.contains(&tag) || FIXED.contains(&tag) {
            return Err(KmsError::ReadOnly(format!(
                "{tag} cannot be changed by a client"
            )));
        }
        let wrapper = Ttlv::new(holder.tag.clone(), holder.value.clone());
        let mut f = Fields::of(&wrapper, path)?;
        let value = match tag {
            "Name" => {
                let n = f.structure("Name")?.ok_or_else(|| missing(path, tag))?;
                Self::Name(crate::kmip::attributes::parse_name(n)?)
            }
            "ActivationDate" => {
                Self::ActivationDate(f.date(tag)?.ok_or_else(|| missing(path, tag))?)
            }
            "DeactivationDate" => {
                Self::DeactivationDate(f.date(tag)?.ok_or_else(|| missing(path, tag))?)
            }
            "RotateInterval" => {
                Self::RotateInterval(f.long(tag)?.ok_or_else(|| missing(path, tag))?)
            }
            "RotateOffset" => Self::RotateOffset(f.long(tag)?.ok_or_else(|| missing(path, tag))?),
            "RotateAutomatic" => {
                Self::RotateAutomatic(f.boolean(tag)?.ok_or_else(|| missing(path, tag))?)
            }
            "Sensitive" => Self::Sensitive(f.boolean(tag)?.ok_or_else(|| missing(path, tag))?),
            "Attribute" => {
                let mut a = f
                    .structure("Attribute")?
                    .ok_or_else(|| missing(path, tag))?;
                let vendor = a
                    .text("VendorIdentification")?
                    .unwrap_or_default()
                    .to_owned();
                let name = a.text("AttributeName")?.unwrap_or_default().to_owned();
                let value = a.node("AttributeValue")?.map(Ttlv::to_json);
                a.finish()?;
                if vendor.is_empty() || name.is_empty() || name.len() > 256 {
                    return Err(KmsError::InvalidRequest(format!(
                        "{path}: a vendor attribute needs VendorIdentification and AttributeName (at most 256 bytes)"
                    )));
                }
                if vendor == "cosmian" && name == "tag" {
                    let text = value
                        .as_ref()
                        .and_then(|v| v["value"].as_str())
                        .unwrap_or("[]");
                    let tags: Vec<String> = serde_json::from_str(text).map_err(|e| {
                        KmsError::InvalidRequest(format!(
                            "tags must be a JSON array of strings: {e}"
                        ))
                    })?;
                    let tags: BTreeSet<String> = tags.into_iter().collect();
                    check_user_tags(&tags)?;
                    Self::Tags(tags)
                } else {
                    Self::Vendor(VendorAttribute {
                        vendor,
                        name,
                        value: value.unwrap_or(serde_json::Value::Null),
                    })
                }
            }
            other => return Err(unsupported(path, format!("the attribute {other}"))),
        };
        f.finish()?;
        Ok(value)
    }
}

fn missing(path: &str, what: &str) -> KmsError {
    KmsError::InvalidRequest(format!("{path}: {what} needs a value"))
}

/// How a change applies: replace the value, add an instance, modify an existing one (the
/// `current` one when given), or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Set,
    Add,
    Modify,
}

fn user_tags(o: &ManagedObject) -> BTreeSet<String> {
    o.tags
        .iter()
        .filter(|t| !t.starts_with('_'))
        .cloned()
        .collect()
}

/// Changes `o` as `change` says; `current` names the instance ModifyAttribute replaces.
pub fn apply(
    o: &mut ManagedObject,
    change: Change,
    new: Mutable,
    current: Option<&Mutable>,
) -> Result<(), KmsError> {
    let present = is_present(o, &new);
    if change == Change::Add && present && !matches!(new, Mutable::Name(_) | Mutable::Vendor(_)) {
        return Err(KmsError::InvalidRequest(
            "AddAttribute: the object already has this attribute; use SetAttribute or ModifyAttribute".into(),
        ));
    }
    if change == Change::Modify && !present {
        return Err(KmsError::ItemNotFound(
            "ModifyAttribute: the object does not have this attribute; use SetAttribute or AddAttribute".into(),
        ));
    }
    match new {
        Mutable::Name(name) => match (change, current) {
            (Change::Set, _) => o.meta.names = vec![name],
            (Change::Add, _) => {
                if !o.meta.names.contains(&name) {
                    o.meta.names.push(name);
                }
            }
            (Change::Modify, Some(Mutable::Name(old))) => {
                let slot = o.meta.names.iter_mut().find(|n| n.value == old.value);
                *slot.ok_or_else(|| KmsError::ItemNotFound(format!("Name {}", old.value)))? = name;
            }
            (Change::Modify, _) => {
                if let Some(first) = o.meta.names.first_mut() {
                    *first = name;
                }
            }
        },
        Mutable::ActivationDate(date) => {
            if o.state != State::PreActive {
                return Err(KmsError::WrongState(format!(
                    "the ActivationDate of a {} object cannot change (only while PreActive)",
                    o.state.name()
                )));
            }
            o.activation_date = Some(date);
        }
        Mutable::DeactivationDate(date) => {
            if !matches!(o.state, State::PreActive | State::Active) {
                return Err(KmsError::WrongState(format!(
                    "the DeactivationDate of a {} object cannot change",
                    o.state.name()
                )));
            }
            if o.activation_date.is_some_and(|a| date < a) {
                return Err(KmsError::InvalidRequest(
                    "DeactivationDate must not be before the ActivationDate".into(),
                ));
            }
            o.deactivation_date = Some(date);
        }
        Mutable::RotateInterval(_) | Mutable::RotateOffset(_) | Mutable::RotateAutomatic(_)
            if o.object_type != crate::object::ObjectType::SymmetricKey =>
        {
            return Err(crate::kmip::fields::unsupported(
                "SetAttribute",
                format!(
                    "a rotation policy on a {} (symmetric keys rotate automatically; ReKeyKeyPair re-keys a pair)",
                    o.object_type.name()
                ),
            ));
        }
        Mutable::RotateInterval(seconds) => {
            if seconds < 0 {
                return Err(KmsError::InvalidRequest(
                    "RotateInterval must be >= 0".into(),
                ));
            }
            o.meta.rotate_interval = (seconds > 0).then_some(seconds);
            schedule(o);
        }
        Mutable::RotateOffset(seconds) => {
            if seconds < 0 {
                return Err(KmsError::InvalidRequest("RotateOffset must be >= 0".into()));
            }
            o.meta.rotate_offset = Some(seconds);
            schedule(o);
        }
        Mutable::RotateAutomatic(on) => {
            if on && o.meta.rotate_interval.is_none() {
                return Err(KmsError::InvalidRequest(
                    "RotateAutomatic needs a RotateInterval".into(),
                ));
            }
            if !on {
                o.meta.rotate_interval = None;
            }
            schedule(o);
        }
        Mutable::Sensitive(on) => {
            if !on && o.meta.sensitive {
                return Err(KmsError::ReadOnly(
                    "a Sensitive object stays Sensitive".into(),
                ));
            }
            o.meta.sensitive = on;
        }
        Mutable::Tags(tags) => {
            let system: BTreeSet<String> = o
                .tags
                .iter()
                .filter(|t| t.starts_with('_'))
                .cloned()
                .collect();
            let mut all = if change == Change::Add {
                user_tags(o)
            } else {
                BTreeSet::new()
            };
            all.extend(tags);
            o.tags = system.into_iter().chain(all).collect();
        }
        Mutable::Vendor(attribute) => {
            let same =
                |a: &VendorAttribute| a.vendor == attribute.vendor && a.name == attribute.name;
            if change != Change::Add {
                o.meta.vendor.retain(|a| !same(a));
            }
            o.meta.vendor.push(attribute);
        }
    }
    o.last_change = now();
    Ok(())
}

/// Removes the attribute `which` names (an instance, or every instance by reference).
pub fn delete(o: &mut ManagedObject, which: &Mutable, by_reference: bool) -> Result<(), KmsError> {
    if !is_present(o, which) {
        return Err(KmsError::ItemNotFound(
            "DeleteAttribute: the object does not have this attribute".into(),
        ));
    }
    match which {
        Mutable::Name(_) if by_reference => o.meta.names.clear(),
        Mutable::Name(name) => o.meta.names.retain(|n| n.value != name.value),
        Mutable::RotateInterval(_) | Mutable::RotateAutomatic(_) => {
            o.meta.rotate_interval = None;
            schedule(o);
        }
        Mutable::RotateOffset(_) => {
            o.meta.rotate_offset = None;
            schedule(o);
        }
        Mutable::DeactivationDate(_) if o.state == State::PreActive || o.state == State::Active => {
            o.deactivation_date = None;
        }
        Mutable::Tags(_) => o.tags.retain(|t| t.starts_with('_')),
        Mutable::Vendor(v) => o
            .meta
            .vendor
            .retain(|a| !(a.vendor == v.vendor && a.name == v.name)),
        Mutable::ActivationDate(_) | Mutable::DeactivationDate(_) | Mutable::Sensitive(_) => {
            return Err(KmsError::ReadOnly(
                "this attribute can be changed but not deleted".into(),
            ));
        }
    }
    o.last_change = now();
    Ok(())
}

fn is_present(o: &ManagedObject, which: &Mutable) -> bool {
    match which {
        Mutable::Name(_) => !o.meta.names.is_empty(),
        Mutable::ActivationDate(_) => o.activation_date.is_some(),
        Mutable::DeactivationDate(_) => o.deactivation_date.is_some(),
        Mutable::RotateInterval(_) | Mutable::RotateAutomatic(_) => {
            o.meta.rotate_interval.is_some()
        }
        Mutable::RotateOffset(_) => o.meta.rotate_offset.is_some(),
        Mutable::Sensitive(_) => true,
        Mutable::Tags(_) => !user_tags(o).is_empty(),
        Mutable::Vendor(v) => o
            .meta
            .vendor
            .iter()
            .any(|a| a.vendor == v.vendor && a.name == v.name),
    }
}

/// When the next automatic rotation is due: the offset after activation for the first one
/// (if given), else one interval from now; none without an interval.
pub fn schedule(o: &mut ManagedObject) {
    o.rotate_at = o.meta.rotate_interval.map(|interval| {
        let first = o
            .meta
            .rotate_offset
            .zip(o.activation_date)
            .map(|(offset, activation)| activation.saturating_add(offset));
        first
            .filter(|t| *t > now())
            .unwrap_or_else(|| now().saturating_add(interval))
    });
}
