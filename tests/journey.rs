//! Journeys: the evenings of issue 25 with real processes, through mosquitto and through the
//! embedded broker: `continuity play` players (a phone, a TV, a speaker), the command line
//! as a paired remote (`transfer`, `sessions --json`), killed and restarted as people and
//! the world do. Each step waits for what the players print or what `sessions --json`
//! says, with a deadline that only bounds a failure.

mod common;
mod procs;

use std::path::PathBuf;
use std::time::Duration;

use common::AnyBroker;
use procs::*;
use serde_json::Value;

/// A 6 s clip, short enough to play to its end in a test.
fn short_clip(setup: &Setup) -> PathBuf {
    make_clip_of(setup.dir.path(), "short.ogg", 150)
}

/// Wait until the sessions satisfy `what`, on the lines of `sessions --watch --json` (a
/// deadline bounds a failure).
fn wait_sessions(setup: &Setup, what: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let list = |doc: &Value| doc["sessions"].as_array().cloned().unwrap_or_default();
    let mut last = Vec::new();
    procs::watch_sessions(setup, Duration::from_secs(15), |doc| {
        last = list(doc);
        what(&last)
    })
    .map(|doc| list(&doc))
    .unwrap_or_else(|| panic!("the sessions never got there: {last:#?}"))
}

fn named<'a>(sessions: &'a [Value], name: &str) -> Option<&'a Value> {
    sessions.iter().find(|s| s["device_name"] == name)
}

