//! `ckms hash`, `ckms rng` and `ckms server discover-versions|query`: server-side operations
//! that involve no key, with the reference CLI's syntax.

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
