//! `ckms hash`, `ckms rng`, `ckms mac`, `ckms derive-key` and `ckms server
//! discover-versions|query`: server-side computations, with the reference CLI's syntax.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::Outcome;
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip::{self, leaf};

/// Hash algorithms, as the reference CLI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HashAlgorithm {
    Sha256,
    Sha384,
    Sha512,
    #[value(name = "sha3-256")]
    Sha3_256,
    #[value(name = "sha3-384")]
    Sha3_384,
    #[value(name = "sha3-512")]
    Sha3_512,
}

impl HashAlgorithm {
    /// The KMIP `HashingAlgorithm` name.
    pub fn kmip(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
            Self::Sha3_256 => "SHA3256",
            Self::Sha3_384 => "SHA3384",
            Self::Sha3_512 => "SHA3512",
        }
    }
}

/// `ckms hash`: the digest of hex data, computed by the server.
#[derive(Debug, Args)]
pub struct HashArgs {
    /// Hashing algorithm
    #[arg(short = 'a', long = "algorithm")]
    pub algorithm: HashAlgorithm,
    /// The data, in hexadecimal
    #[arg(short = 'd', long)]
    pub data: String,
}

#[derive(Debug, Subcommand)]
pub enum RngCommand {
    /// Random bytes from the server's generator (hex)
    Retrieve {
        /// Number of bytes (1 to 65536)
        #[arg(short = 'l', long)]
        length: i32,
    },
    /// Offer seed data to the server's generator (hex); it reports how much it used
    Seed {
        /// Seed data, in hexadecimal
        #[arg(short = 'd', long)]
        data: String,
    },
}

