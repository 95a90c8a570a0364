//! The MQTT link, the node and the observer against real brokers: mosquitto and the embedded
//! one, each on a free loopback port.

mod common;

use std::time::Duration;

use common::{AnyBroker, Mosquitto, embedded};
use continuity::engine::{EngineConfig, Observation};
use continuity::model::{Device, DeviceClass, Media, PlayState, SECOND_NS};
use continuity::net::link::{BrokerUrl, Link, LinkConfig, LinkEvent, client_id};
use continuity::node::{Node, NodeConfig};
use continuity::observe::Observer;
use continuity::wire::{Status, Topic};

const WAIT: Duration = Duration::from_secs(10);

fn device(id: &str, class: DeviceClass) -> Device {
    Device {
        id: id.into(),
        name: format!("{id} name"),
        class,
    }
}

fn clip() -> Media {
    Media {
        id: "file:clip.ogg".into(),
        uri: Some("file:///tmp/clip.ogg".into()),
        title: Some("Test Clip".into()),
        duration_ns: Some(600 * SECOND_NS),
        ..Default::default()
    }
}

fn node_on(broker: &BrokerUrl, account: &str, id: &str, store: Option<&std::path::Path>) -> Node {
    let cfg = NodeConfig {
        engine: EngineConfig::new(account, device(id, DeviceClass::Phone)),
        broker: Some(broker.clone()),
        store_dir: store.map(|p| p.to_owned()),
        link: None,
        account: None,
    };
    Node::start(cfg).expect("node starts").0
}

