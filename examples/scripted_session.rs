//! A scripted "phone" that plays a film through the library: the same calls the element
//! makes, driven by a script instead of a pipeline. Used by `make demo`.
//!
//! ```text
//! cargo run --example scripted_session -- mqtt://127.0.0.1:1883 [account]
//! ```

use std::time::{Duration, Instant};

use continuity::engine::{EngineConfig, Observation};
use continuity::model::{Device, DeviceClass, Media, PlayState, SECOND_NS, Track};
use continuity::node::{Node, NodeConfig, NodeEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let broker = args
        .next()
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
    let account = args.next().unwrap_or_else(|| "default".into());
    let broker = match broker.parse() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let device = Device {
        id: "demo-phone".into(),
        name: "Demo phone".into(),
        class: DeviceClass::Phone,
    };
    let (node, mut events) = Node::start(NodeConfig {
        engine: EngineConfig::new(&account, device),
        broker: Some(broker),
        store_dir: None,
        link: None,
        account: None,
    })
    .expect("node starts");
    let start = Instant::now();
    let say = |what: &str| println!("  [phone {:>5.1} s] {what}", start.elapsed().as_secs_f32());

    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(NodeEvent::Connected)) => say("connected to the broker"),
        other => {
            eprintln!("error: the phone could not connect: {other:?}");
            std::process::exit(2);
        }
    }
    node.observe(Observation::MediaStarted(Media {
        id: "file:big-buck-bunny.ogg".into(),
        uri: Some("file:///media/films/big-buck-bunny.ogg".into()),
        title: Some("Big Buck Bunny".into()),
        artist: Some("Blender Foundation".into()),
        duration_ns: Some(596 * SECOND_NS),
        audio_tracks: vec![Track {
            language: Some("en".into()),
            codec: Some("Vorbis".into()),
        }],
        ..Default::default()
    }));
    // What the player does, a step at a time: where it is, what it does, what it says.
    let steps = [
        (
            60,
            PlayState::Playing,
            "plays 'Big Buck Bunny' from 1:00",
            3,
        ),
        (120, PlayState::Playing, "seeks to 2:00", 2),
        (122, PlayState::Paused, "", 0),
    ];
    for (position_s, state, what, then_wait_s) in steps {
        node.observe(Observation::Playback {
            position_ns: position_s * SECOND_NS,
            state,
            rate: 1.0,
        });
        if !what.is_empty() {
            say(what);
        }
        tokio::time::sleep(Duration::from_secs(then_wait_s)).await;
    }
    node.flush(Duration::from_secs(2)).await;
    say("pauses at 2:02");
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.shutdown(Duration::from_secs(1)).await;
    say("says goodbye (offline)");
}
