//! Handoff: "continue on the TV". Make-before-break, sans-IO like the rest of the engine.
//!
//! Three roles, any of which a device may play:
//!
//! - **initiator** (the CLI, an app, the source or target itself) asks the target T to take
//!   over the session of the source P (`handoff-request`), and waits for the result;
//! - **target** T offers to take the session over (`handoff-offer`, with its clock `t1`) and
//!   meanwhile loads the media and prerolls at the position P is predicted to have a moment
//!   later; when P has accepted (`handoff-accept`, with `t2`, `t3` and its current anchor)
//!   and the preroll is done, T picks the instant at which P will reach the prerolled
//!   position, tells P (`handoff-switch`), and plays at that instant while P pauses. Gap or
//!   overlap is what the two players' timers miss by: a few milliseconds;
//! - **source** P accepts one offer per epoch (a second one is `superseded`) and pauses at
//!   the agreed instant. Until then it plays on untouched; a cancel or a timeout leaves it so.
//!
//! The four timestamps give the clock offset between P and T (NTP-style), used to turn P's
//! anchor and the switch instant into T's clock, and reported in the result.

use crate::model::{Anchor, PlayState};
use crate::wire::{
    Command, CommandBody, EventName, HandoffFacts, HandoffFailure, HandoffMode, HandoffResult,
    HandoffTrigger, Lease, Topic,
};

use super::clocks::ClockSample;
use super::{Action, Engine, Notice, PlayerAction};

/// A handoff in which this device is the target.
#[derive(Debug, Clone)]
pub(super) struct Target {
    id: String,
    requester: String,
    source: String,
    session: String,
    epoch: u64,
    /// When the request arrived (this device's clock).
    received_ns: u64,
    deadline_ns: u64,
    /// Source clock minus this device's clock.
    offset_ns: Option<i64>,
    rtt_ns: Option<u64>,
    /// The source's anchor, in the source's clock.
    source_anchor: Option<Anchor>,
    prerolled_ns: Option<u64>,
    /// When the load (or the seek) was asked for: the first preroll's time from here is
    /// what [`ReadyTimes`](super::plan::ReadyTimes) learns.
    asked_ns: u64,
    /// The media, and whether it had to be loaded (a cold start) or only sought (warm): what
    /// the first preroll's time teaches [`ReadyTimes`](super::plan::ReadyTimes).
    media_id: String,
    cold: bool,
    learned: bool,
    /// Loads and seeks asked of the player so far: 1 when the plan held.
    prerolls: u32,
    /// Switch planned: (instant in this device's clock, position).
    switch: Option<(u64, u64)>,
    /// The source's session when the request came: what this device plays from the switch
    /// (the source's state may be gone by then: it restarted, or started other media).
    state: Box<crate::wire::SessionState>,
}

/// A handoff in which this device is the source.
#[derive(Debug, Clone)]
pub(super) struct Source {
    id: String,
    target: String,
    epoch: u64,
    deadline_ns: u64,
    /// The switch is agreed: this device pauses at this instant (its clock), at this
    /// position. Until the deadline it watches the target: a target that goes offline
    /// before it plays for sure leaves the session here, and this device plays on.
    switched: Option<(u64, u64)>,
    /// The target sends its result here when it plays (a handoff this device accepted):
    /// none by the deadline means it never did. Without (the session was taken by a pull,
    /// or by a handoff this device did not take part in), only the holder going offline
    /// within the watch brings the session back.
    expects_result: bool,
}

/// After the switch instant, how long a source watches its target (which says it plays at
/// its first frame, a few milliseconds after the instant) before the handoff is done.
const SWITCH_WATCH_NS: u64 = 2_000_000_000;

/// A handoff this device asked for and waits on.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    target: String,
    source: String,
    /// The source's session and lease epoch when the handoff was asked for: a target that
    /// holds it at a higher epoch when no result came has taken it over all the same (its
    /// result was lost on the way).
    session: Option<(String, u64)>,
    deadline_ns: u64,
}

/// A `handoff-offer` as the source takes it: `t2` is when it arrived.
struct Offer<'a> {
    id: &'a str,
    session: &'a str,
    epoch: u64,
    t1: u64,
    t2: u64,
}

/// Handoff state of an engine.
#[derive(Debug, Clone, Default)]
pub(super) struct Handoffs {
    pub(super) target: Option<Target>,
    pub(super) source: Option<Source>,
    pub(super) pending: std::collections::BTreeMap<String, Pending>,
    seq: u64,
    /// Random per start, in every id this engine makes: a device that restarts within a
    /// millisecond (or whose clock went back) makes no id that a receiver has seen, and
    /// would drop as a duplicate.
    pub(super) instance: String,
    /// Handoffs that automatic mode asked for (the latest few), for their events.
    automatic: std::collections::VecDeque<String>,
    /// The last automatic handoff this device took part in: (source, target), which
    /// [`Engine::hand_back`] reverses.
    last_automatic: Option<(String, String)>,
    /// The last handoff this device accepted as its source: (id, target, epoch). Its
    /// target may take the session over even after this device dropped it (a refusal that
    /// crossed the switch): then this device watches it as it would after a switch.
    accepted: Option<(String, String, u64)>,
    /// The link connected and the broker's retained state has not all arrived yet: a
    /// request for a session this device does not know yet waits for it.
    pub(super) awaiting_sync: bool,
    /// Requests that came before the retained state (see `on_request`), decided at the sync
    /// or refused at their deadline.
    early: Vec<Early>,
}

/// A handoff request that came before this device knew the source's session.
#[derive(Debug, Clone)]
struct Early {
    deadline_ns: u64,
    requester: String,
    id: String,
    source: String,
}

/// Requests kept until the sync, at most.
const EARLY_REQUESTS: usize = 4;

/// How many automatic handoffs' ids are remembered.
const AUTOMATIC_IDS: usize = 16;

impl Target {
    /// The switch is agreed: the session is this device's from its instant.
    pub(super) fn switched(&self) -> bool {
        self.switch.is_some()
    }
}

impl Handoffs {
    pub(super) fn new(instance: String) -> Handoffs {
        Handoffs {
            instance,
            ..Handoffs::default()
        }
    }

    /// Nothing in flight: neither source nor target of a handoff (a source that switched
    /// and only watches its target is idle).
    pub(super) fn is_idle(&self) -> bool {
        self.target.is_none() && self.source.as_ref().is_none_or(|s| s.switched.is_some())
    }

