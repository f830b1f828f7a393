//! AddAttribute: adds an instance of a multi-valued attribute (Name, vendor attributes, tags)
//! or a single-valued one the object does not have yet.

use crate::error::KmsError;
use crate::kmip::kms::{Done, Kms};
use crate::kmip::mutable::Change;
use crate::kmip::operation::Operation;
use crate::kmip::ttlv::Ttlv;

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    super::set_attribute::change(kms, user, node, Operation::AddAttribute, Change::Add).await
}
