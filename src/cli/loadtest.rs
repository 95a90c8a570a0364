//! `continuity loadtest`: many simulated devices on one broker. Each is a real device of the
//! library (engine, link, sealed and signed messages, its account's roster) over its own MQTT
//! connection, with a simulated player that answers loads, prerolls and switch instants as a
//! real one does. The model:
//!
//! - the devices come online at `--connect-rate`, paired per account beforehand (a key dir
//!   each, as players have);
//! - in each account one device plays (a two-hour film), the others idle;
//! - the playing device pauses, resumes or seeks about every ten minutes (a new anchor);
//! - handoffs to another device of the account at `--handoffs-per-hour` per device, a
//!   Poisson process;
//! - the engine's own heartbeats and resume-point refreshes;
//! - halfway, `--burst` of the devices drop off without a goodbye and reconnect at once.
//!
//! A probe follows a sample of accounts, opens what they publish with their keys and times
//! it from the stamp inside to its arrival (one clock: loopback only), and reads mosquitto's
//! `$SYS` counters. Everything is bounded: the device count, the run's length, every wait.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use continuity::engine::{EngineConfig, Notice, Observation, PlayerAction};
use continuity::hlc::now_unix_ns;
use continuity::model::{Device, DeviceClass, Media, PlayState, SECOND_NS};
use continuity::net::link::{BrokerUrl, Link, LinkConfig, LinkEvent, client_id};
use continuity::node::{Node, NodeConfig, NodeEvent, SyncState};
use continuity::security::account::Account;
use continuity::security::seal::Opener;
use continuity::wire::Body;
use serde::Serialize;
use tokio::sync::mpsc;

use super::Failure;

/// What `continuity loadtest` is asked.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Accounts (households).
    #[arg(long, default_value_t = 25)]
    pub accounts: usize,
    /// Devices in each account.
    #[arg(long, default_value_t = 4)]
    pub devices: usize,
    /// How long the devices run once all are online, in seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Handoffs per device per hour.
    #[arg(long, default_value_t = 1.0)]
    pub handoffs_per_hour: f64,
    /// The share of the devices that drop off and reconnect at once, halfway through (as
    /// after a broker restart); 0 for none.
    #[arg(long, default_value_t = 0.2)]
    pub burst: f64,
    /// New connections per second while the devices come online.
    #[arg(long, default_value_t = 1000)]
    pub connect_rate: u32,
    /// Accounts the probe follows (their messages are timed and counted).
    #[arg(long, default_value_t = 50)]
    pub sample: usize,
    /// The broker's process id, for its CPU time and memory (found by its port when it
    /// listens on this machine).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Seconds between the films starting and the steady span; by default until the
    /// players' first heartbeat has put their resume points on the broker (33 s).
    #[arg(long)]
    pub settle: Option<u64>,
    /// One JSON document on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Upper bounds, so that a typing error cannot start a million connections.
const MAX_DEVICES: usize = 50_000;
const MAX_DURATION_S: u64 = 3_600;
/// The longest a device may take to connect and get the retained state.
const CONNECT_WAIT: Duration = Duration::from_secs(30);
/// Each account's playing device pauses, resumes or seeks about this often, in seconds.
const DISCONTINUITY_S: f64 = 600.0;
/// A handoff is over within this (its timeout and the answer).
const HANDOFF_SPAN: Duration = Duration::from_secs(6);
/// Simulated players answer a load after this long.
const PREROLL: Duration = Duration::from_millis(20);

/// Percentiles of a sample, in milliseconds.
#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn spread(mut ns: Vec<u64>) -> Spread {
    if ns.is_empty() {
        return Spread::default();
    }
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q).round() as usize] as f64 / 1e6;
    Spread {
        count: ns.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: *ns.last().unwrap() as f64 / 1e6,
    }
}

/// PUBLISH packets and bytes through the broker over the steady span, from its `$SYS`
/// counters (mosquitto; `None` from a broker without them).
#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct Traffic {
    pub messages_in_per_s: Option<f64>,
    pub messages_out_per_s: Option<f64>,
    pub bytes_in_per_s: Option<f64>,
    pub bytes_out_per_s: Option<f64>,
}

/// The broker's process, when it runs here.
#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct BrokerUse {
    pub pid: Option<u32>,
    /// CPU time over the steady span, in cores (1.0: one core busy).
    pub cpu_cores: Option<f64>,
    pub rss_mib: Option<f64>,
}

