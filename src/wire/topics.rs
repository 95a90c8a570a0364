//! The topic layout: `continuity/v1/<account>/…`, parsed strictly, and how media ids become
//! topic segments.

use std::fmt;

use super::{MAX_ID, PREFIX, WireError};
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
    /// `ask`, not retained, QoS 1: a device that connected asks for what its broker lacks.
    Ask,
    /// `history/ask`, not retained, QoS 1: a device or view asks for the events it lacks.
    HistoryAsk,
    /// `history/answer`, not retained, QoS 1: events the asker lacks.
    HistoryAnswer,
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

    pub fn ask(account: &str) -> Topic {
        Topic::new(account, TopicKind::Ask)
    }

    pub fn history_ask(account: &str) -> Topic {
        Topic::new(account, TopicKind::HistoryAsk)
    }

    pub fn history_answer(account: &str) -> Topic {
        Topic::new(account, TopicKind::HistoryAnswer)
    }

    /// The resume topic of a media key already computed (see [`MediaKeys`]).
    pub fn resume_key(account: &str, media_key: String) -> Topic {
        Topic::new(account, TopicKind::Resume { media_key })
    }

    /// Whether messages on this topic are retained by the broker.
    pub fn retained(&self) -> bool {
        !matches!(
            self.kind,
            TopicKind::Inbox { .. }
                | TopicKind::Events
                | TopicKind::Ask
                | TopicKind::HistoryAsk
                | TopicKind::HistoryAnswer
        )
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
            ["ask"] => TopicKind::Ask,
            ["history", "ask"] => TopicKind::HistoryAsk,
            ["history", "answer"] => TopicKind::HistoryAnswer,
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
            TopicKind::Ask => f.write_str("ask"),
            TopicKind::HistoryAsk => f.write_str("history/ask"),
            TopicKind::HistoryAnswer => f.write_str("history/answer"),
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
    /// What one device publishes retained (availability, info, session): a device of a
    /// sealed account subscribes to these for each device its roster names, so that no
    /// other id's topics reach it (PROTOCOL.md, Topics). The availability through a wildcard
    /// on the level where only `devices` stands: a broker that hands nothing retained to a
    /// wildcard subscription (a RabbitMQ node, whose nodes hold what was published through
    /// them) still shows as one, so a device knows to wait for the answers to its ask.
    pub fn device(account: &str, device: &str) -> [String; 3] {
        [
            format!("{PREFIX}/{account}/+/{device}/availability"),
            format!("{PREFIX}/{account}/devices/{device}/info"),
            format!("{PREFIX}/{account}/sessions/{device}/state"),
        ]
    }
    pub fn roster(account: &str) -> String {
        format!("{PREFIX}/{account}/roster")
    }
    pub fn ask(account: &str) -> String {
        format!("{PREFIX}/{account}/ask")
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

/// What joins a device's id and a helper's name in a helper's id (`<device>~<name>`). A
/// helper (the command line tool run on a device) signs with the device's key and speaks
/// for it, with an inbox of its own. Not `.`: RabbitMQ turns a `.` in an MQTT topic into a
/// level separator on the way through, so an id with a dot splits into two topic levels.
pub const HELPER_SEP: char = '~';

/// The id of `device`'s helper `name`.
pub fn helper_id(device: &str, name: &str) -> String {
    format!("{device}{HELPER_SEP}{name}")
}

/// Syntax of account, device, session and command ids: 1 to 64 characters from
/// `A-Z a-z 0-9 . _ - ~`, not starting with `.` or `~`.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".into());
    }
    if id.len() > MAX_ID {
        return Err(format!("is longer than {MAX_ID} characters"));
    }
    if let Some(c) = id.chars().next().filter(|&c| c == '.' || c == HELPER_SEP) {
        return Err(format!("starts with '{c}'"));
    }
    if let Some(c) = id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || c == HELPER_SEP))
    {
        return Err(format!(
            "has '{}' (allowed: A-Z a-z 0-9 . _ - ~)",
            c.escape_default()
        ));
    }
    Ok(())
}

/// A device's own id (the one its key is paired under): an id without `~`, which marks a
/// helper, so that no device can be taken for another's helper.
pub fn check_device_id(id: &str) -> Result<(), String> {
    check_id(id)?;
    if id.contains(HELPER_SEP) {
        return Err(format!(
            "has '{HELPER_SEP}', which only a helper's id has (<device>{HELPER_SEP}<name>)"
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
