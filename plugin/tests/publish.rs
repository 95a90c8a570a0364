//! What the element publishes while a real pipeline plays: one message per discontinuity,
//! none per buffer, anchors that extrapolate correctly at other rates.

mod support;

use continuity::hlc::now_unix_ns;
use continuity::model::PlayState;
use gst::prelude::*;
use support::brokers::Mosquitto;
use support::{Player, Recorder, SECOND, device_props};

/// Session states published by the device named `name` since `from`, that carry an anchor.
fn anchors(rec: &Recorder, from: usize) -> Vec<continuity::model::Anchor> {
    rec.sessions_since(from)
        .into_iter()
        .filter_map(|s| s.anchor)
        .collect()
}

#[test]
fn a_seek_while_playing_is_one_message_and_steady_play_is_none() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&broker.url(), "seek", &[dir.path()]);
    let p = Player::new(&device_props(&broker.url(), "seek", dir.path(), "Desk"));
    p.play();
    p.play_until(SECOND);
    rec.settle();

    // Two seconds of steady playback: nothing (the heartbeat is 30 s).
    let before = rec.count();
    p.play_until(3 * SECOND);
    assert!(
        anchors(&rec, before).is_empty(),
        "steady playback published {:?}",
        anchors(&rec, before)
    );

    let before = rec.count();
    p.seek(12 * SECOND);
    p.play_until(13 * SECOND);
    rec.settle();
    let a = anchors(&rec, before);
    assert_eq!(a.len(), 1, "one message for one seek, got {a:?}");
    assert!(a[0].position_ns.abs_diff(12 * SECOND) < 50_000_000, "{a:?}");
    assert_eq!(a[0].state, PlayState::Playing);
}

#[test]
fn pause_and_play_publish_once_each() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&broker.url(), "pause", &[dir.path()]);
    let p = Player::new(&device_props(&broker.url(), "pause", dir.path(), "Desk"));
    p.play();
    p.play_until(2 * SECOND);
    rec.settle();

    let before = rec.count();
    p.set_state(gst::State::Paused);
    rec.settle();
    let a = anchors(&rec, before);
    assert_eq!(a.len(), 1, "one message for a pause: {a:?}");
    assert_eq!(a[0].state, PlayState::Paused);
    let paused_at = a[0].position_ns;
    assert!(paused_at.abs_diff(p.last_rendered()) < 100_000_000);

    let before = rec.count();
    p.play();
    p.play_until(paused_at + SECOND / 2);
    rec.settle();
    let a = anchors(&rec, before);
    assert_eq!(a.len(), 1, "one message for play: {a:?}");
    assert_eq!(a[0].state, PlayState::Playing);
    assert!(a[0].position_ns.abs_diff(paused_at) < 100_000_000);
}

#[test]
fn rate_two_is_published_and_extrapolates_to_the_real_position() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&broker.url(), "rate", &[dir.path()]);
    let p = Player::new(&device_props(&broker.url(), "rate", dir.path(), "Desk"));
    p.play();
    p.play_until(SECOND);
    rec.settle();
    let before = rec.count();
    let seek = gst::event::Seek::new(
        2.0,
        gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
        gst::SeekType::Set,
        gst::ClockTime::from_seconds(2),
        gst::SeekType::None,
        gst::ClockTime::NONE,
    );
    assert!(p.pipeline.send_event(seek));
    let states = rec.wait_sessions(before, |s| {
        s.iter().any(|s| s.anchor.is_some_and(|a| a.rate == 2.0))
    });
    let state = states
        .iter()
        .rev()
        .find(|s| s.anchor.is_some_and(|a| a.rate == 2.0))
        .expect("an anchor at rate 2")
        .clone();

    // Two seconds of wall time later the prediction matches what is rendered.
    p.play_until(5 * SECOND);
    let rendered = p.last_rendered();
    let predicted = state.position_at(now_unix_ns()).unwrap();
    assert!(
        predicted.abs_diff(rendered) < 150_000_000,
        "predicted {predicted} ns at rate 2, rendered {rendered} ns"
    );
    assert!(rendered > 4 * SECOND);
}