    fn mark_automatic(&mut self, id: &str, source: &str, target: &str) {
        if self.automatic.len() >= AUTOMATIC_IDS {
            self.automatic.pop_front();
        }
        self.automatic.push_back(id.to_owned());
        self.last_automatic = Some((source.to_owned(), target.to_owned()));
    }

    /// The earliest deadline, for the engine's wake-up.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        let t = self.target.as_ref().map(|t| t.deadline_ns);
        let s = self.source.as_ref().map(|s| s.deadline_ns);
        let p = self.pending.values().map(|p| p.deadline_ns).min();
        let e = self.early.iter().map(|e| e.deadline_ns).min();
        [t, s, p, e].into_iter().flatten().min()
    }
}

/// Position of `anchor` (in the source's clock) at this device's instant `at_ns`.
fn source_position(anchor: &Anchor, offset_ns: i64, at_ns: u64) -> u64 {
    let at_source = (at_ns as i128 + offset_ns as i128).max(0) as u64;
    anchor.position_at(at_source, None)
}

impl Engine {
    fn next_id(&mut self, now_ns: u64) -> String {
        self.handoffs.seq += 1;
        let dev: String = self.cfg.device.id.chars().take(24).collect();
        let instance = &self.handoffs.instance;
        format!(
            "h-{dev}-{:x}-{instance}{}",
            now_ns / 1_000_000,
            self.handoffs.seq
        )
    }

    /// Send a command to `to`'s inbox: QoS 1, except clock probes and replies. A lost one
    /// is one sample less, and an acknowledgement sent just before one would hold it back
    /// (Nagle's algorithm on a broker's socket, waiting for a delayed ACK: 40 ms on Linux),
    /// in one direction only, which makes the measured offset wrong by half of that.
    pub(super) fn send(&mut self, now_ns: u64, to: &str, body: CommandBody, out: &mut Vec<Action>) {
        let reliable = !body.is_clock();
        self.handoffs.seq += 1;
        let cmd = Command {
            v: crate::wire::VERSION,
            id: format!(
                "c-{:x}-{}{}",
                now_ns / 1_000_000,
                self.handoffs.instance,
                self.handoffs.seq
            ),
            from: self.cfg.device.id.clone(),
            to: to.to_owned(),
            sent_unix_ns: now_ns,
            body,
        };
        out.push(Action::Publish {
            topic: Topic::inbox(&self.cfg.account, to).to_string(),
            payload: crate::wire::encode(&cmd),
            retain: false,
            reliable,
        });
    }

    /// Ask `target` to take over the session of `source`. Returns the handoff id; the result
    /// arrives as [`Notice::HandoffResult`].
    pub fn request_handoff(
        &mut self,
        now_ns: u64,
        target: &str,
        source: &str,
    ) -> (String, Vec<Action>) {
        self.request_handoff_as(now_ns, target, source, HandoffTrigger::Manual)
    }

    /// Go back after an automatic handoff: the session returns to where it was, asked by
    /// either side (a person's "back" key). `None` when there was none.
    pub fn hand_back(&mut self, now_ns: u64) -> Option<(String, Vec<Action>)> {
        let (source, target) = self.handoffs.last_automatic.take()?;
        Some(self.request_handoff(now_ns, &source, &target))
    }

    pub(super) fn request_handoff_as(
        &mut self,
        now_ns: u64,
        target: &str,
        source: &str,
        trigger: HandoffTrigger,
    ) -> (String, Vec<Action>) {
        let id = self.next_id(now_ns);
        if trigger == HandoffTrigger::Automatic {
            self.handoffs.mark_automatic(&id, source, target);
        }
        let mut out = Vec::new();
        let online = target == self.cfg.device.id
            || self.directory.availability.get(target) == Some(&crate::wire::Status::Online);
        // A source whose media ended (or that has none) has nothing to move: said at once.
        let nothing = self
            .directory
            .sessions
            .get(&source.to_owned())
            .is_some_and(|s| {
                s.media.is_none() || s.anchor.is_none_or(|a| a.state == PlayState::Ended)
            });
        let reason = if nothing {
            Some(HandoffFailure::NothingPlaying)
        } else if !online {
            Some(HandoffFailure::TargetOffline)
        } else {
            None
        };
        if let Some(reason) = reason {
            let r = failure(&id, source, target, reason);
            self.record_result(now_ns, &r, HandoffMode::Push, &mut out);
            out.push(Action::Notify(Notice::HandoffResult(r)));
            return (id, out);
        }
        let session = self
            .directory
            .sessions
            .get(&source.to_owned())
            .map(|s| (s.session.clone(), s.lease.epoch));
        self.handoffs.pending.insert(
            id.clone(),
            Pending {
                target: target.to_owned(),
                source: source.to_owned(),
                session,
                // The target's own timeout, plus time for its answer.
                deadline_ns: now_ns + self.cfg.handoff_timeout_ns + 2_000_000_000,
            },
        );
        let body = CommandBody::HandoffRequest {
            handoff: id.clone(),
            source: source.to_owned(),
            automatic: trigger == HandoffTrigger::Automatic,
        };
        self.send(now_ns, target, body, &mut out);
        let facts = self.handoff_facts(&id, source, target, HandoffMode::Push);
        self.record_event(now_ns, EventName::HandoffRequested, Some(facts), &mut out);
        (id, out)
    }

