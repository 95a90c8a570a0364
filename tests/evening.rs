//! An evening of real use, in sequences: the faults found by trying the product for an hour
//! (issue 25), each as a deterministic test on the fake network. Each step alone worked;
//! these are the sequences that broke.

mod fakenet;

use continuity::engine::{Observation, PlayerAction};
use continuity::model::{DeviceClass, PlayState, SECOND_NS};
use continuity::wire::{Body, CommandBody, HandoffFailure, Incoming};
use fakenet::*;

fn plays(net: &mut Net, device: &str, at_s: u64) {
    playback(net, device, at_s * SECOND_NS, PlayState::Playing);
}

fn playback(net: &mut Net, device: &str, position_ns: u64, state: PlayState) {
    net.observe(
        device,
        Observation::Playback {
            position_ns,
            state,
            rate: 1.0,
        },
    );
}

/// The load a target was asked for: (position, loaded already).
fn load_of(net: &mut Net, device: &str) -> (u64, bool) {
    net.take_players(device)
        .into_iter()
        .find_map(|p| match p {
            PlayerAction::Load {
                position_ns,
                loaded,
                ..
            } => Some((position_ns, loaded)),
            _ => None,
        })
        .expect("the target was asked to load the media")
}

/// The target's side of a handoff once it was asked: it prerolls where it was asked to
/// (after a preroll when it had the media), plays at the instant it is told, and its first
/// frame comes then. Returns where it started.
fn target_plays(net: &mut Net, target: &str, position_ns: u64) -> u64 {
    net.advance(30);
    net.observe(target, Observation::Prerolled { position_ns });
    let at = play_at(net, target).expect("the target was told when to play");
    net.now = at - net.skew[target] as u64;
    net.observe(target, Observation::Started { position_ns });
    position_ns
}

fn play_at(net: &mut Net, device: &str) -> Option<u64> {
    net.take_players(device).into_iter().find_map(|p| match p {
        PlayerAction::PlayAt { at_unix_ns } => Some(at_unix_ns),
        _ => None,
    })
}

/// The phone plays the film from 100 s; the TV and a controller are idle.
fn evening() -> Net {
    let mut net = Net::new();
    net.add("phone", DeviceClass::Phone, 0, true);
    net.add("tv", DeviceClass::Tv, 0, true);
    net.add("cli", DeviceClass::Other, 0, false);
    net
}

/// A push handoff from `source` to `target`, asked by the controller, carried out by both
/// players; the source's player pauses at the instant and says so.
fn hand_off(net: &mut Net, target: &str, source: &str) {
    net.request("cli", target, source);
    let (position_ns, _) = load_of(net, target);
    target_plays(net, target, position_ns);
    net.take_players(source);
    let a = *net.engines[source].anchor().expect("it played");
    playback(net, source, a.position_ns, PlayState::Paused);
}

/// Row 1: a TV whose film ended is idle; the next handoff of that film loads it again,
/// as on a fresh TV (its player left the ended media), and completes.
#[test]
fn a_device_whose_media_ended_takes_the_next_handoff_like_a_fresh_one() {
    let mut net = evening();
    net.observe("tv", Observation::MediaStarted(film()));
    plays(&mut net, "tv", 3590);
    net.advance(10_000);
    net.observe(
        "tv",
        Observation::Eos {
            position_ns: 3600 * SECOND_NS,
        },
    );
    phone_plays_from_100_s(&mut net);
    net.request("cli", "tv", "phone");
    let (position_ns, loaded) = load_of(&mut net, "tv");
    assert!(!loaded, "an ended media is loaded again, not only sought");
    target_plays(&mut net, "tv", position_ns);
    let results = net.results("cli");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].failure, None, "{results:?}");
    assert_eq!(net.engines["tv"].lease().device, "tv");
}