async fn observer(broker: &BrokerUrl, account: &str) -> Observer {
    Observer::connect(broker, account, Duration::from_secs(5), None)
        .await
        .expect("observer connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_reaches_observers_on_both_brokers() {
    for (name, broker) in AnyBroker::all() {
        let url = broker.url();
        let node = node_on(&url, "acct", "phone-1", None);
        node.observe(Observation::MediaStarted(clip()));
        node.observe(Observation::Playback {
            position_ns: 42 * SECOND_NS,
            state: PlayState::Playing,
            rate: 1.0,
        });
        let mut obs = observer(&url, "acct").await;
        let seen = obs
            .wait_for(WAIT, |d| {
                d.sessions.get(&"phone-1".to_owned()).is_some_and(|s| {
                    s.anchor.is_some_and(|a| a.state == PlayState::Playing)
                        && s.media.as_ref().and_then(|m| m.title.as_deref()) == Some("Test Clip")
                }) && d.availability.get("phone-1") == Some(&Status::Online)
                    && d.devices.get(&"phone-1".to_owned()).is_some()
            })
            .await;
        assert!(seen, "{name}: the observer did not see the playing session");

        // A graceful shutdown leaves `offline` behind.
        assert!(node.shutdown(Duration::from_secs(2)).await, "{name}: flush");
        let offline = obs
            .wait_for(WAIT, |d| {
                d.availability.get("phone-1") == Some(&Status::Offline)
            })
            .await;
        assert!(offline, "{name}: no offline after shutdown");
        obs.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_marks_a_vanished_device_offline_on_both_brokers() {
    for (name, broker) in AnyBroker::all() {
        let url = broker.url();
        let node = node_on(&url, "acct", "tv-9", None);
        let mut obs = observer(&url, "acct").await;
        assert!(
            obs.wait_for(WAIT, |d| d.availability.get("tv-9")
                == Some(&Status::Online))
                .await,
            "{name}: online"
        );
        // Vanish without a goodbye: the socket closes under the broker.
        drop(node);
        assert!(
            obs.wait_for(WAIT, |d| d.availability.get("tv-9")
                == Some(&Status::Offline))
                .await,
            "{name}: the last will did not fire"
        );
        obs.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_state_is_back_within_5s_of_a_killed_mosquitto_returning() {
    let mut mosq = Mosquitto::start();
    let url = mosq.url();
    let node = node_on(&url, "acct", "phone-2", None);
    node.observe(Observation::MediaStarted(clip()));
    node.observe(Observation::Playback {
        position_ns: 77 * SECOND_NS,
        state: PlayState::Paused,
        rate: 1.0,
    });
    assert!(node.flush(WAIT).await, "published before the kill");

    mosq.kill();
    // Let the link notice the loss and start backing off.
    let probe = observer_after_down(&url).await;
    mosq.restart();

    let mut obs = observer(&url, "acct").await;
    let ok = obs
        .wait_for(Duration::from_secs(5), |d| {
            d.sessions
                .get(&"phone-2".to_owned())
                .and_then(|s| s.anchor)
                .is_some_and(|a| a.position_ns == 77 * SECOND_NS)
        })
        .await;
    assert!(
        ok,
        "the session state was not republished within 5 s of mosquitto's return"
    );
    probe.close().await;
    obs.close().await;
    node.shutdown(Duration::from_secs(1)).await;
}

/// A link on `url` that has reported the broker down (so the outage has begun for everyone).
async fn observer_after_down(url: &BrokerUrl) -> ProbeLink {
    let (link, mut ev) = Link::spawn(LinkConfig::new(url.clone(), client_id("probe"))).unwrap();
    let down = tokio::time::timeout(WAIT, async {
        while let Some(e) = ev.recv().await {
            if matches!(e, LinkEvent::Down { .. }) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(down, "the probe never saw the broker down");
    ProbeLink(link)
}

struct ProbeLink(Link);

impl ProbeLink {
    async fn close(self) {
        self.0.shutdown(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_updates_coalesce_and_the_final_state_arrives() {
    let mut mosq = Mosquitto::start();
    let url = mosq.url();
    mosq.kill();
    let node = node_on(&url, "acct", "phone-3", None);
    node.observe(Observation::MediaStarted(clip()));
    // 2,000 seeks while the broker is away.
    for i in 0..2_000u64 {
        node.observe(Observation::Playback {
            position_ns: 20 * SECOND_NS + i * SECOND_NS,
            state: PlayState::Paused,
            rate: 1.0,
        });
    }
    // Count what reaches a raw subscriber on the session topic once the broker is back.
    mosq.restart();
    let topic = Topic::session_state("acct", "phone-3").to_string();
    let mut cfg = LinkConfig::new(url.clone(), client_id("counter"));
    cfg.subscriptions = vec![topic.clone()];
    let (counter, mut ev) = Link::spawn(cfg).unwrap();
    let final_pos = 20 * SECOND_NS + 1_999 * SECOND_NS;
    let mut count = 0;
    let got_final = tokio::time::timeout(WAIT, async {
        while let Some(e) = ev.recv().await {
            if let LinkEvent::Message {
                topic: t, payload, ..
            } = e
                && t == topic
            {
                count += 1;
                let msg = continuity::wire::decode(&t, &payload).unwrap();
                if let continuity::wire::Body::Session(s) = msg.body
                    && s.anchor.map(|a| a.position_ns) == Some(final_pos)
                {
                    return true;
                }
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(got_final, "the final state never arrived");
    assert!(
        count <= 2,
        "{count} session messages for 2,000 offline updates: they must coalesce"
    );
    counter.shutdown(Duration::from_millis(100)).await;
    node.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_resumes_its_own_media_when_the_broker_lost_everything() {
    let dir = tempfile::tempdir().unwrap();
    let first = embedded();
    let node = node_on(&first, "acct", "desk-1", Some(dir.path()));
    node.observe(Observation::MediaStarted(clip()));
    node.observe(Observation::Playback {
        position_ns: 0,
        state: PlayState::Playing,
        rate: 1.0,
    });
    node.observe(Observation::Stopped {
        position_ns: 123 * SECOND_NS,
    });
    node.shutdown(Duration::from_secs(1)).await;

    // A brand-new, empty broker: only the local store remembers.
    let second = embedded();
    let node = node_on(&second, "acct", "desk-1", Some(dir.path()));
    let from = node
        .resume_position("file:clip.ogg")
        .expect("resume point from the local store");
    assert_eq!(from.position_ns, 123 * SECOND_NS);
    assert_eq!(from.device, "desk-1");
    node.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_command_reaches_the_player() {
    let url = embedded();
    let (node, mut events) = Node::start(NodeConfig {
        engine: EngineConfig::new("acct", device("tv-2", DeviceClass::Tv)),
        broker: Some(url.clone()),
        store_dir: None,
        link: None,
        account: None,
    })
    .unwrap();
    // Wait for the node's subscription to be in place.
    let connected = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if e == continuity::node::NodeEvent::Connected {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(connected);
    assert!(node.flush(WAIT).await);

    let (sender, _ev) = Link::spawn(LinkConfig::new(url, client_id("remote"))).unwrap();
    let cmd = continuity::wire::Command {
        v: 1,
        id: "c1".into(),
        from: "phone-1".into(),
        to: "tv-2".into(),
        sent_unix_ns: continuity::hlc::now_unix_ns(),
        body: continuity::wire::CommandBody::Seek {
            position_ns: 5 * SECOND_NS,
        },
    };
    let topic = Topic::inbox("acct", "tv-2").to_string();
    // Sent once: the link queues it until it is connected.
    sender.publish(&topic, continuity::wire::encode(&cmd), false, true);
    let got = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if let continuity::node::NodeEvent::Player(p) = e {
                return Some(p);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    assert_eq!(
        got,
        Some(continuity::engine::PlayerAction::Seek {
            position_ns: 5 * SECOND_NS
        })
    );
    sender.shutdown(Duration::from_millis(100)).await;
    node.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_lookup_waits_for_the_brokers_retained_points_on_both_brokers() {
    for (name, broker) in AnyBroker::all() {
        let url = broker.url();
        let phone = node_on(&url, "acct", "phone-5", None);
        phone.observe(Observation::MediaStarted(clip()));
        phone.observe(Observation::Playback {
            position_ns: 0,
            state: PlayState::Playing,
            rate: 1.0,
        });
        phone.observe(Observation::Stopped {
            position_ns: 321 * SECOND_NS,
        });
        assert!(phone.flush(WAIT).await, "{name}: flush");

        // A new device with an empty store learns the point from the broker alone.
        let tv = node_on(&url, "acct", "tv-5", None);
        let found = tv.resume_lookup("file:clip.ogg", WAIT).await;
        assert_eq!(
            tv.sync_state(),
            continuity::node::SyncState::Synced,
            "{name}: the sync echo came back"
        );
        let from = found.unwrap_or_else(|| panic!("{name}: no resume point"));
        assert_eq!(from.position_ns, 321 * SECOND_NS, "{name}");
        assert_eq!(from.device, "phone-5", "{name}");
        assert!(tv.resume_lookup("file:other.ogg", WAIT).await.is_none());
        tv.shutdown(Duration::from_secs(1)).await;
        phone.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_lookup_does_not_wait_out_its_timeout_when_the_broker_is_down() {
    let port = common::free_port();
    let url: BrokerUrl = format!("mqtt://127.0.0.1:{port}").parse().unwrap();
    let node = node_on(&url, "acct", "lonely", None);
    // A refused connection is known at once: the lookup's 30 s are not waited out (the
    // deadline only bounds that failure).
    let found = tokio::time::timeout(
        Duration::from_secs(10),
        node.resume_lookup("file:clip.ogg", Duration::from_secs(30)),
    )
    .await
    .expect("the lookup waited for a broker that refuses connections");
    assert!(found.is_none());
    assert_eq!(node.sync_state(), continuity::node::SyncState::Unreachable);
    node.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_an_adapter_does_not_read_are_counted_not_piled_up() {
    let url = embedded();
    // An adapter that never reads its events.
    let (node, _events) = Node::start(NodeConfig {
        engine: EngineConfig::new("acct", device("tv-9", DeviceClass::Tv)),
        broker: Some(url.clone()),
        store_dir: None,
        link: None,
        account: None,
    })
    .unwrap();
    assert_eq!(node.synced(WAIT).await, continuity::node::SyncState::Synced);
    let (sender, _ev) = Link::connect(LinkConfig::new(url, client_id("remote")), WAIT)
        .await
        .unwrap();
    let topic = Topic::inbox("acct", "tv-9").to_string();
    // More player commands than the event queue holds (256), bounded.
    for i in 0..300u64 {
        let cmd = continuity::wire::Command {
            v: 1,
            id: format!("c{i}"),
            from: "phone-1".into(),
            to: "tv-9".into(),
            sent_unix_ns: continuity::hlc::now_unix_ns(),
            body: continuity::wire::CommandBody::Seek {
                position_ns: i * SECOND_NS,
            },
        };
        sender.publish(&topic, continuity::wire::encode(&cmd), false, true);
    }
    // Checked again after each message the node takes in.
    let counted = node
        .wait_until(WAIT, |_| node.dropped_events() >= 300 - 256)
        .await;
    assert!(
        counted,
        "lost events are counted: {}",
        node.dropped_events()
    );
    sender.shutdown(Duration::from_millis(100)).await;
    node.shutdown(Duration::from_secs(1)).await;
}

/// A raw MQTT client for the WebSocket test: its event loop runs in a task, and what it
/// receives comes out of the channel as (topic, payload, retained).
fn raw_client(
    id: &str,
    opts_for: impl FnOnce(&str) -> rumqttc::MqttOptions,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
) {
    let mut opts = opts_for(id);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 16);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = eventloop.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = ev {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
            }
        }
    });
    (client, rx)
}

async fn next_on(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
    topic: &str,
) -> (Vec<u8>, bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (t, payload, retained) = rx.recv().await.expect("the client runs");
            if t == topic {
                return (payload, retained);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing on {topic} within 5 s"))
}

/// A device over TCP at `tcp` and a browser over the WebSocket at `ws_url` (port `ws_port`)
/// meet on one broker: the device's retained state reaches the browser, and messages go both
/// ways.
async fn websocket_meets_tcp(tcp: std::net::SocketAddr, ws_url: String, ws_port: u16) {
    use rumqttc::{MqttOptions, QoS, Transport};
    let (device, mut device_rx) = raw_client("device", |id| {
        MqttOptions::new(id, tcp.ip().to_string(), tcp.port())
    });
    let state = "continuity/v1/home/sessions/tv-1/state";
    let sealed = b"{\"v\":1,\"sealed\":{}}".to_vec();
    device
        .publish(state, QoS::AtLeastOnce, true, sealed.clone())
        .await
        .unwrap();
    // The retained copy is in place before the browser comes: a round trip through it.
    let inbox = "continuity/v1/home/devices/tv-1/inbox";
    device.subscribe(inbox, QoS::AtLeastOnce).await.unwrap();
    device
        .publish(inbox, QoS::AtLeastOnce, false, b"self".to_vec())
        .await
        .unwrap();
    next_on(&mut device_rx, inbox).await;

    let (browser, mut browser_rx) = raw_client("browser", |id| {
        let mut o = MqttOptions::new(id, ws_url, ws_port);
        o.set_transport(Transport::Ws);
        o
    });
    browser
        .subscribe("continuity/v1/home/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert_eq!(
        next_on(&mut browser_rx, state).await,
        (sealed, true),
        "the retained state reaches the browser"
    );
    browser
        .publish(inbox, QoS::AtLeastOnce, false, b"from the browser".to_vec())
        .await
        .unwrap();
    assert_eq!(next_on(&mut device_rx, inbox).await.0, b"from the browser");
    let events = "continuity/v1/home/events";
    device
        .publish(events, QoS::AtMostOnce, false, b"from the device".to_vec())
        .await
        .unwrap();
    assert_eq!(next_on(&mut browser_rx, events).await.0, b"from the device");
}

/// `continuity broker --ws-listen`: a browser's MQTT over WebSockets and a device's MQTT over
/// TCP meet on the embedded broker, retained state included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_tcp_clients_share_the_embedded_broker() {
    use continuity::net::broker::EmbeddedBroker;
    let any = "127.0.0.1:0".parse().unwrap();
    let b = EmbeddedBroker::start_with(any, Some(any)).unwrap();
    let ws_url = b.ws_url().expect("a WebSocket listener");
    assert!(
        ws_url.starts_with("ws://127.0.0.1:") && ws_url.ends_with("/mqtt"),
        "{ws_url}"
    );
    let port = b.ws_addr().unwrap().port();
    websocket_meets_tcp(b.addr(), ws_url, port).await;
}

/// A WebSocket port in use is a clear error that names the option.
#[test]
fn a_websocket_port_in_use_names_the_option() {
    use continuity::net::broker::EmbeddedBroker;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let err = EmbeddedBroker::start_with(
        "127.0.0.1:0".parse().unwrap(),
        Some(busy.local_addr().unwrap()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("port {port} is already in use")),
        "{err}"
    );
    assert!(err.contains("--ws-listen"), "{err}");
}

/// `continuity broker --web`: a browser reaches the broker at `/mqtt` of the web app's own
/// port (the web server passes the WebSocket through), and meets the TCP devices there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_port_carries_mqtt_over_websockets_at_mqtt() {
    use continuity::net::broker::EmbeddedBroker;
    use continuity::net::web::{WebConfig, WebServer};
    let any = "127.0.0.1:0".parse().unwrap();
    let b = EmbeddedBroker::start_with(any, Some(any)).unwrap();
    let cfg = WebConfig {
        media: None,
        mqtt_ws: b.ws_addr(),
    };
    let web = WebServer::start(any, cfg).await.unwrap();
    let url = format!("ws://{}/mqtt", web.addr());
    websocket_meets_tcp(b.addr(), url, web.addr().port()).await;
}

/// A broker that takes the connection and never answers: `connect` gives up once its timeout
/// has passed, not before, and says why. On a paused clock: the 5 s go by without being
/// waited out, and the test is about the timer, not about how busy the machine is.
#[tokio::test(start_paused = true)]
async fn a_broker_that_never_answers_is_given_up_on_when_the_timeout_has_passed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: BrokerUrl = format!("mqtt://127.0.0.1:{}", listener.local_addr().unwrap().port())
        .parse()
        .unwrap();
    // Connections are taken and held, and nothing is ever said on them.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let asked = tokio::time::Instant::now();
    let result = Link::connect(
        LinkConfig::new(url, client_id("patient")),
        Duration::from_secs(5),
    )
    .await;
    let gave_up = asked.elapsed();
    let Err(continuity::net::link::ConnectError::Unreachable(why)) = result else {
        panic!("connected to a broker that never answered");
    };
    assert!(
        gave_up >= Duration::from_secs(5) && gave_up < Duration::from_secs(6),
        "gave up after {gave_up:?} of the clock: {why}"
    );
    silent.abort();
}

/// A device listens to its inbox before it says it is online: a device that sees it come
/// online may send it a command at once (an automatic handoff, a clock probe), and a broker
/// takes a client's packets in order, so a command sent before the subscription would be
/// lost. Read off a fake broker that answers what it must and keeps the packets' order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_listens_to_its_inbox_before_it_says_it_is_online() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url: BrokerUrl = format!("mqtt://127.0.0.1:{}", listener.local_addr().unwrap().port())
        .parse()
        .unwrap();
    let node = node_on(&url, "acct", "tv-1", None);
    let inbox = Topic::inbox("acct", "tv-1").to_string();
    let online = Topic::availability("acct", "tv-1").to_string();
    let order = tokio::time::timeout(Duration::from_secs(10), async {
        let (mut conn, _) = listener.accept().await.unwrap();
        // ("publish" | "subscribe", topic), in the order the packets came.
        let mut seen: Vec<(&str, String)> = Vec::new();
        let has = |seen: &[(&str, String)], kind: &str, topic: &str| {
            seen.iter().position(|(k, t)| *k == kind && t == topic)
        };
        while has(&seen, "subscribe", &inbox).is_none() || has(&seen, "publish", &online).is_none()
        {
            let first = conn.read_u8().await.unwrap();
            let mut len = 0usize;
            for shift in (0..28).step_by(7) {
                let b = conn.read_u8().await.unwrap();
                len |= usize::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0u8; len];
            conn.read_exact(&mut body).await.unwrap();
            let string = |at: usize| {
                let n = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
                (
                    String::from_utf8_lossy(&body[at + 2..at + 2 + n]).into_owned(),
                    at + 2 + n,
                )
            };
            let reply: Vec<u8> = match first >> 4 {
                1 => vec![0x20, 2, 0, 0],
                3 => {
                    let (topic, end) = string(0);
                    seen.push(("publish", topic));
                    if first & 0x06 != 0 {
                        vec![0x40, 2, body[end], body[end + 1]]
                    } else {
                        Vec::new()
                    }
                }
                8 => {
                    let mut at = 2;
                    let mut granted = 0u8;
                    while at < body.len() {
                        let (topic, end) = string(at);
                        seen.push(("subscribe", topic));
                        at = end + 1;
                        granted += 1;
                    }
                    let mut ack = vec![0x90, 2 + granted, body[0], body[1]];
                    ack.extend(std::iter::repeat_n(1u8, granted.into()));
                    ack
                }
                12 => vec![0xd0, 0],
                _ => Vec::new(),
            };
            conn.write_all(&reply).await.unwrap();
        }
        (
            has(&seen, "subscribe", &inbox).unwrap(),
            has(&seen, "publish", &online).unwrap(),
        )
    })
    .await
    .expect("the device subscribed to its inbox and said it is online");
    assert!(
        order.0 < order.1,
        "the inbox subscription (packet {}) came after the availability (packet {})",
        order.0,
        order.1
    );
    drop(node);
}
