//! Handoff in the sans-IO engine: three engines (initiator, source, target) joined by an
//! in-memory broker, with a fake clock and a deliberate clock offset between devices.

mod fakenet;

use continuity::engine::plan::DEFAULT_COLD_NS;
use continuity::engine::{Action, Engine, EngineConfig, Notice, Observation, PlayerAction};
use std::collections::BTreeMap;

use continuity::engine::plan::Estimate;
use continuity::model::{Device, DeviceClass, Media, PlayState, SECOND_NS};
use continuity::wire::{self, HandoffFailure, HandoffResult};
use fakenet::*;

#[test]
fn push_handoff_switches_at_one_instant_and_reports_the_result() {
    let mut net = setup();
    let phone_session = net.engines["phone"].config().session.clone();
    let id = net.request("cli", "tv", "phone");
    // The TV loads the film's main rendition with the phone's tracks.
    let load = net.players["tv"]
        .iter()
        .find_map(|p| match p {
            PlayerAction::Load {
                uri,
                audio,
                subtitle,
                ..
            } => Some((uri.clone(), audio.clone(), subtitle.clone())),
            _ => None,
        })
        .expect("load");
    assert_eq!(load.0, "file:///films/film.ogg");
    assert_eq!(load.1.unwrap().language.as_deref(), Some("fr"));
    assert_eq!(load.2.unwrap().language.as_deref(), Some("en"));

    let (_, prerolled) = tv_loads(&mut net, 20);
    // The TV plays at an instant; the phone pauses at the same true instant.
    let play_at = net
        .take_players("tv")
        .into_iter()
        .find_map(|p| match p {
            PlayerAction::PlayAt { at_unix_ns } => Some(at_unix_ns),
            _ => None,
        })
        .expect("PlayAt");
    let pause_at = net
        .take_players("phone")
        .into_iter()
        .find_map(|p| match p {
            PlayerAction::PauseAt { at_unix_ns } => Some(at_unix_ns),
            _ => None,
        })
        .expect("PauseAt");
    let true_play = play_at - 37 * MS;
    assert!(
        true_play.abs_diff(pause_at) < MS,
        "TV plays at {true_play}, phone pauses at {pause_at} (true time)"
    );
    // Where the phone is at that instant is what the TV prerolled.
    let phone_pos_then = 100 * SECOND_NS + (pause_at - T0);
    assert!(
        phone_pos_then.abs_diff(prerolled) < MS,
        "phone at {phone_pos_then}, TV from {prerolled}"
    );

    // The TV's first frame, at the instant, from the prerolled position.
    net.now = true_play;
    net.observe(
        "tv",
        Observation::Started {
            position_ns: prerolled,
        },
    );
    let r = net.results("cli");
    assert_eq!(r.len(), 1, "{r:?}");
    let r = &r[0];
    assert_eq!(r.handoff, id);
    assert_eq!(r.failure, None);
    assert!(r.latency_ns.unwrap() < 300 * MS, "{r:?}");
    assert!(r.position_error_ns.unwrap().abs() < MS as i64, "{r:?}");
    // Phone clock minus TV clock: -37 ms, measured through the exchange.
    assert!(
        (r.clock_offset_ns.unwrap() + 37 * MS as i64).abs() < MS as i64,
        "{r:?}"
    );

    // The lease moved: epoch 1, held by the TV, in both published sessions.
    let tv = &net.engines["tv"];
    assert_eq!(tv.lease().device, "tv");
    assert_eq!(tv.lease().epoch, 1);
    let phone = &net.engines["phone"];
    assert_eq!(phone.lease().device, "tv");
    assert_eq!(phone.anchor().unwrap().state, PlayState::Paused);
    let tv_state = net.engines["cli"]
        .directory()
        .sessions
        .get(&"tv".to_owned())
        .cloned();
    let tv_state = tv_state.expect("the TV published its session");
    assert_eq!(tv_state.session, phone_session, "the session id travels");
    assert_eq!(tv_state.audio.unwrap().language.as_deref(), Some("fr"));
}

#[test]
fn an_offline_target_fails_at_once() {
    let mut net = setup();
    net.add("car", DeviceClass::Car, 0, true);
    // The car's last will fired.
    let offline = wire::Availability {
        v: 1,
        device: "car".into(),
        status: wire::Status::Offline,
    };
    let topic = wire::Topic::availability("home", "car").to_string();
    let msg = wire::decode(&topic, &wire::encode(&offline)).unwrap();
    net.observe("cli", Observation::Incoming(msg));
    net.request("cli", "car", "phone");
    assert_eq!(
        net.results("cli")[0].failure,
        Some(HandoffFailure::TargetOffline)
    );
}

#[test]
fn a_target_that_never_answers_is_offline_after_the_timeout() {
    let mut net = setup();
    net.offline.push("tv".into());
    net.request("cli", "tv", "phone");
    net.advance(4_000);
    assert!(net.results("cli").is_empty());
    net.advance(2_000);
    assert_eq!(
        net.results("cli")[0].failure,
        Some(HandoffFailure::TargetOffline)
    );
}

#[test]
fn a_target_in_another_handoff_is_busy() {
    let mut net = setup();
    net.add("tablet", DeviceClass::Tablet, 0, true);
    net.observe("tablet", Observation::MediaStarted(film()));
    net.observe(
        "tablet",
        Observation::Playback {
            position_ns: 5 * SECOND_NS,
            state: PlayState::Playing,
            rate: 1.0,
        },
    );
    net.request("cli", "tv", "phone");
    net.request("cli", "tv", "tablet");
    let r = net.results("cli");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].failure, Some(HandoffFailure::TargetBusy));
}

