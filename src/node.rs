//! A device on the network: the engine, the MQTT link and the local store wired together on
//! a tokio runtime. The element, the CLI player and the demo are adapters around a `Node`:
//! they feed it observations and carry out the player actions it reports.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::engine::{Action, Engine, EngineConfig, Notice, Observation, PlayerAction, ResumeFrom};
use crate::history;
use crate::hlc::{Stamp, now_unix_ns};
use crate::intake::{Inbound, Intake, Refusals, shorten};
use crate::net::keeper::ANSWER_WINDOW;
use crate::net::link::{BrokerUrl, Link, LinkConfig, LinkError, LinkEvent, client_id};
use crate::security::account::Account;
use crate::security::rekey;
use crate::security::seal::Guard;
use crate::store::{EventRetention, Store, StoreError, Writer};
use crate::wire::{self, Body, Command, CommandBody, Event, Status, Topic, TopicKind};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the local store's writer: {0}")]
    StoreThread(std::io::Error),
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub engine: EngineConfig,
    /// `None` runs without a network: the engine and the local store only.
    pub broker: Option<BrokerUrl>,
    /// Directory of the local store; `None` keeps nothing on disk.
    pub store_dir: Option<PathBuf>,
    /// Adjust the link (timeouts, CA file) before it starts.
    pub link: Option<fn(&mut LinkConfig)>,
    /// The account's keys and roster: every message but availability is sealed and signed,
    /// and only sealed messages from paired devices are taken in. `None` runs in plain JSON
    /// (`encryption=off`, `--insecure-plaintext`): anyone on the broker reads and speaks.
    pub account: Option<Account>,
}

/// The capability of a device that keeps the account's events and answers history asks.
pub const HISTORY: &str = "history";

/// The local store's name for this device's envelope counter floor.
const COUNTER: &str = "seal";

/// What a node reports to its adapter.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    Connected,
    Down {
        reason: String,
    },
    /// A remote command or a handoff step for the player.
    Player(PlayerAction),
    /// A handoff result, a lost lease.
    Notice(Notice),
    /// This device was revoked from the account: the other devices refuse what it sends
    /// and it cannot read what they send from now on. Pairing again brings it back.
    Revoked,
    /// The account key was rotated (a device was revoked) and this device now seals with
    /// the new one.
    KeyRotated {
        key_id: String,
    },
    /// A message that failed to decode or open, with the reason (playback is never
    /// affected). `first`: the first refusal of this kind on this topic (worth a warning;
    /// the node logs the others at debug level only).
    Rejected {
        topic: String,
        reason: String,
        first: bool,
    },
    /// The local store stopped taking writes (a full disk, a read-only config dir): the
    /// user should hear it once, whatever the log level.
    StoreTrouble {
        message: String,
    },
}

/// How far this node's view of the broker's retained state can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Connecting, or connected and still receiving retained messages.
    Pending,
    /// Everything retained under this node's subscriptions has arrived.
    Synced,
    /// The broker cannot be reached: only the local store counts.
    Unreachable,
}

/// What the node's task and its callers share.
///
/// Locks: `engine`, `sync_id`, `guard`, `inbound`, `refusals`, `history_asked` and
/// `answer_budget` are each taken alone and released before
/// anything else is locked, with one exception: sealing (`guard`) queues the counter floor
/// for the store, which takes no lock (the writer is a channel). So no two of them are ever
/// held at once, and nothing is held across an await or a call into the adapter.
struct Inner {
    engine: Mutex<Engine>,
    device: String,
    account: String,
    sync: watch::Sender<SyncState>,
    /// Id of the sync command in flight.
    sync_id: Mutex<String>,
    /// Whose inbox the sync goes through: this device's helper `<device>~sync`, subscribed
    /// to after everything else (see [`sync_inbox`]).
    sync_inbox: String,
    link: Option<Link>,
    /// The local store's writer (its own thread).
    store: Option<Writer>,
    /// Sealing what this device sends, when the account is sealed.
    guard: Mutex<Option<Guard>>,
    /// What arrives: opened, checked, parked for a key, rosters merged.
    inbound: Mutex<Inbound>,
    /// Which refusals were logged as warnings already.
    refusals: Mutex<Refusals>,
    events: mpsc::Sender<NodeEvent>,
    /// Events the adapter did not take in time (its queue was full): counted and logged.
    dropped: std::sync::atomic::AtomicU64,
    /// Woken when the engine's next wake-up may have moved.
    rearm: Notify,
    /// Counts the messages taken in from the broker (see [`Node::wait_until`]).
    taken: watch::Sender<u64>,
    /// Retained availabilities the broker sent since the last sync began: whether its
    /// retained picture holds the account's devices (every device that ever connected has
    /// one).
    retained_seen: std::sync::atomic::AtomicU64,
    /// When this device asked for the account's state with nothing retained on its broker
    /// (see [`Node::resume_lookup`], which waits for the answers then).
    asked_empty: Mutex<Option<std::time::Instant>>,
    /// This node, for the work its store's thread hands back (answers to history asks).
    me: std::sync::Weak<Inner>,
    /// The runtime the node started on (the store's thread spawns its answers there).
    runtime: tokio::runtime::Handle,
    /// When this device last asked for the account's history.
    history_asked: Mutex<Option<std::time::Instant>>,
    /// How many history asks it still answers.
    answer_budget: Mutex<history::AnswerBudget>,
    /// It keeps the account's events and shares them (a device with a store and a link).
    keeps_history: bool,
    /// The link's subscriptions other than the devices' own topics, which follow the
    /// roster (see [`device_subscriptions`]).
    fixed_subscriptions: Vec<String>,
}

