//! Model-based tests of the protocol: random sequences of what people and the world do to an
//! account of four devices (start media, pause, play, seek, hand off, end of media, kill and
//! restart with the store, freeze and thaw, a broker that loses its retained messages, clock
//! skew), on the fake network with simulated players, checked after every step against what
//! must hold whatever happened:
//!
//! - at most one player plays a media, and a player that plays holds its session;
//! - a device starting a media now would continue from where it truly is: the live position
//!   (within 100 ms) of a player that has it, else where it was left (within 1 s), and not at
//!   all once it ended anywhere;
//! - every handoff ends within its deadline, ok only when the target plays; an online idle
//!   target takes a handoff that nothing disturbed; a source whose handoff failed plays on,
//!   and a failed handoff's target does not play the session later.
//!
//! proptest shrinks a failure to a minimal sequence; its seeds are kept in
//! `tests/model.proptest-regressions` and run first.

mod fakenet;

use std::collections::BTreeMap;

use continuity::engine::gate::PULL_LEAD_NS;
use continuity::engine::{Observation, PlayerAction};
use continuity::model::{DeviceClass, Media, PlayState, ResumeRules, ResumeVerdict, SECOND_NS};
use fakenet::*;
use proptest::prelude::*;

/// The devices that play (the controller `cli` and the `view` only look).
const PLAYERS: [&str; 4] = ["phone", "tv", "tablet", "laptop"];
/// A simulated player's load, seek and preroll times.
const LOAD_NS: u64 = 60 * MS;
const SEEK_NS: u64 = 20 * MS;

fn media(n: u8) -> Media {
    let (name, seconds) = [("film", 200), ("song", 120)][n as usize % 2];
    Media {
        id: format!("file:{name}.ogg"),
        uri: Some(format!("file:///media/{name}.ogg")),
        title: Some(name.into()),
        duration_ns: Some(seconds * SECOND_NS),
        ..Default::default()
    }
}

/// What a person or the world does next.
#[derive(Debug, Clone)]
enum Act {
    /// Start media `m` on a device (it resumes, or pulls a live session, as the element does).
    Start(usize, u8),
    Pause(usize),
    Play(usize),
    /// Seek to this second.
    Seek(usize, u16),
    /// `continuity transfer --to`: the session that plays moves to this device.
    Transfer(usize),
    /// Time passes (ms).
    Wait(u32),
    /// kill -9, and start again later with its store.
    Kill(usize),
    Restart(usize),
    /// kill -STOP, kill -CONT.
    Freeze(usize),
    Thaw(usize),
    /// The broker restarts without persistence: every retained message is lost, and every
    /// device reconnects.
    BrokerRestart,
}

fn act() -> impl Strategy<Value = Act> {
    let d = 0..PLAYERS.len();
    prop_oneof![
        4 => (d.clone(), 0..2u8).prop_map(|(d, m)| Act::Start(d, m)),
        2 => d.clone().prop_map(Act::Pause),
        2 => d.clone().prop_map(Act::Play),
        1 => (d.clone(), 0..200u16).prop_map(|(d, s)| Act::Seek(d, s)),
        4 => d.clone().prop_map(Act::Transfer),
        6 => prop_oneof![10..500u32, 500..8_000u32, 8_000..40_000u32].prop_map(Act::Wait),
        1 => d.clone().prop_map(Act::Kill),
        1 => d.clone().prop_map(Act::Restart),
        1 => d.clone().prop_map(Act::Freeze),
        1 => d.clone().prop_map(Act::Thaw),
        1 => Just(Act::BrokerRestart),
    ]
}

/// A simulated player: what the element and its pipeline do with the engine's actions.
#[derive(Debug, Clone, Default)]
struct Player {
    media: Option<Media>,
    /// Position at true time `at`.
    pos: u64,
    at: u64,
    playing: bool,
    ended: bool,
    /// What the pipeline will do, at true instants: (when, order, what).
    due: Vec<(u64, u8, Due)>,
    /// The last position report (the element checks the stream against the anchor).
    reported: u64,
    /// The media was loaded for a handoff that is not over yet.
    loaded_for_handoff: bool,
    /// Asked to load or preroll for a handoff, not yet told to play or to unload: the
    /// application shows the handoff coming (no play or pause key to press meanwhile).
    in_handoff: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Due {
    /// The pause of a handoff's source (before a start at the same instant).
    Pause,
    /// A handoff's load: the media's first buffer.
    Loaded(Box<Media>),
    /// A load or seek done: prerolled here.
    Prerolled(u64),
    /// A handoff's target plays (or a source that took its session back).
    Play,
}

impl Player {
    fn position(&self, now: u64) -> u64 {
        let p = if self.playing {
            self.pos + (now - self.at)
        } else {
            self.pos
        };
        p.min(self.duration())
    }

