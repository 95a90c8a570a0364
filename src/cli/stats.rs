//! `continuity stats`: handoff analytics from this device's store (the events it recorded
//! and those it received from the account's other devices while it ran).

use std::path::Path;

use continuity::hlc::now_unix_ns;
use continuity::observe::Observer;
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

/// Where `stats` learns the account's events beyond its own store.
pub struct Account<'a> {
    /// The broker as given (`auto` finds one on the LAN).
    pub broker: &'a str,
    pub name: &'a str,
    /// The device's keys (sealed accounts); `None` in plain JSON.
    pub keys: Option<continuity::security::account::Account>,
}

/// How long `stats` waits for the devices' answers.
const GATHER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Ask the account's online devices for the events this store lacks from `from` on, and
/// keep them: every device then counts the same account-wide totals, whether it plays or
/// only runs the command line. What cannot be asked (no broker, not paired) is said on
/// stderr once, and the store's own events are counted.
async fn gather(store: &Store, account: Account<'_>, from: u64) {
    if account.keys.as_ref().is_some_and(|k| k.alone()) {
        eprintln!("{}", super::not_paired(account.name));
        eprintln!("note: counting only the events kept here");
        return;
    }
    let url = match super::parse_broker(account.broker).await {
        Ok(url) => url,
        Err(f) => {
            eprintln!("note: {}: counting only the events kept here", f.message);
            return;
        }
    };
    let observer = Observer::connect_with(
        &url,
        account.name,
        super::CONNECT_TIMEOUT,
        account.keys,
        true,
    )
    .await;
    let mut obs = match observer {
        Ok(obs) => obs,
        Err(e) => {
            eprintln!("note: {e}: counting only the events kept here");
            return;
        }
    };
    obs.sync(super::SYNC_TIMEOUT).await;
    obs.ask(super::SYNC_TIMEOUT).await;
    match obs.gather_history(store, from, GATHER_TIMEOUT).await {
        Ok(g) => {
            tracing::info!(
                "asked {} devices for the events kept here lacks: {} answered, {} events \
                 added, {} refused",
                g.asked,
                g.answered,
                g.added,
                g.refused
            );
            if g.answered < g.asked {
                eprintln!(
                    "note: {} of {} devices did not answer within {} s: events only they \
                     hold are not counted",
                    g.asked - g.answered,
                    g.asked,
                    GATHER_TIMEOUT.as_secs()
                );
            }
            if g.refused > 0 {
                eprintln!(
                    "warning: refused {} events that were not signed by the device that \
                     recorded them",
                    g.refused
                );
            }
        }
        Err(e) => eprintln!("warning: {e}: counting the events kept so far"),
    }
    obs.close().await;
}

/// `continuity stats [--since D] [--json] [--png DIR]`: the account's analytics, from the
/// events of this device's store and those the account's online devices add to it.
pub async fn run(
    config_dir: &Path,
    since: &str,
    as_json: bool,
    png: Option<&Path>,
    account: Account<'_>,
) -> Result<(), Failure> {
    let back = parse_since(since).map_err(Failure::unreachable)?;
    let store = Store::open_in(config_dir).map_err(Failure::new)?;
    let from = now_unix_ns().saturating_sub(back);
    gather(&store, account, from).await;
    let now = now_unix_ns();
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
    if let Some(dir) = png {
        for file in super::charts::write(&s, dir).map_err(Failure::new)? {
            // On stderr with --json, so that stdout stays one document.
            if as_json {
                eprintln!("wrote {}", file.display());
            } else {
                println!("wrote {}", file.display());
            }
        }
    }
    Ok(())
}

/// One gauge family of the OpenMetrics text.
fn family(out: &mut String, name: &str, help: &str, unit: Option<&str>) {
    out.push_str(&format!("# TYPE {name} gauge\n"));
    if let Some(u) = unit {
        out.push_str(&format!("# UNIT {name} {u}\n"));
    }
    out.push_str(&format!("# HELP {name} {help}\n"));
}

/// A label value, escaped as OpenMetrics wants (`\\`, `\"`, `\n`).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
        .collect();
    if labels.is_empty() {
        out.push_str(&format!("{name} {value}\n"));
    } else {
        out.push_str(&format!("{name}{{{}}} {value}\n", labels.join(",")));
    }
}