#[test]
fn media_without_a_uri_is_unavailable_and_a_failed_load_too() {
    let mut net = setup();
    net.observe(
        "phone",
        Observation::MediaStarted(Media {
            id: "stream:abc".into(),
            ..Default::default()
        }),
    );
    net.request("cli", "tv", "phone");
    assert_eq!(
        net.results("cli")[0].failure,
        Some(HandoffFailure::MediaUnavailable)
    );

    let mut net = setup();
    net.request("cli", "tv", "phone");
    net.take_players("tv");
    net.observe(
        "tv",
        Observation::LoadFailed {
            reason: "not found".into(),
        },
    );
    assert_eq!(
        net.results("cli")[0].failure,
        Some(HandoffFailure::MediaUnavailable)
    );
    assert!(net.take_players("tv").contains(&PlayerAction::Unload));
    assert_eq!(
        net.engines["phone"].anchor().unwrap().state,
        PlayState::Playing
    );
}

/// The source of a failed handoff: not told to do anything, playing, holding its session.
fn phone_plays_on_untouched(net: &mut Net) {
    assert!(
        net.take_players("phone").is_empty(),
        "the phone was not touched"
    );
    assert_eq!(
        net.engines["phone"].anchor().unwrap().state,
        PlayState::Playing
    );
    assert_eq!(net.engines["phone"].lease().device, "phone");
}

#[test]
fn a_load_that_gives_nothing_to_preroll_in_time_is_media_unavailable_and_the_source_plays_on() {
    // A web server that accepts the TV's request and sends nothing: the load never
    // prerolls. The TV says why, lets go of the load, and the phone plays on.
    let mut net = setup();
    let id = net.request("cli", "tv", "phone");
    net.take_players("tv");
    net.advance(2_900);
    assert!(net.results("cli").is_empty());
    net.advance(200);
    assert_eq!(
        net.results("cli")[0].failure,
        Some(HandoffFailure::MediaUnavailable)
    );
    let stalled = net.notices["tv"].iter().find_map(|n| match n {
        Notice::LoadStalled { handoff, after_ns } => Some((handoff.clone(), *after_ns)),
        _ => None,
    });
    let (handoff, after_ns) = stalled.expect("the TV was told its load stalled");
    assert_eq!(handoff, id);
    assert_eq!(after_ns, 3 * SECOND_NS, "the handoff's timeout");
    assert!(net.take_players("tv").contains(&PlayerAction::Unload));
    phone_plays_on_untouched(&mut net);
}

#[test]
fn a_target_that_prerolled_but_never_switched_times_out_and_the_source_plays_on() {
    // The TV has the media ready, and the phone went quiet before it accepted.
    let mut net = setup();
    net.freeze("phone");
    net.request("cli", "tv", "phone");
    tv_loads(&mut net, 60);
    net.advance(3_100);
    assert_eq!(net.results("cli")[0].failure, Some(HandoffFailure::Timeout));
    net.thaw("phone");
    phone_plays_on_untouched(&mut net);
}

#[test]
fn a_source_that_does_not_hold_the_session_rejects() {
    let mut net = setup();
    // The phone's session already moved to the tablet at epoch 1.
    net.add("tablet", DeviceClass::Tablet, 0, true);
    net.request("cli", "tablet", "phone");
    tv_loads_on(&mut net, "tablet");
    net.now += 5 * SECOND_NS;
    net.observe("tablet", Observation::Started { position_ns: 0 });
    assert_eq!(net.engines["phone"].lease().device, "tablet");
    // Asking the TV to take it from the phone now: the phone is not active.
    net.request("cli", "tv", "phone");
    let r = net.results("cli");
    assert_eq!(
        r.last().unwrap().failure,
        Some(HandoffFailure::Rejected),
        "{r:?}"
    );
}

fn tv_loads_on(net: &mut Net, id: &str) {
    let pos = net
        .take_players(id)
        .into_iter()
        .find_map(|p| match p {
            PlayerAction::Load { position_ns, .. } => Some(position_ns),
            _ => None,
        })
        .expect("load");
    net.advance(10);
    net.observe(id, Observation::Prerolled { position_ns: pos });
}

#[test]
fn two_concurrent_handoffs_of_one_session_one_wins_one_is_superseded() {
    let mut net = setup();
    net.add("tablet", DeviceClass::Tablet, 0, true);
    net.request("cli", "tv", "phone");
    net.request("cli", "tablet", "phone");
    tv_loads_on(&mut net, "tv");
    tv_loads_on(&mut net, "tablet");
    let r = net.results("cli");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].failure, Some(HandoffFailure::Superseded));
    assert_eq!(r[0].target, "tablet");
}

