//! The MQTT link: one tokio task that keeps a connection to the broker, publishes this
//! device's state and delivers what arrives.
//!
//! - MQTT 3.1.1 (every broker speaks it), `mqtt://` or `mqtts://` (rustls with ring), user and
//!   password from the URL.
//! - The last will is an `offline` availability message, retained; a graceful
//!   [`Link::shutdown`] publishes it itself before disconnecting.
//! - Retained state is kept here, latest per topic, and republished after every reconnect:
//!   the broker is a cache, never the only copy. While offline, retained updates coalesce per
//!   topic and transient messages wait in a bounded queue (oldest dropped first), so memory
//!   stays bounded and the final state is never lost.
//! - Every retained topic this device publishes is watched where the link is subscribed to it:
//!   a copy on the broker that is cleared, replaced or forged is published again
//!   ([`super::keeper`]). So are the copies of other devices it was asked to
//!   [keep](Link::keep).
//! - Reconnects forever with capped exponential backoff and jitter.
//! - [`Link::publish`] never blocks and never awaits the network.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    SubscribeFilter, TlsConfiguration, Transport,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::keeper::{Arrival, Keeper};

/// The largest packet MQTT allows (a remaining length of 256 MiB − 1; rumqttc compares the
/// remaining length): what mosquitto accepts by default, so what any broker user may make
/// every device receive.
pub const MAX_INCOMING_PACKET: usize = 268_435_455;

/// Where the broker is and how to prove who we are to it:
/// `mqtt://[user[:password]@]host[:port]` or `mqtts://...`, with optional query parameters
/// naming files (read when connecting):
///
/// - `ca-file`: CA certificates (PEM) trusted for `mqtts://`, beside the system roots;
/// - `cert-file` and `key-file`: a client certificate (PEM) and its private key;
/// - `password-file`: the password (first line), so that it is in no command line.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub password_file: Option<PathBuf>,
}

/// The query parameters a broker URL may carry.
pub const URL_FILE_PARAMS: [&str; 4] = ["ca-file", "cert-file", "key-file", "password-file"];

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Shown without credentials, so that it is safe in logs and messages.
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}", self.port)
    }
}

impl FromStr for BrokerUrl {
    type Err = LinkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| LinkError::Url {
            url: s.to_owned(),
            reason: reason.to_owned(),
        };
        let u = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let tls = match u.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(bad(&format!(
                    "scheme '{other}' is not supported (use mqtt:// or mqtts://)"
                )));
            }
        };
        let host = match u.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(bad("has no host")),
        };
        if u.path() != "" && u.path() != "/" {
            return Err(bad("must not have a path"));
        }
        let (mut ca_file, mut cert, mut key, mut password_file) = (None, None, None, None);
        for (k, v) in u.query_pairs() {
            let slot = match k.as_ref() {
                "ca-file" => &mut ca_file,
                "cert-file" => &mut cert,
                "key-file" => &mut key,
                "password-file" => &mut password_file,
                other => {
                    return Err(bad(&format!(
                        "unknown parameter '{other}' (known: {})",
                        URL_FILE_PARAMS.join(", ")
                    )));
                }
            };
            if v.is_empty() {
                return Err(bad(&format!("{k} names no file")));
            }
            *slot = Some(PathBuf::from(v.as_ref()));
        }
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(bad("cert-file and key-file go together")),
        };
        if !tls && (ca_file.is_some() || client_cert.is_some()) {
            return Err(bad("certificates need TLS: use mqtts://"));
        }
        if u.password().is_some() && password_file.is_some() {
            return Err(bad("a password and a password-file: give one"));
        }
        let decode = |v: &str| {
            url::form_urlencoded::parse(format!("x={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Ok(BrokerUrl {
            tls,
            host,
            port: u.port().unwrap_or(if tls { 8883 } else { 1883 }),
            username: (!u.username().is_empty()).then(|| decode(u.username())),
            password: u.password().map(decode),
            ca_file,
            client_cert,
            password_file,
        })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("broker URL '{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("TLS set-up: {0}")]
    Tls(String),
    #[error("password file {path}: {reason}")]
    PasswordFile { path: PathBuf, reason: String },
    #[error("the link has shut down")]
    Closed,
}

/// Why [`Link::connect`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The link could not even start (a bad TLS set-up, a password file).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The broker refused, did not answer, or closed the connection: why, in words.
    #[error("{0}")]
    Unreachable(String),
}

