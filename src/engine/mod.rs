//! The sans-IO engine: every decision about what to publish and when, with no network, no
//! GStreamer and no clock of its own.
//!
//! An adapter (the element, the CLI player, a test) feeds [`Observation`]s with the current
//! wall-clock time and carries out the [`Action`]s that come back: publish on MQTT, write the
//! local store, seek or pause the player. Time only moves when the caller says so, so the
//! rules (anchors, drift, heartbeat, resume) are tested with a fake clock.
//!
//! - `handoff`: both ends of a make-before-break handoff (offer, accept, switch, lease).
//! - `directory`: what the account's devices say, and which device a name means.
//! - `resume`: resume points (recorded, looked up, moved on rekey, republished when lost).
//! - [`gate`]: a player's buffers between a media's first buffer and the resume decision.
//! - [`clocks`]: the other devices' clocks, measured, so that their anchors read right.

pub mod clocks;
mod directory;
pub mod gate;
mod handoff;
pub mod plan;
mod resume;

pub use directory::{Directory, ResolveError};

use std::collections::{BTreeMap, BTreeSet};

use crate::hlc::{HybridClock, Stamp};
use crate::model::{
    Anchor, Device, Media, PlayState, QueueItem, ResumeRules, ResumeVerdict, SECOND_NS, Track,
};
use crate::wire::{
    self, Availability, Body, Command, CommandBody, DeviceInfo, Event, EventName, HandoffFailure,
    HandoffResult, HandoffTrigger, Incoming, Lease, ResumePoint, SessionState, Status, Topic,
    TopicKind,
};

/// How the engine behaves; the element's properties map onto these.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub account: String,
    pub device: Device,
    /// Session id for what this device plays; kept across handoffs.
    pub session: String,
    pub rules: ResumeRules,
    /// Publish a new anchor when the observed position is this far from the prediction.
    pub drift_threshold_ns: u64,
    /// While playing, save the position in the local store this often (crash safety on
    /// this device). The anchor itself needs no republishing: it predicts the position.
    pub heartbeat_ns: u64,
    /// Every this many heartbeats the broker's resume point is refreshed too (crash safety
    /// for the other devices), so steady playback costs a few kilobytes an hour, sealed.
    pub broker_refresh_heartbeats: u32,
    /// Software name and version, for the device info.
    pub software: String,
    pub capabilities: Vec<String>,
    /// Publish availability, device info and a session (a player); off for a controller
    /// such as `continuity transfer`, which only sends commands and reads answers.
    pub announce: bool,
    /// A handoff target not playing within this time gives up; the source plays on.
    pub handoff_timeout_ns: u64,
    /// Automatic mode: starting media that a device of the account was playing when it went
    /// offline, at most this long ago, continues from where it was then. `None`: off.
    pub automatic_window_ns: Option<u64>,
    /// Automatic handoff: devices (ids, names or class names such as `tv`) this one hands
    /// its session to by itself when one of them comes online while it plays, instead of
    /// suggesting it. Empty: suggestions only.
    pub auto_handoff: Vec<String>,
    /// A handoff target prerolls where the source will be when the target is ready (as it
    /// learned, see [`plan`]) and the switch agreed; at least this much later.
    pub preroll_lead_ns: u64,
    /// The switch instant is at least this far ahead when it is agreed.
    pub switch_margin_ns: u64,
    /// How resume topics are keyed (keyed by the account's media key when sealed).
    pub media_keys: wire::MediaKeys,
}

impl EngineConfig {
    pub fn new(account: &str, device: Device) -> EngineConfig {
        EngineConfig {
            account: account.to_owned(),
            // One per start: a session that moved to another device before a restart is
            // that device's now, and must not be confused with what this one plays next.
            session: format!("{}-{:08x}", device.id, fastrand::u32(..)),
            device,
            rules: ResumeRules::default(),
            drift_threshold_ns: 100_000_000,
            heartbeat_ns: 30 * SECOND_NS,
            broker_refresh_heartbeats: 20,
            software: concat!("continuity ", env!("CARGO_PKG_VERSION")).to_owned(),
            capabilities: vec!["play".into(), "resume".into(), "handoff".into()],
            announce: true,
            handoff_timeout_ns: 3 * SECOND_NS,
            preroll_lead_ns: 20_000_000,
            automatic_window_ns: None,
            auto_handoff: Vec::new(),
            switch_margin_ns: 15_000_000,
            media_keys: wire::MediaKeys::Plain,
        }
    }
}

/// A fact the adapter observed.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// New media started (stream-start with a different identity).
    MediaStarted(Media),
    /// More is known about the current media (tags, duration); fields present replace.
    MediaUpdated(Media),
    /// A discontinuity: play, pause, seek or rate change, with the position at that instant.
    Playback {
        position_ns: u64,
        state: PlayState,
        rate: f64,
    },
    /// The position seen in the stream now; checked against the prediction.
    Position { position_ns: u64 },
    /// Selected tracks changed.
    Tracks {
        audio: Option<Track>,
        subtitle: Option<Track>,
    },
    /// What plays after the current item.
    Queue(Vec<QueueItem>),
    /// End of stream at this position.
    Eos { position_ns: u64 },
    /// The player stops (pipeline to NULL): the final position.
    Stopped { position_ns: u64 },
    /// A message from the broker.
    Incoming(Incoming),
    /// Handoff target: the media asked for by [`PlayerAction::Load`] (or a seek after it) is
    /// prerolled at this position.
    Prerolled { position_ns: u64 },
    /// Handoff target: the media cannot be loaded.
    LoadFailed { reason: String },
    /// Handoff target: the first frame after [`PlayerAction::PlayAt`] played now, from here.
    Started { position_ns: u64 },
    /// Time passed; lets the heartbeat fire.
    Tick,
}

