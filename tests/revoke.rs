//! `continuity devices --revoke`: a lost tablet is revoked, the account key rotates, the
//! devices online take the new key at once and one that was offline takes it when it comes
//! back; the tablet can neither read new state nor command a handoff. Real mosquitto.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::Mosquitto;
use continuity::engine::{Engine, Observation};
use continuity::model::{DeviceClass, Media, PlayState, SECOND_NS};
use continuity::node::{Node, NodeEvent};
use continuity::security::account::Account;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_continuity");
const WAIT: Duration = Duration::from_secs(15);

/// The account's devices, paired before any starts: config dirs by name.
struct Devices {
    root: tempfile::TempDir,
}

impl Devices {
    fn pair(names: &[&str]) -> Devices {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = names.iter().map(|n| root.path().join(n)).collect();
        let named: Vec<(&Path, &str)> = dirs
            .iter()
            .map(|d| d.as_path())
            .zip(names.to_vec())
            .collect();
        continuity::security::pair::pair_dirs("home", &named).unwrap();
        Devices { root }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn account(&self, name: &str) -> Account {
        let dir = self.dir(name);
        let device = continuity::config::device_id(&dir).unwrap();
        Account::open(&dir, "home", &device, name).unwrap()
    }

    /// A sealed node for device `name`.
    fn start(&self, broker: &Mosquitto, name: &str) -> (Node, mpsc::Receiver<NodeEvent>, String) {
        let account = self.account(name);
        let id = account.device.clone();
        let (node, events) = common::sealed_node(broker.url(), account, name, DeviceClass::Other);
        (node, events, id)
    }

    /// `continuity <args>` run on device `on` (off the runtime's threads).
    async fn cli(&self, broker: &Mosquitto, on: &str, args: &[&str]) -> Output {
        let dir = self.dir(on);
        let url = broker.url().to_string();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(["--broker", &url, "--account", "home", "--config-dir"])
                .arg(&dir)
                .args(&args)
                .env("CONTINUITY_MDNS_INTERFACE", "lo")
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// `continuity devices --revoke <who>` run on `on`.
    async fn revoke(&self, broker: &Mosquitto, on: &str, who: &str) -> (Option<i32>, String) {
        let out = self
            .cli(broker, on, &["devices", "--revoke", who, "--timeout", "10"])
            .await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }
}

/// The first event that `pred` picks, within `WAIT`; the others are passed over.
async fn wait_event<T>(
    events: &mut mpsc::Receiver<NodeEvent>,
    mut pred: impl FnMut(&NodeEvent) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(WAIT, async {
        while let Some(ev) = events.recv().await {
            if let Some(t) = pred(&ev) {
                return Some(t);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

fn rotated(ev: &NodeEvent) -> Option<String> {
    match ev {
        NodeEvent::KeyRotated { key_id } => Some(key_id.clone()),
        _ => None,
    }
}

fn play(node: &Node, position_s: u64) {
    node.observe(Observation::MediaStarted(Media {
        id: "file:film.mkv".into(),
        title: Some("A Film".into()),
        duration_ns: Some(3600 * SECOND_NS),
        ..Default::default()
    }));
    node.observe(Observation::Playback {
        position_ns: position_s * SECOND_NS,
        state: PlayState::Playing,
        rate: 1.0,
    });
}

/// The position of `device`'s session as an engine sees it.
fn position(e: &Engine, device: &str) -> Option<u64> {
    e.directory()
        .sessions
        .get(&device.to_owned())
        .and_then(|s| s.anchor)
        .map(|a| a.position_ns)
}

/// Wait until `node` sees `device`'s session at `position_s`.
async fn sees(node: &Node, device: &str, position_s: u64) -> bool {
    node.wait_until(WAIT, |e| {
        position(e, device) == Some(position_s * SECOND_NS)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_reads_nothing_new_and_cannot_command() {
    let broker = Mosquitto::start();
    let devices = Devices::pair(&["TV", "Phone", "Tablet", "Laptop"]);
    let (tv, mut tv_events, tv_id) = devices.start(&broker, "TV");
    let (phone, mut phone_events, phone_id) = devices.start(&broker, "Phone");
    let (tablet, mut tablet_events, tablet_id) = devices.start(&broker, "Tablet");
    for n in [&tv, &phone, &tablet] {
        n.synced(WAIT).await;
    }
    play(&phone, 60);
    assert!(phone.flush(WAIT).await);
    // Before: the tablet is a paired device and sees the phone play.
    let before = sees(&tablet, &phone_id, 60).await;
    assert!(before, "the tablet saw the phone before the revocation");

    let (code, out) = devices.revoke(&broker, "Laptop", "Tablet").await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Revoked Tablet"), "{out}");
    assert!(
        out.contains("handed the new key to TV") && out.contains("handed the new key to Phone"),
        "{out}"
    );
    let new_key = devices.account("Laptop").keys().key_id;
    assert_eq!(
        wait_event(&mut tv_events, rotated).await,
        Some(new_key.clone())
    );
    assert_eq!(
        wait_event(&mut phone_events, rotated).await,
        Some(new_key.clone())
    );

    // `continuity devices` on the laptop shows the tablet revoked.
    let out = devices.cli(&broker, "Laptop", &["devices", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let entry = |id: &str| {
        doc["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no {id} in {doc}"))
    };
    assert_eq!(entry(&tablet_id)["status"], "revoked", "{doc}");
    assert_eq!(entry(&tablet_id)["paired"], false, "{doc}");
    assert_eq!(entry(&tv_id)["paired"], true, "{doc}");
    // The TV no longer lists the tablet.
    let listed = tv.with_engine(|e| e.directory().devices.get(&tablet_id).is_some());
    assert!(!listed, "the revoked tablet is forgotten");

    // The tablet learns that it was removed (a player tells its person).
    let told = wait_event(&mut tablet_events, |ev| {
        matches!(ev, NodeEvent::Revoked).then_some(())
    })
    .await;
    assert!(told.is_some(), "the tablet was told it was revoked");

    // The phone moves on; the TV follows, the tablet cannot open it.
    phone.observe(Observation::Playback {
        position_ns: 120 * SECOND_NS,
        state: PlayState::Playing,
        rate: 1.0,
    });
    assert!(phone.flush(WAIT).await);
    let followed = sees(&tv, &phone_id, 120).await;
    assert!(followed, "the TV reads the phone under the new key");
    let refused = wait_event(&mut tablet_events, |ev| match ev {
        NodeEvent::Rejected { topic, reason, .. } if topic.contains(&phone_id) => {
            Some(reason.clone())
        }
        _ => None,
    })
    .await
    .expect("the tablet is refused the phone's new state");
    assert!(refused.contains(&new_key), "{refused}");
    let seen = tablet.with_engine(|e| position(e, &phone_id));
    assert_ne!(seen, Some(120 * SECOND_NS));
    assert!(
        !devices
            .account("Tablet")
            .all_keys()
            .iter()
            .any(|k| k.key_id == new_key),
        "the tablet never got the new key"
    );

    // The tablet commands a handoff: the TV refuses it, logged with the reason, no seek.
    tablet.request_handoff(&tv_id, &phone_id);
    let reason = wait_event(&mut tv_events, |ev| match ev {
        NodeEvent::Rejected { reason, .. } if reason.contains("revoked") => Some(reason.clone()),
        NodeEvent::Player(p) => panic!("the TV obeyed a revoked device: {p:?}"),
        _ => None,
    })
    .await;
    assert!(
        reason.is_some(),
        "the TV refused the revoked tablet's command"
    );
    for n in [tv, phone, tablet] {
        n.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_offline_during_the_revocation_takes_the_new_key_when_it_comes_back() {
    let broker = Mosquitto::start();
    let devices = Devices::pair(&["TV", "Phone", "Tablet", "Remote"]);
    let (phone, mut phone_events, phone_id) = devices.start(&broker, "Phone");
    phone.synced(WAIT).await;
    // The TV is off; the tablet is lost. The phone revokes it.
    let (code, out) = devices.revoke(&broker, "Phone", "Tablet").await;
    assert_eq!(code, Some(0), "{out}");
    let offline = out
        .lines()
        .find(|l| l.starts_with("Not online now:"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        offline.contains("TV") && offline.contains("Remote") && !offline.contains("Tablet"),
        "{out}"
    );
    let new_key = devices.account("Phone").keys().key_id;
    // The phone's node (same config dir as the command) takes the key from disk.
    assert_eq!(
        wait_event(&mut phone_events, rotated).await,
        Some(new_key.clone())
    );
    play(&phone, 300);
    assert!(phone.flush(WAIT).await);

    // The TV comes back with only the old key: it asks, the phone answers.
    let (tv, mut tv_events, _) = devices.start(&broker, "TV");
    assert_eq!(
        wait_event(&mut tv_events, rotated).await,
        Some(new_key.clone())
    );
    let caught_up = sees(&tv, &phone_id, 300).await;
    assert!(caught_up, "the TV reads the phone's session");
    assert_eq!(devices.account("TV").keys().key_id, new_key, "kept on disk");

    // A device that only runs commands (no player) asks for the key when it looks.
    let out = devices
        .cli(&broker, "Remote", &["sessions", "--json"])
        .await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let sessions = doc["sessions"].as_array().cloned().unwrap_or_default();
    assert!(
        sessions
            .iter()
            .any(|s| s["device"] == phone_id && s["title"] == "A Film"),
        "{doc} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        devices.account("Remote").keys().key_id,
        new_key,
        "kept on disk"
    );
    for n in [tv, phone] {
        n.shutdown(Duration::from_secs(1)).await;
    }
}