/// How a link connects.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub broker: BrokerUrl,
    /// MQTT client id; must be unique on the broker.
    pub client_id: String,
    /// Retained message the broker publishes if this client vanishes (`offline`).
    pub will: Option<(String, Vec<u8>)>,
    /// Topic filters to subscribe to (again after every reconnect); changed later with
    /// [`Link::set_subscriptions`].
    pub subscriptions: Vec<String>,
    /// Subscribed before anything else, the retained state among it (again after every
    /// reconnect): what others send this device as soon as they see it online (its inbox).
    /// A broker takes a client's packets in order, so nobody who sees the device online can
    /// send it a message before it listens.
    pub first_subscriptions: Vec<String>,
    /// Retained state held from the start, as if published before the link was made: the
    /// first connection sends it before the subscriptions however soon it comes (the
    /// device's availability, which a broker that keeps retained messages then hands back).
    pub retained: Vec<(String, Vec<u8>)>,
    pub keep_alive: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Waits between attempts double from `backoff_min` up to `backoff_max` (±25 %). The
    /// cap is low because a device that lost its broker (a restart, a network that hung) is
    /// one that a person is waiting for: with a 3 s attempt, a network that comes back is
    /// used within about 4 s at worst.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Transient messages kept while offline; older ones are dropped first.
    pub max_transient: usize,
}

impl LinkConfig {
    pub fn new(broker: BrokerUrl, client_id: impl Into<String>) -> LinkConfig {
        LinkConfig {
            broker,
            client_id: client_id.into(),
            will: None,
            subscriptions: Vec::new(),
            first_subscriptions: Vec::new(),
            retained: Vec::new(),
            keep_alive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            max_transient: 64,
        }
    }
}

/// A client id that is unique per process and run, and recognisable in broker logs.
pub fn client_id(device: &str) -> String {
    let short: String = device.chars().take(20).collect();
    format!("cty-{short}-{:08x}", fastrand::u32(..))
}

/// What the link reports.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// Connected (again); retained state has been queued for republishing.
    Connected,
    /// The connection is down or could not be made; reported once per outage.
    Down { reason: String },
    Message {
        topic: String,
        payload: Vec<u8>,
        /// This device's wall clock when the link read the message off the connection: the
        /// arrival time of a clock exchange (`t2`, `t4`), however long the receiver takes to
        /// get to it (a TV busy loading media handles an accept late).
        received_unix_ns: u64,
        /// MQTT's retain flag as the broker delivered it: set for what a new subscription
        /// finds retained, clear for what is published while subscribed.
        retained: bool,
    },
}

#[derive(Debug, Default)]
struct State {
    connected: bool,
    shutting_down: bool,
    /// This device's retained state, republished after every reconnect.
    retained: BTreeMap<String, Vec<u8>>,
    /// Retained topics not yet handed to the client since the last change or reconnect.
    dirty: BTreeSet<String>,
    transient: VecDeque<(String, Vec<u8>, QoS)>,
    dropped_transient: u64,
    /// Publishes handed to the client and not yet written to the network.
    unsent: usize,
    /// QoS 1 packet ids written and not yet acknowledged.
    awaiting_ack: HashSet<u16>,
    /// Whether the broker holds this device's retained copies.
    keeper: Keeper,
    /// The filters subscribed to after the first ones, again after every reconnect.
    subscriptions: Vec<String>,
}

impl State {
    fn idle(&self) -> bool {
        self.connected
            && self.dirty.is_empty()
            && self.transient.is_empty()
            && self.unsent == 0
            && self.awaiting_ack.is_empty()
    }
}