    /// Handoff commands addressed to this device.
    /// `arrived_ns`: when the command arrived (the `t2` of an offer, the `t4` of an accept).
    pub(super) fn handoff_command(
        &mut self,
        now_ns: u64,
        arrived_ns: u64,
        from: &str,
        body: &CommandBody,
        out: &mut Vec<Action>,
    ) {
        match body {
            CommandBody::HandoffRequest {
                handoff,
                source,
                automatic,
            } => {
                if *automatic {
                    self.handoffs
                        .mark_automatic(handoff, source, &self.cfg.device.id.clone());
                }
                self.on_request(now_ns, from, handoff, source, out)
            }
            CommandBody::HandoffOffer {
                handoff,
                session,
                epoch,
                t1_unix_ns,
            } => {
                let offer = Offer {
                    id: handoff,
                    session,
                    epoch: *epoch,
                    t1: *t1_unix_ns,
                    t2: arrived_ns,
                };
                self.on_offer(now_ns, from, offer, out)
            }
            CommandBody::HandoffAccept {
                handoff,
                anchor,
                t1_unix_ns: t1,
                t2_unix_ns: t2,
                t3_unix_ns: t3,
            } => {
                let Some(t) = self.handoffs.target.as_mut().filter(|t| t.id == *handoff) else {
                    return;
                };
                // This exchange is one sample; the plan uses the best one (the smallest
                // round trip) of all this device took of the source's clock.
                let sample = ClockSample::from_timestamps(*t1, *t2, *t3, arrived_ns);
                t.source_anchor = Some(*anchor);
                t.offset_ns = Some(sample.offset_ns);
                t.rtt_ns = Some(sample.rtt_ns);
                self.directory.clocks.record(from, sample);
                self.try_switch(now_ns, out);
            }
            // A refusal that crossed the switch on its way comes too late: the switch is agreed
            // and the source pauses when the session's new holder says so (the source's late
            // seek or pause gives way to the handoff it asked for).
            CommandBody::HandoffReject { handoff, reason }
                if self
                    .handoffs
                    .target
                    .as_ref()
                    .is_some_and(|t| t.id == *handoff && !t.switched()) =>
            {
                self.fail_target(now_ns, *reason, false, out);
            }
            CommandBody::HandoffSwitch {
                handoff,
                at_unix_ns,
                ..
            } => self.on_switch(now_ns, handoff, *at_unix_ns, out),
            CommandBody::HandoffCancel { handoff, .. }
                if self
                    .handoffs
                    .source
                    .as_ref()
                    .is_some_and(|s| s.id == *handoff && s.switched.is_none()) =>
            {
                self.handoffs.source = None;
            }
            // The initiator gave up (its deadline passed: this device was frozen, or its
            // messages held up): a handoff nobody waits for any more is not carried out late.
            CommandBody::HandoffCancel { handoff, reason }
                if self.handoffs.target.as_ref().is_some_and(|t| {
                    t.id == *handoff && t.requester == from && t.switch.is_none()
                }) =>
            {
                self.fail_target(now_ns, *reason, true, out);
            }
            // A result counts from the handoff's target only (another device of the account
            // could otherwise end a wait or a watch with a made-up one).
            CommandBody::HandoffResult(r)
                if self
                    .handoffs
                    .pending
                    .get(&r.handoff)
                    .is_some_and(|p| p.target == from) =>
            {
                self.handoffs.pending.remove(&r.handoff);
                if r.failure.is_none() {
                    self.handoffs.source.take_if(|s| s.id == r.handoff);
                }
                out.push(Action::Notify(Notice::HandoffResult(r.clone())));
            }
            // The target of a handoff this device switched plays: nothing more to watch.
            CommandBody::HandoffResult(r)
                if r.failure.is_none()
                    && self.handoffs.source.as_ref().is_some_and(|s| {
                        s.id == r.handoff && s.switched.is_some() && s.target == from
                    }) =>
            {
                self.handoffs.source = None;
            }
            CommandBody::Takeover { session, epoch } if *session == self.session => {
                // A takeover is no handoff's switch to wait for (the target of one this device
                // accepted restarted, and started the media itself): it pauses now.
                if self
                    .handoffs
                    .source
                    .as_ref()
                    .is_some_and(|s| s.target == from && s.switched.is_none())
                {
                    self.handoffs.source = None;
                }
                // Nor the switch of a handoff this device accepted and dropped: nothing to
                // watch (a pull means its device plays).
                self.handoffs.accepted = None;
                let lease = Lease {
                    device: from.to_owned(),
                    epoch: *epoch,
                };
                self.lose_lease(now_ns, lease, out);
            }
            _ => {}
        }
    }

    fn on_request(
        &mut self,
        now_ns: u64,
        requester: &str,
        id: &str,
        source: &str,
        out: &mut Vec<Action>,
    ) {
        let fail = |engine: &mut Engine, reason, out: &mut Vec<Action>| {
            let r = failure(id, source, &engine.cfg.device.id, reason);
            engine.record_result(now_ns, &r, HandoffMode::Push, out);
            engine.send(now_ns, requester, CommandBody::HandoffResult(r), out);
        };
        if !self.handoffs.is_idle() {
            return fail(self, HandoffFailure::TargetBusy, out);
        }
        let Some(state) = self.directory.sessions.get(&source.to_owned()).cloned() else {
            // A device says it is online once it listens to its inbox, before the broker
            // has handed it the retained sessions: a source that sees it online at once
            // can ask before this device knows the session (found under load: a TV in
            // automatic mode refused the phone's request). Decided at the sync.
            if self.handoffs.awaiting_sync && self.handoffs.early.len() < EARLY_REQUESTS {
                self.handoffs.early.push(Early {
                    deadline_ns: now_ns + self.cfg.handoff_timeout_ns,
                    requester: requester.to_owned(),
                    id: id.to_owned(),
                    source: source.to_owned(),
                });
                return;
            }
            return fail(self, HandoffFailure::Rejected, out);
        };
        let (Some(media), Some(anchor)) = (state.media.clone(), state.anchor) else {
            return fail(self, HandoffFailure::NothingPlaying, out);
        };
        if anchor.state == PlayState::Ended {
            return fail(self, HandoffFailure::NothingPlaying, out);
        }
        if state.session == self.session && self.lease.device == self.cfg.device.id {
            // This device holds that session already (it pulled it back meanwhile).
            return fail(self, HandoffFailure::Superseded, out);
        }
        let Some(uri) = media.uri_for(self.cfg.device.class).map(str::to_owned) else {
            return fail(self, HandoffFailure::MediaUnavailable, out);
        };
        // Already playing this media: nothing to load, only a preroll where it is needed. A
        // media that played to its end is no longer loaded (a player unloads it or stops at
        // its end): it is loaded again, as on an idle device.
        let loaded = self.media().is_some_and(|m| m.id == media.id)
            && self.anchor.is_some_and(|a| a.state != PlayState::Ended);
        // Preroll where the source will be when this device is ready (as it learned from its
        // past handoffs) and the switch is agreed, read with the source's clock as measured
        // so far (0 if never: the exchange measures it), so that one seek does.
        let offset = self.directory.clocks.offset_ns(source);
        let position_ns = source_position(
            &anchor,
            offset,
            now_ns + self.lead_ns(source, &media.id, loaded),
        );
        self.handoffs.target = Some(Target {
            id: id.to_owned(),
            requester: requester.to_owned(),
            source: source.to_owned(),
            session: state.session.clone(),
            epoch: state.lease.epoch + 1,
            received_ns: now_ns,
            deadline_ns: now_ns + self.cfg.handoff_timeout_ns,
            offset_ns: None,
            rtt_ns: None,
            source_anchor: None,
            prerolled_ns: None,
            asked_ns: now_ns,
            media_id: media.id.clone(),
            cold: !loaded,
            learned: false,
            prerolls: 1,
            switch: None,
            state: Box::new(state.clone()),
        });
        let offer = CommandBody::HandoffOffer {
            handoff: id.to_owned(),
            session: state.session.clone(),
            epoch: state.lease.epoch + 1,
            t1_unix_ns: now_ns,
        };
        self.send(now_ns, source, offer, out);
        let facts = self.handoff_facts(id, source, &self.cfg.device.id, HandoffMode::Push);
        self.record_event(now_ns, EventName::HandoffOffered, Some(facts), out);
        // One more sample of the source's clock while this device loads: the plan takes the
        // best one there is when the accept comes.
        self.probe_clock(now_ns, source, out);
        out.push(Action::Player(PlayerAction::Load {
            uri,
            media: Box::new(media),
            position_ns,
            audio: state.audio.clone(),
            subtitle: state.subtitle.clone(),
            loaded,
            rate: anchor.rate,
        }));
        if loaded {
            out.push(Action::Player(PlayerAction::Preroll {
                position_ns,
                rate: anchor.rate,
            }));
        }
    }

