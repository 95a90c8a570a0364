//! The receive pipeline without a broker: what a device believes, refuses, parks for a key
//! and asks for, as the node and the CLI's view both take it.

mod common;

use common::paired;
use continuity::engine::{Engine, EngineConfig, Observation};
use continuity::hlc::now_unix_ns;
use continuity::intake::{Inbound, Intake, Outgoing};
use continuity::model::{Device, DeviceClass, Media};
use continuity::security::account::Account;
use continuity::security::{pair, rekey};
use continuity::wire::{self, Body, Command, CommandBody, Topic};

/// `device`'s session state while it plays a film, as plain JSON: (topic, payload).
fn state_of(device: &str) -> (String, Vec<u8>) {
    let mut e = Engine::new(EngineConfig::new(
        "home",
        Device {
            id: device.into(),
            name: "Phone".into(),
            class: DeviceClass::Phone,
        },
    ));
    let now = now_unix_ns();
    e.handle(
        now,
        Observation::MediaStarted(Media {
            id: "file:film.ogg".into(),
            ..Default::default()
        }),
    );
    let topic = Topic::session_state("home", device).to_string();
    (topic, wire::encode(&e.session_state(now)))
}

fn messages(intakes: &[Intake]) -> Vec<&wire::Incoming> {
    intakes
        .iter()
        .filter_map(|i| match i {
            Intake::Message(m) => Some(&**m),
            _ => None,
        })
        .collect()
}

