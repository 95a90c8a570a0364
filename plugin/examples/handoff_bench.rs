//! Handoff benchmark: 50 handoffs between two players on loopback with a local file.
//!
//! ```text
//! cargo run --release -p gst-plugin-continuity --example handoff_bench   # or: make bench
//! ```
//!
//! Two playbins with the `continuity` element (a "phone" and a "TV") play the same local Ogg
//! file through the embedded broker; a controller asks them to hand the session back and
//! forth, and the table gives latency (request to target playing) and position error (the
//! target's first frame against the source's position at that instant) as the targets
//! report them.

use std::time::Duration;

use continuity::engine::EngineConfig;
use continuity::model::{Device, DeviceClass};
use continuity::net::broker::EmbeddedBroker;
use continuity::node::{Node, NodeConfig, handoff_result};
use gst::prelude::*;

const HANDOFFS: usize = 50;

fn player(uri: &str, broker: &str, name: &str, dir: &std::path::Path) -> gst::Element {
    let filter = gst::ElementFactory::make("continuity")
        .property("broker", broker)
        .property("account", "bench")
        .property("device-name", name)
        .property("config-dir", dir.join(name).to_str().unwrap())
        .property_from_str("resume", "off")
        .build()
        .unwrap();
    let sink = |sync| {
        gst::ElementFactory::make("fakesink")
            .property("sync", sync)
            .build()
            .unwrap()
    };
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", uri)
        .property("video-filter", &filter)
        .property("video-sink", sink(true))
        .property("audio-sink", sink(true))
        .build()
        .unwrap();
    // What `continuity play` does with an incoming handoff of media it does not have.
    let bus = playbin.bus().unwrap();
    let weak = playbin.downgrade();
    std::thread::spawn(move || {
        for msg in bus.iter_timed(gst::ClockTime::NONE) {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            if let gst::MessageView::Element(e) = msg.view()
                && let Some(s) = e.structure()
                && s.name() == "continuity-handoff-incoming"
                && !s.get::<bool>("loaded").unwrap_or(false)
            {
                let _ = pipeline.set_state(gst::State::Ready);
                pipeline.set_property("uri", s.get::<String>("uri").unwrap());
                let _ = pipeline.set_state(gst::State::Paused);
            }
        }
    });
    playbin
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    gst::init().unwrap();
    gstcontinuity::plugin_register_static().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.ogg");
    let make = gst::parse::launch(&format!(
        "videotestsrc num-buffers=2250 ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! timeoverlay ! theoraenc ! oggmux name=mux ! filesink location={} \
         audiotestsrc num-buffers=3876 ! audio/x-raw,rate=44100,channels=1 ! vorbisenc ! mux.",
        clip.display()
    ))
    .unwrap();
    make.set_state(gst::State::Playing).unwrap();
    make.bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos]);
    make.set_state(gst::State::Null).unwrap();
    let uri = format!("file://{}", clip.display());

    // Phone, TV and the controller that commands the handoffs: paired before any starts.
    let mut accounts = Vec::new();
    for name in ["Phone", "TV", "Controller"] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("device-id"), format!("{}\n", name.to_lowercase())).unwrap();
        accounts.push(d);
    }
    let named: Vec<(&std::path::Path, &str)> = accounts
        .iter()
        .map(|d| (d.as_path(), d.file_name().unwrap().to_str().unwrap()))
        .collect();
    let controller = continuity::security::pair::pair_dirs("bench", &named)
        .unwrap()
        .swap_remove(2);
    let phone = player(&uri, &broker.url(), "Phone", dir.path());
    let tv = player(&uri, &broker.url(), "TV", dir.path());
    phone.set_state(gst::State::Playing).unwrap();
    tv.set_state(gst::State::Paused).unwrap();
    let _ = phone.state(gst::ClockTime::from_seconds(10));
    let _ = tv.state(gst::ClockTime::from_seconds(10));

    let results = rt.block_on(async {
        let mut cfg = EngineConfig::new(
            "bench",
            Device {
                id: "controller".into(),
                name: "controller".into(),
                class: DeviceClass::Other,
            },
        );
        cfg.announce = false;
        let (node, mut events) = Node::start(NodeConfig {
            engine: cfg,
            broker: Some(broker.url().parse().unwrap()),
            store_dir: None,
            link: None,
            account: Some(controller),
        })
        .unwrap();
        node.synced(Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut results = Vec::new();
        for i in 0..HANDOFFS {
            let (source, target) = if i % 2 == 0 {
                ("phone", "tv")
            } else {
                ("tv", "phone")
            };
            let id = node.request_handoff(target, source);
            let r = handoff_result(&mut events, &id, Duration::from_secs(10)).await;
            match r {
                Some(r) if r.failure.is_none() => results.push(r),
                Some(r) => eprintln!("handoff {i} failed: {:?}", r.failure),
                None => eprintln!("handoff {i}: no answer"),
            }
            // Let the new side play a little before the next move.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        node.shutdown(Duration::from_millis(500)).await;
        results
    });
    phone.set_state(gst::State::Null).unwrap();
    tv.set_state(gst::State::Null).unwrap();

    let mut latency: Vec<f64> = results
        .iter()
        .filter_map(|r| r.latency_ns)
        .map(|n| n as f64 / 1e6)
        .collect();
    let mut error: Vec<f64> = results
        .iter()
        .filter_map(|r| r.position_error_ns)
        .map(|n| (n as f64 / 1e6).abs())
        .collect();
    latency.sort_by(|a, b| a.partial_cmp(b).unwrap());
    error.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if latency.is_empty() || error.is_empty() {
        eprintln!("no successful handoff to measure");
        std::process::exit(1);
    }
    println!(
        "handoff benchmark: {} of {HANDOFFS} handoffs succeeded, two players on loopback, \
         local Ogg file\n",
        results.len()
    );
    println!("{:<22} {:>8} {:>8} {:>8}   target", "", "p50", "p95", "max");
    let row = |name: &str, v: &[f64], target: &str, ok: bool| {
        println!(
            "{:<22} {:>6.1}ms {:>6.1}ms {:>6.1}ms   {target} {}",
            name,
            percentile(v, 0.5),
            percentile(v, 0.95),
            v[v.len() - 1],
            if ok { "met" } else { "NOT MET" }
        );
    };
    row(
        "latency",
        &latency,
        "p50 <= 100 ms, p95 <= 200 ms",
        percentile(&latency, 0.5) <= 100.0 && percentile(&latency, 0.95) <= 200.0,
    );
    row(
        "position error (abs)",
        &error,
        "p50 <= 10 ms, p95 <= 40 ms",
        percentile(&error, 0.5) <= 10.0 && percentile(&error, 0.95) <= 40.0,
    );
}
