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

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

mod messages;
mod topics;
mod validate;

pub use messages::*;
pub use topics::*;
use validate::{Validate, check_id_field, from_value, json_type, same};

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
pub const MAX_MEDIA_NS: u64 = crate::patterns::MAX_MEDIA_NS;
/// Greatest wall-clock instant accepted (the year 2500), in ns since the Unix epoch.
pub const MAX_UNIX_NS: u64 = crate::patterns::MAX_UNIX_NS;
/// Greatest absolute playback rate.
pub const MAX_RATE: f64 = 64.0;

/// Why a payload or topic was rejected. `field` names use dots and indices, as in
/// `media.audio_tracks[2].language`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    Ask(StateAsk),
    HistoryAsk(HistoryAsk),
    HistoryAnswer(HistoryAnswer),
    /// An empty payload on a retained topic: the retained message was cleared.
    Cleared,
}

impl Body {
    /// The stamp of a stamped state (device info, session state, resume point).
    pub fn stamp(&self) -> Option<&crate::hlc::Stamp> {
        match self {
            Body::DeviceInfo(i) => Some(&i.stamp),
            Body::Session(s) => Some(&s.stamp),
            Body::Resume(r) => Some(&r.stamp),
            _ => None,
        }
    }
}

/// A decoded message with its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub topic: Topic,
    pub body: Body,
    /// The receiver's wall clock when the bytes arrived, when its transport says (the link
    /// does); `None` from the decoder.
    pub received_unix_ns: Option<u64>,
    /// The broker sent it as retained, for a subscription just made: its picture of how
    /// things were, not news (MQTT's retain flag on delivery; `false` from the decoder).
    pub retained: bool,
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
                received_unix_ns: None,
                retained: false,
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
            received_unix_ns: None,
            retained: false,
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
        TopicKind::Ask => {
            let m: StateAsk = from_value(value)?;
            m.validate()?;
            Body::Ask(m)
        }
        TopicKind::HistoryAsk => {
            let m: HistoryAsk = from_value(value)?;
            m.validate()?;
            Body::HistoryAsk(m)
        }
        TopicKind::HistoryAnswer => {
            let m: HistoryAnswer = from_value(value)?;
            m.validate()?;
            Body::HistoryAnswer(m)
        }
    };
    Ok(Incoming {
        topic,
        body,
        received_unix_ns: None,
        retained: false,
    })
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
        ("ask", one::<StateAsk>()),
        ("history-ask", one::<HistoryAsk>()),
        ("history-answer", one::<HistoryAnswer>()),
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
