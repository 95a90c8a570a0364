//! Benchmarks for the element, side by side in one run (machines are noisy: ratios, medians).
//!
//! ```text
//! cargo run --release -p gst-plugin-continuity --example bench      # or: make bench
//! cargo run --release -p gst-plugin-continuity --example bench -- resume traffic
//! ```
//!
//! The groups are `overhead`, `instructions`, `traffic`, `resume` and `commands`; none named
//! runs all.
//!
//! 1. Per-buffer overhead: `fakesrc num-buffers=2000000 ! X ! fakesink` for X = identity and
//!    X = continuity, alternating, median of 5; also with timestamped buffers, which take the
//!    element's position path.
//! 2. Traffic: bytes published in an hour of steady playback (a simulated hour of the engine
//!    with a fake clock, fed what the element feeds it), beside a reporter that sends the same
//!    state every 10 s.
//! 3. Resume cost: time from PLAYING to the first rendered frame with `resume=auto` and a
//!    retained resume point on the broker, against `resume=off`, median of 5.
//! 4. Commands: how soon `continuity sessions --json` and `devices --json` answer with 20
//!    sealed devices playing (the release binary), best of 5: they answer once the broker's
//!    echo of their sync is back, not after a fixed wait; `sessions` again once a stranger
//!    retained junk under 10,000 made-up device ids (none of it reaches a device: it
//!    subscribes to the ids its roster names); and how soon a command given a broker that
//!    refuses connections says so.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use continuity::engine::{Action, Engine, EngineConfig, Observation};
use continuity::model::{Device, DeviceClass, Media, PlayState, SECOND_NS, Track};
use continuity::net::broker::EmbeddedBroker;
use continuity::node::{Node, NodeConfig};
use continuity::wire::{self, Topic};
use gst::prelude::*;

const ROUNDS: usize = 5;
/// Wall-clock times on a shared 2-core machine swing by ±10 %: more rounds for the
/// per-buffer comparison, whose target is 5 %.
const OVERHEAD_ROUNDS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn run_to_eos(desc: &str) -> Duration {
    let p = gst::parse::launch(desc).expect(desc);
    let bus = p.bus().unwrap();
    let start = Instant::now();
    p.set_state(gst::State::Playing).unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(300),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("finishes");
    let took = start.elapsed();
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    p.set_state(gst::State::Null).unwrap();
    took
}

struct Row {
    name: String,
    measured: String,
    target: String,
    ok: bool,
}

fn overhead(broker: &str, config: &str, src: &str, label: &str) -> Row {
    let continuity = format!("continuity broker={broker} config-dir={config} resume=off");
    let mut ident = Vec::new();
    let mut cont = Vec::new();
    // One warm-up run each, then alternate which goes first (ABBA), so that neither gains
    // from caches or clock ramp-up.
    run_to_eos(&format!("{src} ! identity ! fakesink"));
    run_to_eos(&format!("{src} ! {continuity} ! fakesink"));
    for round in 0..OVERHEAD_ROUNDS {
        let i = || run_to_eos(&format!("{src} ! identity ! fakesink")).as_secs_f64();
        let c = || run_to_eos(&format!("{src} ! {continuity} ! fakesink")).as_secs_f64();
        if round % 2 == 0 {
            ident.push(i());
            cont.push(c());
        } else {
            cont.push(c());
            ident.push(i());
        }
    }
    let (i, c) = (median(ident), median(cont));
    let pct = (c / i - 1.0) * 100.0;
    Row {
        name: format!("per-buffer overhead, {label}"),
        measured: format!("identity {i:.3} s, continuity {c:.3} s: {pct:+.1} %"),
        target: "<= +5 %".into(),
        ok: pct <= 5.0,
    }
}