    fn duration(&self) -> u64 {
        self.media
            .as_ref()
            .and_then(|m| m.duration_ns)
            .unwrap_or(u64::MAX)
    }

    fn set(&mut self, now: u64, pos: u64, playing: bool) {
        self.pos = pos;
        self.at = now;
        self.playing = playing;
    }
}

/// A handoff the controller asked for, and what was true then.
#[derive(Debug, Clone)]
struct Asked {
    id: String,
    target: String,
    source: String,
    /// What the source played.
    media: String,
    at: u64,
    /// The action that asked for it.
    act: u64,
    /// Something happened to the source or the target (or the broker) before the result.
    disturbed: bool,
    /// Something happened to the source itself (a press, a kill, a freeze, a pull).
    source_touched: bool,
    /// The source played when it was asked.
    source_played: bool,
    result: Option<(u64, Option<continuity::wire::HandoffFailure>)>,
}

/// Where a media truly is: the device that last played, paused, sought or ended it.
#[derive(Debug, Clone)]
struct Truth {
    device: String,
}

struct World {
    net: Net,
    /// The most a message takes one way (ms).
    latency_ms: u64,
    players: BTreeMap<String, Player>,
    truth: BTreeMap<String, Truth>,
    asked: Vec<Asked>,
    /// When each device was killed (true time), and its player's position then.
    killed_at: BTreeMap<String, u64>,
    /// When each frozen device froze (true time).
    frozen_at: BTreeMap<String, u64>,
    /// Actions applied so far (what the next two count in).
    acts: u64,
    /// The action by which a person last did something to each device (or a transfer went
    /// to it).
    acted: BTreeMap<String, u64>,
    /// The action by which a device last died: its sessions may come back to others by
    /// themselves.
    last_death: u64,
    /// Media whose place nobody can know until a player touches them again: a device died
    /// frozen, its last word a session it says plays (a handoff's target between the switch
    /// and its first frame, say); witnesses read its anchor as if it played on.
    unknowable: std::collections::BTreeSet<String>,
    /// Something that must hold did not, seen between checks (as a result came in).
    violation: Option<String>,
    /// A thawed player's session reads as having played on while it stood still, until its
    /// next position report (every second of stream time, as the element samples).
    settles_at: u64,
    log: Vec<String>,
}

impl World {
    fn new(setup: &Setup) -> World {
        let skews = setup.skews;
        let mut net = Net::new();
        for (d, skew) in PLAYERS.iter().zip(skews) {
            let class = match *d {
                "phone" => DeviceClass::Phone,
                "tv" => DeviceClass::Tv,
                "tablet" => DeviceClass::Tablet,
                _ => DeviceClass::Desktop,
            };
            net.add(d, class, skew, true);
        }
        net.add("view", DeviceClass::Other, 3, true);
        net.add("cli", DeviceClass::Other, -2, false);
        if setup.latency_ms > 0 {
            // A figure per direction of each pair (so the clocks measured are off by half
            // the difference), constant (so MQTT's order per publisher holds).
            let mut rng = fastrand::Rng::with_seed(setup.latency_seed);
            let ids: Vec<String> = net.engines.keys().cloned().collect();
            for a in &ids {
                for b in &ids {
                    let l = rng.u64(0..=setup.latency_ms) * MS;
                    net.latency.insert((a.clone(), b.clone()), l);
                }
            }
        }
        World {
            net,
            latency_ms: setup.latency_ms,
            players: PLAYERS
                .iter()
                .map(|d| (d.to_string(), Player::default()))
                .collect(),
            truth: BTreeMap::new(),
            asked: Vec::new(),
            killed_at: BTreeMap::new(),
            frozen_at: BTreeMap::new(),
            acts: 0,
            acted: BTreeMap::new(),
            last_death: 0,
            unknowable: Default::default(),
            violation: None,
            settles_at: 0,
            log: Vec::new(),
        }
    }

    fn alive(&self, d: &str) -> bool {
        !self.killed_at.contains_key(d) && !self.frozen_at.contains_key(d)
    }

    fn observe(&mut self, d: &str, obs: Observation) {
        self.net.observe(d, obs);
        self.pump();
    }

    fn playback(&mut self, d: &str, state: PlayState) {
        let now = self.net.now;
        let p = &self.players[d];
        let position_ns = p.position(now);
        self.observe(
            d,
            Observation::Playback {
                position_ns,
                state,
                rate: 1.0,
            },
        );
    }

