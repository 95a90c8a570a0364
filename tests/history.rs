//! The account's history through a real broker: each device hears only the events published
//! while it is connected, yet every device, and the command line on a config dir that never
//! played, counts the same account-wide totals, because each asks the others for what it
//! lacks.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{AnyBroker, paired};
use continuity::engine::EngineConfig;
use continuity::model::{Device, DeviceClass};
use continuity::net::link::BrokerUrl;
use continuity::node::{Node, NodeConfig, NodeEvent, SyncState};
use continuity::security::account::Account;
use continuity::store::Store;
use continuity::wire::EventName;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

fn start(
    url: &BrokerUrl,
    dir: &Path,
    account: &Account,
    class: DeviceClass,
) -> (Node, mpsc::Receiver<NodeEvent>) {
    let mut engine = EngineConfig::new(
        "home",
        Device {
            id: account.device.clone(),
            name: format!("{class:?}"),
            class,
        },
    );
    engine.heartbeat_ns = 3600 * continuity::model::SECOND_NS;
    Node::start(NodeConfig {
        engine,
        broker: Some(url.clone()),
        store_dir: Some(dir.to_owned()),
        link: None,
        account: Some(account.clone()),
    })
    .expect("the node starts")
}

async fn synced(node: &Node) {
    assert_eq!(node.synced(WAIT).await, SyncState::Synced, "the node syncs");
}

/// The events a store holds, by `device/key`.
fn keys_of(store: &Store) -> BTreeSet<String> {
    store
        .event_keys(0)
        .unwrap()
        .into_iter()
        .map(|(_, key, _)| key)
        .collect()
}

fn held(dir: &Path) -> BTreeSet<String> {
    keys_of(&Store::open_in(dir).unwrap())
}

/// Wait until every node's store holds `want`: checked on each store's thread, after every
/// message its node takes in.
async fn all_hold(nodes: &[&Node], want: &BTreeSet<String>) {
    for (i, node) in nodes.iter().enumerate() {
        let w = want.clone();
        let last = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let seen = last.clone();
        let holds = node
            .wait_store(WAIT, move |st| {
                let keys = keys_of(st);
                let done = keys == w;
                *seen.lock().unwrap() = keys;
                done
            })
            .await;
        let got = last.lock().unwrap().clone();
        assert!(
            holds,
            "store {i} does not hold the account's events: it lacks {:?} and has {:?} besides",
            want.difference(&got).collect::<Vec<_>>(),
            got.difference(want).collect::<Vec<_>>()
        );
    }
}

