//! ModifyAttribute: changes an attribute the object has (the `CurrentAttribute` instance, or
//! the first one).

use crate::error::KmsError;
use crate::kmip::kms::{Done, Kms};
use crate::kmip::mutable::Change;
use crate::kmip::operation::Operation;
use crate::kmip::ttlv::Ttlv;

pub async fn run(kms: &Kms, user: &str, node: &Ttlv) -> Result<Done, KmsError> {
    super::set_attribute::change(kms, user, node, Operation::ModifyAttribute, Change::Modify).await
}