/// What the link task and its handles share.
struct Outbox {
    state: Mutex<State>,
    /// Woken when the state may have become idle (flushed).
    progress: Notify,
    /// Woken when a repair was scheduled.
    repairs: Notify,
    max_transient: usize,
    /// The keeper's clock starts here.
    epoch: tokio::time::Instant,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// A running link. Dropping it stops the task without the graceful goodbye.
pub struct Link {
    shared: Arc<Outbox>,
    client: AsyncClient,
    will: Option<(String, Vec<u8>)>,
    /// Held, never sent: dropping the link closes it, which ends the task.
    _stop: oneshot::Sender<()>,
    task: Option<JoinHandle<()>>,
    /// Publishes the repairs the keeper schedules.
    repairer: JoinHandle<()>,
}

impl Link {
    /// Start the link and wait, at most `timeout`, for its first connection: for commands
    /// that answer once and must not hang when the broker is away.
    pub async fn connect(
        mut cfg: LinkConfig,
        timeout: Duration,
    ) -> Result<(Link, mpsc::Receiver<LinkEvent>), ConnectError> {
        cfg.connect_timeout = timeout;
        let (link, mut events) = Link::spawn(cfg)?;
        let why = match tokio::time::timeout(timeout, events.recv()).await {
            Ok(Some(LinkEvent::Connected)) => return Ok((link, events)),
            Ok(Some(LinkEvent::Down { reason })) => reason,
            Ok(Some(LinkEvent::Message { .. })) | Ok(None) => "the connection closed".into(),
            Err(_) => format!("no answer within {} s", timeout.as_secs_f32()),
        };
        Err(ConnectError::Unreachable(why))
    }

    /// Start the link on the current tokio runtime. Events arrive on the returned receiver.
    pub fn spawn(cfg: LinkConfig) -> Result<(Link, mpsc::Receiver<LinkEvent>), LinkError> {
        let mut opts = MqttOptions::new(&cfg.client_id, &cfg.broker.host, cfg.broker.port);
        opts.set_keep_alive(cfg.keep_alive.max(Duration::from_secs(1)));
        opts.set_clean_session(true);
        // Read any packet the broker may send (MQTT's largest), so that an oversized message
        // is refused by the decoder, not by the client: rumqttc drops the connection on a
        // packet over its limit, and a retained one comes back after every reconnect.
        opts.set_max_packet_size(MAX_INCOMING_PACKET, crate::wire::MAX_PAYLOAD + 4096);
        let password = match &cfg.broker.password_file {
            Some(path) => Some(read_password(path)?),
            None => cfg.broker.password.clone(),
        };
        if let (Some(u), p) = (&cfg.broker.username, password) {
            opts.set_credentials(u, p.unwrap_or_default());
        }
        if let Some((topic, payload)) = &cfg.will {
            opts.set_last_will(LastWill::new(
                topic,
                payload.clone(),
                QoS::AtLeastOnce,
                true,
            ));
        }
        if cfg.broker.tls {
            opts.set_transport(Transport::tls_with_config(tls_config(&cfg)?));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut net = eventloop.network_options();
        net.set_connection_timeout(cfg.connect_timeout.as_secs().max(1));
        // Without it, a publish right after an acknowledgement (a clock reply, a handoff's
        // accept) waits for the broker's delayed ACK: 40 ms on Linux, in one direction only,
        // which is also an error of 20 ms in every measured clock offset.
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);

        let mut state = State::default();
        state.retained.extend(cfg.retained.iter().cloned());
        state.subscriptions = dedup(&cfg.subscriptions);
        let shared = Arc::new(Outbox {
            state: Mutex::new(state),
            progress: Notify::new(),
            repairs: Notify::new(),
            max_transient: cfg.max_transient.max(1),
            epoch: tokio::time::Instant::now(),
        });
        let repairer = tokio::spawn(repair(shared.clone(), client.clone()));
        let (events_tx, events_rx) = mpsc::channel(4096);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(
            cfg.clone(),
            eventloop,
            client.clone(),
            shared.clone(),
            events_tx,
            stop_rx,
        ));
        Ok((
            Link {
                shared,
                client,
                will: cfg.will,
                _stop: stop_tx,
                task: Some(task),
                repairer,
            },
            events_rx,
        ))
    }

