//! The network side of the element: the library's `Node` (engine, MQTT link, local store) on
//! one small tokio runtime shared by every `continuity` element in the process, and a pump
//! task per element that feeds it what the streaming thread saw and acts on what comes back
//! (bus messages, warnings, resume seeks, remote commands).
//!
//! The streaming thread only ever `try_send`s to the pump; nothing here takes a lock that the
//! streaming thread takes.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use continuity::engine::{Notice, Observation, PlayerAction};
use continuity::hlc::now_unix_ns;
use continuity::node::{Node, NodeConfig, NodeError, NodeEvent};
use gst::glib;
use gst::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use super::CAT;
use super::ResumeMode;
use super::stream::ToPump;

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

/// A pull handoff seeks this far ahead of the live position it read: about what a seek and
/// a preroll of a local file take.
const PULL_LEAD_NS: u64 = 40_000_000;

/// How long stopping waits for the final position to reach the broker.
pub const STOP_FLUSH: Duration = Duration::from_millis(500);

/// The streaming thread passes buffers.
pub const GATE_OPEN: u8 = 0;
/// Holding preroll (buffers dropped) until the resume decision.
pub const GATE_HOLD: u8 = 1;
/// A resume seek is on its way: drop until its flush.
pub const GATE_SEEKING: u8 = 2;

/// A resume seek whose flush never reaches the element (an upstream that accepts seeks but
/// does not carry them out) must not hold playback back for longer than this.
const SEEK_GRACE: Duration = Duration::from_secs(2);

/// Stream time "unknown" in the position atomic.
pub const POSITION_NONE: u64 = u64::MAX;

/// A resume point offered to the application (`resume=ask`).
#[derive(Debug, Clone)]
pub struct Offer {
    pub media_id: String,
    pub position_ns: u64,
    pub device: String,
    pub when_unix_ns: u64,
}

/// State shared by the element, its streaming thread and its pump, lock-free where the
/// streaming thread reads it.
#[derive(Debug)]
pub struct Shared {
    /// Stream time of the last buffer, or [`POSITION_NONE`].
    pub position: AtomicU64,
    pub connected: AtomicBool,
    pub gate: AtomicU8,
    /// An EOS that arrived while the gate was closed, kept back until the gate opens
    /// without a flush (a flush discards it).
    pub eos_held: AtomicBool,
    /// `resume=ask`: what the `resume` signal would seek to.
    pub offer: Mutex<Option<Offer>>,
    /// Handoff target: where the media being loaded must preroll, or [`POSITION_NONE`].
    pub handoff_position: AtomicU64,
    /// Handoff target: report the next preroll (after a seek) to the engine.
    pub awaiting_preroll: AtomicBool,
    /// Handoff target: report the next PAUSED to PLAYING as the handoff's start.
    pub awaiting_start: AtomicBool,
    /// The application seeked while the resume decision was pending: its seek wins, and the
    /// decision, when it comes, does nothing.
    pub app_seeked: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            position: AtomicU64::new(POSITION_NONE),
            connected: AtomicBool::new(false),
            gate: AtomicU8::new(GATE_OPEN),
            eos_held: AtomicBool::new(false),
            offer: Mutex::new(None),
            handoff_position: AtomicU64::new(POSITION_NONE),
            awaiting_preroll: AtomicBool::new(false),
            awaiting_start: AtomicBool::new(false),
            app_seeked: AtomicBool::new(false),
        }
    }
}

impl Shared {
    pub fn position(&self) -> Option<u64> {
        Some(self.position.load(Ordering::Relaxed)).filter(|p| *p != POSITION_NONE)
    }

