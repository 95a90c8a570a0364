//! Makes the fuzzers' fixture and seed corpus (`fuzz/fixture/`, `fuzz/corpus/`): a paired
//! phone and TV of account `home`, and real messages between them (sealed and plain), pairing
//! messages and store rows, so that the fuzzers start from inputs that go deep.
//!
//! `cargo run --example fuzz_corpus` (run once; the output is committed). The fixture is
//! made only if it is missing: the sealed seeds are sealed with its keys.

use std::path::{Path, PathBuf};

use continuity::engine::{Action, Engine, EngineConfig, Observation};
use continuity::model::{Device, DeviceClass, Media, PlayState, SECOND_NS};
use continuity::security::account::Account;
use continuity::security::pair::{self, Host, Joiner, Party};
use continuity::security::seal;
use continuity::wire::{self, Topic};

const ACCOUNT: &str = "home";
const FILM: &str = "file:Long Film.ogg";
const NOW: u64 = 1_800_000_000_000_000_000;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn open(dir: &Path, name: &str) -> Account {
    let id = std::fs::read_to_string(dir.join("device-id")).unwrap();
    Account::open(dir, ACCOUNT, id.trim(), name).unwrap()
}

/// Write the seeds of `target`, numbered.
fn write(target: &str, seeds: &[Vec<u8>]) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed).unwrap();
    }
    println!("{target}: {} seeds", seeds.len());
}

fn main() {
    let fixture = fuzz_dir().join("fixture");
    let (phone_dir, tv_dir) = (fixture.join("phone"), fixture.join("tv"));
    if !phone_dir.join("device-id").exists() {
        pair::pair_dirs(ACCOUNT, &[(&phone_dir, "phone"), (&tv_dir, "tv")]).unwrap();
    }
    let (phone, tv) = (open(&phone_dir, "phone"), open(&tv_dir, "tv"));

    // What the phone publishes as it plays, pauses and hands off: topic and plain payload.
    let mut cfg = EngineConfig::new(
        ACCOUNT,
        Device {
            id: phone.device.clone(),
            name: "Phone".into(),
            class: DeviceClass::Phone,
        },
    );
    cfg.media_keys = phone.opener().media_keys();
    let mut engine = Engine::new(cfg);
    let film = Media {
        id: FILM.into(),
        uri: Some("file:///films/Long%20Film.ogg".into()),
        title: Some("Long Film".into()),
        duration_ns: Some(7_200 * SECOND_NS),
        ..Default::default()
    };
    let mut actions = engine.announce(NOW);
    actions.extend(engine.handle(NOW, Observation::MediaStarted(film)));
    for state in [PlayState::Playing, PlayState::Paused] {
        actions.extend(engine.handle(
            NOW + SECOND_NS,
            Observation::Playback {
                position_ns: 509 * SECOND_NS,
                state,
                rate: 1.0,
            },
        ));
    }
    actions.extend(engine.request_handoff(NOW, &tv.device, &phone.device).1);
    let mut published: Vec<(String, Vec<u8>)> = actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Publish { topic, payload, .. } => Some((topic, payload)),
            _ => None,
        })
        .collect();
    published.push((
        Topic::roster(ACCOUNT).to_string(),
        wire::encode(&phone.roster),
    ));

    // The fuzz targets' topic list (fuzz/src/lib.rs): an input's first byte picks one.
    let media_key = tv.opener().media_keys().key(FILM);
    let topics = [
        Topic::session_state(ACCOUNT, &phone.device).to_string(),
        Topic::device_info(ACCOUNT, &phone.device).to_string(),
        Topic::availability(ACCOUNT, &phone.device).to_string(),
        Topic::resume_key(ACCOUNT, media_key).to_string(),
        Topic::inbox(ACCOUNT, &tv.device).to_string(),
        Topic::events(ACCOUNT).to_string(),
        Topic::roster(ACCOUNT).to_string(),
    ];
    let mut guard = phone.guard(0);
    let mut intake = Vec::new();
    for (topic, payload) in &published {
        let Some(index) = topics.iter().position(|t| t == topic) else {
            continue;
        };
        let sealed = if topic.ends_with("/availability") {
            payload.clone()
        } else {
            guard.seal(topic, payload, NOW)
        };
        for bytes in [sealed, payload.clone()] {
            let mut seed = vec![index as u8];
            seed.extend(bytes);
            intake.push(seed);
        }
    }
    write("intake", &intake);
    write("wire", &intake);

    // Pairing: a host's hello, a joiner's answer, the host's reply.
    let (mut host, hello) = Host::start(&tv, "TV", NOW, 120 * SECOND_NS).unwrap();
    let me = Party {
        device: phone.device.clone(),
        name: "Phone".into(),
    };
    let mut joiner = Joiner::new(ACCOUNT, me, seal::public_key(&phone.signer)).unwrap();
    let mut pairing = vec![pair::encode(&hello)];
    if let Ok((out, _)) = joiner.handle(NOW, &hello) {
        for msg in out {
            pairing.push(pair::encode(&msg));
            if let Ok(replies) = host.handle(NOW, &msg) {
                pairing.extend(replies.iter().map(pair::encode));
            }
        }
    }
    write("pairing", &pairing);

    // Store rows: a resume point, a session state, a seen topic (NUL-separated).
    let state = published
        .iter()
        .find(|(t, _)| t.ends_with("/state"))
        .map(|(_, p)| p.clone())
        .unwrap();
    let point = published
        .iter()
        .find(|(t, _)| t.ends_with("/resume"))
        .map(|(_, p)| p.clone())
        .unwrap();
    let mut row = point.clone();
    row.push(0);
    row.extend(&state);
    row.push(0);
    row.extend(topics[4].as_bytes());
    write("store", &[row, point, state]);
}
