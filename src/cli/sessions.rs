//! `continuity sessions`: what plays where, once or live.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::json;

use continuity::engine::Directory;
use continuity::hlc::now_unix_ns;
use continuity::model::PlayState;
use continuity::net::link::BrokerUrl;
use continuity::observe::Observer;
use continuity::security::account::Account;
use continuity::wire::{SessionState, Status};

use super::{Failure, parse_broker, snapshot, wait_for_stop};

/// How long the clocks of the playing devices may take to answer their probes.
const CLOCK_WAIT: Duration = Duration::from_millis(500);

/// Probes of each playing device's clock: one for a table read to the second (its error is
/// half a round trip, a millisecond or so), three for the live view, which keeps them.
const PROBES_ONCE: usize = 1;
const PROBES_LIVE: usize = 3;

/// A clock this far off (or more) from this computer's is said under the table.
const SAY_OFFSET_NS: u64 = 1_000_000_000;

/// `continuity sessions [--json] [--watch]` for account `name` through `broker`.
pub async fn run(
    broker: &str,
    name: &str,
    account: Option<Account>,
    json: bool,
    watch: bool,
) -> Result<(), Failure> {
    let broker = parse_broker(broker).await?;
    let alone = account.as_ref().is_some_and(|a| a.alone());
    let mut obs = snapshot(&broker, name, account).await?;
    obs.measure_clocks(if watch { PROBES_LIVE } else { PROBES_ONCE }, CLOCK_WAIT)
        .await;
    if watch && json {
        watch_json(&mut obs, name, &broker).await;
    } else if watch {
        watch_sessions(&mut obs, name).await;
    } else {
        print_sessions(obs.directory(), name, &broker, json);
    }
    obs.close().await;
    if alone {
        eprintln!("{}", super::not_paired(name));
    }
    Ok(())
}

/// What a session is doing; `stopped`: its device went offline while it played.
fn state_name(s: &SessionState, stopped: bool) -> &'static str {
    match (&s.media, &s.anchor) {
        (Some(_), Some(_)) if stopped => "stopped",
        (Some(_), Some(a)) => a.state.as_str(),
        _ => "idle",
    }
}

fn session_json(dir: &Directory, s: &SessionState, now: u64) -> serde_json::Value {
    let info = dir.devices.get(&s.device);
    let (position, stopped) = dir.position_of(s, now);
    json!({
        "device": s.device,
        "device_name": info.map(|i| i.device.name.clone()),
        "device_class": info.map(|i| i.device.class),
        "online": dir.availability.get(&s.device) == Some(&Status::Online),
        "session": s.session,
        "state": state_name(s, stopped),
        "title": s.media.as_ref().map(|m| m.display_title().to_owned()),
        "media": s.media,
        "position_ns": position,
        "position_s": position.map(|p| p as f64 / 1e9),
        "duration_ns": s.media.as_ref().and_then(|m| m.duration_ns),
        "rate": s.anchor.map(|a| a.rate),
        "audio": s.audio,
        "subtitle": s.subtitle,
        "lease": s.lease,
        "updated_unix_ns": s.stamp.wall_ns,
        "clock_offset_ms": dir.clocks.sample(&s.device).map(|c| c.offset_ns as f64 / 1e6),
        "clock_error_ms": dir.clocks.sample(&s.device).map(|c| c.rtt_ns as f64 / 2e6),
    })
}

fn print_sessions(dir: &Directory, account: &str, broker: &BrokerUrl, as_json: bool) {
    let now = now_unix_ns();
    if as_json {
        let doc = sessions_document(dir, account, broker, now);
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
        return;
    }
    print!("{}", sessions_table(dir, account, now, false));
}

/// The `--json` document: every session, positions extrapolated to `now`.
fn sessions_document(
    dir: &Directory,
    account: &str,
    broker: &BrokerUrl,
    now: u64,
) -> serde_json::Value {
    let sessions: Vec<_> = dir
        .sessions
        .values()
        .map(|s| session_json(dir, s, now))
        .collect();
    json!({
        "v": 1,
        "account": account,
        "broker": broker.to_string(),
        "at_unix_ns": now,
        "sessions": sessions,
    })
}