    fn on_offer(&mut self, now_ns: u64, target: &str, offer: Offer<'_>, out: &mut Vec<Action>) {
        let Offer {
            id,
            session,
            epoch,
            t1,
            t2,
        } = offer;
        let reject = |engine: &mut Engine, reason, out: &mut Vec<Action>| {
            let body = CommandBody::HandoffReject {
                handoff: id.to_owned(),
                reason,
            };
            engine.send(now_ns, target, body, out);
        };
        let active = self.lease.device == self.cfg.device.id;
        let Some(anchor) = self.anchor.filter(|_| active && session == self.session) else {
            return reject(self, HandoffFailure::Rejected, out);
        };
        if epoch <= self.lease.epoch {
            return reject(self, HandoffFailure::Superseded, out);
        }
        if let Some(s) = &self.handoffs.source
            && s.id != id
            && s.switched.is_none()
            && s.deadline_ns > now_ns
        {
            return reject(self, HandoffFailure::Superseded, out);
        }
        self.handoffs.source = Some(Source {
            id: id.to_owned(),
            target: target.to_owned(),
            epoch,
            deadline_ns: now_ns + self.cfg.handoff_timeout_ns + 1_000_000_000,
            switched: None,
            expects_result: true,
        });
        self.handoffs.accepted = Some((id.to_owned(), target.to_owned(), epoch));
        let accept = CommandBody::HandoffAccept {
            handoff: id.to_owned(),
            t1_unix_ns: t1,
            t2_unix_ns: t2,
            t3_unix_ns: now_ns,
            anchor: anchor.rebased(now_ns, self.duration()),
        };
        self.send(now_ns, target, accept, out);
        let facts = self.handoff_facts(id, &self.cfg.device.id, target, HandoffMode::Push);
        self.record_event(now_ns, EventName::HandoffAccepted, Some(facts), out);
    }

    /// Source side: what this device played changed before the switch (other media): the
    /// handoff in flight is refused, and the target drops it.
    pub(super) fn drop_outgoing_handoff(
        &mut self,
        now_ns: u64,
        reason: HandoffFailure,
        out: &mut Vec<Action>,
    ) {
        let Some(s) = self.handoffs.source.take_if(|s| s.switched.is_none()) else {
            return;
        };
        let body = CommandBody::HandoffReject {
            handoff: s.id,
            reason,
        };
        self.send(now_ns, &s.target, body, out);
    }

    /// Target side: `media` started here, and it is not what the handoff in flight loads
    /// (a person started something else meanwhile): that handoff is off.
    pub(super) fn drop_incoming_handoff(
        &mut self,
        now_ns: u64,
        media: &str,
        out: &mut Vec<Action>,
    ) {
        if self
            .handoffs
            .target
            .as_ref()
            .is_some_and(|t| t.media_id != media)
        {
            self.fail_target(now_ns, HandoffFailure::Superseded, true, out);
        }
    }

    /// Source side: the target plays from `position` at `at` (this device's clock).
    fn on_switch(&mut self, now_ns: u64, id: &str, at_ns: u64, out: &mut Vec<Action>) {
        let Some(s) = self
            .handoffs
            .source
            .as_mut()
            .filter(|s| s.id == id && s.switched.is_none())
        else {
            return;
        };
        let position = self.anchor.map_or(0, |a| {
            a.position_at(at_ns, self.media.as_ref().and_then(|m| m.duration_ns))
        });
        s.switched = Some((at_ns, position));
        s.deadline_ns = at_ns.max(now_ns) + SWITCH_WATCH_NS;
        let s = s.clone();
        self.paused_since_moved = false;
        out.push(Action::Player(PlayerAction::PauseAt { at_unix_ns: at_ns }));
        let duration = self.duration();
        if let Some(a) = self.anchor {
            self.anchor = Some(Anchor {
                position_ns: a.position_at(at_ns, duration),
                at_unix_ns: at_ns,
                state: PlayState::Paused,
                ..a
            });
        }
        // No resume point of the switch: the target says where the session is from its
        // first frame, and a point stamped when this device handles the switch (late, if it
        // was frozen) would hide what the target made of it since.
        self.lease = Lease {
            device: s.target.clone(),
            epoch: s.epoch,
        };
        self.publish_session(now_ns, out);
    }

    /// Target side: the media is loaded and prerolled at `position`.
    pub(super) fn on_prerolled(&mut self, now_ns: u64, position_ns: u64, out: &mut Vec<Action>) {
        if let Some(t) = self.handoffs.target.as_mut()
            && t.switch.is_none()
        {
            t.prerolled_ns = Some(position_ns);
            if !t.learned {
                // The first preroll of a handoff: how long this device takes, learned.
                t.learned = true;
                let took = now_ns.saturating_sub(t.asked_ns);
                let (media, cold) = (t.media_id.clone(), t.cold);
                for (key, estimate) in self.ready.learn(&media, cold, took) {
                    out.push(Action::StoreReadyTime { key, estimate });
                }
            }
            self.try_switch(now_ns, out);
        }
    }

