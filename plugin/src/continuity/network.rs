//! The element's network side (`Network`): the library's `Node` (engine, MQTT link, local store) on
//! one small tokio runtime shared by every `continuity` element in the process, and a pump
//! task per element that feeds it what the streaming thread saw and acts on what comes back
//! (bus messages, warnings, resume seeks, remote commands).
//!
//! The streaming thread only ever `try_send`s to the pump; nothing here takes a lock that the
//! streaming thread takes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use continuity::engine::gate::{Decision, Gate, SeekFor};
use continuity::engine::{Notice, Observation, PlayerAction, ResolveError, ResumeFrom};
use continuity::hlc::now_unix_ns;
use continuity::node::{Node, NodeConfig, NodeError, NodeEvent};
use continuity::wire::EventName;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::ObjectSubclassIsExt;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use super::CAT;
use super::stream::ToPump;
use super::tracks::Wanted;

/// The runtime for every element's network work. GStreamer calls that block (seeks, state
/// changes) go to its blocking pool, so that a preroll never delays the link.
pub static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("continuity-net")
        .enable_all()
        .build()
        .expect("the continuity network runtime starts")
});

/// How long stopping waits for the final position to reach the broker.
pub const STOP_FLUSH: Duration = Duration::from_millis(500);

/// A seek whose flush never reaches the element (an upstream that accepts seeks but does not
/// carry them out) must not hold playback back for longer than this.
const SEEK_GRACE: Duration = Duration::from_secs(2);

/// Stream time "unknown" in the position atomic.
pub const POSITION_NONE: u64 = u64::MAX;

/// A resume point offered to the application (`resume=ask`): the media and where.
#[derive(Debug, Clone)]
pub struct Offer {
    pub media_id: String,
    pub from: ResumeFrom,
}

/// How a first buffer held for the resume decision ends (see [`Shared::hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The gate opened: the buffer plays.
    Pass,
    /// A flush (a seek, the resume's or the application's) or a stop: the buffer is gone.
    Flushing,
}

/// The gate and whether the sink pad is flushing, under one lock.
#[derive(Debug, Default)]
struct GateCell {
    gate: Gate,
    /// A flush started (or the element is stopping) and has not stopped yet: a buffer held
    /// on the streaming thread must be let go at once.
    flushing: bool,
}

/// State shared by the element, its streaming thread and its pump. The gate's lock is the
/// innermost: the streaming thread may take it while holding `stream`, and nothing else is
/// locked while it is held.
#[derive(Debug)]
pub struct Shared {
    /// Stream time of the last buffer, or [`POSITION_NONE`].
    pub position: AtomicU64,
    pub connected: AtomicBool,
    /// The resume gate (every decision about held buffers is its own).
    gate: Mutex<GateCell>,
    /// Told on every change of the gate or of `flushing` (wakes a held first buffer).
    gate_changed: Condvar,
    /// Whether the gate lets buffers through, read per buffer without its lock.
    open: AtomicBool,
    /// `resume=ask`: what the `resume` signal would seek to.
    pub offer: Mutex<Option<Offer>>,
    /// The languages a handoff brought, for the media it loads to select.
    pub wanted: Mutex<Option<Wanted>>,
    /// The playback rate a handoff prerolls at (the source's), as f64 bits.
    handoff_rate: AtomicU64,
    /// Bumped by a play, a pause or an unload: a `PlayAt` or `PauseAt` scheduled before it
    /// does nothing when its instant comes (the engine changed its mind: a handoff's source
    /// keeps its session, a target lost it before its first frame).
    timers: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            position: AtomicU64::new(POSITION_NONE),
            connected: AtomicBool::new(false),
            gate: Mutex::new(GateCell::default()),
            gate_changed: Condvar::new(),
            open: AtomicBool::new(true),
            offer: Mutex::new(None),
            wanted: Mutex::new(None),
            handoff_rate: AtomicU64::new(1.0f64.to_bits()),
            timers: AtomicU64::new(0),
        }
    }
}

impl Shared {
    pub fn position(&self) -> Option<u64> {
        Some(self.position.load(Ordering::Relaxed)).filter(|p| *p != POSITION_NONE)
    }