    pub fn take_offer(&self) -> Option<Offer> {
        self.offer.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Let buffers through again without a flush. An EOS held back meanwhile goes on now:
    /// it is sent into the element's sink pad, so the element sees it as it would have.
    pub fn open_gate(&self, element: &super::Continuity) {
        self.gate.store(GATE_OPEN, Ordering::SeqCst);
        if self.eos_held.swap(false, Ordering::SeqCst) {
            release_eos(element);
        }
    }

    /// Like [`Shared::open_gate`], but only if a resume seek is still awaited.
    pub fn open_gate_if_seeking(&self, element: &super::Continuity) -> bool {
        let opened = self
            .gate
            .compare_exchange(GATE_SEEKING, GATE_OPEN, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if opened && self.eos_held.swap(false, Ordering::SeqCst) {
            release_eos(element);
        }
        opened
    }
}

/// Send the EOS kept back by a closed gate, off the caller's thread (it takes the pad's
/// stream lock).
fn release_eos(element: &super::Continuity) {
    let element = element.clone();
    std::thread::spawn(move || {
        gst::debug!(CAT, obj = element, "the gate opened: the held EOS goes on");
        if let Some(pad) = element.static_pad("sink") {
            pad.send_event(gst::event::Eos::new());
        }
    });
}

/// How a session behaves.
pub struct SessionConfig {
    pub node: NodeConfig,
    pub mode: ResumeMode,
    /// Advertise the player on the LAN.
    pub advertise: bool,
    pub resume_timeout: Duration,
    /// The broker as the user wrote it, for messages.
    pub broker_text: String,
}

/// A running session: the node, the pump task and the way to it.
pub struct Session {
    node: Arc<Node>,
    /// The mDNS advertisement, withdrawn with the session.
    _advertisement: Option<continuity::net::discovery::Advertisement>,
    tx: mpsc::Sender<ToPump>,
    pump: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Start the node and the pump.
    pub fn start(
        cfg: SessionConfig,
        element: &super::Continuity,
        shared: Arc<Shared>,
    ) -> Result<Session, NodeError> {
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
        let (node, events) = Node::start(cfg.node)?;
        let node = Arc::new(node);
        let (tx, rx) = mpsc::channel(1024);
        let pump = Pump {
            node: node.clone(),
            element: element.downgrade(),
            shared,
            mode: cfg.mode,
            resume_timeout: cfg.resume_timeout,
            broker: cfg.broker_text,
        };
        let task = RUNTIME.spawn(pump.run(events, rx));
        Ok(Session {
            node,
            _advertisement: advertisement,
            tx,
            pump: task,
        })
    }

    /// Where the streaming thread sends what it sees.
    pub fn sender(&self) -> mpsc::Sender<ToPump> {
        self.tx.clone()
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn node_handle(&self) -> Arc<Node> {
        self.node.clone()
    }

    /// Say goodbye (offline, the final state flushed), waiting at most `wait`.
    pub fn stop(self, wait: Duration) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let sent = self.tx.try_send(ToPump::Stop { done: done_tx }).is_ok();
        if !sent || done_rx.recv_timeout(wait).is_err() {
            gst::warning!(CAT, "the final position may not have reached the broker");
        }
        self.pump.abort();
    }
}

struct Pump {
    node: Arc<Node>,
    element: glib::WeakRef<super::Continuity>,
    shared: Arc<Shared>,
    mode: ResumeMode,
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
                    Some(ToPump::Lookup { media_id, held_at }) => {
                        let this = this.clone();
                        tokio::spawn(async move { this.lookup(media_id, held_at).await });
                    }
                    Some(ToPump::HandoffPreroll { position_ns }) => this.handoff_preroll(position_ns),
                    Some(ToPump::Stop { done }) => {
                        if !this.node.goodbye(STOP_FLUSH).await {
                            gst::info!(CAT, "stopping before the broker acknowledged the final state");
                        }
                        let _ = done.send(());
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
            NodeEvent::Rejected { topic, reason } => {
                gst::info!(CAT, obj = element, "refused a message on {topic}: {reason}");
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
            PlayerAction::Play => blocking(move || top.set_state(gst::State::Playing).is_ok()),
            PlayerAction::Pause => blocking(move || top.set_state(gst::State::Paused).is_ok()),
            PlayerAction::Seek { position_ns } => {
                if self.shared.handoff_position.load(Ordering::SeqCst) != POSITION_NONE {
                    // A handoff target seeking again: report the new preroll.
                    self.handoff_preroll(position_ns);
                } else {
                    blocking(move || seek(&top, position_ns).is_ok());
                }
            }
            PlayerAction::Load {
                uri,
                media,
                position_ns,
                audio,
                subtitle,
            } => {
                self.shared
                    .handoff_position
                    .store(position_ns, Ordering::SeqCst);
                // Already playing this media: no need to load it again, only to seek.
                let loaded = self
                    .node
                    .with_engine(|e| e.media().is_some_and(|m| m.id == media.id));
                if loaded {
                    self.handoff_preroll(position_ns);
                }
                let lang = |t: &Option<continuity::model::Track>| {
                    t.as_ref().and_then(|t| t.language.clone())
                };
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
                tokio::spawn(async move {
                    sleep_until_unix(at_unix_ns).await;
                    shared
                        .handoff_position
                        .store(POSITION_NONE, Ordering::SeqCst);
                    shared.awaiting_start.store(true, Ordering::SeqCst);
                    blocking(move || top.set_state(gst::State::Playing).is_ok());
                });
            }
            PlayerAction::PauseAt { at_unix_ns } => {
                tokio::spawn(async move {
                    sleep_until_unix(at_unix_ns).await;
                    blocking(move || top.set_state(gst::State::Paused).is_ok());
                });
            }
            PlayerAction::Unload => {
                self.shared
                    .handoff_position
                    .store(POSITION_NONE, Ordering::SeqCst);
                self.shared.awaiting_preroll.store(false, Ordering::SeqCst);
            }
        }
    }

    fn notice(&self, element: &super::Continuity, notice: Notice) {
        match notice {
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
                        s.build()
                    }
                };
                post(element, s);
            }
            Notice::LeaseLost { to } => {
                gst::info!(CAT, obj = element, "the session moved to {to}");
                post(
                    element,
                    gst::Structure::builder("continuity-session-moved")
                        .field("device", &to)
                        .build(),
                );
            }
        }
    }

    /// Handoff target: seek to where the engine wants the preroll, and report it once there.
    fn handoff_preroll(&self, position_ns: u64) {
        let Some(element) = self.element.upgrade() else {
            return;
        };
        self.shared.awaiting_preroll.store(true, Ordering::SeqCst);
        self.shared.gate.store(GATE_SEEKING, Ordering::SeqCst);
        let shared = self.shared.clone();
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            if seek(&top_level(&element), position_ns).is_err() {
                shared.open_gate(&element);
                shared.awaiting_preroll.store(false, Ordering::SeqCst);
                node.observe(Observation::LoadFailed {
                    reason: "the media cannot seek".into(),
                });
            }
        });
    }

    async fn lookup(&self, media_id: String, held_at: Option<u64>) {
        let found = self
            .node
            .resume_lookup(&media_id, self.resume_timeout)
            .await;
        let Some(element) = self.element.upgrade() else {
            return;
        };
        let open = || self.shared.open_gate(&element);
        if self.shared.app_seeked.swap(false, Ordering::SeqCst) {
            gst::info!(
                CAT,
                obj = element,
                "the application seeked while the resume decision was pending: not resuming"
            );
            if self.shared.gate.load(Ordering::SeqCst) != GATE_OPEN {
                open();
            }
            return;
        }
        let shared = self.shared.clone();
        let weak = self.element.clone();
        let reopen_later = move || {
            tokio::spawn(async move {
                tokio::time::sleep(SEEK_GRACE).await;
                let Some(element) = weak.upgrade() else {
                    return;
                };
                if shared.open_gate_if_seeking(&element) {
                    gst::warning!(
                        CAT,
                        "the resume seek never flushed: letting buffers through"
                    );
                }
            });
        };
        match (self.mode, found) {
            (ResumeMode::Auto, Some(from)) => {
                // A live session moves on while we seek: aim a little ahead.
                let position_ns = match from.live {
                    Some(_) => from.position_ns + PULL_LEAD_NS,
                    None => from.position_ns,
                };
                gst::info!(
                    CAT,
                    obj = element,
                    "resuming {media_id} at {} (from {}{})",
                    gst::ClockTime::from_nseconds(position_ns),
                    from.device,
                    if from.live.is_some() {
                        ", taking its session over"
                    } else {
                        ""
                    }
                );
                self.shared.gate.store(GATE_SEEKING, Ordering::SeqCst);
                if seek_blocking(&element, position_ns).await {
                    reopen_later();
                    if let Some((session, epoch)) = &from.live {
                        self.node.take_over(&from.device, session, *epoch);
                    }
                    post(&element, resumed(&media_id, position_ns, &from.device));
                } else {
                    gst::warning!(CAT, obj = element, "the resume seek failed: playing on");
                    open();
                }
            }
            (ResumeMode::Auto, None) => match held_at {
                // Buffers were held back: start again where they began.
                Some(start) => {
                    self.shared.gate.store(GATE_SEEKING, Ordering::SeqCst);
                    if seek_blocking(&element, start).await {
                        reopen_later();
                    } else {
                        open();
                    }
                }
                None => open(),
            },
            (ResumeMode::Ask, Some(from)) => {
                let offer = Offer {
                    media_id: media_id.clone(),
                    position_ns: from.position_ns,
                    device: from.device.clone(),
                    when_unix_ns: from.when_unix_ns,
                };
                *self.shared.offer.lock().unwrap_or_else(|e| e.into_inner()) = Some(offer.clone());
                post(
                    &element,
                    gst::Structure::builder("continuity-resume-available")
                        .field("media-id", &offer.media_id)
                        .field("position", offer.position_ns)
                        .field("device", &offer.device)
                        .field("when", offer.when_unix_ns)
                        .build(),
                );
                open();
            }
            _ => open(),
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
    let _ = element.post_message(gst::message::Element::builder(s).src(element).build());
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

/// Wait (at most `wait`, from any thread) until what the node published is acknowledged.
pub fn flush_blocking(node: &Arc<Node>, wait: Duration) {
    if !node.connected() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let node = node.clone();
    RUNTIME.spawn(async move {
        let _ = tx.send(node.flush(wait).await);
    });
    if !matches!(rx.recv_timeout(wait + Duration::from_millis(100)), Ok(true)) {
        gst::info!(CAT, "the final state may not have reached the broker yet");
    }
}

/// Seek the pipeline from the blocking pool and wait for the answer.
async fn seek_blocking(element: &super::Continuity, position_ns: u64) -> bool {
    let top = top_level(element);
    tokio::task::spawn_blocking(move || seek(&top, position_ns).is_ok())
        .await
        .unwrap_or(false)
}

/// Run a blocking GStreamer call on the runtime's blocking pool; log when it fails.
fn blocking(f: impl FnOnce() -> bool + Send + 'static) {
    tokio::task::spawn_blocking(move || {
        if !f() {
            gst::warning!(CAT, "a pipeline operation failed");
        }
    });
}

/// Sleep until a wall-clock instant.
async fn sleep_until_unix(at_unix_ns: u64) {
    let now = now_unix_ns();
    if at_unix_ns > now {
        tokio::time::sleep(Duration::from_nanos(at_unix_ns - now)).await;
    }
}

/// Wall-clock now (re-exported for the element).
pub fn now() -> u64 {
    now_unix_ns()
}
