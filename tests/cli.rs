//! The `continuity` command as a person runs it: `continuity broker` in its own process,
//! a session published through the library, `continuity sessions --json` and `devices`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::free_port;
use continuity::engine::Observation;
use continuity::model::{DeviceClass, Media, PlayState, SECOND_NS};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_continuity");

/// `continuity broker` as a child process; killed on drop.
struct BrokerProcess {
    child: Child,
    url: String,
}

impl BrokerProcess {
    fn start() -> BrokerProcess {
        // Port 0: the broker binds a free port itself and says which (a port picked here
        // could be taken before the broker binds it).
        let mut child = Command::new(BIN)
            .args(["broker", "--no-advertise", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // It prints one line once clients can connect.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("mqtt://127.0.0.1:"))
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        assert!(
            line.contains("listening on"),
            "unexpected first line: {line:?}"
        );
        BrokerProcess { child, url }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config dir of the device that runs the commands (one per test binary).
fn cli_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CONTINUITY_CONFIG_DIR", cli_dir())
        .env_remove("CONTINUITY_BROKER")
        .env_remove("CONTINUITY_ACCOUNT")
        // `devices` browses the LAN: keep mDNS on loopback in tests.
        .env("CONTINUITY_MDNS_INTERFACE", "lo")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn sessions_json(url: &str) -> Value {
    let out = cli(&["--broker", url, "--account", "home", "sessions", "--json"]);
    assert!(
        out.status.success(),
        "sessions --json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sessions --json prints one JSON document")
}

/// `node` plays a 10-minute media, from 30 s in.
fn plays_ten_minutes(node: &continuity::node::Node, id: &str, title: &str) {
    node.observe(Observation::MediaStarted(Media {
        id: id.into(),
        title: Some(title.into()),
        duration_ns: Some(600 * SECOND_NS),
        ..Default::default()
    }));
    node.observe(Observation::Playback {
        position_ns: 30 * SECOND_NS,
        state: PlayState::Playing,
        rate: 1.0,
    });
}

/// The phone's entry: (position_ns, at_unix_ns, state).
fn phone(doc: &Value) -> (u64, u64, String) {
    let s = doc["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device"] == "phone-1")
        .unwrap_or_else(|| panic!("no phone session in {doc}"));
    (
        s["position_ns"].as_u64().unwrap(),
        doc["at_unix_ns"].as_u64().unwrap(),
        s["state"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_session_shows_in_sessions_json_and_moves_only_while_playing() {
    let broker = BrokerProcess::start();
    // The phone and the device that runs the commands are paired.
    let phone_dir = tempfile::tempdir().unwrap();
    std::fs::write(phone_dir.path().join("device-id"), "phone-1\n").unwrap();
    let mut accounts = continuity::security::pair::pair_dirs(
        "home",
        &[(phone_dir.path(), "Phone"), (cli_dir(), "Laptop")],
    )
    .unwrap();
    let (node, _events) = common::sealed_node(
        broker.url.parse().unwrap(),
        accounts.swap_remove(0),
        "Phone",
        DeviceClass::Phone,
    );
    plays_ten_minutes(&node, "file:clip.ogg", "Big Buck Bunny");
    assert!(node.flush(Duration::from_secs(5)).await);

    let url = broker.url.clone();
    let first = tokio::task::spawn_blocking({
        let url = url.clone();
        move || sessions_json(&url)
    })
    .await
    .unwrap();
    let s = &first["sessions"][0];
    assert_eq!(s["title"], "Big Buck Bunny");
    assert_eq!(s["device_name"], "Phone");
    assert_eq!(s["device_class"], "phone");
    assert_eq!(s["online"], true);
    assert_eq!(s["duration_ns"], 600 * SECOND_NS);
    let second = tokio::task::spawn_blocking({
        let url = url.clone();
        move || sessions_json(&url)
    })
    .await
    .unwrap();
    let (p1, t1, st1) = phone(&first);
    let (p2, t2, st2) = phone(&second);
    assert_eq!((st1.as_str(), st2.as_str()), ("playing", "playing"));
    assert!(t2 > t1);
    assert!(
        p2 > p1,
        "the position must advance while playing: {p1} then {p2}"
    );
    // Extrapolated at rate 1: the position moved as far as the clock did.
    assert_eq!(
        p2 - p1,
        t2 - t1,
        "position moved {} ns in {} ns",
        p2 - p1,
        t2 - t1
    );

    node.observe(Observation::Playback {
        position_ns: 45 * SECOND_NS,
        state: PlayState::Paused,
        rate: 1.0,
    });
    assert!(node.flush(Duration::from_secs(5)).await);
    let third = tokio::task::spawn_blocking({
        let url = url.clone();
        move || sessions_json(&url)
    })
    .await
    .unwrap();
    let fourth = tokio::task::spawn_blocking(move || sessions_json(&url))
        .await
        .unwrap();
    let (p3, t3, st3) = phone(&third);
    let (p4, t4, _) = phone(&fourth);
    assert_eq!(st3, "paused");
    assert!(t4 > t3);
    assert_eq!(p3, 45 * SECOND_NS);
    assert_eq!(p4, p3, "the position stands still while paused");

    let devices = cli(&[
        "--broker",
        &broker.url,
        "--account",
        "home",
        "devices",
        "--json",
    ]);
    let doc: Value = serde_json::from_slice(&devices.stdout).unwrap();
    let listed = doc["devices"].as_array().unwrap();
    let phone = listed
        .iter()
        .find(|d| d["id"] == "phone-1")
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(phone["status"], "online");
    assert_eq!(phone["class"], "phone");
    assert_eq!(phone["paired"], true);
    // The device that runs the command is paired too, though it never published.
    let laptop = listed
        .iter()
        .find(|d| d["name"] == "Laptop")
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(
        (laptop["paired"].clone(), laptop["status"].clone()),
        (true.into(), "unknown".into())
    );

    let table = cli(&["--broker", &broker.url, "--account", "home", "sessions"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("Big Buck Bunny") && text.contains("0:45 / 10:00") && text.contains("paused"),
        "{text}"
    );
    node.shutdown(Duration::from_secs(1)).await;
}

/// (How soon it says so is `make bench`'s, "a broker that refuses".)
#[test]
fn no_broker_is_a_one_line_error_and_exit_2() {
    let port = free_port();
    let url = format!("mqtt://127.0.0.1:{port}");
    for args in [
        vec!["--broker", url.as_str(), "sessions"],
        vec!["--broker", url.as_str(), "sessions", "--json"],
        vec!["--broker", url.as_str(), "devices"],
    ] {
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line, got: {err}");
        assert!(
            err.starts_with("error: cannot reach the broker")
                && err.contains(&port.to_string())
                && err.contains("refused"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_bad_broker_url_is_a_clear_error() {
    let out = cli(&["--broker", "http://example", "sessions"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("mqtt://"), "{err}");
}

#[test]
fn a_port_in_use_names_the_port_and_the_way_out() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = cli(&[
        "broker",
        "--no-advertise",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("port {port} is already in use")) && err.contains("--listen"),
        "{err}"
    );
}

#[test]
fn a_key_file_that_others_can_read_is_refused_naming_the_file_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    continuity::config::account_secret(dir.path(), "home").unwrap();
    let key = continuity::config::account_secret_path(dir.path(), "home");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = Command::new(BIN)
        .args(["--account", "home", "--config-dir"])
        .arg(dir.path())
        .args(["sessions", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&key.display().to_string()) && err.contains("chmod 600"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn plain_mode_says_what_it_exposes() {
    let port = free_port();
    let out = cli(&[
        "--broker",
        &format!("mqtt://127.0.0.1:{port}"),
        "--insecure-plaintext",
        "sessions",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: encryption is off") && err.contains("anyone"),
        "{err}"
    );
}

/// `devices --json` and `sessions --json` list every device of a busy account: they answer
/// once the broker has given what it holds (the echo of a sync), so nothing is missing
/// however soon they answer. (How soon is `make bench`'s "commands" group: under 300 ms.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_sessions_list_every_device_of_a_busy_account() {
    const DEVICES: usize = 20;
    let broker = BrokerProcess::start();
    let names: Vec<String> = (0..DEVICES)
        .map(|i| format!("Device {i:02}"))
        .chain(["Laptop".to_owned()])
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (root, mut accounts) = common::paired(&refs);
    let laptop = root.path().join("Laptop");
    accounts.pop();
    let mut nodes = Vec::new();
    for (i, account) in accounts.into_iter().enumerate() {
        let (node, _events) = common::sealed_node(
            broker.url.parse().unwrap(),
            account,
            &names[i],
            DeviceClass::Tv,
        );
        plays_ten_minutes(&node, &format!("file:clip-{i}.ogg"), &format!("Clip {i}"));
        nodes.push(node);
    }
    for node in &nodes {
        assert!(node.flush(Duration::from_secs(10)).await);
    }
    let run = |command: &'static str| {
        let url = broker.url.clone();
        let dir = laptop.clone();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(BIN)
                .args(["--broker", &url, "--account", "home", "--config-dir"])
                .arg(&dir)
                .args([command, "--json"])
                .env_remove("CONTINUITY_BROKER")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{command}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        })
    };
    for (command, key) in [("sessions", "sessions"), ("devices", "devices")] {
        for _ in 0..3 {
            let doc = run(command).await.unwrap();
            let listed = doc[key].as_array().unwrap();
            let playing = listed
                .iter()
                .filter(|d| d["state"] == "playing" || d["status"] == "online")
                .count();
            assert_eq!(playing, DEVICES, "{command} lists every device: {doc}");
        }
    }
    for node in nodes {
        node.shutdown(Duration::from_secs(1)).await;
    }
}
