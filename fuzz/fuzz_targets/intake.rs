//! The receive pipeline, sealed and plain: whatever arrives on a topic a device listens on is
//! taken in or refused with a reason, and what it is taken in as goes into the engine. Nothing
//! panics, whatever the bytes.
#![no_main]

use continuity::engine::{Engine, EngineConfig, Observation};
use continuity::intake::{Inbound, Intake};
use continuity::model::{Device, DeviceClass};
use continuity_fuzz::{ACCOUNT, paired, split, topics};

const NOW: u64 = 1_800_000_000_000_000_000;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = paired();
    let topics = topics(p);
    let Some((topic, payload)) = split(&topics, data) else {
        return;
    };
    let mut engine = Engine::new(EngineConfig::new(
        ACCOUNT,
        Device {
            id: p.tv.device.clone(),
            name: "TV".into(),
            class: DeviceClass::Tv,
        },
    ));
    for keys in [Some(p.tv.clone()), None] {
        let mut inbound = Inbound::new(ACCOUNT, &p.tv.device, keys);
        for intake in inbound.take(topic, payload, NOW) {
            if let Intake::Message(msg) = intake {
                engine.handle(NOW, Observation::Incoming(*msg));
            }
        }
        let _ = inbound.tick(NOW + 2_000_000_000);
    }
});