/// A reconnect burst.
#[derive(Debug, Default, Serialize, Clone)]
pub struct Burst {
    pub devices: usize,
    /// From the drop until every one of them is back and has the retained state.
    pub converged_s: Option<f64>,
    pub reconnect: Spread,
    /// Publish to delivery of the sampled messages while the burst lasts (a copy published
    /// again keeps its stamp: only the first delivery of each stamp is timed).
    pub delivery: Spread,
    /// Messages published in the sampled accounts for the burst, per reconnecting device
    /// there: flat in the account size when joining costs O(D).
    pub messages_per_device: Option<f64>,
    /// The same by what they are (see [`kind`]).
    pub messages_per_device_by_kind: BTreeMap<String, f64>,
    #[serde(skip)]
    messages: u64,
    #[serde(skip)]
    by_kind: BTreeMap<String, u64>,
    #[serde(skip)]
    span_s: f64,
}

/// What a run measured.
#[derive(Debug, Default, Serialize, Clone)]
pub struct Report {
    pub v: u32,
    pub broker: String,
    pub accounts: usize,
    pub devices_per_account: usize,
    pub devices: usize,
    pub sealed: bool,
    pub duration_s: f64,
    pub connect: Spread,
    /// Publish to delivery, from the stamp inside each sampled message to its arrival, over
    /// the steady span (the burst's are in [`Burst::delivery`]).
    pub delivery: Spread,
    pub traffic: Traffic,
    pub broker_use: BrokerUse,
    pub handoffs: usize,
    pub handoffs_ok: usize,
    pub handoff_latency: Spread,
    /// Messages published in the sampled accounts, per device and hour, the burst left out
    /// (each is delivered to every other device of the account too).
    pub messages_per_device_hour: Option<f64>,
    pub bytes_per_device_hour: Option<f64>,
    /// The messages per device and hour by what they are (see [`kind`]).
    pub messages_per_device_hour_by_kind: BTreeMap<String, f64>,
    pub burst: Option<Burst>,
    pub errors: BTreeMap<String, usize>,
}

/// Counters the devices and the probe share.
#[derive(Default)]
struct Shared {
    delivery_ns: Mutex<Vec<u64>>,
    handoff_ns: Mutex<Vec<u64>>,
    handoffs: AtomicU64,
    handoffs_ok: AtomicU64,
    sampled_messages: AtomicU64,
    sampled_bytes: AtomicU64,
    /// The sampled messages by [`kind`].
    sampled_by_kind: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, usize>>,
    sys: Mutex<BTreeMap<String, f64>>,
}

impl Shared {
    fn error(&self, what: impl Into<String>) {
        *self.errors.lock().unwrap().entry(what.into()).or_insert(0) += 1;
    }

    fn by_kind(&self) -> BTreeMap<String, u64> {
        self.sampled_by_kind.lock().unwrap().clone()
    }
}

/// What a message of an account is, for the breakdown of the traffic: its topic's kind, and
/// for a command what it asks (`command: clock probe`).
fn kind(topic: &str, body: Option<&Body>) -> String {
    let parts: Vec<&str> = topic.split('/').skip(3).collect();
    match (parts.as_slice(), body) {
        (["devices", _, "inbox"], Some(Body::Command(c))) => {
            let name = format!("{:?}", c.body);
            let name = name.split([' ', '(', '{']).next().unwrap_or_default();
            format!("command: {}", words(name))
        }
        (["devices", _, "inbox"], _) => "command".into(),
        (["devices", _, last], _) => (*last).into(),
        (["sessions", ..], _) => "session".into(),
        (["media", ..], _) => "resume point".into(),
        (["events"], _) => "event".into(),
        ([first, ..], _) => (*first).into(),
        ([], _) => "other".into(),
    }
}