/// Row 2: the phone hands off at 0:47, the TV plays to the end, the phone is stopped and
/// started again: the film is finished for all (nothing to resume, nothing older published).
#[test]
fn a_film_that_ended_on_the_tv_is_finished_for_the_phone_that_handed_it_off() {
    let mut net = evening();
    net.observe("phone", Observation::MediaStarted(film()));
    plays(&mut net, "phone", 46);
    net.advance(1_000);
    hand_off(&mut net, "tv", "phone");
    net.advance(5_000);
    net.observe(
        "tv",
        Observation::Eos {
            position_ns: 3600 * SECOND_NS,
        },
    );
    net.advance(1_000);
    // Ctrl-C on the phone: its player stops where it paused at the handoff.
    let paused_at = net.engines["phone"].anchor().unwrap().position_ns;
    net.observe(
        "phone",
        Observation::Stopped {
            position_ns: paused_at,
        },
    );
    let point = net.engines["cli"]
        .directory()
        .resume_point(&film().id)
        .cloned()
        .expect("the account has a point");
    assert!(point.finished, "the account's point is finished: {point:?}");
    // Started again (its store has what it kept), the phone starts the film at 0.
    net.kill("phone");
    net.add("phone", DeviceClass::Phone, 0, true);
    let now = net.local("phone");
    assert_eq!(
        net.engines["phone"].resume_position(&film().id, now),
        None,
        "a film that ended anywhere is not resumed"
    );
}

/// Row 3: the TV plays at 0:35, a point at 0:20 is newer than the TV's session (a tablet
/// paused there since): the phone that starts the film continues from the TV, live.
#[test]
fn a_device_starting_media_that_plays_elsewhere_continues_live_whatever_the_points() {
    let mut net = evening();
    net.add("tablet", DeviceClass::Tablet, 0, true);
    net.observe("tv", Observation::MediaStarted(film()));
    plays(&mut net, "tv", 0);
    net.advance(1_000);
    net.observe("tablet", Observation::MediaStarted(film()));
    plays(&mut net, "tablet", 0);
    net.advance(20_000);
    playback(&mut net, "tablet", 20 * SECOND_NS, PlayState::Paused);
    net.advance(14_000);
    let now = net.local("phone");
    let from = net.engines["phone"]
        .resume_position(&film().id, now)
        .expect("something to continue");
    assert_eq!(from.device, "tv", "{from:?}");
    assert!(from.live.is_some(), "a pull of the live session: {from:?}");
    assert!(
        from.position_ns.abs_diff(35 * SECOND_NS) < 100 * MS,
        "{from:?}"
    );
}

/// Row 5: the phone is killed 40 ms into a handoff that completes: its last state on the
/// broker says it plays. No witness point hides the TV's live session, and the phone,
/// started again, joins the TV's session.
#[test]
fn a_source_killed_in_a_handoff_leaves_no_witness_point_over_the_live_session() {
    let mut net = evening();
    net.add("tablet", DeviceClass::Tablet, 0, true);
    phone_plays_from_100_s(&mut net);
    net.advance(2_000);
    net.hold_switch_to = Some("phone".into());
    net.request("cli", "tv", "phone");
    let (position_ns, _) = load_of(&mut net, "tv");
    net.advance(30);
    net.observe("tv", Observation::Prerolled { position_ns });
    let at = play_at(&mut net, "tv").expect("the TV plays at an instant");
    // The phone dies before the switch reaches it: it never says it paused.
    net.kill("phone");
    net.release();
    net.now = at;
    net.observe("tv", Observation::Started { position_ns });
    net.advance(5_000);
    for witness in ["tv", "tablet"] {
        let point = net.engines[witness].directory().resume_point(&film().id);
        assert!(
            point.is_none_or(|p| p.device != "phone" || p.stamp.device == "phone"),
            "{witness} wrote a witness point over the live session: {point:?}"
        );
    }
    net.add("phone", DeviceClass::Phone, 0, true);
    let now = net.local("phone");
    let from = net.engines["phone"]
        .resume_position(&film().id, now)
        .expect("the live session");
    assert_eq!(from.device, "tv");
    assert!(from.live.is_some(), "it joins the live session: {from:?}");
}

