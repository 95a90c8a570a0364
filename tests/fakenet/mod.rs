//! A fake network for the sans-IO engine: engines joined by an in-memory broker, with a fake
//! clock, a clock offset per device, and the world's faults (a device killed, frozen and
//! thawed, messages lost), for the handoff tests and the model-based tests of the protocol.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use continuity::engine::plan::Estimate;
use continuity::engine::{Action, Engine, EngineConfig, Notice, Observation, PlayerAction};
use continuity::model::{Alternate, Device, DeviceClass, Media, PlayState, SECOND_NS, Track};
use continuity::wire::{self, HandoffResult, Incoming, ResumePoint, TopicKind};

pub const T0: u64 = 1_800_000_000 * SECOND_NS;
pub const MS: u64 = 1_000_000;

/// Devices, their clock offsets, and what their players were asked to do.
pub struct Net {
    pub engines: BTreeMap<String, Engine>,
    /// Device clock minus true time.
    pub skew: BTreeMap<String, i64>,
    pub players: BTreeMap<String, Vec<PlayerAction>>,
    pub notices: BTreeMap<String, Vec<Notice>>,
    /// Devices that receive nothing (offline).
    pub offline: Vec<String>,
    /// True time.
    pub now: u64,
    pub queue: VecDeque<(String, String, Vec<u8>)>,
    /// The broker's retained messages, for devices that join later.
    pub retained: BTreeMap<String, Vec<u8>>,
    /// What each device's store was asked to keep of its readiness.
    pub kept: BTreeMap<String, BTreeMap<String, Estimate>>,
    /// The events the devices recorded, in order.
    pub events: Vec<wire::Event>,
    /// Handoff switch commands to this device are held back (delivered late, after what
    /// was published next), until released.
    pub hold_switch_to: Option<String>,
    pub held: Vec<(String, String, Vec<u8>)>,
    /// Devices killed (kill -9): what they publish is lost, nothing reaches them.
    pub killed: Vec<String>,
    /// Devices frozen (kill -STOP): what is sent to them waits in their socket, delivered
    /// when they thaw; no time passes for them.
    pub frozen: BTreeMap<String, Vec<Incoming>>,
    /// Messages the broker loses (a restart): delivered to nobody when this says so.
    pub lose: Option<fn(&str, &Incoming) -> bool>,
    /// What each device's store keeps of resume points, for its next start.
    pub stored: BTreeMap<String, Vec<ResumePoint>>,
    /// How long a message takes from one device to another through the broker (ns), by
    /// (sender, receiver); none: at once. One figure per pair keeps MQTT's order.
    pub latency: BTreeMap<(String, String), u64>,
    /// Messages on their way: (true time of arrival, order sent, receiver, message).
    pub in_flight: Vec<(u64, u64, String, Incoming)>,
    sent: u64,
}

impl Net {
    pub fn new() -> Net {
        Net {
            engines: BTreeMap::new(),
            skew: BTreeMap::new(),
            players: BTreeMap::new(),
            notices: BTreeMap::new(),
            offline: Vec::new(),
            now: T0,
            queue: VecDeque::new(),
            retained: BTreeMap::new(),
            kept: BTreeMap::new(),
            events: Vec::new(),
            hold_switch_to: None,
            held: Vec::new(),
            killed: Vec::new(),
            frozen: BTreeMap::new(),
            lose: None,
            stored: BTreeMap::new(),
            latency: BTreeMap::new(),
            in_flight: Vec::new(),
            sent: 0,
        }
    }

    pub fn add(&mut self, id: &str, class: DeviceClass, skew_ms: i64, announce: bool) {
        let mut cfg = EngineConfig::new(
            "home",
            Device {
                id: id.into(),
                name: id.into(),
                class,
            },
        );
        cfg.announce = announce;
        let mut engine = Engine::new(cfg);
        // What its store kept from an earlier run comes first, as in a node.
        for point in self.stored.get(id).cloned().unwrap_or_default() {
            engine.load_resume(point);
        }
        self.killed.retain(|d| d != id);
        self.frozen.remove(id);
        self.engines.insert(id.into(), engine);
        self.skew.insert(id.into(), skew_ms * MS as i64);
        let now = self.local(id);
        let retained: Vec<_> = self.retained.clone().into_iter().collect();
        for (topic, payload) in retained {
            // What a new subscription finds: the broker's retained picture.
            let mut msg = wire::decode(&topic, &payload).unwrap();
            msg.retained = true;
            let actions = self
                .engines
                .get_mut(id)
                .unwrap()
                .handle(now, Observation::Incoming(msg));
            self.run(id, actions);
        }
        let actions = self.engines.get_mut(id).unwrap().announce(now);
        self.run(id, actions);
    }