    /// Target side: loading failed.
    pub(super) fn on_load_failed(&mut self, now_ns: u64, out: &mut Vec<Action>) {
        if self.handoffs.target.is_some() {
            self.fail_target(now_ns, HandoffFailure::MediaUnavailable, true, out);
        }
    }

    /// Target side: the first frame played at `now`, from `position`.
    pub(super) fn on_started(&mut self, now_ns: u64, position_ns: u64, out: &mut Vec<Action>) {
        // The position error with the best offset there is now.
        self.refresh_clock();
        let Some(t) = self.handoffs.target.take() else {
            return;
        };
        if t.switch.is_none() {
            self.handoffs.target = Some(t);
            return;
        }
        let offset = t.offset_ns.unwrap_or(0);
        let expected = t
            .source_anchor
            .map(|a| source_position(&a, offset, now_ns))
            .unwrap_or(position_ns);
        let result = HandoffResult {
            handoff: t.id.clone(),
            source: t.source.clone(),
            target: self.cfg.device.id.clone(),
            failure: None,
            latency_ns: Some(now_ns.saturating_sub(t.received_ns)),
            position_error_ns: Some(position_ns as i64 - expected as i64),
            clock_offset_ns: t.offset_ns,
            rtt_ns: t.rtt_ns,
            prerolls: Some(t.prerolls),
        };
        self.finish_target(now_ns, &t, result, out);
        // What this device plays, from its first frame (the switch planned it; this saw it):
        // newer than the source's resume point at the switch, so that a device starting
        // this media next continues here rather than from where the source stopped.
        let rate = self.anchor.map_or(1.0, |a| a.rate);
        self.plays_from(now_ns, position_ns, rate, out);
        if self.handoffs.automatic.contains(&t.id) {
            let name = self
                .directory
                .devices
                .get(&t.source)
                .map_or_else(|| t.source.clone(), |i| i.device.name.clone());
            out.push(Action::Notify(Notice::AutomaticHandoff {
                device: t.source.clone(),
                name,
                outgoing: false,
            }));
        }
    }

    fn finish_target(
        &mut self,
        now_ns: u64,
        t: &Target,
        result: HandoffResult,
        out: &mut Vec<Action>,
    ) {
        self.record_result(now_ns, &result, HandoffMode::Push, out);
        if result.failure.is_none() && t.source != t.requester && t.source != self.cfg.device.id {
            // The source watches for it: a target that never says it plays leaves the
            // session with the source.
            let source = t.source.clone();
            self.send(
                now_ns,
                &source,
                CommandBody::HandoffResult(result.clone()),
                out,
            );
        }
        if t.requester == self.cfg.device.id {
            out.push(Action::Notify(Notice::HandoffResult(result)));
        } else {
            let requester = t.requester.clone();
            self.send(
                now_ns,
                &requester,
                CommandBody::HandoffResult(result.clone()),
                out,
            );
            out.push(Action::Notify(Notice::HandoffResult(result)));
        }
    }

    /// How far ahead of the source a target prerolls: the time to be ready for `media`
    /// (loaded already or not), the switch margin, and the error of `source`'s measured
    /// clock (half the best sample's round trip); at least `preroll_lead_ns`.
    fn lead_ns(&self, source: &str, media: &str, loaded: bool) -> u64 {
        let ready = self.ready.plan_ns(media, loaded);
        let error = self
            .directory
            .clocks
            .sample(source)
            .map_or(0, |s| s.rtt_ns / 2);
        self.cfg
            .preroll_lead_ns
            .max(ready + self.cfg.switch_margin_ns + error)
    }

    /// Target side, once the source accepted (its anchor is in): the source's clock as the
    /// best sample of it says, the accept's own among them (a probe's reply may have brought
    /// a better one since).
    fn refresh_clock(&mut self) {
        let Some(t) = self
            .handoffs
            .target
            .as_mut()
            .filter(|t| t.source_anchor.is_some())
        else {
            return;
        };
        if let Some(best) = self.directory.clocks.sample(&t.source) {
            t.offset_ns = Some(self.directory.clocks.offset_ns(&t.source));
            t.rtt_ns = Some(best.rtt_ns);
        }
    }