/// `ClockProbe` → `clock probe`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// `after - before`, by kind.
fn kind_diff(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, n)| {
            (
                k.clone(),
                n.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Bounded: at most this many delivery samples are kept (the rest are counted).
const MAX_SAMPLES: usize = 2_000_000;

/// One simulated device: its identity, its keys, its node while it is online.
struct Sim {
    account: String,
    id: String,
    class: DeviceClass,
    keys: Option<Account>,
    node: Option<Arc<Node>>,
}

/// The film every account plays (one media per account, as a household watches one film).
fn film(account: &str) -> Media {
    Media {
        id: format!("file:{account}-film.webm"),
        uri: Some(format!("file:///media/{account}-film.webm")),
        title: Some(format!("Film of {account}")),
        duration_ns: Some(7_200 * SECOND_NS),
        ..Default::default()
    }
}

const CLASSES: [DeviceClass; 4] = [
    DeviceClass::Phone,
    DeviceClass::Tv,
    DeviceClass::Tablet,
    DeviceClass::Speaker,
];

/// The process listening on TCP `port` here (from /proc), for its CPU time and memory.
fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// CPU seconds (user and system) and resident memory (MiB) of `pid`.
fn process_use(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((cpu, rss_kib / 1024.0))
}

/// The time a message says it was sent at: the stamp of a state, a command's or an event's
/// send time.
fn sent_at(body: &Body) -> Option<u64> {
    match body {
        Body::Command(c) => Some(c.sent_unix_ns),
        Body::Event(e) => Some(e.at_unix_ns),
        b => b.stamp().map(|s| s.wall_ns),
    }
}

/// The probe: one connection following the sampled accounts' topics and mosquitto's `$SYS`
/// counters; it opens what arrives with the account's keys and times it.
fn start_probe(
    broker: &BrokerUrl,
    sampled: Vec<(String, Option<Opener>)>,
    shared: Arc<Shared>,
) -> Result<(Link, tokio::task::JoinHandle<()>), String> {
    let mut cfg = LinkConfig::new(broker.clone(), client_id("loadtest-probe"));
    cfg.subscriptions = sampled
        .iter()
        .map(|(a, _)| format!("continuity/v1/{a}/#"))
        .collect();
    let (link, mut events) = Link::spawn(cfg).map_err(|e| format!("the probe: {e}"))?;
    let sys = start_sys(broker, shared.clone())?;
    let mut openers: BTreeMap<String, Option<Opener>> = sampled.into_iter().collect();
    // The newest stamp timed on each topic: a copy published again (after a reconnect, in an
    // answer to an ask, in a repair) keeps its stamp, and its age is not a delivery time.
    let mut timed: HashMap<String, u64> = HashMap::new();
    let task = tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            let LinkEvent::Message {
                topic,
                payload,
                received_unix_ns,
                retained,
            } = ev
            else {
                continue;
            };
            shared.sampled_messages.fetch_add(1, Ordering::Relaxed);
            shared
                .sampled_bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
            if retained || payload.is_empty() {
                *shared
                    .sampled_by_kind
                    .lock()
                    .unwrap()
                    .entry(kind(&topic, None))
                    .or_insert(0) += 1;
                continue;
            }
            let account = topic.split('/').nth(2).unwrap_or_default().to_owned();
            let decoded = match openers.get_mut(&account) {
                Some(Some(opener)) => opener.decode(&topic, &payload).map_err(|e| e.to_string()),
                _ => continuity::wire::decode(&topic, &payload).map_err(|e| e.to_string()),
            };
            *shared
                .sampled_by_kind
                .lock()
                .unwrap()
                .entry(kind(&topic, decoded.as_ref().ok().map(|m| &m.body)))
                .or_insert(0) += 1;
            match decoded {
                Ok(msg) => {
                    // Commands and events are sent once; retained state is timed once.
                    let transient = matches!(msg.body, Body::Command(_) | Body::Event(_));
                    let mut fresh = |at: u64| match timed.get(&topic) {
                        _ if transient => true,
                        Some(&t) if t >= at => false,
                        _ => {
                            timed.insert(topic.clone(), at);
                            true
                        }
                    };
                    if let Some(at) = sent_at(&msg.body).filter(|&at| fresh(at)) {
                        let mut d = shared.delivery_ns.lock().unwrap();
                        if d.len() < MAX_SAMPLES {
                            d.push(received_unix_ns.saturating_sub(at));
                        }
                    }
                }
                // Availability is plain even in a sealed account; anything else the probe
                // cannot open is an error of the run.
                Err(e) if !topic.ends_with("/availability") => shared.error(format!("probe: {e}")),
                Err(_) => {}
            }
        }
    });
    let task = tokio::spawn(async move {
        let _ = tokio::join!(task, sys);
    });
    Ok((link, task))
}

/// The broker's `$SYS` counters (mosquitto's), on a connection of their own: a broker that
/// has none may drop a client that subscribes to them (the embedded broker does), and then
/// this one gives up rather than reconnect in a loop.
fn start_sys(
    broker: &BrokerUrl,
    shared: Arc<Shared>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut cfg = LinkConfig::new(broker.clone(), client_id("loadtest-sys"));
    cfg.subscriptions = vec![
        "$SYS/broker/publish/messages/+".into(),
        "$SYS/broker/bytes/+".into(),
    ];
    let (link, mut events) = Link::spawn(cfg).map_err(|e| format!("the $SYS probe: {e}"))?;
    Ok(tokio::spawn(async move {
        let _link = link;
        let mut heard = false;
        while let Some(ev) = events.recv().await {
            match ev {
                LinkEvent::Message { topic, payload, .. } => {
                    if let Some(name) = topic.strip_prefix("$SYS/broker/")
                        && let Ok(v) = String::from_utf8_lossy(&payload).trim().parse::<f64>()
                    {
                        heard = true;
                        shared.sys.lock().unwrap().insert(name.to_owned(), v);
                    }
                }
                LinkEvent::Down { .. } if !heard => {
                    eprintln!(
                        "loadtest: the broker has no $SYS counters (it dropped their \
                         subscriber): no broker traffic figures"
                    );
                    return;
                }
                _ => {}
            }
        }
    }))
}

