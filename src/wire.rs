//! Wire contract v1: the MQTT topic layout and the JSON messages on it.
//!
//! Decoding is strict, because payloads come from anyone who can reach the broker: a size
//! limit, the major version, syntax of ids and topics, bounded strings and lists, positions
//! that a JavaScript client can represent exactly. Every failure is a [`WireError`] that names
//! the field. Unknown fields are ignored so that v1.x senders may add them.
//!
//! A payload is either a plain message (a JSON object with `"v": 1`) or a sealed envelope: a
//! JSON object with `"v": 1` and a `"sealed"` member, a name no plain message uses. See
//! `docs/PROTOCOL.md` for the prose version of this module.

use std::fmt;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hlc::{Stamp, Stamped};
use crate::model::{Anchor, Device, Media, QueueItem, Track};

/// The major version this implementation speaks.
pub const VERSION: u32 = 1;
/// Topic prefix for every message of this version.
pub const PREFIX: &str = "continuity/v1";
/// Largest payload accepted or sent.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Longest free text (titles, names).
pub const MAX_TEXT: usize = 1024;
/// Longest URI.
pub const MAX_URI: usize = 4096;
/// Longest id (account, device, session, media, command).
pub const MAX_ID: usize = 64;
/// Longest media id (URIs make long ids).
pub const MAX_MEDIA_ID: usize = MAX_URI;
/// Most tracks of one kind, queue items, capabilities.
pub const MAX_LIST: usize = 64;
/// Most queue items.
pub const MAX_QUEUE: usize = 256;
/// Greatest media time in ns: 2^53 - 1, the largest integer a JavaScript number holds exactly
/// (about 104 days of media). Wall-clock instants are bounded by [`MAX_UNIX_NS`] instead.
pub const MAX_MEDIA_NS: u64 = (1 << 53) - 1;
/// Greatest wall-clock instant accepted (the year 2500), in ns since the Unix epoch.
pub const MAX_UNIX_NS: u64 = 16_725_225_600 * 1_000_000_000;
/// Greatest absolute playback rate.
pub const MAX_RATE: f64 = 64.0;

/// Why a payload or topic was rejected. `field` names use dots and indices, as in
/// `media.audio_tracks[2].language`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("payload of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("topic '{topic}': {reason}")]
    Topic { topic: String, reason: String },
    #[error("payload is not a JSON object: {0}")]
    Json(String),
    #[error("unsupported major version {found} (this implementation speaks {VERSION})")]
    UnsupportedVersion { found: u64 },
    #[error("field '{field}': {reason}")]
    Field { field: String, reason: String },
}