#[test]
fn a_source_offline_during_the_handoff_stops_when_it_comes_back() {
    let mut net = setup();
    net.request("cli", "tv", "phone");
    tv_loads_on(&mut net, "tv");
    let switch_lost = net.take_players("phone");
    assert!(
        switch_lost
            .iter()
            .any(|p| matches!(p, PlayerAction::PauseAt { .. }))
    );
    // Simulate the other order: the same phone player (its session), cut off before it all,
    // still playing at epoch 0.
    let mut cfg = EngineConfig::new(
        "home",
        Device {
            id: "phone".into(),
            name: "phone".into(),
            class: DeviceClass::Phone,
        },
    );
    cfg.session = net.engines["phone"].config().session.clone();
    let mut lagging = Engine::new(cfg);
    lagging.handle(T0, Observation::MediaStarted(film()));
    lagging.handle(
        T0,
        Observation::Playback {
            position_ns: 100 * SECOND_NS,
            state: PlayState::Playing,
            rate: 1.0,
        },
    );
    // Back online, it receives the TV's retained session at epoch 1.
    let tv_state = net.engines["cli"]
        .directory()
        .sessions
        .get(&"tv".to_owned())
        .cloned()
        .unwrap();
    let topic = wire::Topic::session_state("home", "tv").to_string();
    let msg = wire::decode(&topic, &wire::encode(&tv_state)).unwrap();
    let actions = lagging.handle(T0 + 60 * SECOND_NS, Observation::Incoming(msg));
    let pause = actions
        .iter()
        .position(|a| a == &Action::Player(PlayerAction::Pause))
        .expect("it pauses");
    let notice = actions
        .iter()
        .position(|a| matches!(a, Action::Notify(Notice::LeaseLost { to, .. }) if to == "tv"))
        .expect("it tells the application where the session went");
    assert!(
        notice < pause,
        "the application learns why before the pause"
    );
    assert_eq!(lagging.lease().epoch, 1);
    assert_eq!(lagging.anchor().unwrap().state, PlayState::Paused);
}

#[test]
fn a_phone_target_loads_the_phone_rendition() {
    let mut net = Net::new();
    net.add("tv", DeviceClass::Tv, 0, true);
    net.add("phone", DeviceClass::Phone, 0, true);
    net.observe("tv", Observation::MediaStarted(film()));
    net.observe(
        "tv",
        Observation::Playback {
            position_ns: 10 * SECOND_NS,
            state: PlayState::Paused,
            rate: 1.0,
        },
    );
    net.request("phone", "phone", "tv");
    let uri = net
        .take_players("phone")
        .into_iter()
        .find_map(|p| match p {
            PlayerAction::Load { uri, .. } => Some(uri),
            _ => None,
        })
        .unwrap();
    assert_eq!(uri, "file:///films/film-small.ogg");
}

#[test]
fn pull_takeover_pauses_the_previous_device() {
    let mut net = setup();
    let now = net.local("tv");
    let phone_session = net.engines["phone"].config().session.clone();
    let actions = net
        .engines
        .get_mut("tv")
        .unwrap()
        .take_over(now, "phone", &phone_session, 0);
    net.run("tv", actions);
    assert!(net.take_players("phone").contains(&PlayerAction::Pause));
    assert_eq!(net.engines["phone"].lease().device, "tv");
    assert_eq!(net.engines["tv"].lease().epoch, 1);
}

#[test]
fn a_device_starting_the_same_media_resumes_from_the_live_session() {
    let mut net = setup();
    net.advance(2_000);
    let now = net.local("tv");
    let from = net.engines["tv"]
        .resume_position("file:film.ogg", now)
        .expect("the phone's live session");
    assert_eq!(from.device, "phone");
    let phone_session = net.engines["phone"].config().session.clone();
    assert_eq!(from.live, Some((phone_session, 0)));
    // Extrapolated to now: 100 s + 3 s of play. The TV's clock is 37 ms ahead of the
    // phone's; it probed the phone's clock when it saw it online and playing, so it reads the phone's
    // anchor with the phone's clock and is not 37 ms off.
    assert!(
        net.engines["tv"]
            .directory()
            .clocks
            .sample("phone")
            .is_some()
    );
    let expected = 100 * SECOND_NS + (net.now - T0);
    assert!(from.position_ns.abs_diff(expected) < MS, "{from:?}");
}

#[test]
fn automatic_mode_continues_from_where_a_vanished_device_was() {
    let mut net = setup();
    net.advance(4_000);
    // The phone vanishes mid-play: the broker fires its last will, seen live by the TV.
    let offline = wire::Availability {
        v: 1,
        device: "phone".into(),
        status: wire::Status::Offline,
    };
    let topic = wire::Topic::availability("home", "phone").to_string();
    let msg = wire::decode(&topic, &wire::encode(&offline)).unwrap();
    let gone_at_true = net.now;
    let phone = net.engines.remove("phone").unwrap();
    drop(phone);
    net.observe("tv", Observation::Incoming(msg.clone()));
    net.advance(60_000);
    let now = net.local("tv");

    // By default there is no live session to continue from (the phone is offline), but the
    // TV saw the will and recorded, as a witness, where the phone was then: not where it
    // would be now. (Before witness points, this was "nothing to resume".)
    let from = net.engines["tv"]
        .resume_position("file:film.ogg", now)
        .expect("the witness point");
    let died_at = 100 * SECOND_NS + (gone_at_true - T0);
    assert!(from.position_ns.abs_diff(died_at) < 40 * MS, "{from:?}");
    assert_eq!(from.live, None);

    // On: where the phone was when it vanished (100 s + 5 s of play), not where it would be
    // now, and no takeover (there is nobody to take it from).
    let mut cfg = EngineConfig::new(
        "home",
        Device {
            id: "tv2".into(),
            name: "tv2".into(),
            class: DeviceClass::Tv,
        },
    );
    cfg.automatic_window_ns = Some(30 * 60 * SECOND_NS);
    let mut tv2 = Engine::new(cfg);
    let state = net.engines["cli"]
        .directory()
        .sessions
        .get(&"phone".to_owned())
        .cloned()
        .unwrap();
    let online = wire::Availability {
        status: wire::Status::Online,
        ..offline.clone()
    };
    let t = |m: &wire::Availability| wire::decode(&topic, &wire::encode(m)).unwrap();
    let st_topic = wire::Topic::session_state("home", "phone").to_string();
    tv2.handle(gone_at_true - 1, Observation::Incoming(t(&online)));
    tv2.handle(
        gone_at_true - 1,
        Observation::Incoming(wire::decode(&st_topic, &wire::encode(&state)).unwrap()),
    );
    tv2.handle(gone_at_true, Observation::Incoming(msg));
    let from = tv2
        .resume_position("file:film.ogg", gone_at_true + 60 * SECOND_NS)
        .expect("automatic mode continues");
    let expected = 100 * SECOND_NS + (gone_at_true - T0);
    assert!(from.position_ns.abs_diff(expected) < MS, "{from:?}");
    assert_eq!(from.live, None);
    assert_eq!(from.device, "phone");
    // Beyond the window: nothing.
    assert!(
        tv2.resume_position("file:film.ogg", gone_at_true + 31 * 60 * SECOND_NS)
            .is_none()
    );
}

