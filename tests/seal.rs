//! Sealed envelopes: the shared vectors, and every way a sealed message must fail to open.

use continuity::security::seal::{self, AccountKeys, Opener, SealError};
use continuity::wire::{self, Body, Roster, RosterEntry, Topic};
use ring::signature::Ed25519KeyPair;
use serde_json::{Value, json};

fn vectors_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/envelope.json")
}

fn secret() -> Vec<u8> {
    (0u8..32).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A device's signing key from a fixed seed (vectors must be reproducible).
fn signer(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
}

/// A roster of the given (device, seed) pairs.
fn roster(devices: &[(&str, u8)]) -> Roster {
    Roster {
        v: 1,
        devices: devices
            .iter()
            .map(|(d, seed)| RosterEntry {
                device: (*d).into(),
                name: (*d).into(),
                public_key: seal::public_key(&signer(*seed)),
                changed_unix_ns: 1,
                revoked: false,
            })
            .collect(),
        key: None,
    }
}

fn opener(keys: AccountKeys) -> Opener {
    Opener::new(vec![keys], roster(&[("phone-1", 1), ("tv-1", 2)]))
}

fn state_json(device: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "device": device, "session": "s1",
        "stamp": {"wall_ns": 1800000000000000000u64, "counter": 0, "device": device},
        "lease": {"device": device, "epoch": 0}
    }))
    .unwrap()
}

fn command_json(from: &str, to: &str, id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "id": id, "from": from, "to": to, "sent_unix_ns": 1800000000000000000u64,
        "body": {"type": "handoff-request", "handoff": "h1", "source": "phone-1"}
    }))
    .unwrap()
}

/// The vectors: what another implementation must reproduce. `UPDATE_VECTORS=1` rewrites
/// them from this implementation (then review the diff: they must not change silently).
#[test]
fn envelope_vectors_reproduce() {
    let keys = AccountKeys::derive(&secret());
    let topic = Topic::session_state("home", "phone-1").to_string();
    let plaintext = state_json("phone-1");
    let nonce: [u8; 12] = core::array::from_fn(|i| 0xa0 + i as u8);
    let mut env = seal::seal_with_nonce(&keys, &topic, "phone-1", 7, nonce, &plaintext);
    seal::sign(&mut env, &signer(1), &topic);
    let generated = json!({
        "description": "continuity sealed-envelope vector. Keys: HKDF-SHA256(salt = \"continuity v1\", ikm = secret) expanded with info \"continuity v1 seal\" (32 bytes, the AES-256-GCM key), \"continuity v1 key-id\" (first 8 bytes, hex, the key id) and \"continuity v1 media-key\" (the HMAC-SHA256 key for media keys: first 16 bytes of HMAC(media_id), hex). Associated data: \"continuity-v1\\0\" || topic || 0x00 || sender || 0x00 || counter as 8 bytes big-endian. ct = AES-256-GCM ciphertext || 16-byte tag, base64url without padding. sig = Ed25519 signature by the sender's device key (seed below, public key in the roster) over associated data || nonce || ct bytes, base64url without padding.",
        "sender_ed25519_seed_hex": hex(&[1u8; 32]),
        "sender_public_key": seal::public_key(&signer(1)),
        "secret_hex": hex(&secret()),
        "key_id": keys.key_id,
        "topic": topic,
        "sender": "phone-1",
        "counter": 7,
        "nonce_hex": hex(&nonce),
        "aad_hex": hex(&seal::associated_data(&topic, "phone-1", 7)),
        "plaintext": String::from_utf8(plaintext.clone()).unwrap(),
        "envelope": serde_json::to_value(&env).unwrap(),
        "media_id": "file:clip.ogg",
        "media_key": keys.media_key("file:clip.ogg"),
        "refusals_description": "Each refusal is a payload received on its topic by a device that holds the key of secret_hex (and no other) and the roster receiver_roster; when seen_counter is set, it has already taken that counter from the sender on that topic. It must refuse the payload with the code given (docs/PROTOCOL.md, \"Order of checks\").",
        "receiver_roster": serde_json::to_value(receiver_roster()).unwrap(),
        "refusals": refusal_cases().iter().map(|c| json!({
            "name": c.name,
            "topic": c.topic,
            "payload_text": String::from_utf8(c.payload.clone()).unwrap(),
            "seen_counter": c.seen,
            "code": c.code,
        })).collect::<Vec<_>>(),
    });
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(
            vectors_path(),
            serde_json::to_string_pretty(&generated).unwrap() + "\n",
        )
        .unwrap();
    }
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    assert_eq!(committed, generated, "the envelope vectors changed");
    // And it opens back to the plaintext message.
    let msg = opener(keys).open(&topic, &env).unwrap();
    assert!(matches!(msg.body, Body::Session(s) if s.device == "phone-1"));
}