/// Something for the player itself to do.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayerAction {
    /// Play now; a [`PlayerAction::PlayAt`] or [`PlayerAction::PauseAt`] not yet due is off.
    Play,
    /// Pause now; a [`PlayerAction::PlayAt`] or [`PlayerAction::PauseAt`] not yet due is off.
    Pause,
    Seek {
        position_ns: u64,
    },
    /// Handoff target: load this media (paused) and preroll at the position, with these
    /// tracks; answer with [`Observation::Prerolled`] or [`Observation::LoadFailed`]. When
    /// `loaded`, the player has this media already: it loads nothing, and a
    /// [`PlayerAction::Preroll`] follows.
    Load {
        uri: String,
        media: Box<Media>,
        position_ns: u64,
        audio: Option<Track>,
        subtitle: Option<Track>,
        loaded: bool,
        /// The source's playback rate, which the target plays at from the switch.
        rate: f64,
    },
    /// Handoff target: the media is loaded; seek there (staying paused) and answer with
    /// [`Observation::Prerolled`] or [`Observation::LoadFailed`]. Unlike
    /// [`PlayerAction::Seek`] (a remote command), it is part of a handoff.
    Preroll {
        position_ns: u64,
        /// As in [`PlayerAction::Load`].
        rate: f64,
    },
    /// Start playing at this wall-clock instant; answer with [`Observation::Started`].
    PlayAt {
        at_unix_ns: u64,
    },
    /// Pause at this wall-clock instant (a handoff's source).
    PauseAt {
        at_unix_ns: u64,
    },
    /// Drop what a failed handoff loaded.
    Unload,
}

/// What the engine tells its adapter, beside player actions.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A handoff this device took part in or asked for ended.
    HandoffResult(HandoffResult),
    /// Another device holds this device's session now.
    LeaseLost {
        to: String,
        /// Its name, as the account's devices say (the id when none is known).
        name: String,
    },
    /// A device of another class came online while this one plays: the application may
    /// offer to continue there ("the TV is on: continue there?"). Nothing happens by itself.
    HandoffSuggested {
        device: String,
        name: String,
        class: crate::model::DeviceClass,
    },
    /// The media of a handoff to this device gave nothing to preroll within the handoff's
    /// timeout (`after_ns`, from the request): a download that stalls, a server that
    /// accepts and sends nothing. The handoff fails with `media-unavailable` (its
    /// [`Notice::HandoffResult`] follows), and the application lets go of the load.
    LoadStalled { handoff: String, after_ns: u64 },
    /// A handoff in automatic mode: the session goes to `device` (`outgoing`, told by the
    /// device that starts it) or came from it (told by the target once it plays). The
    /// application says so, and offers to go back ([`Engine::hand_back`]).
    AutomaticHandoff {
        device: String,
        name: String,
        outgoing: bool,
    },
}

/// What the adapter must carry out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish on MQTT: QoS 1 when `reliable` (retained messages, commands), else QoS 0.
    Publish {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
        reliable: bool,
    },
    /// Write this device's session to the local store.
    StoreSession(Box<SessionState>),
    /// Write a resume point to the local store.
    StoreResume(Box<ResumePoint>),
    /// Keep what this device learned of its readiness for handoffs (see [`plan`]) in the
    /// local store; [`Engine::restore_ready_time`] takes it back at the next start.
    StoreReadyTime {
        key: String,
        estimate: plan::Estimate,
    },
    /// Publish this device's event on `events` and keep it in the local store.
    Record(Box<Event>),
    /// Ask the player to act (a remote command, a handoff step).
    Player(PlayerAction),
    /// Tell the application.
    Notify(Notice),
}

/// Where to start a media, and from which device.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeFrom {
    pub position_ns: u64,
    /// The device that left the point or plays the session.
    pub device: String,
    /// When that device recorded it.
    pub when_unix_ns: u64,
    /// Pull handoff: the session (id and lease epoch) is live on `device`; starting here
    /// takes it over.
    pub live: Option<(String, u64)>,
    /// The tracks that played there, by language (for the player to select the same).
    pub audio: Option<Track>,
    pub subtitle: Option<Track>,
}

/// A device that came online is suggested when this one plays within this time of it (a
/// TV switched on as the phone starts counts; one on for an hour does not).
pub const SUGGEST_WITHIN_NS: u64 = 10_000_000_000;

/// When the second and third probes of a playing device leave, after the first.
const PROBES_AFTER_ONLINE_NS: [u64; 2] = [500_000_000, 2_000_000_000];

/// A clock sample whose round trip is longer than this is rough (its offset may be off by
/// half of it): the device is probed again after [`PROBE_RETRY_NS`], at most
/// [`MAX_PROBE_RETRIES`] times since it came online.
const ROUGH_RTT_NS: u64 = 50_000_000;
const PROBE_RETRY_NS: u64 = 3_000_000_000;
const PROBE_RETRY_SOON_NS: u64 = 1_100_000_000;
/// A probe not answered within this is taken as lost (and sent again).
const PROBE_LOST_NS: u64 = 1_000_000_000;
const MAX_PROBE_RETRIES: u32 = 5;