#[test]
fn a_slow_preroll_is_asked_again_further_ahead_as_a_preroll_not_a_remote_seek() {
    let mut net = setup();
    net.request("cli", "tv", "phone");
    // 400 ms to load and preroll: the source is past the prerolled point by then.
    let (_, first) = tv_loads(&mut net, 400);
    let players = net.take_players("tv");
    let again = players
        .iter()
        .find_map(|p| match p {
            PlayerAction::Preroll { position_ns, .. } => Some(*position_ns),
            _ => None,
        })
        .expect("the TV is asked to preroll again");
    // Where the phone will be once a seek in the loaded media is done, not where it was
    // planned to be after a load.
    let phone_now = 100 * SECOND_NS + (net.now - T0);
    assert!(
        again > first
            && again >= phone_now + net.engines["tv"].ready_plan_ns("file:film.ogg", true),
        "further ahead: {again} vs {first}, the phone at {phone_now}"
    );
    assert!(
        !players
            .iter()
            .any(|p| matches!(p, PlayerAction::Seek { .. })),
        "a handoff's preroll is not a remote seek: {players:?}"
    );
}

#[test]
fn a_target_that_has_the_media_already_is_told_so_and_only_prerolls() {
    let mut net = setup();
    net.observe("tv", Observation::MediaStarted(film()));
    net.take_players("tv");
    net.request("cli", "tv", "phone");
    let players = net.take_players("tv");
    let load = players
        .iter()
        .position(|p| matches!(p, PlayerAction::Load { loaded, .. } if *loaded));
    let preroll = players
        .iter()
        .position(|p| matches!(p, PlayerAction::Preroll { .. }));
    assert!(load.is_some() && preroll > load, "{players:?}");
}

/// Reliability row 15: a phone restarted after its session moved to the TV plays its own
/// session again; the TV's retained state (a higher epoch of the old session) neither pauses
/// it nor takes its new playback away.
#[test]
fn a_restarted_source_holds_its_own_session_again() {
    let mut net = setup();
    let id = net.request("cli", "tv", "phone");
    tv_loads(&mut net, 40);
    net.advance(1_000);
    let tv_lease = net.engines["tv"].lease().clone();
    assert_eq!(tv_lease.device, "tv", "handoff {id} moved the session");

    // The phone's player restarts (a new engine: the TV's state is retained on the broker).
    net.notices.remove("phone");
    net.add("phone", DeviceClass::Phone, 0, true);
    net.take_players("phone");
    net.observe("phone", Observation::MediaStarted(film()));
    net.observe(
        "phone",
        Observation::Playback {
            position_ns: 10 * SECOND_NS,
            state: PlayState::Playing,
            rate: 1.0,
        },
    );
    let phone = &net.engines["phone"];
    assert_eq!(phone.lease().device, "phone", "it holds its session");
    assert!(
        !net.take_players("phone").contains(&PlayerAction::Pause),
        "nothing pauses it"
    );
    assert!(
        net.notices
            .get("phone")
            .into_iter()
            .flatten()
            .all(|n| !matches!(n, Notice::LeaseLost { .. })),
        "no 'the session moved': {:?}",
        net.notices.get("phone")
    );
}

/// A source whose session moved away and that starts media of its own starts a session of
/// its own, which a later transfer can move.
#[test]
fn a_source_that_lost_its_session_and_starts_new_media_holds_a_new_one() {
    let mut net = setup();
    net.request("cli", "tv", "phone");
    tv_loads(&mut net, 40);
    net.advance(1_000);
    assert_eq!(net.engines["phone"].lease().device, "tv");
    net.observe("phone", Observation::MediaStarted(film()));
    assert_eq!(net.engines["phone"].lease().device, "phone");
    let sessions = &net.engines["cli"].directory().sessions;
    let (phone, tv) = (
        sessions.get(&"phone".to_owned()).unwrap(),
        sessions.get(&"tv".to_owned()).unwrap(),
    );
    assert_eq!(phone.lease.device, "phone", "transferable again");
    assert_ne!(phone.session, tv.session, "a session of its own");
    assert_eq!(tv.lease.device, "tv", "the TV keeps the one that moved");
}

