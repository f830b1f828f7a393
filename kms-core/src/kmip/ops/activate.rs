//! Activate: a PreActive key becomes Active now.

use crate::error::KmsError;
use crate::kmip::build::{structure, text};
use crate::kmip::fields::Fields;
use crate::kmip::kms::{Done, Kms};
use crate::kmip::operation::Operation;
use crate::kmip::resolve::required;
use crate::kmip::ttlv::Ttlv;
use crate::object::{State, now};

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "Activate")?;
    let id = required(f.text("UniqueIdentifier")?)?;
    f.finish()?;
    let mut o = kms
        .resolve_one(user, id, Operation::Activate, || {
            KmsError::ItemNotFound(id.to_owned())
        })
        .await?;
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
    kms.store.update(&o).await?;
    Ok(Done::new(
        structure("ActivateResponse", vec![text("UniqueIdentifier", &o.uid)]),
        o.uid,
    ))
}
