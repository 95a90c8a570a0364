//! Resume points: where each media was left, on this device and on the broker. Loading them
//! from the store, recording them as playback goes, answering "where do I start this media?",
//! moving them when the account key rotates, and republishing the ones the broker lost.

use super::{Action, Engine, ResumeFrom, publish};

/// How long a device that went offline while it played must stay away before a witness
/// records where it stopped.
pub const WITNESS_GRACE_NS: u64 = 2_000_000_000;

/// A witness that never measured the player's clock waits this much longer.
const UNMEASURED_WITNESS_NS: u64 = 1_000_000_000;
use crate::hlc::LwwMap;
use crate::model::{PlayState, ResumeVerdict};
use crate::wire::{self, ResumePoint, SessionState, Status, Topic};

impl Engine {
    /// The link (re)connected: the broker may have lost every retained message (a restart
    /// without persistence), so what it holds is learnt again before [`Engine::synced`].
    pub fn connected(&mut self) {
        self.broker_resume.clear();
        self.handoffs.awaiting_sync = true;
    }

    /// Every retained message under this device's subscriptions has arrived since the link
    /// connected. The resume points this device made that the broker lost (or holds older
    /// copies of) are published again: nobody else would, and a device that starts that
    /// media later would start from the beginning. Handoff requests that came before the
    /// retained state are decided now. Returns what to publish and send.
    pub fn synced(&mut self, now_ns: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.handoff_synced(now_ns, &mut out);
        let account = &self.cfg.account;
        let me = &self.cfg.device.id;
        let republish = self
            .directory
            .resume
            .iter()
            .filter(|(key, point)| {
                point.device == *me
                    && self
                        .broker_resume
                        .get(*key)
                        .is_none_or(|held| *held < point.stamp)
            })
            .map(|(key, point)| publish(&Topic::resume_key(account, key.clone()), point));
        // The resume points first, then what the early requests answer.
        republish.chain(out).collect()
    }

    /// Take new media keys (the account key was rotated): every resume point this device
    /// knows moves to its new topic (republished; sealing is the node's) and its old topic is
    /// cleared, so that devices with the new key find it and the broker keeps nothing under
    /// the old one. Returns what to publish.
    pub fn set_media_keys(&mut self, keys: wire::MediaKeys) -> Vec<Action> {
        let account = self.cfg.account.clone();
        self.cfg.media_keys = keys.clone();
        let old = std::mem::replace(&mut self.directory.resume, LwwMap::new());
        self.directory.media_keys = keys;
        let mut out = Vec::new();
        for (old_key, point) in old.iter() {
            out.push(Action::Publish {
                topic: Topic::resume_key(&account, old_key.clone()).to_string(),
                payload: Vec::new(),
                retain: true,
                reliable: true,
            });
            let key = self.directory.media_keys.key(&point.media.id);
            out.push(publish(&Topic::resume_key(&account, key.clone()), point));
            self.directory.resume.offer(key, point.clone());
        }
        out
    }

    /// Take in a resume point from the local store (they compete with the broker's by stamp).
    pub fn load_resume(&mut self, point: ResumePoint) {
        self.clock.observe(&point.stamp, 0);
        let key = self.directory.media_keys.key(&point.media.id);
        self.directory.resume.offer(key, point);
    }

    /// Where to start `media_id` at `now`: the newest of the resume points and of the live
    /// sessions of other devices playing it (a pull handoff: take the session over at its
    /// extrapolated position), if the resume rules accept the position.
    /// The newest live session of `media_id` that another online device holds and plays or
    /// has paused: the one a start of that media continues.
    /// One that plays comes before one that is paused, whatever their stamps.
    pub fn live_session(&self, media_id: &str) -> Option<&SessionState> {
        self.directory
            .sessions
            .values()
            .filter(|s| {
                s.device != self.cfg.device.id
                    && s.lease.device == s.device
                    && s.media.as_ref().is_some_and(|m| m.id == media_id)
                    && s.anchor.is_some_and(|a| a.state != PlayState::Ended)
                    && self.directory.availability.get(&s.device) == Some(&Status::Online)
                    && !self.superseded(s)
            })
            .max_by(|a, b| (playing(a), &a.stamp).cmp(&(playing(b), &b.stamp)))
    }

