//! `continuity loadtest` as an operator runs it: simulated sealed devices through a real
//! mosquitto on loopback, small enough for every `make test`.

mod common;

use std::process::{Command, Stdio};

use common::Mosquitto;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_continuity");

fn loadtest(mosq: &Mosquitto, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(["--broker", &mosq.url().to_string(), "loadtest", "--json"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "loadtest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

/// What went wrong in a run, apart from handoffs that met the burst (a target that had
/// just dropped off is offline: that handoff fails, as it should).
fn errors(doc: &Value) -> Vec<String> {
    doc["errors"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|e| !e.starts_with("handoff failed: target-offline"))
        .cloned()
        .collect()
}

#[test]
fn every_device_connects_its_messages_are_timed_and_a_reconnect_burst_converges() {
    // `$SYS` every second: the broker's traffic over the run.
    let mosq = Mosquitto::start_with("sys_interval 1");
    let doc = loadtest(
        &mosq,
        &[
            "--accounts",
            "3",
            "--devices",
            "4",
            "--duration",
            "8",
            "--settle",
            "3",
            "--handoffs-per-hour",
            "900",
            "--burst",
            "0.25",
        ],
    );
    assert_eq!(doc["devices"], 12, "{doc:#}");
    assert_eq!(doc["sealed"], true, "{doc:#}");
    assert_eq!(
        doc["connect"]["count"], 12,
        "every device connected: {doc:#}"
    );
    assert!(doc["delivery"]["count"].as_u64().unwrap() > 10, "{doc:#}");
    assert!(
        doc["traffic"]["messages_in_per_s"].as_f64().unwrap() > 0.0,
        "{doc:#}"
    );
    assert!(
        doc["broker_use"]["pid"].is_u64(),
        "the broker found by its port: {doc:#}"
    );
    assert!(
        doc["broker_use"]["rss_mib"].as_f64().unwrap() > 0.0,
        "{doc:#}"
    );
    assert!(doc["handoffs"].as_u64().unwrap() > 0, "{doc:#}");
    assert!(doc["handoffs_ok"].as_u64().unwrap() > 0, "{doc:#}");
    assert!(
        doc["handoff_latency"]["p50_ms"].as_f64().unwrap() > 0.0,
        "{doc:#}"
    );
    let burst = &doc["burst"];
    assert_eq!(burst["devices"], 3, "{doc:#}");
    assert!(burst["converged_s"].is_f64(), "all came back: {doc:#}");
    assert!(burst["messages_per_device"].is_f64(), "{doc:#}");
    assert!(
        burst["delivery"]["count"].as_u64().unwrap() > 0,
        "the burst's messages are timed apart: {doc:#}"
    );
    assert_eq!(errors(&doc), Vec::<String>::new(), "{doc:#}");
}

#[test]
fn sizes_out_of_bounds_are_refused_before_any_connection() {
    let mosq = Mosquitto::start();
    for (args, says) in [
        (&["--accounts", "0"][..], "--accounts × --devices"),
        (&["--devices", "1"][..], "at least 2 per account"),
        (&["--accounts", "20000", "--devices", "4"][..], "1 to 50000"),
        (&["--duration", "0"][..], "--duration"),
        (&["--settle", "100000"][..], "--settle"),
        (&["--burst", "2"][..], "--burst"),
    ] {
        let out = Command::new(BIN)
            .args(["--broker", &mosq.url().to_string(), "loadtest"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Issue 15, acceptance 3: when all the devices of an account restart at once, what they
/// publish grows with their number, not with its square. A device that comes back publishes
/// its own state and one ask; it measures the clocks of the players only, and is measured
/// by the others only if it plays. Per device, an account of 9 costs about what one of 3
/// does (an O(D²) restart made it three times as much).
#[test]
fn a_restart_of_an_accounts_devices_costs_messages_in_proportion_to_their_number() {
    let mosq = Mosquitto::start_with("sys_interval 1");
    let per_device = |devices: &str| {
        let doc = loadtest(
            &mosq,
            &[
                "--accounts",
                "2",
                "--devices",
                devices,
                "--duration",
                "6",
                "--settle",
                "3",
                "--handoffs-per-hour",
                "0",
                "--burst",
                "1",
            ],
        );
        assert_eq!(errors(&doc), Vec::<String>::new(), "{doc:#}");
        assert!(doc["burst"]["converged_s"].is_f64(), "{doc:#}");
        let kinds = &doc["burst"]["messages_per_device_by_kind"];
        // One ask each, whatever the account's size.
        assert_eq!(kinds["ask"].as_f64(), Some(1.0), "{doc:#}");
        // Clocks: each device that came back measures the account's player (3 probes, 3
        // replies), or none when it never saw the player go (its offset still holds): at
        // most 6 per device. Measuring every device would be 6 × (D - 1).
        let clock = ["command: clock probe", "command: clock reply"]
            .iter()
            .filter_map(|k| kinds[*k].as_f64())
            .sum::<f64>();
        assert!(clock <= 6.0, "{clock} clock messages per device: {doc:#}");
        doc["burst"]["messages_per_device"].as_f64().unwrap() - clock
    };
    let small = per_device("3");
    let large = per_device("9");
    assert!(
        large < small * 1.5,
        "messages published per restarting device, clocks apart: {small:.1} in accounts of \
         3, {large:.1} in accounts of 9"
    );
}
