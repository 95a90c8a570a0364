//! The messages of contract v1, as Rust types; their JSON Schemas in `docs/schema/` are made
//! from these.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hlc::{Stamp, Stamped};
use crate::model::{Anchor, Device, Media, QueueItem, Track, wire_names};
/// `online` or `offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Offline,
}

/// `devices/<device>/availability` (retained). `offline` is also the last will.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Availability {
    /// Major version, 1.
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    pub status: Status,
}

/// `devices/<device>/info` (retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceInfo {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    pub device: Device,
    /// Software name and version ("continuity 0.1.0").
    #[schemars(length(max = 1024), pattern(crate::patterns::TEXT))]
    pub software: String,
    /// What the device can do: `play`, `resume`, `handoff`, `history`, ...
    #[serde(default)]
    #[schemars(length(max = 64), inner(pattern(crate::patterns::ID)))]
    pub capabilities: Vec<String>,
    pub stamp: Stamp,
}

/// Which device holds a session, and how many times it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lease {
    /// The device that plays the session now.
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    /// Raised by every handoff; a device that sees a higher epoch for its session stops.
    pub epoch: u64,
}

/// `sessions/<device>/state` (retained): what a device plays and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionState {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The publishing device; equals the topic's device.
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    /// Session id; stays the same across handoffs.
    #[schemars(pattern(crate::patterns::ID))]
    pub session: String,
    pub stamp: Stamp,
    /// What plays; absent when the device is idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// Where it is; absent when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Anchor>,
    /// Selected audio track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Track>,
    /// Selected subtitle track; absent when subtitles are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<Track>,
    /// Items after the current one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub queue: Vec<QueueItem>,
    pub lease: Lease,
}

impl Stamped for SessionState {
    fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

impl SessionState {
    /// Position extrapolated to `now_unix_ns`, when there is an anchor.
    pub fn position_at(&self, now_unix_ns: u64) -> Option<u64> {
        let duration = self.media.as_ref().and_then(|m| m.duration_ns);
        self.anchor.map(|a| a.position_at(now_unix_ns, duration))
    }
}

/// `media/<media-key>/resume` (retained): where to continue a media, from any device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResumePoint {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    pub media: Media,
    /// Media time to continue from, in ns.
    #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
    pub position_ns: u64,
    /// The media was finished: start from 0 (a tombstone that still orders by stamp).
    #[serde(default)]
    pub finished: bool,
    /// The device that recorded the point.
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    pub stamp: Stamp,
    /// The audio track that played there, so that a resume selects its language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Track>,
    /// The subtitles shown there; absent when they were off (or not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<Track>,
}