    /// Whether another device holds `s`'s session at a higher epoch: `s` is an old copy (its
    /// device was frozen or cut off when the session moved, and has not said so yet).
    pub(super) fn superseded(&self, s: &SessionState) -> bool {
        self.directory.sessions.values().any(|o| {
            o.device != s.device
                && o.session == s.session
                && o.lease.device == o.device
                && (o.lease.epoch, &o.lease.device) > (s.lease.epoch, &s.lease.device)
        })
    }

    pub fn resume_position(&self, media_id: &str, now_unix_ns: u64) -> Option<ResumeFrom> {
        let point = self.directory.resume_point(media_id);
        // Sessions of this media that other devices hold.
        let others = || {
            self.directory.sessions.values().filter(move |s| {
                s.device != self.cfg.device.id
                    && s.lease.device == s.device
                    && s.media.as_ref().is_some_and(|m| m.id == media_id)
            })
        };
        let live = self.live_session(media_id);
        // Automatic mode: a device that went offline mid-play stopped where its anchor was
        // at that instant.
        let vanished = self.cfg.automatic_window_ns.and_then(|window| {
            others()
                .filter_map(|s| {
                    let at = *self.directory.went_offline.get(&s.device)?;
                    (now_unix_ns.saturating_sub(at) <= window).then_some((s, at))
                })
                .max_by_key(|(_, at)| *at)
        });
        // A session that plays now is where that media is, whatever the stamps of the points
        // (a point is older news, or a device's whose clock or store is behind); a paused
        // one is as new as its stamp, or the newest if the point is its device's own (a
        // pause records both: the session is the one to continue, and take over).
        let current = |l: &SessionState| {
            playing(l) || point.is_none_or(|p| p.stamp <= l.stamp || p.device == l.device)
        };
        let (from, duration) = match (point, live, vanished) {
            (_, Some(l), _) if current(l) => (
                ResumeFrom {
                    position_ns: self.directory.position_at(l, now_unix_ns)?,
                    device: l.device.clone(),
                    when_unix_ns: l.stamp.wall_ns,
                    live: Some((l.session.clone(), l.lease.epoch)),
                    audio: l.audio.clone(),
                    subtitle: l.subtitle.clone(),
                },
                l.media.as_ref().and_then(|m| m.duration_ns),
            ),
            (_, None, Some((s, at))) if point.is_none_or(|p| p.stamp.wall_ns <= at) => (
                ResumeFrom {
                    position_ns: self.directory.position_at(s, at)?,
                    device: s.device.clone(),
                    when_unix_ns: at,
                    live: None,
                    audio: s.audio.clone(),
                    subtitle: s.subtitle.clone(),
                },
                s.media.as_ref().and_then(|m| m.duration_ns),
            ),
            (Some(p), _, _) => (Self::point_resume(p)?, p.media.duration_ns),
            (None, _, _) => return None,
        };
        // A live session continues wherever it is (one device plays a session: started at
        // 0:03 on the phone, the film moves there from the TV); the rules judge points only.
        if from.live.is_some() {
            return Some(from);
        }
        match self.cfg.rules.verdict(from.position_ns, duration, false) {
            ResumeVerdict::Resume(_) => Some(from),
            _ => None,
        }
    }

    fn point_resume(p: &ResumePoint) -> Option<ResumeFrom> {
        if p.finished {
            return None;
        }
        Some(ResumeFrom {
            position_ns: p.position_ns,
            device: p.device.clone(),
            when_unix_ns: p.stamp.wall_ns,
            live: None,
            audio: p.audio.clone(),
            subtitle: p.subtitle.clone(),
        })
    }