/// Row 6: the TV is killed 38 ms into a handoff, after the switch was agreed and before it
/// played: the phone takes its session back and plays on; a later transfer works.
#[test]
fn a_source_plays_on_when_its_target_dies_at_the_switch() {
    let mut net = evening();
    net.add("tablet", DeviceClass::Tablet, 0, true);
    phone_plays_from_100_s(&mut net);
    net.request("cli", "tv", "phone");
    let (position_ns, _) = load_of(&mut net, "tv");
    net.advance(30);
    net.observe("tv", Observation::Prerolled { position_ns });
    assert!(play_at(&mut net, "tv").is_some());
    let paused = net.take_players("phone");
    assert!(
        paused
            .iter()
            .any(|p| matches!(p, PlayerAction::PauseAt { .. })),
        "{paused:?}"
    );
    net.kill("tv");
    let again = net.take_players("phone");
    assert!(
        again
            .iter()
            .any(|p| matches!(p, PlayerAction::Play | PlayerAction::PlayAt { .. })),
        "the phone plays on: {again:?}"
    );
    assert_eq!(net.engines["phone"].lease().device, "phone");
    assert_eq!(
        net.engines["phone"].anchor().map(|a| a.state),
        Some(PlayState::Playing)
    );
    net.advance(3_000);
    // The account sees the phone holding it, and a transfer to the tablet works.
    let phone = net.engines["cli"]
        .directory()
        .sessions
        .get(&"phone".to_owned())
        .cloned()
        .unwrap();
    assert_eq!(phone.lease.device, "phone");
    net.notices.remove("cli");
    hand_off(&mut net, "tablet", "phone");
    assert_eq!(net.results("cli")[0].failure, None);
}

/// Row 6, the other half: play pressed on a phone whose session went to the TV brings the
/// session back (the TV pauses): never two devices playing one session.
#[test]
fn play_pressed_on_a_device_whose_session_moved_takes_it_back() {
    let mut net = evening();
    phone_plays_from_100_s(&mut net);
    hand_off(&mut net, "tv", "phone");
    net.advance(5_000);
    net.take_players("tv");
    let at = net.engines["phone"].anchor().unwrap().position_ns;
    playback(&mut net, "phone", at, PlayState::Playing);
    assert_eq!(net.engines["phone"].lease().device, "phone");
    assert!(
        net.take_players("tv").contains(&PlayerAction::Pause),
        "the TV pauses"
    );
    assert_eq!(net.engines["tv"].lease().device, "phone");
    // And it moves again: the account sees one holder.
    net.advance(1_000);
    net.notices.remove("cli");
    hand_off(&mut net, "tv", "phone");
    assert_eq!(net.results("cli")[0].failure, None);
}

/// Row 4: a TV frozen during a transfer (kill -STOP), thawed 10 s later: the handoff that
/// failed (target offline) is not carried out late.
#[test]
fn a_handoff_past_its_deadline_is_dead_for_a_target_that_was_frozen() {
    let mut net = evening();
    phone_plays_from_100_s(&mut net);
    net.freeze("tv");
    net.request("cli", "tv", "phone");
    net.advance(6_000);
    let results = net.results("cli");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].failure, Some(HandoffFailure::TargetOffline));
    net.advance(4_000);
    net.thaw("tv");
    // The TV's player may have been asked to load (the request came first): it loads, as a
    // player does, and must not be told to play.
    let mut tv = net.take_players("tv");
    let load = tv.iter().find_map(|p| match p {
        PlayerAction::Load { position_ns, .. } => Some(*position_ns),
        _ => None,
    });
    if let Some(position_ns) = load {
        net.advance(30);
        net.observe("tv", Observation::Prerolled { position_ns });
    }
    for _ in 0..10 {
        net.advance(100);
    }
    tv.extend(net.take_players("tv"));
    assert!(
        !tv.iter().any(|p| matches!(p, PlayerAction::PlayAt { .. })),
        "{tv:?}"
    );
    assert!(
        !net.take_players("phone")
            .iter()
            .any(|p| matches!(p, PlayerAction::PauseAt { .. } | PlayerAction::Pause)),
        "the phone plays on"
    );
    assert_eq!(net.engines["phone"].lease().device, "phone");
    assert_eq!(net.engines["tv"].lease().device, "tv");
}

