//! A view of an account on the broker: which devices exist and what they play, read with
//! each device's clock. The CLI's `devices` and `sessions` commands, and the tests, are
//! built on it. It changes nothing: it speaks only to measure clocks, to ask the devices
//! for what its broker lacks, and to ask for a rotated key.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::Directory;
use crate::history::Summary;
use crate::hlc::now_unix_ns;
use crate::intake::{Inbound, Intake};
use crate::model::PlayState;
use crate::net::keeper::ANSWER_WINDOW;
use crate::net::link::{BrokerUrl, ConnectError, Link, LinkConfig, LinkEvent, client_id};
use crate::node::device_subscriptions;
use crate::security::account::Account;
use crate::security::rekey;
use crate::security::seal::Guard;
use crate::store::{EventRetention, Store, StoreError};
use crate::wire::{self, Body, Status, Topic, filters};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot reach the broker at {broker}: {reason}")]
    Unreachable { broker: String, reason: String },
    #[error(transparent)]
    Link(#[from] crate::net::link::LinkError),
}

/// A subscription to an account's devices, sessions and resume points.
pub struct Observer {
    link: Link,
    /// This view's id: a helper of the device (`<device>~view-…`), with its own inbox for
    /// the answers to its clock probes.
    id: String,
    account: String,
    /// Seals and signs what this view sends (sealed accounts).
    guard: Option<Guard>,
    probes: u64,
    events: mpsc::Receiver<LinkEvent>,
    directory: Directory,
    /// The receive pipeline (the node's): sealed accounts open and check, plain ones read
    /// plain JSON only.
    inbound: Inbound,
    /// Messages that failed to decode or open (logged; never fatal).
    pub rejected: u64,
    /// It asked for a rotated account key and has no answer yet.
    asked_key: bool,
    /// Answers to this view's history asks, not yet taken in.
    history: Vec<wire::HistoryAnswer>,
    /// What it subscribes to besides the devices' topics, which follow the roster.
    fixed: Vec<String>,
}

/// What [`Observer::gather_history`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gathered {
    /// The online devices that keep the account's events, asked.
    pub asked: usize,
    /// Those whose last answer came in time.
    pub answered: usize,
    /// Events the store lacked, now kept.
    pub added: usize,
    /// Events refused (not signed by their recorder, garbage).
    pub refused: usize,
}

impl Observer {
    /// Connect and subscribe. Fails with [`ObserveError::Unreachable`] if the broker cannot
    /// be reached within `timeout`. With the device's `keys` (a sealed account) only sealed
    /// messages from paired devices count, and a rotated account key is asked for and kept;
    /// without, only plain ones.
    pub async fn connect(
        broker: &BrokerUrl,
        account: &str,
        timeout: Duration,
        keys: Option<Account>,
    ) -> Result<Observer, ObserveError> {
        Self::connect_with(broker, account, timeout, keys, false).await
    }

