//! kms-core's TTLV JSON decoder on arbitrary bytes: never panics, never exceeds the node and
//! depth bounds it promises, and whatever it accepts re-encodes to JSON that parses to the same
//! tree.
#![no_main]

use kms_core::kmip::ttlv::Ttlv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = Ttlv::parse(data) {
        let again = Ttlv::parse(&node.to_vec()).expect("what the codec emits, it parses");
        assert_eq!(node, again, "a round trip changed the tree");
    }
});