pub(super) fn clock(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn sessions_table(dir: &Directory, account: &str, now: u64, bars: bool) -> String {
    let mut out = String::new();
    if dir.sessions.is_empty() {
        out.push_str(&format!("Nothing plays in account '{account}'.\n"));
        return out;
    }
    out.push_str(&format!(
        "{:<22} {:<32} {:<19} STATE\n",
        "DEVICE", "TITLE", "POSITION"
    ));
    for s in dir.sessions.values() {
        let info = dir.devices.get(&s.device);
        let name = match info {
            Some(i) => format!("{} ({})", i.device.name, i.device.class),
            None => s.device.clone(),
        };
        let title = s
            .media
            .as_ref()
            .map(|m| m.display_title().to_owned())
            .unwrap_or_else(|| "-".into());
        let duration = s.media.as_ref().and_then(|m| m.duration_ns);
        let (position, stopped) = dir.position_of(s, now);
        let pos = match (position, duration) {
            (Some(p), Some(d)) => format!("{} / {}", clock(p), clock(d)),
            (Some(p), None) => clock(p),
            _ => "-".into(),
        };
        let mut state = state_name(s, stopped).to_owned();
        if let Some(a) = s.anchor
            && a.state == PlayState::Playing
            && !stopped
            && a.rate != 1.0
        {
            state.push_str(&format!(" x{}", a.rate));
        }
        if dir.availability.get(&s.device) == Some(&Status::Offline) {
            state.push_str(" (offline)");
        }
        out.push_str(&format!(
            "{:<22} {:<32} {:<19} {}\n",
            truncate(&name, 22),
            truncate(&title, 32),
            pos,
            state
        ));
        if bars && let (Some(p), Some(d)) = (position, duration.filter(|d| *d > 0)) {
            let width = 40;
            let filled = ((p as f64 / d as f64) * width as f64).round() as usize;
            let filled = filled.min(width);
            out.push_str(&format!(
                "{:<22} [{}{}] {:>3}%\n",
                "",
                "#".repeat(filled),
                ".".repeat(width - filled),
                p * 100 / d
            ));
        }
    }
    for s in dir.sessions.values() {
        if let Some(c) = dir.clocks.sample(&s.device)
            && c.offset_ns.unsigned_abs() >= SAY_OFFSET_NS
        {
            let name = dir
                .devices
                .get(&s.device)
                .map_or(s.device.as_str(), |i| i.device.name.as_str());
            out.push_str(&format!(
                "{name}'s clock is {:.1} s {} this computer's: its position is read with its \
                 clock (measured to ±{:.1} ms).\n",
                c.offset_ns.unsigned_abs() as f64 / 1e9,
                if c.offset_ns > 0 {
                    "ahead of"
                } else {
                    "behind"
                },
                c.rtt_ns as f64 / 2e6,
            ));
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// `--watch --json`: JSON Lines, one document (as `--json` prints) per line, the first once
/// synced and another each time a session, a device or a clock changes, until Ctrl-C or a
/// closed output. Positions move between lines without a line: each is read from its anchor.
async fn watch_json(obs: &mut Observer, account: &str, broker: &BrokerUrl) {
    let stop = wait_for_stop();
    tokio::pin!(stop);
    loop {
        let doc = sessions_document(obs.directory(), account, broker, now_unix_ns());
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{doc}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
        drop(stdout);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                changed = obs.changed(Duration::from_secs(60)) => {
                    if changed {
                        break;
                    }
                    if obs.link_closed() {
                        return;
                    }
                }
            }
        }
        obs.measure_clocks(PROBES_LIVE, CLOCK_WAIT).await;
    }
}

async fn watch_sessions(obs: &mut Observer, account: &str) {
    let tty = std::io::stdout().is_terminal();
    let stop = wait_for_stop();
    tokio::pin!(stop);
    loop {
        let table = sessions_table(obs.directory(), account, now_unix_ns(), true);
        let mut stdout = std::io::stdout().lock();
        if tty {
            // Home the cursor and clear the screen, then draw.
            let _ = write!(stdout, "\x1b[H\x1b[2J");
        }
        let _ = write!(stdout, "{table}");
        if tty {
            let _ = write!(stdout, "\n(live; Ctrl-C to stop)\n");
        } else {
            let _ = writeln!(stdout);
        }
        let _ = stdout.flush();
        drop(stdout);
        tokio::select! {
            _ = &mut stop => return,
            changed = obs.changed(Duration::from_millis(500)) => {
                if !changed && obs.link_closed() {
                    return;
                }
            }
        }
        // A device that started playing since: its clock, once.
        obs.measure_clocks(PROBES_LIVE, CLOCK_WAIT).await;
    }
}
