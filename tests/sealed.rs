//! A sealed account through a real mosquitto: paired devices understand each other, the
//! broker and anyone subscribed to `#` see no title, URI, artist, media id or position, and
//! a device that is not paired is not heard.

mod common;

use std::time::Duration;

use common::Mosquitto;
use continuity::engine::{EngineConfig, Observation, PlayerAction};
use continuity::model::{Device, DeviceClass, Media, PlayState, SECOND_NS};
use continuity::net::link::{BrokerUrl, Link, LinkConfig, LinkEvent, client_id};
use continuity::node::{Node, NodeConfig, NodeEvent};
use continuity::security::account::Account;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const ID: &str = "file:Secret Film.ogg";
const POSITION_NS: u64 = 1_234_500_000_000;

fn film() -> Media {
    Media {
        id: ID.into(),
        uri: Some("file:///films/Secret%20Film.ogg".into()),
        title: Some("Secret Film".into()),
        artist: Some("Hidden Artist".into()),
        duration_ns: Some(5_400 * SECOND_NS),
        ..Default::default()
    }
}

fn node(
    broker: &BrokerUrl,
    id: &str,
    class: DeviceClass,
    account: Option<Account>,
) -> (Node, mpsc::Receiver<NodeEvent>) {
    let cfg = EngineConfig::new(
        "home",
        Device {
            id: id.into(),
            name: id.into(),
            class,
        },
    );
    Node::start(NodeConfig {
        engine: cfg,
        broker: Some(broker.clone()),
        store_dir: None,
        link: None,
        account,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_devices_hand_off_and_the_broker_learns_nothing() {
    let mosq = Mosquitto::start();
    let url = mosq.url();
    let (phone_dir, tv_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut tv_acc = Account::open(tv_dir.path(), "home", "tv", "TV").unwrap();
    let mut phone_acc = Account::open(phone_dir.path(), "home", "phone", "Phone").unwrap();
    continuity::security::pair::pair_local(&mut tv_acc, &mut phone_acc).unwrap();

    // Everything anyone subscribed to the whole tree sees.
    let mut cfg = LinkConfig::new(url.clone(), client_id("spy"));
    cfg.subscriptions = vec!["#".into()];
    let (_spy, mut seen) = Link::spawn(cfg).unwrap();

    let (phone, _phone_ev) = node(&url, "phone", DeviceClass::Phone, Some(phone_acc));
    let (tv, mut tv_ev) = node(&url, "tv", DeviceClass::Tv, Some(tv_acc));
    phone.observe(Observation::MediaStarted(film()));
    phone.observe(Observation::Playback {
        position_ns: POSITION_NS,
        state: PlayState::Playing,
        rate: 1.0,
    });

    // The TV opens the phone's sealed session.
    let known = tv
        .wait_until(WAIT, |e| {
            e.directory()
                .sessions
                .get(&"phone".to_owned())
                .and_then(|s| s.media.as_ref())
                .and_then(|m| m.title.as_deref())
                == Some("Secret Film")
        })
        .await;
    assert!(known, "the TV reads the phone's session");

    // "Continue on the TV": sealed, signed commands both ways; the TV is asked to load.
    tv.request_handoff("tv", "phone");
    let load = tokio::time::timeout(WAIT, async {
        while let Some(ev) = tv_ev.recv().await {
            if let NodeEvent::Player(PlayerAction::Load { media, .. }) = ev {
                return Some(media);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the TV is asked to load the phone's media");
    assert_eq!(load.title.as_deref(), Some("Secret Film"));
    // What the spy saw, up to the commands of the handoff (bounded).
    let mut traffic = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        while let Some(ev) = seen.recv().await {
            if let LinkEvent::Message { topic, payload, .. } = ev {
                let inbox = topic.ends_with("/devices/phone/inbox");
                traffic.push((topic, String::from_utf8_lossy(&payload).into_owned()));
                if inbox {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        traffic.iter().any(|(t, _)| t.contains("/inbox")),
        "commands went through the broker: {traffic:#?}"
    );
    let plain_key = continuity::wire::media_key(ID);
    let secrets = [
        "Secret",
        "Hidden Artist",
        "Secret%20Film",
        "films",
        &POSITION_NS.to_string(),
        &plain_key,
    ];
    for (topic, payload) in &traffic {
        for s in secrets {
            assert!(
                !topic.contains(s) && !payload.contains(s),
                "'{s}' leaked on {topic}: {payload}"
            );
        }
        if !topic.ends_with("/availability") && !payload.is_empty() {
            assert!(
                payload.contains("\"sealed\""),
                "plain on {topic}: {payload}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_is_not_paired_is_not_heard() {
    let mosq = Mosquitto::start();
    let url = mosq.url();
    let (tv_dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tv_acc = Account::open(tv_dir.path(), "home", "tv", "TV").unwrap();
    // Its own account secret, never paired: same account name, other keys.
    let stranger_acc = Account::open(other_dir.path(), "home", "stranger", "Stranger").unwrap();
    let (tv, mut tv_ev) = node(&url, "tv", DeviceClass::Tv, Some(tv_acc));
    let (stranger, _ev) = node(&url, "stranger", DeviceClass::Phone, Some(stranger_acc));
    // And one that speaks plain JSON.
    let (plain, _ev2) = node(&url, "plain", DeviceClass::Phone, None);
    for n in [&stranger, &plain] {
        n.observe(Observation::MediaStarted(film()));
        n.observe(Observation::Playback {
            position_ns: POSITION_NS,
            state: PlayState::Playing,
            rate: 1.0,
        });
    }
    stranger.request_handoff("tv", "stranger");
    plain.request_handoff("tv", "plain");

    let mut reasons = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(ev) = tv_ev.recv().await {
            match ev {
                NodeEvent::Rejected { topic, reason, .. } => {
                    reasons.push(format!("{topic}: {reason}"))
                }
                NodeEvent::Player(p) => panic!("a stranger made the TV act: {p:?}"),
                _ => {}
            }
        }
    })
    .await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("'stranger' is not a paired device")),
        "the stranger is not in the roster: {reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("plain (unsealed)")),
        "the plain command is refused: {reasons:#?}"
    );
    let sessions = tv.with_engine(|e| e.directory().sessions.len());
    assert_eq!(sessions, 1, "only the TV's own session is known");
}