    /// Carry out what the engines asked of their players, until nothing more is asked.
    fn pump(&mut self) {
        loop {
            let mut any = false;
            for d in PLAYERS {
                let actions = self.net.take_players(d);
                for a in actions {
                    any = true;
                    self.player_action(d, a);
                }
            }
            if !any {
                break;
            }
        }
    }

    fn true_time(&self, d: &str, local: u64) -> u64 {
        (local as i64 - self.net.skew[d]) as u64
    }

    fn player_action(&mut self, d: &str, a: PlayerAction) {
        if !self.alive(d) {
            return;
        }
        let now = self.net.now;
        self.log.push(format!("{:>8} {d}: {a:?}", (now - T0) / MS));
        let p = self.players.get_mut(d).unwrap();
        match a {
            PlayerAction::Play if p.media.is_some() && !p.ended => {
                // A play calls off a start or a pause still to come.
                p.due
                    .retain(|(_, _, due)| !matches!(due, Due::Play | Due::Pause));
                let pos = p.position(now);
                p.set(now, pos, true);
                self.playback(d, PlayState::Playing);
                self.touch(d);
            }
            PlayerAction::Pause if p.media.is_some() && !p.ended => {
                // A pause calls off a start or a pause still to come (a target that lost it).
                p.due
                    .retain(|(_, _, due)| !matches!(due, Due::Play | Due::Pause));
                let pos = p.position(now);
                p.set(now, pos, false);
                self.playback(d, PlayState::Paused);
                self.touch(d);
            }
            PlayerAction::Seek { position_ns } if p.media.is_some() && !p.ended => {
                let playing = p.playing;
                p.set(now, position_ns.min(p.duration()), playing);
                let state = if playing {
                    PlayState::Playing
                } else {
                    PlayState::Paused
                };
                self.playback(d, state);
                self.touch(d);
            }
            PlayerAction::Play | PlayerAction::Pause | PlayerAction::Seek { .. } => {}
            PlayerAction::Load {
                media,
                position_ns,
                loaded,
                ..
            } => {
                p.in_handoff = true;
                p.loaded_for_handoff = !loaded;
                if !loaded {
                    // What it played goes; the media's first buffer comes after the load.
                    *p = Player {
                        loaded_for_handoff: true,
                        in_handoff: true,
                        ..Player::default()
                    };
                    p.due.push((now + LOAD_NS, 1, Due::Loaded(media)));
                    p.due.push((now + LOAD_NS, 1, Due::Prerolled(position_ns)));
                }
            }
            PlayerAction::Preroll { position_ns, .. } => {
                p.in_handoff = true;
                let pos = p.position(now);
                let playing = p.playing;
                p.set(now, pos, playing);
                p.due.push((now + SEEK_NS, 1, Due::Prerolled(position_ns)));
            }
            PlayerAction::PlayAt { at_unix_ns } => {
                let at = self.true_time(d, at_unix_ns).max(now);
                let p = self.players.get_mut(d).unwrap();
                p.due.push((at, 2, Due::Play));
            }
            PlayerAction::PauseAt { at_unix_ns } => {
                let at = self.true_time(d, at_unix_ns).max(now);
                let p = self.players.get_mut(d).unwrap();
                p.due.push((at, 0, Due::Pause));
            }
            PlayerAction::Unload => {
                p.in_handoff = false;
                p.due.retain(|(_, _, due)| {
                    !matches!(due, Due::Loaded(_) | Due::Prerolled(_) | Due::Play)
                });
                if p.loaded_for_handoff {
                    // What it loaded for the handoff goes (`continuity play` goes to READY).
                    *p = Player::default();
                }
            }
        }
    }

    /// `d`'s player is where its media is now, if `d` holds its session (a device whose
    /// session moved on only has an old copy).
    fn touch(&mut self, d: &str) {
        let e = &self.net.engines[d];
        if e.lease().device != d {
            return;
        }
        // Nor one whose session another device took already (the news is on its way).
        let mine = (e.lease().epoch, e.lease().device.as_str());
        let taken = self.net.engines.values().any(|o| {
            o.session() == e.session()
                && o.lease().device == o.config().device.id
                && (o.lease().epoch, o.lease().device.as_str()) > mine
        });
        if taken {
            return;
        }
        if let Some(m) = &self.players[d].media {
            self.unknowable.remove(&m.id);
            self.truth.insert(
                m.id.clone(),
                Truth {
                    device: d.to_owned(),
                },
            );
        }
    }