/// Reliability (clock skew): a TV whose wall clock is 30 s ahead of the phone's still starts
/// at the instant the phone pauses, from where the phone is then: the handoff works in the
/// offset it measures, not in either clock.
#[test]
fn a_handoff_to_a_tv_whose_clock_is_thirty_seconds_off_lands_within_a_millisecond() {
    for skew_ms in [30_000_i64, -30_000] {
        let mut net = Net::new();
        net.add("phone", DeviceClass::Phone, 0, true);
        net.add("tv", DeviceClass::Tv, skew_ms, true);
        net.add("cli", DeviceClass::Other, 0, false);
        phone_plays_from_100_s(&mut net);
        let asked_at = net.now;
        net.request("cli", "tv", "phone");
        let (_, mut prerolled) = tv_loads(&mut net, 20);
        // The first preroll was planned before the offset was known: the TV may be asked to
        // preroll again, once, where the phone will be.
        let mut tv_players = net.take_players("tv");
        if let Some(position_ns) = tv_players.iter().find_map(|p| match p {
            PlayerAction::Preroll { position_ns, .. } => Some(*position_ns),
            _ => None,
        }) {
            net.advance(20);
            net.observe("tv", Observation::Prerolled { position_ns });
            prerolled = position_ns;
            tv_players = net.take_players("tv");
        }
        let play_at = tv_players
            .iter()
            .find_map(|p| match p {
                PlayerAction::PlayAt { at_unix_ns } => Some(*at_unix_ns),
                _ => None,
            })
            .unwrap_or_else(|| {
                panic!(
                    "skew {skew_ms} ms: no PlayAt: {tv_players:?}, results {:?}",
                    net.results("cli")
                )
            });
        let pause_at = net
            .take_players("phone")
            .into_iter()
            .find_map(|p| match p {
                PlayerAction::PauseAt { at_unix_ns } => Some(at_unix_ns),
                _ => None,
            })
            .expect("PauseAt");
        let true_play = (play_at as i64 - skew_ms * MS as i64) as u64;
        assert!(
            true_play.abs_diff(pause_at) < MS,
            "skew {skew_ms} ms: TV plays at {true_play}, phone pauses at {pause_at}"
        );
        let phone_then = 100 * SECOND_NS + (pause_at - T0);
        assert!(
            phone_then.abs_diff(prerolled) < MS,
            "skew {skew_ms} ms: phone at {phone_then}, TV from {prerolled}"
        );
        assert!(
            true_play - asked_at < 500 * MS,
            "skew {skew_ms} ms: the TV plays {} ms after the request",
            (true_play - asked_at) / MS
        );
    }
}

/// One handoff of a media to a TV that must load it: `load_ms` to load and preroll, and
/// `seek_ms` for any preroll after. Returns how many times the TV was asked to get ready
/// (the load, and any preroll after it) and the handoff's result. The TV starts with what
/// an earlier run of it kept in its store.
fn cold_handoff(
    kept: &BTreeMap<String, Estimate>,
    load_ms: u64,
    seek_ms: u64,
) -> (usize, HandoffResult, BTreeMap<String, Estimate>) {
    let mut net = setup();
    for (key, e) in kept {
        net.engines
            .get_mut("tv")
            .unwrap()
            .restore_ready_time(key, *e);
    }
    net.request("cli", "tv", "phone");
    tv_loads(&mut net, load_ms);
    let mut asked = 1;
    let mut players = net.take_players("tv");
    while let Some(position_ns) = players.iter().find_map(|p| match p {
        PlayerAction::Preroll { position_ns, .. } => Some(*position_ns),
        _ => None,
    }) {
        asked += 1;
        assert!(asked < 5, "prerolls without end: {players:?}");
        net.advance(seek_ms);
        net.observe("tv", Observation::Prerolled { position_ns });
        players = net.take_players("tv");
    }
    let play_at = players
        .iter()
        .find_map(|p| match p {
            PlayerAction::PlayAt { at_unix_ns } => Some(*at_unix_ns),
            _ => None,
        })
        .expect("the TV plays");
    let prerolled = net.engines["tv"].anchor().unwrap().position_ns;
    net.now = play_at - 37 * MS;
    net.observe(
        "tv",
        Observation::Started {
            position_ns: prerolled,
        },
    );
    let result = net.results("cli").pop().expect("a result");
    assert_eq!(result.failure, None, "{result:?}");
    (asked, result, net.kept.remove("tv").unwrap_or_default())
}

/// Issue 13: a TV that must load the media prerolls once, where the phone will be when it is
/// ready, and learns how long that takes: a media slower than the first guess costs a second
/// seek the first time only, and the handoffs after it get as fast as the load allows.
#[test]
fn a_target_learns_its_load_time_and_prerolls_once() {
    // Quicker than the first guess: one preroll from the start.
    let (asked, first, _) = cold_handoff(&BTreeMap::new(), 120, 30);
    assert_eq!(
        asked, 1,
        "one preroll for a media quicker than the first guess"
    );
    assert!(
        first.latency_ns.unwrap() <= DEFAULT_COLD_NS + 30 * MS,
        "{first:?}"
    );

    // Slower than the first guess (400 ms): a second seek the first time only.
    let mut kept = BTreeMap::new();
    let mut latencies = Vec::new();
    for round in 0..8 {
        let (asked, result, learned) = cold_handoff(&kept, 400, 30);
        kept = learned;
        if round == 0 {
            assert!(asked <= 2, "round {round}: asked {asked} times");
        } else {
            assert_eq!(
                asked, 1,
                "round {round}: one preroll once the load time is known"
            );
        }
        assert!(
            result.position_error_ns.unwrap().abs() < MS as i64,
            "{result:?}"
        );
        latencies.push(result.latency_ns.unwrap() / MS);
    }
    assert!(
        kept.contains_key("cold") && kept.contains_key("media:file:film.ogg"),
        "{kept:?}"
    );
    let last = *latencies.last().unwrap();
    assert!(
        (400..520).contains(&last),
        "the latency converges on the load time and the margin: {latencies:?} ms"
    );
}