/// The id whose inbox a device's sync goes through: its helper `<device>~sync`, subscribed
/// to after every other filter. A broker that forwards each subscription's messages in turn,
/// in the order they were made (rumqttd), then sends the echo after the retained messages of
/// every other subscription, as brokers that keep one order per connection (mosquitto) do
/// anyway; through the device's own inbox, subscribed first, the echo would come before
/// them. The device's own id when the helper's would be too long.
fn sync_inbox(device: &str) -> String {
    let helper = wire::helper_id(device, "sync");
    if wire::check_id(&helper).is_ok() {
        helper
    } else {
        device.to_owned()
    }
}

/// The topics of the account's devices that a device or a view subscribes to: in a sealed
/// account, those of each device its roster trusts, one by one (with their key requests
/// when `rekey_requests`), so that no other id's topics reach it however many a stranger
/// fills with retained junk; in an open account (no roster), every device's, by wildcard.
pub(crate) fn device_subscriptions(
    account: &str,
    roster: Option<&wire::Roster>,
    rekey_requests: bool,
) -> Vec<String> {
    let Some(roster) = roster else {
        return vec![
            wire::filters::availability(account),
            wire::filters::device_info(account),
            wire::filters::sessions(account),
        ];
    };
    let mut filters = Vec::new();
    for entry in roster.devices.iter().filter(|e| !e.revoked) {
        filters.extend(wire::filters::device(account, &entry.device));
        if rekey_requests {
            filters.push(rekey::request_topic(account, &entry.device));
        }
    }
    filters
}