    /// The next instant something happens on its own: a player's due step, an end of
    /// media, a position report, an engine's timer.
    fn next_event(&self) -> Option<u64> {
        let now = self.net.now;
        let mut next: Option<u64> = None;
        let mut at = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        for (d, p) in &self.players {
            if !self.alive(d) {
                continue;
            }
            for (t, _, _) in &p.due {
                at(*t);
            }
            if p.playing && !p.ended {
                let pos = p.position(now);
                at(now + (p.duration() - pos));
                at(p.reported.max(now - now % SECOND_NS) + SECOND_NS);
            }
        }
        if let Some(t) = self.net.next_arrival() {
            at(t.max(now));
        }
        for (d, e) in &self.net.engines {
            if self.killed_at.contains_key(d.as_str()) || self.frozen_at.contains_key(d.as_str()) {
                continue;
            }
            if let Some(w) = e.next_wakeup() {
                at(self.true_time(d, w).max(now));
            }
        }
        next
    }

    fn wait(&mut self, ms: u64) {
        let end = self.net.now + ms * MS;
        let mut steps = 0;
        while let Some(t) = self.next_event().filter(|t| *t <= end) {
            steps += 1;
            assert!(
                steps < 100_000,
                "time does not move: {}",
                self.log.join("\n")
            );
            self.net.now = t;
            self.step();
        }
        self.net.now = end;
        self.step();
    }

    /// Everything due now.
    fn step(&mut self) {
        let now = self.net.now;
        self.net.deliver_due();
        self.pump();
        for d in PLAYERS {
            if !self.alive(d) {
                continue;
            }
            // Due steps, in order (a source's pause before a target's start at one instant).
            loop {
                let p = self.players.get_mut(d).unwrap();
                p.due.sort_by_key(|(t, o, _)| (*t, *o));
                let Some(i) = p.due.iter().position(|(t, _, _)| *t <= now) else {
                    break;
                };
                let (_, _, due) = p.due.remove(i);
                self.due(d, due);
            }
            let p = &self.players[d];
            if p.playing && !p.ended && p.position(now) >= p.duration() {
                let end = p.duration();
                let p = self.players.get_mut(d).unwrap();
                p.set(now, end, false);
                p.ended = true;
                self.observe(d, Observation::Eos { position_ns: end });
                self.touch(d);
            } else if p.playing && now >= p.reported + SECOND_NS {
                let position_ns = p.position(now);
                self.players.get_mut(d).unwrap().reported = now;
                self.observe(d, Observation::Position { position_ns });
            }
        }
        for d in self.net.engines.keys().cloned().collect::<Vec<_>>() {
            self.net.observe(&d, Observation::Tick);
        }
        self.pump();
        self.collect_results();
    }

    fn due(&mut self, d: &str, due: Due) {
        let now = self.net.now;
        let p = self.players.get_mut(d).unwrap();
        match due {
            Due::Loaded(media) => {
                p.media = Some(*media.clone());
                p.set(now, 0, false);
                self.observe(d, Observation::MediaStarted(*media));
            }
            Due::Pause => {
                let pos = p.position(now);
                p.set(now, pos, false);
                self.playback(d, PlayState::Paused);
            }
            Due::Prerolled(position_ns) => {
                p.set(now, position_ns, false);
                p.ended = false;
                self.observe(
                    d,
                    Observation::Playback {
                        position_ns,
                        state: PlayState::Paused,
                        rate: 1.0,
                    },
                );
                self.observe(d, Observation::Prerolled { position_ns });
            }
            Due::Play => {
                if p.media.is_none() {
                    return;
                }
                let pos = p.position(now);
                p.set(now, pos, true);
                p.reported = now;
                p.loaded_for_handoff = false;
                p.in_handoff = false;
                self.observe(d, Observation::Started { position_ns: pos });
                self.playback(d, PlayState::Playing);
                self.touch(d);
            }
        }
    }

    fn collect_results(&mut self) {
        let results = self.net.results("cli");
        for i in 0..self.asked.len() {
            let a = &self.asked[i];
            if a.result.is_some() {
                continue;
            }
            let Some(r) = results.iter().find(|r| r.handoff == a.id) else {
                continue;
            };
            // A source whose handoff failed plays on, unless something happened to it.
            let p = &self.players[&a.source];
            if let Some(reason) = r.failure
                && !a.source_touched
                && a.source_played
                && self.alive(&a.source)
                && !p.ended
                && !(p.playing && p.media.as_ref().is_some_and(|m| m.id == a.media))
                && self.violation.is_none()
            {
                self.violation = Some(format!(
                    "handoff {} failed ({reason}) and its source {} stopped playing",
                    a.id, a.source
                ));
            }
            self.asked[i].result = Some((self.net.now, r.failure));
        }
    }