    /// Target side: plan the switch once the source accepted and the preroll is done.
    fn try_switch(&mut self, now_ns: u64, out: &mut Vec<Action>) {
        /// The longest a prerolled target waits for the switch instant.
        const MAX_SWITCH_WAIT_NS: u64 = 1_000_000_000;
        self.refresh_clock();
        let Some(t) = self.handoffs.target.clone() else {
            return;
        };
        let (Some(anchor), Some(offset), Some(prerolled)) =
            (t.source_anchor, t.offset_ns, t.prerolled_ns)
        else {
            return;
        };
        if t.switch.is_some() {
            return;
        }
        let media_now = self
            .directory
            .sessions
            .get(&t.source)
            .and_then(|s| s.media.as_ref().map(|m| m.id.clone()));
        if media_now.is_some_and(|m| m != t.media_id) {
            // The source plays other media now than the one loaded here.
            return self.fail_target(now_ns, HandoffFailure::Rejected, true, out);
        }
        let me = &self.cfg.device.id;
        let taken = self.directory.sessions.values().any(|s| {
            s.session == t.session
                && s.device != *me
                && s.lease.device == s.device
                && s.lease.epoch >= t.epoch
        });
        // Or started that media since the request came (the source may have gone quiet):
        // the person continues there, and this handoff would make two players.
        let started_elsewhere = self.directory.sessions.values().any(|s| {
            s.device != *me
                && s.device != t.source
                && s.lease.device == s.device
                && s.media.as_ref().is_some_and(|m| m.id == t.media_id)
                && s.anchor.is_some_and(|a| a.state == PlayState::Playing)
                && self.directory.availability.get(&s.device) == Some(&crate::wire::Status::Online)
                && s.stamp.wall_ns >= self.directory.clocks.remote_time(&s.device, t.received_ns)
                && !self.superseded(s)
        });
        if taken || started_elsewhere {
            // Another device took the session meanwhile (a pull): this handoff lost.
            return self.fail_target(now_ns, HandoffFailure::Superseded, true, out);
        }
        let margin = self.cfg.switch_margin_ns;
        // The instant (this device's clock) at which the source reaches the prerolled
        // position; while paused, as soon as possible.
        let at_ns = if anchor.state == PlayState::Playing {
            let at_source = anchor.at_unix_ns as f64
                + (prerolled as f64 - anchor.position_ns as f64) / anchor.rate;
            (at_source - offset as f64).max(0.0) as u64
        } else {
            now_ns + margin
        };
        let frame = 40_000_000;
        let paused_off = anchor.state != PlayState::Playing
            && prerolled.abs_diff(anchor.position_ns) > frame / 2;
        // The first preroll is planned before the clock offset is measured: a clock far
        // behind the source's puts it in the past, one far ahead puts the switch seconds
        // away. Either way, seek again where the source will be, now that the offset is known.
        let too_far = at_ns > now_ns + MAX_SWITCH_WAIT_NS;
        if at_ns < now_ns + margin || paused_off || too_far {
            // The preroll took longer than planned (or P is paused elsewhere, or the clocks
            // disagree): seek again, in the media now loaded, as far ahead as a seek takes
            // (which the late preroll has just taught, when it was one).
            tracing::debug!(
                "handoff {}: seek again (prerolled at {prerolled} for {at_ns}, now {now_ns}, \
                 source {:?} at {:?}, offset {offset}, paused off {paused_off}, too far {too_far})",
                t.id,
                anchor.state,
                anchor.position_ns
            );
            let lead = self.lead_ns(&t.source, &t.media_id, true);
            let position_ns = if anchor.state == PlayState::Playing {
                source_position(&anchor, offset, now_ns + lead)
            } else {
                anchor.position_ns
            };
            if let Some(t) = self.handoffs.target.as_mut() {
                t.prerolled_ns = None;
                t.asked_ns = now_ns;
                t.prerolls += 1;
            }
            out.push(Action::Player(PlayerAction::Preroll {
                position_ns,
                rate: anchor.rate,
            }));
            return;
        }
        let at_source = (at_ns as i128 + offset as i128).max(0) as u64;
        if let Some(tm) = self.handoffs.target.as_mut() {
            tm.switch = Some((at_ns, prerolled));
        }
        let switch = CommandBody::HandoffSwitch {
            handoff: t.id.clone(),
            at_unix_ns: at_source,
            position_ns: prerolled,
        };
        self.send(now_ns, &t.source, switch, out);
        out.push(Action::Player(PlayerAction::PlayAt { at_unix_ns: at_ns }));
        // The session is ours from the switch instant on.
        let state = &t.state;
        self.media = state.media.clone();
        if !self.tracks_reported {
            // An adapter that tells no tracks plays the source's, as it was asked to.
            self.audio = state.audio.clone();
            self.subtitle = state.subtitle.clone();
        }
        self.queue = state.queue.clone();
        self.session = t.session.clone();
        self.lease = Lease {
            device: self.cfg.device.id.clone(),
            epoch: t.epoch,
        };
        // The device it came from is no suggestion to continue on.
        self.suggest.remove(&t.source);
        self.suggest_retained.remove(&t.source);
        self.anchor = Some(Anchor {
            position_ns: prerolled,
            at_unix_ns: at_ns,
            rate: anchor.rate,
            state: PlayState::Playing,
        });
        self.publish_session(now_ns, out);
    }

    fn fail_target(
        &mut self,
        now_ns: u64,
        reason: HandoffFailure,
        cancel_source: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(t) = self.handoffs.target.take() else {
            return;
        };
        if cancel_source {
            let cancel = CommandBody::HandoffCancel {
                handoff: t.id.clone(),
                reason,
            };
            self.send(now_ns, &t.source, cancel, out);
        }
        out.push(Action::Player(PlayerAction::Unload));
        if t.cold {
            // What the player had gave way to the load, which is dropped now: it has nothing
            // (a later handoff of this media loads it again).
            self.media = None;
            self.anchor = None;
            self.tracks_reported = false;
            self.publish_session(now_ns, out);
        }
        let result = failure(&t.id, &t.source, &self.cfg.device.id, reason);
        let result = HandoffResult {
            clock_offset_ns: t.offset_ns,
            rtt_ns: t.rtt_ns,
            prerolls: Some(t.prerolls),
            ..result
        };
        self.finish_target(now_ns, &t, result, out);
    }

    /// Deadlines: a target that is not playing in time gives up (the source plays on), a
    /// source forgets an offer that never switched, an initiator reports a silent target.
    /// The retained state has arrived: the requests that came before it are decided now.
    pub(super) fn handoff_synced(&mut self, now_ns: u64, out: &mut Vec<Action>) {
        self.handoffs.awaiting_sync = false;
        for e in std::mem::take(&mut self.handoffs.early) {
            self.on_request(now_ns, &e.requester, &e.id, &e.source, out);
        }
    }

