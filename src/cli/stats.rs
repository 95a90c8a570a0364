//! `continuity stats`: handoff analytics from this device's store (the events it recorded
//! and those it received from the account's other devices while it ran).

use std::path::Path;

use continuity::hlc::now_unix_ns;
use continuity::stats::{self, Spread, Stats};
use continuity::store::Store;
use serde_json::json;

use super::Failure;

/// `7d`, `24h`, `30m`, `90s` (or a bare number of seconds) as ns.
pub fn parse_since(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 7d, 24h, 30m)"))?;
    let unit_s = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("'{text}': the unit is one of s, m, h, d, w")),
    };
    n.checked_mul(unit_s * 1_000_000_000)
        .ok_or_else(|| format!("'{text}' is too long ago"))
}

fn spread_text(s: &Spread, unit: &str) -> String {
    match (s.p50, s.p95) {
        (Some(p50), Some(p95)) => format!(
            "p50 {p50:.1} {unit}, p95 {p95:.1} {unit} ({} measured)",
            s.count
        ),
        _ => "none measured".into(),
    }
}

fn percent(r: Option<f64>) -> String {
    r.map(|r| format!("{:.0} %", r * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// Print `stats` for people.
fn print_text(s: &Stats, since: &str) {
    println!(
        "Handoffs in the last {since}: {} ({} succeeded, {} failed: {} success), from {} events of {} devices",
        s.handoffs,
        s.succeeded,
        s.failed,
        percent(s.success_rate),
        s.events,
        s.devices
    );
    println!(
        "  latency (request to playing): {}",
        spread_text(&s.latency_ms, "ms")
    );
    println!(
        "  position error: {}",
        spread_text(&s.position_error_ms, "ms")
    );
    for (reason, n) in &s.failures {
        println!("  failed, {reason}: {n}");
    }
    println!(
        "  stopped within 60 s after a handoff: {} ({}); resume offers declined: {} of {}",
        s.drop_off.stopped_soon_after_handoff,
        percent(s.drop_off.stopped_soon_rate),
        s.drop_off.resume_declined,
        s.drop_off.resume_offers
    );
    println!(
        "  time to continue on another device: {}",
        spread_text(&s.time_to_continue_s, "s")
    );
    if !s.transitions_by_class.is_empty() {
        println!("  from → to (device class):");
        for (from, tos) in &s.transitions_by_class {
            for (to, n) in tos {
                println!("    {from} → {to}: {n}");
            }
        }
    }
}

/// The JSON document (docs/CLI.md).
pub fn document(s: &Stats) -> serde_json::Value {
    json!({ "v": 1, "stats": s })
}

/// `continuity stats [--since D] [--json]`.
pub fn run(config_dir: &Path, since: &str, as_json: bool) -> Result<(), Failure> {
    let back = parse_since(since).map_err(Failure::unreachable)?;
    if !config_dir.join("state.sqlite3").exists() {
        return Err(Failure::new(format!(
            "no events here: {} has no store (a device keeps its events there once it has \
             played; use --config-dir of a player)",
            config_dir.display()
        )));
    }
    let store = Store::open_in(config_dir).map_err(Failure::new)?;
    let now = now_unix_ns();
    let from = now.saturating_sub(back);
    let events = store.events_since(from).map_err(Failure::new)?;
    let s = stats::compute(&events, from, now);
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&document(&s)).expect("JSON")
        );
    } else {
        print_text(&s, since);
    }
    Ok(())
}