fn playing(sessions: &[Value]) -> Vec<String> {
    sessions
        .iter()
        .filter(|s| s["state"] == "playing")
        .map(|s| s["device_name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Exactly `name` plays, and holds its session.
fn only_plays(sessions: &[Value], name: &str) -> bool {
    playing(sessions) == [name]
        && named(sessions, name).is_some_and(|s| s["lease"]["device"] == s["device"])
}

fn position_s(sessions: &[Value], name: &str) -> f64 {
    named(sessions, name)
        .and_then(|s| s["position_s"].as_f64())
        .unwrap_or(-1.0)
}

/// Wait until `name` plays alone, then until its position is past `secs`.
fn plays_past(setup: &Setup, name: &str, secs: f64) -> Vec<Value> {
    let s = wait_sessions(setup, |s| only_plays(s, name));
    let left = secs - position_s(&s, name);
    if left > 0.0 {
        // Elapsed time is the point: the player's position moves on with real time.
        std::thread::sleep(Duration::from_secs_f64(left + 0.1));
    }
    s
}

fn on_both_brokers(journey: fn(Setup)) {
    for (name, broker) in AnyBroker::all() {
        eprintln!("--- through {name}");
        journey(Setup::on(broker));
    }
}

/// Row 1: the TV plays a film to its end, then the phone's session is transferred to it:
/// the TV takes it like a fresh one.
#[test]
fn a_tv_whose_film_ended_takes_the_next_transfer() {
    on_both_brokers(|setup| {
        let clip = short_clip(&setup);
        let tv = PlayProcess::start(&setup.url, setup.dir.path(), "TV", "tv", Some(&clip));
        tv.wait_line("end of the media");
        let phone = PlayProcess::start(&setup.url, setup.dir.path(), "Phone", "phone", Some(&clip));
        phone.wait_playing();
        let (code, doc) = transfer(&setup, "TV");
        assert_eq!(code, Some(0), "{doc}");
        assert_eq!(doc["ok"], true, "{doc}");
        tv.wait_line("handoff complete");
        phone.wait_line("paused");
        wait_sessions(&setup, |s| only_plays(s, "TV"));
    });
}

/// Row 2: the phone hands off, the TV plays to the end, the phone is stopped and started
/// again: the film ended, so the phone starts it from the beginning, and the account's
/// resume point says finished.
#[test]
fn a_film_that_ended_on_the_tv_starts_over_on_the_phone() {
    on_both_brokers(|setup| {
        let clip = short_clip(&setup);
        let tv = setup.idle("TV", "tv");
        let mut phone =
            PlayProcess::start(&setup.url, setup.dir.path(), "Phone", "phone", Some(&clip));
        phone.wait_playing();
        let (code, doc) = transfer(&setup, "TV");
        assert_eq!(code, Some(0), "{doc}");
        tv.wait_line("end of the media");
        phone.interrupt();
        drop(phone);
        let phone = PlayProcess::start(&setup.url, setup.dir.path(), "Phone", "phone", Some(&clip));
        let first = phone.wait_playing();
        let s = wait_sessions(&setup, |s| only_plays(s, "Phone"));
        assert!(
            position_s(&s, "Phone") < 4.0,
            "the phone starts over ({first}): {s:#?}"
        );
    });
}

/// Row 3: the TV plays; the phone starts the same film: it continues from the TV's live
/// position, and the TV pauses (never two devices playing one session).
#[test]
fn the_phone_started_on_the_film_the_tv_plays_continues_it_live() {
    on_both_brokers(|setup| {
        let tv = setup.playing("TV", "tv");
        // The TV plays on for a while, so that its position is far from any point.
        plays_past(&setup, "TV", 3.0);
        let phone = setup.player("Phone", "phone");
        let resumed = phone.wait_lines(&["resumed at", "] playing"]).remove(0);
        tv.wait_line("paused");
        let s = wait_sessions(&setup, |s| only_plays(s, "Phone"));
        let at = position_s(&s, "Phone");
        assert!(at > 3.0, "the phone continued live ({resumed}): {s:#?}");
    });
}

/// Row 5: the phone is killed right after a transfer; started again on the same film, it
/// joins the TV's live session (no witness point of the dead phone wins), and the TV pauses.
#[test]
fn a_phone_killed_after_a_transfer_rejoins_the_live_session() {
    on_both_brokers(|setup| {
        let tv = setup.idle("TV", "tv");
        let phone = setup.playing("Phone", "phone");
        plays_past(&setup, "Phone", 2.0);
        let (code, doc) = transfer(&setup, "TV");
        assert_eq!(code, Some(0), "{doc}");
        drop(phone); // kill -9
        // Past the witnesses' grace, so that a witness point, if any were made, is in.
        let s = wait_sessions(&setup, |s| {
            named(s, "Phone").is_some_and(|p| p["online"] == false) && only_plays(s, "TV")
        });
        let tv_at = position_s(&s, "TV");
        let phone = setup.player("Phone", "phone");
        let resumed = phone.wait_lines(&["resumed at", "] playing"]).remove(0);
        tv.wait_line("paused");
        let s = wait_sessions(&setup, |s| only_plays(s, "Phone"));
        assert!(
            position_s(&s, "Phone") >= tv_at,
            "the phone joined the TV's session ({resumed}), not an older point: {s:#?}"
        );
    });
}

/// Row 6: the TV is killed in the middle of a handoff: the phone keeps (or takes back) its
/// session and plays on, and once the TV is back, the next transfer to it works.
#[test]
fn a_source_plays_on_when_its_target_dies_in_the_handoff() {
    on_both_brokers(|setup| {
        let tv = setup.idle("TV", "tv");
        let phone = setup.playing("Phone", "phone");
        let mut cli = setup.cli();
        cli.args(["transfer", "--to", "TV", "--json"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let transfer_cmd = cli.spawn().unwrap();
        tv.wait_line("handoff incoming");
        drop(tv); // kill -9, while it loads
        let out = transfer_cmd.wait_with_output().unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(doc["ok"], false, "{doc}");
        let s = wait_sessions(&setup, |s| only_plays(s, "Phone"));
        assert_eq!(
            named(&s, "Phone").unwrap()["lease"]["device"],
            named(&s, "Phone").unwrap()["device"]
        );
        // The TV is started again: the next transfer to it works.
        let tv = setup.idle("TV", "tv");
        let (code, doc) = transfer(&setup, "TV");
        assert_eq!(code, Some(0), "{doc}");
        tv.wait_line("handoff complete");
        phone.wait_line("paused");
        wait_sessions(&setup, |s| only_plays(s, "TV"));
    });
}