/// Keys for every device: one config dir each (as a player has), paired per account.
fn make_keys(dir: &Path, sims: &mut [Sim], per_account: usize) -> Result<(), String> {
    for group in sims.chunks_mut(per_account) {
        let dirs: Vec<std::path::PathBuf> = group.iter().map(|s| dir.join(&s.id)).collect();
        for (d, s) in dirs.iter().zip(group.iter()) {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            std::fs::write(d.join("device-id"), format!("{}\n", s.id))
                .map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let named: Vec<(&Path, &str)> = dirs
            .iter()
            .zip(group.iter())
            .map(|(d, s)| (d.as_path(), s.id.as_str()))
            .collect();
        let accounts = continuity::security::pair::pair_dirs(&group[0].account, &named)
            .map_err(|e| format!("pairing {}: {e}", group[0].account))?;
        for (s, a) in group.iter_mut().zip(accounts) {
            s.keys = Some(a);
        }
    }
    Ok(())
}

/// Where a node's own session is now.
fn position_of(node: &Node) -> u64 {
    node.with_engine(|e| {
        let me = e.config().device.id.clone();
        e.directory()
            .sessions
            .get(&me)
            .and_then(|s| s.position_at(now_unix_ns()))
    })
    .unwrap_or(0)
}

/// A simulated player: answers its node's player actions as a real one would. It holds the
/// node weakly: dropping the device's node ends it.
fn play_along(
    node: std::sync::Weak<Node>,
    mut events: mpsc::Receiver<NodeEvent>,
    shared: Arc<Shared>,
    connected: tokio::sync::oneshot::Sender<()>,
) {
    tokio::spawn(async move {
        let mut connected = Some(connected);
        let mut prerolled = 0u64;
        while let Some(ev) = events.recv().await {
            let Some(node) = node.upgrade() else { return };
            match ev {
                NodeEvent::Connected => {
                    if let Some(tx) = connected.take() {
                        let _ = tx.send(());
                    }
                }
                NodeEvent::Player(action) => match action {
                    PlayerAction::Load { position_ns, .. }
                    | PlayerAction::Preroll { position_ns, .. } => {
                        prerolled = position_ns;
                        let node = node.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(PREROLL).await;
                            node.observe(Observation::Prerolled { position_ns });
                        });
                    }
                    PlayerAction::PlayAt { at_unix_ns } => {
                        let node = node.clone();
                        let position_ns = prerolled;
                        tokio::spawn(async move {
                            let wait = at_unix_ns.saturating_sub(now_unix_ns());
                            tokio::time::sleep(Duration::from_nanos(wait)).await;
                            node.observe(Observation::Started { position_ns });
                        });
                    }
                    PlayerAction::PauseAt { at_unix_ns } => {
                        let node = node.clone();
                        tokio::spawn(async move {
                            let wait = at_unix_ns.saturating_sub(now_unix_ns());
                            tokio::time::sleep(Duration::from_nanos(wait)).await;
                            let position_ns = position_of(&node);
                            node.observe(Observation::Playback {
                                position_ns,
                                state: PlayState::Paused,
                                rate: 1.0,
                            });
                        });
                    }
                    PlayerAction::Play | PlayerAction::Pause | PlayerAction::Seek { .. } => {}
                    PlayerAction::Unload => {}
                },
                // Counted where it was asked for (the requester is the source here).
                NodeEvent::Notice(Notice::HandoffResult(r))
                    if r.source == node.with_engine(|e| e.config().device.id.clone()) =>
                {
                    match (r.failure, r.latency_ns) {
                        (None, Some(l)) => {
                            shared.handoffs_ok.fetch_add(1, Ordering::Relaxed);
                            shared.handoff_ns.lock().unwrap().push(l);
                        }
                        (Some(f), _) => shared.error(format!("handoff failed: {f}")),
                        _ => {}
                    }
                }
                NodeEvent::Rejected { topic, reason, .. } => {
                    let kind = topic.rsplit('/').next().unwrap_or("?").to_owned();
                    shared.error(format!("refused on {kind}: {reason}"));
                }
                _ => {}
            }
        }
    });
}

/// Bring one device online; how long until connected.
async fn connect(
    sim: &mut Sim,
    broker: &BrokerUrl,
    shared: &Arc<Shared>,
) -> Result<Duration, String> {
    let mut engine = EngineConfig::new(
        &sim.account,
        Device {
            id: sim.id.clone(),
            name: sim.id.clone(),
            class: sim.class,
        },
    );
    if let Some(keys) = &sim.keys {
        engine.media_keys = keys.keys().media_keys();
    }
    let started = Instant::now();
    let (node, events) = Node::start(NodeConfig {
        engine,
        broker: Some(broker.clone()),
        store_dir: None,
        link: None,
        account: sim.keys.clone(),
    })
    .map_err(|e| e.to_string())?;
    let node = Arc::new(node);
    let (tx, rx) = tokio::sync::oneshot::channel();
    play_along(Arc::downgrade(&node), events, shared.clone(), tx);
    sim.node = Some(node);
    match tokio::time::timeout(CONNECT_WAIT, rx).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        _ => Err("not connected within 30 s".into()),
    }
}

