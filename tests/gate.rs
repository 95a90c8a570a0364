//! The resume gate without GStreamer or a broker: every path from a media's first buffer to
//! buffers passing again, the ones found as bugs included.

use continuity::engine::ResumeFrom;
use continuity::engine::gate::{Decision, Gate, GateState, PULL_LEAD_NS, ResumeMode, SeekFor};

const S: u64 = 1_000_000_000;

fn point(position_ns: u64) -> ResumeFrom {
    ResumeFrom {
        position_ns,
        device: "phone".into(),
        when_unix_ns: 1_800_000_000 * S,
        live: None,
        audio: None,
        subtitle: None,
    }
}

/// A gate holding the first buffer (at 0) of a media with `resume=auto`; its generation.
fn held() -> (Gate, u64) {
    let mut g = Gate::new();
    let Decision::Lookup { generation } =
        g.on_media_started("file:film.ogg", Some(0), ResumeMode::Auto)
    else {
        panic!("auto mode looks the media up");
    };
    assert_eq!(g.state(), GateState::Hold);
    assert!(!g.passes(), "buffers are held back for the decision");
    (g, generation)
}

#[test]
fn auto_with_a_resume_point_seeks_there_and_opens_at_the_flush() {
    let (mut g, generation) = held();
    let d = g.on_lookup(generation, Some(point(600 * S)));
    assert_eq!(
        d,
        Decision::Seek {
            position_ns: 600 * S,
            why: SeekFor::Resume {
                media_id: "file:film.ogg".into(),
                from: point(600 * S)
            }
        }
    );
    assert!(!g.passes(), "buffers from before the seek do not pass");
    g.on_flush_stop();
    assert!(g.passes());
}

#[test]
fn auto_with_nothing_to_resume_plays_the_held_buffer_as_it_came_without_a_seek() {
    // Found as a bug: the held buffers were dropped and the element seeked back to them; a
    // player stopped at that moment met the element's seek and hung.
    let mut g = Gate::new();
    let Decision::Lookup { generation } =
        g.on_media_started("file:film.ogg", Some(3 * S), ResumeMode::Auto)
    else {
        panic!("lookup");
    };
    assert_eq!(
        g.on_lookup(generation, None),
        Decision::Open { release_eos: false }
    );
    assert!(g.passes());
}

#[test]
fn a_decision_that_never_comes_is_given_up_on_and_its_late_answer_does_nothing() {
    let (mut g, generation) = held();
    assert_eq!(g.give_up(), Decision::Open { release_eos: false });
    assert!(g.passes());
    assert_eq!(
        g.on_lookup(generation, Some(point(600 * S))),
        Decision::None,
        "playback went on from where it was: no jump later"
    );
    assert!(g.passes());
}