fn sealed(counter: u64) -> (AccountKeys, String, wire::SealedEnvelope) {
    let keys = AccountKeys::derive(&secret());
    let topic = Topic::session_state("home", "phone-1").to_string();
    let env = seal::seal(
        &keys,
        &signer(1),
        &topic,
        "phone-1",
        counter,
        &state_json("phone-1"),
    )
    .unwrap();
    (keys, topic, env)
}

fn command(counter: u64) -> (AccountKeys, String, wire::SealedEnvelope) {
    let keys = AccountKeys::derive(&secret());
    let topic = Topic::inbox("home", "tv-1").to_string();
    let plain = command_json("phone-1", "tv-1", &format!("c{counter}"));
    let env = seal::seal(&keys, &signer(1), &topic, "phone-1", counter, &plain).unwrap();
    (keys, topic, env)
}

#[test]
fn a_wrong_key_a_flipped_byte_or_another_topic_does_not_open() {
    let (keys, topic, env) = sealed(1);
    // Another account's key, with the same id (a collision or a forgery): does not open.
    let other = AccountKeys::derive(&[9u8; 32]);
    let mut forged = env.clone();
    forged.sealed.key_id = other.key_id.clone();
    assert_eq!(
        opener(other).open(&topic, &forged).unwrap_err(),
        SealError::Open
    );
    // A key this device does not have.
    assert!(matches!(
        opener(AccountKeys::derive(&[7u8; 32])).open(&topic, &env),
        Err(SealError::UnknownKey(_))
    ));
    // One flipped ciphertext byte: the signature no longer holds (and the tag would not).
    let mut flipped = env.clone();
    let mut ct = flipped.sealed.ct.into_bytes();
    ct[5] = if ct[5] == b'A' { b'B' } else { b'A' };
    flipped.sealed.ct = String::from_utf8(ct).unwrap();
    assert!(matches!(
        opener(keys.clone()).open(&topic, &flipped),
        Err(SealError::BadSignature(_))
    ));
    // Moved to another device's topic: the signature covers the topic.
    let elsewhere = Topic::session_state("home", "tv-1").to_string();
    assert!(matches!(
        opener(keys.clone()).open(&elsewhere, &env),
        Err(SealError::BadSignature(_))
    ));
    // Claimed by another (paired) sender: that sender did not sign it.
    let mut claimed = env.clone();
    claimed.sealed.sender = "tv-1".into();
    assert!(matches!(
        opener(keys).open(&topic, &claimed),
        Err(SealError::BadSignature(_))
    ));
}

#[test]
fn an_insider_that_re_signs_still_cannot_move_a_message() {
    // tv-1 holds the account key too; it seals phone-1's state again and signs as itself:
    // it can only speak as tv-1, so the state claiming phone-1 is refused.
    let keys = AccountKeys::derive(&secret());
    let topic = Topic::session_state("home", "phone-1").to_string();
    let env = seal::seal(&keys, &signer(2), &topic, "tv-1", 9, &state_json("phone-1")).unwrap();
    assert!(matches!(
        opener(keys).open(&topic, &env),
        Err(SealError::Impersonation { .. })
    ));
}

/// The receiver of the refusal vectors: phone-1 and tv-1 paired, old-tab revoked.
fn receiver_roster() -> Roster {
    let mut r = roster(&[("phone-1", 1), ("tv-1", 2), ("old-tab", 4)]);
    r.devices[2].revoked = true;
    r
}

struct Refusal {
    name: &'static str,
    topic: String,
    payload: Vec<u8>,
    seen: Option<u64>,
    code: &'static str,
}