/// Run the load; the figures.
pub async fn run(args: LoadArgs, broker: BrokerUrl, sealed: bool) -> Result<Report, Failure> {
    let devices = args.accounts * args.devices;
    if devices == 0 || devices > MAX_DEVICES || args.devices < 2 {
        return Err(Failure::new(format!(
            "--accounts × --devices must be 1 to {MAX_DEVICES} devices, at least 2 per account"
        )));
    }
    if args.duration == 0 || args.duration > MAX_DURATION_S {
        return Err(Failure::new(format!("--duration: 1 to {MAX_DURATION_S} s")));
    }
    if args.settle.is_some_and(|s| s > MAX_DURATION_S) {
        return Err(Failure::new(format!("--settle: 0 to {MAX_DURATION_S} s")));
    }
    if !(0.0..=1.0).contains(&args.burst) {
        return Err(Failure::new("--burst: a share from 0 to 1"));
    }
    let limit = super::raise_open_files(devices + 16).map_err(Failure::new)?;
    // Progress on stderr (the figures, or the JSON, go to stdout).
    let progress = |what: &str| eprintln!("loadtest: {what}");
    progress(&format!(
        "{devices} devices in {} accounts ({} each), {} (open files: {limit})",
        args.accounts,
        args.devices,
        if sealed { "sealed" } else { "plain JSON" }
    ));
    let shared = Arc::new(Shared::default());
    let run_id = format!("{:06x}", fastrand::u32(..) & 0xff_ffff);
    let mut sims: Vec<Sim> = (0..devices)
        .map(|i| Sim {
            account: format!("load-{run_id}-{}", i / args.devices),
            id: format!("d{run_id}-{i}"),
            class: CLASSES[(i % args.devices) % CLASSES.len()],
            keys: None,
            node: None,
        })
        .collect();
    let keydir = tempfile::tempdir().map_err(Failure::new)?;
    if sealed {
        let t = Instant::now();
        make_keys(keydir.path(), &mut sims, args.devices).map_err(Failure::new)?;
        progress(&format!(
            "paired every account in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
    }

    // The probe, on the first accounts.
    let sample = args.sample.min(args.accounts);
    let sampled: Vec<(String, Option<Opener>)> = (0..sample)
        .map(|a| {
            let sim = &sims[a * args.devices];
            (sim.account.clone(), sim.keys.as_ref().map(Account::opener))
        })
        .collect();
    let (_probe, probe_task) =
        start_probe(&broker, sampled, shared.clone()).map_err(Failure::new)?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pid = args.broker_pid.or_else(|| listener_pid(broker.port));

    // Online, at the connect rate.
    let t_connect = Instant::now();
    let mut connect_ns = Vec::with_capacity(devices);
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.connect_rate.max(1)));
    let mut pending = tokio::task::JoinSet::new();
    for (i, mut sim) in std::mem::take(&mut sims).into_iter().enumerate() {
        let (broker, shared) = (broker.clone(), shared.clone());
        pending.spawn(async move {
            let r = connect(&mut sim, &broker, &shared).await;
            (i, sim, r)
        });
        tokio::time::sleep(gap).await;
        if i % 1000 == 999 {
            progress(&format!("{} devices connecting", i + 1));
        }
    }
    let mut slots: Vec<Option<Sim>> = (0..devices).map(|_| None).collect();
    while let Some(done) = pending.join_next().await {
        let Ok((i, sim, r)) = done else { continue };
        match r {
            Ok(d) => connect_ns.push(d.as_nanos() as u64),
            Err(e) => shared.error(format!("connect: {e}")),
        }
        slots[i] = Some(sim);
    }
    let mut sims: Vec<Sim> = slots.into_iter().flatten().collect();
    progress(&format!(
        "{} devices online in {:.1} s",
        connect_ns.len(),
        t_connect.elapsed().as_secs_f64()
    ));

    // Every account plays its film on its first device.
    for sim in sims.iter().step_by(args.devices) {
        if let Some(node) = &sim.node {
            node.observe(Observation::MediaStarted(film(&sim.account)));
            node.observe(Observation::Playback {
                position_ns: fastrand::u64(60..3_600) * SECOND_NS,
                state: PlayState::Playing,
                rate: 1.0,
            });
        }
    }
    // What starting to play sets off is over before the steady span, which counts what goes
    // on: the others measure the player's clock (three probes over two seconds), and the
    // player's first heartbeat puts its resume point on the broker (the next one is ten
    // minutes later). In a household films start at random times; here all start at once,
    // and a short span would count that one-off cost as if it came every minute.
    let defaults = EngineConfig::new(
        "settle",
        Device {
            id: "settle".into(),
            name: "settle".into(),
            class: DeviceClass::Tv,
        },
    );
    let settle = args.settle.map_or(
        Duration::from_nanos(defaults.heartbeat_ns) + Duration::from_secs(3),
        Duration::from_secs,
    );
    progress(&format!("settling for {} s", settle.as_secs()));
    tokio::time::sleep(settle).await;

    // The steady span: handoffs at the rate asked for, a pause or a seek now and then, and
    // the burst halfway.
    let before_sys = shared.sys.lock().unwrap().clone();
    let before_use = pid.and_then(process_use);
    let (m0, b0) = (
        shared.sampled_messages.load(Ordering::Relaxed),
        shared.sampled_bytes.load(Ordering::Relaxed),
    );
    let k0 = shared.by_kind();
    shared.delivery_ns.lock().unwrap().clear();
    let steady = Instant::now();
    let span = Duration::from_secs(args.duration);
    let handoffs_per_s = args.handoffs_per_hour * devices as f64 / 3600.0;
    let mut next_handoff = steady + exp_gap(handoffs_per_s);
    let mut next_discontinuity = steady + exp_gap(args.accounts as f64 / DISCONTINUITY_S);
    let mut burst_report = None;
    let mut busy = vec![Instant::now(); args.accounts];
    let mut last_progress = Instant::now();
    while steady.elapsed() < span {
        let now = Instant::now();
        if args.burst > 0.0 && burst_report.is_none() && now >= steady + span / 2 {
            burst_report = Some(
                burst(
                    &mut sims,
                    &broker,
                    &shared,
                    args.burst,
                    args.devices,
                    sample,
                )
                .await,
            );
            continue;
        }
        if now >= next_handoff {
            next_handoff = now + exp_gap(handoffs_per_s);
            hand_off(&sims, args.devices, &shared, &mut busy);
        }
        if now >= next_discontinuity {
            next_discontinuity = now + exp_gap(args.accounts as f64 / DISCONTINUITY_S);
            discontinuity(&sims, args.devices);
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            progress(&format!(
                "{:.0} s of {}: {} handoffs, {} delivered in the sampled accounts",
                steady.elapsed().as_secs_f64(),
                args.duration,
                shared.handoffs.load(Ordering::Relaxed),
                shared.sampled_messages.load(Ordering::Relaxed) - m0
            ));
        }
        let soonest = next_handoff.min(next_discontinuity).min(steady + span);
        tokio::time::sleep(
            soonest
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        )
        .await;
    }
    // Let the last handoffs finish.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let elapsed = steady.elapsed().as_secs_f64();
    let after_use = pid.and_then(process_use);
    let after_sys = shared.sys.lock().unwrap().clone();
    let (m1, b1) = (
        shared.sampled_messages.load(Ordering::Relaxed),
        shared.sampled_bytes.load(Ordering::Relaxed),
    );
    let k1 = shared.by_kind();

    let rate = |name: &str| -> Option<f64> {
        Some((after_sys.get(name)? - before_sys.get(name)?) / elapsed).filter(|r| *r >= 0.0)
    };
    let sampled_devices = (sample * args.devices).max(1) as f64;
    // The steady figures without the burst's messages and time.
    let (burst_messages, burst_s) = burst_report
        .as_ref()
        .map_or((0, 0.0), |b| (b.messages, b.span_s));
    let steady_s = (elapsed - burst_s).max(1.0);
    let steady_messages = (m1 - m0).saturating_sub(burst_messages) as f64;
    let steady_bytes = (b1 - b0) as f64 * steady_messages / ((m1 - m0).max(1) as f64);
    let burst_kinds = burst_report
        .as_ref()
        .map(|b| b.by_kind.clone())
        .unwrap_or_default();
    let per_device_hour = 3600.0 / sampled_devices / steady_s;
    let steady_kinds = kind_diff(&kind_diff(&k1, &k0), &burst_kinds)
        .into_iter()
        .map(|(k, n)| (k, n as f64 * per_device_hour))
        .collect();
    let report = Report {
        v: 1,
        broker: broker.to_string(),
        accounts: args.accounts,
        devices_per_account: args.devices,
        devices,
        sealed,
        duration_s: elapsed,
        connect: spread(connect_ns),
        delivery: spread(std::mem::take(&mut *shared.delivery_ns.lock().unwrap())),
        traffic: Traffic {
            messages_in_per_s: rate("publish/messages/received"),
            messages_out_per_s: rate("publish/messages/sent"),
            bytes_in_per_s: rate("bytes/received"),
            bytes_out_per_s: rate("bytes/sent"),
        },
        broker_use: BrokerUse {
            pid,
            cpu_cores: match (before_use, after_use) {
                (Some((c0, _)), Some((c1, _))) => Some((c1 - c0) / elapsed),
                _ => None,
            },
            rss_mib: after_use.map(|(_, r)| r),
        },
        handoffs: shared.handoffs.load(Ordering::Relaxed) as usize,
        handoffs_ok: shared.handoffs_ok.load(Ordering::Relaxed) as usize,
        handoff_latency: spread(std::mem::take(&mut *shared.handoff_ns.lock().unwrap())),
        messages_per_device_hour: Some(steady_messages / sampled_devices / steady_s * 3600.0),
        bytes_per_device_hour: Some(steady_bytes / sampled_devices / steady_s * 3600.0),
        messages_per_device_hour_by_kind: steady_kinds,
        burst: burst_report,
        errors: shared.errors.lock().unwrap().clone(),
    };
    // Leave: every device says goodbye, bounded.
    progress("stopping");
    let mut leaving = tokio::task::JoinSet::new();
    for sim in sims {
        if let Some(node) = sim.node {
            leaving.spawn(async move { node.goodbye(Duration::from_secs(2)).await });
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while leaving.join_next().await.is_some() {}
    })
    .await;
    probe_task.abort();
    Ok(report)
}

