//! A device on the network: the engine, the MQTT link and the local store wired together on
//! a tokio runtime. The element, the CLI player and the demo are adapters around a `Node`:
//! they feed it observations and carry out the player actions it reports.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::engine::{Action, Engine, EngineConfig, Notice, Observation, PlayerAction, ResumeFrom};
use crate::hlc::now_unix_ns;
use crate::net::link::{BrokerUrl, Link, LinkConfig, LinkError, LinkEvent, client_id};
use crate::security::account::Account;
use crate::security::rekey::{self, KeyRequest};
use crate::security::seal::{Guard, SealError};
use crate::store::{Store, StoreError};
use crate::wire::{self, Body, Command, CommandBody, Status, Topic};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// The local store's name for this device's envelope counter floor.
const COUNTER: &str = "seal";
/// How many retained messages wait for a rotated key at most.
const MAX_PARKED: usize = 512;

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
    /// affected).
    Rejected {
        topic: String,
        reason: String,
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

struct Inner {
    engine: Mutex<Engine>,
    device: String,
    account: String,
    sync: watch::Sender<SyncState>,
    /// Id of the sync command in flight.
    sync_id: Mutex<String>,
    link: Option<Link>,
    store: Mutex<Option<Store>>,
    /// Sealing and opening, when the account is sealed.
    guard: Mutex<Option<Guard>>,
    keys: Mutex<Option<Account>>,
    /// Asking for a rotated key.
    rekey: Mutex<rekey::Asker>,
    /// Retained messages sealed with a key this device lacks (the latest per topic, at most
    /// `MAX_PARKED`): taken in again once the key arrives, since the broker does not send
    /// them twice.
    parked: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
    events: mpsc::Sender<NodeEvent>,
    /// Woken when the engine's next wake-up may have moved.
    rearm: Notify,
    /// Counts the messages taken in from the broker (see [`Node::wait_until`]).
    taken: watch::Sender<u64>,
}

impl Inner {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn carry_out(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Publish {
                    topic,
                    payload,
                    retain,
                } => self.publish(&topic, payload, retain),
                Action::StoreSession(s) => self.with_store(|st| st.put_session(&s).map(|_| ())),
                Action::StoreResume(r) => self.with_store(|st| st.put_resume(&r).map(|_| ())),
                Action::Player(p) => {
                    let _ = self.events.try_send(NodeEvent::Player(p));
                }
                Action::Notify(n) => {
                    let _ = self.events.try_send(NodeEvent::Notice(n));
                }
            }
        }
        self.rearm.notify_one();
    }

    /// Ask the broker for an echo: subscriptions were sent before it, so their retained
    /// messages arrive before it does.
    fn send_sync(&self) {
        let id = format!("sync-{:08x}", fastrand::u32(..));
        let cmd = Command {
            v: wire::VERSION,
            id: id.clone(),
            from: self.device.clone(),
            to: self.device.clone(),
            sent_unix_ns: now_unix_ns(),
            body: CommandBody::Sync,
        };
        *self.sync_id.lock().unwrap_or_else(|e| e.into_inner()) = id;
        self.sync.send_replace(SyncState::Pending);
        let topic = Topic::inbox(&self.account, &self.device).to_string();
        self.publish(&topic, wire::encode(&cmd), false);
    }

    /// Publish a plain message, sealed and signed when the account is sealed.
    fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        let Some(link) = &self.link else { return };
        let payload = {
            let mut guard = self.guard.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_mut() {
                Some(g) => {
                    let sealed = g.seal(topic, &payload, now_unix_ns());
                    if let Some(floor) = g.take_reservation() {
                        self.with_store(|st| st.raise_counter(COUNTER, floor));
                    }
                    sealed
                }
                None => payload,
            }
        };
        link.publish(topic, payload, retain, true);
    }

    /// Decode what arrived: opened and checked when sealed.
    fn decode(&self, topic: &str, payload: &[u8]) -> Result<wire::Incoming, String> {
        let mut guard = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        let Some(g) = guard.as_mut() else {
            return match wire::decode(topic, payload) {
                Ok(m) if matches!(m.body, Body::Sealed(_)) => Err(
                    "a sealed message, and this device runs unencrypted (plain JSON): pair it \
                     with the account instead"
                        .into(),
                ),
                Ok(m) => Ok(m),
                Err(e) => Err(e.to_string()),
            };
        };
        let msg = match g.open(topic, payload) {
            Ok(m) => m,
            Err(SealError::UnknownKey(id)) => {
                drop(guard);
                if wire::Topic::parse(topic).is_ok_and(|t| t.retained()) {
                    let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
                    if parked.len() < MAX_PARKED || parked.contains_key(topic) {
                        parked.insert(topic.to_owned(), payload.to_vec());
                    }
                }
                // Signed by a device this one trusts: the account key was rotated.
                self.want_key(&id);
                return Err(SealError::UnknownKey(id).to_string());
            }
            Err(e) => return Err(e.to_string()),
        };
        if !msg.topic.retained()
            && let Ok(wire::Body::Sealed(env)) = wire::decode(topic, payload).map(|m| m.body)
        {
            // Commands and events: a restart must not let them be replayed.
            self.with_store(|st| st.put_seen(&env.sealed.sender, topic, env.sealed.counter));
        }
        Ok(msg)
    }

    /// A roster from a trusted device: merge it, trust whom it trusts, and answer with ours
    /// when it lacks something we know. A roster that names a key this device lacks starts
    /// a key request.
    fn take_roster(&self, roster: &wire::Roster) {
        let mut account = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let Some(acc) = account.as_mut() else { return };
        let was_revoked = acc.roster.entry(&acc.device).is_some_and(|e| e.revoked);
        match acc.merge_roster(roster) {
            Ok(true) => {
                tracing::info!(
                    "roster of {} now has {} devices",
                    acc.name,
                    acc.roster.devices.len()
                );
                if !was_revoked && acc.roster.entry(&acc.device).is_some_and(|e| e.revoked) {
                    tracing::warn!(
                        "this device was revoked from account {}: pair it again to rejoin",
                        acc.name
                    );
                    let _ = self.events.try_send(NodeEvent::Revoked);
                }
                self.refresh_signers(acc);
                let mut engine = self.engine();
                for e in acc.roster.devices.iter().filter(|e| e.revoked) {
                    engine.forget_device(&e.device);
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        let lacking = acc.lacks_key();
        let mut theirs = roster.clone();
        let answer = theirs.merge(&acc.roster).then(|| wire::encode(&acc.roster));
        drop(account);
        if let Some(ours) = answer {
            self.publish(&Topic::roster(&self.account).to_string(), ours, true);
        }
        if let Some(id) = lacking {
            self.want_key(&id);
        }
    }

    fn refresh_signers(&self, acc: &Account) {
        if let Some(g) = self
            .guard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            g.opener.signers = acc.signers();
            g.opener.roster = acc.roster.clone();
        }
    }

    /// This device lacks key `key_id`, which a trusted device uses or names: take it from
    /// the config dir if another process of this device rotated it, else ask the account's
    /// devices for it.
    fn want_key(&self, key_id: &str) {
        let want = {
            let mut account = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            let Some(acc) = account.as_mut() else { return };
            self.rekey
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .want(acc, key_id, now_unix_ns())
        };
        match want {
            rekey::Want::Nothing => {}
            rekey::Want::Adopted => self.rekeyed(),
            rekey::Want::Ask { topic, payload } => {
                if let Some(link) = &self.link {
                    link.publish(&topic, payload, true, true);
                }
            }
        }
    }

    /// A key request or answer.
    fn take_rekey(&self, topic: &str, payload: &[u8]) {
        if payload.is_empty() {
            return;
        }
        if topic == rekey::answer_topic(&self.account, &self.device) {
            let taken = {
                let mut account = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                let Some(acc) = account.as_mut() else { return };
                self.rekey
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take_answer(acc, payload)
            };
            match taken {
                Ok(true) => {
                    if let Some(link) = &self.link {
                        // The request is answered: take it off the broker.
                        let topic = rekey::request_topic(&self.account, &self.device);
                        link.publish(&topic, Vec::new(), true, true);
                    }
                    self.rekeyed();
                }
                Ok(false) => {}
                Err(e) => tracing::info!("refused a key answer: {e}"),
            }
        } else if topic.ends_with("/request") {
            let Ok(req) = rekey::decode::<KeyRequest>(payload) else {
                return;
            };
            if req.device == self.device {
                return;
            }
            let answer = {
                let account = self.keys.lock().unwrap_or_else(|e| e.into_inner());
                let Some(acc) = account.as_ref() else { return };
                rekey::answer(acc, &req)
            };
            match answer {
                Ok(ans) => {
                    tracing::info!("handing the account key to {}", req.device);
                    if let Some(link) = &self.link {
                        let topic = rekey::answer_topic(&self.account, &req.device);
                        link.publish(&topic, wire::encode(&ans), false, true);
                    }
                }
                Err(rekey::RekeyError::NotHeld(_)) => {}
                Err(e) => tracing::info!("refused a key request from {}: {e}", req.device),
            }
        }
    }

    /// The account key changed: seal with the new one, move resume points to their new
    /// topics, and republish this device's state and the roster under it.
    fn rekeyed(&self) {
        let (key_id, media_keys) = {
            let account = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            let Some(acc) = account.as_ref() else { return };
            let keys = acc.keys();
            if let Some(g) = self
                .guard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                g.set_keys(keys.clone(), acc.all_keys());
                g.opener.signers = acc.signers();
                g.opener.roster = acc.roster.clone();
            }
            (keys.key_id.clone(), keys.media_keys())
        };
        let now = now_unix_ns();
        let mut actions = self.engine().set_media_keys(media_keys);
        actions.extend(self.engine().announce(now));
        self.carry_out(actions);
        self.publish_roster();
        // What arrived sealed with the new key before this device had it.
        let parked = std::mem::take(&mut *self.parked.lock().unwrap_or_else(|e| e.into_inner()));
        for (topic, payload) in parked {
            self.take_message(&topic, &payload);
        }
        tracing::info!("now sealing with account key {key_id}");
        let _ = self.events.try_send(NodeEvent::KeyRotated { key_id });
    }

    /// Publish this device's roster (retained): a device that has just been paired makes
    /// itself known to the others this way.
    fn publish_roster(&self) {
        let roster = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|a| wire::encode(&a.roster));
        if let Some(r) = roster {
            self.publish(&Topic::roster(&self.account).to_string(), r, true);
        }
    }

    /// A message from the broker.
    fn take_message(&self, topic: &str, payload: &[u8]) {
        self.take_message_inner(topic, payload);
        self.taken.send_modify(|n| *n += 1);
    }

    fn take_message_inner(&self, topic: &str, payload: &[u8]) {
        match self.decode(topic, payload) {
            Ok(msg) if self.is_own_sync(&msg.body) => {
                self.sync.send_replace(SyncState::Synced);
            }
            Ok(wire::Incoming {
                body: Body::Roster(r),
                ..
            }) => {
                self.take_roster(&r);
            }
            Ok(msg) => {
                let actions = self
                    .engine()
                    .handle(now_unix_ns(), Observation::Incoming(msg));
                self.carry_out(actions);
            }
            Err(reason) => {
                tracing::info!("refused a message on {topic}: {reason}");
                let _ = self.events.try_send(NodeEvent::Rejected {
                    topic: topic.to_owned(),
                    reason,
                });
            }
        }
    }

    fn is_own_sync(&self, body: &Body) -> bool {
        matches!(body, Body::Command(c)
            if c.body == CommandBody::Sync
                && c.from == self.device
                && c.id == *self.sync_id.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn with_store(&self, f: impl FnOnce(&Store) -> Result<(), StoreError>) {
        let guard = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = guard.as_ref()
            && let Err(e) = f(store)
        {
            tracing::warn!("{e}");
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
        let guard = match &cfg.account {
            Some(account) => {
                let floor = match &store {
                    Some(st) => st.counter(COUNTER)?,
                    None => 0,
                };
                let mut guard = account.guard(floor);
                if let Some(st) = &store {
                    for (sender, topic, counter) in st.seen()? {
                        guard.opener.remember(&sender, &topic, counter);
                    }
                }
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
        }
        let account = &cfg.engine.account;
        let device = &cfg.engine.device.id;
        let (link, link_events) = match &cfg.broker {
            Some(broker) => {
                let mut link_cfg = LinkConfig::new(broker.clone(), client_id(device));
                link_cfg.will = Some((
                    Topic::availability(account, device).to_string(),
                    wire::encode(&engine.availability(Status::Offline)),
                ));
                link_cfg.subscriptions = vec![
                    wire::filters::availability(account),
                    wire::filters::device_info(account),
                    wire::filters::sessions(account),
                    wire::filters::resume(account),
                    Topic::inbox(account, device).to_string(),
                ];
                if cfg.account.is_some() {
                    link_cfg.subscriptions.extend([
                        wire::filters::roster(account),
                        rekey::request_filter(account),
                        rekey::answer_topic(account, device),
                    ]);
                }
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
        let inner = Arc::new(Inner {
            engine: Mutex::new(engine),
            device: device.clone(),
            account: account.clone(),
            sync,
            sync_id: Mutex::new(String::new()),
            link,
            store: Mutex::new(store),
            guard: Mutex::new(guard),
            keys: Mutex::new(cfg.account.clone()),
            rekey: Mutex::new(rekey::Asker::default()),
            parked: Mutex::new(Default::default()),
            events: events_tx,
            rearm: Notify::new(),
            taken: watch::channel(0).0,
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
    pub async fn resume_lookup(&self, media_id: &str, timeout: Duration) -> Option<ResumeFrom> {
        self.synced(timeout).await;
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
    pub async fn flush(&self, timeout: Duration) -> bool {
        match &self.inner.link {
            Some(link) => link.flush(timeout).await,
            None => true,
        }
    }

    /// Say goodbye (offline, flushed within `timeout`, disconnect) but keep the node; for
    /// owners that share it. Dropping it afterwards stops it.
    pub async fn goodbye(&self, timeout: Duration) -> bool {
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
        let wake = inner.engine().next_wakeup();
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
                        inner.publish_roster();
                        inner.send_sync();
                        let _ = inner.events.try_send(NodeEvent::Connected);
                    }
                    LinkEvent::Down { reason } => {
                        inner.sync.send_replace(SyncState::Unreachable);
                        let _ = inner.events.try_send(NodeEvent::Down { reason });
                    }
                    LinkEvent::Message { topic, payload }
                        if rekey::is_rekey_topic(&inner.account, &topic) =>
                    {
                        inner.take_rekey(&topic, &payload);
                    }
                    LinkEvent::Message { topic, payload } => {
                        inner.take_message(&topic, &payload);
                    }
                }
            }
            _ = sleep => {
                let actions = inner.engine().handle(now_unix_ns(), Observation::Tick);
                inner.carry_out(actions);
            }
            _ = inner.rearm.notified() => {}
        }
    }
}