impl WireError {
    /// A stable short code, used by the test vectors: `too-large`, `topic`, `json`,
    /// `version`, `field`.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "too-large",
            WireError::Topic { .. } => "topic",
            WireError::Json(_) => "json",
            WireError::UnsupportedVersion { .. } => "version",
            WireError::Field { .. } => "field",
        }
    }

    /// The field a `Field` error names.
    pub fn field(&self) -> Option<&str> {
        match self {
            WireError::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    fn field_err(field: impl Into<String>, reason: impl Into<String>) -> WireError {
        WireError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Topics

/// What a topic is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    /// `devices/<device>/availability`, retained: online / offline (last will).
    Availability { device: String },
    /// `devices/<device>/info`, retained: name, class, capabilities.
    DeviceInfo { device: String },
    /// `sessions/<device>/state`, retained: what the device plays.
    SessionState { device: String },
    /// `media/<media-key>/resume`, retained: the latest resume point for a media.
    Resume { media_key: String },
    /// `devices/<device>/inbox`, not retained, QoS 1: commands for the device.
    Inbox { device: String },
    /// `events`, not retained: analytics events.
    Events,
    /// `roster`, retained: the account's paired devices and their signing keys (sealed).
    Roster,
}

/// A parsed topic: account and kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic {
    pub account: String,
    pub kind: TopicKind,
}

impl Topic {
    pub fn new(account: &str, kind: TopicKind) -> Topic {
        Topic {
            account: account.to_owned(),
            kind,
        }
    }

    pub fn availability(account: &str, device: &str) -> Topic {
        Topic::new(
            account,
            TopicKind::Availability {
                device: device.to_owned(),
            },
        )
    }

    pub fn device_info(account: &str, device: &str) -> Topic {
        Topic::new(
            account,
            TopicKind::DeviceInfo {
                device: device.to_owned(),
            },
        )
    }

    pub fn session_state(account: &str, device: &str) -> Topic {
        Topic::new(
            account,
            TopicKind::SessionState {
                device: device.to_owned(),
            },
        )
    }

    pub fn resume(account: &str, media_id: &str) -> Topic {
        Topic::new(
            account,
            TopicKind::Resume {
                media_key: media_key(media_id),
            },
        )
    }

    pub fn inbox(account: &str, device: &str) -> Topic {
        Topic::new(
            account,
            TopicKind::Inbox {
                device: device.to_owned(),
            },
        )
    }

    pub fn events(account: &str) -> Topic {
        Topic::new(account, TopicKind::Events)
    }

    pub fn roster(account: &str) -> Topic {
        Topic::new(account, TopicKind::Roster)
    }

    /// The resume topic of a media key already computed (see [`MediaKeys`]).
    pub fn resume_key(account: &str, media_key: String) -> Topic {
        Topic::new(account, TopicKind::Resume { media_key })
    }

    /// Whether messages on this topic are retained by the broker.
    pub fn retained(&self) -> bool {
        !matches!(self.kind, TopicKind::Inbox { .. } | TopicKind::Events)
    }

    /// Parse and check a topic name.
    pub fn parse(topic: &str) -> Result<Topic, WireError> {
        let bad = |reason: &str| WireError::Topic {
            topic: topic.chars().take(200).collect(),
            reason: reason.to_owned(),
        };
        let rest = topic
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| bad(&format!("does not start with '{PREFIX}/'")))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let account = parts[0];
        check_id(account).map_err(|r| bad(&format!("account {r}")))?;
        let kind = match parts[1..] {
            ["devices", device, leaf] => {
                check_id(device).map_err(|r| bad(&format!("device id {r}")))?;
                let device = device.to_owned();
                match leaf {
                    "availability" => TopicKind::Availability { device },
                    "info" => TopicKind::DeviceInfo { device },
                    "inbox" => TopicKind::Inbox { device },
                    other => return Err(bad(&format!("unknown device topic '{other}'"))),
                }
            }
            ["sessions", device, "state"] => {
                check_id(device).map_err(|r| bad(&format!("device id {r}")))?;
                TopicKind::SessionState {
                    device: device.to_owned(),
                }
            }
            ["media", key, "resume"] => {
                check_media_key(key).map_err(|r| bad(&format!("media key {r}")))?;
                TopicKind::Resume {
                    media_key: key.to_owned(),
                }
            }
            ["events"] => TopicKind::Events,
            ["roster"] => TopicKind::Roster,
            _ => return Err(bad("not a continuity v1 topic")),
        };
        Ok(Topic {
            account: account.to_owned(),
            kind,
        })
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}/{}/", self.account)?;
        match &self.kind {
            TopicKind::Availability { device } => write!(f, "devices/{device}/availability"),
            TopicKind::DeviceInfo { device } => write!(f, "devices/{device}/info"),
            TopicKind::SessionState { device } => write!(f, "sessions/{device}/state"),
            TopicKind::Resume { media_key } => write!(f, "media/{media_key}/resume"),
            TopicKind::Inbox { device } => write!(f, "devices/{device}/inbox"),
            TopicKind::Events => f.write_str("events"),
            TopicKind::Roster => f.write_str("roster"),
        }
    }
}

/// Subscription filters for one account. (Not `devices/+/+`: that would also deliver every
/// device's inbox, and a device's own inbox twice.)
pub mod filters {
    use super::PREFIX;

    pub fn availability(account: &str) -> String {
        format!("{PREFIX}/{account}/devices/+/availability")
    }
    pub fn device_info(account: &str) -> String {
        format!("{PREFIX}/{account}/devices/+/info")
    }
    pub fn sessions(account: &str) -> String {
        format!("{PREFIX}/{account}/sessions/+/state")
    }
    pub fn resume(account: &str) -> String {
        format!("{PREFIX}/{account}/media/+/resume")
    }
    pub fn roster(account: &str) -> String {
        format!("{PREFIX}/{account}/roster")
    }
}