impl Stamped for ResumePoint {
    fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CommandBody {
    Play,
    Pause,
    Seek {
        #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
        position_ns: u64,
    },
    /// Sent by a device to itself after connecting: when it comes back, the broker has
    /// delivered the retained messages of every subscription made before it.
    Sync,
    /// To the target T, from anyone: take over the session of `source`.
    HandoffRequest {
        #[schemars(pattern(crate::patterns::ID))]
        handoff: String,
        #[schemars(pattern(crate::patterns::ID))]
        source: String,
        /// Asked by a device in automatic mode, not by a person (absent: by a person).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        automatic: bool,
    },
    /// T to the source P: I want your session; `t1` is T's clock at sending.
    HandoffOffer {
        #[schemars(pattern(crate::patterns::ID))]
        handoff: String,
        #[schemars(pattern(crate::patterns::ID))]
        session: String,
        /// The lease epoch the session will have on T (P's epoch + 1).
        epoch: u64,
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        t1_unix_ns: u64,
    },
    /// P to T: agreed. `t2` is P's clock when the offer arrived, `t3` when it answered (the
    /// four timestamps give the clock offset and the round trip); `anchor` is where P is.
    HandoffAccept {
        #[schemars(pattern(crate::patterns::ID))]
        handoff: String,
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        t1_unix_ns: u64,
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        t2_unix_ns: u64,
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        t3_unix_ns: u64,
        anchor: Anchor,
    },
    /// P to T: no.
    HandoffReject {
        #[schemars(pattern(crate::patterns::ID))]
        handoff: String,
        reason: HandoffFailure,
    },
    /// T to P: T plays from `position_ns` at `at_unix_ns` (P's clock); P pauses then.
    HandoffSwitch {
        #[schemars(pattern(crate::patterns::ID))]
        handoff: String,
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        at_unix_ns: u64,
        #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
        position_ns: u64,
    },
    /// T to P: the handoff is off; P plays on.
    HandoffCancel {
        #[schemars(pattern(crate::patterns::ID))]
        handoff: String,
        reason: HandoffFailure,
    },
    /// T to whoever asked: how it went.
    HandoffResult(HandoffResult),
    /// Pull handoff: the sender started the same media at the session's live position and
    /// holds the session now, at `epoch`; the receiver stops being active (pauses).
    Takeover {
        #[schemars(pattern(crate::patterns::ID))]
        session: String,
        epoch: u64,
    },
    /// Anyone to a device: what time is it for you? `t1` is the sender's clock at sending.
    /// The receiver answers with `clock-reply`.
    ClockProbe {
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        t1_unix_ns: u64,
    },
    /// The answer to a `clock-probe`: its `t1`, the replier's clock when the probe arrived
    /// (`t2`) and when it answered (`t3`). The four timestamps give the clock offset that
    /// reading the replier's anchors needs (`docs/PROTOCOL.md`, "Clocks").
    ClockReply {
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        t1_unix_ns: u64,
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        t2_unix_ns: u64,
        /// When the reply left: never before `t2_unix_ns` (equal is allowed). The decoder
        /// refuses a reply whose `t3_unix_ns` is less than its `t2_unix_ns` (`field`, at
        /// `body.t3_unix_ns`); JSON Schema cannot say so.
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        t3_unix_ns: u64,
    },
}

impl CommandBody {
    /// A `clock-probe` or `clock-reply` (sent at QoS 0).
    pub fn is_clock(&self) -> bool {
        matches!(
            self,
            CommandBody::ClockProbe { .. } | CommandBody::ClockReply { .. }
        )
    }
}

/// Why a handoff failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HandoffFailure {
    /// The target did not answer (it is offline or unreachable).
    TargetOffline,
    /// The target is in another handoff.
    TargetBusy,
    /// The target cannot load the media (no URI it can use, loading failed, or the load gave
    /// nothing to preroll within the timeout: a download that stalls).
    MediaUnavailable,
    /// The target had the media prerolled but was not playing in time (default 3 s).
    Timeout,
    /// The source refused (it does not play that session, or is not its active device).
    Rejected,
    /// Another handoff of the same session won.
    Superseded,
    /// The source plays nothing that can move: its media ended, or it has none.
    NothingPlaying,
    /// The target cannot play this kind of media (a browser that lacks the codec).
    UnsupportedMedia,
}

wire_names!(HandoffFailure {
    TargetOffline => "target-offline",
    TargetBusy => "target-busy",
    MediaUnavailable => "media-unavailable",
    Timeout => "timeout",
    Rejected => "rejected",
    Superseded => "superseded",
    NothingPlaying => "nothing-playing",
    UnsupportedMedia => "unsupported-media",
});

/// The outcome of a handoff, as the target reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HandoffResult {
    #[schemars(pattern(crate::patterns::ID))]
    pub handoff: String,
    #[schemars(pattern(crate::patterns::ID))]
    pub source: String,
    #[schemars(pattern(crate::patterns::ID))]
    pub target: String,
    /// Absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<HandoffFailure>,
    /// From the request reaching the target to the target playing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
    pub latency_ns: Option<u64>,
    /// Target's first position minus the source's position at that instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -(crate::patterns::MAX_MEDIA_NS as i64), max = crate::patterns::MAX_MEDIA_NS as i64))]
    pub position_error_ns: Option<i64>,
    /// Source clock minus target clock, measured during the exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -(crate::patterns::MAX_MEDIA_NS as i64), max = crate::patterns::MAX_MEDIA_NS as i64))]
    pub clock_offset_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
    pub rtt_ns: Option<u64>,
    /// Loads and seeks the target made before it played: 1 when its plan held, more when
    /// the media took longer to be ready than it planned for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::patterns::MAX_PREROLLS))]
    pub prerolls: Option<u32>,
}

/// `devices/<device>/inbox` (QoS 1, not retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Command {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Unique per sender; answers refer to it.
    #[schemars(pattern(crate::patterns::ID))]
    pub id: String,
    /// Sending device.
    #[schemars(pattern(crate::patterns::ID))]
    pub from: String,
    /// Receiving device; equals the topic's device.
    #[schemars(pattern(crate::patterns::ID))]
    pub to: String,
    /// Sender's wall clock at sending, ns since the Unix epoch.
    #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
    pub sent_unix_ns: u64,
    pub body: CommandBody,
}

