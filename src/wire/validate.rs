//! Checks beyond what the types express: ids, bounded texts and lists, positions a JavaScript
//! client holds exactly. Each failure names the field.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::hlc::Stamp;
use crate::model::{Anchor, Media, Track};
pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, WireError> {
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let mut path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // Inside an internally tagged object (a command's body) serde reports an unknown
        // enum value at the object: name the member that holds it.
        if let Some(bad) = inner
            .strip_prefix("unknown variant `")
            .and_then(|r| r.split('`').next())
            && let Some(member) = object_at(&value, &path).and_then(|o| {
                o.iter()
                    .find(|(k, v)| *k != "type" && v.as_str() == Some(bad))
                    .map(|(k, _)| k.clone())
            })
        {
            path = if path == "." {
                member
            } else {
                format!("{path}.{member}")
            };
            return WireError::field_err(path, inner);
        }
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

/// The object at a serde_path_to_error path of plain members (`body`, `media`), if any.
fn object_at<'a>(value: &'a Value, path: &str) -> Option<&'a serde_json::Map<String, Value>> {
    let mut at = value;
    if path != "." {
        for part in path.split('.') {
            at = at.get(part)?;
        }
    }
    at.as_object()
}

pub(super) fn same(topic_value: &str, body_value: &str, field: &str) -> Result<(), WireError> {
    if topic_value != body_value {
        return Err(WireError::field_err(
            field,
            format!("'{body_value}' does not match the topic's '{topic_value}'"),
        ));
    }
    Ok(())
}

pub(super) fn check_id_field(field: &str, id: &str) -> Result<(), WireError> {
    check_id(id).map_err(|r| WireError::field_err(field, r))
}

/// A device's own id, where a helper's may not stand: a signer, a roster entry.
fn check_device_field(field: &str, id: &str) -> Result<(), WireError> {
    check_device_id(id).map_err(|r| WireError::field_err(field, r))
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

/// A signed media-time difference: within ±(2^53 - 1).
fn signed(field: &str, v: Option<i64>) -> Result<(), WireError> {
    match v {
        Some(v) if v.unsigned_abs() > MAX_MEDIA_NS => Err(WireError::field_err(
            field,
            format!("{v} is beyond ±{MAX_MEDIA_NS}"),
        )),
        _ => Ok(()),
    }
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
pub(super) trait Validate {
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
        match &self.body {
            CommandBody::Seek { position_ns } => check_media_ns("body.position_ns", *position_ns)?,
            CommandBody::Play | CommandBody::Pause | CommandBody::Sync => {}
            CommandBody::HandoffRequest {
                handoff, source, ..
            } => {
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
                if let Some(n) = r.prerolls
                    && !(1..=crate::patterns::MAX_PREROLLS).contains(&n)
                {
                    return Err(WireError::field_err(
                        "body.prerolls",
                        format!("{n} is outside 1..={}", crate::patterns::MAX_PREROLLS),
                    ));
                }
                signed("body.position_error_ns", r.position_error_ns)?;
                signed("body.clock_offset_ns", r.clock_offset_ns)?;
            }
            CommandBody::Takeover { session, .. } => check_id_field("body.session", session)?,
            CommandBody::ClockProbe { t1_unix_ns } => {
                check_unix_ns("body.t1_unix_ns", *t1_unix_ns)?
            }
            CommandBody::ClockReply {
                t1_unix_ns,
                t2_unix_ns,
                t3_unix_ns,
            } => {
                check_unix_ns("body.t1_unix_ns", *t1_unix_ns)?;
                check_unix_ns("body.t2_unix_ns", *t2_unix_ns)?;
                check_unix_ns("body.t3_unix_ns", *t3_unix_ns)?;
                if t3_unix_ns < t2_unix_ns {
                    return Err(WireError::field_err(
                        "body.t3_unix_ns",
                        "is before t2_unix_ns: the reply left before the probe arrived",
                    ));
                }
            }
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
        if let Some(id) = &self.id {
            check_id_field("id", id)?;
        }
        if let Some(s) = &self.session {
            check_id_field("session", s)?;
        }
        if let Some(h) = &self.handoff {
            check_id_field("handoff.id", &h.id)?;
            check_id_field("handoff.source", &h.source)?;
            check_id_field("handoff.target", &h.target)?;
            if let Some(l) = h.latency_ns {
                check_media_ns("handoff.latency_ns", l)?;
            }
            if let Some(l) = h.clock_error_ns {
                check_media_ns("handoff.clock_error_ns", l)?;
            }
            signed("handoff.position_error_ns", h.position_error_ns)?;
            signed("handoff.clock_offset_ns", h.clock_offset_ns)?;
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
        if !(s.key_id.len() == 16
            && s.key_id
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
        {
            return Err(WireError::field_err(
                "sealed.key_id",
                "is not 16 lower-case hex digits",
            ));
        }
        check_device_field("sealed.sender", &s.sender)?;
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
        // At least the 16-byte tag (22 characters); no length is 1 more than a multiple of 4.
        if s.ct.len() < 22 || s.ct.len() % 4 == 1 {
            return Err(WireError::field_err(
                "sealed.ct",
                "is shorter than the 16-byte tag, or not whole bytes",
            ));
        }
        // 64 bytes of signature are 86 base64url characters.
        b64url("sealed.sig", &s.sig, Some(86))
    }
}

impl Validate for StateAsk {
    fn validate(&self) -> Result<(), WireError> {
        check_id_field("device", &self.device)?;
        check_list("seen", &self.seen, MAX_ROSTER)?;
        for (i, s) in self.seen.iter().enumerate() {
            check_id_field(&format!("seen[{i}].device"), &s.device)?;
            if let Some(stamp) = &s.session {
                validate_stamp(&format!("seen[{i}].session"), stamp)?;
            }
        }
        Ok(())
    }
}

impl Validate for HistoryAsk {
    fn validate(&self) -> Result<(), WireError> {
        check_id_field("id", &self.id)?;
        check_id_field("device", &self.device)?;
        check_unix_ns("since_unix_ns", self.since_unix_ns)?;
        check_list("held", &self.held, MAX_ROSTER)?;
        let days: usize = self.held.iter().map(|h| h.days.len()).sum();
        if days > MAX_HISTORY_DAYS {
            return Err(WireError::field_err(
                "held",
                format!("lists {days} days, over the limit of {MAX_HISTORY_DAYS}"),
            ));
        }
        for (i, h) in self.held.iter().enumerate() {
            check_id_field(&format!("held[{i}].device"), &h.device)?;
            for (j, d) in h.days.iter().enumerate() {
                if !(d.digest.len() == 16
                    && d.digest
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
                {
                    return Err(WireError::field_err(
                        format!("held[{i}].days[{j}].digest"),
                        "is not 16 lower-case hex digits",
                    ));
                }
                if u64::from(d.day) > MAX_UNIX_NS / 86_400_000_000_000 {
                    return Err(WireError::field_err(
                        format!("held[{i}].days[{j}].day"),
                        "is after the year 2500",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Validate for HistoryAnswer {
    fn validate(&self) -> Result<(), WireError> {
        check_id_field("device", &self.device)?;
        check_id_field("ask", &self.ask)?;
        check_id_field("to", &self.to)?;
        check_list("events", &self.events, MAX_HISTORY_EVENTS)
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
            check_device_field(&format!("devices[{i}].device"), &d.device)?;
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
