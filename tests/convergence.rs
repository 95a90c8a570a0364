//! Convergence: any delivery order, with duplicates, of the same set of states leaves every
//! replica with the same result, the state with the greatest stamp per key.

use std::collections::BTreeMap;

use continuity::engine::Directory;
use continuity::hlc::Stamp;
use continuity::model::{Anchor, Media, PlayState};
use continuity::wire::{self, Lease, ResumePoint, SessionState, Topic};
use proptest::prelude::*;

/// One generated state: a session (keyed by its device) or a resume point (keyed by media,
/// written by any device). Small ranges so that equal walls and counters are common.
#[derive(Debug, Clone)]
struct Gen {
    resume: bool,
    key: u8,
    wall: u64,
    counter: u32,
    device: u8,
    position: u64,
}

fn message(g: &Gen) -> (String, Vec<u8>) {
    let media_id = format!("file:m{}.ogg", g.key);
    if g.resume {
        let device = format!("d{}", g.device);
        let p = ResumePoint {
            v: 1,
            media: Media {
                id: media_id.clone(),
                ..Default::default()
            },
            position_ns: g.position,
            finished: false,
            audio: None,
            subtitle: None,
            device: device.clone(),
            stamp: Stamp {
                wall_ns: g.wall,
                counter: g.counter,
                device,
            },
        };
        (
            Topic::resume("acct", &media_id).to_string(),
            wire::encode(&p),
        )
    } else {
        // A session is only ever written by its own device.
        let device = format!("d{}", g.key);
        let s = SessionState {
            v: 1,
            device: device.clone(),
            session: "s".into(),
            stamp: Stamp {
                wall_ns: g.wall,
                counter: g.counter,
                device: device.clone(),
            },
            media: Some(Media {
                id: media_id,
                ..Default::default()
            }),
            anchor: Some(Anchor {
                position_ns: g.position,
                at_unix_ns: g.wall,
                rate: 1.0,
                state: PlayState::Playing,
            }),
            audio: None,
            subtitle: None,
            queue: vec![],
            lease: Lease { device, epoch: 0 },
        };
        (
            Topic::session_state("acct", &s.device).to_string(),
            wire::encode(&s),
        )
    }
}

fn gen_state() -> impl Strategy<Value = Gen> {
    (
        any::<bool>(),
        0u8..3,
        0u64..4,
        0u32..2,
        0u8..3,
        0u64..1_000_000,
    )
        .prop_map(|(resume, key, wall, counter, device, position)| Gen {
            resume,
            key,
            wall,
            counter,
            device,
            position,
        })
}

/// A set of states in which no two share a stamp on the same key (a device never stamps
/// two different states alike: the clock only moves forward).
fn gen_set() -> impl Strategy<Value = Vec<Gen>> {
    prop::collection::vec(gen_state(), 1..24).prop_map(|v| {
        let mut seen = BTreeMap::new();
        for g in v {
            let writer = if g.resume { g.device } else { g.key };
            seen.entry((g.resume, g.key, g.wall, g.counter, writer))
                .or_insert(g);
        }
        seen.into_values().collect()
    })
}

/// Each delivery: every message at least once, some twice or more, in any order.
fn gen_delivery(n: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..n, 0..n * 2).prop_flat_map(move |extra| {
        let mut all: Vec<usize> = (0..n).collect();
        all.extend(extra);
        Just(all).prop_shuffle()
    })
}

fn replica(messages: &[(String, Vec<u8>)], order: &[usize]) -> Directory {
    let mut d = Directory::default();
    for &i in order {
        let (topic, payload) = &messages[i];
        let msg = wire::decode(topic, payload).expect("generated messages are valid");
        d.apply(&msg);
    }
    d
}

fn summary(d: &Directory) -> Vec<String> {
    let mut out: Vec<String> = d
        .sessions
        .iter()
        .map(|(k, s)| format!("session {k} {:?} {:?}", s.stamp, s.anchor))
        .collect();
    out.extend(
        d.resume
            .iter()
            .map(|(k, r)| format!("resume {k} {:?} {}", r.stamp, r.position_ns)),
    );
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn every_delivery_order_converges(
        (states, orders) in gen_set().prop_flat_map(|s| {
            let n = s.len();
            (Just(s), prop::collection::vec(gen_delivery(n), 3))
        })
    ) {
        let messages: Vec<_> = states.iter().map(message).collect();
        let replicas: Vec<_> = orders.iter().map(|o| summary(&replica(&messages, o))).collect();

        // The expected result: per key, the state with the greatest stamp.
        let mut expected: BTreeMap<(bool, u8), &Gen> = BTreeMap::new();
        for g in &states {
            let writer = |g: &Gen| if g.resume { g.device } else { g.key };
            let stamp = |g: &Gen| (g.wall, g.counter, format!("d{}", writer(g)));
            expected
                .entry((g.resume, g.key))
                .and_modify(|best| if stamp(g) > stamp(best) { *best = g })
                .or_insert(g);
        }
        let in_order: Vec<usize> = (0..messages.len()).collect();
        let reference = replica(&messages, &in_order);
        prop_assert_eq!(
            reference.sessions.len() + reference.resume.len(),
            expected.len()
        );
        for ((resume, key), g) in &expected {
            if *resume {
                let r = reference.resume_point(&format!("file:m{key}.ogg")).unwrap();
                prop_assert_eq!(r.position_ns, g.position);
            } else {
                let s = reference.sessions.get(&format!("d{key}")).unwrap();
                prop_assert_eq!(s.anchor.unwrap().position_ns, g.position);
            }
        }
        for r in &replicas {
            prop_assert_eq!(r, &summary(&reference));
        }
    }
}