/// One payload for each refusal of the order of checks, with the code it must get.
fn refusal_cases() -> Vec<Refusal> {
    let keys = AccountKeys::derive(&secret());
    let state_topic = Topic::session_state("home", "phone-1").to_string();
    let inbox = Topic::inbox("home", "tv-1").to_string();
    let nonce: [u8; 12] = core::array::from_fn(|i| 0xb0 + i as u8);
    let signed =
        |keys: &AccountKeys, topic: &str, sender: &str, seed: u8, counter, plain: &[u8]| {
            let mut env = seal::seal_with_nonce(keys, topic, sender, counter, nonce, plain);
            seal::sign(&mut env, &signer(seed), topic);
            env
        };
    let good = signed(&keys, &state_topic, "phone-1", 1, 7, &state_json("phone-1"));
    let text = |v: &Value| serde_json::to_vec(v).unwrap();
    let edited = |f: &dyn Fn(&mut Value)| {
        let mut v = serde_json::to_value(&good).unwrap();
        f(&mut v);
        text(&v)
    };
    let case = |name, topic: &str, payload, seen, code| Refusal {
        name,
        topic: topic.to_owned(),
        payload,
        seen,
        code,
    };
    // AES-GCM sealed with counter 7 in the associated data, then renumbered 8 and signed
    // as 8: the signature holds, the tag does not.
    let mut renumbered = seal::seal_with_nonce(
        &keys,
        &state_topic,
        "phone-1",
        7,
        nonce,
        &state_json("phone-1"),
    );
    renumbered.sealed.counter = 8;
    seal::sign(&mut renumbered, &signer(1), &state_topic);
    let command = signed(
        &keys,
        &inbox,
        "phone-1",
        1,
        7,
        &command_json("phone-1", "tv-1", "c7"),
    );
    vec![
        case(
            "version 2",
            &state_topic,
            edited(&|v| v["v"] = 2.into()),
            None,
            "version",
        ),
        case(
            "no signature",
            &state_topic,
            edited(&|v| {
                v["sealed"].as_object_mut().unwrap().remove("sig");
            }),
            None,
            "field",
        ),
        case(
            "a key id that is not 16 hex digits",
            &state_topic,
            edited(&|v| v["sealed"]["key_id"] = "k1".into()),
            None,
            "field",
        ),
        case(
            "ciphertext shorter than the tag",
            &state_topic,
            edited(&|v| v["sealed"]["ct"] = "q83vEjRWeJA".into()),
            None,
            "field",
        ),
        case(
            "plain message on a sealed account",
            &state_topic,
            state_json("phone-1"),
            None,
            "plaintext",
        ),
        case(
            "empty clear of a state",
            &state_topic,
            Vec::new(),
            None,
            "unsigned-clear",
        ),
        case(
            "signature with non-zero trailing bits",
            &state_topic,
            edited(&|v| {
                let sig = v["sealed"]["sig"].as_str().unwrap();
                v["sealed"]["sig"] = format!("{}B", &sig[..85]).into();
            }),
            None,
            "encoding",
        ),
        case(
            "sender not in the roster",
            &state_topic,
            text(
                &serde_json::to_value(signed(
                    &keys,
                    &state_topic,
                    "tab-9",
                    3,
                    7,
                    &state_json("phone-1"),
                ))
                .unwrap(),
            ),
            None,
            "unknown-signer",
        ),
        case(
            "revoked sender",
            &state_topic,
            text(
                &serde_json::to_value(signed(
                    &keys,
                    &state_topic,
                    "old-tab",
                    4,
                    7,
                    &state_json("phone-1"),
                ))
                .unwrap(),
            ),
            None,
            "revoked",
        ),
        case(
            "signed with another key than the sender's",
            &state_topic,
            text(
                &serde_json::to_value(signed(
                    &keys,
                    &state_topic,
                    "phone-1",
                    3,
                    7,
                    &state_json("phone-1"),
                ))
                .unwrap(),
            ),
            None,
            "bad-signature",
        ),
        case(
            "moved to another device's topic",
            &Topic::session_state("home", "tv-1").to_string(),
            text(&serde_json::to_value(&good).unwrap()),
            None,
            "bad-signature",
        ),
        case(
            "sealed with a key the receiver lacks",
            &state_topic,
            text(
                &serde_json::to_value(signed(
                    &AccountKeys::derive(&[7u8; 32]),
                    &state_topic,
                    "phone-1",
                    1,
                    7,
                    &state_json("phone-1"),
                ))
                .unwrap(),
            ),
            None,
            "unknown-key",
        ),
        case(
            "renumbered after sealing",
            &state_topic,
            text(&serde_json::to_value(&renumbered).unwrap()),
            None,
            "open",
        ),
        case(
            "sealed content that is not a state",
            &state_topic,
            text(
                &serde_json::to_value(signed(&keys, &state_topic, "phone-1", 1, 7, br#"{"v":1}"#))
                    .unwrap(),
            ),
            None,
            "inner",
        ),
        case(
            "a command replayed",
            &inbox,
            text(&serde_json::to_value(&command).unwrap()),
            Some(7),
            "replay",
        ),
        case(
            "an older state",
            &state_topic,
            text(&serde_json::to_value(&good).unwrap()),
            Some(8),
            "replay",
        ),
        case(
            "tv-1 speaking as phone-1",
            &state_topic,
            text(
                &serde_json::to_value(signed(
                    &keys,
                    &state_topic,
                    "tv-1",
                    2,
                    7,
                    &state_json("phone-1"),
                ))
                .unwrap(),
            ),
            None,
            "impersonation",
        ),
    ]
}

#[test]
fn every_refusal_vector_is_refused_with_its_code() {
    for c in refusal_cases() {
        let mut o = Opener::new(vec![AccountKeys::derive(&secret())], receiver_roster());
        if let Some(seen) = c.seen {
            let sender = serde_json::from_slice::<Value>(&c.payload).unwrap()["sealed"]["sender"]
                .as_str()
                .unwrap()
                .to_owned();
            o.remember(&sender, &c.topic, seen);
        }
        match o.decode(&c.topic, &c.payload) {
            Ok(_) => panic!("{}: taken", c.name),
            Err(e) => assert_eq!(e.code(), c.code, "{}: {e}", c.name),
        }
    }
    // The same envelope, not seen before, opens: the refusals are for what they say.
    let good = refusal_cases()
        .into_iter()
        .find(|c| c.name == "an older state")
        .unwrap();
    let mut o = Opener::new(vec![AccountKeys::derive(&secret())], receiver_roster());
    assert!(o.decode(&good.topic, &good.payload).is_ok());
}

#[test]
fn wrongly_signed_unknown_and_revoked_senders_are_refused() {
    let (keys, topic, env) = command(10);
    // Signed by a key that is not phone-1's.
    let mut wrong = env.clone();
    seal::sign(&mut wrong, &signer(3), &topic);
    assert!(matches!(
        opener(keys.clone()).open(&topic, &wrong),
        Err(SealError::BadSignature(_))
    ));
    // A device that is not in the roster.
    let stranger = Opener::new(vec![keys.clone()], roster(&[("tv-1", 2)])).open(&topic, &env);
    assert!(matches!(stranger, Err(SealError::UnknownSigner(_))));
    // A revoked device.
    let mut r = roster(&[("phone-1", 1), ("tv-1", 2)]);
    r.devices[0].revoked = true;
    assert!(matches!(
        Opener::new(vec![keys], r).open(&topic, &env),
        Err(SealError::Revoked(_))
    ));
}

#[test]
fn replayed_and_older_counters_are_refused() {
    // Commands: each counter once.
    let t = 1_800_000_000_000_000;
    let (keys, topic, first) = command(t);
    let mut o = opener(keys.clone());
    o.open(&topic, &first).unwrap();
    assert!(matches!(
        o.open(&topic, &first),
        Err(SealError::Replay { got, seen, .. }) if got == t && seen == t
    ));
    // One that a broker delivers a little late (a clock probe at QoS 0 behind a command
    // sent after it at QoS 1: MQTT orders only within a QoS) is taken, once.
    let (_, _, late) = command(t - 1_000_000);
    assert!(o.open(&topic, &late).is_ok(), "a second late: taken");
    assert!(matches!(
        o.open(&topic, &late),
        Err(SealError::Replay { .. })
    ));
    // Beyond the window: refused.
    let (_, _, older) = command(t - seal::LATE_WINDOW);
    assert!(matches!(
        o.open(&topic, &older),
        Err(SealError::Replay { got, .. }) if got == t - seal::LATE_WINDOW
    ));
    let (_, _, newer) = command(t + 1);
    assert!(o.open(&topic, &newer).is_ok());
    // The window moves with the greatest counter: what falls out of it is refused after.
    let (_, _, much_newer) = command(t + seal::LATE_WINDOW + 10);
    assert!(o.open(&topic, &much_newer).is_ok());
    let (_, _, fell_out) = command(t + 2);
    assert!(matches!(
        o.open(&topic, &fell_out),
        Err(SealError::Replay { .. })
    ));

    // Retained state: the broker delivers its copy again after a reconnect (accepted), an
    // older one is refused.
    let (_, state_topic, state) = sealed(20);
    o.open(&state_topic, &state).unwrap();
    assert!(o.open(&state_topic, &state).is_ok());
    let (_, _, stale) = sealed(19);
    assert!(matches!(
        o.open(&state_topic, &stale),
        Err(SealError::Replay { got: 19, .. })
    ));
    // Remembered across a restart (the node keeps commands' greatest counters in its
    // store): nothing at or below it, late or not.
    let mut restarted = opener(keys);
    restarted.remember("phone-1", &topic, t + 1);
    for replayed in [&newer, &late] {
        assert!(matches!(
            restarted.open(&topic, replayed),
            Err(SealError::Replay { .. })
        ));
    }
}

#[test]
fn plain_messages_are_refused_but_availability() {
    let keys = AccountKeys::derive(&secret());
    let mut o = opener(keys);
    let topic = Topic::session_state("home", "phone-1").to_string();
    assert_eq!(
        o.decode(&topic, &state_json("phone-1")).unwrap_err(),
        SealError::Plaintext
    );
    let avail = Topic::availability("home", "phone-1").to_string();
    assert!(
        o.decode(&avail, br#"{"v":1,"device":"phone-1","status":"online"}"#)
            .is_ok()
    );
}

#[test]
fn anyone_can_clear_a_retained_topic_on_the_broker_but_devices_do_not_believe_it() {
    let mut o = opener(AccountKeys::derive(&secret()));
    let keys = AccountKeys::derive(&secret());
    for topic in [
        Topic::session_state("home", "phone-1"),
        Topic::device_info("home", "phone-1"),
        Topic::resume_key("home", keys.media_key("file:film.mkv")),
    ] {
        assert_eq!(
            o.decode(&topic.to_string(), b"").unwrap_err(),
            SealError::UnsignedClear,
            "{topic}"
        );
    }
    // Availability is plain anyway (the broker's last will): its clear is taken.
    let avail = Topic::availability("home", "phone-1").to_string();
    assert_eq!(o.decode(&avail, b"").unwrap().body, Body::Cleared);
}

#[test]
fn counters_only_grow_across_restarts() {
    let mut c = seal::Counter::new(0);
    let now = 1_800_000_000_000_000_000u64;
    let a = c.next(now);
    let b = c.next(now);
    assert!(b > a);
    let floor = c.take_reservation().expect("a floor to keep");
    assert!(floor > b);
    // A restart with the clock set back an hour still counts above the kept floor.
    let mut after = seal::Counter::new(floor);
    assert!(after.next(now - 3_600_000_000_000) > b);
}

#[test]
fn media_keys_are_keyed_and_hide_the_id() {
    let a = AccountKeys::derive(&[1u8; 32]);
    let b = AccountKeys::derive(&[2u8; 32]);
    let ka = a.media_key("file:Secret Film.ogg");
    assert_eq!(ka.len(), 32);
    assert_eq!(ka, a.media_key("file:Secret Film.ogg"));
    assert_ne!(
        ka,
        b.media_key("file:Secret Film.ogg"),
        "another account, another key"
    );
    assert_ne!(ka, wire::media_key("file:Secret Film.ogg"));
}

#[test]
fn sealed_envelopes_pass_the_wire_decoder() {
    let (_, topic, env) = sealed(3);
    let msg = wire::decode(&topic, &wire::encode(&env)).unwrap();
    assert!(matches!(msg.body, Body::Sealed(_)));
}

#[test]
fn a_device_speaks_through_its_helpers_and_no_one_else_does() {
    let keys = AccountKeys::derive(&secret());
    let inbox = Topic::inbox("home", "phone-1").to_string();
    let sent_as = |from: &str, counter: u64| {
        let env = seal::seal(
            &keys,
            &signer(2),
            &inbox,
            "tv-1",
            counter,
            &command_json(from, "phone-1", &format!("c{counter}")),
        )
        .unwrap();
        opener(keys.clone()).open(&inbox, &env)
    };
    // The command line run on the TV: `tv-1~<name>`, with an inbox of its own.
    let helper = wire::helper_id("tv-1", "view-1");
    assert_eq!(helper, "tv-1~view-1");
    assert!(sent_as(&helper, 1).is_ok(), "tv-1's helper speaks for it");
    // Not a dot: RabbitMQ makes it a topic level, and it no longer marks a helper.
    assert!(matches!(
        sent_as("tv-1.view-1", 2),
        Err(SealError::Impersonation { .. })
    ));
    // Another device's helper, or one whose id merely begins the same way.
    for other in ["phone-1~view-1", "tv-10~view-1", "tv-1-view-1"] {
        assert!(
            matches!(sent_as(other, 3), Err(SealError::Impersonation { .. })),
            "tv-1 speaking as {other}"
        );
    }
}

#[test]
fn no_device_is_paired_under_a_helpers_id() {
    // A roster entry (or a signer) named like a helper would let a device speak for it.
    let mut r = roster(&[("phone-1", 1), ("tv-1", 2)]);
    r.devices[1].device = "phone-1~tv".into();
    let topic = Topic::roster("home").to_string();
    let err = wire::decode(&topic, &serde_json::to_vec(&r).unwrap())
        .expect_err("a roster with a helper's id")
        .to_string();
    assert!(err.contains("devices[1].device"), "{err}");
    assert!(wire::check_device_id("phone-1~tv").is_err());
    assert!(wire::check_id("phone-1~tv").is_ok());
    assert!(wire::check_id("~tv").is_err());
}