    pub(super) fn handoff_tick(&mut self, now_ns: u64, out: &mut Vec<Action>) {
        // Requests that waited for a sync that never came: refused as they would have been.
        let (due, kept): (Vec<Early>, Vec<Early>) = std::mem::take(&mut self.handoffs.early)
            .into_iter()
            .partition(|e| now_ns >= e.deadline_ns);
        self.handoffs.early = kept;
        for e in due {
            let r = failure(
                &e.id,
                &e.source,
                &self.cfg.device.id,
                HandoffFailure::Rejected,
            );
            self.record_result(now_ns, &r, HandoffMode::Push, out);
            self.send(now_ns, &e.requester, CommandBody::HandoffResult(r), out);
        }
        if let Some(t) = &self.handoffs.target
            && now_ns >= t.deadline_ns
        {
            if t.switch.is_some() {
                // Switched but the player never said it started: report what was planned.
                let t = self.handoffs.target.take().expect("checked");
                let (at, _) = t.switch.expect("checked");
                let result = HandoffResult {
                    handoff: t.id.clone(),
                    source: t.source.clone(),
                    target: self.cfg.device.id.clone(),
                    failure: None,
                    latency_ns: Some(at.saturating_sub(t.received_ns)),
                    position_error_ns: None,
                    clock_offset_ns: t.offset_ns,
                    rtt_ns: t.rtt_ns,
                    prerolls: Some(t.prerolls),
                };
                self.finish_target(now_ns, &t, result, out);
            } else if t.cold && !t.learned {
                // The load never prerolled: the media gave no data in time (a download
                // that stalls). It is unavailable here, whatever it does later.
                let stalled = Notice::LoadStalled {
                    handoff: t.id.clone(),
                    // The bound, not the time measured to the tick that found it passed
                    // (a busy machine ticks late): what the person is told.
                    after_ns: self.cfg.handoff_timeout_ns,
                };
                out.push(Action::Notify(stalled));
                self.fail_target(now_ns, HandoffFailure::MediaUnavailable, true, out);
            } else {
                self.fail_target(now_ns, HandoffFailure::Timeout, true, out);
            }
        }
        if self
            .handoffs
            .source
            .as_ref()
            .is_some_and(|s| now_ns >= s.deadline_ns)
        {
            let s = self.handoffs.source.take().expect("checked");
            if s.switched.is_some() {
                // Switched, and the target never said it plays (frozen, or its player stuck):
                // the session stays here.
                if s.expects_result {
                    self.take_back(now_ns, s, out);
                }
                return self.expire_pending(now_ns, out);
            }
            // No switch came, yet the target holds the session now: it moved all the same.
            let moved = self
                .directory
                .sessions
                .get(&s.target)
                .filter(|st| {
                    s.switched.is_none()
                        && st.session == self.session
                        && st.lease.device == s.target
                        && st.lease.epoch >= s.epoch
                })
                .map(|st| st.lease.clone());
            if let Some(lease) = moved {
                self.lose_lease(now_ns, lease, out);
            }
        }
        self.expire_pending(now_ns, out);
    }