/// How media ids become topic segments. Topics never carry the id itself (ids are URIs and
/// may contain `/`, `+`, `#`, and they say what is played).
#[derive(Debug, Clone, Default)]
pub enum MediaKeys {
    /// Unkeyed ([`media_key`]): for `encryption=off` accounts only, since anyone can hash a
    /// guessed title or URI and compare.
    #[default]
    Plain,
    /// HMAC-SHA256 with the account's media key, first 128 bits in lower-case hex: the
    /// broker learns nothing of the id.
    Keyed(ring::hmac::Key),
}

impl MediaKeys {
    pub fn key(&self, media_id: &str) -> String {
        match self {
            MediaKeys::Plain => media_key(media_id),
            MediaKeys::Keyed(k) => ring::hmac::sign(k, media_id.as_bytes()).as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

/// The unkeyed topic segment for a media id: the first 128 bits of SHA-256 over a fixed label
/// and the id, in lower-case hex (see [`MediaKeys`]).
pub fn media_key(media_id: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"continuity media-key v1\0");
    ctx.update(media_id.as_bytes());
    let d = ctx.finish();
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Syntax of account, device, session and command ids: 1 to 64 characters from
/// `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".into());
    }
    if id.len() > MAX_ID {
        return Err(format!("is longer than {MAX_ID} characters"));
    }
    if id.starts_with('.') {
        return Err("starts with '.'".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "has '{}' (allowed: A-Z a-z 0-9 . _ -)",
            c.escape_default()
        ));
    }
    Ok(())
}

fn check_media_key(key: &str) -> Result<(), String> {
    if key.len() != 32 || !key.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err("is not 32 lower-case hex digits".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Messages

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
    pub v: u32,
    pub device: String,
    pub status: Status,
}

/// `devices/<device>/info` (retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceInfo {
    pub v: u32,
    pub device: Device,
    /// Software name and version ("continuity 0.1.0").
    pub software: String,
    /// What the device can do: `play`, `resume`, `handoff-target`, ...
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub stamp: Stamp,
}

/// Which device holds a session, and how many times it moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lease {
    /// The device that plays the session now.
    pub device: String,
    /// Raised by every handoff; a device that sees a higher epoch for its session stops.
    pub epoch: u64,
}

/// `sessions/<device>/state` (retained): what a device plays and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionState {
    pub v: u32,
    /// The publishing device; equals the topic's device.
    pub device: String,
    /// Session id; stays the same across handoffs.
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
    pub v: u32,
    pub media: Media,
    /// Media time to continue from, in ns.
    pub position_ns: u64,
    /// The media was finished: start from 0 (a tombstone that still orders by stamp).
    #[serde(default)]
    pub finished: bool,
    /// The device that recorded the point.
    pub device: String,
    pub stamp: Stamp,
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
        position_ns: u64,
    },
    /// Sent by a device to itself after connecting: when it comes back, the broker has
    /// delivered the retained messages of every subscription made before it.
    Sync,
    /// To the target T, from anyone: take over the session of `source`.
    HandoffRequest {
        handoff: String,
        source: String,
    },
    /// T to the source P: I want your session; `t1` is T's clock at sending.
    HandoffOffer {
        handoff: String,
        session: String,
        /// The lease epoch the session will have on T (P's epoch + 1).
        epoch: u64,
        t1_unix_ns: u64,
    },
    /// P to T: agreed. `t2` is P's clock when the offer arrived, `t3` when it answered (the
    /// four timestamps give the clock offset and the round trip); `anchor` is where P is.
    HandoffAccept {
        handoff: String,
        t1_unix_ns: u64,
        t2_unix_ns: u64,
        t3_unix_ns: u64,
        anchor: Anchor,
    },
    /// P to T: no.
    HandoffReject {
        handoff: String,
        reason: HandoffFailure,
    },
    /// T to P: T plays from `position_ns` at `at_unix_ns` (P's clock); P pauses then.
    HandoffSwitch {
        handoff: String,
        at_unix_ns: u64,
        position_ns: u64,
    },
    /// T to P: the handoff is off; P plays on.
    HandoffCancel {
        handoff: String,
        reason: HandoffFailure,
    },
    /// T to whoever asked: how it went.
    HandoffResult(HandoffResult),
    /// Pull handoff: the sender started the same media at the session's live position and
    /// holds the session now, at `epoch`; the receiver stops being active (pauses).
    Takeover {
        session: String,
        epoch: u64,
    },
}