    pub fn local(&self, id: &str) -> u64 {
        (self.now as i64 + self.skew[id]) as u64
    }

    pub fn observe(&mut self, id: &str, obs: Observation) {
        if self.killed.iter().any(|d| d == id) || self.frozen.contains_key(id) {
            return;
        }
        let now = self.local(id);
        let actions = self.engines.get_mut(id).unwrap().handle(now, obs);
        self.run(id, actions);
    }

    /// Carry out actions: deliver publications (commands to their inbox, states to all).
    pub fn run(&mut self, from: &str, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Publish { topic, payload, .. } => {
                    self.queue.push_back((from.to_owned(), topic, payload))
                }
                Action::Player(p) => self.players.entry(from.into()).or_default().push(p),
                Action::Notify(n) => self.notices.entry(from.into()).or_default().push(n),
                Action::StoreReadyTime { key, estimate } => {
                    self.kept
                        .entry(from.into())
                        .or_default()
                        .insert(key, estimate);
                }
                Action::Record(e) => self.events.push(*e),
                Action::StoreResume(p) => self.stored.entry(from.into()).or_default().push(*p),
                Action::StoreSession(_) => {}
            }
        }
        while let Some((sender, topic, payload)) = self.queue.pop_front() {
            if self.killed.contains(&sender) {
                continue;
            }
            let msg = wire::decode(&topic, &payload).expect("engines publish valid messages");
            if self.lose.is_some_and(|lose| lose(&sender, &msg)) {
                continue;
            }
            if let (TopicKind::Inbox { device }, wire::Body::Command(c)) =
                (&msg.topic.kind, &msg.body)
                && self.hold_switch_to.as_ref() == Some(device)
                && matches!(c.body, wire::CommandBody::HandoffSwitch { .. })
            {
                self.held.push((sender, topic, payload));
                continue;
            }
            if msg.topic.retained() {
                self.retained.insert(topic.clone(), payload.clone());
            }
            let targets: Vec<String> = match &msg.topic.kind {
                TopicKind::Inbox { device } => vec![device.clone()],
                TopicKind::Events => vec![],
                _ => self
                    .engines
                    .keys()
                    .filter(|d| **d != sender)
                    .cloned()
                    .collect(),
            };
            for d in targets {
                if let Some(l) = self.latency.get(&(sender.clone(), d.clone())) {
                    self.sent += 1;
                    self.in_flight
                        .push((self.now + l, self.sent, d.clone(), msg.clone()));
                    continue;
                }
                self.deliver(&d, msg.clone());
            }
        }
    }

    /// `msg` reaches `d` now (unless `d` is gone; a frozen one finds it when it thaws).
    fn deliver(&mut self, d: &str, mut msg: Incoming) {
        if self.offline.iter().any(|o| o == d)
            || self.killed.iter().any(|k| k == d)
            || !self.engines.contains_key(d)
        {
            return;
        }
        if let Some(waiting) = self.frozen.get_mut(d) {
            waiting.push(msg);
            return;
        }
        let now = self.local(d);
        if !self.latency.is_empty() {
            msg.received_unix_ns = Some(now);
        }
        let actions = self
            .engines
            .get_mut(d)
            .unwrap()
            .handle(now, Observation::Incoming(msg));
        self.run(d, actions);
    }

    /// When the next message on its way arrives.
    pub fn next_arrival(&self) -> Option<u64> {
        self.in_flight.iter().map(|(t, ..)| *t).min()
    }

    /// Deliver the messages due by now, in the order they were sent.
    pub fn deliver_due(&mut self) {
        loop {
            let now = self.now;
            let Some(i) = self
                .in_flight
                .iter()
                .enumerate()
                .filter(|(_, (t, ..))| *t <= now)
                .min_by_key(|(_, (t, seq, ..))| (*t, *seq))
                .map(|(i, _)| i)
            else {
                break;
            };
            let (_, _, d, msg) = self.in_flight.remove(i);
            self.deliver(&d, msg);
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms * MS;
        let ids: Vec<String> = self.engines.keys().cloned().collect();
        for id in ids {
            self.observe(&id, Observation::Tick);
        }
    }

    pub fn take_players(&mut self, id: &str) -> Vec<PlayerAction> {
        std::mem::take(self.players.entry(id.into()).or_default())
    }

    pub fn results(&self, id: &str) -> Vec<HandoffResult> {
        self.notices
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|n| match n {
                Notice::HandoffResult(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// kill -9: the device's connection drops, and the broker publishes its last will.
    pub fn kill(&mut self, id: &str) {
        self.killed.push(id.into());
        self.will(id);
    }

    /// The broker publishes `id`'s last will (`offline`, retained) to everyone else.
    pub fn will(&mut self, id: &str) {
        let offline = wire::Availability {
            v: 1,
            device: id.into(),
            status: wire::Status::Offline,
        };
        let topic = wire::Topic::availability("home", id).to_string();
        if self.latency.is_empty() {
            self.queue
                .push_back(("broker".into(), topic, wire::encode(&offline)));
            self.run("broker", Vec::new());
            return;
        }
        // After what the device published before it died (the broker had those already),
        // as late as its messages to each device.
        let payload = wire::encode(&offline);
        self.retained.insert(topic.clone(), payload.clone());
        let msg = wire::decode(&topic, &payload).expect("a will");
        let to: Vec<String> = self.engines.keys().filter(|d| *d != id).cloned().collect();
        for d in to {
            let l = self
                .latency
                .get(&(id.to_owned(), d.clone()))
                .copied()
                .unwrap_or(0);
            self.sent += 1;
            self.in_flight
                .push((self.now + l, self.sent, d, msg.clone()));
        }
    }

    /// kill -STOP: nothing the device receives is handled, and no time passes for it.
    pub fn freeze(&mut self, id: &str) {
        self.frozen.insert(id.into(), Vec::new());
    }

    /// kill -CONT: what waited in its socket arrives now, in order; then its timers run.
    pub fn thaw(&mut self, id: &str) {
        let waiting = self.frozen.remove(id).unwrap_or_default();
        for msg in waiting {
            self.observe(id, Observation::Incoming(msg));
        }
        self.observe(id, Observation::Tick);
    }

    /// Deliver the held switch commands now.
    pub fn release(&mut self) {
        self.hold_switch_to = None;
        let held = std::mem::take(&mut self.held);
        self.queue.extend(held);
        self.run("", Vec::new());
    }

    pub fn request(&mut self, initiator: &str, target: &str, source: &str) -> String {
        let now = self.local(initiator);
        let (id, actions) = self
            .engines
            .get_mut(initiator)
            .unwrap()
            .request_handoff(now, target, source);
        self.run(initiator, actions);
        id
    }
}

pub fn film() -> Media {
    Media {
        id: "file:film.ogg".into(),
        uri: Some("file:///films/film.ogg".into()),
        title: Some("Film".into()),
        duration_ns: Some(3600 * SECOND_NS),
        alternates: vec![Alternate {
            class: DeviceClass::Phone,
            uri: "file:///films/film-small.ogg".into(),
        }],
        ..Default::default()
    }
}

/// A phone playing the film from 100 s, a TV idle, a controller; the TV's clock runs 37 ms
/// ahead of the phone's.
pub fn setup() -> Net {
    let mut net = Net::new();
    net.add("phone", DeviceClass::Phone, 0, true);
    net.add("tv", DeviceClass::Tv, 37, true);
    net.add("cli", DeviceClass::Other, -5, false);
    phone_plays_from_100_s(&mut net);
    net
}

/// The phone starts the film with French audio and English subtitles and plays it from
/// 100 s; a second goes by.
pub fn phone_plays_from_100_s(net: &mut Net) {
    net.observe("phone", Observation::MediaStarted(film()));
    net.observe(
        "phone",
        Observation::Tracks {
            audio: Some(Track {
                language: Some("fr".into()),
                codec: Some("Vorbis".into()),
            }),
            subtitle: Some(Track {
                language: Some("en".into()),
                codec: None,
            }),
        },
    );
    net.observe(
        "phone",
        Observation::Playback {
            position_ns: 100 * SECOND_NS,
            state: PlayState::Playing,
            rate: 1.0,
        },
    );
    net.advance(1_000);
}

/// The TV's player: answer a load with a preroll after `preroll_ms`.
pub fn tv_loads(net: &mut Net, preroll_ms: u64) -> (String, u64) {
    let load = net
        .take_players("tv")
        .into_iter()
        .find_map(|p| match p {
            PlayerAction::Load {
                uri, position_ns, ..
            } => Some((uri, position_ns)),
            _ => None,
        })
        .expect("the TV was asked to load the media");
    net.advance(preroll_ms);
    net.observe(
        "tv",
        Observation::Prerolled {
            position_ns: load.1,
        },
    );
    load
}