    /// Publish. Retained messages replace the topic's previous state (an empty payload clears
    /// it) and are republished after reconnects; the others are sent once, QoS 1 when
    /// `reliable`. Never blocks on the network.
    pub fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool, reliable: bool) {
        let mut st = self.shared.lock();
        if retain {
            // The copy the broker has, or is about to get: nothing new to send.
            if st.retained.get(topic).is_some_and(|held| *held == payload) {
                return;
            }
            st.retained.insert(topic.to_owned(), payload);
            st.dirty.insert(topic.to_owned());
        } else {
            if st.transient.len() >= self.shared.max_transient {
                st.transient.pop_front();
                st.dropped_transient += 1;
            }
            let qos = if reliable {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            st.transient.push_back((topic.to_owned(), payload, qos));
        }
        flush_locked(&mut st, &self.client);
    }

    /// Subscribe to `filters` from now on instead of the link's current ones (the devices of a
    /// roster that changed): the new ones at once when connected, the ones gone
    /// unsubscribed; all of them again after every reconnect. What the new filters hold
    /// retained arrives before anything published after this call.
    pub fn set_subscriptions(&self, filters: &[String]) {
        let filters = dedup(filters);
        let mut st = self.shared.lock();
        let added: Vec<String> = filters
            .iter()
            .filter(|f| !st.subscriptions.contains(f))
            .cloned()
            .collect();
        let gone: Vec<String> = st
            .subscriptions
            .iter()
            .filter(|f| !filters.contains(f))
            .cloned()
            .collect();
        st.subscriptions = filters;
        if !st.connected {
            return;
        }
        subscribe(&self.client, &added);
        for filter in gone {
            if let Err(e) = self.client.try_unsubscribe(filter.as_str()) {
                warn!("cannot unsubscribe from {filter}: {e}");
            }
        }
    }

    /// Whether `payload` is this device's latest retained copy of `topic`.
    pub fn holds(&self, topic: &str, payload: &[u8]) -> bool {
        self.shared
            .lock()
            .retained
            .get(topic)
            .is_some_and(|m| m == payload)
    }

    /// Keep another device's copy of a shared retained topic, which just arrived from the
    /// broker, instead of this device's own: a newer resume point, a roster that holds this
    /// device's. It is signed by its author, so it can be published again as it is: after a
    /// reconnect, and when the broker loses it (the author may be gone by then).
    pub fn keep(&self, topic: &str, payload: &[u8]) {
        let mut st = self.shared.lock();
        st.retained.insert(topic.to_owned(), payload.to_vec());
        st.dirty.remove(topic);
        let now = self.shared.now_ns();
        if let Arrival::Repair { .. } = st.keeper.adopt(topic, payload, now) {
            self.shared.repairs.notify_one();
        }
    }

    /// Another device's broker lacks this device's retained state (see
    /// [`crate::wire::StateAsk`]): publish all of it again after a short random delay. A
    /// shared topic (a resume point, the roster) whose same copy arrives from another
    /// device first is left out, so that the devices that keep it answer once between them.
    pub fn answer(&self) {
        let mut st = self.shared.lock();
        let now = self.shared.now_ns();
        let st = &mut *st;
        for topic in st.retained.keys() {
            st.keeper.answer(topic, now);
        }
        self.shared.repairs.notify_one();
    }

    /// Whether the link is connected now.
    pub fn connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// Wait until everything published so far has reached the broker (acknowledged), or
    /// `timeout` passes. Returns whether it did.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.progress.notified();
            if self.shared.lock().idle() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.shared.lock().idle();
            }
        }
    }

    /// Say goodbye without giving up the link: publish `offline` (the will, retained), wait
    /// at most `timeout` for it and everything before it to be acknowledged, and disconnect.
    pub async fn goodbye(&self, timeout: Duration) -> bool {
        if let Some((topic, payload)) = self.will.clone() {
            self.publish(&topic, payload, true, true);
        }
        let flushed = self.flush(timeout).await;
        self.shared.lock().shutting_down = true;
        let _ = self.client.try_disconnect();
        flushed
    }

    /// [`Link::goodbye`], then stop the task once the disconnect is sent (or after 500 ms).
    pub async fn shutdown(mut self, timeout: Duration) -> bool {
        let flushed = self.goodbye(timeout).await;
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_millis(500), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
        flushed
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.repairer.abort();
    }
}