/// A lock that a panic elsewhere does not poison: what it guards stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Hand an event to the adapter without waiting. A full queue (an adapter that stopped
    /// reading) loses it: counted, and logged at the first loss and then at powers of two.
    fn emit(&self, ev: NodeEvent) {
        if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(ev) {
            let n = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    "{n} node events lost so far, the adapter is not reading (last: {ev:?})"
                );
            }
        }
    }

    /// How many events the adapter did not take in time.
    fn dropped_events(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    fn carry_out(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Publish {
                    topic,
                    payload,
                    retain,
                    reliable,
                } => {
                    self.publish_qos(&topic, payload, retain, reliable);
                }
                Action::StoreSession(s) => {
                    self.with_store(move |st| st.put_session(&s).map(|_| ()))
                }
                Action::StoreResume(r) => self.with_store(move |st| st.put_resume(&r).map(|_| ())),
                Action::StoreReadyTime { key, estimate } => {
                    self.with_store(move |st| st.put_ready_time(&key, &estimate))
                }
                Action::Record(e) => {
                    let topic = Topic::events(&self.account).to_string();
                    let sealed = self.publish_qos(&topic, wire::encode(&e), false, true);
                    self.keep_event(*e, sealed);
                }
                Action::Player(p) => {
                    self.emit(NodeEvent::Player(p));
                }
                Action::Notify(n) => {
                    self.emit(NodeEvent::Notice(n));
                }
            }
        }
        self.rearm.notify_one();
    }

    /// Keep an event in the local store (once: it dedupes by id), within its retention,
    /// with the sealed envelope that carried it (what this device hands on when asked).
    fn keep_event(&self, e: Event, sealed: Option<Vec<u8>>) {
        let sealed = sealed.and_then(|b| String::from_utf8(b).ok());
        self.with_store(move |st| {
            st.put_event_as(
                &e,
                sealed.as_deref(),
                EventRetention::default(),
                now_unix_ns(),
            )
            .map(|_| ())
        });
    }

    /// Ask the account's devices for the events this device lacks (it hears only what is
    /// published while it is connected): the store's thread sums up what it holds over the
    /// retention window.
    fn ask_history(&self) {
        let Some(writer) = self.store.as_ref().filter(|_| self.keeps_history) else {
            return;
        };
        *lock(&self.history_asked) = Some(std::time::Instant::now());
        let me = self.me.clone();
        writer.write(move |st| {
            let Some(inner) = me.upgrade() else {
                return Ok(());
            };
            let since = now_unix_ns()
                .saturating_sub(u64::from(EventRetention::default().days) * history::DAY_NS);
            let summary = history::Summary::of(st.event_keys(since)?);
            let id = format!("h-{:016x}", fastrand::u64(..));
            let ask = summary.ask(&id, &inner.device, since);
            tracing::debug!("asking the account for the events this device lacks ({id})");
            let topic = Topic::history_ask(&inner.account).to_string();
            inner.publish(&topic, wire::encode(&ask), false);
            Ok(())
        });
    }

    /// Another device (or a view) asks for the events it lacks: the store's thread finds
    /// the days this device holds otherwise and sends their events as they came (sealed by
    /// their recorders), paced so that they never crowd out commands. Always at least one
    /// answer, the last saying so, so that a view knows when it has heard everyone. When
    /// the asker holds events this device lacks, it asks in turn (at most once a minute).
    fn answer_history(&self, ask: wire::HistoryAsk) {
        let Some(writer) = self.store.as_ref().filter(|_| self.keeps_history) else {
            return;
        };
        if ask.device == self.device {
            return;
        }
        if !lock(&self.answer_budget).allow(&ask.device, now_unix_ns()) {
            tracing::info!(
                "{} asks for the account's history again: not answered (at most one answer \
                 per asker in {} s, {} a minute)",
                ask.device,
                history::AnswerBudget::PER_ASKER_NS / 1_000_000_000,
                history::AnswerBudget::PER_MINUTE
            );
            return;
        }
        let me = self.me.clone();
        let sealed = lock(&self.guard).is_some();
        writer.write(move |st| {
            let Some(inner) = me.upgrade() else {
                return Ok(());
            };
            let mine = history::Summary::of(st.event_keys(ask.since_unix_ns)?);
            let cmp = mine.compare(&history::Summary::from_ask(&ask), ask.since_unix_ns);
            let mut events = Vec::new();
            let mut unsealed = 0;
            'days: for (device, day) in &cmp.send {
                let from = (u64::from(*day) * history::DAY_NS).max(ask.since_unix_ns);
                let to = u64::from(*day + 1) * history::DAY_NS;
                for (json, envelope) in st.event_texts(device, from, to)? {
                    let text = if sealed { envelope } else { Some(json) };
                    match text.and_then(|t| serde_json::from_str(&t).ok()) {
                        Some(v) => events.push(v),
                        None => unsealed += 1,
                    }
                    if events.len() >= history::MAX_SENT {
                        break 'days;
                    }
                }
            }
            if unsealed > 0 {
                tracing::debug!(
                    "{unsealed} events kept without the envelope that carried them cannot be \
                     handed on"
                );
            }
            if !events.is_empty() {
                tracing::info!(
                    "{} lacks {} events of the account's history: sending them",
                    ask.device,
                    events.len()
                );
            }
            let answers = history::answers(&inner.device, &ask, events);
            let ask_back = cmp.they_hold_more
                && lock(&inner.history_asked)
                    .is_none_or(|t| t.elapsed() >= Duration::from_nanos(history::ASK_BACK_NS));
            let runtime = inner.runtime.clone();
            runtime.spawn(async move {
                let topic = Topic::history_answer(&inner.account).to_string();
                for a in answers {
                    inner.publish(&topic, wire::encode(&a), false);
                    // One at a time, each once the broker has the one before; a link that
                    // went down ends it (the asker asks again when it reconnects).
                    if let Some(link) = &inner.link
                        && !link.flush(Duration::from_secs(5)).await
                    {
                        tracing::debug!("the link is down: the rest of a history answer waits");
                        break;
                    }
                }
                if ask_back {
                    inner.ask_history();
                }
            });
            Ok(())
        });
    }

    /// Events of the account's history that another device sent (to whoever asked): each
    /// checked as it was on `events` (its recorder's signature), and the new ones kept.
    fn take_history(&self, answer: wire::HistoryAnswer) {
        if !self.keeps_history || answer.device == self.device {
            return;
        }
        let mut kept = Vec::new();
        let mut refused = 0;
        {
            let mut inbound = lock(&self.inbound);
            for item in &answer.events {
                match inbound.archived_event(item) {
                    Ok(e) => kept.push(e),
                    Err(why) => {
                        refused += 1;
                        tracing::debug!("refused an event handed on by {}: {why}", answer.device);
                    }
                }
            }
        }
        if refused > 0 {
            tracing::warn!(
                "refused {refused} of {} events that {} handed on (run with -vv for why)",
                answer.events.len(),
                answer.device
            );
        }
        self.with_store(move |st| {
            let now = now_unix_ns();
            for (e, sealed) in kept {
                st.put_event_as(&e, sealed.as_deref(), EventRetention::default(), now)?;
            }
            Ok(())
        });
    }

    /// Ask the broker for an echo: subscriptions were sent before it, so their retained
    /// messages arrive before it does.
    fn send_sync(&self) {
        let id = format!("sync-{:08x}", fastrand::u32(..));
        let cmd = Command {
            v: wire::VERSION,
            id: id.clone(),
            from: self.sync_inbox.clone(),
            to: self.sync_inbox.clone(),
            sent_unix_ns: now_unix_ns(),
            body: CommandBody::Sync,
        };
        *lock(&self.sync_id) = id;
        *lock(&self.asked_empty) = None;
        self.retained_seen
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.sync.send_replace(SyncState::Pending);
        let topic = Topic::inbox(&self.account, &self.sync_inbox).to_string();
        self.publish(&topic, wire::encode(&cmd), false);
    }

    /// Everything retained under this device's subscriptions has arrived: ask the account's
    /// online devices for what this broker lacks (its node of a cluster may not hold what
    /// was published through another node). The ask says what arrived, so on a broker that
    /// holds everything nobody answers: a join costs one message, not one per device.
    /// A helper that does not announce itself (`continuity transfer`) asks too, so that it
    /// finds the devices on such a broker, but never answers.
    fn ask(&self) {
        let ask = {
            let engine = self.engine();
            let dir = engine.directory();
            wire::StateAsk {
                v: wire::VERSION,
                device: self.device.clone(),
                seen: dir.seen(&self.device),
            }
        };
        self.publish(
            &Topic::ask(&self.account).to_string(),
            wire::encode(&ask),
            false,
        );
    }

    /// Another device asks for what its broker lacks: when it does not hold this device as
    /// online with its current session, this device publishes its retained state again
    /// (the link jitters it, and leaves out the shared copies another device sends first).
    fn answer(&self, ask: &wire::StateAsk) {
        let Some(link) = &self.link else { return };
        if ask.device == self.device {
            return;
        }
        let current = {
            let engine = self.engine();
            if !engine.config().announce {
                return;
            }
            engine
                .directory()
                .sessions
                .get(&self.device)
                .map(|s| s.stamp.clone())
        };
        let held = ask.seen.iter().find(|s| s.device == self.device);
        if held.is_some_and(|h| h.session == current) {
            return;
        }
        tracing::info!(
            "{} lacks this device's state on its broker: publishing it again",
            ask.device
        );
        link.answer();
    }

    /// Publish a plain message at QoS 1, sealed and signed when the account is sealed.
    fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.publish_qos(topic, payload, retain, true);
    }

    /// [`Inner::publish`], at QoS 0 unless `reliable`. Returns the sealed envelope sent, in
    /// a sealed account.
    fn publish_qos(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
        reliable: bool,
    ) -> Option<Vec<u8>> {
        let link = self.link.as_ref()?;
        // Sealed and queued under one lock: the receivers refuse a counter lower than one
        // they saw on the topic, so two threads publishing to one topic at once must queue
        // their messages in the order of their counters.
        let mut guard = lock(&self.guard);
        match guard.as_mut() {
            Some(g) => {
                let sealed = g.seal(topic, &payload, now_unix_ns());
                if let Some(floor) = g.take_reservation() {
                    self.with_store(move |st| st.raise_counter(COUNTER, floor));
                }
                link.publish(topic, sealed.clone(), retain, reliable);
                Some(sealed)
            }
            None => {
                link.publish(topic, payload, retain, reliable);
                None
            }
        }
    }

    /// Listen to the devices the roster trusts now: a newcomer's topics from now on, a
    /// revoked device's no more.
    fn resubscribe(&self) {
        let Some(link) = &self.link else { return };
        let roster = lock(&self.inbound).roster().cloned();
        let mut filters = device_subscriptions(&self.account, roster.as_ref(), true);
        filters.extend(self.fixed_subscriptions.iter().cloned());
        link.set_subscriptions(&filters);
    }

    /// Publish this device's roster (retained): a device that has just been paired makes
    /// itself known to the others this way.
    fn publish_roster(&self) {
        let roster = lock(&self.inbound).roster().map(wire::encode);
        if let Some(r) = roster {
            self.publish(&Topic::roster(&self.account).to_string(), r, true);
        }
    }

    /// A message from the broker, which the link read off the connection at
    /// `received_unix_ns`, through the receive pipeline.
    fn take_message(&self, topic: &str, payload: &[u8], received_unix_ns: u64, retained: bool) {
        let mut intakes = lock(&self.inbound).take(topic, payload, now_unix_ns());
        // The retain flag tells the broker's retained picture (what a new subscription
        // finds) from news. Some brokers (rumqttd) also set it on what they forward live:
        // after this device's sync, nothing is a new subscription's any more.
        let retained = retained && *self.sync.borrow() != SyncState::Synced;
        if retained && topic.ends_with("/availability") {
            self.retained_seen
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for intake in &mut intakes {
            if let Intake::Message(m) = intake {
                m.received_unix_ns = Some(received_unix_ns);
                m.retained = retained;
            }
        }
        let resume_stamp = intakes.iter().find_map(|i| match i {
            Intake::Message(m) => match &m.body {
                Body::Resume(r) => Some(r.stamp.clone()),
                _ => None,
            },
            _ => None,
        });
        let taken_roster = intakes.iter().all(|i| {
            !matches!(
                i,
                Intake::Rejected { .. } | Intake::PublishSealed(_) | Intake::Message(_)
            )
        });
        for intake in &intakes {
            if let Intake::Message(m) = intake
                && let Body::Event(e) = &m.body
            {
                // Checked and opened like everything else: a paired device's event, kept
                // with the envelope its recorder signed.
                let sealed = lock(&self.guard).is_some().then(|| payload.to_vec());
                self.keep_event(e.clone(), sealed);
            }
        }
        for intake in intakes {
            self.carry_intake(intake);
        }
        if let Some(link) = &self.link
            && !link.holds(topic, payload)
            && self.keeps(topic, taken_roster, resume_stamp)
        {
            link.keep(topic, payload);
        }
        self.taken.send_modify(|n| *n += 1);
    }

    /// Whether what just arrived on a shared retained topic is the copy to keep on the broker:
    /// an authentic roster (`taken_roster`; when it lacks something this device knows, the
    /// receive pipeline answers with the merged one soon, which replaces it), or a resume
    /// point (stamped `resume_stamp`) that is now the newest for its media. Every device that
    /// saw it keeps it, so that it outlives its author when the broker loses it or is given an
    /// older copy.
    fn keeps(&self, topic: &str, taken_roster: bool, resume_stamp: Option<Stamp>) -> bool {
        match Topic::parse(topic).map(|t| t.kind) {
            Ok(TopicKind::Roster) => taken_roster,
            Ok(TopicKind::Resume { media_key }) => resume_stamp.is_some_and(|stamp| {
                self.engine()
                    .directory()
                    .resume
                    .get(&media_key)
                    .is_some_and(|newest| newest.stamp == stamp)
            }),
            _ => false,
        }
    }

    fn carry_intake(&self, intake: Intake) {
        match intake {
            Intake::Message(msg) if self.is_own_sync(&msg.body) => {
                // Before the sync is seen to be over, so that a lookup waiting for it also
                // waits for the answers to the ask that follows.
                let retained = self
                    .retained_seen
                    .load(std::sync::atomic::Ordering::Relaxed);
                tracing::debug!("synced: the broker held {retained} devices' availability");
                let empty = retained == 0;
                if empty {
                    *lock(&self.asked_empty) = Some(std::time::Instant::now());
                }
                self.sync.send_replace(SyncState::Synced);
                lock(&self.inbound).synced(now_unix_ns());
                self.rearm.notify_one();
                let actions = self.engine().synced(now_unix_ns());
                self.carry_out(actions);
                self.ask();
                self.ask_history();
            }
            Intake::Message(msg) if matches!(msg.body, Body::Ask(_)) => {
                if let Body::Ask(ask) = &msg.body {
                    self.answer(ask);
                }
            }
            Intake::Message(msg) if matches!(msg.body, Body::HistoryAsk(_)) => {
                if let Body::HistoryAsk(ask) = msg.body {
                    self.answer_history(ask);
                }
            }
            Intake::Message(msg) if matches!(msg.body, Body::HistoryAnswer(_)) => {
                if let Body::HistoryAnswer(answer) = msg.body {
                    self.take_history(answer);
                }
            }
            Intake::Message(msg) => {
                let actions = self
                    .engine()
                    .handle(now_unix_ns(), Observation::Incoming(*msg));
                self.carry_out(actions);
            }
            Intake::Seen {
                sender,
                topic,
                counter,
            } => self.with_store(move |st| st.put_seen(&sender, &topic, counter)),
            Intake::PublishSealed(o) => self.publish(&o.topic, o.payload, o.retain),
            Intake::Publish(o) => {
                if let Some(link) = &self.link {
                    link.publish(&o.topic, o.payload, o.retain, true);
                }
            }
            Intake::RosterChanged { revoked } => {
                let mut engine = self.engine();
                for device in &revoked {
                    engine.forget_device(device);
                }
                drop(engine);
                self.resubscribe();
            }
            Intake::Revoked => {
                self.emit(NodeEvent::Revoked);
            }
            Intake::Rekeyed { current, all } => {
                let key_id = current.key_id.clone();
                let media_keys = current.media_keys();
                if let Some(g) = lock(&self.guard).as_mut() {
                    g.set_keys(current, all);
                }
                let now = now_unix_ns();
                let mut actions = self.engine().set_media_keys(media_keys);
                actions.extend(self.engine().announce(now));
                self.carry_out(actions);
                self.publish_roster();
                self.resubscribe();
                tracing::info!("now sealing with account key {key_id}");
                self.emit(NodeEvent::KeyRotated { key_id });
            }
            Intake::Rejected { topic, reason } => {
                let told = lock(&self.refusals).note(&topic, &reason, now_unix_ns());
                if let Some(summary) = &told.summary {
                    tracing::warn!("{summary}");
                }
                let (t, r) = (shorten(&topic, 160), shorten(&reason, 300));
                if told.warn {
                    tracing::warn!("refused a message on {t}: {r}");
                } else {
                    tracing::debug!("refused a message on {t}: {r}");
                }
                let first = told.warn;
                self.emit(NodeEvent::Rejected {
                    topic,
                    reason,
                    first,
                });
            }
        }
    }

    fn is_own_sync(&self, body: &Body) -> bool {
        matches!(body, Body::Command(c)
            if c.body == CommandBody::Sync
                && c.from == self.sync_inbox
                && c.to == self.sync_inbox
                && c.id == *lock(&self.sync_id))
    }

    /// Queue a write for the store's own thread (nothing without a store).
    fn with_store(&self, f: impl FnOnce(&Store) -> Result<(), StoreError> + Send + 'static) {
        if let Some(writer) = &self.store {
            writer.write(f);
        }
    }
}