/// Why a handoff failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HandoffFailure {
    /// The target did not answer (it is offline or unreachable).
    TargetOffline,
    /// The target is in another handoff.
    TargetBusy,
    /// The target cannot load the media (no URI it can use, or loading failed).
    MediaUnavailable,
    /// The target was not ready in time (default 3 s).
    Timeout,
    /// The source refused (it does not play that session, or is not its active device).
    Rejected,
    /// Another handoff of the same session won.
    Superseded,
}

impl HandoffFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffFailure::TargetOffline => "target-offline",
            HandoffFailure::TargetBusy => "target-busy",
            HandoffFailure::MediaUnavailable => "media-unavailable",
            HandoffFailure::Timeout => "timeout",
            HandoffFailure::Rejected => "rejected",
            HandoffFailure::Superseded => "superseded",
        }
    }
}

impl fmt::Display for HandoffFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a handoff, as the target reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HandoffResult {
    pub handoff: String,
    pub source: String,
    pub target: String,
    /// Absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<HandoffFailure>,
    /// From the request reaching the target to the target playing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ns: Option<u64>,
    /// Target's first position minus the source's position at that instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_error_ns: Option<i64>,
    /// Source clock minus target clock, measured during the exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ns: Option<u64>,
}

/// `devices/<device>/inbox` (QoS 1, not retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Command {
    pub v: u32,
    /// Unique per sender; answers refer to it.
    pub id: String,
    /// Sending device.
    pub from: String,
    /// Receiving device; equals the topic's device.
    pub to: String,
    /// Sender's wall clock at sending, ns since the Unix epoch.
    pub sent_unix_ns: u64,
    pub body: CommandBody,
}

/// What happened, for `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventName {
    Started,
    Paused,
    Resumed,
    Seeked,
    Ended,
    Stopped,
}

/// `events` (not retained): analytics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub v: u32,
    pub device: String,
    pub name: EventName,
    pub at_unix_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_ns: Option<u64>,
}

/// The sealed part of an envelope. Reserved in v1: this implementation recognises and checks
/// its shape; opening it comes with the security work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sealed {
    /// Algorithm, `A256GCM`.
    pub alg: String,
    /// Which account key sealed it.
    pub key_id: String,
    /// Sending device.
    pub sender: String,
    /// Per-sender counter that only grows.
    pub counter: u64,
    /// 96-bit nonce, base64url without padding.
    pub nonce: String,
    /// Ciphertext and tag, base64url without padding.
    pub ct: String,
    /// Ed25519 signature of the sender's device key over the associated data, the nonce and
    /// the ciphertext, base64url without padding. Required on every sealed message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

/// A sealed envelope: `{"v": 1, "sealed": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SealedEnvelope {
    pub v: u32,
    pub sealed: Sealed,
}

/// Most devices an account's roster lists (revoked ones included).
pub const MAX_ROSTER: usize = 256;

/// One device of an account's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RosterEntry {
    pub device: String,
    pub name: String,
    /// Ed25519 public key that signs what the device sends, base64url without padding.
    pub public_key: String,
    /// When the entry was last changed (added, or revoked); the later change wins.
    pub changed_unix_ns: u64,
    /// A revoked device's messages are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
}

/// The account's paired devices: `roster`, retained, always sealed and signed by a device
/// the receiver already trusts. Receivers merge entry by entry (the later change wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Roster {
    pub v: u32,
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
    pub id: String,
    pub changed_unix_ns: u64,
}

/// A decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Availability(Availability),
    DeviceInfo(DeviceInfo),
    Session(Box<SessionState>),
    Resume(Box<ResumePoint>),
    Command(Command),
    Event(Event),
    Sealed(SealedEnvelope),
    Roster(Roster),
    /// An empty payload on a retained topic: the retained message was cleared.
    Cleared,
}

/// A decoded message with its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub topic: Topic,
    pub body: Body,
}