fn data_of(response: &Value, tag: &str) -> String {
    response["value"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["tag"] == tag)
        .and_then(|c| c["value"].as_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[derive(Debug, Subcommand)]
pub enum MacCommand {
    /// The HMAC of data with a key of the KMS
    Compute {
        #[command(flatten)]
        mac: MacArgs,
    },
    /// Check a MAC: prints Valid or Invalid (and fails on Invalid)
    Verify {
        #[command(flatten)]
        mac: MacArgs,
        /// The MAC to check, in hexadecimal
        #[arg(short = 'm', long)]
        mac_data: String,
    },
}

#[derive(Debug, Args)]
pub struct MacArgs {
    /// The MAC key's unique identifier (an HMAC key, or an AES key with --algorithm)
    #[arg(short = 'k', long = "mac-key-id", visible_alias = "key-id")]
    pub key_id: String,
    /// Hash of the HMAC [default: the HMAC key's own]
    #[arg(short = 'a', long)]
    pub algorithm: Option<HashAlgorithm>,
    /// The data, in hexadecimal
    #[arg(short = 'd', long)]
    pub data: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DerivationMethod {
    Pbkdf2,
    Hkdf,
}

/// `ckms derive-key`: a new AES key derived by the KMS from a key, secret data, or a
/// password stored for the purpose.
#[derive(Debug, Args)]
pub struct DeriveArgs {
    /// The base object (a key or secret data allowed to derive keys)
    #[arg(short = 'k', long, required_unless_present = "password")]
    pub key_id: Option<String>,
    /// Derive from this password instead (stored in the KMS as secret data first)
    #[arg(short = 'p', long, conflicts_with = "key_id")]
    pub password: Option<String>,
    /// Derivation method
    #[arg(short = 'm', long, value_enum, default_value = "pbkdf2")]
    pub derivation_method: DerivationMethod,
    /// Salt, in hexadecimal
    #[arg(short = 's', long, default_value = "")]
    pub salt: String,
    /// PBKDF2 iterations
    #[arg(short = 'i', long, default_value_t = 600_000)]
    pub iteration_count: i32,
    /// HKDF info, in hexadecimal
    #[arg(long, default_value = "")]
    pub info: String,
    /// Hash of the derivation
    #[arg(short = 'a', long, value_enum, default_value = "sha256")]
    pub digest_algorithm: HashAlgorithm,
    /// Length of the derived AES key in bits
    #[arg(short = 'l', long, default_value_t = 256)]
    pub length: i32,
    /// Tag to attach to the derived key (repeatable)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// The identifier to give the derived key [default: chosen by the KMS]
    pub derived_key_id: Option<String>,
}

pub async fn mac(kms: &Kms, command: MacCommand) -> Result<Outcome, CliError> {
    let (args, expected) = match command {
        MacCommand::Compute { mac } => (mac, None),
        MacCommand::Verify { mac, mac_data } => (mac, Some(hex_arg(&mac_data)?)),
    };
    let mut children = vec![kmip::text("UniqueIdentifier", &args.key_id)];
    if let Some(alg) = args.algorithm {
        children.push(json!({"tag": "CryptographicParameters", "value": [
            leaf("HashingAlgorithm", "Enumeration", json!(alg.kmip())),
        ]}));
    }
    children.push(kmip::bytes("Data", &hex_arg(&args.data)?));
    let verify = expected.is_some();
    children.extend(expected.map(|m| kmip::bytes("MACData", &m)));
    let operation = if verify { "MACVerify" } else { "MAC" };
    let response = kms
        .kmip(&json!({"tag": operation, "value": children}))
        .await?;
    if verify {
        let validity = data_of(&response, "ValidityIndicator");
        if validity != "valid" {
            return Err(CliError::Usage("the MAC is Invalid".into()));
        }
        return Ok(Outcome::new("Valid", json!({"validity": "Valid"})));
    }
    let mac = data_of(&response, "MACData");
    Ok(Outcome::new(
        format!("MAC: {mac}"),
        json!({"mac": mac, "unique_identifier": args.key_id}),
    ))
}

pub async fn derive_key(kms: &Kms, args: DeriveArgs) -> Result<Outcome, CliError> {
    let base = match (&args.key_id, &args.password) {
        (Some(id), _) => id.clone(),
        (None, Some(password)) => {
            // Stored as secret data that may derive keys (usage mask DeriveKey).
            let request = json!({"tag": "Import", "value": [
                kmip::text("UniqueIdentifier", ""),
                leaf("ObjectType", "Enumeration", json!("SecretData")),
                {"tag": "Attributes", "value": [
                    leaf("ActivationDate", "DateTime", json!(kmip::now())),
                    leaf("CryptographicUsageMask", "Integer", json!(0x200)),
                ]},
                {"tag": "SecretData", "value": [
                    leaf("SecretDataType", "Enumeration", json!("Password")),
                    {"tag": "KeyBlock", "value": [
                        leaf("KeyFormatType", "Enumeration", json!("Raw")),
                        {"tag": "KeyValue", "value": [kmip::bytes("KeyMaterial", password.as_bytes())]},
                    ]},
                ]},
            ]});
            kmip::text_field(&kms.kmip(&request).await?, "UniqueIdentifier")?
        }
        (None, None) => return Err(CliError::Usage("give --key-id or --password".into())),
    };
    let mut parameters = vec![
        json!({"tag": "CryptographicParameters", "value": [
            leaf("HashingAlgorithm", "Enumeration", json!(args.digest_algorithm.kmip())),
        ]}),
        kmip::bytes("Salt", &hex_arg(&args.salt)?),
    ];
    let method = match args.derivation_method {
        DerivationMethod::Pbkdf2 => {
            parameters.push(leaf(
                "IterationCount",
                "Integer",
                json!(args.iteration_count),
            ));
            "PBKDF2"
        }
        DerivationMethod::Hkdf => {
            parameters.push(kmip::bytes("DerivationData", &hex_arg(&args.info)?));
            "HKDF"
        }
    };
    let mut attributes = vec![
        leaf("CryptographicAlgorithm", "Enumeration", json!("AES")),
        leaf("CryptographicLength", "Integer", json!(args.length)),
        leaf("CryptographicUsageMask", "Integer", json!(12)),
    ];
    if let Some(id) = &args.derived_key_id {
        attributes.push(kmip::text("UniqueIdentifier", id));
    }
    attributes.push(kmip::tags_attribute(&args.tags));
    let request = json!({"tag": "DeriveKey", "value": [
        leaf("ObjectType", "Enumeration", json!("SymmetricKey")),
        kmip::text("ObjectUniqueIdentifier", &base),
        leaf("DerivationMethod", "Enumeration", json!(method)),
        {"tag": "DerivationParameters", "value": parameters},
        {"tag": "Attributes", "value": attributes},
    ]});
    let uid = kmip::text_field(&kms.kmip(&request).await?, "UniqueIdentifier")?;
    Ok(Outcome::new(
        format!("The derived key was created with identifier {uid}"),
        json!({"unique_identifier": uid, "base": base}),
    ))
}

fn hex_arg(text: &str) -> Result<Vec<u8>, CliError> {
    kmip::unhex(text).map_err(|_| CliError::Usage(format!("{text:?} is not hexadecimal")))
}

pub async fn hash(kms: &Kms, args: HashArgs) -> Result<Outcome, CliError> {
    let request = json!({"tag": "Hash", "value": [
        {"tag": "CryptographicParameters", "value": [
            leaf("HashingAlgorithm", "Enumeration", json!(args.algorithm.kmip())),
        ]},
        kmip::bytes("Data", &hex_arg(&args.data)?),
        leaf("InitIndicator", "Boolean", json!(false)),
        leaf("FinalIndicator", "Boolean", json!(false)),
    ]});
    let digest = data_of(&kms.kmip(&request).await?, "Data");
    Ok(Outcome::new(
        format!("Hash output: {digest}"),
        json!({"hash": digest}),
    ))
}

pub async fn rng(kms: &Kms, command: RngCommand) -> Result<Outcome, CliError> {
    match command {
        RngCommand::Retrieve { length } => {
            let request = json!({"tag": "RNGRetrieve", "value": [
                leaf("DataLength", "Integer", json!(length)),
            ]});
            let data = data_of(&kms.kmip(&request).await?, "Data");
            Ok(Outcome::new(data.clone(), json!({"data": data})))
        }
        RngCommand::Seed { data } => {
            let request =
                json!({"tag": "RNGSeed", "value": [kmip::bytes("Data", &hex_arg(&data)?)]});
            let response = kms.kmip(&request).await?;
            let used = response["value"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["tag"] == "AmountOfSeedData")
                .and_then(|c| c["value"].as_i64())
                .unwrap_or(0);
            Ok(Outcome::new(
                format!("the server used {used} byte(s) of the seed"),
                json!({"amount_of_seed_data": used}),
            ))
        }
    }
}

/// `ckms server discover-versions`.
pub async fn discover_versions(kms: &Kms) -> Result<Outcome, CliError> {
    let response = kms
        .kmip(&json!({"tag": "DiscoverVersions", "value": []}))
        .await?;
    let versions: Vec<String> = response["value"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let part = |tag: &str| {
                v["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["tag"] == tag)
                    .and_then(|c| c["value"].as_i64())
                    .unwrap_or(0)
            };
            format!(
                "{}.{}",
                part("ProtocolVersionMajor"),
                part("ProtocolVersionMinor")
            )
        })
        .collect();
    Ok(Outcome::new(
        versions.join("\n"),
        json!({"versions": versions}),
    ))
}

/// `ckms server query`: the operations and object types the server implements.
pub async fn query(kms: &Kms) -> Result<Outcome, CliError> {
    let request = json!({"tag": "Query", "value": [
        leaf("QueryFunction", "Enumeration", json!("QueryOperations")),
        leaf("QueryFunction", "Enumeration", json!("QueryObjects")),
        leaf("QueryFunction", "Enumeration", json!("QueryServerInformation")),
    ]});
    let response = kms.kmip(&request).await?;
    let all = |tag: &str| -> Vec<String> {
        response["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["tag"] == tag)
            .filter_map(|c| c["value"].as_str().map(str::to_owned))
            .collect()
    };
    let (operations, objects) = (all("Operation"), all("ObjectType"));
    Ok(Outcome::new(
        format!(
            "operations: {}\nobject types: {}",
            operations.join(", "),
            objects.join(", ")
        ),
        json!({"operations": operations, "object_types": objects}),
    ))
}
