//! `continuity transfer --to <device> [--from <device>]`: ask a device to take over a session
//! and print how it went.

use std::time::Duration;

use serde_json::json;

use continuity::engine::{Directory, EngineConfig};
use continuity::model::{Device, DeviceClass, PlayState};
use continuity::net::link::BrokerUrl;
use continuity::node::{Node, NodeConfig, NodeEvent, SyncState, handoff_result};
use continuity::wire::{HandoffResult, Status};

use super::{Failure, parse_broker};

/// Why a transfer could not even be asked for.
pub enum TransferError {
    Unreachable(String),
    Usage(String),
}

/// How long retained messages may still come after the sync echo.
const LATE_RETAINED: Duration = Duration::from_secs(2);

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// The session to move when `--from` is not given: the one that plays (else the one
/// session of the account).
fn default_source(dir: &Directory, target: &str) -> Result<String, TransferError> {
    let active: Vec<_> = dir
        .sessions
        .values()
        .filter(|s| s.device != target && s.lease.device == s.device && s.media.is_some())
        .filter(|s| dir.availability.get(&s.device) == Some(&Status::Online))
        .collect();
    let playing: Vec<_> = active
        .iter()
        .filter(|s| s.anchor.is_some_and(|a| a.state == PlayState::Playing))
        .collect();
    if playing.len() == 1 {
        return Ok(playing[0].device.clone());
    }
    if playing.is_empty() && active.len() == 1 {
        return Ok(active[0].device.clone());
    }
    Err(if active.is_empty() {
        TransferError::Usage("no device of this account plays anything to transfer".into())
    } else {
        TransferError::Usage(format!(
            "several sessions could move: say which with --from ({})",
            active
                .iter()
                .map(|s| {
                    let name = dir
                        .devices
                        .get(&s.device)
                        .map_or(s.device.as_str(), |i| i.device.name.as_str());
                    let what = s.media.as_ref().map_or("-", |m| m.display_title());
                    format!("{name}: “{what}”")
                })
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// The target and the source of the transfer, by the engine's one rule for names; the
/// target must be online (else the handoff fails at once with `target-offline`).
fn pick(dir: &Directory, to: &str, from: Option<&str>) -> Result<(String, String), TransferError> {
    let usage = |e: continuity::engine::ResolveError| TransferError::Usage(e.to_string());
    let target = dir.resolve_device(to).map_err(usage)?;
    let source = match from {
        Some(f) => dir.resolve_device(f).map_err(usage)?,
        None => default_source(dir, &target)?,
    };
    Ok((target, source))
}

/// Why `source` has nothing to move, in words, when its media ended or it has none.
fn nothing_plays(dir: &Directory, source: &str) -> Option<String> {
    let s = dir.sessions.get(&source.to_owned())?;
    let name = dir
        .devices
        .get(&source.to_owned())
        .map_or(source, |i| i.device.name.as_str());
    let Some(media) = &s.media else {
        return Some(format!("nothing plays on {name}: it is idle"));
    };
    let a = s.anchor.filter(|a| a.state == PlayState::Ended)?;
    let title = media
        .title
        .clone()
        .unwrap_or_else(|| media.id.rsplit('/').next().unwrap_or(&media.id).to_owned());
    Some(format!(
        "nothing plays on {name}: “{title}” ended at {}",
        super::sessions::clock(a.position_ns)
    ))
}

/// Whether `pick` would do, with the target online.
fn ready(dir: &Directory, to: &str, from: Option<&str>) -> bool {
    pick(dir, to, from)
        .is_ok_and(|(target, _)| dir.availability.get(&target) == Some(&Status::Online))
}

/// Run a transfer; returns the result (success or failure with a reason).
pub async fn run(
    broker: &BrokerUrl,
    account: &str,
    keys: Option<continuity::security::account::Account>,
    to: &str,
    from: Option<&str>,
) -> Result<(HandoffResult, std::collections::BTreeMap<String, String>), TransferError> {
    let mut cfg = EngineConfig::new(
        account,
        Device {
            // A helper of this device (it signs with the device's key), with its own inbox.
            id: match &keys {
                Some(k) => continuity::wire::helper_id(
                    &k.device,
                    &format!("cli-{:08x}", fastrand::u32(..)),
                ),
                None => format!("cli-{:08x}", fastrand::u32(..)),
            },
            name: "continuity transfer".into(),
            class: DeviceClass::Other,
        },
    );
    cfg.announce = false;
    let (node, mut events) = Node::start(NodeConfig {
        engine: cfg,
        broker: Some(broker.clone()),
        store_dir: None,
        link: Some(|l| l.connect_timeout = Duration::from_secs(3)),
        account: keys,
    })
    .map_err(|e| TransferError::Unreachable(e.to_string()))?;
    // Wait for the broker's retained state (devices, sessions), or a refusal.
    match node.synced(Duration::from_secs(5)).await {
        SyncState::Synced => {}
        state => {
            let mut reason = match state {
                SyncState::Pending => "no answer within 5 s".to_owned(),
                _ => "unreachable".to_owned(),
            };
            while let Ok(ev) = events.try_recv() {
                if let NodeEvent::Down { reason: r } = ev {
                    reason = r;
                }
            }
            return Err(TransferError::Unreachable(format!(
                "cannot reach the broker at {broker}: {reason}"
            )));
        }
    }
    // The sync echo comes after the retained messages on mosquitto, but the embedded broker
    // (rumqttd) does not promise that order: what is not there yet may come in a moment.
    if !node.with_engine(|e| ready(e.directory(), to, from)) {
        node.wait_until(LATE_RETAINED, |e| ready(e.directory(), to, from))
            .await;
    }
    let (target, source) = node.with_engine(|e| pick(e.directory(), to, from))?;
    if let Some(why) = node.with_engine(|e| nothing_plays(e.directory(), &source)) {
        node.shutdown(Duration::from_millis(300)).await;
        return Err(TransferError::Usage(why));
    }
    let id = node.request_handoff(&target, &source);
    let result = handoff_result(&mut events, &id, Duration::from_secs(10)).await;
    let names = node.with_engine(|e| {
        e.directory()
            .devices
            .values()
            .map(|i| (i.device.id.clone(), i.device.name.clone()))
            .collect()
    });
    node.shutdown(Duration::from_millis(300)).await;
    result
        .map(|r| (r, names))
        .ok_or_else(|| TransferError::Unreachable("no answer from the target".into()))
}

/// Print a result for people or as JSON.
pub fn print(r: &HandoffResult, as_json: bool, names: impl Fn(&str) -> String) {
    if as_json {
        let doc = json!({
            "v": 1,
            "handoff": r.handoff,
            "ok": r.failure.is_none(),
            "source": r.source,
            "target": r.target,
            "failure": r.failure.map(|f| f.as_str()),
            "latency_ms": r.latency_ns.map(|n| ms(n as i64)),
            "position_error_ms": r.position_error_ns.map(ms),
            "clock_offset_ms": r.clock_offset_ns.map(ms),
            "rtt_ms": r.rtt_ns.map(|n| ms(n as i64)),
            // The offset is within this of the truth: half the best sample's round trip.
            "clock_error_ms": r.rtt_ns.map(|n| ms(n as i64) / 2.0),
            // Loads and seeks the target made: 1 when its plan of the media's load time held.
            "prerolls": r.prerolls,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
        return;
    }
    match r.failure {
        None => println!(
            "{} took over from {}: playing {:.1} ms after the request, position error {}, \
             clock offset {}",
            names(&r.target),
            names(&r.source),
            r.latency_ns.map(|n| ms(n as i64)).unwrap_or(f64::NAN),
            r.position_error_ns
                .map(|e| format!("{:+.1} ms", ms(e)))
                .unwrap_or_else(|| "unknown".into()),
            r.clock_offset_ns
                .map(|e| format!("{:+.1} ms", ms(e)))
                .unwrap_or_else(|| "unknown".into()),
        ),
        Some(f) => println!(
            "handoff from {} to {} failed: {f}",
            names(&r.source),
            names(&r.target)
        ),
    }
}

/// `continuity transfer --to WHO [--from WHO] [--json]`: the result printed, and a failed
/// handoff ends the command with exit code 1.
pub async fn command(
    broker: &str,
    account: &str,
    keys: Option<continuity::security::account::Account>,
    to: &str,
    from: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    if keys.as_ref().is_some_and(|k| k.alone()) {
        return Err(Failure::unreachable(super::not_paired(account)));
    }
    let broker = parse_broker(broker).await?;
    let (r, names) = run(&broker, account, keys, to, from).await?;
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
    print(&r, json, name);
    match r.failure {
        // The reason is printed (once, above); the exit code says it failed.
        Some(_) => Err(Failure::new("")),
        None => Ok(()),
    }
}