fn rejected(intakes: &[Intake]) -> Vec<String> {
    intakes
        .iter()
        .filter_map(|i| match i {
            Intake::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_paired_devices_sealed_state_is_believed_and_a_plain_one_refused() {
    let (_root, acc) = paired(&["phone", "tv"]);
    let (phone, tv) = (&acc[0], &acc[1]);
    let mut inbound = Inbound::new("home", &tv.device, Some(tv.clone()));
    let (topic, plain) = state_of(&phone.device);
    let sealed = phone.guard(0).seal(&topic, &plain, now_unix_ns());

    let got = inbound.take(&topic, &sealed, now_unix_ns());
    let msgs = messages(&got);
    assert_eq!(msgs.len(), 1, "{got:?}");
    assert!(matches!(&msgs[0].body, Body::Session(s) if s.device == phone.device));
    assert!(rejected(&got).is_empty());

    let got = inbound.take(&topic, &plain, now_unix_ns());
    assert!(
        messages(&got).is_empty(),
        "plain JSON is not believed: {got:?}"
    );
    assert_eq!(rejected(&got).len(), 1);
}

#[test]
fn a_plain_device_refuses_what_is_sealed_and_takes_plain_json() {
    let (_root, acc) = paired(&["phone"]);
    let mut inbound = Inbound::new("home", "tv-1", None);
    let (topic, plain) = state_of(&acc[0].device);
    let sealed = acc[0].guard(0).seal(&topic, &plain, now_unix_ns());
    let got = inbound.take(&topic, &sealed, now_unix_ns());
    assert!(rejected(&got)[0].contains("runs unencrypted"), "{got:?}");
    assert_eq!(
        messages(&inbound.take(&topic, &plain, now_unix_ns())).len(),
        1
    );
}

#[test]
fn garbage_and_a_stranger_are_refused_with_a_reason_and_nothing_else_happens() {
    let (_root, acc) = paired(&["phone", "tv"]);
    let (_other, strangers) = paired(&["stranger"]);
    let mut inbound = Inbound::new("home", &acc[1].device, Some(acc[1].clone()));
    let (topic, _) = state_of(&acc[0].device);
    for payload in [&b"{not json"[..], &vec![b' '; 70 * 1024][..], b"[]"] {
        let got = inbound.take(&topic, payload, now_unix_ns());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(rejected(&got).len(), 1);
    }
    // Another account's device, sealing with its own keys.
    let (topic, plain) = state_of(&strangers[0].device);
    let forged = strangers[0].guard(0).seal(&topic, &plain, now_unix_ns());
    let got = inbound.take(&topic, &forged, now_unix_ns());
    assert!(
        messages(&got).is_empty() && rejected(&got).len() == 1,
        "{got:?}"
    );
    assert_eq!(inbound.parked(), 0, "a stranger's key is not a rotation");
}

#[test]
fn a_command_is_taken_once_and_its_counter_kept_against_replay() {
    let (_root, acc) = paired(&["phone", "tv"]);
    let (phone, tv) = (&acc[0], &acc[1]);
    let mut inbound = Inbound::new("home", &tv.device, Some(tv.clone()));
    let topic = Topic::inbox("home", &tv.device).to_string();
    let cmd = Command {
        v: wire::VERSION,
        id: "c-1".into(),
        from: phone.device.clone(),
        to: tv.device.clone(),
        sent_unix_ns: now_unix_ns(),
        body: CommandBody::Pause,
    };
    let sealed = phone
        .guard(0)
        .seal(&topic, &wire::encode(&cmd), now_unix_ns());
    let got = inbound.take(&topic, &sealed, now_unix_ns());
    assert_eq!(messages(&got).len(), 1);
    let counter = got
        .iter()
        .find_map(|i| match i {
            Intake::Seen {
                sender, counter, ..
            } if *sender == phone.device => Some(*counter),
            _ => None,
        })
        .expect("the command's counter is to be kept");
    let again = inbound.take(&topic, &sealed, now_unix_ns());
    assert!(
        messages(&again).is_empty(),
        "a replay is refused: {again:?}"
    );
    // After a restart, the kept counter refuses it too.
    let mut restarted = Inbound::new("home", &tv.device, Some(tv.clone()));
    restarted.remember(&phone.device, &topic, counter);
    assert!(messages(&restarted.take(&topic, &sealed, now_unix_ns())).is_empty());
}

#[test]
fn state_sealed_with_a_rotated_key_is_parked_the_key_asked_for_and_taken_in_once_it_comes() {
    let (_root, mut acc) = paired(&["phone", "tv", "tablet"]);
    let (mut phone, tv, tablet) = (acc.remove(0), acc.remove(0), acc.remove(0));
    let new = phone.revoke_and_rotate(&tablet.device).unwrap();
    let mut tv_in = Inbound::new("home", &tv.device, Some(tv.clone()));
    let mut phone_in = Inbound::new("home", &phone.device, Some(phone.clone()));

    // The phone's state under the new key reaches the TV first.
    let (plain_topic, plain) = state_of(&phone.device);
    let sealed = phone.guard(0).seal(&plain_topic, &plain, now_unix_ns());
    let got = tv_in.take(&plain_topic, &sealed, now_unix_ns());
    assert!(
        messages(&got).is_empty(),
        "not believed before the key: {got:?}"
    );
    assert!(rejected(&got)[0].contains(&new), "{got:?}");
    assert_eq!(tv_in.parked(), 1, "kept for when the key comes");
    let (req_topic, request) = got
        .iter()
        .find_map(|i| match i {
            Intake::Publish(Outgoing {
                topic,
                payload,
                retain: true,
            }) => Some((topic.clone(), payload.clone())),
            _ => None,
        })
        .expect("the TV asks for the key");
    assert_eq!(req_topic, rekey::request_topic("home", &tv.device));

    // The phone answers the request.
    let got = phone_in.take(&req_topic, &request, now_unix_ns());
    let (ans_topic, answer) = got
        .iter()
        .find_map(|i| match i {
            Intake::Publish(o) => Some((o.topic.clone(), o.payload.clone())),
            _ => None,
        })
        .expect("the phone hands the key over");
    assert_eq!(ans_topic, rekey::answer_topic("home", &tv.device));

    // The TV takes the key, clears its request, and believes the parked state now.
    let got = tv_in.take(&ans_topic, &answer, now_unix_ns());
    assert!(
        got.iter()
            .any(|i| matches!(i, Intake::Rekeyed { current, .. } if current.key_id == new)),
        "{got:?}"
    );
    assert!(got.iter().any(|i| matches!(i,
        Intake::Publish(o) if o.topic == req_topic && o.payload.is_empty())));
    let msgs = messages(&got);
    assert_eq!(msgs.len(), 1, "the parked state is taken in: {got:?}");
    assert_eq!(tv_in.parked(), 0);
}

#[test]
fn a_roster_from_a_trusted_device_makes_its_new_device_trusted() {
    let (root, mut acc) = paired(&["phone", "tv"]);
    let (mut phone, tv) = (acc.remove(0), acc.remove(0));
    let mut tv_in = Inbound::new("home", &tv.device, Some(tv.clone()));
    // The phone pairs a speaker the TV has not heard of.
    let mut speaker =
        Account::open(&root.path().join("speaker"), "home", "speaker-1", "Speaker").unwrap();
    pair::pair_local(&mut phone, &mut speaker).unwrap();
    let (topic, plain) = state_of(&speaker.device);
    let from_speaker = speaker.guard(0).seal(&topic, &plain, now_unix_ns());
    assert!(messages(&tv_in.take(&topic, &from_speaker, now_unix_ns())).is_empty());

    let roster_topic = Topic::roster("home").to_string();
    let roster = phone
        .guard(0)
        .seal(&roster_topic, &wire::encode(&phone.roster), now_unix_ns());
    let got = tv_in.take(&roster_topic, &roster, now_unix_ns());
    assert!(
        got.iter()
            .any(|i| matches!(i, Intake::RosterChanged { revoked } if revoked.is_empty())),
        "{got:?}"
    );
    assert!(tv_in.roster().unwrap().trusts("speaker-1"));
    let again = speaker.guard(0).seal(&topic, &plain, now_unix_ns());
    assert_eq!(
        messages(&tv_in.take(&topic, &again, now_unix_ns())).len(),
        1,
        "the speaker is believed once a trusted device vouches for it"
    );
}

#[test]
fn the_first_refusal_of_each_kind_on_a_topic_is_the_one_to_warn_about() {
    let mut told = continuity::intake::Refusals::default();
    let mut warn = |topic: &str, reason: &str| told.note(topic, reason, 0).warn;
    assert!(warn("t", "payload of 1048576 bytes over the limit"));
    assert!(!warn("t", "payload of 2097152 bytes over the limit"));
    assert!(warn("u", "payload of 1048576 bytes over the limit"));
    assert!(warn("t", "not JSON"));
    // What a reason quotes (the topic, an id) is not its kind: a sixth topic of one kind in
    // a minute is counted, not named.
    let mut long_id = |t: &str| told.note(t, &format!("topic '{t}': device id is too long"), 0);
    let named = ["a", "b", "c", "d", "e", "f"].map(|t| long_id(t).warn);
    assert_eq!(named, [true, true, true, true, true, false]);
}

#[test]
fn garbage_on_thousands_of_topics_is_a_few_warnings_and_a_count_a_minute() {
    // Hostile broker (issue 27, row 6): one garbage topic per made-up device id gave one
    // warning each, and a TV's log reached 21,769 lines.
    use continuity::intake::Refusals;
    const S: u64 = 1_000_000_000;
    let mut told = Refusals::default();
    let topic = |i: usize| format!("continuity/v1/home/sessions/dev-{i:05}/state");
    let warned = (0..2000)
        .filter(|i| told.note(&topic(*i), "not JSON", *i as u64 * 1_000).warn)
        .count();
    assert_eq!(
        warned,
        Refusals::PER_KIND,
        "a few topics of the kind are named"
    );
    // Another kind has its own share.
    assert!(
        told.note(&topic(0), "a payload of 9 bytes over the limit", 2 * S)
            .warn
    );
    // The next minute: the count of what was not named, once, then a fresh share.
    let next = told.note(&topic(5000), "not JSON", 61 * S);
    let summary = next.summary.expect("the minute's count is told");
    assert!(
        summary.contains("refused 1995 more messages") && summary.contains("not JSON"),
        "{summary}"
    );
    assert!(next.warn, "a new minute names a new topic again");
    assert_eq!(told.note(&topic(5001), "not JSON", 62 * S).summary, None);
}

#[test]
fn long_topics_are_shortened_in_log_lines() {
    use continuity::intake::shorten;
    let id = "x".repeat(5000);
    let line = shorten(&id, 160);
    assert!(line.chars().count() < 200, "{line}");
    assert!(line.ends_with("(5000 bytes)"), "{line}");
    assert_eq!(
        shorten("continuity/v1/home/ask", 160),
        "continuity/v1/home/ask"
    );
    // Cut on a character, not inside one.
    assert_eq!(shorten("ééé", 2), "éé… (6 bytes)");
}

#[test]
fn a_state_stamped_beyond_five_minutes_ahead_is_refused_in_plain_mode_too() {
    let mut inbound = Inbound::new("home", "tv", None);
    let now = now_unix_ns();
    let state = |ahead_ns: u64| {
        let mut engine = Engine::new(EngineConfig::new(
            "home",
            Device {
                id: "phone".into(),
                name: "Phone".into(),
                class: DeviceClass::Phone,
            },
        ));
        let actions = engine.handle(
            now + ahead_ns,
            Observation::MediaStarted(Media {
                id: "file:a.ogg".into(),
                ..Default::default()
            }),
        );
        actions
            .into_iter()
            .find_map(|a| match a {
                continuity::engine::Action::Publish { topic, payload, .. }
                    if topic.ends_with("/state") =>
                {
                    Some((topic, payload))
                }
                _ => None,
            })
            .expect("the phone publishes its state")
    };
    let (topic, payload) = state(60 * 1_000_000_000);
    assert_eq!(messages(&inbound.take(&topic, &payload, now)).len(), 1);
    let (topic, payload) = state(6 * 60 * 1_000_000_000);
    let got = inbound.take(&topic, &payload, now);
    assert!(messages(&got).is_empty(), "{got:?}");
    assert!(rejected(&got)[0].contains("ahead"), "{got:?}");
}

/// `device`'s session state stamped `ahead_ns` ahead of now, as plain JSON.
fn state_ahead(device: &str, ahead_ns: u64) -> (String, Vec<u8>) {
    let mut e = Engine::new(EngineConfig::new(
        "home",
        Device {
            id: device.into(),
            name: device.into(),
            class: DeviceClass::Tv,
        },
    ));
    let topic = Topic::session_state("home", device).to_string();
    (
        topic,
        wire::encode(&e.session_state(now_unix_ns() + ahead_ns)),
    )
}

/// Issue 25, row 8: a device whose clock is a day behind (faketime -1d). One device a day
/// ahead is refused (its clock could be the wrong one); once two agree, this clock is the
/// one that is behind: their states are believed, and the offset is known (and said).
#[test]
fn a_clock_a_day_behind_the_account_is_found_out_when_two_devices_agree() {
    const DAY: u64 = 86_400 * 1_000_000_000;
    let mut inbound = Inbound::new("home", "laptop", None);
    let (topic, payload) = state_ahead("tv", DAY);
    let got = inbound.take(&topic, &payload, now_unix_ns());
    assert!(
        messages(&got).is_empty(),
        "one device a day ahead is refused"
    );
    assert_eq!(inbound.clock.behind_ns, 0);
    let (topic, payload) = state_ahead("phone", DAY + 3_000_000_000);
    let got = inbound.take(&topic, &payload, now_unix_ns());
    assert_eq!(messages(&got).len(), 1, "two agree: believed");
    assert!(inbound.clock.behind_ns.abs_diff(DAY) < 5_000_000_000);
    let (topic, payload) = state_ahead("tv", DAY + 1_000_000_000);
    assert_eq!(
        messages(&inbound.take(&topic, &payload, now_unix_ns())).len(),
        1
    );
    // A stamp far ahead of the account's time too (the year 2500) is still refused.
    let (topic, payload) = state_ahead("tablet", 100 * DAY);
    assert!(messages(&inbound.take(&topic, &payload, now_unix_ns())).is_empty());
}

/// An event as `device` publishes it on `events`: (plain JSON, sealed envelope).
fn event_of(acc: &Account, device: &str, id: &str) -> (Vec<u8>, Vec<u8>) {
    let e = wire::Event {
        v: 1,
        id: Some(id.into()),
        device: device.into(),
        name: wire::EventName::Started,
        at_unix_ns: now_unix_ns(),
        media_id: None,
        position_ns: None,
        session: None,
        handoff: None,
    };
    let plain = wire::encode(&e);
    let topic = Topic::events("home").to_string();
    let sealed = acc.guard(0).seal(&topic, &plain, now_unix_ns());
    (plain, sealed)
}

#[test]
fn events_handed_on_are_believed_only_as_their_recorder_signed_them() {
    let (_root, acc) = paired(&["phone", "tv", "tablet"]);
    let (phone, tv, tablet) = (&acc[0], &acc[1], &acc[2]);
    let mut inbound = Inbound::new("home", &tv.device, Some(tv.clone()));
    let json =
        |b: &[u8]| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(b).unwrap();

    // The phone's own event, as it went out on `events`: believed from whoever hands it
    // on, and as often as it comes (it is history: the store keeps it once).
    let (_, sealed) = event_of(phone, &phone.device, "e-1");
    for _ in 0..2 {
        let (e, kept) = inbound.archived_event(&json(&sealed)).unwrap();
        assert_eq!(
            (e.device.as_str(), e.id.as_deref()),
            (phone.device.as_str(), Some("e-1"))
        );
        let kept = kept.expect("the envelope is kept, to hand on in turn");
        assert_eq!(json(kept.as_bytes()), json(&sealed));
    }
    // The tablet cannot make up the phone's events: signed by the tablet, it is refused.
    let (plain, forged) = event_of(tablet, &phone.device, "e-2");
    let why = inbound.archived_event(&json(&forged)).unwrap_err();
    assert!(why.contains(&tablet.device), "names the signer: {why}");
    // Nor hand on a plain one in a sealed account, nor garbage.
    assert!(inbound.archived_event(&json(&plain)).is_err());
    assert!(
        inbound
            .archived_event(&json(br#"{"v": 1, "x": 2}"#))
            .is_err()
    );
    // A stranger's envelope is refused too.
    let (_other_root, other) = paired(&["stranger", "friend"]);
    let (_, strange) = event_of(&other[0], &other[0].device, "e-3");
    assert!(inbound.archived_event(&json(&strange)).is_err());
    // A plain device takes plain events and refuses sealed ones.
    let mut plain_inbound = Inbound::new("home", "tv", None);
    assert!(plain_inbound.archived_event(&json(&plain)).is_ok());
    assert!(plain_inbound.archived_event(&json(&sealed)).is_err());
}