/// An exponential gap for events at `per_s` a second (a Poisson process).
fn exp_gap(per_s: f64) -> Duration {
    if per_s <= 0.0 {
        return Duration::from_secs(86_400);
    }
    let u = fastrand::f64().max(1e-12);
    Duration::from_secs_f64((-u.ln() / per_s).min(3_600.0))
}

/// The device that plays `account`'s session, and another one of the account.
fn player_and_other(sims: &[Sim], per_account: usize, account: usize) -> Option<(&Sim, &Sim)> {
    let group = &sims[account * per_account..(account + 1) * per_account];
    let playing = group.iter().find(|s| {
        s.node.as_ref().is_some_and(|n| {
            n.with_engine(|e| {
                let me = e.config().device.id.clone();
                e.directory().sessions.get(&me).is_some_and(|st| {
                    st.lease.device == me
                        && st.anchor.is_some_and(|a| a.state == PlayState::Playing)
                })
            })
        })
    })?;
    let others: Vec<&Sim> = group
        .iter()
        .filter(|s| s.id != playing.id && s.node.is_some())
        .collect();
    Some((playing, others[fastrand::usize(..others.len().max(1))])).filter(|_| !others.is_empty())
}

/// A handoff in a random account, unless one is still in flight there (a household hands
/// off one session at a time; a second request would only be refused as busy).
fn hand_off(sims: &[Sim], per_account: usize, shared: &Shared, busy: &mut [Instant]) {
    let account = fastrand::usize(..sims.len() / per_account);
    if busy[account] > Instant::now() {
        return;
    }
    let Some((from, to)) = player_and_other(sims, per_account, account) else {
        return;
    };
    busy[account] = Instant::now() + HANDOFF_SPAN;
    if let Some(node) = &from.node {
        shared.handoffs.fetch_add(1, Ordering::Relaxed);
        node.request_handoff(&to.id, &from.id);
    }
}