/// Instructions per buffer, counted by callgrind (repeatable whatever the machine's load):
/// only what runs inside `gst_pad_push`, that is the buffer's way downstream from the
/// source, so start-up and the other threads do not count. Needs valgrind and the plugin
/// built as a library (`make bench` does both).
fn instructions_per_buffer(element: &str) -> Option<f64> {
    const N: u32 = 100_000;
    let plugin_dir = std::env::current_exe().ok()?.parent()?.parent()?.to_owned();
    if !plugin_dir.join("libgstcontinuity.so").exists() {
        return None;
    }
    let out_file = tempfile::NamedTempFile::new().ok()?;
    let out = std::process::Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=gst_pad_push",
        ])
        .arg(format!(
            "--callgrind-out-file={}",
            out_file.path().display()
        ))
        .args([
            "gst-launch-1.0",
            "-q",
            "fakesrc",
            &format!("num-buffers={N}"),
            "!",
        ])
        .args(element.split_whitespace())
        .args(["!", "fakesink"])
        .env("GST_PLUGIN_PATH", &plugin_dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Collected :"))?;
    let total: f64 = line.rsplit(' ').next()?.trim().parse().ok()?;
    Some(total / f64::from(N))
}

fn instructions(broker: &str, config: &str) -> Option<Row> {
    let i = instructions_per_buffer("identity")?;
    let c = instructions_per_buffer(&format!(
        "continuity broker={broker} config-dir={config} resume=off"
    ))?;
    let pct = (c / i - 1.0) * 100.0;
    Some(Row {
        name: "per-buffer cost, instructions (callgrind)".into(),
        measured: format!("identity {i:.0}, continuity {c:.0} a buffer: {pct:+.1} %"),
        target: "<= +5 %".into(),
        ok: pct <= 5.0,
    })
}

fn film() -> Media {
    Media {
        id: "file:big-buck-bunny-1080p.ogg".into(),
        uri: Some("file:///home/me/Videos/big-buck-bunny-1080p.ogg".into()),
        title: Some("Big Buck Bunny".into()),
        artist: Some("Blender Foundation".into()),
        duration_ns: Some(2 * 3600 * SECOND_NS),
        audio_tracks: vec![Track {
            language: Some("en".into()),
            codec: Some("Vorbis".into()),
        }],
        ..Default::default()
    }
}

/// Bytes on the wire (topic and payload) for what the engine publishes: as plain JSON, and
/// sealed and signed as the element sends by default.
fn published_bytes(
    actions: &[Action],
    guard: &mut continuity::security::seal::Guard,
    now: u64,
) -> (usize, usize) {
    actions
        .iter()
        .map(|a| match a {
            Action::Publish { topic, payload, .. } => (
                topic.len() + payload.len(),
                topic.len() + guard.seal(topic, payload, now).len(),
            ),
            _ => (0, 0),
        })
        .fold((0, 0), |(p, s), (a, b)| (p + a, s + b))
}

fn traffic() -> Row {
    let device = Device {
        id: "dev-0123456789ab".into(),
        name: "Living room TV".into(),
        class: DeviceClass::Tv,
    };
    let dir = tempfile::tempdir().unwrap();
    let account =
        continuity::security::account::Account::open(dir.path(), "default", &device.id, "TV")
            .expect("an account");
    let mut guard = account.guard(0);
    let mut e = Engine::new(EngineConfig::new("default", device));
    let t0 = 1_800_000_000 * SECOND_NS;
    e.announce(t0);
    e.handle(t0, Observation::MediaStarted(film()));
    e.handle(
        t0,
        Observation::Playback {
            position_ns: 0,
            state: PlayState::Playing,
            rate: 1.0,
        },
    );
    // One hour: a position sample every second (what the element sends while buffers
    // flow), timer ticks as the runtime would deliver them.
    let (mut plain, mut sealed) = (0, 0);
    for s in 1..=3600u64 {
        let now = t0 + s * SECOND_NS;
        let jitter = (s % 7) * 3_000_000; // a few ms of render jitter
        for actions in [
            e.handle(
                now,
                Observation::Position {
                    position_ns: s * SECOND_NS + jitter,
                },
            ),
            e.handle(now, Observation::Tick),
        ] {
            let (p, x) = published_bytes(&actions, &mut guard, now);
            plain += p;
            sealed += x;
        }
    }
    // The common alternative: the same state sent every 10 s (plain).
    let topic = Topic::session_state("default", "dev-0123456789ab").to_string();
    let mut theirs = 0;
    for s in (10..=3600u64).step_by(10) {
        let state = e.session_state(t0 + s * SECOND_NS);
        theirs += topic.len() + wire::encode(&state).len();
    }
    Row {
        name: "traffic, 1 h of steady playback".into(),
        measured: format!(
            "continuity {:.1} KB/h sealed ({:.1} plain); progress every 10 s {:.1} KB/h ({:.0}x)",
            sealed as f64 / 1024.0,
            plain as f64 / 1024.0,
            theirs as f64 / 1024.0,
            theirs as f64 / sealed.max(1) as f64
        ),
        target: "<= 10 KB/h".into(),
        ok: sealed <= 10 * 1024,
    }
}

