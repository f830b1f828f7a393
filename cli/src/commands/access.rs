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
        /// The user (as the KMS knows it: certificate CN, token claim, ...), or * for everyone
        user: String,
        /// The key
        #[arg(short = 'i', long)]
        object_uid: String,
        /// Operations, as the KMS names its grants: create, import, certify, get, export,
        /// getattributes, setattribute, addattribute, modifyattribute, deleteattribute, locate,
        /// activate, revoke, destroy, rekey, encrypt, decrypt, sign, signatureverify, mac, hash,
        /// derivekey, validate
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
    let answer = kms.post(path, &body).await.map_err(unknown_operation)?;
    let text = answer["success"]
        .as_str()
        .map_or_else(|| answer.to_string(), str::to_owned);
    Ok(Outcome::new(text, answer))
}

/// The KMS refuses an operation name it does not grant with serde's words, "unknown variant
/// `encrpyt`, expected one of `create`, ..." (the reference KMS's form, which our core keeps).
/// Said for a person: which name, the KMS's own list (so the reference KMS's list when talking
/// to it), and the nearest name when one is close.
fn unknown_operation(error: CliError) -> CliError {
    let CliError::Server { status, message } = &error else {
        return error;
    };
    let Some((_, rest)) = message.split_once("unknown variant `") else {
        return error;
    };
    let Some((bad, rest)) = rest.split_once('`') else {
        return error;
    };
    let known: Vec<&str> = rest
        .split_once("expected one of")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    if known.is_empty() {
        return error;
    }
    let nearest = known
        .iter()
        .map(|name| (edit_distance(bad, name), *name))
        .min()
        .filter(|(distance, _)| *distance <= 2)
        .map(|(_, name)| format!("did you mean `{name}`? "))
        .unwrap_or_default();
    CliError::Server {
        status: *status,
        message: format!(
            "`{bad}` is not an operation the KMS grants; {nearest}it grants: {}",
            known.join(", ")
        ),
    }
}

/// Levenshtein distance, for suggesting a misspelt name (short strings only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{CliError, edit_distance, unknown_operation};

    #[test]
    fn a_misspelt_operation_is_named_with_the_nearest_and_the_list() {
        let error = unknown_operation(CliError::Server {
            status: 422,
            message: "Json deserialize error: unknown variant `encrpyt`, expected one of \
                      `create`, `decrypt`, `encrypt`, `get` at line 1 column 99"
                .into(),
        });
        assert_eq!(
            error.to_string(),
            "the KMS refused the request (422): `encrpyt` is not an operation the KMS grants; \
             did you mean `encrypt`? it grants: create, decrypt, encrypt, get"
        );
        // Nothing close: no guess.
        let error = unknown_operation(CliError::Server {
            status: 422,
            message: "unknown variant `everything`, expected one of `get`, `export`".into(),
        });
        assert!(!error.to_string().contains("did you mean"), "{error}");
        // Other errors pass unchanged.
        let error = unknown_operation(CliError::NotFound("x".into()));
        assert_eq!(error.to_string(), "unknown key: x");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("get", "get"), 0);
    }
}