/// A pause, a resume or a seek on a playing device: a new anchor.
fn discontinuity(sims: &[Sim], per_account: usize) {
    let account = fastrand::usize(..sims.len() / per_account);
    let Some((player, _)) = player_and_other(sims, per_account, account) else {
        return;
    };
    if let Some(node) = &player.node {
        let position_ns = position_of(node);
        let seek = fastrand::bool();
        node.observe(Observation::Playback {
            position_ns: if seek {
                position_ns + 30 * SECOND_NS
            } else {
                position_ns
            },
            state: PlayState::Playing,
            rate: 1.0,
        });
    }
}

/// Drop a share of the devices without a goodbye and bring them back at once; how long
/// until all are online again with the retained state, and what it cost in the sampled
/// accounts.
async fn burst(
    sims: &mut [Sim],
    broker: &BrokerUrl,
    shared: &Arc<Shared>,
    share: f64,
    per_account: usize,
    sample: usize,
) -> Burst {
    let n = ((sims.len() as f64 * share).round() as usize).min(sims.len());
    // Every k-th device, so that the sampled accounts have their share too.
    let step = (sims.len() / n.max(1)).max(1);
    let chosen: Vec<usize> = (0..sims.len()).step_by(step).take(n).collect();
    let in_sample = chosen.iter().filter(|i| **i / per_account < sample).count();
    let m0 = shared.sampled_messages.load(Ordering::Relaxed);
    let k0 = shared.by_kind();
    // The steady span's delivery samples so far, put back after the burst's are taken out.
    let steady_delivery = std::mem::take(&mut *shared.delivery_ns.lock().unwrap());
    let start = Instant::now();
    for &i in &chosen {
        sims[i].node = None;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut pending = tokio::task::JoinSet::new();
    for &i in &chosen {
        let mut sim = Sim {
            account: sims[i].account.clone(),
            id: sims[i].id.clone(),
            class: sims[i].class,
            keys: sims[i].keys.clone(),
            node: None,
        };
        let (broker, shared) = (broker.clone(), shared.clone());
        pending.spawn(async move {
            let r = connect(&mut sim, &broker, &shared).await;
            if let (Ok(_), Some(node)) = (&r, &sim.node) {
                node.synced(CONNECT_WAIT).await;
            }
            (i, sim, r)
        });
    }
    let mut reconnect = Vec::new();
    let mut all_back = true;
    while let Some(done) = pending.join_next().await {
        let Ok((i, sim, r)) = done else { continue };
        match r {
            Ok(d) => reconnect.push(d.as_nanos() as u64),
            Err(e) => {
                all_back = false;
                shared.error(format!("reconnect: {e}"));
            }
        }
        let synced = sim
            .node
            .as_ref()
            .is_some_and(|n| n.sync_state() == SyncState::Synced);
        all_back &= synced;
        sims[i] = sim;
    }
    let converged = start.elapsed();
    // What the joins set off settles within a few seconds (roster answers are jittered).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m1 = shared.sampled_messages.load(Ordering::Relaxed);
    let by_kind = kind_diff(&shared.by_kind(), &k0);
    let delivery = std::mem::replace(&mut *shared.delivery_ns.lock().unwrap(), steady_delivery);
    Burst {
        devices: n,
        converged_s: all_back.then_some(converged.as_secs_f64()),
        reconnect: spread(reconnect),
        delivery: spread(delivery),
        messages_per_device: (in_sample > 0).then(|| (m1 - m0) as f64 / in_sample as f64),
        messages_per_device_by_kind: if in_sample > 0 {
            by_kind
                .iter()
                .map(|(k, n)| (k.clone(), *n as f64 / in_sample as f64))
                .collect()
        } else {
            BTreeMap::new()
        },
        by_kind,
        messages: m1 - m0,
        span_s: start.elapsed().as_secs_f64(),
    }
}

/// The report as a table.
pub fn print(r: &Report) {
    let f = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.0}{unit}"));
    println!(
        "{} devices ({} accounts × {}), {}, {:.0} s against {}",
        r.devices,
        r.accounts,
        r.devices_per_account,
        if r.sealed { "sealed" } else { "plain" },
        r.duration_s,
        r.broker
    );
    let s = |x: &Spread| {
        format!(
            "{:.1} / {:.1} / {:.1} ms ({})",
            x.p50_ms, x.p99_ms, x.max_ms, x.count
        )
    };
    println!("  connect p50 / p99 / max      {}", s(&r.connect));
    println!("  delivery p50 / p99 / max     {}", s(&r.delivery));
    println!(
        "  broker messages in / out     {} / {} per s",
        f(r.traffic.messages_in_per_s, ""),
        f(r.traffic.messages_out_per_s, "")
    );
    println!(
        "  broker bytes in / out        {} / {} per s",
        f(r.traffic.bytes_in_per_s, " B"),
        f(r.traffic.bytes_out_per_s, " B")
    );
    println!(
        "  broker CPU, memory           {} cores, {} MiB",
        r.broker_use
            .cpu_cores
            .map_or("-".into(), |c| format!("{c:.2}")),
        r.broker_use
            .rss_mib
            .map_or("-".into(), |m| format!("{m:.0}"))
    );
    println!(
        "  handoffs                     {} of {} ok, {}",
        r.handoffs_ok,
        r.handoffs,
        s(&r.handoff_latency)
    );
    println!(
        "  per device and hour          {} messages, {} bytes published",
        f(r.messages_per_device_hour, ""),
        f(r.bytes_per_device_hour, "")
    );
    println!(
        "    of which                   {}",
        by_kind(&r.messages_per_device_hour_by_kind, 0)
    );
    if let Some(b) = &r.burst {
        println!(
            "  burst: {} reconnect at once  converged in {}, reconnect {}, {} messages per device",
            b.devices,
            b.converged_s
                .map_or("never".into(), |c| format!("{c:.1} s")),
            s(&b.reconnect),
            b.messages_per_device
                .map_or("-".into(), |m| format!("{m:.1}"))
        );
        println!(
            "    of which                   {}",
            by_kind(&b.messages_per_device_by_kind, 1)
        );
        println!("    delivery p50 / p99 / max   {}", s(&b.delivery));
    }
    if r.errors.is_empty() {
        println!("  errors                       none");
    } else {
        for (e, n) in &r.errors {
            println!("  error ×{n}: {e}");
        }
    }
}

/// `session 12, event 8, …`, the largest first, with `decimals`.
fn by_kind(kinds: &BTreeMap<String, f64>, decimals: usize) -> String {
    let mut sorted: Vec<(&String, &f64)> = kinds.iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    if sorted.is_empty() {
        return "-".into();
    }
    sorted
        .iter()
        .map(|(k, n)| format!("{k} {n:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}