/// Publish again what the keeper finds lost, when its repair is due.
async fn repair(shared: Arc<Outbox>, client: AsyncClient) {
    loop {
        let notified = shared.repairs.notified();
        let next = shared.lock().keeper.next_due();
        match next {
            Some(at) => {
                let wait = Duration::from_nanos(at.saturating_sub(shared.now_ns()));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = notified => continue,
                }
            }
            None => {
                notified.await;
                continue;
            }
        }
        let mut st = shared.lock();
        let now = shared.now_ns();
        for due in st.keeper.due(now) {
            if st.retained.contains_key(&due.topic) {
                if due.answer {
                    debug!("another device lacks {}: publishing it again", due.topic);
                } else {
                    info!(
                        "the broker's copy of {} was replaced or cleared: publishing it again",
                        due.topic
                    );
                }
                st.dirty.insert(due.topic);
            }
        }
        flush_locked(&mut st, &client);
    }
}

/// Hand what is waiting to the client, as far as its request queue takes it.
fn flush_locked(st: &mut State, client: &AsyncClient) {
    if flush_retained_locked(st, client) {
        flush_transient_locked(st, client);
    }
}

/// The retained topics not yet sent; whether they all went.
fn flush_retained_locked(st: &mut State, client: &AsyncClient) -> bool {
    if !st.connected {
        return false;
    }
    while let Some(topic) = st.dirty.first().cloned() {
        let payload = st.retained.get(&topic).cloned().unwrap_or_default();
        if client
            .try_publish(&topic, QoS::AtLeastOnce, true, payload)
            .is_err()
        {
            return false;
        }
        st.dirty.remove(&topic);
        st.keeper.sent(&topic);
        st.unsent += 1;
    }
    true
}

/// The queued transient messages (commands, events), after the retained ones.
fn flush_transient_locked(st: &mut State, client: &AsyncClient) {
    if !st.connected {
        return;
    }
    while let Some((topic, payload, qos)) = st.transient.pop_front() {
        if client
            .try_publish(&topic, qos, false, payload.clone())
            .is_err()
        {
            st.transient.push_front((topic, payload, qos));
            return;
        }
        st.unsent += 1;
    }
}

/// Filters once each, in their first order.
fn dedup(filters: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    filters
        .iter()
        .filter(|f| seen.insert(f.as_str()))
        .cloned()
        .collect()
}

/// Subscribe at QoS 1, a few dozen filters to a packet: a roster of 256 devices names over
/// 700, which in one packet would come near the largest packet this client sends.
fn subscribe(client: &AsyncClient, filters: &[String]) {
    for chunk in filters.chunks(SUBSCRIBE_CHUNK) {
        let many = chunk
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        if let Err(e) = client.try_subscribe_many(many) {
            warn!("cannot subscribe to {} filters: {e}", chunk.len());
        }
    }
}

/// Filters in one SUBSCRIBE packet (64 of about 60 bytes: 4 KB).
const SUBSCRIBE_CHUNK: usize = 64;