    /// A press of play or a start of `media` may pull its session from a handoff's source.
    fn disturb_media(&mut self, media: &str) {
        for a in self.asked.iter_mut().filter(|a| a.result.is_none()) {
            if a.media == media {
                a.disturbed = true;
                a.source_touched = true;
            }
        }
    }

    fn disturb(&mut self, d: &str) {
        self.acted.insert(d.to_owned(), self.acts);
        for a in self.asked.iter_mut().filter(|a| a.result.is_none()) {
            if a.target == d || a.source == d {
                a.disturbed = true;
            }
            if a.source == d {
                a.source_touched = true;
            }
        }
    }

    fn apply(&mut self, act: &Act) {
        self.acts += 1;
        let now = self.net.now;
        self.log.push(format!("{:>8} {act:?}", (now - T0) / MS));
        match *act {
            Act::Start(d, m) => {
                // Two starts of one media on two devices within a message's time are not
                // modelled (each sees no other; which should yield is not defined yet).
                self.settle();
                let now = self.net.now;
                let d = PLAYERS[d];
                if !self.alive(d) || !self.players[d].due.is_empty() || self.players[d].in_handoff {
                    return;
                }
                self.disturb(d);
                let m = media(m);
                self.disturb_media(&m.id);
                let p = self.players.get_mut(d).unwrap();
                p.due.clear();
                p.media = Some(m.clone());
                p.ended = false;
                p.set(now, 0, false);
                self.observe(d, Observation::MediaStarted(m.clone()));
                let local = self.net.local(d);
                let from = self.net.engines[d].resume_position(&m.id, local);
                let pos = from.as_ref().map_or(0, |f| {
                    f.position_ns + if f.live.is_some() { PULL_LEAD_NS } else { 0 }
                });
                self.players.get_mut(d).unwrap().set(now, pos, true);
                self.players.get_mut(d).unwrap().reported = now;
                self.playback(d, PlayState::Playing);
                if let Some((session, epoch)) = from.as_ref().and_then(|f| f.live.clone()) {
                    let from = from.unwrap().device;
                    // A pull from a handoff's source or target: that handoff loses.
                    self.disturb(&from);
                    let actions = self
                        .net
                        .engines
                        .get_mut(d)
                        .unwrap()
                        .take_over(local, &from, &session, epoch);
                    self.net.run(d, actions);
                    self.pump();
                }
                self.touch(d);
            }
            Act::Pause(d) | Act::Play(d) | Act::Seek(d, _) => {
                // A press, like a start, comes after what is on its way (not modelled: two
                // devices acting on one media within a message's time).
                self.settle();
                let d = PLAYERS[d];
                let p = &self.players[d];
                // A player in a handoff's load or switch has no play key to press (the
                // application shows the incoming handoff).
                if !self.alive(d)
                    || p.media.is_none()
                    || p.ended
                    || !p.due.is_empty()
                    || p.in_handoff
                {
                    return;
                }
                let m = p.media.as_ref().unwrap().id.clone();
                self.disturb(d);
                self.disturb_media(&m);
                let action = match *act {
                    Act::Pause(_) => PlayerAction::Pause,
                    Act::Play(_) => PlayerAction::Play,
                    Act::Seek(_, s) => PlayerAction::Seek {
                        position_ns: u64::from(s) * SECOND_NS,
                    },
                    _ => unreachable!(),
                };
                self.player_action(d, action);
                self.pump();
            }
            Act::Transfer(t) => {
                // `continuity transfer` starts from the broker's picture: what is on its way
                // arrives first (its sync).
                self.settle();
                let now = self.net.now;
                let target = PLAYERS[t];
                // The session that plays, as `transfer --to` picks it.
                let source = PLAYERS
                    .iter()
                    .find(|d| **d != target && self.alive(d) && self.players[**d].playing);
                let Some(source) = source else { return };
                let media = self.players[*source].media.clone().unwrap().id;
                // Two handoffs at once of one device: one is busy or superseded.
                let busy = self.asked.iter().any(|a| {
                    a.result.is_none()
                        && [&a.target, &a.source]
                            .iter()
                            .any(|d| d.as_str() == target || d.as_str() == *source)
                });
                if busy {
                    self.disturb(target);
                    self.disturb(source);
                }
                self.acted.insert(target.to_owned(), self.acts);
                let id = self.net.request("cli", target, source);
                self.asked.push(Asked {
                    id,
                    target: target.into(),
                    source: source.to_string(),
                    media,
                    at: now,
                    act: self.acts,
                    disturbed: busy || !self.alive(target),
                    source_touched: busy,
                    source_played: true,
                    result: None,
                });
                self.pump();
                self.collect_results();
            }
            Act::Wait(ms) => self.wait(u64::from(ms)),
            Act::Kill(d) => {
                let d = PLAYERS[d];
                if self.killed_at.contains_key(d) {
                    return;
                }
                self.disturb(d);
                if self.frozen_at.remove(d).is_some() {
                    self.unknowable.extend((0..2).map(|m| media(m).id));
                }
                self.net.frozen.remove(d);
                self.killed_at.insert(d.into(), now);
                self.last_death = self.acts;
                let p = self.players.get_mut(d).unwrap();
                let pos = p.position(now);
                p.set(now, pos, false);
                p.due.clear();
                self.net.kill(d);
                self.pump();
            }
            Act::Restart(d) => {
                let d = PLAYERS[d];
                if self.killed_at.remove(d).is_none() {
                    return;
                }
                let class = self.net.engines[d].config().device.class;
                let skew = self.net.skew[d] / MS as i64;
                self.players.insert(d.into(), Player::default());
                self.net.add(d, class, skew, true);
                self.pump();
            }
            Act::Freeze(d) => {
                let d = PLAYERS[d];
                if !self.alive(d) {
                    return;
                }
                self.disturb(d);
                self.frozen_at.insert(d.into(), now);
                let p = self.players.get_mut(d).unwrap();
                let pos = p.position(now);
                let playing = p.playing;
                p.set(now, pos, playing);
                self.net.freeze(d);
            }
            Act::Thaw(d) => {
                let d = PLAYERS[d];
                let Some(since) = self.frozen_at.remove(d) else {
                    return;
                };
                // Its pipeline stood still too: what it was to do comes that much later.
                let p = self.players.get_mut(d).unwrap();
                p.at = now;
                for due in &mut p.due {
                    // Work in progress (a load) stood still; a timer at an instant fires now.
                    if matches!(due.2, Due::Loaded(_) | Due::Prerolled(_)) {
                        due.0 += now - since;
                    }
                }
                self.net.thaw(d);
                self.settles_at = now + 1_100 * MS;
                self.pump();
            }
            Act::BrokerRestart => {
                for a in self.asked.iter_mut().filter(|a| a.result.is_none()) {
                    a.disturbed = true;
                }
                self.net.retained.clear();
                let ids: Vec<String> = self.net.engines.keys().cloned().collect();
                for d in ids {
                    if self.killed_at.contains_key(&d) || self.frozen_at.contains_key(&d) {
                        continue;
                    }
                    let local = self.net.local(&d);
                    let e = self.net.engines.get_mut(&d).unwrap();
                    e.connected();
                    let mut actions = e.announce(local);
                    actions.extend(e.synced(local));
                    self.net.run(&d, actions);
                }
                self.pump();
            }
        }
        // What became due with it (a thawed source's pause at an instant now past).
        self.step();
    }

