//! Revoke, destroy and the single-uid operations (Activate, ReKey) for every object kind; the
//! KMS is told which kind is expected, so a uid of another kind is refused, not acted on.

use clap::{Args, ValueEnum};
use serde_json::json;

use super::Outcome;
use super::objects::{Kind, Selector, created};
use crate::error::CliError;
use crate::http::Kms;
use crate::kmip::{self, leaf};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReasonCode {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl ReasonCode {
    fn kmip(self) -> &'static str {
        match self {
            Self::Unspecified => "Unspecified",
            Self::KeyCompromise => "KeyCompromise",
            Self::CaCompromise => "CACompromise",
            Self::AffiliationChanged => "AffiliationChanged",
            Self::Superseded => "Superseded",
            Self::CessationOfOperation => "CessationOfOperation",
            Self::PrivilegeWithdrawn => "PrivilegeWithdrawn",
        }
    }
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub object: Selector,
    /// Why
    #[arg(short = 'r', long, value_enum, default_value = "unspecified")]
    pub reason_code: ReasonCode,
    /// A message recorded with the revocation
    pub message: String,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub object: Selector,
    /// Also remove it from the database
    #[arg(long)]
    pub remove: bool,
}

/// Fails unless the object `id` names is of `kind`.
async fn check_kind(kms: &Kms, kind: Kind, id: &str) -> Result<(), CliError> {
    let attributes = kms.kmip(&kmip::by_id("GetAttributes", id, vec![])).await?;
    let found = kmip::find(&attributes, "ObjectType")
        .and_then(|o| o["value"].as_str())
        .unwrap_or("");
    if found != kind.kmip() {
        return Err(CliError::Usage(format!(
            "{id} is not a {} ({found:?})",
            kind.kmip()
        )));
    }
    Ok(())
}

pub async fn revoke(kms: &Kms, kind: Kind, args: RevokeArgs) -> Result<Outcome, CliError> {
    let id = args.object.id()?;
    check_kind(kms, kind, &id).await?;
    let reason = json!({"tag": "RevocationReason", "value": [
        leaf("RevocationReasonCode", "Enumeration", json!(args.reason_code.kmip())),
        kmip::text("RevocationMessage", &args.message),
    ]});
    let response = kms
        .kmip(&kmip::by_id(
            "Revoke",
            &id,
            vec![reason, leaf("Cascade", "Boolean", json!(true))],
        ))
        .await?;
    let uid = kmip::text_field(&response, "UniqueIdentifier")?;
    Ok(created(kind, &uid, "revoked"))
}

pub async fn destroy(kms: &Kms, kind: Kind, args: DestroyArgs) -> Result<Outcome, CliError> {
    let id = args.object.id()?;
    check_kind(kms, kind, &id).await?;
    let mut extra = Vec::new();
    if args.remove {
        extra.push(leaf("Remove", "Boolean", json!(true)));
    }
    extra.push(leaf("Cascade", "Boolean", json!(true)));
    extra.push(leaf(
        "ExpectedObjectType",
        "Enumeration",
        json!(kind.kmip()),
    ));
    let response = match kms.kmip(&kmip::by_id("Destroy", &id, extra)).await {
        Err(CliError::Server { status, message })
            if message.starts_with("Wrong_Key_Lifecycle_State") =>
        {
            return Err(CliError::Server {
                status,
                message: format!(
                    "{message}: the {} {id} is active; revoke it first (the `revoke` command \
                     of the same family, e.g. ckms sym keys revoke -k {id} \"reason\"), then \
                     destroy it",
                    kind.noun()
                ),
            });
        }
        other => other?,
    };
    let uid = kmip::text_field(&response, "UniqueIdentifier")?;
    Ok(Outcome::new(
        format!("The {} {uid} was destroyed", kind.noun()),
        json!({"unique_identifier": uid, "removed": args.remove}),
    ))
}

/// A command that takes only a uid (Activate, ReKey); the uid it answers.
pub async fn by_id(kms: &Kms, operation: &str, id: &str) -> Result<String, CliError> {
    let response = kms.kmip(&kmip::by_id(operation, id, vec![])).await?;
    kmip::text_field(&response, "UniqueIdentifier")
}