async fn run(
    cfg: LinkConfig,
    mut eventloop: EventLoop,
    client: AsyncClient,
    shared: Arc<Outbox>,
    events: mpsc::Sender<LinkEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let mut reported_down = false;
    let emit = |ev: LinkEvent| {
        if events.try_send(ev).is_err() {
            debug!("link event dropped: receiver full or gone");
        }
    };
    loop {
        let polled = tokio::select! {
            biased;
            _ = &mut stop => return,
            ev = eventloop.poll() => ev,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                info!(broker = %cfg.broker, "connected");
                backoff.reset();
                reported_down = false;
                // This device's retained state goes out before the subscriptions: a broker
                // that hands retained messages to a wildcard subscription then gives it back
                // flagged retained, so the device can tell such a broker, even an empty one,
                // from one that hands nothing retained (a RabbitMQ node), and waits for the
                // answers to its ask only on the latter. What others send it once they see
                // it online is listened to before anything goes out.
                for filter in &cfg.first_subscriptions {
                    if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                        warn!("cannot subscribe to {filter}: {e}");
                    }
                }
                {
                    let mut st = shared.lock();
                    st.connected = true;
                    st.unsent = 0;
                    st.awaiting_ack.clear();
                    st.dirty = st.retained.keys().cloned().collect();
                    flush_retained_locked(&mut st, &client);
                }
                let filters = shared.lock().subscriptions.clone();
                subscribe(&client, &filters);
                // What was queued while disconnected (a sync to its own inbox among it)
                // after the subscriptions, so that it comes back.
                flush_locked(&mut shared.lock(), &client);
                emit(LinkEvent::Connected);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let received_unix_ns = crate::hlc::now_unix_ns();
                {
                    let mut st = shared.lock();
                    st.keeper.heard(&p.topic, &p.payload);
                    let mine = st.retained.get(&*p.topic).map(|m| **m == *p.payload);
                    if let Some(mine) = mine {
                        let now = shared.now_ns();
                        if let Arrival::Repair { .. } = st.keeper.arrived(&p.topic, mine, now) {
                            shared.repairs.notify_one();
                        }
                    }
                }
                emit(LinkEvent::Message {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    received_unix_ns,
                    retained: p.retain,
                });
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let mut st = shared.lock();
                st.awaiting_ack.remove(&ack.pkid);
                flush_locked(&mut st, &client);
                drop(st);
                shared.progress.notify_waiters();
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut st = shared.lock();
                st.unsent = st.unsent.saturating_sub(1);
                if pkid != 0 {
                    st.awaiting_ack.insert(pkid);
                }
                flush_locked(&mut st, &client);
                drop(st);
                shared.progress.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => {
                {
                    let mut st = shared.lock();
                    let was_up = st.connected;
                    st.connected = false;
                    st.unsent = 0;
                    st.awaiting_ack.clear();
                    if st.shutting_down {
                        return;
                    }
                    if was_up {
                        reported_down = false;
                    }
                }
                shared.progress.notify_waiters();
                let reason = describe(&e, &cfg.broker);
                if !reported_down {
                    warn!(broker = %cfg.broker, "broker unreachable: {reason}");
                    emit(LinkEvent::Down { reason });
                    reported_down = true;
                } else {
                    debug!(broker = %cfg.broker, "still unreachable: {reason}");
                }
                let wait = backoff.next(fastrand::f64());
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// The waits between connection attempts: doubling from `min` up to `max`, each spread
/// within ±25 % so that the devices of a home whose broker came back do not all knock at
/// once; back to `min` once connected.
#[derive(Debug, Clone)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The wait before the next attempt; `spread` is uniform in [0, 1).
    fn next(&mut self, spread: f64) -> Duration {
        let wait = self.next.mul_f64(0.75 + spread.clamp(0.0, 1.0) * 0.5);
        self.next = (self.next * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A one-line, human explanation of a connection failure.
pub fn describe(e: &ConnectionError, broker: &BrokerUrl) -> String {
    use std::io::ErrorKind;
    let addr = format!("{}:{}", broker.host, broker.port);
    let text = e.to_string();
    if text.contains("CertificateRequired") {
        return format!(
            "the broker at {addr} wants a client certificate: give one with --client-cert and \
             --client-key (cert-file= and key-file= in the URL)"
        );
    }
    match e {
        ConnectionError::Tls(t) => {
            let t = t.to_string();
            if t.contains("UnknownIssuer") {
                format!(
                    "the broker's certificate at {addr} is not signed by a CA this device \
                     trusts: give its CA with --ca-file (ca-file= in the URL)"
                )
            } else if t.contains("NotValidForName") {
                format!(
                    "the broker's certificate at {addr} is not valid for the name '{}'",
                    broker.host
                )
            } else if t.contains("Expired") {
                format!("the broker's certificate at {addr} has expired")
            } else {
                format!("TLS with {addr} failed: {t}")
            }
        }
        ConnectionError::ConnectionRefused(rumqttc::ConnectReturnCode::BadUserNamePassword) => {
            format!("the broker at {addr} refused the user name or password")
        }
        ConnectionError::ConnectionRefused(rumqttc::ConnectReturnCode::NotAuthorized) => {
            format!(
                "the broker at {addr} refused: not authorised (does it want a user name and password?)"
            )
        }
        ConnectionError::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => {
                format!("connection refused at {addr} (is a broker running there?)")
            }
            ErrorKind::TimedOut => format!("timed out connecting to {addr}"),
            ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof => {
                format!("the broker at {addr} closed the connection")
            }
            _ if io.to_string().contains("failed to lookup") => {
                format!("unknown host '{}'", broker.host)
            }
            _ => format!("{addr}: {io}"),
        },
        ConnectionError::NetworkTimeout => format!("timed out connecting to {addr}"),
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker at {addr} refused the connection: {code:?}")
        }
        ConnectionError::MqttState(s) => format!("{addr}: connection lost: {s}"),
        other => format!("{addr}: {other}"),
    }
}

/// The first line of a password file; refused when others can read it.
fn read_password(path: &Path) -> Result<String, LinkError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |reason: String| LinkError::PasswordFile {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "others can read it (mode {mode:o}); fix it with: chmod 600 {}",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn tls_config(cfg: &LinkConfig) -> Result<TlsConfiguration, LinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &cfg.broker.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| LinkError::Tls(format!("CA file {}: {e}", path.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| LinkError::Tls(format!("CA file {}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| LinkError::Tls(format!("CA file {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &cfg.broker.client_cert {
        None => config.with_no_client_auth(),
        Some((cert, key)) => {
            let file = |path: &Path, e: &dyn fmt::Display| {
                LinkError::Tls(format!("client certificate {}: {e}", path.display()))
            };
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| file(cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file(cert, &e))?;
            if chain.is_empty() {
                return Err(file(cert, &"no certificate in it"));
            }
            let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file(key, &e))?;
            config
                .with_client_auth_cert(chain, private)
                .map_err(|e| file(cert, &e))?
        }
    };
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_waits_double_up_to_the_cap_within_a_quarter_and_start_over_once_connected() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let middle: Vec<_> = (0..6).map(|_| b.next(0.5)).collect();
        assert_eq!(
            middle,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(b.next(0.0), ms(750), "a quarter early at most");
        assert_eq!(b.next(1.0), ms(1250), "a quarter late at most");
        b.reset();
        assert_eq!(b.next(0.5), ms(100));
        let mut odd = Backoff::new(ms(500), ms(100));
        assert_eq!(
            (odd.next(0.5), odd.next(0.5)),
            (ms(500), ms(500)),
            "max below min"
        );
    }

    #[test]
    fn broker_urls() {
        let u: BrokerUrl = "mqtt://127.0.0.1:1999".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 1999, false));
        let u: BrokerUrl = "mqtts://al%40ice:p%3Ass@broker.example".parse().unwrap();
        assert_eq!(u.port, 8883);
        assert_eq!(u.username.as_deref(), Some("al@ice"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert_eq!(u.to_string(), "mqtts://broker.example:8883");
        let u: BrokerUrl = "mqtt://[::1]:1883".parse().unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.to_string(), "mqtt://[::1]:1883");
        assert!("http://x".parse::<BrokerUrl>().is_err());
        assert!("mqtt://x/path".parse::<BrokerUrl>().is_err());
        assert!("nonsense".parse::<BrokerUrl>().is_err());
    }
}
