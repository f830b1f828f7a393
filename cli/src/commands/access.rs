//! `ckms access-rights`: the KMS's REST endpoints for grants (`/access/*`).

use clap::Subcommand;
use serde_json::{Value, json};

use super::Outcome;
use crate::error::CliError;
use crate::http::Kms;

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Let a user perform operations on a key you own
    Grant {
        /// The user (as the KMS knows it: certificate CN, token claim, ...)
        user: String,
        /// The key
        #[arg(short = 'i', long)]
        object_uid: String,
        /// Operations: get, export, encrypt, decrypt, revoke, destroy, ... (or * for all)
        #[arg(required = true)]
        operations: Vec<String>,
    },
    /// Take operations back from a user
    Revoke {
        user: String,
        #[arg(short = 'i', long)]
        object_uid: String,
        #[arg(required = true)]
        operations: Vec<String>,
    },
    /// Who may do what on a key you own
    List {
        /// The key
        #[arg(value_name = "OBJECT_UID", required_unless_present = "object_uid")]
        uid: Option<String>,
        /// The key (the older form of the argument)
        #[arg(short = 'i', long, conflicts_with = "uid")]
        object_uid: Option<String>,
    },
    /// The keys you own
    Owned,
    /// The keys others granted you access to
    Obtained,
}

fn lines(value: &Value, render: impl Fn(&Value) -> String) -> String {
    let items: Vec<String> = value.as_array().into_iter().flatten().map(render).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join("\n")
    }
}

fn ops(value: &Value) -> String {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(kms: &Kms, command: AccessCommand) -> Result<Outcome, CliError> {
    match command {
        AccessCommand::Grant {
            user,
            object_uid,
            operations,
        } => change(kms, "/access/grant", &user, &object_uid, &operations).await,
        AccessCommand::Revoke {
            user,
            object_uid,
            operations,
        } => change(kms, "/access/revoke", &user, &object_uid, &operations).await,
        AccessCommand::List { uid, object_uid } => {
            let object_uid = uid.or(object_uid).unwrap_or_default();
            let list = kms.get(&format!("/access/list/{object_uid}")).await?;
            let text = lines(&list, |e| {
                format!(
                    "{}: {}",
                    e["user_id"].as_str().unwrap_or("?"),
                    ops(&e["operations"])
                )
            });
            Ok(Outcome::new(text, list))
        }
        AccessCommand::Owned => {
            let owned = kms.get("/access/owned").await?;
            let text = lines(&owned, |e| {
                format!(
                    "{} ({})",
                    e["object_id"].as_str().unwrap_or("?"),
                    e["state"].as_str().unwrap_or("?")
                )
            });
            Ok(Outcome::new(text, owned))
        }
        AccessCommand::Obtained => {
            let obtained = kms.get("/access/obtained").await?;
            let text = lines(&obtained, |e| {
                format!(
                    "{} from {} ({}): {}",
                    e["object_id"].as_str().unwrap_or("?"),
                    e["owner_id"].as_str().unwrap_or("?"),
                    e["state"].as_str().unwrap_or("?"),
                    ops(&e["operations"])
                )
            });
            Ok(Outcome::new(text, obtained))
        }
    }
}

async fn change(
    kms: &Kms,
    path: &str,
    user: &str,
    uid: &str,
    operations: &[String],
) -> Result<Outcome, CliError> {
    let body = json!({
        "unique_identifier": uid,
        "user_id": user,
        "operation_types": operations.iter().map(|o| o.to_ascii_lowercase()).collect::<Vec<_>>(),
    });
    let answer = kms.post(path, &body).await?;
    let text = answer["success"]
        .as_str()
        .map_or_else(|| answer.to_string(), str::to_owned);
    Ok(Outcome::new(text, answer))
}