    /// Let what is on its way arrive.
    fn settle(&mut self) {
        // What arrives may send more: until nothing is on its way (bounded: timers keep
        // sending, now and then).
        for _ in 0..20 {
            let Some(last) = self.net.in_flight.iter().map(|(t, ..)| *t).max() else {
                return;
            };
            let now = self.net.now;
            self.wait((last - now).div_ceil(MS).max(1));
        }
    }

    /// What must hold after every step.
    fn check(&mut self) -> Result<(), String> {
        self.check_outcomes()?;
        let now = self.net.now;
        // One player plays a media, once what is on its way arrived (a takeover takes a
        // message's time to pause the device it pulls from).
        let settled = self.net.in_flight.is_empty();
        let mut playing: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for d in PLAYERS.into_iter().filter(|_| settled) {
            let p = &self.players[d];
            if self.alive(d) && p.playing {
                let m = p.media.as_ref().unwrap().id.clone();
                playing.entry(m).or_default().push(d);
                let lease = self.net.engines[d].lease();
                // A handoff's source plays on until the switch instant.
                let pausing = p.due.iter().any(|(_, _, due)| *due == Due::Pause);
                if lease.device != d && !pausing {
                    return Err(format!("{d} plays but its session is {lease:?}'s"));
                }
            }
        }
        if let Some((m, ds)) = playing.iter().find(|(_, ds)| ds.len() > 1) {
            return Err(format!("{ds:?} all play {m}"));
        }
        // Handoffs end in time, and as they truly went.
        for a in &self.asked {
            match a.result {
                None if now > a.at + 5_100 * MS => {
                    return Err(format!("handoff {} has no result after 5 s", a.id));
                }
                None => {}
                Some((_, None)) => {}
                Some((when, Some(reason))) if !a.disturbed => {
                    return Err(format!(
                        "handoff {} to {} failed ({reason}) at {} though nothing disturbed it",
                        a.id,
                        a.target,
                        (when - T0) / MS
                    ));
                }
                Some(_) => {}
            }
        }
        self.check_positions()
    }