fn make_clip(dir: &std::path::Path) -> String {
    let path = dir.join("clip.ogg");
    run_to_eos(&format!(
        "videotestsrc num-buffers=500 ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! timeoverlay ! theoraenc ! oggmux name=mux ! filesink location={} \
         audiotestsrc num-buffers=862 ! audio/x-raw,rate=44100,channels=1 ! vorbisenc ! mux.",
        path.display()
    ));
    format!("file://{}", path.display())
}

/// Time from setting PLAYING to the first frame rendered.
fn first_frame(uri: &str, filter: &str) -> Duration {
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", uri)
        .build()
        .unwrap();
    let vsink = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .property("signal-handoffs", true)
        .build()
        .unwrap();
    let asink = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::sync_channel(1);
    vsink.connect("handoff", false, move |_| {
        let _ = tx.try_send(Instant::now());
        None
    });
    playbin.set_property("video-sink", &vsink);
    playbin.set_property("audio-sink", &asink);
    playbin.set_property("video-filter", gst::parse::launch(filter).unwrap());
    let start = Instant::now();
    playbin.set_state(gst::State::Playing).unwrap();
    let first = rx.recv_timeout(Duration::from_secs(30)).expect("a frame");
    playbin.set_state(gst::State::Null).unwrap();
    first - start
}

fn resume_cost(broker: &EmbeddedBroker, rt: &tokio::runtime::Runtime) -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let uri = make_clip(dir.path());
    // A phone left a resume point at 10 s on the broker; each player below is paired with it.
    let phone_dir = dir.path().join("phone");
    std::fs::create_dir_all(&phone_dir).unwrap();
    std::fs::write(phone_dir.join("device-id"), "phone\n").unwrap();
    let phone_account = continuity::security::pair::pair_dirs("bench", &[(&phone_dir, "Phone")])
        .unwrap()
        .swap_remove(0);
    rt.block_on(async {
        let (phone, _ev) = Node::start(NodeConfig {
            engine: EngineConfig::new(
                "bench",
                Device {
                    id: "phone".into(),
                    name: "Phone".into(),
                    class: DeviceClass::Phone,
                },
            ),
            broker: Some(broker.url().parse().unwrap()),
            store_dir: None,
            link: None,
            account: Some(phone_account),
        })
        .unwrap();
        phone.observe(Observation::MediaStarted(Media {
            id: "file:clip.ogg".into(),
            duration_ns: Some(20 * SECOND_NS),
            ..Default::default()
        }));
        phone.observe(Observation::Stopped {
            position_ns: 10 * SECOND_NS,
        });
        assert!(phone.flush(Duration::from_secs(5)).await);
        phone.shutdown(Duration::from_secs(1)).await;
    });
    let filter = |mode: &str, extra: &str| {
        let cfg = tempfile::tempdir().unwrap().keep();
        continuity::security::pair::pair_dirs("bench", &[(&phone_dir, "Phone"), (&cfg, "Player")])
            .unwrap();
        format!(
            "continuity broker={} account=bench config-dir={} resume={mode} {extra}",
            broker.url(),
            cfg.display()
        )
    };
    let (mut off, mut auto, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        off.push(first_frame(&uri, &filter("off", "")).as_secs_f64() * 1e3);
        auto.push(first_frame(&uri, &filter("auto", "")).as_secs_f64() * 1e3);
        fresh.push(first_frame(&uri, &filter("auto", "media-id=never-seen")).as_secs_f64() * 1e3);
    }
    let (off, auto, fresh) = (median(off), median(auto), median(fresh));
    vec![
        Row {
            name: "resume cost, retained point on the broker".into(),
            measured: format!(
                "first frame: resume=off {off:.1} ms, resume=auto {auto:.1} ms: {:+.1} ms",
                auto - off
            ),
            target: "<= +50 ms".into(),
            ok: auto - off <= 50.0,
        },
        Row {
            name: "resume cost, nothing to resume".into(),
            measured: format!(
                "first frame: resume=off {off:.1} ms, resume=auto {fresh:.1} ms: {:+.1} ms",
                fresh - off
            ),
            target: "<= +50 ms".into(),
            ok: fresh - off <= 50.0,
        },
    ]
}