    /// [`Observer::connect`]; with `history`, it also hears the answers to history asks
    /// (see [`Observer::gather_history`]).
    pub async fn connect_with(
        broker: &BrokerUrl,
        account: &str,
        timeout: Duration,
        keys: Option<Account>,
        history: bool,
    ) -> Result<Observer, ObserveError> {
        let id = match &keys {
            Some(k) => wire::helper_id(&k.device, &format!("view-{:08x}", fastrand::u32(..))),
            None => format!("view-{:08x}", fastrand::u32(..)),
        };
        let mut cfg = LinkConfig::new(broker.clone(), client_id("observer"));
        // The devices' topics (those the roster names, in a sealed account) come first, the
        // rest after.
        // Its inbox last: its sync's echo comes after the retained messages of every other
        // subscription, also on a broker that forwards each subscription's in turn (see
        // `node::sync_inbox`).
        let mut fixed = vec![filters::resume(account)];
        if history {
            fixed.push(Topic::history_answer(account).to_string());
        }
        if let Some(k) = &keys {
            fixed.extend([
                filters::roster(account),
                rekey::answer_topic(account, &k.device),
            ]);
        }
        fixed.push(Topic::inbox(account, &id).to_string());
        let roster = keys.as_ref().map(|k| &k.roster);
        cfg.subscriptions = device_subscriptions(account, roster, false);
        cfg.subscriptions.extend(fixed.iter().cloned());
        let device = keys.as_ref().map(|k| k.device.clone()).unwrap_or_default();
        let guard = keys.as_ref().map(|k| k.guard(0));
        let inbound = Inbound::new(account, &device, keys);
        let (link, events) = Link::connect(cfg, timeout).await.map_err(|e| match e {
            ConnectError::Link(e) => ObserveError::Link(e),
            ConnectError::Unreachable(reason) => ObserveError::Unreachable {
                broker: broker.to_string(),
                reason,
            },
        })?;
        let directory = Directory {
            media_keys: inbound.media_keys(),
            ..Directory::default()
        };
        Ok(Observer {
            link,
            id,
            account: account.to_owned(),
            guard,
            probes: 0,
            events,
            directory,
            inbound,
            rejected: 0,
            asked_key: false,
            history: Vec::new(),
            fixed,
        })
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The account's paired devices as this view knows them (sealed accounts).
    pub fn roster(&self) -> Option<&wire::Roster> {
        self.inbound.roster()
    }

    fn take(&mut self, ev: LinkEvent) -> bool {
        let LinkEvent::Message {
            topic,
            payload,
            received_unix_ns,
            ..
        } = ev
        else {
            return false;
        };
        self.take_message(&topic, &payload, received_unix_ns)
    }

    /// Take in a payload; whether the directory changed. A read-only view speaks only to ask
    /// for a rotated key (it hears no key requests): it answers no roster.
    /// A clock reply's `t4` is `received_unix_ns`, when the link read it.
    fn take_message(&mut self, topic: &str, payload: &[u8], received_unix_ns: u64) -> bool {
        let mut changed = false;
        for intake in self.inbound.take(topic, payload, now_unix_ns()) {
            match intake {
                Intake::Message(mut msg) => match &msg.body {
                    Body::Command(c) if c.to == self.id => {
                        changed |= self.directory.clock_reply(c, received_unix_ns).is_some();
                    }
                    Body::HistoryAnswer(a) if a.to == self.id => {
                        self.history.push(a.clone());
                    }
                    Body::HistoryAnswer(_) => {}
                    _ => {
                        // When it came: a will that comes live dates a player's death.
                        msg.received_unix_ns.get_or_insert(received_unix_ns);
                        changed |= self.directory.apply(&msg)
                    }
                },
                Intake::RosterChanged { revoked } => {
                    for device in &revoked {
                        changed |= self.directory.forget(device);
                    }
                    self.resubscribe();
                }
                Intake::Rekeyed { current, all } => {
                    self.asked_key = false;
                    if let Some(g) = &mut self.guard {
                        g.set_keys(current, all);
                    }
                    self.directory.media_keys = self.inbound.media_keys();
                    self.resubscribe();
                    changed = true;
                }
                // Its key request, or taking it off the broker once answered.
                Intake::Publish(o) => {
                    if !o.payload.is_empty() {
                        self.asked_key = true;
                    }
                    self.link.publish(&o.topic, o.payload, o.retain, true)
                }
                Intake::Rejected { topic, reason } => {
                    self.rejected += 1;
                    tracing::debug!("ignored a message on {topic}: {reason}");
                }
                Intake::PublishSealed(_) | Intake::Seen { .. } | Intake::Revoked => {}
            }
        }
        changed
    }

    /// Listen to the devices the roster trusts now (a newcomer it just learned of).
    fn resubscribe(&self) {
        let mut filters = device_subscriptions(&self.account, self.inbound.roster(), false);
        filters.extend(self.fixed.iter().cloned());
        self.link.set_subscriptions(&filters);
    }

    /// Measure the clocks of the online devices whose sessions play (their positions depend
    /// on it), `probes` probes each (all devices at once; each probe after the previous
    /// reply; the reply with the shortest round trip is kept), for at most `max`. A device
    /// measured before, or that did not answer then, is not probed again. One that does not
    /// answer keeps no offset: its positions are read with this clock.
    pub async fn measure_clocks(&mut self, probes: usize, max: Duration) {
        let devices: Vec<String> = self
            .directory
            .sessions
            .values()
            .filter(|s| s.anchor.is_some_and(|a| a.state == PlayState::Playing))
            .filter(|s| self.directory.availability.get(&s.device) == Some(&Status::Online))
            .map(|s| s.device.clone())
            .filter(|d| {
                self.directory.clocks.sample(d).is_none() && !self.directory.clocks.is_waiting(d)
            })
            .collect();
        let end = Instant::now() + max;
        let mut left: Vec<(String, usize)> = devices.into_iter().map(|d| (d, 0)).collect();
        while !left.is_empty() && Instant::now() < end {
            for (device, sent) in &mut left {
                if !self.directory.clocks.is_waiting(device) && *sent < probes {
                    self.probe(device);
                    *sent += 1;
                }
            }
            left.retain(|(d, sent)| *sent < probes || self.directory.clocks.is_waiting(d));
            if left.is_empty() {
                // The last reply is in: nothing more to wait for.
                return;
            }
            match tokio::time::timeout_at(end, self.events.recv()).await {
                Ok(Some(ev)) => {
                    self.take(ev);
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    fn probe(&mut self, device: &str) {
        self.probes += 1;
        let now = now_unix_ns();
        let probe_id = format!("clock-{}", self.probes);
        let cmd = self.directory.clock_probe(&self.id, device, probe_id, now);
        let topic = Topic::inbox(&self.account, device).to_string();
        // QoS 0, as the engine sends them (`Engine::send` says why).
        self.send(&topic, &wire::encode(&cmd), now, false);
    }

    /// Publish `plain` on `topic`, sealed and signed in a sealed account; the bytes sent.
    fn send(&mut self, topic: &str, plain: &[u8], now: u64, reliable: bool) -> Vec<u8> {
        let payload = match &mut self.guard {
            Some(g) => g.seal(topic, plain, now),
            None => plain.to_vec(),
        };
        self.link.publish(topic, payload.clone(), false, reliable);
        payload
    }

    /// Take in what the broker holds for this view's subscriptions, and return as soon as
    /// it has all come: a sync command to the view's own inbox (sealed like its probes) comes
    /// back after the retained messages of every subscription made before it, since a broker
    /// delivers a connection's messages in order. At most `max`; whether the echo came.
    pub async fn sync(&mut self, max: Duration) -> bool {
        let topic = Topic::inbox(&self.account, &self.id).to_string();
        let now = now_unix_ns();
        let cmd = wire::Command {
            v: wire::VERSION,
            id: format!("sync-{:016x}", fastrand::u64(..)),
            from: self.id.clone(),
            to: self.id.clone(),
            sent_unix_ns: now,
            body: wire::CommandBody::Sync,
        };
        let payload = self.send(&topic, &wire::encode(&cmd), now, true);
        let end = Instant::now() + max;
        let mut echoed = false;
        // A view that found the account key rotated and asked for the new one waits for the
        // answer too (what it could not open is opened then).
        while !echoed || self.asked_key {
            match tokio::time::timeout_at(end, self.events.recv()).await {
                // Its own bytes, back: nothing else to read in them.
                Ok(Some(LinkEvent::Message {
                    topic: t,
                    payload: p,
                    ..
                })) if t == topic && p == payload => echoed = true,
                Ok(Some(ev)) => {
                    self.take(ev);
                }
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    /// Ask the account's online devices for what this view's broker lacks (a node of a
    /// cluster holds only what was published through it; a bridge may drop the retain
    /// flag): each device that this view does not hold as it is publishes its state again.
    /// Call it after [`Observer::sync`]. When the broker held no device's availability at
    /// all (a RabbitMQ node hands nothing retained to a wildcard subscription), it waits
    /// for the answers, at most [`ANSWER_WINDOW`] and `max`; otherwise it returns at once,
    /// and answers that come later are taken in with what comes next. A view without the
    /// account's keys cannot ask a sealed account's devices: they refuse what it sends.
    pub async fn ask(&mut self, max: Duration) {
        let ask = wire::StateAsk {
            v: wire::VERSION,
            device: self.id.clone(),
            seen: self.directory.seen(&self.id),
        };
        let empty = self.directory.availability.is_empty();
        let topic = Topic::ask(&self.account).to_string();
        self.send(&topic, &wire::encode(&ask), now_unix_ns(), true);
        if empty {
            self.settle(ANSWER_WINDOW, ANSWER_WINDOW.min(max)).await;
        }
    }

    /// Ask the account's devices for the events `store` lacks from `since_unix_ns` on (see
    /// [`crate::history`]) and keep what they send, checked as on `events` (its recorder's
    /// signature). Returns once every online device that keeps events has sent its last
    /// answer, or after `max`. Call it after [`Observer::sync`], on a view connected with
    /// `history`.
    pub async fn gather_history(
        &mut self,
        store: &Store,
        since_unix_ns: u64,
        max: Duration,
    ) -> Result<Gathered, StoreError> {
        let summary = Summary::of(store.event_keys(since_unix_ns)?);
        let id = format!("h-{:016x}", fastrand::u64(..));
        let ask = summary.ask(&id, &self.id, since_unix_ns);
        let topic = Topic::history_ask(&self.account).to_string();
        self.send(&topic, &wire::encode(&ask), now_unix_ns(), true);
        let mut waiting: BTreeSet<String> = self
            .directory
            .devices
            .values()
            .filter(|i| i.capabilities.iter().any(|c| c == crate::node::HISTORY))
            .map(|i| i.device.id.clone())
            .filter(|d| self.directory.availability.get(d) == Some(&Status::Online))
            .filter(|d| *d != self.id)
            .collect();
        let mut done = Gathered {
            asked: waiting.len(),
            ..Gathered::default()
        };
        let end = Instant::now() + max;
        loop {
            for answer in std::mem::take(&mut self.history) {
                if answer.ask != id {
                    continue;
                }
                let now = now_unix_ns();
                for item in &answer.events {
                    match self.inbound.archived_event(item) {
                        Ok((e, sealed)) => {
                            if e.at_unix_ns >= since_unix_ns
                                && store.put_event_as(
                                    &e,
                                    sealed.as_deref(),
                                    EventRetention::default(),
                                    now,
                                )?
                            {
                                done.added += 1;
                            }
                        }
                        Err(why) => {
                            done.refused += 1;
                            tracing::debug!(
                                "refused an event handed on by {}: {why}",
                                answer.device
                            );
                        }
                    }
                }
                if answer.last && waiting.remove(&answer.device) {
                    done.answered += 1;
                }
            }
            if waiting.is_empty() {
                return Ok(done);
            }
            match tokio::time::timeout_at(end, self.events.recv()).await {
                Ok(Some(ev)) => {
                    self.take(ev);
                }
                Ok(None) | Err(_) => return Ok(done),
            }
        }
    }

    /// Take in what the broker sends until it has been quiet for `quiet` (retained messages
    /// arrive in a burst after subscribing), or `max` has passed.
    pub async fn settle(&mut self, quiet: Duration, max: Duration) {
        let end = Instant::now() + max;
        loop {
            let until = (Instant::now() + quiet).min(end);
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(ev)) => {
                    self.take(ev);
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Whether the connection's task ended (nothing more will change).
    pub fn link_closed(&self) -> bool {
        self.events.is_closed() && self.events.is_empty()
    }

    /// Wait for the next change to the directory, at most `max`. Returns whether one came.
    pub async fn changed(&mut self, max: Duration) -> bool {
        let end = Instant::now() + max;
        loop {
            match tokio::time::timeout_at(end, self.events.recv()).await {
                Ok(Some(ev)) => {
                    if self.take(ev) {
                        return true;
                    }
                }
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// Wait until `pred` holds for the directory, at most `max`. Returns whether it did.
    pub async fn wait_for(&mut self, max: Duration, pred: impl Fn(&Directory) -> bool) -> bool {
        let end = Instant::now() + max;
        while !pred(&self.directory) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.changed(left).await && !pred(&self.directory) {
                return pred(&self.directory);
            }
        }
        true
    }

    pub async fn close(self) {
        self.link.shutdown(Duration::from_millis(200)).await;
    }
}