    /// A source whose handoff failed plays on (unless something happened to it), and the
    /// target of a failed handoff does not play it later by itself.
    fn check_outcomes(&mut self) -> Result<(), String> {
        let now = self.net.now;
        if let Some(v) = self.violation.take() {
            return Err(v);
        }
        for i in 0..self.asked.len() {
            let a = &self.asked[i];
            let Some((when, Some(reason))) = a.result else {
                continue;
            };

            let p = &self.players[&a.target];
            let since = self.acted.get(&a.target).copied().unwrap_or(0);
            // Another handoff of it to that device, which may have worked.
            let other = self.asked.iter().any(|b| {
                b.id != a.id
                    && b.target == a.target
                    && b.media == a.media
                    && b.result.is_none_or(|(_, f)| f.is_none())
            });
            if other {
                continue;
            }
            if self.alive(&a.target)
                && p.playing
                && p.media.as_ref().is_some_and(|m| m.id == a.media)
                && since <= a.act
                && self.last_death < a.act
            {
                return Err(format!(
                    "handoff {} to {} failed ({reason}) at {}, and {} plays it at {} all the same",
                    a.id,
                    a.target,
                    (when - T0) / MS,
                    a.target,
                    (now - T0) / MS
                ));
            }
        }
        Ok(())
    }

    /// A device starting each media now continues from where it truly is.
    fn check_positions(&self) -> Result<(), String> {
        let now = self.net.now;
        // Until what is on its way arrives, the view knows less than the players; between
        // a switch's agreement and its instant, the target holds a session the source plays.
        let switching = self.players.values().any(|p| {
            p.due
                .iter()
                .any(|(_, _, d)| matches!(d, Due::Pause | Due::Play))
        });
        if !self.frozen_at.is_empty()
            || now < self.settles_at
            || !self.net.in_flight.is_empty()
            || switching
        {
            // A frozen player's session reads as playing on: only it could say otherwise.
            return Ok(());
        }
        let rules = ResumeRules::default();
        for (m, truth) in self
            .truth
            .iter()
            .filter(|(m, _)| !self.unknowable.contains(*m))
        {
            // Where a media is: on the player that plays it, else where it was left.
            let d = PLAYERS
                .iter()
                .find(|d| {
                    let p = &self.players[**d];
                    self.alive(d) && p.playing && p.media.as_ref().map(|x| &x.id) == Some(m)
                })
                .copied()
                .unwrap_or(truth.device.as_str());
            let p = &self.players[d];
            if p.media.as_ref().map(|x| &x.id) != Some(m) {
                continue;
            }
            if let Some(killed) = self.killed_at.get(d)
                && now < killed + 3 * SECOND_NS
            {
                // The witness writes where it died after its grace.
                continue;
            }
            let position = p.position(now);
            let local = self.net.local("view");
            let from = self.net.engines["view"].resume_position(m, local);
            // A live session continues where it is; a point is judged by the resume rules.
            let live = self.alive(d) && !p.ended;
            let duration = p.media.as_ref().unwrap().duration_ns;
            let expected = match rules.verdict(position, duration, p.ended) {
                _ if live => Some(position),
                ResumeVerdict::Resume(_) => Some(position),
                ResumeVerdict::Finished => None,
                ResumeVerdict::NotStarted => continue,
            };
            // A point is within a second. A witness of a player that died before anyone
            // measured its clock reads its anchor with its own: off by that clock's skew.
            // A live position: an anchor is republished when the stream drifts from it by
            // more than the engine's threshold (100 ms), and read with a clock measured to
            // half a round trip (the difference of two directions' delivery times).
            let tolerance = if p.playing && self.alive(d) {
                100 * MS + self.latency_ms * MS + 5 * MS
            } else if self.killed_at.contains_key(d) {
                SECOND_NS + self.net.skew[d].unsigned_abs()
            } else {
                SECOND_NS
            };
            // Near a threshold of the rules, either answer is right within that.
            let ended = p.ended;
            let near = |at: u64| rules.verdict(at, duration, ended);
            if !live && near(position.saturating_sub(tolerance)) != near(position + tolerance) {
                continue;
            }
            let ok = match (&from, expected) {
                (None, None) => true,
                (Some(f), Some(e)) => f.position_ns.abs_diff(e) <= tolerance,
                // Starting from the beginning is within the tolerance of it.
                (None, Some(e)) => e <= tolerance,
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "{m}: a device starting it now would start from {from:?}; it is at {:?} on {d} ({})",
                    expected.map(|e| e as f64 / 1e9),
                    if p.playing {
                        "playing"
                    } else if p.ended {
                        "ended"
                    } else {
                        "paused"
                    }
                ));
            }
        }
        Ok(())
    }
}

