//! What this account's devices say, as this device has heard it: availability, device
//! info, sessions and resume points, each kept by last-writer-wins.

use std::collections::BTreeMap;

use super::clocks::{ClockSample, Clocks};
use crate::hlc::{LwwMap, Stamp, Stamped};
use crate::model::PlayState;
use crate::wire::{
    self, Body, Command, CommandBody, DeviceInfo, Incoming, ResumePoint, SessionState, Status,
    TopicKind,
};

/// Why a device name or id means no single device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no device '{0}' in this account (see `continuity devices`)")]
    Unknown(String),
    #[error("several devices are named '{who}': use a device id: {}", ids.join(", "))]
    Ambiguous {
        who: String,
        /// Each id with what tells the devices apart: `dev-… (tv, online)`.
        ids: Vec<String>,
    },
}

/// What this account's devices say, as seen from the broker. Also what `continuity devices`
/// and `continuity sessions` show.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub availability: BTreeMap<String, Status>,
    pub devices: LwwMap<String, DeviceInfo>,
    pub sessions: LwwMap<String, SessionState>,
    /// Keyed by media key.
    pub resume: LwwMap<String, ResumePoint>,
    /// When a device was seen going from online to offline (its last will, or a goodbye),
    /// by this device's clock: where a playing session stopped is its anchor at that instant.
    pub went_offline: BTreeMap<String, u64>,
    /// How this account keys its resume topics.
    pub media_keys: wire::MediaKeys,
    /// The other devices' clocks: their anchors are read with them.
    pub clocks: Clocks,
}

impl Stamped for DeviceInfo {
    fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

impl Directory {
    /// What an ask says this directory holds: the devices online but `except` (the asker),
    /// with the stamp of the session state held for each, at most [`wire::MAX_ROSTER`].
    pub fn seen(&self, except: &str) -> Vec<wire::Seen> {
        self.availability
            .iter()
            .filter(|(d, s)| **s == Status::Online && d.as_str() != except)
            .take(wire::MAX_ROSTER)
            .map(|(d, _)| wire::Seen {
                device: d.clone(),
                session: self.sessions.get(d).map(|s| s.stamp.clone()),
            })
            .collect()
    }

    /// Forget what is known of `device` (it was revoked): its availability, info and
    /// session. Returns whether anything was known.
    pub fn forget(&mut self, device: &str) -> bool {
        let a = self.availability.remove(device).is_some();
        let i = self.devices.remove(&device.to_owned()).is_some();
        let s = self.sessions.remove(&device.to_owned()).is_some();
        self.clocks.forget(device);
        a || i || s
    }

    /// Take in a decoded message. Returns whether anything changed.
    pub fn apply(&mut self, msg: &Incoming) -> bool {
        match (&msg.topic.kind, &msg.body) {
            (_, Body::Availability(a)) => {
                let was = self.availability.insert(a.device.clone(), a.status);
                // Seen going (its will, live): where it played is read at that instant.
                if was == Some(Status::Online)
                    && a.status == Status::Offline
                    && let Some(at) = msg.received_unix_ns
                {
                    self.went_offline.entry(a.device.clone()).or_insert(at);
                }
                if a.status == Status::Online {
                    self.went_offline.remove(&a.device);
                }
                was != Some(a.status)
            }
            (_, Body::DeviceInfo(i)) => self.devices.offer(i.device.id.clone(), i.clone()),
            (_, Body::Session(s)) => self.sessions.offer(s.device.clone(), (**s).clone()),
            (TopicKind::Resume { media_key }, Body::Resume(r)) => {
                self.resume.offer(media_key.clone(), (**r).clone())
            }
            (TopicKind::Availability { device }, Body::Cleared) => {
                self.availability.remove(device).is_some()
            }
            (TopicKind::DeviceInfo { device }, Body::Cleared) => {
                self.devices.remove(device).is_some()
            }
            (TopicKind::SessionState { device }, Body::Cleared) => {
                self.sessions.remove(device).is_some()
            }
            // A resume point is replaced only by a newer one (a finished one is how a media is
            // forgotten): a clear, which anyone on the broker can send and nobody can sign,
            // does not make a device forget where a media was.
            _ => false,
        }
    }