/// `continuity stats --json` on `dir`: (events, devices, stderr).
fn stats(dir: &Path, url: &BrokerUrl) -> (u64, u64, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_continuity"))
        .arg("--config-dir")
        .arg(dir)
        .args(["--account", "home", "--broker", &url.to_string()])
        .args(["stats", "--since", "1d", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        doc["stats"]["events"].as_u64().unwrap(),
        doc["stats"]["devices"].as_u64().unwrap(),
        stderr,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_and_the_command_line_count_the_same_account_wide_events() {
    for (kind, broker) in AnyBroker::all() {
        let url = broker.url();
        let (root, acc) = paired(&["phone", "tv", "tablet", "laptop"]);
        let dir = |n: &str| root.path().join(n);

        // The phone and the TV run and record.
        let (phone, _p) = start(&url, &dir("phone"), &acc[0], DeviceClass::Phone);
        let (tv, _t) = start(&url, &dir("tv"), &acc[1], DeviceClass::Tv);
        synced(&phone).await;
        synced(&tv).await;
        phone.note(EventName::Started);
        tv.note(EventName::Paused);
        // The TV leaves; the phone records what the TV does not hear.
        assert!(tv.shutdown(WAIT).await);
        for name in [EventName::Paused, EventName::Resumed, EventName::Seeked] {
            phone.note(name);
        }
        // The tablet starts afterwards, having heard none of it.
        let (tablet, _b) = start(&url, &dir("tablet"), &acc[2], DeviceClass::Tablet);
        synced(&tablet).await;
        // The TV comes back.
        let (tv, _t) = start(&url, &dir("tv"), &acc[1], DeviceClass::Tv);
        synced(&tv).await;
        tablet.note(EventName::Ended);

        // Every device ends up holding every event any of them recorded: first each its
        // own (its notes and its coming online; the store is written on its own thread).
        let dirs = [dir("phone"), dir("tv"), dir("tablet")];
        for (node, device, own) in [
            (&phone, &acc[0].device, 5),
            (&tv, &acc[1].device, 4),
            (&tablet, &acc[2].device, 2),
        ] {
            let prefix = format!("{device}/");
            let kept = node
                .wait_store(WAIT, move |st| {
                    keys_of(st)
                        .iter()
                        .filter(|k| k.starts_with(&prefix))
                        .count()
                        >= own
                })
                .await;
            assert!(kept, "{kind}: {device} keeps its own {own} events");
        }
        let mut all = BTreeSet::new();
        for d in &dirs {
            all.extend(held(d));
        }
        all_hold(&[&phone, &tv, &tablet], &all).await;

        // The phone leaves: what it recorded lives on in the others.
        assert!(phone.shutdown(WAIT).await);
        all.extend(held(&dir("phone")));
        all_hold(&[&tv, &tablet], &all).await;

        // The command line on a config dir that never played counts the account's events,
        // as the TV and the tablet do.
        let (events, devices, note) = stats(&dir("laptop"), &url);
        assert_eq!(events as usize, all.len(), "{kind}: the laptop; {note}");
        assert_eq!(devices, 3, "{kind}: phone, TV and tablet; {note}");
        assert!(!note.contains("did not answer"), "{kind}: {note}");
        for d in ["tv", "tablet"] {
            let (e, n, note) = stats(&dir(d), &url);
            assert_eq!((e as usize, n), (all.len(), 3), "{kind}: the {d}; {note}");
        }
        // The laptop kept them: without a broker it counts them still, and says why only
        // those.
        let (events, _, note) = stats(&dir("laptop"), &"mqtt://127.0.0.1:1".parse().unwrap());
        assert_eq!(events as usize, all.len(), "{kind}: {note}");
        assert!(
            note.contains("counting only the events kept here"),
            "{note}"
        );

        tv.shutdown(WAIT).await;
        tablet.shutdown(WAIT).await;
    }
}

/// `device`'s event, sealed as it went out on `events` by `signer`.
fn sealed_event(
    signer: &Account,
    device: &str,
    id: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let e = continuity::wire::Event {
        v: 1,
        id: Some(id.into()),
        device: device.into(),
        name: EventName::Started,
        at_unix_ns: continuity::hlc::now_unix_ns(),
        media_id: None,
        position_ns: None,
        session: None,
        handoff: None,
    };
    let topic = continuity::wire::Topic::events("home").to_string();
    let sealed = signer.guard(0).seal(
        &topic,
        &continuity::wire::encode(&e),
        continuity::hlc::now_unix_ns(),
    );
    serde_json::from_slice(&sealed).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_from_the_broker_changes_nothing_but_what_its_recorder_signed() {
    use continuity::net::link::{Link, LinkConfig, LinkEvent, client_id};
    use continuity::wire::{self, HistoryAnswer, Topic};

    let mosq = common::Mosquitto::start();
    let url = mosq.url();
    let (root, acc) = paired(&["phone", "tv", "tablet"]);
    let (phone, tv, tablet) = (&acc[0], &acc[1], &acc[2]);
    let tv_dir = root.path().join("tv");
    let (tv_node, _t) = start(&url, &tv_dir, tv, DeviceClass::Tv);
    synced(&tv_node).await;

    // Anyone on the broker, and the paired tablet, speak on the history topics.
    let mut cfg = LinkConfig::new(url.clone(), client_id("evil"));
    let answers = Topic::history_answer("home").to_string();
    cfg.subscriptions = vec![answers.clone()];
    let (evil, mut heard) = Link::spawn(cfg).unwrap();
    let connected = tokio::time::timeout(WAIT, async {
        while let Some(ev) = heard.recv().await {
            if matches!(ev, LinkEvent::Connected) {
                return;
            }
        }
    })
    .await;
    assert!(connected.is_ok(), "the stranger connects");
    evil.publish(&answers, b"{not json".to_vec(), false, true);
    evil.publish(
        &answers,
        br#"{"v": 1, "device": "x"}"#.to_vec(),
        false,
        true,
    );
    // The tablet hands on an event it made up in the phone's name, garbage, and one the
    // phone did record.
    let answer = HistoryAnswer {
        v: 1,
        device: tablet.device.clone(),
        ask: "h-1".into(),
        to: tv.device.clone(),
        events: vec![
            sealed_event(tablet, &phone.device, "made-up"),
            serde_json::from_str(r#"{"v": 1, "device": "phone"}"#).unwrap(),
            sealed_event(phone, &phone.device, "true-1"),
        ],
        last: true,
    };
    let mut guard = tablet.guard(0);
    let sealed = guard.seal(
        &answers,
        &wire::encode(&answer),
        continuity::hlc::now_unix_ns(),
    );
    evil.publish(&answers, sealed.clone(), false, true);
    let true_key = format!("{}/true-1", phone.device);
    let key = true_key.clone();
    let kept_it = tv_node
        .wait_store(WAIT, move |st| keys_of(st).contains(&key))
        .await;
    assert!(kept_it, "the true event is kept");
    let kept = held(&tv_dir);
    assert!(
        !kept.iter().any(|k| k.ends_with("/made-up")),
        "an event in the phone's name that the tablet signed is refused: {kept:?}"
    );

    // A flood of asks from the tablet under many names is answered within the budget.
    let asks = Topic::history_ask("home").to_string();
    for i in 0..60 {
        let ask = continuity::history::Summary::default().ask(
            &format!("h-flood-{i}"),
            &format!("{}~x{i}", tablet.device),
            0,
        );
        evil.publish(
            &asks,
            guard.seal(&asks, &wire::encode(&ask), continuity::hlc::now_unix_ns()),
            false,
            true,
        );
    }
    // The TV's answers: the budget's worth, and then, for a second more (the elapsed time is
    // the point), none.
    let budget = continuity::history::AnswerBudget::PER_MINUTE;
    let mut answered = 0;
    let mut end = tokio::time::Instant::now() + WAIT;
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, heard.recv()).await {
        if let LinkEvent::Message { payload, .. } = ev
            && payload != sealed
            && String::from_utf8_lossy(&payload).contains(&tv.device)
        {
            answered += 1;
            if answered == budget {
                end = tokio::time::Instant::now() + Duration::from_secs(1);
            }
        }
    }
    assert_eq!(answered, budget, "answers to 60 asks: the budget's worth");
    tv_node.shutdown(WAIT).await;
}