    pub(super) fn record_resume(
        &mut self,
        now_unix_ns: u64,
        position_ns: u64,
        finished: bool,
        to_broker: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(media) = self.media.clone() else {
            return;
        };
        // Only the device that holds the session says where it is: one whose session moved
        // on (a handoff's source, stopped or paused later) knows an old position, and its
        // point, stamped now, would hide the newer one of the device that plays.
        // Nor does a handoff's target before its switch: what it prerolls is not yet played.
        if self.lease.device != self.cfg.device.id
            || self.handoffs.target.as_ref().is_some_and(|t| !t.switched())
        {
            return;
        }
        let finished = finished
            || self
                .cfg
                .rules
                .verdict(position_ns, media.duration_ns, false)
                == ResumeVerdict::Finished;
        // Under the "not started" threshold nothing is recorded: an earlier, further point
        // stays (opening a film and closing it at once must not lose your place).
        if !finished
            && self
                .cfg
                .rules
                .verdict(position_ns, media.duration_ns, false)
                == ResumeVerdict::NotStarted
        {
            return;
        }
        let point = ResumePoint {
            v: wire::VERSION,
            position_ns: if finished { 0 } else { position_ns },
            finished,
            device: self.cfg.device.id.clone(),
            stamp: self.clock.stamp(now_unix_ns),
            media,
            audio: self.audio.clone(),
            subtitle: self.subtitle.clone(),
        };
        let key = self.directory.media_keys.key(&point.media.id);
        // The same point again is news only for a broker that was not told it (a heartbeat
        // keeps it locally; the end of the media, a pause, tells everyone).
        if let Some(old) = self.directory.resume.get(&key)
            && old.finished == point.finished
            && old.position_ns == point.position_ns
            && (!to_broker || !self.unpublished_resume.contains(&key))
        {
            return;
        }
        if to_broker {
            out.push(publish(
                &Topic::resume_key(&self.cfg.account, key.clone()),
                &point,
            ));
            self.last_resume_publish_ns = Some(now_unix_ns);
            self.unpublished_resume.remove(&key);
        } else {
            self.unpublished_resume.insert(key.clone());
        }
        self.directory.resume.offer(key, point.clone());
        out.push(Action::StoreResume(Box::new(point)));
    }

    /// `device` was seen going offline at `now_unix_ns` (its last will, or its goodbye): if it
    /// played, a witness resume point is due (see [`Engine::witness_tick`]).
    pub(super) fn witness_later(&mut self, now_unix_ns: u64, device: &str) {
        // A helper that announces nothing (the command line) measures no clocks and keeps
        // nothing: it is no witness. One that never measured the player's clock reads its
        // anchor with its own (a device that was frozen, or came online as it died): it
        // waits longer, so that a witness that measured it goes first, and stands.
        if self.cfg.announce
            && device != self.cfg.device.id
            && self.playing_session(device).is_some()
        {
            let wait = if self.directory.clocks.sample(device).is_some() {
                WITNESS_GRACE_NS
            } else {
                WITNESS_GRACE_NS + UNMEASURED_WITNESS_NS
            };
            self.witnesses
                .insert(device.to_owned(), (now_unix_ns, now_unix_ns + wait));
        }
    }

    pub(super) fn next_witness(&self) -> Option<u64> {
        self.witnesses.values().map(|(_, due)| *due).min()
    }