/// A handoff the cli asks for, carried out by the target's player: it is ready 30 ms after
/// it was asked (a load, or a seek in the media it has), and its first frame comes at the
/// instant it was told.
fn hand_off(net: &mut Net, target: &str, source: &str) {
    net.request("cli", target, source);
    let position_ns =
        net.take_players(target)
            .into_iter()
            .find_map(|p| match p {
                PlayerAction::Load { position_ns, .. }
                | PlayerAction::Preroll { position_ns, .. } => Some(position_ns),
                _ => None,
            })
            .expect("the target was asked to be ready");
    net.advance(30);
    net.observe(target, Observation::Prerolled { position_ns });
    let at = net
        .take_players(target)
        .into_iter()
        .find_map(|p| match p {
            PlayerAction::PlayAt { at_unix_ns } => Some(at_unix_ns),
            _ => None,
        })
        .expect("the target was told when to play");
    net.now = at;
    net.observe(target, Observation::Started { position_ns });
    // The source's player pauses at the instant and says so.
    net.take_players(source);
    let position_ns = net.engines[source].anchor().expect("it played").position_ns;
    net.observe(
        source,
        Observation::Playback {
            position_ns,
            state: PlayState::Paused,
            rate: 1.0,
        },
    );
}

fn plays(net: &mut Net, device: &str, at_s: u64) {
    net.observe(
        device,
        Observation::Playback {
            position_ns: at_s * SECOND_NS,
            state: PlayState::Playing,
            rate: 1.0,
        },
    );
}

/// Move the fake clock to `h:m` of the scripted day.
fn at(net: &mut Net, day: u64, h: u64, m: u64) {
    net.now = day + (h * 3600 + m * 60) * SECOND_NS;
    net.advance(0);
}

