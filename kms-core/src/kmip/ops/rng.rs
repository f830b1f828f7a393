//! RNGRetrieve (random bytes from the server's generator, at most 64 KiB a call) and
//! RNGSeed (the generator seeds itself from the operating system: the answer says that none
//! of the client's seed data was used).

use crate::error::KmsError;
use crate::kmip::build::{bytes, int, structure};
use crate::kmip::fields::Fields;
use crate::kmip::kms::Done;
use crate::kmip::ttlv::Ttlv;

pub const MAX_RANDOM: i32 = 64 * 1024;

pub fn retrieve(node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "RNGRetrieve")?;
    let length = f
        .int("DataLength")?
        .ok_or_else(|| KmsError::InvalidRequest("RNGRetrieve: missing DataLength".into()))?;
    f.finish()?;
    if !(1..=MAX_RANDOM).contains(&length) {
        return Err(KmsError::InvalidRequest(format!(
            "RNGRetrieve: DataLength must be 1 to {MAX_RANDOM}"
        )));
    }
    let data = crate::crypto::random(usize::try_from(length).unwrap_or(0))?;
    Ok(Done::new(
        structure("RNGRetrieveResponse", vec![bytes("Data", &data)]),
        "",
    ))
}

pub fn seed(node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "RNGSeed")?;
    f.bytes("Data")?
        .ok_or_else(|| KmsError::InvalidRequest("RNGSeed: missing Data".into()))?;
    f.finish()?;
    Ok(Done::new(
        structure("RNGSeedResponse", vec![int("AmountOfSeedData", 0)]),
        "",
    ))
}