/// What happened, for `events`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum EventName {
    Started,
    Paused,
    Resumed,
    Seeked,
    Ended,
    Stopped,
    /// The initiator asked a target to take over.
    HandoffRequested,
    /// The target offered to take over (it loads the media).
    HandoffOffered,
    /// The source accepted the offer.
    HandoffAccepted,
    /// The target plays: `handoff` has its figures.
    HandoffCompleted,
    /// The target gave up, or the initiator heard nothing: `handoff.failure` says why.
    HandoffFailed,
    /// A resume point was offered to the user (`resume=ask`).
    ResumeOffered,
    /// Playback resumed from a point or a live session of another device.
    ResumeTaken,
    /// A resume offer was turned down (the user played from the start).
    ResumeDeclined,
    /// The device came online (it says so itself when it connects).
    DeviceOnline,
    /// The device went offline cleanly (a device that vanishes cannot say it).
    DeviceOffline,
}

wire_names!(EventName {
    Started => "started",
    Paused => "paused",
    Resumed => "resumed",
    Seeked => "seeked",
    Ended => "ended",
    Stopped => "stopped",
    HandoffRequested => "handoff-requested",
    HandoffOffered => "handoff-offered",
    HandoffAccepted => "handoff-accepted",
    HandoffCompleted => "handoff-completed",
    HandoffFailed => "handoff-failed",
    ResumeOffered => "resume-offered",
    ResumeTaken => "resume-taken",
    ResumeDeclined => "resume-declined",
    DeviceOnline => "device-online",
    DeviceOffline => "device-offline",
});

/// How a handoff was asked for: the source's session pushed to a target, or pulled by a
/// device that started the same media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HandoffMode {
    Push,
    Pull,
}

/// Who asked for a handoff: a person, or a device in automatic mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HandoffTrigger {
    Manual,
    Automatic,
}

/// A handoff as an event tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HandoffFacts {
    #[schemars(pattern(crate::patterns::ID))]
    pub id: String,
    #[schemars(pattern(crate::patterns::ID))]
    pub source: String,
    #[schemars(pattern(crate::patterns::ID))]
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_class: Option<crate::model::DeviceClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_class: Option<crate::model::DeviceClass>,
    pub mode: HandoffMode,
    pub trigger: HandoffTrigger,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
    pub latency_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -(crate::patterns::MAX_MEDIA_NS as i64), max = crate::patterns::MAX_MEDIA_NS as i64))]
    pub position_error_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -(crate::patterns::MAX_MEDIA_NS as i64), max = crate::patterns::MAX_MEDIA_NS as i64))]
    pub clock_offset_ns: Option<i64>,
    /// The offset is within this of the truth (half the best sample's round trip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
    pub clock_error_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<HandoffFailure>,
}

/// `events` (not retained): analytics. Each device keeps its own and those it receives in
/// its local store, by `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Unique per event (the device id, its clock and a sequence number); absent from
    /// older devices' events, which are then told apart by device, name and instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::patterns::ID))]
    pub id: Option<String>,
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    pub name: EventName,
    #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
    pub at_unix_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096), pattern(crate::patterns::TEXT))]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
    pub position_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::patterns::ID))]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Box<HandoffFacts>>,
}

impl Event {
    /// Its key in a store: the `id`, or for an older device's event its device, name and
    /// instant.
    pub fn key(&self) -> String {
        match &self.id {
            Some(id) => id.clone(),
            None => format!("{}/{}/{}", self.device, self.name.as_str(), self.at_unix_ns),
        }
    }
}

/// The sealed part of an envelope (`docs/PROTOCOL.md`, "Sealed envelope"): the message,
/// encrypted with the account key and signed by its sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sealed {
    /// Algorithm, `A256GCM`.
    #[schemars(pattern(crate::patterns::ALG))]
    pub alg: String,
    /// Which account key sealed it: 16 lower-case hex digits.
    #[schemars(pattern(crate::patterns::KEY_ID))]
    pub key_id: String,
    /// Sending device.
    #[schemars(pattern(crate::patterns::DEVICE_ID))]
    pub sender: String,
    /// Per-sender counter that only grows.
    pub counter: u64,
    /// 96-bit nonce, base64url without padding.
    #[schemars(pattern(crate::patterns::B64_12))]
    pub nonce: String,
    /// Ciphertext and its 16-byte tag, base64url without padding.
    #[schemars(pattern(crate::patterns::CIPHERTEXT))]
    pub ct: String,
    /// Ed25519 signature of the sender's device key over the associated data, the nonce and
    /// the ciphertext, base64url without padding (86 characters).
    #[schemars(pattern(crate::patterns::B64_64))]
    pub sig: String,
}

/// A sealed envelope: `{"v": 1, "sealed": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SealedEnvelope {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    pub sealed: Sealed,
}

