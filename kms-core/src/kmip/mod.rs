//! KMIP 2.1 in JSON TTLV: the generic node codec ([`ttlv`]).

pub mod ttlv;