    /// The device that `who` (an id, or a name in any case) means: one rule for the CLI and
    /// the element. An id known to the account wins; a name must match one device only.
    pub fn resolve_device(&self, who: &str) -> Result<String, ResolveError> {
        if self.devices.get(&who.to_owned()).is_some() || self.availability.contains_key(who) {
            return Ok(who.to_owned());
        }
        let matches: Vec<String> = self
            .devices
            .values()
            .filter(|i| i.device.name.eq_ignore_ascii_case(who))
            .map(|i| i.device.id.clone())
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ResolveError::Unknown(who.to_owned())),
            _ => Err(ResolveError::Ambiguous {
                who: who.to_owned(),
                ids: matches
                    .iter()
                    .map(|id| {
                        let class = self
                            .devices
                            .get(id)
                            .map_or("?", |i| i.device.class.as_str());
                        let status = match self.availability.get(id) {
                            Some(Status::Online) => "online",
                            Some(Status::Offline) => "offline",
                            None => "unknown",
                        };
                        format!("{id} ({class}, {status})")
                    })
                    .collect(),
            }),
        }
    }

    /// The newest resume point for a media id.
    pub fn resume_point(&self, media_id: &str) -> Option<&ResumePoint> {
        self.resume.get(&self.media_keys.key(media_id))
    }

    /// Where session `s` is at `now`, as a person should see it, and whether it is stopped
    /// because its device went offline while playing. Such a session does not go on: it
    /// stopped where a witness saw its device go (the witness's resume point for its media,
    /// newer than its anchor), else where its anchor was when this view saw the device go,
    /// else at its last anchor.
    pub fn position_of(&self, s: &SessionState, now: u64) -> (Option<u64>, bool) {
        let playing = s.anchor.is_some_and(|a| a.state == PlayState::Playing);
        if !playing || self.availability.get(&s.device) != Some(&Status::Offline) {
            return (self.position_at(s, now), false);
        }
        let witnessed = s.media.as_ref().and_then(|m| {
            self.resume_point(&m.id).filter(|r| {
                r.device == s.device && s.anchor.is_some_and(|a| r.stamp.wall_ns >= a.at_unix_ns)
            })
        });
        let position = match (witnessed, self.went_offline.get(&s.device)) {
            (Some(r), _) => Some(r.position_ns),
            (None, Some(at)) => self.position_at(s, *at),
            (None, None) => s.anchor.map(|a| a.position_ns),
        };
        (position, true)
    }

    /// Where session `s` is at the instant `local_unix_ns` of this device's clock: its anchor
    /// read with its device's clock, as measured ([`Clocks`]).
    pub fn position_at(&self, s: &SessionState, local_unix_ns: u64) -> Option<u64> {
        s.position_at(self.clocks.remote_time(&s.device, local_unix_ns))
    }

    /// A probe of `to`'s clock from `from` (this device, or its helper), sent at `now`.
    pub fn clock_probe(&mut self, from: &str, to: &str, id: String, now: u64) -> Command {
        Command {
            v: wire::VERSION,
            id,
            from: from.to_owned(),
            to: to.to_owned(),
            sent_unix_ns: now,
            body: CommandBody::ClockProbe {
                t1_unix_ns: self.clocks.probing(to, now),
            },
        }
    }

    /// Take `cmd` if it is a `clock-reply` to a probe that waits, arriving at `now`: the
    /// sample it gave.
    pub fn clock_reply(&mut self, cmd: &Command, now: u64) -> Option<ClockSample> {
        let CommandBody::ClockReply {
            t1_unix_ns,
            t2_unix_ns,
            t3_unix_ns,
        } = cmd.body
        else {
            return None;
        };
        self.clocks
            .replied(&cmd.from, t1_unix_ns, t2_unix_ns, t3_unix_ns, now)
    }
}
