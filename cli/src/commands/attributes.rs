//! `ckms attributes get|set|delete|modify`: an object's KMIP attributes, with the reference
//! CLI's syntax. `set` adds or replaces, `modify` replaces only what exists, `delete` removes
//! (an attribute by name, or one value such as one `Name`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::Outcome;
use super::objects::write;
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip::{self, leaf};

#[derive(Debug, Args)]
pub struct Target {
    /// The object's unique identifier
    #[arg(short = 'i', long = "id", visible_alias = "key-id")]
    pub id: Option<String>,
    /// Select the object by tag instead (repeat: all of them)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
}

/// The attributes `set`, `modify` and `delete` take.
#[derive(Debug, Args)]
pub struct Values {
    #[command(flatten)]
    pub target: Target,
    /// A name of the object (KMIP Name, UninterpretedTextString)
    #[arg(short = 'n', long)]
    pub name: Option<String>,
    /// Activation date: RFC 3339 (2030-01-01T00:00:00Z) or milliseconds since 1970
    #[arg(short = 'd', long)]
    pub activation_date: Option<String>,
    /// Vendor attribute: the vendor (with --attribute-name and --attribute-value)
    #[arg(short = 'v', long, requires = "attribute_name")]
    pub vendor_identification: Option<String>,
    /// Vendor attribute: its name
    #[arg(long, requires = "vendor_identification")]
    pub attribute_name: Option<String>,
    /// Vendor attribute: its value, in hexadecimal
    #[arg(long, requires = "attribute_name")]
    pub attribute_value: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AttributesCommand {
    /// Print an object's attributes (all, or those asked for)
    Get {
        #[command(flatten)]
        target: Target,
        /// Only this attribute (KMIP name, e.g. CryptographicLength; repeatable)
        #[arg(short = 'a', long = "attribute")]
        attributes: Vec<String>,
        /// Only links of this type (e.g. replacement-object; repeatable)
        #[arg(short = 'l', long = "link-type")]
        link_types: Vec<String>,
        /// Write the attributes to this file as JSON
        #[arg(short = 'o', long)]
        output_file: Option<PathBuf>,
    },
    /// Set attributes (added, or replaced when they exist)
    Set(Values),
    /// Delete attributes
    Delete {
        #[command(flatten)]
        values: Values,
        /// Delete every value of this attribute (KMIP name; repeatable)
        #[arg(short = 'a', long = "attribute")]
        attributes: Vec<String>,
    },
    /// Replace attributes that exist (fails when one does not)
    Modify(Values),
}

impl Target {
    fn id(&self) -> Result<String, CliError> {
        kmip::identifier(self.id.as_deref(), &self.tags)
    }
}

/// `12345` (ms since 1970) becomes RFC 3339; anything else goes to the server as written.
fn date(text: &str) -> Result<String, CliError> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(text.to_owned());
    }
    let ms: i64 = text
        .parse()
        .map_err(|_| CliError::Usage(format!("{text}: not a date")))?;
    let t = time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .map_err(|_| CliError::Usage(format!("{text}: date out of range")))?;
    Ok(kmip::date(t))
}

impl Values {
    /// Each attribute given, as a KMIP attribute node.
    fn nodes(&self) -> Result<Vec<Value>, CliError> {
        let mut out = Vec::new();
        if let Some(name) = &self.name {
            out.push(json!({"tag": "Name", "value": [
                kmip::text("NameValue", name),
                leaf("NameType", "Enumeration", json!("UninterpretedTextString")),
            ]}));
        }
        if let Some(d) = &self.activation_date {
            out.push(leaf("ActivationDate", "DateTime", json!(date(d)?)));
        }
        if let (Some(vendor), Some(name)) = (&self.vendor_identification, &self.attribute_name) {
            let value = kmip::unhex(self.attribute_value.as_deref().unwrap_or(""))
                .map_err(|_| CliError::Usage("--attribute-value must be hexadecimal".into()))?;
            out.push(json!({"tag": "Attribute", "value": [
                kmip::text("VendorIdentification", vendor),
                kmip::text("AttributeName", name),
                kmip::bytes("AttributeValue", &value),
            ]}));
        }
        Ok(out)
    }
}