/// Wait (at most `timeout`) for the result of handoff `id` among a node's events; other
/// events are passed over.
pub async fn handoff_result(
    events: &mut mpsc::Receiver<NodeEvent>,
    id: &str,
    timeout: Duration,
) -> Option<crate::wire::HandoffResult> {
    tokio::time::timeout(timeout, async {
        while let Some(ev) = events.recv().await {
            if let NodeEvent::Notice(Notice::HandoffResult(r)) = ev
                && r.handoff == id
            {
                return Some(r);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// How long a resume lookup waits for the clock of the device whose live session it
/// continues (see [`Node::resume_lookup`]).
pub const CLOCK_WAIT: Duration = Duration::from_millis(300);

/// A running device.
/// Dropping it vanishes without a goodbye (the broker fires the last will); use
/// [`Node::shutdown`] to leave cleanly.
pub struct Node {
    inner: Arc<Inner>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Node {
    /// Start on the current tokio runtime: open the store, connect, announce the device.
    /// The broker being down is not an error: the node keeps trying in the background.
    pub fn start(cfg: NodeConfig) -> Result<(Node, mpsc::Receiver<NodeEvent>), NodeError> {
        let store = cfg.store_dir.as_deref().map(Store::open_in).transpose()?;
        let mut engine_cfg = cfg.engine.clone();
        // A device with a store and a broker keeps the account's events and answers the
        // asks for them (a view waits for the answers of those that say so).
        if engine_cfg.announce
            && store.is_some()
            && cfg.broker.is_some()
            && !engine_cfg.capabilities.iter().any(|c| c == HISTORY)
        {
            engine_cfg.capabilities.push(HISTORY.into());
        }
        let guard = match &cfg.account {
            Some(account) => {
                let floor = match &store {
                    Some(st) => st.counter(COUNTER)?,
                    None => 0,
                };
                let guard = account.guard(floor);
                engine_cfg.media_keys = guard.media_keys();
                Some(guard)
            }
            None => None,
        };
        let mut engine = Engine::new(engine_cfg);
        if let Some(store) = &store {
            for point in store.resume_points()? {
                engine.load_resume(point);
            }
            for (key, estimate) in store.ready_times()? {
                engine.restore_ready_time(&key, estimate);
            }
        }
        let account = &cfg.engine.account;
        let device = &cfg.engine.device.id;
        let mut inbound = Inbound::new(account, device, cfg.account.clone());
        if let Some(st) = &store {
            for (sender, topic, counter) in st.seen()? {
                inbound.remember(&sender, &topic, counter);
            }
        }
        // What the link subscribes to besides the devices' topics (see `resubscribe`).
        let mut fixed_subscriptions = Vec::new();
        let (link, link_events) = match &cfg.broker {
            Some(broker) => {
                let mut link_cfg = LinkConfig::new(broker.clone(), client_id(device));
                // A node that does not announce itself (the command line's helpers) leaves
                // nothing behind: no `offline` for a device nobody saw online.
                if cfg.engine.announce {
                    let topic = Topic::availability(account, device).to_string();
                    link_cfg.will = Some((
                        topic.clone(),
                        wire::encode(&engine.availability(Status::Offline)),
                    ));
                    // Online from the first packet on, before the subscriptions: a broker that
                    // keeps retained messages hands it back flagged retained, which tells it
                    // from one that hands a wildcard subscription nothing retained (see
                    // `Node::resume_lookup`), even when the link connects before the rest of
                    // the announcement is queued.
                    link_cfg.retained =
                        vec![(topic, wire::encode(&engine.availability(Status::Online)))];
                }
                // Its inbox before it says it is online: a device that sees it come online
                // may send it a command (a clock probe, an automatic handoff) at once.
                link_cfg.first_subscriptions = vec![Topic::inbox(account, device).to_string()];
                link_cfg.subscriptions = vec![wire::filters::resume(account)];
                // A device keeps the account's events (the analytics of `continuity stats`),
                // and answers the asks of devices whose broker lacks its state.
                if cfg.engine.announce {
                    link_cfg.subscriptions.extend([
                        Topic::events(account).to_string(),
                        wire::filters::ask(account),
                    ]);
                    // And shares them: it asks for those it lacks, and answers such asks.
                    if store.is_some() {
                        link_cfg.subscriptions.extend([
                            Topic::history_ask(account).to_string(),
                            Topic::history_answer(account).to_string(),
                        ]);
                    }
                }
                if cfg.account.is_some() {
                    link_cfg.subscriptions.push(wire::filters::roster(account));
                    link_cfg
                        .first_subscriptions
                        .push(rekey::answer_topic(account, device));
                }
                // The sync's inbox last (see `sync_inbox`).
                if sync_inbox(device) != *device {
                    let topic = Topic::inbox(account, &sync_inbox(device)).to_string();
                    link_cfg.subscriptions.push(topic);
                }
                // The devices' topics first: what a stranger may have filled the rest with
                // comes after them.
                fixed_subscriptions = std::mem::take(&mut link_cfg.subscriptions);
                let roster = cfg.account.as_ref().map(|a| &a.roster);
                link_cfg.subscriptions = device_subscriptions(account, roster, true);
                link_cfg
                    .subscriptions
                    .extend(fixed_subscriptions.iter().cloned());
                if let Some(adjust) = cfg.link {
                    adjust(&mut link_cfg);
                }
                let (link, events) = Link::spawn(link_cfg)?;
                (Some(link), Some(events))
            }
            None => (None, None),
        };
        let (events_tx, events_rx) = mpsc::channel(256);
        let announce = engine.announce(now_unix_ns());
        let (sync, _) = watch::channel(if link.is_some() {
            SyncState::Pending
        } else {
            SyncState::Unreachable
        });
        let keeps_history = cfg.engine.announce && store.is_some() && link.is_some();
        let trouble = events_tx.clone();
        let writer = store
            .map(|store| {
                Writer::spawn(store, move |message| {
                    let _ = trouble.try_send(NodeEvent::StoreTrouble { message });
                })
            })
            .transpose()
            .map_err(NodeError::StoreThread)?;
        let inner = Arc::new_cyclic(|me| Inner {
            engine: Mutex::new(engine),
            device: device.clone(),
            account: account.clone(),
            sync,
            sync_id: Mutex::new(String::new()),
            sync_inbox: sync_inbox(device),
            link,
            store: writer,
            guard: Mutex::new(guard),
            inbound: Mutex::new(inbound),
            refusals: Mutex::default(),
            events: events_tx,
            dropped: Default::default(),
            rearm: Notify::new(),
            taken: watch::channel(0).0,
            retained_seen: std::sync::atomic::AtomicU64::new(0),
            asked_empty: Mutex::new(None),
            me: me.clone(),
            runtime: tokio::runtime::Handle::current(),
            history_asked: Mutex::new(None),
            answer_budget: Mutex::default(),
            keeps_history,
            fixed_subscriptions,
        });
        inner.carry_out(announce);
        let task = tokio::spawn(run(inner.clone(), link_events));
        Ok((
            Node {
                inner,
                task: Some(task),
            },
            events_rx,
        ))
    }

    /// Feed an observation made now.
    pub fn observe(&self, obs: Observation) {
        self.observe_at(now_unix_ns(), obs);
    }

    /// Feed an observation that holds at wall-clock instant `at_unix_ns` (for example the
    /// instant a buffer will be rendered).
    pub fn observe_at(&self, at_unix_ns: u64, obs: Observation) {
        let actions = self.inner.engine().handle(at_unix_ns, obs);
        self.inner.carry_out(actions);
    }

    /// Ask `target` to take over the session of `source`; the result comes as
    /// [`NodeEvent::Notice`] with [`Notice::HandoffResult`]. Returns the handoff id.
    pub fn request_handoff(&self, target: &str, source: &str) -> String {
        let (id, actions) = self
            .inner
            .engine()
            .request_handoff(now_unix_ns(), target, source);
        self.inner.carry_out(actions);
        id
    }

    /// Undo the last automatic handoff ([`crate::engine::Engine::hand_back`]): its id.
    pub fn hand_back(&self) -> Option<String> {
        let (id, actions) = self.inner.engine().hand_back(now_unix_ns())?;
        self.inner.carry_out(actions);
        Some(id)
    }

    /// Record an event the application saw (a resume offered, taken or declined): published
    /// and kept like the engine's own.
    pub fn note(&self, name: wire::EventName) {
        let actions = self.inner.engine().note(now_unix_ns(), name);
        self.inner.carry_out(actions);
    }

    /// Pull handoff: this device plays `session` now, at its live position; `from` pauses.
    pub fn take_over(&self, from: &str, session: &str, epoch: u64) {
        let actions = self
            .inner
            .engine()
            .take_over(now_unix_ns(), from, session, epoch);
        self.inner.carry_out(actions);
    }

    /// Whether the retained state has fully arrived, or the broker is unreachable.
    pub fn sync_state(&self) -> SyncState {
        *self.inner.sync.borrow()
    }

    /// Wait until the retained state has arrived (or the broker is known to be unreachable),
    /// at most `timeout`; then the newest resume point for `media_id` that the resume rules
    /// accept, from the local store or the broker, whichever is newer.
    ///
    /// A live session is read with its device's clock: when the probe of that clock (sent
    /// as the device was seen online) has not been answered yet, the lookup waits for the
    /// answer, at most [`CLOCK_WAIT`].
    ///
    /// When the broker held no device's availability for the account, not even this
    /// device's own (the link publishes it before subscribing: a RabbitMQ node gives nothing
    /// retained to a wildcard subscription), it also waits for the answers to this device's
    /// ask, at most [`ANSWER_WINDOW`] after it and within `timeout`: the online devices send
    /// their state then. A broker that keeps retained messages costs no wait, even empty (the
    /// first device of an account); one that holds part of the state (a bridge that lost
    /// the retain flag one way) is completed by the answers as they come, after the lookup.
    pub async fn resume_lookup(&self, media_id: &str, timeout: Duration) -> Option<ResumeFrom> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.synced(timeout).await;
        let asked = *lock(&self.inner.asked_empty);
        if let Some(at) = asked {
            let answered = tokio::time::Instant::from_std(at + ANSWER_WINDOW);
            tokio::time::sleep_until(answered.min(deadline)).await;
        }
        // Whether there is a live session to continue at all depends on its position (the
        // resume rules), so the clock is waited for before anything is decided.
        let unmeasured = self.with_engine(|e| {
            e.live_session(media_id)
                .map(|s| s.device.clone())
                .filter(|d| e.directory().clocks.is_waiting(d))
        });
        if let Some(device) = unmeasured {
            self.wait_until(CLOCK_WAIT, |e| !e.directory().clocks.is_waiting(&device))
                .await;
        }
        self.resume_position(media_id)
    }

    /// Wait until the retained state has arrived or the broker is known to be unreachable,
    /// at most `timeout`; returns the state then.
    pub async fn synced(&self, timeout: Duration) -> SyncState {
        let mut rx = self.inner.sync.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|s| *s != SyncState::Pending)).await;
        self.sync_state()
    }

    /// Wait until `pred` holds for the engine, checked again after each message taken in
    /// from the broker, at most `max`. Returns whether it held.
    pub async fn wait_until(&self, max: Duration, pred: impl Fn(&Engine) -> bool) -> bool {
        let mut taken = self.inner.taken.subscribe();
        tokio::time::timeout(max, async {
            loop {
                // The engine's lock is released before waiting.
                let held = pred(&self.inner.engine());
                if held {
                    return;
                }
                if taken.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Wait until `pred` holds for the local store, checked on the store's thread (after
    /// every write queued before) at once and again after each message taken in from the
    /// broker, at most `max`. Returns whether it held; `false` without a store.
    pub async fn wait_store(
        &self,
        max: Duration,
        pred: impl Fn(&Store) -> bool + Clone + Send + 'static,
    ) -> bool {
        let Some(writer) = &self.inner.store else {
            return false;
        };
        let mut taken = self.inner.taken.subscribe();
        tokio::time::timeout(max, async {
            loop {
                taken.borrow_and_update();
                let (tx, rx) = tokio::sync::oneshot::channel();
                let pred = pred.clone();
                writer.write(move |st| {
                    let _ = tx.send(pred(st));
                    Ok(())
                });
                if rx.await.unwrap_or(false) {
                    return;
                }
                if taken.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Run `f` with the engine (to read its state).
    pub fn with_engine<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        f(&mut self.inner.engine())
    }

    /// Where to start a media id now, if the rules say to resume it (see
    /// [`Engine::resume_position`]).
    pub fn resume_position(&self, media_id: &str) -> Option<ResumeFrom> {
        self.inner.engine().resume_position(media_id, now_unix_ns())
    }

    pub fn connected(&self) -> bool {
        self.inner.link.as_ref().is_some_and(Link::connected)
    }

    /// Wait until what was published so far is acknowledged by the broker.
    /// Also waits for the local store's writes queued so far.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let stored = self.sync_store(timeout).await;
        let sent = match &self.inner.link {
            Some(link) => link.flush(timeout).await,
            None => true,
        };
        stored && sent
    }

    /// How many events were lost because the adapter's queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.inner.dropped_events()
    }

    /// Wait (at most `timeout`) until the local store has written what was queued.
    pub async fn sync_store(&self, timeout: Duration) -> bool {
        match &self.inner.store {
            Some(writer) => writer.sync(timeout).await,
            None => true,
        }
    }

    /// Say goodbye (offline, flushed within `timeout`, disconnect) but keep the node; for
    /// owners that share it. Dropping it afterwards stops it.
    pub async fn goodbye(&self, timeout: Duration) -> bool {
        self.sync_store(timeout).await;
        match &self.inner.link {
            Some(link) => link.goodbye(timeout).await,
            None => true,
        }
    }

    /// Say goodbye (offline, flushed within `timeout`) and stop.
    pub async fn shutdown(mut self, timeout: Duration) -> bool {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        // A clean goodbye is an event too (a device that vanishes cannot tell it).
        let actions = self
            .inner
            .engine()
            .note(now_unix_ns(), wire::EventName::DeviceOffline);
        self.inner.carry_out(actions);
        self.sync_store(timeout).await;
        let inner = self.inner.clone();
        drop(self);
        match Arc::try_unwrap(inner) {
            Ok(Inner {
                link: Some(link), ..
            }) => link.shutdown(timeout).await,
            Ok(_) => true,
            Err(inner) => match &inner.link {
                Some(link) => link.flush(timeout).await,
                None => true,
            },
        }
    }
}

async fn run(inner: Arc<Inner>, link_events: Option<mpsc::Receiver<LinkEvent>>) {
    // Without a link there are no events; the loop still runs the heartbeat.
    let (_keep, mut link_events) = match link_events {
        Some(rx) => (None, rx),
        None => {
            let (tx, rx) = mpsc::channel(1);
            (Some(tx), rx)
        }
    };
    loop {
        let wake = [
            inner.engine().next_wakeup(),
            lock(&inner.inbound).next_due(),
        ]
        .into_iter()
        .flatten()
        .min();
        let sleep = async {
            match wake {
                Some(t) => {
                    let now = now_unix_ns();
                    tokio::time::sleep(Duration::from_nanos(t.saturating_sub(now))).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = link_events.recv() => {
                let Some(ev) = ev else { return };
                match ev {
                    LinkEvent::Connected => {
                        inner.engine().connected();
                        // The roster is published after the sync, if the broker's lacks
                        // something (see `Inbound::synced`).
                        lock(&inner.inbound).connected();
                        inner.send_sync();
                        inner.emit(NodeEvent::Connected);
                    }
                    LinkEvent::Down { reason } => {
                        inner.sync.send_replace(SyncState::Unreachable);
                        inner.emit(NodeEvent::Down { reason });
                    }
                    LinkEvent::Message { topic, payload, received_unix_ns, retained } => {
                        inner.take_message(&topic, &payload, received_unix_ns, retained);
                    }
                }
            }
            _ = sleep => {
                let now = now_unix_ns();
                let actions = inner.engine().handle(now, Observation::Tick);
                inner.carry_out(actions);
                let intakes = lock(&inner.inbound).tick(now);
                for intake in intakes {
                    inner.carry_intake(intake);
                }
            }
            _ = inner.rearm.notified() => {}
        }
    }
}