/// Most devices an account's roster lists (revoked ones included).
pub const MAX_ROSTER: usize = 256;

/// One device of an account's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RosterEntry {
    #[schemars(pattern(crate::patterns::DEVICE_ID))]
    pub device: String,
    #[schemars(length(max = 1024), pattern(crate::patterns::TEXT))]
    pub name: String,
    /// Ed25519 public key that signs what the device sends, base64url without padding.
    #[schemars(pattern(crate::patterns::B64_32))]
    pub public_key: String,
    /// When the entry was last changed (added, or revoked); the later change wins.
    #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
    pub changed_unix_ns: u64,
    /// A revoked device's messages are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
}

/// `ask` (not retained, QoS 1): a device that has connected and received what the broker
/// holds asks the account's online devices for what it lacks. A broker may hold less than
/// the account published (a cluster whose nodes keep retained messages apart, a broker that
/// lost them): every device that is not in `seen` as it is publishes its retained state
/// again, so the asker hears it live. On a broker that holds everything, nobody answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StateAsk {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The asking device.
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    /// The devices the asker holds as online, with the stamp of the session state it holds
    /// for each (the asker itself left out).
    #[schemars(length(max = 256))]
    pub seen: Vec<Seen>,
}

/// One device as an asker holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Seen {
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    /// The stamp of the device's session state the asker holds; absent when it holds none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Stamp>,
}

/// Most day entries in a [`HistoryAsk`] (an asker that holds more lists the newest ones and
/// asks from the oldest day it lists).
pub const MAX_HISTORY_DAYS: usize = 600;
/// Most events in one [`HistoryAnswer`].
pub const MAX_HISTORY_EVENTS: usize = 256;

/// `history/ask` (not retained, QoS 1): a device, or a view of the command line, asks the
/// account's devices for the events it lacks (each device hears only what is published
/// while it is connected). It says what it holds, per device and UTC day, as a count and a
/// digest; a device that holds other events of such a day sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryAsk {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// Names this ask in the answers.
    #[schemars(pattern(crate::patterns::ID))]
    pub id: String,
    /// The asking device (or helper).
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    /// Events from this instant on are asked for.
    #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
    pub since_unix_ns: u64,
    /// What the asker holds from `since_unix_ns` on, by the device that recorded it.
    #[schemars(length(max = 256))]
    pub held: Vec<HeldEvents>,
}

/// The events of one device that an asker holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeldEvents {
    /// The device that recorded them.
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    /// By UTC day; at most 600 entries in the whole ask.
    #[schemars(length(max = 600))]
    pub days: Vec<HeldDay>,
}

/// The events of one device and one UTC day that an asker holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeldDay {
    /// Days since the Unix epoch (UTC): `at_unix_ns / 86400e9`.
    #[schemars(range(max = 200_000))]
    pub day: u32,
    pub count: u32,
    /// The XOR of the first 8 bytes of SHA-256 over `device/key` of each event (the key:
    /// its `id`, or `device/name/at_unix_ns` for an event without one), as 16 lower-case
    /// hex digits.
    #[schemars(pattern(crate::patterns::KEY_ID))]
    pub digest: String,
}

/// `history/answer` (not retained, QoS 1): events that an asker lacks, as they were
/// published on `events` (in a sealed account, the sealed envelopes their recorders signed,
/// so that whoever relays them cannot change them). Every device keeps the new ones it
/// hears, whoever asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryAnswer {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The answering device.
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
    /// The ask answered (its `id`) and who asked.
    #[schemars(pattern(crate::patterns::ID))]
    pub ask: String,
    #[schemars(pattern(crate::patterns::ID))]
    pub to: String,
    /// Each an [Event] or, in a sealed account, the sealed envelope that carried it on
    /// `events`.
    #[schemars(length(max = 256))]
    pub events: Vec<serde_json::Map<String, serde_json::Value>>,
    /// This answerer has nothing more for this ask.
    pub last: bool,
}

/// The account's paired devices: `roster`, retained, always sealed and signed by a device
/// the receiver already trusts. Receivers merge entry by entry (the later change wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Roster {
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    #[schemars(length(max = 256))]
    pub devices: Vec<RosterEntry>,
    /// The account key in use since the last rotation (revoking a device rotates it).
    /// A device that lacks this key asks a paired device for it (`docs/PROTOCOL.md`,
    /// "Key rotation").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<RosterKey>,
}

/// Which account key is current, and since when; the later change wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RosterKey {
    /// The key id (as in envelopes): 16 hex digits.
    #[schemars(pattern(crate::patterns::KEY_ID))]
    pub id: String,
    #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
    pub changed_unix_ns: u64,
}