    /// An initiator's handoffs past their deadline.
    fn expire_pending(&mut self, now_ns: u64, out: &mut Vec<Action>) {
        let expired: Vec<String> = self
            .handoffs
            .pending
            .iter()
            .filter(|(_, p)| now_ns >= p.deadline_ns)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let p = self.handoffs.pending.remove(&id).expect("listed");
            // No result came. The target may hold the session all the same (its result was
            // lost: a broker that restarted); else it never answered, and the handoff is
            // called off there too, so that a target that was only held up (frozen, its
            // messages queued) does not carry it out late.
            let taken = p.session.as_ref().is_some_and(|(session, epoch)| {
                self.directory.sessions.get(&p.target).is_some_and(|st| {
                    st.session == *session && st.lease.device == p.target && st.lease.epoch > *epoch
                })
            });
            let r = if taken {
                HandoffResult {
                    failure: None,
                    ..failure(&id, &p.source, &p.target, HandoffFailure::TargetOffline)
                }
            } else {
                let cancel = CommandBody::HandoffCancel {
                    handoff: id.clone(),
                    reason: HandoffFailure::TargetOffline,
                };
                self.send(now_ns, &p.target, cancel, out);
                failure(&id, &p.source, &p.target, HandoffFailure::TargetOffline)
            };
            self.record_result(now_ns, &r, HandoffMode::Push, out);
            out.push(Action::Notify(Notice::HandoffResult(r)));
        }
    }

    /// `device` went offline. A target this device switched to that is not yet known to play
    /// (it died in the handoff): the session stays here, and this device plays on from where
    /// it paused (make-before-break: a source never stops for a target that does not play).
    pub(super) fn target_went_offline(&mut self, now_ns: u64, device: &str, out: &mut Vec<Action>) {
        if self
            .handoffs
            .source
            .as_ref()
            .is_some_and(|s| s.target == device && s.switched.is_some())
            && self
                .handoffs
                .target
                .as_ref()
                .is_some_and(|t| t.source == device && !t.switched())
        {
            // It was handing the session back here: that is off, and it is taken back below.
            self.fail_target(now_ns, HandoffFailure::Rejected, false, out);
        }
        let Some(s) = self
            .handoffs
            .source
            .take_if(|s| s.target == device && s.switched.is_some())
        else {
            return;
        };
        tracing::info!(
            "handoff {}: the target {device} went offline at the switch: playing on here",
            s.id
        );
        self.take_back(now_ns, s, out);
    }

    /// A switched handoff whose target did not play: the session stays with this device,
    /// which plays on from where it paused.
    fn take_back(&mut self, now_ns: u64, s: Source, out: &mut Vec<Action>) {
        let (at_ns, position_ns) = s.switched.expect("a switched handoff");
        if self.lease.device != s.target || self.lease.epoch != s.epoch {
            // The session moved on since (another handoff): not this device's to take.
            return;
        }
        let Some(media) = self.media.as_ref().map(|m| m.id.clone()) else {
            return;
        };
        let media = Some(media);
        let me = self.cfg.device.id.clone();
        let elsewhere = self.directory.sessions.values().any(|o| {
            o.device != me
                && o.device != s.target
                && o.lease.device == o.device
                && o.media.as_ref().map(|m| &m.id) == media.as_ref()
                && o.anchor.is_some_and(|a| a.state == PlayState::Playing)
                && self.directory.availability.get(&o.device) == Some(&crate::wire::Status::Online)
                && !self.superseded(o)
        });
        if elsewhere {
            // Someone started that media since: it plays there, and here would make two.
            return;
        }
        self.lease = Lease {
            device: self.cfg.device.id.clone(),
            epoch: s.epoch + 1,
        };
        self.took_back_ns = Some(now_ns);
        let rate = self.anchor.map_or(1.0, |a| a.rate);
        // Before the switch instant the player still plays: the play calls its pause off.
        out.push(Action::Player(PlayerAction::Play));
        let position_ns = if at_ns > now_ns {
            position_ns.saturating_sub(((at_ns - now_ns) as f64 * rate) as u64)
        } else {
            position_ns
        };
        self.plays_from(now_ns, position_ns, rate, out);
    }

    /// This device plays from `position_ns` now, at `rate`: its anchor, published.
    fn plays_from(&mut self, now_ns: u64, position_ns: u64, rate: f64, out: &mut Vec<Action>) {
        self.anchor = Some(Anchor {
            position_ns,
            at_unix_ns: now_ns,
            rate,
            state: PlayState::Playing,
        });
        self.publish_session(now_ns, out);
    }

    /// Another device holds this session now: stop being active.
    pub(super) fn lose_lease(&mut self, now_ns: u64, lease: Lease, out: &mut Vec<Action>) {
        // Leases are ordered by epoch, then by device id: two devices that take the same
        // session at one epoch (two pulls at once) agree which one holds it.
        if (lease.epoch, &lease.device) <= (self.lease.epoch, &self.lease.device)
            || lease.device == self.cfg.device.id
        {
            return;
        }
        // The target of the handoff this device accepted publishes the session as soon as
        // the switch is agreed, for an instant still ahead; its switch command says when to
        // pause, and may come after the state (another topic). Pausing now would leave a
        // gap as long as the wait for that instant. Until the handoff's deadline.
        if self.handoffs.source.as_ref().is_some_and(|s| {
            s.target == lease.device && s.epoch == lease.epoch && s.switched.is_none()
        }) {
            return;
        }
        if self
            .handoffs
            .target
            .as_ref()
            .is_some_and(|t| t.session == self.session && t.switch.is_some())
        {
            // Taken from here between the switch and the first frame: it never plays here.
            self.fail_target(now_ns, HandoffFailure::Superseded, false, out);
        }
        let was_active = self.lease.device == self.cfg.device.id;
        let watch = self
            .handoffs
            .accepted
            .take_if(|(_, target, epoch)| *target == lease.device && *epoch == lease.epoch)
            .filter(|_| was_active && self.handoffs.source.is_none());
        self.lease = lease.clone();
        // A handoff of this session in flight moves what is no longer here.
        self.drop_outgoing_handoff(now_ns, HandoffFailure::Superseded, out);
        if let Some(s) = self.handoffs.source.take()
            && s.switched.is_some_and(|(at, _)| at > now_ns)
        {
            // Switched to a target that lost the session before the instant (a pull): the
            // pause that was due then is due now.
            out.push(Action::Player(PlayerAction::Pause));
        }
        if !was_active {
            return;
        }
        // A player that plays now is told to pause, and says so; one already paused has.
        self.paused_since_moved = self.anchor.is_none_or(|a| a.state != PlayState::Playing);
        // The notice first: an application learns why before it sees the pause.
        let name = self
            .directory
            .devices
            .get(&lease.device)
            .map_or_else(|| lease.device.clone(), |i| i.device.name.clone());
        out.push(Action::Notify(Notice::LeaseLost {
            to: lease.device.clone(),
            name,
        }));
        if let Some(a) = self.anchor
            && a.state == PlayState::Playing
        {
            out.push(Action::Player(PlayerAction::Pause));
            self.anchor = Some(Anchor {
                state: PlayState::Paused,
                ..a.rebased(now_ns, self.duration())
            });
        }
        // The new holder is watched as a handoff's target is after a switch: one that goes
        // offline within the watch (before it plays, or just after) leaves the session here,
        // and this device plays on (nobody else would). A handoff this device accepted and
        // dropped, whose target switched all the same, also expects that target's result.
        let position = self.anchor.map_or(0, |a| a.position_ns);
        let (id, expects_result) = match watch {
            Some((id, _, _)) => (id, true),
            None => (String::new(), false),
        };
        // (A device with nothing to play, a target that lost before its first frame, has
        // nothing to take back.)
        if self.handoffs.source.is_none() && self.media.is_some() && self.anchor.is_some() {
            self.handoffs.source = Some(Source {
                id,
                target: lease.device.clone(),
                epoch: lease.epoch,
                deadline_ns: now_ns + SWITCH_WATCH_NS,
                switched: Some((now_ns, position)),
                expects_result,
            });
        }
        self.publish_session(now_ns, out);
    }

    /// Pull handoff: this device started `session`'s media at its live position; take the
    /// session over from `from` (which pauses).
    pub fn take_over(&mut self, now_ns: u64, from: &str, session: &str, epoch: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.session = session.to_owned();
        self.lease = Lease {
            device: self.cfg.device.id.clone(),
            epoch: epoch + 1,
        };
        let body = CommandBody::Takeover {
            session: session.to_owned(),
            epoch: epoch + 1,
        };
        self.send(now_ns, from, body, &mut out);
        self.publish_session(now_ns, &mut out);
        let id = self.next_id(now_ns);
        let facts = self.handoff_facts(&id, from, &self.cfg.device.id, HandoffMode::Pull);
        self.record_event(now_ns, EventName::HandoffCompleted, Some(facts), &mut out);
        out
    }

    /// A handoff as an event tells it, the devices' classes as this device knows them.
    fn handoff_facts(
        &self,
        id: &str,
        source: &str,
        target: &str,
        mode: HandoffMode,
    ) -> HandoffFacts {
        let class = |d: &str| {
            if d == self.cfg.device.id {
                Some(self.cfg.device.class)
            } else {
                self.directory
                    .devices
                    .get(&d.to_owned())
                    .map(|i| i.device.class)
            }
        };
        HandoffFacts {
            id: id.to_owned(),
            source: source.to_owned(),
            target: target.to_owned(),
            source_class: class(source),
            target_class: class(target),
            mode,
            trigger: if self.handoffs.automatic.contains(&id.to_owned()) {
                HandoffTrigger::Automatic
            } else {
                HandoffTrigger::Manual
            },
            latency_ns: None,
            position_error_ns: None,
            clock_offset_ns: None,
            clock_error_ns: None,
            failure: None,
        }
    }

    /// The event of a handoff's end: completed with its figures, or failed with why.
    fn record_result(
        &mut self,
        now_ns: u64,
        r: &HandoffResult,
        mode: HandoffMode,
        out: &mut Vec<Action>,
    ) {
        let facts = HandoffFacts {
            latency_ns: r.latency_ns,
            position_error_ns: r.position_error_ns,
            clock_offset_ns: r.clock_offset_ns,
            clock_error_ns: r.rtt_ns.map(|n| n / 2),
            failure: r.failure,
            ..self.handoff_facts(&r.handoff, &r.source, &r.target, mode)
        };
        let name = if r.failure.is_some() {
            EventName::HandoffFailed
        } else {
            EventName::HandoffCompleted
        };
        self.record_event(now_ns, name, Some(facts), out);
    }
}

fn failure(id: &str, source: &str, target: &str, reason: HandoffFailure) -> HandoffResult {
    HandoffResult {
        handoff: id.to_owned(),
        source: source.to_owned(),
        target: target.to_owned(),
        failure: Some(reason),
        latency_ns: None,
        position_error_ns: None,
        clock_offset_ns: None,
        rtt_ns: None,
        prerolls: None,
    }
}
