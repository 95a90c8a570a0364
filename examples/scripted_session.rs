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
    node.observe(Observation::Playback {
        position_ns: 60 * SECOND_NS,
        state: PlayState::Playing,
        rate: 1.0,
    });
    say("plays 'Big Buck Bunny' from 1:00");
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.observe(Observation::Playback {
        position_ns: 120 * SECOND_NS,
        state: PlayState::Playing,
        rate: 1.0,
    });
    say("seeks to 2:00");
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.observe(Observation::Playback {
        position_ns: 122 * SECOND_NS,
        state: PlayState::Paused,
        rate: 1.0,
    });
    node.flush(Duration::from_secs(2)).await;
    say("pauses at 2:02");
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.shutdown(Duration::from_secs(1)).await;
    say("says goodbye (offline)");
}