fn is_result(_: &str, m: &Incoming) -> bool {
    matches!(&m.body, Body::Command(c) if matches!(c.body, CommandBody::HandoffResult(_)))
}

/// Row 7: the broker loses the target's result (it restarted): the controller reports what
/// is true, that the TV plays the session, not "target offline".
#[test]
fn a_lost_result_is_reported_as_what_happened() {
    let mut net = evening();
    phone_plays_from_100_s(&mut net);
    net.lose = Some(is_result);
    hand_off(&mut net, "tv", "phone");
    net.lose = None;
    assert!(net.results("cli").is_empty());
    net.advance(6_000);
    let results = net.results("cli");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].failure, None, "the TV plays: {results:?}");
}

/// Row 10: a transfer of a session whose media ended says so at once, with its reason.
#[test]
fn a_transfer_of_a_session_that_ended_says_nothing_plays() {
    let mut net = evening();
    phone_plays_from_100_s(&mut net);
    net.advance(1_000);
    net.observe(
        "phone",
        Observation::Eos {
            position_ns: 3600 * SECOND_NS,
        },
    );
    net.request("cli", "tv", "phone");
    let results = net.results("cli");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].failure, Some(HandoffFailure::NothingPlaying));
    assert!(net.take_players("tv").is_empty(), "the TV loads nothing");
}

/// Row 9: a view (`continuity sessions`, which keeps a directory, not an engine) that sees a
/// player's will arrive shows where it was then, not where its last anchor began.
#[test]
fn a_view_shows_a_dead_player_where_it_was_when_its_will_came() {
    use continuity::engine::Directory;
    use continuity::wire::{self, Availability, Status, Topic};
    let mut net = evening();
    phone_plays_from_100_s(&mut net);
    let local = net.local("phone");
    let state = net.engines.get_mut("phone").unwrap().session_state(local);
    let mut view = Directory::default();
    let online = Availability {
        v: 1,
        device: "phone".into(),
        status: Status::Online,
    };
    let topic = Topic::availability("home", "phone").to_string();
    view.apply(&wire::decode(&topic, &wire::encode(&online)).unwrap());
    let session = Topic::session_state("home", "phone").to_string();
    view.apply(&wire::decode(&session, &wire::encode(&state)).unwrap());
    // It dies 10.6 s later; the view sees its will then, and looks 1.5 s after.
    let died = net.now + 10_600 * MS;
    let offline = Availability {
        status: Status::Offline,
        ..online
    };
    let mut will = wire::decode(&topic, &wire::encode(&offline)).unwrap();
    will.received_unix_ns = Some(died);
    view.apply(&will);
    let (position, stopped) = view.position_of(&state, died + 1_500 * MS);
    assert!(stopped);
    let expected = state.anchor.unwrap().position_at(died, None);
    assert_eq!(position, Some(expected), "{:?}", state.anchor);
    assert!(expected > state.anchor.unwrap().position_ns + 10 * SECOND_NS);
}

/// Row 11: a film handed to the TV that simply plays to its end (and the player then stops)
/// is no drop-off, and the command line's helper is not one more device of the account.
#[test]
fn stats_count_an_end_as_no_drop_off_and_helpers_as_no_devices() {
    let mut net = evening();
    phone_plays_from_100_s(&mut net);
    hand_off(&mut net, "tv", "phone");
    net.advance(20_000);
    net.observe(
        "tv",
        Observation::Eos {
            position_ns: 3600 * SECOND_NS,
        },
    );
    net.observe(
        "tv",
        Observation::Stopped {
            position_ns: 3600 * SECOND_NS,
        },
    );
    let mut events = net.events.clone();
    // What a `transfer` helper of the phone records is the phone's.
    if let Some(e) = events.iter().find(|e| e.device == "cli").cloned() {
        events.push(continuity::wire::Event {
            device: "phone~cli-1".into(),
            ..e
        });
    }
    let stats = continuity::stats::compute(&events, T0, net.now + SECOND_NS);
    assert_eq!(stats.drop_off.stopped_soon_after_handoff, 0, "{stats:#?}");
    assert_eq!(stats.devices, 3, "phone, TV and the controller: {stats:#?}");
}