/// Serialise a message. Messages built by this crate always fit the limits.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).expect("wire messages serialise")
}

/// Parse, check and decode a payload received on `topic`, with unkeyed media keys.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Incoming, WireError> {
    decode_with(topic, payload, &MediaKeys::Plain)
}

/// [`decode`] for an account whose resume topics use `keys`.
pub fn decode_with(topic: &str, payload: &[u8], keys: &MediaKeys) -> Result<Incoming, WireError> {
    let topic = Topic::parse(topic)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(WireError::TooLarge {
            size: payload.len(),
            limit: MAX_PAYLOAD,
        });
    }
    if payload.is_empty() {
        if topic.retained() {
            return Ok(Incoming {
                topic,
                body: Body::Cleared,
            });
        }
        return Err(WireError::Json("empty payload".into()));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| WireError::Json(e.to_string()))?;
    let Value::Object(obj) = &value else {
        return Err(WireError::Json(format!("found {}", json_type(&value))));
    };
    match obj.get("v") {
        None => return Err(WireError::field_err("v", "missing")),
        Some(v) => match v.as_u64() {
            Some(n) if n == VERSION as u64 => {}
            Some(n) => return Err(WireError::UnsupportedVersion { found: n }),
            None => return Err(WireError::field_err("v", "must be a whole number")),
        },
    }
    if obj.contains_key("sealed") {
        let env: SealedEnvelope = from_value(value)?;
        env.validate()?;
        return Ok(Incoming {
            topic,
            body: Body::Sealed(env),
        });
    }
    let body = match &topic.kind {
        TopicKind::Availability { device } => {
            let m: Availability = from_value(value)?;
            same(device, &m.device, "device")?;
            check_id_field("device", &m.device)?;
            Body::Availability(m)
        }
        TopicKind::DeviceInfo { device } => {
            let m: DeviceInfo = from_value(value)?;
            same(device, &m.device.id, "device.id")?;
            m.validate()?;
            Body::DeviceInfo(m)
        }
        TopicKind::SessionState { device } => {
            let m: SessionState = from_value(value)?;
            same(device, &m.device, "device")?;
            m.validate()?;
            Body::Session(Box::new(m))
        }
        TopicKind::Resume { media_key: key } => {
            let m: ResumePoint = from_value(value)?;
            m.validate()?;
            if keys.key(&m.media.id) != *key {
                return Err(WireError::field_err(
                    "media.id",
                    "does not hash to the topic's media key",
                ));
            }
            Body::Resume(Box::new(m))
        }
        TopicKind::Inbox { device } => {
            let m: Command = from_value(value)?;
            same(device, &m.to, "to")?;
            m.validate()?;
            Body::Command(m)
        }
        TopicKind::Events => {
            let m: Event = from_value(value)?;
            m.validate()?;
            Body::Event(m)
        }
        TopicKind::Roster => {
            let m: Roster = from_value(value)?;
            m.validate()?;
            Body::Roster(m)
        }
    };
    Ok(Incoming { topic, body })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, WireError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports a missing field at its parent: name the field itself.
        if let Some(name) = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            let field = if path == "." {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            return WireError::field_err(field, "missing");
        }
        let field = if path == "." { String::new() } else { path };
        WireError::field_err(field, inner)
    })
}

fn same(topic_value: &str, body_value: &str, field: &str) -> Result<(), WireError> {
    if topic_value != body_value {
        return Err(WireError::field_err(
            field,
            format!("'{body_value}' does not match the topic's '{topic_value}'"),
        ));
    }
    Ok(())
}