/// The analytics as OpenMetrics text (gauges over the `--since` window), ending in `# EOF`.
pub fn openmetrics(s: &Stats) -> String {
    let mut out = String::new();
    let n = |v: usize| v as f64;
    family(
        &mut out,
        "continuity_handoffs",
        "Handoffs in the window, by result.",
        None,
    );
    sample(
        &mut out,
        "continuity_handoffs",
        &[("result", "succeeded")],
        n(s.succeeded),
    );
    sample(
        &mut out,
        "continuity_handoffs",
        &[("result", "failed")],
        n(s.failed),
    );
    family(
        &mut out,
        "continuity_handoff_success_ratio",
        "Succeeded handoffs of all (absent without handoffs).",
        Some("ratio"),
    );
    if let Some(r) = s.success_rate {
        sample(&mut out, "continuity_handoff_success_ratio", &[], r);
    }
    family(
        &mut out,
        "continuity_handoff_failures",
        "Failed handoffs by reason.",
        None,
    );
    for (reason, count) in &s.failures {
        sample(
            &mut out,
            "continuity_handoff_failures",
            &[("reason", reason)],
            n(*count),
        );
    }
    for (name, help, spread) in [
        (
            "continuity_handoff_latency_seconds",
            "Request to the target playing, by percentile.",
            &s.latency_ms,
        ),
        (
            "continuity_handoff_position_error_seconds",
            "The target's first position against the source's, absolute, by percentile.",
            &s.position_error_ms,
        ),
    ] {
        family(&mut out, name, help, Some("seconds"));
        for (p, v) in [("50", spread.p50), ("95", spread.p95), ("100", spread.max)] {
            if let Some(v) = v {
                sample(&mut out, name, &[("percentile", p)], v / 1000.0);
            }
        }
    }
    family(
        &mut out,
        "continuity_handoff_transitions",
        "Successful handoffs from one device class to another.",
        None,
    );
    for (from, tos) in &s.transitions_by_class {
        for (to, count) in tos {
            sample(
                &mut out,
                "continuity_handoff_transitions",
                &[("from_class", from), ("to_class", to)],
                n(*count),
            );
        }
    }
    family(
        &mut out,
        "continuity_handoffs_stopped_soon",
        "Successful handoffs whose target stopped within 60 s.",
        None,
    );
    sample(
        &mut out,
        "continuity_handoffs_stopped_soon",
        &[],
        n(s.drop_off.stopped_soon_after_handoff),
    );
    family(
        &mut out,
        "continuity_resume_offers",
        "Resume offers, by outcome.",
        None,
    );
    sample(
        &mut out,
        "continuity_resume_offers",
        &[("outcome", "offered")],
        n(s.drop_off.resume_offers),
    );
    sample(
        &mut out,
        "continuity_resume_offers",
        &[("outcome", "declined")],
        n(s.drop_off.resume_declined),
    );
    sample(
        &mut out,
        "continuity_resume_offers",
        &[("outcome", "taken")],
        n(s.drop_off.resume_taken),
    );
    family(
        &mut out,
        "continuity_handoffs_by_hour",
        "Handoffs by the hour of the day (UTC) they happened.",
        None,
    );
    for (hour, count) in s.by_hour_utc.iter().enumerate() {
        sample(
            &mut out,
            "continuity_handoffs_by_hour",
            &[("hour", &format!("{hour:02}"))],
            n(*count),
        );
    }
    family(&mut out, "continuity_events", "Events in the window.", None);
    sample(&mut out, "continuity_events", &[], n(s.events));
    out.push_str("# EOF\n");
    out
}

/// The longest request head taken.
const MAX_REQUEST: usize = 8192;

/// `continuity stats --serve ADDR`: `GET /metrics` answers the analytics of the last
/// `since` as OpenMetrics text, computed from the store at each scrape. Until Ctrl-C.
pub async fn serve(
    config_dir: &Path,
    since: &str,
    addr: std::net::SocketAddr,
    account: Account<'_>,
) -> Result<(), Failure> {
    let back = parse_since(since).map_err(Failure::unreachable)?;
    let dir = config_dir.to_owned();
    let store = Store::open_in(config_dir).map_err(Failure::new)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::unreachable(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().map_err(Failure::new)?;
    gather(&store, account.again(), now_unix_ns().saturating_sub(back)).await;
    let mut gathered = std::time::Instant::now();
    println!("serving OpenMetrics on http://{local}/metrics (the last {since})");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                // What the account's devices recorded since, at most once a minute (a
                // scrape every few seconds must not ask every device each time).
                if gathered.elapsed() >= REGATHER {
                    gather(&store, account.again(), now_unix_ns().saturating_sub(back)).await;
                    gathered = std::time::Instant::now();
                }
                let dir = dir.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &dir, back).await {
                        tracing::info!("metrics request from {peer}: {e}");
                    }
                });
            }
        }
    }
}

/// How often `stats --serve` asks the account for the events its store lacks, at most.
const REGATHER: std::time::Duration = std::time::Duration::from_secs(60);

impl Account<'_> {
    fn again(&self) -> Account<'_> {
        Account {
            broker: self.broker,
            name: self.name,
            keys: self.keys.clone(),
        }
    }
}

async fn answer(mut stream: tokio::net::TcpStream, dir: &Path, back: u64) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 || head.len() + n > MAX_REQUEST {
                return Err(std::io::Error::other("no complete request head"));
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::other("no request within 5 s"))??;
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, kind, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        )
    } else if path != "/metrics" && !path.starts_with("/metrics?") {
        (
            "404 Not Found",
            "text/plain",
            "the metrics are at /metrics\n".to_owned(),
        )
    } else {
        let dir = dir.to_owned();
        let computed = tokio::task::spawn_blocking(move || -> Result<String, String> {
            let store = Store::open_in(&dir).map_err(|e| e.to_string())?;
            let now = now_unix_ns();
            let from = now.saturating_sub(back);
            let events = store.events_since(from).map_err(|e| e.to_string())?;
            Ok(openmetrics(&stats::compute(&events, from, now)))
        })
        .await
        .map_err(std::io::Error::other)?;
        match computed {
            Ok(text) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