    /// Record, as a witness, a resume point for the media of each device that went offline
    /// while it played and has not come back within [`WITNESS_GRACE_NS`], where its anchor
    /// was when it went. A device that starts that media later resumes there, not from the
    /// last refresh (every ten minutes) of a player that died. `device` stays the player's;
    /// the stamp, and the seal, are this device's. The grace leaves out a forged `offline`,
    /// which the device itself repairs within half a second.
    pub(super) fn witness_tick(&mut self, now_unix_ns: u64, out: &mut Vec<Action>) {
        let due: Vec<(String, u64)> = self
            .witnesses
            .iter()
            .filter(|(_, (_, due))| *due <= now_unix_ns)
            .map(|(d, (at, _))| (d.clone(), *at))
            .collect();
        for (device, at) in due {
            self.witnesses.remove(&device);
            if let Some(point) = self.witnessed_point(&device, at, now_unix_ns) {
                let key = self.directory.media_keys.key(&point.media.id);
                out.push(publish(
                    &Topic::resume_key(&self.cfg.account, key.clone()),
                    &point,
                ));
                self.directory.resume.offer(key, point.clone());
                out.push(Action::StoreResume(Box::new(point)));
            }
        }
    }

    /// The session of `device`, if it plays it (its anchor says playing, its lease is its).
    /// A device that died while a handoff moved its session, or whose media another device
    /// plays now, needs no witness: its point would hide the live session.
    fn playing_session(&self, device: &str) -> Option<&SessionState> {
        let s = self.own_playing_session(device)?;
        let moved_on = self.directory.sessions.values().any(|o| {
            o.device != s.device
                && o.session == s.session
                && (o.lease.epoch, &o.lease.device) > (s.lease.epoch, &s.lease.device)
        });
        let media = s.media.as_ref().map(|m| &m.id);
        let here = self.plays_here() && self.media.as_ref().map(|m| &m.id) == media;
        let live = here
            || self.directory.sessions.values().any(|o| {
                o.device != s.device
                    && o.device != self.cfg.device.id
                    && o.lease.device == o.device
                    && o.media.as_ref().map(|m| &m.id) == media
                    && playing(o)
                    && self.directory.availability.get(&o.device) == Some(&Status::Online)
                    && !self.superseded(o)
            });
        (!moved_on && !live).then_some(s)
    }

    fn own_playing_session(&self, device: &str) -> Option<&SessionState> {
        self.directory.sessions.get(&device.to_owned()).filter(|s| {
            s.media.is_some()
                && s.lease.device == s.device
                && s.anchor.is_some_and(|a| a.state == PlayState::Playing)
        })
    }

    /// Where `device`'s session was at `at`, as a resume point stamped `now` by this device.
    fn witnessed_point(&mut self, device: &str, at: u64, now_unix_ns: u64) -> Option<ResumePoint> {
        let s = self.playing_session(device)?;
        let media = s.media.clone()?;
        // Another device made a point of this media, or played it, after the player's last
        // state (stamps are causal): a witness that came first, or a device that started it
        // since. That stands (this one may have seen the will late: frozen, or cut off).
        let newer_session = self.directory.sessions.values().any(|o| {
            o.device != device
                && o.lease.device == o.device
                && o.media.as_ref().is_some_and(|m| m.id == media.id)
                && o.stamp > s.stamp
        });
        if newer_session
            || self
                .directory
                .resume_point(&media.id)
                .is_some_and(|p| p.stamp.device != device && p.stamp > s.stamp)
        {
            return None;
        }
        let position_ns = self.directory.position_at(s, at)?;
        let finished = match self
            .cfg
            .rules
            .verdict(position_ns, media.duration_ns, false)
        {
            ResumeVerdict::NotStarted => return None,
            ResumeVerdict::Finished => true,
            ResumeVerdict::Resume(_) => false,
        };
        Some(ResumePoint {
            v: wire::VERSION,
            position_ns: if finished { 0 } else { position_ns },
            finished,
            audio: s.audio.clone(),
            subtitle: s.subtitle.clone(),
            device: device.to_owned(),
            stamp: self.clock.stamp(now_unix_ns),
            media,
        })
    }
}

/// Whether a session's anchor says it plays.
fn playing(s: &SessionState) -> bool {
    s.anchor.is_some_and(|a| a.state == PlayState::Playing)
}