/// The engine of one device.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    clock: HybridClock,
    media: Option<Media>,
    anchor: Option<Anchor>,
    audio: Option<Track>,
    subtitle: Option<Track>,
    /// The adapter told the tracks of the current media ([`Observation::Tracks`]).
    tracks_reported: bool,
    queue: Vec<QueueItem>,
    /// The session this device plays (it changes when a handoff brings another one here).
    session: String,
    lease: Lease,
    handoffs: handoff::Handoffs,
    /// How long this device takes to be ready for a handoff.
    ready: plan::ReadyTimes,
    /// Clock probes to send later, by device (see [`Engine::probe_clock_soon`]).
    probes_due: BTreeMap<String, Vec<u64>>,
    /// Devices whose clock was measured since they came online: a device's clock is
    /// measured once it plays (see [`Engine::measure_if_playing`]).
    clocks_measured: BTreeSet<String>,
    /// Probes sent again since a device came online because its samples were rough.
    probe_retries: BTreeMap<String, u32>,
    /// Probes sent again since a device came online because one went unanswered.
    probes_lost: BTreeMap<String, u32>,
    /// This device took its session back by itself (its new holder went offline) at this
    /// instant: for a moment it yields to a person who started the media on another device
    /// meanwhile (after a freeze, the will comes before the news of that start).
    took_back_ns: Option<u64>,
    /// Recent commands, by sender and id: QoS 1 delivers at least once, so a command can
    /// arrive twice.
    seen_commands: std::collections::VecDeque<(String, String)>,
    /// Wall-clock instant of the last session publish or heartbeat.
    last_publish_ns: Option<u64>,
    /// Wall-clock instant the broker's resume point was last refreshed.
    last_resume_publish_ns: Option<u64>,
    /// Resume topics (media keys) the broker has sent since the link last connected, with
    /// the stamp of what it holds: what [`Engine::synced`] need not repair.
    broker_resume: BTreeMap<String, Stamp>,
    /// Devices seen going offline while they played: when, and when a witness resume point
    /// is due (after [`resume::WITNESS_GRACE_NS`]) unless it comes back first.
    witnesses: BTreeMap<String, (u64, u64)>,
    directory: Directory,
    /// Events this device recorded since it started (their ids' sequence).
    events_recorded: u64,
    /// Devices that came online, by when: suggested once their info is in and this device
    /// plays, within [`SUGGEST_WITHIN_NS`].
    suggest: BTreeMap<String, u64>,
    /// Devices the broker's retained picture says are online, by when that came: suggested
    /// like those that came online after this one, if their info was stamped after this
    /// device first announced itself. The retain flag alone cannot tell: a subscription
    /// that a busy broker makes late finds a device that came online meanwhile retained,
    /// and rumqttd flags what it forwards live as retained too.
    suggest_retained: BTreeMap<String, u64>,
    /// When this device first announced itself.
    announced_ns: Option<u64>,
    /// Since this device's session last moved to another device, its player said it paused:
    /// a play after that is a person pressing play (which takes the session back), not the
    /// player catching up with the pause.
    paused_since_moved: bool,
    /// Resume topics whose newest point of this device's is only in its store (a heartbeat
    /// between broker refreshes): the next point that must reach the broker is published
    /// even when it is the same.
    unpublished_resume: BTreeSet<String>,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let directory = Directory {
            media_keys: cfg.media_keys.clone(),
            ..Directory::default()
        };
        Engine {
            clock: HybridClock::new(&cfg.device.id),
            lease: Lease {
                device: cfg.device.id.clone(),
                epoch: 0,
            },
            session: cfg.session.clone(),
            handoffs: handoff::Handoffs::new(format!("{:06x}-", fastrand::u32(..0x100_0000))),
            ready: plan::ReadyTimes::default(),
            probes_due: BTreeMap::new(),
            clocks_measured: BTreeSet::new(),
            probe_retries: BTreeMap::new(),
            probes_lost: BTreeMap::new(),
            took_back_ns: None,
            seen_commands: std::collections::VecDeque::new(),
            cfg,
            media: None,
            anchor: None,
            audio: None,
            subtitle: None,
            tracks_reported: false,
            queue: Vec::new(),
            last_publish_ns: None,
            last_resume_publish_ns: None,
            broker_resume: BTreeMap::new(),
            witnesses: BTreeMap::new(),
            directory,
            events_recorded: 0,
            suggest: Default::default(),
            suggest_retained: Default::default(),
            announced_ns: None,
            paused_since_moved: false,
            unpublished_resume: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// A device was revoked: forget its availability, info and session (its messages are
    /// refused from now on, and the broker's copies may linger).
    pub fn forget_device(&mut self, device: &str) {
        if device != self.cfg.device.id {
            self.directory.forget(device);
            self.probes_due.remove(device);
            self.clocks_measured.remove(device);
        }
    }

    pub fn media(&self) -> Option<&Media> {
        self.media.as_ref()
    }

    pub fn anchor(&self) -> Option<&Anchor> {
        self.anchor.as_ref()
    }

    /// The messages that announce this device: birth (`online`), info, and the current
    /// session. The link republishes them after every reconnect.
    pub fn announce(&mut self, now_unix_ns: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.cfg.announce {
            return out;
        }
        self.announced_ns.get_or_insert(now_unix_ns);
        let account = &self.cfg.account;
        let id = &self.cfg.device.id;
        out.push(publish(
            &Topic::availability(account, id),
            &self.availability(Status::Online),
        ));
        let info = DeviceInfo {
            v: wire::VERSION,
            device: self.cfg.device.clone(),
            software: self.cfg.software.clone(),
            capabilities: self.cfg.capabilities.clone(),
            stamp: self.clock.stamp(now_unix_ns),
        };
        out.push(publish(&Topic::device_info(account, id), &info));
        self.publish_session(now_unix_ns, &mut out);
        self.record_event(now_unix_ns, EventName::DeviceOnline, None, &mut out);
        out
    }

    /// The availability message for this device (`offline` is the last will).
    pub fn availability(&self, status: Status) -> Availability {
        Availability {
            v: wire::VERSION,
            device: self.cfg.device.id.clone(),
            status,
        }
    }

    /// The next wall-clock instant at which [`Observation::Tick`] has work to do.
    pub fn next_wakeup(&self) -> Option<u64> {
        let heartbeat = match (self.anchor, self.last_publish_ns) {
            (Some(a), Some(last)) if a.state == PlayState::Playing => {
                Some(last + self.cfg.heartbeat_ns)
            }
            _ => None,
        };
        [
            heartbeat,
            self.handoffs.next_deadline(),
            self.next_witness(),
            self.probes_due.values().flatten().min().copied(),
            self.directory
                .clocks
                .oldest_waiting()
                .filter(|_| self.cfg.announce)
                .map(|t1| t1 + PROBE_LOST_NS),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Take back an estimate of this device's readiness that an earlier run kept (an
    /// [`Action::StoreReadyTime`]).
    pub fn restore_ready_time(&mut self, key: &str, estimate: plan::Estimate) {
        self.ready.restore(key, estimate);
    }

    /// The time this device plans for to be ready for a handoff of `media`.
    pub fn ready_plan_ns(&self, media: &str, loaded: bool) -> u64 {
        self.ready.plan_ns(media, loaded)
    }

    /// The lease of this device's session: who holds it, at which epoch.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The id of this device's session (it changes with new media, and when a handoff or
    /// a pull brings another device's session here).
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Feed one observation made at `now_unix_ns`.
    pub fn handle(&mut self, now_unix_ns: u64, obs: Observation) -> Vec<Action> {
        let mut out = Vec::new();
        match obs {
            Observation::MediaStarted(media) => {
                // Other media while this device's session was being handed off: that handoff
                // would move what no longer plays here.
                self.drop_outgoing_handoff(now_unix_ns, HandoffFailure::Rejected, &mut out);
                // Other media than a handoff to this device loads: the person chose it here.
                self.drop_incoming_handoff(now_unix_ns, &media.id, &mut out);
                let other = self.media.as_ref().is_some_and(|m| m.id != media.id);
                if (self.lease.device != self.cfg.device.id || other)
                    && self.handoffs.target.is_none()
                {
                    // Its session moved to another device, or this one starts other media:
                    // that is a new session, held here, which a transfer can move (a press of
                    // play on a device that had the old one takes the old one back).
                    self.session = format!("{}-{:08x}", self.cfg.device.id, fastrand::u32(..));
                    // The old session's holder is watched no more: this is another one.
                    self.handoffs.source = None;
                    self.lease = Lease {
                        device: self.cfg.device.id.clone(),
                        epoch: 0,
                    };
                }
                self.media = Some(media);
                // Tracks are the new media's, once the adapter tells them.
                self.audio = None;
                self.subtitle = None;
                self.tracks_reported = false;
                self.anchor = Some(Anchor {
                    position_ns: 0,
                    at_unix_ns: now_unix_ns,
                    rate: 1.0,
                    state: PlayState::Paused,
                });
                if self.handoffs.target.is_none() {
                    self.publish_event(now_unix_ns, EventName::Started, &mut out);
                }
                self.publish_session(now_unix_ns, &mut out);
            }
            Observation::MediaUpdated(update) => {
                let Some(media) = self.media.as_mut() else {
                    return out;
                };
                if media.merge(&update) {
                    self.publish_session(now_unix_ns, &mut out);
                }
            }
            // The dropped load's preroll.
            Observation::Playback { .. } | Observation::Position { .. } if self.media.is_none() => {
            }
            Observation::Playback {
                position_ns,
                state,
                rate,
            } => {
                if state != PlayState::Playing && self.lease.device != self.cfg.device.id {
                    self.paused_since_moved = true;
                }
                let new = Anchor {
                    position_ns,
                    at_unix_ns: now_unix_ns,
                    rate,
                    state,
                };
                let old = self.anchor.map(|a| a.rebased(now_unix_ns, self.duration()));
                let changed = match old {
                    None => true,
                    Some(o) => {
                        o.state != new.state
                            || o.rate != new.rate
                            || o.position_ns.abs_diff(new.position_ns) > self.cfg.drift_threshold_ns
                    }
                };
                if !changed {
                    return out;
                }
                // Paused, sought or a new rate while the session is being handed off: the
                // target prepared the old position, so that handoff is off (the source's
                // anchor is what a handoff carries; a new one takes the new one).
                self.drop_outgoing_handoff(now_unix_ns, HandoffFailure::Rejected, &mut out);
                let event = match (old.map(|o| o.state), state) {
                    (Some(PlayState::Playing), PlayState::Paused) => Some(EventName::Paused),
                    (Some(s), PlayState::Playing) if s != PlayState::Playing => {
                        Some(EventName::Resumed)
                    }
                    (Some(_), _) if old.map(|o| o.rate) == Some(rate) => Some(EventName::Seeked),
                    _ => None,
                };
                self.anchor = Some(new);
                if let Some(e) = event {
                    self.publish_event(now_unix_ns, e, &mut out);
                }
                if state == PlayState::Playing && self.pulls_back() {
                    // Play pressed on a device whose session moved on: it plays here again,
                    // and the device that holds it pauses (one device plays a session).
                    self.pull_back(now_unix_ns, new, &mut out);
                    return out;
                }
                self.publish_session(now_unix_ns, &mut out);
                if state == PlayState::Paused {
                    self.record_resume(now_unix_ns, position_ns, false, true, &mut out);
                }
            }
            Observation::Position { position_ns } => {
                let Some(a) = self.anchor else { return out };
                let predicted = a.position_at(now_unix_ns, self.duration());
                if predicted.abs_diff(position_ns) > self.cfg.drift_threshold_ns {
                    self.anchor = Some(Anchor {
                        position_ns,
                        at_unix_ns: now_unix_ns,
                        ..a
                    });
                    self.publish_session(now_unix_ns, &mut out);
                }
            }
            Observation::Tracks { audio, subtitle } => {
                self.tracks_reported = true;
                if audio != self.audio || subtitle != self.subtitle {
                    self.audio = audio;
                    self.subtitle = subtitle;
                    self.publish_session(now_unix_ns, &mut out);
                }
            }
            Observation::Queue(queue) => {
                if queue != self.queue {
                    self.queue = queue;
                    self.publish_session(now_unix_ns, &mut out);
                }
            }
            Observation::Eos { position_ns } => {
                let Some(a) = self.anchor else { return out };
                self.anchor = Some(Anchor {
                    position_ns,
                    at_unix_ns: now_unix_ns,
                    state: PlayState::Ended,
                    ..a
                });
                // An EOS far from the end (gst-launch -e on Ctrl-C) is not "finished".
                let finished = matches!(
                    self.cfg.rules.verdict(position_ns, self.duration(), false),
                    ResumeVerdict::Finished
                ) || self.duration().is_none();
                self.publish_event(now_unix_ns, EventName::Ended, &mut out);
                self.publish_session(now_unix_ns, &mut out);
                self.record_resume(now_unix_ns, position_ns, finished, true, &mut out);
            }
            Observation::Stopped { position_ns } => {
                let Some(a) = self.anchor else { return out };
                if a.state != PlayState::Ended {
                    self.anchor = Some(Anchor {
                        position_ns,
                        at_unix_ns: now_unix_ns,
                        state: PlayState::Paused,
                        ..a
                    });
                    self.record_resume(now_unix_ns, position_ns, false, true, &mut out);
                }
                self.publish_event(now_unix_ns, EventName::Stopped, &mut out);
                self.publish_session(now_unix_ns, &mut out);
            }
            Observation::Incoming(msg) => self.incoming(now_unix_ns, msg, &mut out),
            Observation::Tick => {
                self.probe_tick(now_unix_ns, &mut out);
                self.handoff_tick(now_unix_ns, &mut out);
                self.witness_tick(now_unix_ns, &mut out);
                let heartbeat = match (self.anchor, self.last_publish_ns) {
                    (Some(a), Some(last)) if a.state == PlayState::Playing => {
                        now_unix_ns >= last + self.cfg.heartbeat_ns
                    }
                    _ => false,
                };
                if heartbeat {
                    self.heartbeat(now_unix_ns, &mut out);
                }
            }
            Observation::Prerolled { position_ns } => {
                self.on_prerolled(now_unix_ns, position_ns, &mut out)
            }
            Observation::LoadFailed { .. } => self.on_load_failed(now_unix_ns, &mut out),
            Observation::Started { position_ns } => {
                self.on_started(now_unix_ns, position_ns, &mut out)
            }
        }
        self.suggest_handoffs(now_unix_ns, &mut out);
        out
    }

    /// Save where playback is locally; refresh the broker's resume point every
    /// `broker_refresh_heartbeats`.
    fn heartbeat(&mut self, now_unix_ns: u64, out: &mut Vec<Action>) {
        let Some(a) = self.anchor else { return };
        let position = a.position_at(now_unix_ns, self.duration());
        self.last_publish_ns = Some(now_unix_ns);
        let refresh = self.cfg.heartbeat_ns * u64::from(self.cfg.broker_refresh_heartbeats.max(1));
        let to_broker = self
            .last_resume_publish_ns
            .is_none_or(|last| now_unix_ns.saturating_sub(last) >= refresh);
        let mut state = self.session_state(now_unix_ns);
        state.anchor = Some(a.rebased(now_unix_ns, self.duration()));
        out.push(Action::StoreSession(Box::new(state)));
        self.record_resume(now_unix_ns, position, false, to_broker, out);
    }

    fn incoming(&mut self, now_unix_ns: u64, msg: Incoming, out: &mut Vec<Action>) {
        if let Body::Command(cmd) = &msg.body {
            if let TopicKind::Inbox { device } = &msg.topic.kind
                && *device == self.cfg.device.id
            {
                // When it arrived: a clock exchange's `t2` or `t4` (never later than now).
                let arrived = msg
                    .received_unix_ns
                    .map_or(now_unix_ns, |t| t.min(now_unix_ns));
                self.command(now_unix_ns, arrived, cmd, out);
            }
            return;
        }
        match &msg.body {
            Body::Availability(a) => {
                let was = self.directory.availability.get(&a.device).copied();
                match a.status {
                    Status::Offline if was == Some(Status::Online) => {
                        self.target_went_offline(now_unix_ns, &a.device, out);
                        self.probes_due.remove(&a.device);
                        self.clocks_measured.remove(&a.device);
                        self.directory
                            .went_offline
                            .insert(a.device.clone(), now_unix_ns);
                        self.witness_later(now_unix_ns, &a.device);
                    }
                    Status::Online => {
                        self.directory.went_offline.remove(&a.device);
                        self.witnesses.remove(&a.device);
                        if was != Some(Status::Online) {
                            self.clocks_measured.remove(&a.device);
                            self.probe_retries.remove(&a.device);
                            self.probes_lost.remove(&a.device);
                            // Online when this device subscribed (the broker's retained
                            // picture) is not news; coming online after is. Its info may
                            // come after, and this device may be starting to play:
                            // suggested once both are so.
                            if self.cfg.announce && a.device != self.cfg.device.id {
                                let to = if msg.retained {
                                    &mut self.suggest_retained
                                } else {
                                    &mut self.suggest
                                };
                                to.insert(a.device.clone(), now_unix_ns);
                            }
                        }
                    }
                    Status::Offline => {}
                }
            }
            Body::Session(s) => {
                self.clock.observe(&s.stamp, now_unix_ns);
                self.yield_after_take_back(now_unix_ns, s, out);
                // A higher epoch for this device's session elsewhere: it moved on.
                if s.device != self.cfg.device.id
                    && s.session == self.session
                    && s.lease.device == s.device
                {
                    self.lose_lease(now_unix_ns, s.lease.clone(), out);
                }
            }
            Body::Resume(r) => {
                self.clock.observe(&r.stamp, now_unix_ns);
                if let TopicKind::Resume { media_key } = &msg.topic.kind {
                    let held = self
                        .broker_resume
                        .entry(media_key.clone())
                        .or_insert_with(|| r.stamp.clone());
                    if *held < r.stamp {
                        *held = r.stamp.clone();
                    }
                }
            }
            Body::DeviceInfo(i) => self.clock.observe(&i.stamp, now_unix_ns),
            Body::Cleared => {
                if let TopicKind::Resume { media_key } = &msg.topic.kind {
                    self.broker_resume.remove(media_key);
                }
            }
            _ => {}
        }
        self.directory.apply(&msg);
        let device = match &msg.body {
            Body::Availability(a) => Some(a.device.clone()),
            Body::Session(s) => Some(s.device.clone()),
            _ => None,
        };
        if let Some(device) = device {
            self.measure_if_playing(now_unix_ns, &device, out);
        }
    }

    /// Measure `device`'s clock once it is online and plays: its anchor is read with that
    /// clock. Only players are measured, so a device that comes online costs probes to and
    /// from the players, not to and from every device of the account (a restart of the
    /// account's devices costs messages in proportion to their number, not to its square).
    fn measure_if_playing(&mut self, now_unix_ns: u64, device: &String, out: &mut Vec<Action>) {
        let plays = self
            .directory
            .sessions
            .get(device)
            .and_then(|s| s.anchor)
            .is_some_and(|a| a.state == PlayState::Playing);
        let online = self.directory.availability.get(device) == Some(&Status::Online);
        if plays && online && self.clocks_measured.insert(device.clone()) {
            self.probe_clock_soon(now_unix_ns, device, out);
        }
    }

    /// Whether this device plays its own session now (it is the one a handoff would move).
    fn plays_here(&self) -> bool {
        self.cfg.announce
            && self.lease.device == self.cfg.device.id
            && self.anchor.is_some_and(|a| a.state == PlayState::Playing)
    }

    /// Play was pressed here while another device holds this device's session: continue the
    /// media where it is now (the live session of it that another device holds, at its
    /// position, taken over), else take this device's own session back from its holder.
    fn pull_back(&mut self, now_unix_ns: u64, played: Anchor, out: &mut Vec<Action>) {
        self.handoffs.source = None;
        let media = self
            .media
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default();
        let live = self
            .resume_position(&media, now_unix_ns)
            .and_then(|f| f.live.clone().map(|(session, epoch)| (f, session, epoch)));
        let (holder, session, epoch) = match live {
            Some((from, session, epoch)) => {
                if from.position_ns.abs_diff(played.position_ns) > self.cfg.drift_threshold_ns {
                    let position_ns = from.position_ns + gate::PULL_LEAD_NS;
                    out.push(Action::Player(PlayerAction::Seek { position_ns }));
                    self.anchor = Some(Anchor {
                        position_ns,
                        ..played
                    });
                }
                (from.device, session, epoch)
            }
            None => (
                self.lease.device.clone(),
                self.session.clone(),
                self.lease.epoch,
            ),
        };
        out.extend(self.take_over(now_unix_ns, &holder, &session, epoch));
    }

    /// After taking its session back by itself, this device pauses when it learns that
    /// another device plays the same media in a session of its own: a person started it
    /// there, and two players would play it.
    fn yield_after_take_back(&mut self, now_unix_ns: u64, s: &SessionState, out: &mut Vec<Action>) {
        const YIELD_WITHIN_NS: u64 = 2_000_000_000;
        let Some(at) = self.took_back_ns else { return };
        if now_unix_ns > at + YIELD_WITHIN_NS {
            self.took_back_ns = None;
            return;
        }
        let same = s.device != self.cfg.device.id
            && s.session != self.session
            && s.lease.device == s.device
            && s.anchor.is_some_and(|a| a.state == PlayState::Playing)
            && s.media.as_ref().map(|m| &m.id) == self.media.as_ref().map(|m| &m.id);
        if same && let Some(a) = self.anchor.filter(|a| a.state == PlayState::Playing) {
            self.took_back_ns = None;
            out.push(Action::Player(PlayerAction::Pause));
            self.anchor = Some(Anchor {
                state: PlayState::Paused,
                ..a.rebased(now_unix_ns, self.duration())
            });
            self.publish_session(now_unix_ns, out);
        }
    }

    /// Whether this device, whose session another device holds, takes it back because its
    /// own player plays (a person pressed play): not while it is a handoff's target, nor
    /// before its player paused (a report from before the pause is no press).
    fn pulls_back(&self) -> bool {
        self.cfg.announce
            && self.lease.device != self.cfg.device.id
            && self.handoffs.target.is_none()
            && self.paused_since_moved
    }

    /// Devices that came online while this one plays (or just before it started), once
    /// their info is known: a device of another class is suggested, once each time it comes
    /// online.
    fn suggest_handoffs(&mut self, now_unix_ns: u64, out: &mut Vec<Action>) {
        // Retained, yet stamped after this device started: it came online since.
        let since = self.announced_ns.unwrap_or(u64::MAX);
        let retained = std::mem::take(&mut self.suggest_retained);
        for (device, at) in retained {
            match self.directory.devices.get(&device) {
                Some(info) if info.stamp.wall_ns >= since => {
                    self.suggest.insert(device, at);
                }
                Some(_) => {}
                None if now_unix_ns.saturating_sub(at) <= SUGGEST_WITHIN_NS => {
                    self.suggest_retained.insert(device, at);
                }
                None => {}
            }
        }
        if self.suggest.is_empty() {
            return;
        }
        self.suggest
            .retain(|_, at| now_unix_ns.saturating_sub(*at) <= SUGGEST_WITHIN_NS);
        if !self.plays_here() {
            return;
        }
        let ready: Vec<crate::wire::DeviceInfo> = self
            .suggest
            .keys()
            .filter_map(|d| self.directory.devices.get(d).cloned())
            .collect();
        for info in ready {
            self.suggest.remove(&info.device.id);
            let online = self.directory.availability.get(&info.device.id) == Some(&Status::Online);
            let d = &info.device;
            let automatic = self.cfg.auto_handoff.iter().any(|w| {
                w == &d.id
                    || w.eq_ignore_ascii_case(&d.name)
                    || w.eq_ignore_ascii_case(d.class.as_str())
            });
            if online && automatic && self.handoffs.is_idle() {
                let me = self.cfg.device.id.clone();
                let (_, actions) =
                    self.request_handoff_as(now_unix_ns, &d.id, &me, HandoffTrigger::Automatic);
                out.extend(actions);
                out.push(Action::Notify(Notice::AutomaticHandoff {
                    device: d.id.clone(),
                    name: d.name.clone(),
                    outgoing: true,
                }));
            } else if online && d.class != self.cfg.device.class {
                out.push(Action::Notify(Notice::HandoffSuggested {
                    device: d.id.clone(),
                    name: d.name.clone(),
                    class: d.class,
                }));
            }
        }
    }

    /// A command to this device, which arrived at `arrived_ns` and is handled at `now`.
    fn command(&mut self, now_unix_ns: u64, arrived_ns: u64, cmd: &Command, out: &mut Vec<Action>) {
        let key = (cmd.from.clone(), cmd.id.clone());
        if self.seen_commands.contains(&key) {
            return;
        }
        if self.seen_commands.len() >= 256 {
            self.seen_commands.pop_front();
        }
        self.seen_commands.push_back(key);
        let action = match cmd.body {
            CommandBody::Play => PlayerAction::Play,
            CommandBody::Pause => PlayerAction::Pause,
            CommandBody::Seek { position_ns } => PlayerAction::Seek { position_ns },
            // The adapter's business (see `node`): nothing for the player.
            CommandBody::Sync => return,
            CommandBody::ClockProbe { t1_unix_ns } => {
                if self.directory.clocks.may_reply(now_unix_ns) {
                    let reply = CommandBody::ClockReply {
                        t1_unix_ns,
                        t2_unix_ns: arrived_ns,
                        t3_unix_ns: now_unix_ns,
                    };
                    self.send(now_unix_ns, &cmd.from, reply, out);
                }
                return;
            }
            CommandBody::ClockReply { .. } => {
                self.directory.clock_reply(cmd, arrived_ns);
                self.probe_again_if_rough(now_unix_ns, &cmd.from);
                return;
            }
            _ => return self.handoff_command(now_unix_ns, arrived_ns, &cmd.from, &cmd.body, out),
        };
        out.push(Action::Player(action));
    }

    /// Measure `device`'s clock (a player reads other devices' anchors with their clocks:
    /// resuming a live session, witnessing a death, planning a handoff): three probes once
    /// it is online and plays, spread out (one that has just started answers the first one
    /// slowly), of which [`clocks::Clocks`] keeps the one with the smallest round trip; a
    /// handoff's request and its accept measure it again.
    fn probe_clock_soon(&mut self, now_unix_ns: u64, device: &str, out: &mut Vec<Action>) {
        self.probe_clock(now_unix_ns, device, out);
        if self.cfg.announce && device != self.cfg.device.id {
            self.probes_due.insert(
                device.to_owned(),
                PROBES_AFTER_ONLINE_NS.map(|d| now_unix_ns + d).to_vec(),
            );
        }
    }

    /// The best sample of `device`'s clock came back slowly (it was busy, frozen, or a
    /// message was held up), so its offset may be off by half that round trip: probe it
    /// again a little later, a few times at most, while none is due.
    fn probe_again_if_rough(&mut self, now_unix_ns: u64, device: &str) {
        let sample = self.directory.clocks.sample(device);
        let rough = sample.is_none_or(|s| s.rtt_ns > ROUGH_RTT_NS);
        // No sample kept (the reply was too late to be worth anything): the device answers
        // again, so it is awake: soon, though not within the second in which it answered
        // what waited for it (it answers a few a second at most). Its lost probes count
        // afresh.
        self.probes_lost.remove(device);
        let after = if sample.is_none() {
            PROBE_RETRY_SOON_NS
        } else {
            PROBE_RETRY_NS
        };
        let retries = self.probe_retries.entry(device.to_owned()).or_insert(0);
        if rough
            && self.cfg.announce
            && *retries < MAX_PROBE_RETRIES
            && self.probes_due.get(device).is_none_or(|d| d.is_empty())
        {
            *retries += 1;
            self.probes_due
                .insert(device.to_owned(), vec![now_unix_ns + after]);
        }
    }

    /// The probes scheduled by [`Engine::probe_clock_soon`] that are due, to devices still
    /// online.
    fn probe_tick(&mut self, now_unix_ns: u64, out: &mut Vec<Action>) {
        // A probe not answered within a second was lost: sent again, a few times at most.
        for device in self
            .directory
            .clocks
            .unanswered(now_unix_ns.saturating_sub(PROBE_LOST_NS))
        {
            let online = self.directory.availability.get(&device) == Some(&Status::Online);
            let retries = self.probes_lost.entry(device.clone()).or_insert(0);
            if online && *retries < MAX_PROBE_RETRIES {
                *retries += 1;
                self.probe_clock(now_unix_ns, &device, out);
            }
        }
        let availability = &self.directory.availability;
        let mut due = Vec::new();
        self.probes_due.retain(|device, at| {
            let online = availability.get(device) == Some(&Status::Online);
            let before = at.len();
            at.retain(|t| *t > now_unix_ns);
            if online && at.len() < before {
                due.push(device.clone());
            }
            online && !at.is_empty()
        });
        for device in due {
            self.probe_clock(now_unix_ns, &device, out);
        }
    }

    pub(super) fn probe_clock(&mut self, now_unix_ns: u64, device: &str, out: &mut Vec<Action>) {
        if !self.cfg.announce || device == self.cfg.device.id {
            return;
        }
        let t1_unix_ns = self.directory.clocks.probing(device, now_unix_ns);
        self.send(
            now_unix_ns,
            device,
            CommandBody::ClockProbe { t1_unix_ns },
            out,
        );
    }

    fn duration(&self) -> Option<u64> {
        self.media.as_ref().and_then(|m| m.duration_ns)
    }

    /// This device's session as it stands, with a fresh stamp.
    pub fn session_state(&mut self, now_unix_ns: u64) -> SessionState {
        SessionState {
            v: wire::VERSION,
            device: self.cfg.device.id.clone(),
            session: self.session.clone(),
            stamp: self.clock.stamp(now_unix_ns),
            media: self.media.clone(),
            anchor: self.anchor,
            audio: self.audio.clone(),
            subtitle: self.subtitle.clone(),
            queue: self.queue.clone(),
            lease: self.lease.clone(),
        }
    }

    fn publish_session(&mut self, now_unix_ns: u64, out: &mut Vec<Action>) {
        // A handoff's target says nothing of what it loads until the switch: the media it
        // prerolls is not a session of its own (others would take it for one, paused).
        if !self.cfg.announce || self.handoffs.target.as_ref().is_some_and(|t| !t.switched()) {
            return;
        }
        let state = self.session_state(now_unix_ns);
        out.push(publish(
            &Topic::session_state(&self.cfg.account, &self.cfg.device.id),
            &state,
        ));
        self.directory
            .sessions
            .offer(state.device.clone(), state.clone());
        out.push(Action::StoreSession(Box::new(state)));
        self.last_publish_ns = Some(now_unix_ns);
    }

    fn publish_event(&mut self, now_unix_ns: u64, name: EventName, out: &mut Vec<Action>) {
        self.record_event(now_unix_ns, name, None, out);
    }

    /// An event of this device: published on `events` and kept in its store
    /// ([`Action::Record`]). A helper that does not announce itself (the command line's
    /// `transfer`) records what only it knows: that it asked, and a target that never
    /// answered.
    pub(crate) fn record_event(
        &mut self,
        now_unix_ns: u64,
        name: EventName,
        handoff: Option<wire::HandoffFacts>,
        out: &mut Vec<Action>,
    ) {
        self.events_recorded += 1;
        let event = Event {
            v: wire::VERSION,
            id: Some(format!("{now_unix_ns:x}-{}", self.events_recorded)),
            device: self.cfg.device.id.clone(),
            name,
            at_unix_ns: now_unix_ns,
            media_id: self.media.as_ref().map(|m| m.id.clone()),
            position_ns: self
                .anchor
                .map(|a| a.position_at(now_unix_ns, self.duration())),
            session: Some(self.session.clone()).filter(|s| !s.is_empty()),
            handoff: handoff.map(Box::new),
        };
        out.push(Action::Record(Box::new(event)));
    }

    /// Record an event the application saw (a resume offered, taken or declined).
    pub fn note(&mut self, now_unix_ns: u64, name: EventName) -> Vec<Action> {
        let mut out = Vec::new();
        self.record_event(now_unix_ns, name, None, &mut out);
        out
    }
}

fn publish<T: serde::Serialize>(topic: &Topic, msg: &T) -> Action {
    Action::Publish {
        topic: topic.to_string(),
        payload: wire::encode(msg),
        retain: topic.retained(),
        reliable: true,
    }
}