#[test]
fn a_live_session_is_resumed_a_little_ahead_and_taken_over() {
    let (mut g, generation) = held();
    let live = ResumeFrom {
        live: Some(("s-1".into(), 3)),
        ..point(100 * S)
    };
    match g.on_lookup(generation, Some(live.clone())) {
        Decision::Seek {
            position_ns,
            why: SeekFor::Resume { from, .. },
        } => {
            assert_eq!(position_ns, 100 * S + PULL_LEAD_NS);
            assert_eq!(from, live, "the session to take over comes with the seek");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ask_mode_offers_without_holding_buffers() {
    let mut g = Gate::new();
    let Decision::Lookup { generation } =
        g.on_media_started("file:film.ogg", Some(0), ResumeMode::Ask)
    else {
        panic!("ask mode looks the media up");
    };
    assert!(g.passes(), "ask mode never holds buffers");
    assert_eq!(
        g.on_lookup(generation, Some(point(60 * S))),
        Decision::Offer {
            media_id: "file:film.ogg".into(),
            from: point(60 * S)
        }
    );
    assert!(g.passes());
    let Decision::Lookup { generation } =
        g.on_media_started("file:film.ogg", Some(0), ResumeMode::Ask)
    else {
        panic!("lookup");
    };
    assert_eq!(
        g.on_lookup(generation, None),
        Decision::Open { release_eos: false }
    );
}

#[test]
fn off_mode_and_untimestamped_buffers_pass_at_once() {
    let mut g = Gate::new();
    assert_eq!(
        g.on_media_started("file:film.ogg", Some(0), ResumeMode::Off),
        Decision::None
    );
    assert!(g.passes());
    assert_eq!(
        g.on_media_started("file:film.ogg", None, ResumeMode::Auto),
        Decision::None
    );
    assert!(g.passes());
}

#[test]
fn an_eos_before_the_resume_seek_flushes_goes_on_if_the_seek_fails() {
    // Found as a bug: a short clip's EOS reached the sink before the decision ("finished",
    // unplayed). The EOS waits while a seek is on its way; a source that cannot seek opens
    // the gate, and the EOS goes on.
    let (mut g, generation) = held();
    assert!(matches!(
        g.on_lookup(generation, Some(point(30 * S))),
        Decision::Seek { .. }
    ));
    assert!(g.on_eos(), "the EOS is held back while the gate is closed");
    assert_eq!(g.on_seek_failed(), Decision::Open { release_eos: true });
    assert!(!g.on_eos(), "with the gate open an EOS passes");
}

#[test]
fn a_flush_drops_the_held_eos() {
    let (mut g, generation) = held();
    assert!(g.on_eos());
    g.on_lookup(generation, Some(point(30 * S)));
    g.on_flush_stop();
    assert!(g.passes());
    // A grace timer that fires later finds nothing to open and no EOS to send.
    assert_eq!(g.on_seek_grace_over(), Decision::None);
}

#[test]
fn an_application_seek_during_the_decision_wins() {
    // Found as a bug: a late decision seeked back to the start after the application's seek.
    let (mut g, generation) = held();
    assert!(
        g.on_app_seek(),
        "the application's seek is taken while held"
    );
    g.on_flush_stop();
    assert!(g.passes(), "its flush opens the gate");
    assert_eq!(
        g.on_lookup(generation, Some(point(600 * S))),
        Decision::None,
        "the decision, when it comes, does nothing"
    );
    assert!(g.passes());
}

#[test]
fn an_application_seek_whose_flush_is_late_still_wins_and_the_gate_opens() {
    let (mut g, generation) = held();
    assert!(g.on_eos());
    assert!(g.on_app_seek());
    assert_eq!(
        g.on_lookup(generation, None),
        Decision::Open { release_eos: true }
    );
}

#[test]
fn a_seek_while_the_gate_is_open_is_not_taken_over() {
    let mut g = Gate::new();
    assert!(!g.on_app_seek());
    assert!(g.passes());
}

#[test]
fn an_answer_for_an_earlier_media_does_nothing() {
    let (mut g, old) = held();
    let Decision::Lookup { generation } =
        g.on_media_started("file:film.ogg", Some(0), ResumeMode::Auto)
    else {
        panic!("lookup");
    };
    assert_ne!(old, generation);
    assert_eq!(g.on_lookup(old, Some(point(99 * S))), Decision::None);
    assert!(!g.passes(), "still waiting for the new media's answer");
    assert!(matches!(
        g.on_lookup(generation, Some(point(5 * S))),
        Decision::Seek {
            position_ns,
            ..
        } if position_ns == 5 * S
    ));
    assert_eq!(
        g.on_lookup(generation, None),
        Decision::None,
        "answered once"
    );
}

#[test]
fn a_seek_whose_flush_never_comes_opens_after_the_grace() {
    let (mut g, generation) = held();
    assert!(g.on_eos());
    g.on_lookup(generation, Some(point(30 * S)));
    assert_eq!(g.on_seek_grace_over(), Decision::Open { release_eos: true });
    assert!(g.passes());
}

#[test]
fn a_handoff_target_prerolls_where_the_handoff_needs_it_not_at_a_resume_point() {
    let mut g = Gate::new();
    g.expect_handoff(120 * S);
    assert!(g.handoff_pending());
    // The application loads the media; its first buffer arrives.
    assert_eq!(
        g.on_media_started("file:film.ogg", Some(0), ResumeMode::Auto),
        Decision::Seek {
            position_ns: 120 * S,
            why: SeekFor::Handoff
        }
    );
    assert!(!g.handoff_pending(), "the handoff's media has started");
    assert!(!g.passes());
    g.on_flush_stop();
    assert!(g.passes());
    // A slow preroll: the engine asks for another, further ahead.
    assert_eq!(
        g.on_preroll(121 * S),
        Decision::Seek {
            position_ns: 121 * S,
            why: SeekFor::Handoff
        }
    );
    assert_eq!(g.on_seek_failed(), Decision::Open { release_eos: false });
}

#[test]
fn a_cancelled_handoff_lets_the_next_media_resume() {
    let mut g = Gate::new();
    g.expect_handoff(120 * S);
    g.cancel_handoff();
    assert!(matches!(
        g.on_media_started("file:film.ogg", Some(0), ResumeMode::Auto),
        Decision::Lookup { .. }
    ));
}

#[test]
fn a_restart_keeps_the_handoff_that_is_loading_media() {
    // The player goes through READY to load the handoff's media.
    let (mut g, generation) = held();
    g.expect_handoff(7 * S);
    g.reset();
    assert!(g.passes());
    assert!(g.handoff_pending());
    assert_eq!(
        g.on_lookup(generation, None),
        Decision::None,
        "the old lookup is over"
    );
}
