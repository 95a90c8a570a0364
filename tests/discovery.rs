//! LAN discovery in a network namespace made by the test (only its own loopback, with
//! multicast on): the broker advertised and found with `--broker auto`, players advertised
//! and merged into `continuity devices`, and a clear diagnostic when nothing answers.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_continuity");

/// A network namespace with loopback up and multicast routed to it; deleted on drop.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cty-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ip = |args: &[&str]| {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .expect("iproute2 is installed (make test installs it)")
                .success();
            assert!(ok, "ip {args:?} (network namespaces need root)");
        };
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&["-n", &name, "link", "set", "lo", "multicast", "on"]);
        ip(&["-n", &name, "route", "add", "224.0.0.0/4", "dev", "lo"]);
        Netns {
            name,
            children: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, BIN])
            .args(args)
            .env_remove("CONTINUITY_MDNS_INTERFACE")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Start a long-running command; returns its first line of output.
    fn spawn(&mut self, args: &[&str]) -> String {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.children.push(child);
        line
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

#[test]
fn broker_auto_finds_the_advertised_broker() {
    let mut ns = Netns::new();
    let line = ns.spawn(&["broker", "--listen", "127.0.0.1:0"]);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("mqtt://"))
        .expect("the broker says where it listens")
        .to_owned();
    let out = ns.run(&["--broker", "auto", "sessions", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("using {url}")), "{err}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["broker"], url);
}

#[test]
fn broker_auto_with_nothing_advertised_explains_and_falls_back() {
    let ns = Netns::new();
    let out = ns.run(&["--broker", "auto", "devices"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("_mqtt._tcp.local.")
            && err.contains("lo (127.0.0.1)")
            && err.contains("1.5 s")
            && err.contains("falling back to mqtt://127.0.0.1:1883"),
        "{err}"
    );
    // Nothing listens on the fallback in the namespace either: a clear error, exit 2.
    assert_eq!(out.status.code(), Some(2), "{err}");
}

#[test]
fn devices_merges_players_seen_on_the_lan() {
    let mut ns = Netns::new();
    let line = ns.spawn(&["broker", "--no-advertise", "--listen", "127.0.0.1:0"]);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("mqtt://"))
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().to_str().unwrap().to_owned();
    ns.spawn(&[
        "--broker",
        &url,
        "--config-dir",
        &cfg,
        "play",
        "--device-name",
        "TV",
        "--device-class",
        "tv",
    ]);
    let out = ns.run(&["--broker", &url, "devices", "--json", "--lan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tv = doc["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "TV")
        .cloned()
        .unwrap_or_else(|| panic!("no TV in {doc}"));
    assert_eq!(tv["lan"], true, "{doc}");
    assert_eq!(tv["class"], "tv");
    // Not paired with this computer: seen on the LAN, and nothing of it is read from the
    // broker (a device hears only the ids its roster names).
    assert_eq!(tv["paired"], false, "{doc}");
    assert_eq!(tv["status"], "unknown", "{doc}");

    // On the TV's own config dir (the command line run on the TV), the same device is on
    // the LAN and online on the broker, one row.
    let out = ns.run(&[
        "--broker",
        &url,
        "--config-dir",
        &cfg,
        "devices",
        "--json",
        "--lan",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let devices = doc["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{doc}");
    assert_eq!(devices[0]["name"], "TV", "{doc}");
    assert_eq!(devices[0]["lan"], true, "{doc}");
    assert_eq!(devices[0]["status"], "online", "{doc}");
}