fn check_id_field(field: &str, id: &str) -> Result<(), WireError> {
    check_id(id).map_err(|r| WireError::field_err(field, r))
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), WireError> {
    if s.len() > max {
        return Err(WireError::field_err(
            field,
            format!("is {} bytes, over the {max}-byte limit", s.len()),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(WireError::field_err(field, "has control characters"));
    }
    Ok(())
}

fn check_opt_text(field: &str, s: &Option<String>, max: usize) -> Result<(), WireError> {
    s.as_deref().map_or(Ok(()), |s| check_text(field, s, max))
}

fn check_media_ns(field: &str, v: u64) -> Result<(), WireError> {
    if v > MAX_MEDIA_NS {
        return Err(WireError::field_err(
            field,
            format!("{v} is over {MAX_MEDIA_NS} (2^53 - 1, exact in JavaScript)"),
        ));
    }
    Ok(())
}

fn check_unix_ns(field: &str, v: u64) -> Result<(), WireError> {
    if v > MAX_UNIX_NS {
        return Err(WireError::field_err(
            field,
            format!("{v} is after the year 2500"),
        ));
    }
    Ok(())
}

fn check_list<T>(field: &str, list: &[T], max: usize) -> Result<(), WireError> {
    if list.len() > max {
        return Err(WireError::field_err(
            field,
            format!("has {} items, over the limit of {max}", list.len()),
        ));
    }
    Ok(())
}

/// Checks beyond what the types express.
trait Validate {
    fn validate(&self) -> Result<(), WireError>;
}

fn validate_stamp(field: &str, s: &Stamp) -> Result<(), WireError> {
    check_unix_ns(&format!("{field}.wall_ns"), s.wall_ns)?;
    check_id_field(&format!("{field}.device"), &s.device)
}

fn validate_track(field: &str, t: &Track) -> Result<(), WireError> {
    check_opt_text(&format!("{field}.language"), &t.language, 35)?;
    check_opt_text(&format!("{field}.codec"), &t.codec, 128)
}

fn validate_media(field: &str, m: &Media) -> Result<(), WireError> {
    if m.id.is_empty() {
        return Err(WireError::field_err(format!("{field}.id"), "is empty"));
    }
    check_text(&format!("{field}.id"), &m.id, MAX_MEDIA_ID)?;
    check_opt_text(&format!("{field}.uri"), &m.uri, MAX_URI)?;
    check_opt_text(&format!("{field}.title"), &m.title, MAX_TEXT)?;
    check_opt_text(&format!("{field}.artist"), &m.artist, MAX_TEXT)?;
    check_opt_text(&format!("{field}.album"), &m.album, MAX_TEXT)?;
    check_opt_text(&format!("{field}.artwork_uri"), &m.artwork_uri, MAX_URI)?;
    if let Some(d) = m.duration_ns {
        check_media_ns(&format!("{field}.duration_ns"), d)?;
    }
    for (name, list) in [
        ("audio_tracks", &m.audio_tracks),
        ("subtitle_tracks", &m.subtitle_tracks),
    ] {
        check_list(&format!("{field}.{name}"), list, MAX_LIST)?;
        for (i, t) in list.iter().enumerate() {
            validate_track(&format!("{field}.{name}[{i}]"), t)?;
        }
    }
    check_list(&format!("{field}.alternates"), &m.alternates, MAX_LIST)?;
    for (i, a) in m.alternates.iter().enumerate() {
        check_text(&format!("{field}.alternates[{i}].uri"), &a.uri, MAX_URI)?;
    }
    Ok(())
}

fn validate_anchor(field: &str, a: &Anchor) -> Result<(), WireError> {
    check_media_ns(&format!("{field}.position_ns"), a.position_ns)?;
    check_unix_ns(&format!("{field}.at_unix_ns"), a.at_unix_ns)?;
    if !a.rate.is_finite() || a.rate == 0.0 || a.rate.abs() > MAX_RATE {
        return Err(WireError::field_err(
            format!("{field}.rate"),
            format!(
                "{} is not a finite non-zero rate within ±{MAX_RATE}",
                a.rate
            ),
        ));
    }
    Ok(())
}

impl Validate for DeviceInfo {
    fn validate(&self) -> Result<(), WireError> {
        check_id_field("device.id", &self.device.id)?;
        check_text("device.name", &self.device.name, MAX_TEXT)?;
        check_text("software", &self.software, MAX_TEXT)?;
        check_list("capabilities", &self.capabilities, MAX_LIST)?;
        for (i, c) in self.capabilities.iter().enumerate() {
            check_id_field(&format!("capabilities[{i}]"), c)?;
        }
        validate_stamp("stamp", &self.stamp)
    }
}

impl Validate for SessionState {
    fn validate(&self) -> Result<(), WireError> {
        check_id_field("device", &self.device)?;
        check_id_field("session", &self.session)?;
        validate_stamp("stamp", &self.stamp)?;
        if let Some(m) = &self.media {
            validate_media("media", m)?;
        }
        if let Some(a) = &self.anchor {
            validate_anchor("anchor", a)?;
        }
        if let Some(t) = &self.audio {
            validate_track("audio", t)?;
        }
        if let Some(t) = &self.subtitle {
            validate_track("subtitle", t)?;
        }
        check_list("queue", &self.queue, MAX_QUEUE)?;
        for (i, q) in self.queue.iter().enumerate() {
            let f = format!("queue[{i}]");
            check_text(&format!("{f}.id"), &q.id, MAX_MEDIA_ID)?;
            check_opt_text(&format!("{f}.uri"), &q.uri, MAX_URI)?;
            check_opt_text(&format!("{f}.title"), &q.title, MAX_TEXT)?;
            if let Some(d) = q.duration_ns {
                check_media_ns(&format!("{f}.duration_ns"), d)?;
            }
        }
        check_id_field("lease.device", &self.lease.device)
    }
}

impl Validate for ResumePoint {
    fn validate(&self) -> Result<(), WireError> {
        validate_media("media", &self.media)?;
        check_media_ns("position_ns", self.position_ns)?;
        check_id_field("device", &self.device)?;
        validate_stamp("stamp", &self.stamp)
    }
}

impl Validate for Command {
    fn validate(&self) -> Result<(), WireError> {
        check_id_field("id", &self.id)?;
        check_id_field("from", &self.from)?;
        check_id_field("to", &self.to)?;
        check_unix_ns("sent_unix_ns", self.sent_unix_ns)?;
        let signed = |field: &str, v: Option<i64>| match v {
            Some(v) if v.unsigned_abs() > MAX_MEDIA_NS => Err(WireError::field_err(
                field,
                format!("{v} is beyond ±{MAX_MEDIA_NS}"),
            )),
            _ => Ok(()),
        };
        match &self.body {
            CommandBody::Seek { position_ns } => check_media_ns("body.position_ns", *position_ns)?,
            CommandBody::Play | CommandBody::Pause | CommandBody::Sync => {}
            CommandBody::HandoffRequest { handoff, source } => {
                check_id_field("body.handoff", handoff)?;
                check_id_field("body.source", source)?;
            }
            CommandBody::HandoffOffer {
                handoff,
                session,
                t1_unix_ns,
                ..
            } => {
                check_id_field("body.handoff", handoff)?;
                check_id_field("body.session", session)?;
                check_unix_ns("body.t1_unix_ns", *t1_unix_ns)?;
            }
            CommandBody::HandoffAccept {
                handoff,
                t1_unix_ns,
                t2_unix_ns,
                t3_unix_ns,
                anchor,
            } => {
                check_id_field("body.handoff", handoff)?;
                check_unix_ns("body.t1_unix_ns", *t1_unix_ns)?;
                check_unix_ns("body.t2_unix_ns", *t2_unix_ns)?;
                check_unix_ns("body.t3_unix_ns", *t3_unix_ns)?;
                validate_anchor("body.anchor", anchor)?;
            }
            CommandBody::HandoffReject { handoff, .. }
            | CommandBody::HandoffCancel { handoff, .. } => {
                check_id_field("body.handoff", handoff)?;
            }
            CommandBody::HandoffSwitch {
                handoff,
                at_unix_ns,
                position_ns,
            } => {
                check_id_field("body.handoff", handoff)?;
                check_unix_ns("body.at_unix_ns", *at_unix_ns)?;
                check_media_ns("body.position_ns", *position_ns)?;
            }
            CommandBody::HandoffResult(r) => {
                check_id_field("body.handoff", &r.handoff)?;
                check_id_field("body.source", &r.source)?;
                check_id_field("body.target", &r.target)?;
                if let Some(l) = r.latency_ns {
                    check_media_ns("body.latency_ns", l)?;
                }
                if let Some(l) = r.rtt_ns {
                    check_media_ns("body.rtt_ns", l)?;
                }
                signed("body.position_error_ns", r.position_error_ns)?;
                signed("body.clock_offset_ns", r.clock_offset_ns)?;
            }
            CommandBody::Takeover { session, .. } => check_id_field("body.session", session)?,
        }
        Ok(())
    }
}

impl Validate for Event {
    fn validate(&self) -> Result<(), WireError> {
        check_id_field("device", &self.device)?;
        check_unix_ns("at_unix_ns", self.at_unix_ns)?;
        if let Some(id) = &self.media_id {
            check_text("media_id", id, MAX_MEDIA_ID)?;
        }
        if let Some(p) = self.position_ns {
            check_media_ns("position_ns", p)?;
        }
        Ok(())
    }
}

impl Validate for SealedEnvelope {
    fn validate(&self) -> Result<(), WireError> {
        let s = &self.sealed;
        if s.alg != "A256GCM" {
            return Err(WireError::field_err(
                "sealed.alg",
                format!("'{}' is not supported (expected A256GCM)", s.alg),
            ));
        }
        check_id_field("sealed.key_id", &s.key_id)?;
        check_id_field("sealed.sender", &s.sender)?;
        let b64url = |field: &str, v: &str, len: Option<usize>| {
            if !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(WireError::field_err(field, "is not base64url"));
            }
            if len.is_some_and(|l| v.len() != l) {
                return Err(WireError::field_err(field, "has the wrong length"));
            }
            Ok(())
        };
        // 12 bytes of nonce are 16 base64url characters.
        b64url("sealed.nonce", &s.nonce, Some(16))?;
        b64url("sealed.ct", &s.ct, None)?;
        // 64 bytes of signature are 86 base64url characters.
        match &s.sig {
            Some(sig) => b64url("sealed.sig", sig, Some(86)),
            None => Ok(()),
        }
    }
}

impl Validate for Roster {
    fn validate(&self) -> Result<(), WireError> {
        check_list("devices", &self.devices, MAX_ROSTER)?;
        if let Some(k) = &self.key
            && !(k.id.len() == 16 && k.id.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(WireError::field_err("key.id", "is not 16 hex digits"));
        }
        for (i, d) in self.devices.iter().enumerate() {
            check_id_field(&format!("devices[{i}].device"), &d.device)?;
            check_text(&format!("devices[{i}].name"), &d.name, MAX_TEXT)?;
            let key_ok = d.public_key.len() == 43
                && d.public_key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !key_ok {
                return Err(WireError::field_err(
                    format!("devices[{i}].public_key"),
                    "is not a 32-byte key in base64url",
                ));
            }
        }
        Ok(())
    }
}

/// Schemas of every message, by file name (`docs/schema/<name>.json`).
pub fn schemas() -> Vec<(&'static str, Value)> {
    fn one<T: JsonSchema>() -> Value {
        serde_json::to_value(schemars::schema_for!(T)).expect("schema serialises")
    }
    vec![
        ("availability", one::<Availability>()),
        ("device-info", one::<DeviceInfo>()),
        ("session-state", one::<SessionState>()),
        ("resume-point", one::<ResumePoint>()),
        ("command", one::<Command>()),
        ("event", one::<Event>()),
        ("sealed-envelope", one::<SealedEnvelope>()),
        ("roster", one::<Roster>()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        for t in [
            Topic::availability("home", "tv-1"),
            Topic::device_info("home", "tv-1"),
            Topic::session_state("home", "phone_2"),
            Topic::resume("home", "file:clip.ogg"),
            Topic::inbox("home", "tv-1"),
            Topic::events("home"),
        ] {
            assert_eq!(Topic::parse(&t.to_string()).unwrap(), t);
        }
    }

    #[test]
    fn topics_are_checked() {
        for bad in [
            "continuity/v2/home/events",
            "continuity/v1/ho+me/events",
            "continuity/v1/home/devices/tv/unknown",
            "continuity/v1/home/devices//info",
            "continuity/v1/home/media/NOTHEX/resume",
            "continuity/v1/home/sessions/tv/state/extra",
        ] {
            assert_eq!(Topic::parse(bad).unwrap_err().code(), "topic", "{bad}");
        }
    }

    #[test]
    fn media_key_hides_the_id() {
        let k = media_key("file:Secret Title.ogg");
        assert_eq!(k.len(), 32);
        assert!(!k.contains("Secret"));
        assert_eq!(k, media_key("file:Secret Title.ogg"));
        assert_ne!(k, media_key("file:Other.ogg"));
    }
}