/// The attributes of an answer as a JSON map: single values by name, repeated ones (Name,
/// Link, vendor attributes) as lists.
fn readable(attributes: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for a in attributes["value"].as_array().into_iter().flatten() {
        let tag = a["tag"].as_str().unwrap_or_default().to_owned();
        let children = a["value"].as_array();
        let (key, value) = match (tag.as_str(), children) {
            ("Attribute", Some(_)) => {
                let text = |t: &str| kmip::field(a, t).map(|f| f["value"].clone());
                let vendor = text("VendorIdentification").unwrap_or_default();
                let name = text("AttributeName").unwrap_or_default();
                (
                    format!(
                        "{}:{}",
                        vendor.as_str().unwrap_or(""),
                        name.as_str().unwrap_or("")
                    ),
                    text("AttributeValue").unwrap_or_default(),
                )
            }
            (_, Some(fields)) => {
                let map: Map<String, Value> = fields
                    .iter()
                    .map(|f| {
                        (
                            f["tag"].as_str().unwrap_or("").to_owned(),
                            f["value"].clone(),
                        )
                    })
                    .collect();
                (tag, Value::Object(map))
            }
            _ => (tag, a["value"].clone()),
        };
        let repeated = matches!(key.as_str(), "Name" | "Link") || key.contains(':');
        if repeated {
            let list = out.entry(key).or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(value);
            }
        } else {
            out.insert(key, value);
        }
    }
    out
}

/// `replacement-object` → `ReplacementObjectLink`.
fn link_type(text: &str) -> String {
    let camel: String = text
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect();
    if camel.ends_with("Link") {
        camel
    } else {
        format!("{camel}Link")
    }
}

pub async fn run(kms: &Kms, command: AttributesCommand) -> Result<Outcome, CliError> {
    match command {
        AttributesCommand::Get {
            target,
            attributes,
            link_types,
            output_file,
        } => {
            let id = target.id()?;
            let references: Vec<Value> = attributes
                .iter()
                .map(|a| leaf("AttributeReference", "Enumeration", json!(a)))
                .collect();
            let response = kms
                .kmip(&kmip::by_id("GetAttributes", &id, references))
                .await?;
            let uid = kmip::text_field(&response, "UniqueIdentifier")?;
            let mut map = kmip::field(&response, "Attributes")
                .map(readable)
                .unwrap_or_default();
            if !link_types.is_empty() {
                let wanted: Vec<String> = link_types.iter().map(|l| link_type(l)).collect();
                let links = map.remove("Link").unwrap_or_else(|| json!([]));
                let kept: Vec<Value> = links
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|l| wanted.iter().any(|w| l["LinkType"] == w.as_str()))
                    .cloned()
                    .collect();
                map = Map::from_iter([("Link".to_owned(), json!(kept))]);
            }
            let value = Value::Object(map);
            let text = serde_json::to_string_pretty(&value)
                .map_err(|e| CliError::Protocol(e.to_string()))?;
            if let Some(path) = &output_file {
                write(path, text.as_bytes(), true)?;
                return Ok(Outcome::new(
                    format!("The attributes of {uid} were written to {}", path.display()),
                    json!({"unique_identifier": uid, "file": path}),
                ));
            }
            Ok(Outcome::new(
                text,
                json!({"unique_identifier": uid, "attributes": value}),
            ))
        }
        AttributesCommand::Set(values) => {
            change(kms, "SetAttribute", "NewAttribute", &values, &[]).await
        }
        AttributesCommand::Modify(values) => {
            change(kms, "ModifyAttribute", "NewAttribute", &values, &[]).await
        }
        AttributesCommand::Delete { values, attributes } => {
            change(
                kms,
                "DeleteAttribute",
                "CurrentAttribute",
                &values,
                &attributes,
            )
            .await
        }
    }
}

/// One request per attribute, as the reference CLI sends them.
async fn change(
    kms: &Kms,
    operation: &str,
    holder: &str,
    values: &Values,
    references: &[String],
) -> Result<Outcome, CliError> {
    let id = values.target.id()?;
    let mut requests: Vec<Value> = values
        .nodes()?
        .into_iter()
        .map(|node| {
            kmip::by_id(
                operation,
                &id,
                vec![json!({"tag": holder, "value": [node]})],
            )
        })
        .collect();
    requests.extend(references.iter().map(|r| {
        kmip::by_id(
            operation,
            &id,
            vec![leaf("AttributeReference", "Enumeration", json!(r))],
        )
    }));
    if requests.is_empty() {
        return Err(CliError::Usage(
            "give at least one attribute (--name, --activation-date, a vendor attribute, or --attribute to delete)"
                .into(),
        ));
    }
    for request in &requests {
        kms.kmip(request).await?;
    }
    let verb = match operation {
        "SetAttribute" => "set",
        "ModifyAttribute" => "modified",
        _ => "deleted",
    };
    Ok(Outcome::new(
        format!("{} attribute(s) of {id} {verb}", requests.len()),
        json!({"unique_identifier": id, "changed": requests.len()}),
    ))
}
