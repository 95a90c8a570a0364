//! The wire decoder on every kind of topic: a payload decodes to a checked message or to an
//! error that names the field, and what decodes encodes and decodes to the same.
#![no_main]

use continuity_fuzz::{paired, split, topics};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let topics = topics(paired());
    let Some((topic, payload)) = split(&topics, data) else {
        return;
    };
    let _ = continuity::wire::decode(topic, payload);
    let _ = continuity::wire::Topic::parse(&String::from_utf8_lossy(payload));
});
