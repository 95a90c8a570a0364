//! Soak: a phone and a TV (`continuity play` processes) hand one film back and forth, a
//! handoff every 1.5 s, for half an hour, through the embedded broker (`SOAK_BROKER=mosquitto`
//! for mosquitto); every 50 handoffs it prints the failures, the latency percentiles of those
//! 50 and both processes' resident memory, and at the end whether memory stayed within 1 MB
//! after the first 50 handoffs.
//!
//! ```text
//! make soak                       # SOAK_MINUTES=30 by default
//! SOAK_MINUTES=5 make soak
//! ```
//!
//! The film is long enough never to end in the soak (a 35-minute Ogg Theora clip at 5 frames
//! a second, made at the start), so that every handoff moves a playing session.

use std::path::Path;
use std::time::{Duration, Instant};

use continuity::node::handoff_result;
use gst::prelude::*;

mod common;
use common::*;

const EVERY: Duration = Duration::from_millis(1500);
const REPORT_EVERY: usize = 50;
/// Memory may grow this much after the first report (a cache that fills up, once).
const MEMORY_SLACK_KB: u64 = 1024;

/// Resident memory of a process, in kB (`VmRSS`).
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn make_film(path: &Path, minutes: u64) {
    let frames = minutes * 60 * 5;
    let make = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} ! video/x-raw,width=160,height=120,framerate=5/1 \
         ! timeoverlay ! theoraenc ! oggmux ! filesink location={}",
        path.display()
    ))
    .expect("film pipeline");
    make.set_state(gst::State::Playing).expect("encode");
    make.bus()
        .expect("bus")
        .timed_pop_filtered(gst::ClockTime::NONE, &[gst::MessageType::Eos]);
    make.set_state(gst::State::Null).expect("stop");
}

fn main() {
    gst::init().expect("GStreamer");
    let bin = continuity_bin();
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    let broker = std::env::var("SOAK_BROKER").unwrap_or_else(|_| "embedded".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let film = dir.path().join("film.ogg");
    eprintln!("making a {}-minute film…", minutes + 5);
    make_film(&film, minutes + 5);
    let (_broker, url) = start_broker(&broker, &bin, dir.path());
    let mut accounts = pair(dir.path(), &["Phone", "TV", "Controller"]);
    let controller_account = accounts.pop().expect("three");
    let phone = play(
        &bin,
        &url,
        &dir.path().join("Phone"),
        "Phone",
        "phone",
        Some(&film),
    );
    phone
        .expect("] playing", Duration::from_secs(30))
        .expect("the phone plays");
    let tv = play(&bin, &url, &dir.path().join("TV"), "TV", "tv", None);
    tv.expect("connected", Duration::from_secs(30))
        .expect("the TV is online");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "soak: `continuity play` phone and TV through {broker}, a handoff every {:.1} s for {minutes} min",
        EVERY.as_secs_f64()
    );
    println!(
        "{:>9} {:>6} {:>7} {:>8} {:>8} {:>8} {:>12} {:>12}",
        "handoffs", "ok", "failed", "p50 ms", "p95 ms", "p99 ms", "phone RSS MB", "TV RSS MB"
    );
    let (failed_total, memory) = rt.block_on(async {
        let (controller, mut events) = controller(&url, controller_account);
        controller.synced(Duration::from_secs(5)).await;
        // The phone's playing state, not only its first one, before the first handoff.
        let plays = controller
            .wait_until(Duration::from_secs(10), |e| {
                e.directory()
                    .sessions
                    .get(&"phone".to_owned())
                    .and_then(|s| s.anchor)
                    .is_some_and(|a| a.state == continuity::model::PlayState::Playing)
            })
            .await;
        assert!(plays, "the controller sees the phone play");
        let end = Instant::now() + Duration::from_secs(minutes * 60);
        let (mut source, mut target) = (&phone, &tv);
        let (mut done, mut ok, mut failed_total) = (0usize, 0usize, Vec::new());
        let mut latencies = Vec::new();
        let mut memory: Vec<(u64, u64)> = Vec::new();
        let mut next = Instant::now();
        while Instant::now() < end {
            tokio::time::sleep_until(next.into()).await;
            next += EVERY;
            let id = controller
                .request_handoff(&target.name.to_lowercase(), &source.name.to_lowercase());
            done += 1;
            match handoff_result(&mut events, &id, Duration::from_secs(10)).await {
                Some(r) if r.failure.is_none() => {
                    ok += 1;
                    latencies.push(r.latency_ns.unwrap_or(0) as f64 / 1e6);
                    std::mem::swap(&mut source, &mut target);
                }
                Some(r) => failed_total.push(format!("#{done}: {:?}", r.failure)),
                None => failed_total.push(format!("#{done}: no answer")),
            }
            if failed_total
                .last()
                .is_some_and(|f| f.starts_with(&format!("#{done}:")))
            {
                eprintln!(
                    "handoff {}: failed ({} to {})",
                    failed_total.last().expect("one"),
                    source.name,
                    target.name
                );
            }
            if done % REPORT_EVERY == 0 {
                latencies.sort_by(f64::total_cmp);
                let p = |q| {
                    if latencies.is_empty() {
                        f64::NAN
                    } else {
                        percentile(&latencies, q)
                    }
                };
                let (pm, tm) = (
                    rss_kb(phone.child.id()).unwrap_or(0),
                    rss_kb(tv.child.id()).unwrap_or(0),
                );
                memory.push((pm, tm));
                println!(
                    "{done:>9} {ok:>6} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>12.1} {:>12.1}",
                    failed_total.len(),
                    p(0.5),
                    p(0.95),
                    p(0.99),
                    pm as f64 / 1024.0,
                    tm as f64 / 1024.0
                );
                latencies.clear();
            }
        }
        controller.shutdown(Duration::from_millis(500)).await;
        (failed_total, memory)
    });
    let growth = |pick: fn(&(u64, u64)) -> u64| {
        let after: Vec<u64> = memory.iter().map(pick).collect();
        match (after.first(), after.iter().max()) {
            (Some(first), Some(max)) => max.saturating_sub(*first),
            _ => 0,
        }
    };
    let (phone_growth, tv_growth) = (growth(|m| m.0), growth(|m| m.1));
    println!(
        "failures: {}{}",
        failed_total.len(),
        if failed_total.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed_total.join(", "))
        }
    );
    let held = phone_growth <= MEMORY_SLACK_KB && tv_growth <= MEMORY_SLACK_KB;
    println!(
        "memory after the first {REPORT_EVERY} handoffs grew by at most: phone {:.2} MB, TV {:.2} MB \
         (target: within 1 MB) {}",
        phone_growth as f64 / 1024.0,
        tv_growth as f64 / 1024.0,
        if held { "met" } else { "NOT MET" }
    );
    if !failed_total.is_empty() || !held {
        std::process::exit(1);
    }
}