/// The release `continuity` beside this example (`make bench` builds it).
fn continuity_bin() -> Option<std::path::PathBuf> {
    let bin = std::env::current_exe()
        .ok()?
        .parent()?
        .parent()?
        .join("continuity");
    bin.exists().then_some(bin)
}

/// Group 4: the command line's answers, timed as a person waits for them.
/// On `broker` (`label` names it in the rows): all of it with `all`, else the junk row only.
fn commands(broker: &str, label: &str, all: bool, rt: &tokio::runtime::Runtime) -> Vec<Row> {
    const DEVICES: usize = 20;
    const RUNS: usize = 5;
    let Some(bin) = continuity_bin() else {
        eprintln!(
            "(no release `continuity` binary: command timings skipped; `make bench` builds it)"
        );
        return Vec::new();
    };
    let root = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..DEVICES)
        .map(|i| format!("Device {i:02}"))
        .chain(["Laptop".to_owned()])
        .collect();
    let dirs: Vec<_> = names.iter().map(|n| root.path().join(n)).collect();
    let named: Vec<_> = dirs
        .iter()
        .map(|d| d.as_path())
        .zip(names.iter().map(String::as_str))
        .collect();
    let mut accounts = continuity::security::pair::pair_dirs("bench", &named).expect("pair");
    accounts.pop();
    let url: continuity::net::link::BrokerUrl = broker.parse().unwrap();
    let _guard = rt.enter();
    let nodes: Vec<Node> = accounts
        .into_iter()
        .enumerate()
        .map(|(i, account)| {
            let mut engine = EngineConfig::new(
                "bench",
                Device {
                    id: account.device.clone(),
                    name: names[i].clone(),
                    class: DeviceClass::Tv,
                },
            );
            engine.heartbeat_ns = 3600 * SECOND_NS;
            let (node, _events) = Node::start(NodeConfig {
                engine,
                broker: Some(url.clone()),
                store_dir: None,
                link: None,
                account: Some(account),
            })
            .expect("node");
            node.observe(Observation::MediaStarted(Media {
                id: format!("file:clip-{i}.ogg"),
                duration_ns: Some(600 * SECOND_NS),
                ..Default::default()
            }));
            node.observe(Observation::Playback {
                position_ns: 30 * SECOND_NS,
                state: PlayState::Playing,
                rate: 1.0,
            });
            node
        })
        .collect();
    for node in &nodes {
        rt.block_on(node.flush(Duration::from_secs(10)));
    }
    let time = |args: &[&str]| {
        let start = Instant::now();
        let out = std::process::Command::new(&bin)
            .args(args)
            .output()
            .expect("run continuity");
        (start.elapsed(), out)
    };
    let laptop = dirs[DEVICES].display().to_string();
    // `command --json` RUNS times: the best and median times, and how many it listed.
    let listing = |command: &str| {
        let mut times = Vec::new();
        let mut listed = 0;
        for _ in 0..RUNS {
            let (took, out) = time(&[
                "--broker",
                broker,
                "--account",
                "bench",
                "--config-dir",
                &laptop,
                command,
                "--json",
            ]);
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            listed = doc[command].as_array().map_or(0, |a| a.len());
            times.push(took);
        }
        let best = times.iter().min().copied().unwrap_or_default();
        let measured = format!(
            "best of {RUNS} {:.0} ms, median {:.0} ms ({listed} listed)",
            best.as_secs_f64() * 1e3,
            median(times.iter().map(|t| t.as_secs_f64() * 1e3).collect())
        );
        (best, measured, listed)
    };
    let mut rows = Vec::new();
    for command in ["sessions", "devices"].into_iter().filter(|_| all) {
        let (best, measured, listed) = listing(command);
        rows.push(Row {
            name: format!("`{command} --json`, {DEVICES} devices playing"),
            measured,
            target: "<= 300 ms".into(),
            ok: best <= Duration::from_millis(300) && listed >= DEVICES,
        });
    }
    // A stranger on the broker retains junk under 10,000 made-up device ids.
    const JUNK: usize = 10_000;
    let taken = rt.block_on(async {
        use continuity::net::link::{Link, LinkConfig, client_id};
        let cfg = LinkConfig::new(url.clone(), client_id("stranger"));
        let (link, _events) = Link::connect(cfg, Duration::from_secs(5))
            .await
            .expect("the stranger connects");
        for i in 0..JUNK {
            let topic = Topic::session_state("bench", &format!("g{i:05}")).to_string();
            link.publish(&topic, b"{junk".to_vec(), true, true);
        }
        let taken = link.flush(Duration::from_secs(120)).await;
        link.shutdown(Duration::from_secs(1)).await;
        taken
    });
    let (best, measured, listed) = listing("sessions");
    rows.push(Row {
        name: format!("`sessions --json`, {DEVICES} devices, junk under {JUNK} other ids, {label}"),
        measured,
        target: "<= 100 ms".into(),
        ok: taken && best <= Duration::from_millis(100) && listed == DEVICES,
    });
    if all {
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (took, out) = time(&[
            "--broker",
            &format!("mqtt://127.0.0.1:{refused}"),
            "sessions",
        ]);
        rows.push(Row {
            name: "a broker that refuses: the error".into(),
            measured: format!(
                "exit {:?} in {:.0} ms",
                out.status.code(),
                took.as_secs_f64() * 1e3
            ),
            target: "<= 5 s".into(),
            ok: out.status.code() == Some(2) && took <= Duration::from_secs(5),
        });
    }
    for node in nodes {
        rt.block_on(node.shutdown(Duration::from_secs(1)));
    }
    rows
}