#[test]
fn a_scripted_day_of_handoffs_gives_the_expected_stats() {
    // Yesterday, UTC: `stats --since 2d` covers it.
    let now = continuity::hlc::now_unix_ns();
    let day = (now / (86_400 * SECOND_NS) - 1) * 86_400 * SECOND_NS;
    let mut net = Net::new();
    net.now = day;
    net.add("phone", DeviceClass::Phone, 0, true);
    net.add("tv", DeviceClass::Tv, 0, true);
    net.add("tablet", DeviceClass::Tablet, 0, true);
    net.add("cli", DeviceClass::Other, 0, false);

    // 08:00 the phone plays the film and hands it to the TV, which stops 20 s later.
    at(&mut net, day, 8, 0);
    net.observe("phone", Observation::MediaStarted(film()));
    plays(&mut net, "phone", 100);
    net.advance(1_000);
    hand_off(&mut net, "tv", "phone");
    net.advance(20_000);
    net.observe(
        "tv",
        Observation::Stopped {
            position_ns: 121 * SECOND_NS,
        },
    );
    // 12:00 the phone plays it again and hands it to the tablet.
    at(&mut net, day, 12, 0);
    net.observe("phone", Observation::MediaStarted(film()));
    plays(&mut net, "phone", 121);
    net.advance(1_000);
    hand_off(&mut net, "tablet", "phone");
    // 13:00 a handoff to a car that is not on: target offline (only the cli can tell).
    at(&mut net, day, 13, 0);
    net.add("car", DeviceClass::Car, 0, true);
    net.offline.push("car".into());
    net.engines.get_mut("cli").unwrap().handle(
        net.now,
        Observation::Incoming(
            wire::decode(
                "continuity/v1/home/devices/car/availability",
                br#"{"v": 1, "device": "car", "status": "offline"}"#,
            )
            .unwrap(),
        ),
    );
    net.request("cli", "car", "tablet");
    // 14:00 the tablet to the TV, which cannot load it.
    at(&mut net, day, 14, 0);
    net.request("cli", "tv", "tablet");
    net.take_players("tv");
    net.observe(
        "tv",
        Observation::LoadFailed {
            reason: "not found".into(),
        },
    );
    // 16:00 the tablet pauses; at 16:10 the TV starts the film by itself.
    at(&mut net, day, 16, 0);
    let position_ns = net.engines["tablet"].anchor().unwrap().position_ns;
    net.observe(
        "tablet",
        Observation::Playback {
            position_ns,
            state: PlayState::Paused,
            rate: 1.0,
        },
    );
    at(&mut net, day, 16, 10);
    net.observe("tv", Observation::MediaStarted(film()));
    plays(&mut net, "tv", 130);
    net.advance(60_000);
    net.observe(
        "tv",
        Observation::Stopped {
            position_ns: 190 * SECOND_NS,
        },
    );
    // 20:00 the tablet plays again and hands it to the TV (which plays on).
    at(&mut net, day, 20, 0);
    plays(&mut net, "tablet", 200);
    net.advance(1_000);
    hand_off(&mut net, "tv", "tablet");
    net.advance(120_000);

    // Every device's events, as the TV's store keeps them (its own and those it heard;
    // here all of them, twice: a second copy changes nothing).
    let dir = tempfile::tempdir().unwrap();
    {
        let store = continuity::store::Store::open_in(dir.path()).unwrap();
        let keep = continuity::store::EventRetention::default();
        for e in net.events.iter().chain(net.events.iter()) {
            store.put_event(e, keep, now).unwrap();
        }
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_continuity"))
        .arg("--config-dir")
        .arg(dir.path())
        .args(["stats", "--since", "2d", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &doc["stats"];
    assert_eq!(s["handoffs"], 5, "{s:#}");
    assert_eq!(s["succeeded"], 3, "{s:#}");
    assert_eq!(s["failed"], 2);
    assert_eq!(s["success_rate"], 0.6);
    assert_eq!(s["failures"]["target-offline"], 1, "{s:#}");
    assert_eq!(s["failures"]["media-unavailable"], 1);
    assert_eq!(s["transitions_by_class"]["phone"]["tv"], 1, "{s:#}");
    assert_eq!(s["transitions_by_class"]["phone"]["tablet"], 1);
    assert_eq!(s["transitions_by_class"]["tablet"]["tv"], 1);
    assert_eq!(s["transitions_by_device"]["tablet"]["tv"], 1);
    assert_eq!(s["drop_off"]["stopped_soon_after_handoff"], 1, "{s:#}");
    let hours: Vec<u64> = s["by_hour_utc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut expected = vec![0; 24];
    for h in [8, 12, 13, 14, 20] {
        expected[h] = 1;
    }
    assert_eq!(hours, expected);
    // The latency is the 30 ms load plus the switch margin, the same each time.
    let p50 = s["latency_ms"]["p50"].as_f64().unwrap();
    assert!((30.0..400.0).contains(&p50), "{s:#}");
    assert_eq!(s["latency_ms"]["count"], 3);
    // Continued elsewhere, not by a handoff: the TV stopped at 08:00:21 and the phone
    // started the film at 12:00; the tablet paused at 16:00 and the TV started it at 16:10;
    // the TV stopped at 16:11 and the tablet played on at 20:00.
    let t = &s["time_to_continue_s"];
    assert_eq!(t["count"], 3, "{s:#}");
    assert_eq!(t["min"], 600.0);
    let longest = t["max"].as_f64().unwrap();
    assert!((14_370.0..14_390.0).contains(&longest), "{t}");
    assert_eq!(s["by_mode"]["push"], 5);

    // The charts: three PNG images (docs/stats-*.png are these, for the scripted day).
    let charts = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_continuity"))
        .arg("--config-dir")
        .arg(dir.path())
        .args(["stats", "--since", "2d", "--png"])
        .arg(charts.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["transitions.png", "latency.png", "handoffs-per-day.png"] {
        let bytes = std::fs::read(charts.path().join(name)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is no PNG");
        assert!(
            bytes.len() > 5_000,
            "{name}: {} bytes, an empty chart?",
            bytes.len()
        );
        if let Some(keep) = std::env::var_os("CONTINUITY_KEEP_CHARTS") {
            std::fs::write(
                std::path::Path::new(&keep).join(format!("stats-{name}")),
                &bytes,
            )
            .unwrap();
        }
    }

    // The same figures for Prometheus: OpenMetrics text, as its reference parser reads it.
    let text = scrape_metrics(dir.path());
    let parsed = parse_openmetrics(&text);
    let value = |name: &str, labels: &str| -> f64 {
        parsed
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in {parsed:?}\n{text}"))
            .2
    };
    assert_eq!(value("continuity_handoffs", "result=succeeded"), 3.0);
    assert_eq!(value("continuity_handoffs", "result=failed"), 2.0);
    assert_eq!(value("continuity_handoff_success_ratio", ""), 0.6);
    assert_eq!(
        value("continuity_handoff_failures", "reason=target-offline"),
        1.0
    );
    assert_eq!(
        value(
            "continuity_handoff_transitions",
            "from_class=phone,to_class=tv"
        ),
        1.0
    );
    assert_eq!(value("continuity_handoffs_by_hour", "hour=13"), 1.0);
    let p50 = value("continuity_handoff_latency_seconds", "percentile=50");
    assert!((p50 * 1000.0 - s["latency_ms"]["p50"].as_f64().unwrap()).abs() < 1e-6);
}

/// `continuity stats --serve` on a free port: one scrape of `/metrics`, checked as HTTP.
fn scrape_metrics(config_dir: &std::path::Path) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_continuity"))
        .arg("--config-dir")
        .arg(config_dir)
        .args(["stats", "--since", "2d", "--serve", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    body.to_owned()
}

/// Parse OpenMetrics text with prometheus_client's parser (python3-prometheus-client, which
/// `make test` installs): its samples as (name, `k=v,...`, value). A text it refuses fails.
fn parse_openmetrics(text: &str) -> Vec<(String, String, f64)> {
    use std::io::Write;
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       labels = ','.join(k + '=' + v for k, v in sorted(s.labels.items()))\n\
        \x20       print(s.name + ' ' + labels + ' ' + repr(s.value))\n";
    // Debian's python3, which has the package (not another one first on PATH).
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (make test installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut parts = l.split(' ');
            let name = parts.next().unwrap().to_owned();
            let labels = parts.next().unwrap().to_owned();
            let value = parts.next().unwrap().parse().unwrap();
            (name, labels, value)
        })
        .collect()
}

#[test]
fn a_device_of_another_class_that_comes_online_while_media_plays_is_suggested_once() {
    let mut net = setup();
    let suggested = |net: &Net| -> Vec<String> {
        net.notices
            .get("phone")
            .into_iter()
            .flatten()
            .filter_map(|n| match n {
                Notice::HandoffSuggested { device, .. } => Some(device.clone()),
                _ => None,
            })
            .collect()
    };
    // The TV came on just as the phone started (within 10 s): suggested, once.
    assert_eq!(suggested(&net), vec!["tv".to_owned()]);
    net.advance(60_000);
    // A second TV is switched on, and another phone: the TV is suggested, the phone not.
    net.add("tv2", DeviceClass::Tv, 0, true);
    net.add("phone2", DeviceClass::Phone, 0, true);
    net.advance(1_000);
    assert_eq!(suggested(&net), vec!["tv".to_owned(), "tv2".to_owned()]);
    // A device that only helps (the command line) is no device to continue on.
    net.add("cli2", DeviceClass::Other, 0, false);
    assert_eq!(suggested(&net).len(), 2);
    // Nothing while the phone is paused.
    net.observe(
        "phone",
        Observation::Playback {
            position_ns: 101 * SECOND_NS,
            state: PlayState::Paused,
            rate: 1.0,
        },
    );
    net.add("tablet", DeviceClass::Tablet, 0, true);
    net.advance(1_000);
    assert_eq!(suggested(&net).len(), 2);
    // A TV on for a minute before the phone plays again is not news.
    net.advance(60_000);
    net.observe(
        "phone",
        Observation::Playback {
            position_ns: 101 * SECOND_NS,
            state: PlayState::Playing,
            rate: 1.0,
        },
    );
    assert_eq!(suggested(&net).len(), 2);
}

#[test]
fn devices_online_before_this_one_connected_and_a_handoffs_source_are_not_suggested() {
    let suggested = |net: &Net, id: &str| -> Vec<String> {
        net.notices
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|n| match n {
                Notice::HandoffSuggested { device, .. } => Some(device.clone()),
                _ => None,
            })
            .collect()
    };
    let mut net = Net::new();
    net.add("tv", DeviceClass::Tv, 0, true);
    net.add("cli", DeviceClass::Other, 0, false);
    net.advance(5_000);
    // The phone connects and plays: the TV was on already (the broker's retained picture),
    // which is no news.
    net.add("phone", DeviceClass::Phone, 0, true);
    phone_plays_from_100_s(&mut net);
    net.advance(1_000);
    assert_eq!(suggested(&net, "phone"), Vec::<String>::new());
    // The TV saw the phone come online; the phone hands off to it at once: the TV plays,
    // and the phone it came from is not offered back.
    net.request("cli", "tv", "phone");
    tv_loads(&mut net, 20);
    net.advance(1_000);
    net.observe(
        "tv",
        Observation::Started {
            position_ns: 102 * SECOND_NS,
        },
    );
    net.advance(1_000);
    let results = net.results("tv");
    assert!(
        results.len() == 1 && results[0].failure.is_none(),
        "{results:?}"
    );
    assert_eq!(suggested(&net, "tv"), Vec::<String>::new());
}

#[test]
fn a_source_that_sees_the_targets_session_before_the_switch_pauses_at_the_switch_not_at_once() {
    let pause_now = |net: &mut Net| {
        net.take_players("phone")
            .into_iter()
            .filter(|p| matches!(p, PlayerAction::Pause))
            .count()
    };
    let pause_at = |net: &mut Net| {
        net.take_players("phone").into_iter().find_map(|p| match p {
            PlayerAction::PauseAt { at_unix_ns } => Some(at_unix_ns),
            _ => None,
        })
    };
    // The switch command reaches the phone after the TV's new session state.
    let mut net = setup();
    net.hold_switch_to = Some("phone".into());
    net.request("cli", "tv", "phone");
    tv_loads(&mut net, 20);
    assert_eq!(net.held.len(), 1, "the switch is held back");
    assert_eq!(pause_now(&mut net), 0, "no pause before the switch instant");
    net.release();
    assert!(
        pause_at(&mut net).is_some(),
        "the phone pauses at the switch instant"
    );

    // The switch never comes: at the handoff's deadline the phone gives the session up all
    // the same, since the TV holds it.
    let mut net = setup();
    net.hold_switch_to = Some("phone".into());
    net.request("cli", "tv", "phone");
    tv_loads(&mut net, 20);
    assert_eq!(pause_now(&mut net), 0);
    net.advance(5_000);
    assert_eq!(pause_now(&mut net), 1, "paused once the deadline passed");
}

#[test]
fn a_request_that_comes_before_the_retained_sessions_waits_for_the_sync() {
    // Found under load (tests/play.rs, automatic mode, 1 run in 5): a device says it is
    // online once it listens to its inbox, before the broker has handed it the retained
    // sessions; a phone that saw the TV online asked at once, and the TV, not knowing the
    // phone's session yet, refused the request.
    let mut net = Net::new();
    net.add("phone", DeviceClass::Phone, 0, true);
    net.add("cli", DeviceClass::Other, 0, false);
    phone_plays_from_100_s(&mut net);
    // The TV has just connected: nothing retained has reached it yet.
    let mut tv = Engine::new(EngineConfig::new(
        "home",
        Device {
            id: "tv".into(),
            name: "TV".into(),
            class: DeviceClass::Tv,
        },
    ));
    tv.connected();
    net.engines.insert("tv".into(), tv);
    net.skew.insert("tv".into(), 0);
    // It says it is online (it listens to its inbox).
    let now = net.local("tv");
    let actions = net.engines.get_mut("tv").unwrap().announce(now);
    net.run("tv", actions);
    let id = net.request("cli", "tv", "phone");
    assert!(
        net.results("cli").is_empty(),
        "not refused before the retained state: {:?}",
        net.results("cli")
    );
    assert!(net.take_players("tv").is_empty());
    // The retained picture arrives, then the sync echo.
    let now = net.local("tv");
    for (topic, payload) in net.retained.clone() {
        let mut msg = wire::decode(&topic, &payload).unwrap();
        msg.retained = true;
        let actions = net
            .engines
            .get_mut("tv")
            .unwrap()
            .handle(now, Observation::Incoming(msg));
        net.run("tv", actions);
    }
    let actions = net.engines.get_mut("tv").unwrap().synced(now);
    net.run("tv", actions);
    // Decided now: the TV loads the film where the phone will be.
    let (uri, _) = tv_loads(&mut net, 300);
    assert_eq!(uri, "file:///films/film.ogg");
    let r = net.results("cli");
    assert!(
        r.iter().all(|r| r.handoff != id || r.failure.is_none()),
        "{r:?}"
    );
}