    fn set_handoff_rate(&self, rate: f64) {
        let rate = if rate.is_finite() && rate != 0.0 {
            rate
        } else {
            1.0
        };
        self.handoff_rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    fn handoff_rate(&self) -> f64 {
        f64::from_bits(self.handoff_rate.load(Ordering::Relaxed))
    }

    pub fn take_wanted(&self) -> Option<Wanted> {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn take_offer(&self) -> Option<Offer> {
        self.offer.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Whether buffers pass (the gate is open).
    pub fn passes(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Tell the gate something, under its lock; whether buffers pass follows, and a held
    /// first buffer hears of it.
    pub fn gate<R>(&self, f: impl FnOnce(&mut Gate) -> R) -> R {
        let mut cell = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut cell.gate);
        self.open.store(cell.gate.passes(), Ordering::SeqCst);
        drop(cell);
        self.gate_changed.notify_all();
        r
    }

    /// A flush starts (`true`: a held buffer is let go) or stops; the element stopping counts
    /// as a flush that lasts until it starts again.
    pub fn set_flushing(&self, flushing: bool) {
        self.gate.lock().unwrap_or_else(|e| e.into_inner()).flushing = flushing;
        self.gate_changed.notify_all();
    }

    /// On the streaming thread, with the first buffer of a media while the gate holds it:
    /// wait for the resume decision, as a sink waits in preroll. Upstream waits with it, so
    /// nothing is decoded for nothing, and when there is nothing to resume the buffer plays
    /// as it came (no seek back). A flush (the resume seek's or the application's) or the
    /// element stopping lets it go; if neither the decision nor its seek comes within
    /// `limit` (a network side that is wedged), the gate opens and playback goes on.
    pub fn hold(&self, limit: Duration) -> Held {
        let deadline = Instant::now() + limit;
        let mut cell = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if cell.flushing {
                return Held::Flushing;
            }
            if cell.gate.passes() {
                return Held::Pass;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            cell = self
                .gate_changed
                .wait_timeout(cell, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        gst::warning!(
            CAT,
            "no resume decision (or its seek) within {limit:?}: playing on from here"
        );
        // Nothing can have been held back behind the buffer held here: no EOS to release.
        let _ = cell.gate.give_up();
        self.open.store(cell.gate.passes(), Ordering::SeqCst);
        Held::Pass
    }
}

/// Carry out what the gate decided, off the streaming thread (which hands its decisions to
/// the pump): seeks go to the runtime's blocking pool, an EOS held back goes on through
/// `call_async`. `Lookup` is the streaming thread's to send.
pub fn carry_out(element: &super::Continuity, node: &Arc<Node>, shared: &Arc<Shared>, d: Decision) {
    match d {
        Decision::None | Decision::Lookup { .. } => {}
        Decision::Open { release_eos } => {
            if release_eos {
                element.call_async(|element| {
                    gst::debug!(CAT, obj = element, "the gate opened: the held EOS goes on");
                    if let Some(pad) = element.static_pad("sink") {
                        pad.send_event(gst::event::Eos::new());
                    }
                });
            }
        }
        Decision::Offer { media_id, from } => {
            let message = gst::Structure::builder("continuity-resume-available")
                .field("media-id", &media_id)
                .field("position", from.position_ns)
                .field("device", &from.device)
                .field("when", from.when_unix_ns)
                .build();
            let before = shared
                .offer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(Offer { media_id, from });
            if before.is_some() {
                node.note(EventName::ResumeDeclined);
            }
            node.note(EventName::ResumeOffered);
            post(element, message);
        }
        Decision::Seek { position_ns, why } => {
            let element = element.clone();
            let (node, shared) = (node.clone(), shared.clone());
            let _guard = RUNTIME.enter();
            tokio::task::spawn_blocking(move || {
                // A handoff's preroll plays on at the source's rate.
                let rate = if why == SeekFor::Handoff {
                    shared.handoff_rate()
                } else {
                    1.0
                };
                if seek_at(&top_level(&element), position_ns, rate).is_err() {
                    gst::warning!(CAT, obj = element, "the {why:?} seek failed: playing on");
                    if why == SeekFor::Handoff {
                        node.observe(Observation::LoadFailed {
                            reason: "the media cannot seek".into(),
                        });
                    }
                    let d = shared.gate(Gate::on_seek_failed);
                    carry_out(&element, &node, &shared, d);
                    return;
                }
                if let SeekFor::Resume { media_id, from } = &why {
                    if let Some((session, epoch)) = &from.live {
                        node.take_over(&from.device, session, *epoch);
                    }
                    // The languages it played in there.
                    let wanted = Wanted::as_there(&from.audio, &from.subtitle);
                    if wanted != Wanted::default() {
                        element.imp().select_tracks(wanted, true);
                    }
                    node.note(EventName::ResumeTaken);
                    post(&element, resumed(media_id, position_ns, &from.device));
                }
                let weak = element.downgrade();
                RUNTIME.spawn(async move {
                    tokio::time::sleep(SEEK_GRACE).await;
                    let Some(element) = weak.upgrade() else {
                        return;
                    };
                    let d = shared.gate(Gate::on_seek_grace_over);
                    if d != Decision::None {
                        gst::warning!(
                            CAT,
                            obj = element,
                            "the seek never flushed: letting buffers through"
                        );
                    }
                    carry_out(&element, &node, &shared, d);
                });
            });
        }
    }
}

/// How the network side behaves.
#[derive(Clone)]
pub struct NetworkConfig {
    pub node: NodeConfig,
    /// Advertise the player on the LAN.
    pub advertise: bool,
    pub resume_timeout: Duration,
    /// The broker as the user wrote it, for messages.
    pub broker_text: String,
    /// The config dir, taken for this player while it runs.
    pub player_lock: Option<Arc<continuity::config::PlayerLock>>,
}

impl NetworkConfig {
    /// Take the config dir for this player (`player.lock`): a dir that a running player holds
    /// is an error; one that cannot be written still plays (the store says so).
    pub fn take_config_dir(
        &mut self,
        element: &super::Continuity,
    ) -> Result<(), gst::ErrorMessage> {
        let Some(dir) = &self.node.store_dir else {
            return Ok(());
        };
        match continuity::config::lock_player(dir) {
            Ok(lock) => self.player_lock = Some(Arc::new(lock)),
            Err(e @ continuity::config::ConfigError::InUse { .. }) => {
                return Err(gst::error_msg!(gst::ResourceError::Busy, ("{e}")));
            }
            Err(e) => gst::debug!(CAT, obj = element, "config dir not locked: {e}"),
        }
        Ok(())
    }
}

/// The running network side: the node, the pump task and the way to it.
pub struct Network {
    node: Arc<Node>,
    shared: Arc<Shared>,
    /// The mDNS advertisement, withdrawn with the session.
    _advertisement: Option<continuity::net::discovery::Advertisement>,
    /// Released with the network side.
    _lock: Option<Arc<continuity::config::PlayerLock>>,
    tx: mpsc::Sender<ToPump>,
    pump: tokio::task::JoinHandle<()>,
}

impl Network {
    /// Record an event the element saw (see [`Node::note`]).
    pub fn note(&self, name: EventName) {
        self.node.note(name);
    }

    /// Start the node and the pump.
    pub fn start(
        cfg: NetworkConfig,
        element: &super::Continuity,
        shared: Arc<Shared>,
    ) -> Result<Network, NodeError> {
        let _guard = RUNTIME.enter();
        let advertisement = if cfg.advertise {
            continuity::net::discovery::advertise_player(
                &cfg.node.engine.device,
                &cfg.node.engine.account,
            )
            .map_err(|e| gst::warning!(CAT, obj = element, "not advertised on the LAN: {e}"))
            .ok()
        } else {
            None
        };
        let lock = cfg.player_lock.clone();
        let (node, events) = Node::start(cfg.node)?;
        let node = Arc::new(node);
        let (tx, rx) = mpsc::channel(1024);
        let pump = Pump {
            node: node.clone(),
            element: element.downgrade(),
            shared: shared.clone(),
            resume_timeout: cfg.resume_timeout,
            broker: cfg.broker_text,
        };
        let task = RUNTIME.spawn(pump.run(events, rx));
        Ok(Network {
            node,
            shared,
            _advertisement: advertisement,
            _lock: lock,
            tx,
            pump: task,
        })
    }

    /// Where the streaming thread sends what it sees.
    pub fn sender(&self) -> mpsc::Sender<ToPump> {
        self.tx.clone()
    }

    pub fn node_handle(&self) -> Arc<Node> {
        self.node.clone()
    }

    /// Ask `target` (a device id or name) to take over this device's session; the handoff's
    /// id. A name nobody has used yet is taken as an id (the device may not have spoken).
    pub fn handoff_to(&self, target: &str) -> Result<String, ResolveError> {
        let (me, resolved) = self.node.with_engine(|e| {
            (
                e.config().device.id.clone(),
                e.directory().resolve_device(target),
            )
        });
        let target = match resolved {
            Ok(id) => id,
            Err(ResolveError::Unknown(_)) => target.to_owned(),
            Err(e) => return Err(e),
        };
        Ok(self.node.request_handoff(&target, &me))
    }

    /// Undo the last automatic handoff.
    pub fn hand_back(&self) -> Option<String> {
        self.node.hand_back()
    }

    /// The application could not load the handoff's media.
    pub fn load_failed(&self, reason: &str) {
        self.shared.gate(Gate::cancel_handoff);
        self.node.observe(Observation::LoadFailed {
            reason: reason.to_owned(),
        });
    }

    /// Say goodbye (offline, the final state flushed, at most [`STOP_FLUSH`]) in the
    /// background: never waits (the element may be dropped on any thread, the pump's own
    /// included). The final state went out at READY to NULL already.
    pub fn stop(self) {
        if self.tx.try_send(ToPump::Stop).is_err() {
            gst::info!(
                CAT,
                "stopping without a goodbye: the broker's last will says offline"
            );
            self.pump.abort();
        }
    }
}

struct Pump {
    node: Arc<Node>,
    element: glib::WeakRef<super::Continuity>,
    shared: Arc<Shared>,
    resume_timeout: Duration,
    broker: String,
}

impl Pump {
    async fn run(self, mut events: mpsc::Receiver<NodeEvent>, mut rx: mpsc::Receiver<ToPump>) {
        let this = Arc::new(self);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => return,
                    Some(ToPump::Observe(at, obs)) => {
                        gst::log!(CAT, "observed {obs:?}");
                        this.node.observe_at(at, *obs);
                    }
                    Some(ToPump::Lookup { media_id, generation }) => {
                        let this = this.clone();
                        tokio::spawn(async move { this.lookup(media_id, generation).await });
                    }
                    Some(ToPump::Decided(d)) => this.carry_out(d),
                    Some(ToPump::Stop) => {
                        if !this.node.goodbye(STOP_FLUSH).await {
                            gst::info!(CAT, "stopping before the broker acknowledged the goodbye");
                        }
                        return;
                    }
                },
                ev = events.recv() => match ev {
                    Some(ev) => this.node_event(ev),
                    None => return,
                },
            }
        }
    }

    fn node_event(&self, ev: NodeEvent) {
        let Some(element) = self.element.upgrade() else {
            return;
        };
        match ev {
            NodeEvent::Connected => {
                self.shared.connected.store(true, Ordering::Relaxed);
                gst::info!(
                    CAT,
                    obj = element,
                    "connected to the broker at {}",
                    self.broker
                );
                post(
                    &element,
                    gst::Structure::builder("continuity-connection")
                        .field("connected", true)
                        .field("broker", &self.broker)
                        .build(),
                );
                element.notify("connected");
            }
            NodeEvent::Down { reason } => {
                self.shared.connected.store(false, Ordering::Relaxed);
                // One warning per outage: the link reports each outage once.
                gst::warning!(
                    CAT,
                    obj = element,
                    "broker {} unreachable: {reason}",
                    self.broker
                );
                gst::element_warning!(
                    element,
                    gst::ResourceError::OpenReadWrite,
                    (
                        "Cannot reach the broker at {}; playback continues and state is kept locally",
                        self.broker
                    ),
                    ["{reason}; retrying in the background"]
                );
                post(
                    &element,
                    gst::Structure::builder("continuity-connection")
                        .field("connected", false)
                        .field("broker", &self.broker)
                        .field("reason", &reason)
                        .build(),
                );
                element.notify("connected");
            }
            NodeEvent::Player(action) => self.player(&element, action),
            NodeEvent::Notice(notice) => self.notice(&element, notice),
            // The node logged it (the first of its kind on its topic as a warning), and its
            // log reaches this category.
            NodeEvent::Rejected { .. } => {}
            NodeEvent::StoreTrouble { message } => {
                gst::element_warning!(element, gst::ResourceError::Write, ("{message}"));
            }
            NodeEvent::Revoked => {
                gst::element_warning!(
                    element,
                    gst::ResourceError::NotAuthorized,
                    ("This device was removed from its account: other devices no longer \
                         hear it; playback continues here. Pair it again to rejoin")
                );
                post(
                    &element,
                    gst::Structure::builder("continuity-revoked").build(),
                );
            }
            NodeEvent::KeyRotated { key_id } => {
                gst::info!(
                    CAT,
                    obj = element,
                    "the account key was rotated (a device was revoked): now {key_id}"
                );
            }
        }
    }

    fn player(&self, element: &super::Continuity, action: PlayerAction) {
        gst::info!(CAT, obj = element, "player: {action:?}");
        let top = top_level(element);
        match action {
            PlayerAction::Play => {
                self.shared.timers.fetch_add(1, Ordering::SeqCst);
                blocking(move || top.set_state(gst::State::Playing).is_ok())
            }
            PlayerAction::Pause => {
                self.shared.timers.fetch_add(1, Ordering::SeqCst);
                blocking(move || top.set_state(gst::State::Paused).is_ok())
            }
            PlayerAction::Seek { position_ns } => blocking(move || seek(&top, position_ns).is_ok()),
            PlayerAction::Preroll { position_ns, rate } => {
                self.shared.set_handoff_rate(rate);
                let d = self.shared.gate(|g| g.on_preroll(position_ns));
                self.carry_out(d);
            }
            PlayerAction::Load {
                uri,
                media,
                position_ns,
                audio,
                subtitle,
                loaded,
                rate,
            } => {
                self.shared.set_handoff_rate(rate);
                let lang = |t: &Option<continuity::model::Track>| {
                    t.as_ref().and_then(|t| t.language.clone())
                };
                let wanted = Wanted::as_there(&audio, &subtitle);
                if loaded {
                    element.imp().select_tracks(wanted, true);
                } else {
                    // The application loads it; its first buffer prerolls there, and selects
                    // these languages.
                    *self.shared.wanted.lock().unwrap_or_else(|e| e.into_inner()) = Some(wanted);
                    self.shared.gate(|g| g.expect_handoff(position_ns));
                }
                let mut s = gst::Structure::builder("continuity-handoff-incoming")
                    .field("uri", &uri)
                    .field("position", position_ns)
                    .field("media-id", &media.id)
                    .field("loaded", loaded);
                if let Some(t) = &media.title {
                    s = s.field("title", t);
                }
                if let Some(l) = lang(&audio) {
                    s = s.field("audio-language", l);
                }
                if let Some(l) = lang(&subtitle) {
                    s = s.field("subtitle-language", l);
                }
                post(element, s.build());
            }
            PlayerAction::PlayAt { at_unix_ns } => {
                let shared = self.shared.clone();
                at_instant(&self.shared, at_unix_ns, move || {
                    shared.gate(Gate::cancel_handoff);
                    top.set_state(gst::State::Playing).is_ok()
                });
            }
            PlayerAction::PauseAt { at_unix_ns } => {
                at_instant(&self.shared, at_unix_ns, move || {
                    top.set_state(gst::State::Paused).is_ok()
                });
            }
            PlayerAction::Unload => {
                self.shared.timers.fetch_add(1, Ordering::SeqCst);
                self.shared.gate(Gate::cancel_handoff)
            }
        }
    }

    fn notice(&self, element: &super::Continuity, notice: Notice) {
        match notice {
            Notice::LoadStalled { handoff, after_ns } => {
                gst::warning!(
                    CAT,
                    obj = element,
                    "handoff {handoff}: the media gave no data within {:.1} s; the handoff \
                     fails (media-unavailable)",
                    after_ns as f64 / 1e9
                );
                let s = gst::Structure::builder("continuity-load-stalled")
                    .field("handoff", handoff)
                    .field("after", after_ns)
                    .build();
                post(element, s);
            }
            Notice::HandoffResult(r) => {
                let s = match r.failure {
                    Some(reason) => {
                        gst::info!(CAT, obj = element, "handoff {} failed: {reason}", r.handoff);
                        gst::Structure::builder("continuity-handoff-failed")
                            .field("handoff", &r.handoff)
                            .field("source", &r.source)
                            .field("target", &r.target)
                            .field("reason", reason.as_str())
                            .build()
                    }
                    None => {
                        gst::info!(CAT, obj = element, "handoff {} complete: {r:?}", r.handoff);
                        let mut s = gst::Structure::builder("continuity-handoff-complete")
                            .field("handoff", &r.handoff)
                            .field("source", &r.source)
                            .field("target", &r.target);
                        if let Some(l) = r.latency_ns {
                            s = s.field("latency", l);
                        }
                        if let Some(e) = r.position_error_ns {
                            s = s.field("position-error", e);
                        }
                        if let Some(o) = r.clock_offset_ns {
                            s = s.field("clock-offset", o);
                        }
                        if let Some(n) = r.prerolls {
                            s = s.field("prerolls", n);
                        }
                        s.build()
                    }
                };
                post(element, s);
            }
            Notice::HandoffSuggested {
                device,
                name,
                class,
            } => {
                // In words, for the application to show and a screen reader to say.
                let sentence = format!("{name} is on: continue there?");
                gst::info!(CAT, obj = element, "{sentence} ({device}, {class})");
                post(
                    element,
                    gst::Structure::builder("continuity-handoff-suggested")
                        .field("device", &device)
                        .field("name", &name)
                        .field("class", class.as_str())
                        .field("message", &sentence)
                        .build(),
                );
            }
            Notice::AutomaticHandoff {
                device,
                name,
                outgoing,
            } => {
                let sentence = if outgoing {
                    format!("Continuing on {name} (automatic handoff)")
                } else {
                    format!("Continued here from {name} (automatic handoff)")
                };
                gst::info!(CAT, obj = element, "{sentence} ({device})");
                post(
                    element,
                    gst::Structure::builder("continuity-handoff-automatic")
                        .field("device", &device)
                        .field("name", &name)
                        .field("direction", if outgoing { "to" } else { "from" })
                        .field("message", &sentence)
                        .build(),
                );
            }
            Notice::LeaseLost { to, name } => {
                gst::info!(CAT, obj = element, "the session moved to {name} ({to})");
                post(
                    element,
                    gst::Structure::builder("continuity-session-moved")
                        .field("device", &to)
                        .field("name", &name)
                        .build(),
                );
            }
        }
    }

    /// Where to resume the media that started: the local store or the broker, whichever is
    /// newer, once the retained state has arrived (at most the resume timeout); the gate
    /// decides what that means.
    async fn lookup(&self, media_id: String, generation: u64) {
        let found = self
            .node
            .resume_lookup(&media_id, self.resume_timeout)
            .await;
        if let Some(from) = &found {
            gst::info!(
                CAT,
                "{media_id} can resume at {} (from {}{})",
                gst::ClockTime::from_nseconds(from.position_ns),
                from.device,
                if from.live.is_some() {
                    ", live there"
                } else {
                    ""
                }
            );
        }
        let d = self.shared.gate(|g| g.on_lookup(generation, found));
        self.carry_out(d);
    }

    fn carry_out(&self, d: Decision) {
        if let Some(element) = self.element.upgrade() {
            carry_out(&element, &self.node, &self.shared, d);
        }
    }
}

/// The `resume` action signal: seek to the offered resume point (`resume=ask`).
pub fn resume_offered(element: &super::Continuity, shared: &Shared) -> bool {
    let Some(offer) = shared.take_offer() else {
        gst::info!(CAT, obj = element, "resume: nothing offered");
        return false;
    };
    let (position_ns, device) = (offer.from.position_ns, &offer.from.device);
    match seek(&top_level(element), position_ns) {
        Ok(()) => {
            post(element, resumed(&offer.media_id, position_ns, device));
            let wanted = Wanted::as_there(&offer.from.audio, &offer.from.subtitle);
            if wanted != Wanted::default() {
                element.imp().select_tracks(wanted, true);
            }
            true
        }
        Err(e) => {
            gst::warning!(CAT, obj = element, "resume seek failed: {e}");
            false
        }
    }
}

/// The `continuity-resumed` message.
pub fn resumed(media_id: &str, position_ns: u64, device: &str) -> gst::Structure {
    gst::Structure::builder("continuity-resumed")
        .field("media-id", media_id)
        .field("position", position_ns)
        .field("device", device)
        .build()
}

/// Post an element message from the element.
pub fn post(element: &super::Continuity, s: gst::Structure) {
    let name = s.name().to_string();
    if element
        .post_message(gst::message::Element::builder(s).src(element).build())
        .is_err()
    {
        gst::warning!(CAT, obj = element, "no bus for {name}: nobody hears it");
    }
}

/// The outermost bin holding the element (the pipeline, or playbin).
pub fn top_level(element: &super::Continuity) -> gst::Element {
    let mut top: gst::Element = element.clone().upcast();
    while let Some(parent) = top.parent().and_then(|p| p.downcast::<gst::Element>().ok()) {
        top = parent;
    }
    top
}

/// Seek the whole pipeline (every branch, so audio and video stay together), flushing and
/// accurate.
pub fn seek(top: &gst::Element, position_ns: u64) -> Result<(), glib::BoolError> {
    top.seek_simple(
        gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
        gst::ClockTime::from_nseconds(position_ns),
    )
}

/// [`seek`] at a playback rate (a negative one plays backwards from the position).
pub fn seek_at(top: &gst::Element, position_ns: u64, rate: f64) -> Result<(), glib::BoolError> {
    if rate == 1.0 {
        return seek(top, position_ns);
    }
    let flags = gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE;
    let at = gst::ClockTime::from_nseconds(position_ns);
    if rate > 0.0 {
        top.seek(
            rate,
            flags,
            gst::SeekType::Set,
            at,
            gst::SeekType::None,
            gst::ClockTime::NONE,
        )
    } else {
        top.seek(
            rate,
            flags,
            gst::SeekType::Set,
            gst::ClockTime::ZERO,
            gst::SeekType::Set,
            at,
        )
    }
}

/// Wait (at most `wait`, from any thread) until the local store has written what the node
/// kept and, when connected, the broker acknowledged what it published.
pub fn flush_blocking(node: &Arc<Node>, wait: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let node = node.clone();
    RUNTIME.spawn(async move {
        // `flush` waits for the store as well; without a connection only the store counts.
        let done = if node.connected() {
            node.flush(wait).await
        } else {
            node.sync_store(wait).await
        };
        let _ = tx.send(done);
    });
    if !matches!(
        rx.recv_timeout(wait * 2 + Duration::from_millis(100)),
        Ok(true)
    ) {
        gst::warning!(CAT, "the final state may not be stored or acknowledged yet");
    }
}

/// Run a blocking GStreamer call on the runtime's blocking pool; log when it fails.
fn blocking(f: impl FnOnce() -> bool + Send + 'static) {
    tokio::task::spawn_blocking(move || {
        if !f() {
            gst::warning!(CAT, "a pipeline operation failed");
        }
    });
}

/// How early the runtime's timer hands a timed state change to a blocking thread, which then
/// sleeps the rest itself. The timer rounds up to the millisecond and a busy runtime wakes
/// later still: measured on the handoff benchmark, a pause at the switch instant landed 1 to
/// 3.4 ms late that way, and past the frame boundary 6 % of the time (the source then shows
/// one more frame than it should).
const TIMER_SLACK_NS: u64 = 5_000_000;

/// Run the pipeline operation `f` at a wall-clock instant, to within a thread's wake-up
/// (tens of µs): the runtime's timer wakes a little early, and a blocking thread sleeps the
/// rest.
fn at_instant(shared: &Arc<Shared>, at_unix_ns: u64, f: impl FnOnce() -> bool + Send + 'static) {
    let shared = shared.clone();
    let generation = shared.timers.load(Ordering::SeqCst);
    let still_wanted = move || shared.timers.load(Ordering::SeqCst) == generation;
    tokio::spawn(async move {
        let now = now_unix_ns();
        if at_unix_ns > now + TIMER_SLACK_NS {
            tokio::time::sleep(Duration::from_nanos(at_unix_ns - now - TIMER_SLACK_NS)).await;
        }
        blocking(move || {
            let now = now_unix_ns();
            if at_unix_ns > now {
                std::thread::sleep(Duration::from_nanos(at_unix_ns - now));
            }
            // A play, a pause or an unload since it was asked for calls it off.
            still_wanted() && f()
        });
    });
}