/// A mosquitto on a free loopback port, set up as docs/mosquitto.conf says for latency
/// (`set_tcp_nodelay`), killed on drop; `None` when it is not installed.
fn mosquitto(dir: &std::path::Path) -> Option<(KillOnDrop, String)> {
    let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = dir.join("bench-mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"),
    )
    .ok()?;
    let child = std::process::Command::new(exe)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let process = KillOnDrop(child);
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some((process, format!("mqtt://127.0.0.1:{port}")))
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    gst::init().unwrap();
    gstcontinuity::plugin_register_static().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).expect("broker");
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path().display().to_string();
    println!(
        "continuity benchmarks (medians of {OVERHEAD_ROUNDS} rounds for the overhead, {} for \
         resume; {} cores)\n",
        ROUNDS,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // `bench resume traffic` runs only those groups; no argument runs them all.
    let only: Vec<String> = std::env::args().skip(1).collect();
    let run = |group: &str| only.is_empty() || only.iter().any(|g| g == group);
    let mut rows = Vec::new();
    if run("overhead") {
        rows.push(overhead(
            &broker.url(),
            &cfg,
            "fakesrc num-buffers=2000000",
            "2,000,000 empty buffers",
        ));
        rows.push(overhead(
            &broker.url(),
            &cfg,
            "fakesrc num-buffers=2000000 format=time datarate=4000 sizetype=fixed sizemax=4",
            "2,000,000 timestamped buffers",
        ));
    }
    if run("instructions") {
        match instructions(&broker.url(), &cfg) {
            Some(row) => rows.push(row),
            None => eprintln!(
                "(no valgrind or no release libgstcontinuity.so: instruction counts skipped)"
            ),
        }
    }
    if run("traffic") {
        rows.push(traffic());
    }
    if run("resume") {
        rows.extend(resume_cost(&broker, &rt));
    }
    if run("commands") {
        rows.extend(commands(&broker.url(), "embedded", true, &rt));
        // The same junk on mosquitto, which finds a subscription's retained messages in a
        // tree where the embedded broker reads them all for each filter.
        match mosquitto(config.path()) {
            Some((_process, url)) => rows.extend(commands(&url, "mosquitto", false, &rt)),
            None => eprintln!("(no mosquitto: its row skipped; `make bench` installs it)"),
        }
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(10);
    let m = rows.iter().map(|r| r.measured.len()).max().unwrap_or(10);
    println!(
        "{:<w$}  {:<m$}  {:<10}  result",
        "benchmark", "measured", "target"
    );
    for r in &rows {
        println!(
            "{:<w$}  {:<m$}  {:<10}  {}",
            r.name,
            r.measured,
            r.target,
            if r.ok { "met" } else { "NOT MET" }
        );
    }
}
