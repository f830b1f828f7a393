//! DiscoverVersions: the protocol versions this server speaks — KMIP 2.1 only (in JSON TTLV),
//! or none when the client lists versions and 2.1 is not among them.

use crate::error::KmsError;
use crate::kmip::build::{int, structure};
use crate::kmip::fields::Fields;
use crate::kmip::kms::Done;
use crate::kmip::ttlv::Ttlv;

/// The one version served.
pub const VERSION: (i32, i32) = (2, 1);

pub fn version_node() -> Ttlv {
    structure(
        "ProtocolVersion",
        vec![
            int("ProtocolVersionMajor", VERSION.0),
            int("ProtocolVersionMinor", VERSION.1),
        ],
    )
}

pub fn run(node: &Ttlv) -> Result<Done, KmsError> {
    let mut f = Fields::of(node, "DiscoverVersions")?;
    let mut offered = Vec::new();
    for version in f.all("ProtocolVersion") {
        let mut v = Fields::of(version, "DiscoverVersions.ProtocolVersion")?;
        offered.push((
            v.int("ProtocolVersionMajor")?.unwrap_or_default(),
            v.int("ProtocolVersionMinor")?.unwrap_or_default(),
        ));
        v.finish()?;
    }
    f.finish()?;
    let answer = if offered.is_empty() || offered.contains(&VERSION) {
        vec![version_node()]
    } else {
        Vec::new()
    };
    Ok(Done::new(structure("DiscoverVersionsResponse", answer), ""))
}