/// The account's devices: their clocks' skews (ms) and the broker's delivery times.
#[derive(Debug, Clone)]
struct Setup {
    skews: [i64; 4],
    /// Each direction of each pair of devices takes 0 to this many ms (0: all at once).
    latency_ms: u64,
    latency_seed: u64,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        proptest::array::uniform4(-2_000i64..2_000),
        prop_oneof![Just(0u64), 1..40u64],
        any::<u64>(),
    )
        .prop_map(|(skews, latency_ms, latency_seed)| Setup {
            skews,
            latency_ms,
            latency_seed,
        })
}

fn run(setup: &Setup, acts: &[Act]) -> Result<(), TestCaseError> {
    run_world(setup, acts).map(|_| ())
}

fn run_world(setup: &Setup, acts: &[Act]) -> Result<World, TestCaseError> {
    let mut w = World::new(setup);
    for a in acts {
        w.apply(a);
        if let Err(e) = w.check() {
            let log = w.log.join("\n");
            return Err(TestCaseError::fail(format!("{e}\n{log}")));
        }
    }
    // Then everything settles.
    for a in [
        Act::Thaw(0),
        Act::Thaw(1),
        Act::Thaw(2),
        Act::Thaw(3),
        Act::Wait(6_000),
    ] {
        w.apply(&a);
        if let Err(e) = w.check() {
            let log = w.log.join("\n");
            return Err(TestCaseError::fail(format!("{e}\n{log}")));
        }
    }
    Ok(w)
}

/// The same 10,000 sequences every run, so that `make test` passes or fails for the code,
/// not for the draw (`MODEL_SEED=random`, or another number, explores further; a sequence
/// found that way becomes a regression test below).
fn seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var("MODEL_SEED").ok().as_deref() {
        Some("random") => RngSeed::Random,
        Some(n) => RngSeed::Fixed(n.parse().expect("MODEL_SEED: a number, or random")),
        None => RngSeed::Fixed(25),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MODEL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(10_000),
        max_shrink_iters: 20_000,
        rng_seed: seed(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_device_agrees_on_who_plays_and_where(
        setup in setup(),
        acts in proptest::collection::vec(act(), 1..25),
    ) {
        run(&setup, &acts)?;
    }
}

#[test]
fn a_quiet_evening_holds_every_invariant() {
    use Act::*;
    let quiet = Setup {
        skews: [0, 37, -20, 5],
        latency_ms: 0,
        latency_seed: 0,
    };
    let w = run_world(
        &quiet,
        &[
            Start(0, 0),
            Wait(20_000),
            Transfer(1),
            Wait(2_000),
            Pause(1),
            Wait(1_000),
            Play(1),
            Wait(200_000),
            Start(0, 0),
            Wait(15_000),
        ],
    )
    .unwrap();
    println!("{}", w.log.join("\n"));
    // The phone started the film, handed it to the TV, which played it to its end; started
    // again, the phone plays it from the start.
    assert!(w.players["tv"].ended);
    assert!(w.players["phone"].playing);
    let at = w.players["phone"].position(w.net.now);
    assert!((20 * SECOND_NS..22 * SECOND_NS).contains(&at), "{at}");
}

/// Sequences found by random draws (`MODEL_SEED=random`), kept as they shrank.
#[test]
fn regressions_found_by_random_draws() {
    use Act::*;
    let quiet = Setup {
        skews: [0, 0, 0, 0],
        latency_ms: 0,
        latency_seed: 0,
    };
    // The tablet, frozen, had its session pulled by the laptop, which died; the phone started
    // the song meanwhile: thawed, the tablet takes the session back from the dead laptop,
    // then yields to the phone (its news came after the will).
    let frozen = [
        Restart(0),
        Start(2, 1),
        Freeze(2),
        Start(3, 1),
        Pause(0),
        Kill(3),
        Start(0, 1),
    ];
    run(&quiet, &frozen).unwrap();
    let frozen_tv = [Start(1, 1), Start(2, 1), Freeze(1), Kill(2), Start(0, 1)];
    run(&quiet, &frozen_tv).unwrap();
    // A handoff's target killed before its first frame, two starts of the film after it.
    let late = Setup {
        skews: [0, 0, 0, 0],
        latency_ms: 25,
        latency_seed: 2_468_690_912_545_239_415,
    };
    let acts = [
        Start(0, 0),
        Transfer(1),
        Transfer(1),
        Pause(0),
        Kill(1),
        Start(2, 0),
        Start(0, 0),
    ];
    run(&late, &acts).unwrap();
}
