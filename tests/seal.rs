//! Sealed envelopes: the shared vectors, and every way a sealed message must fail to open.

use continuity::seal::{self, AccountKeys, Opener, SealError};
use continuity::wire::{self, Body, Topic};
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

fn state_json(device: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "v": 1, "device": device, "session": "s1",
        "stamp": {"wall_ns": 1800000000000000000u64, "counter": 0, "device": device},
        "lease": {"device": device, "epoch": 0}
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
    let env = seal::seal_with_nonce(&keys, &topic, "phone-1", 7, nonce, &plaintext);
    let generated = json!({
        "description": "continuity sealed-envelope vector. Keys: HKDF-SHA256(salt = \"continuity v1\", ikm = secret) expanded with info \"continuity v1 seal\" (32 bytes, the AES-256-GCM key), \"continuity v1 key-id\" (first 8 bytes, hex, the key id) and \"continuity v1 media-key\" (the HMAC-SHA256 key for media keys: first 16 bytes of HMAC(media_id), hex). Associated data: \"continuity-v1\\0\" || topic || 0x00 || sender || 0x00 || counter as 8 bytes big-endian. ct = AES-256-GCM ciphertext || 16-byte tag, base64url without padding.",
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
    let mut opener = Opener::new(vec![keys]);
    let msg = opener.open(&topic, &env).unwrap();
    assert!(matches!(msg.body, Body::Session(s) if s.device == "phone-1"));
}

fn sealed(counter: u64) -> (AccountKeys, String, wire::SealedEnvelope) {
    let keys = AccountKeys::derive(&secret());
    let topic = Topic::session_state("home", "phone-1").to_string();
    let env = seal::seal(&keys, &topic, "phone-1", counter, &state_json("phone-1")).unwrap();
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
        Opener::new(vec![other]).open(&topic, &forged).unwrap_err(),
        SealError::Open
    );
    // A key this device does not have.
    assert!(matches!(
        Opener::new(vec![AccountKeys::derive(&[7u8; 32])]).open(&topic, &env),
        Err(SealError::UnknownKey(_))
    ));
    // One flipped ciphertext byte.
    let mut flipped = env.clone();
    let mut ct = flipped.sealed.ct.into_bytes();
    ct[5] = if ct[5] == b'A' { b'B' } else { b'A' };
    flipped.sealed.ct = String::from_utf8(ct).unwrap();
    assert_eq!(
        Opener::new(vec![keys.clone()])
            .open(&topic, &flipped)
            .unwrap_err(),
        SealError::Open
    );
    // Moved to another device's topic, or claimed by another sender.
    let elsewhere = Topic::session_state("home", "tv-1").to_string();
    assert_eq!(
        Opener::new(vec![keys.clone()])
            .open(&elsewhere, &env)
            .unwrap_err(),
        SealError::Open
    );
    let mut claimed = env.clone();
    claimed.sealed.sender = "tv-1".into();
    assert_eq!(
        Opener::new(vec![keys]).open(&topic, &claimed).unwrap_err(),
        SealError::Open
    );
}

#[test]
fn replayed_and_older_counters_are_refused() {
    let (keys, topic, first) = sealed(5);
    let mut opener = Opener::new(vec![keys.clone()]);
    opener.open(&topic, &first).unwrap();
    assert!(matches!(
        opener.open(&topic, &first),
        Err(SealError::Replay {
            got: 5,
            seen: 5,
            ..
        })
    ));
    let older = seal::seal(&keys, &topic, "phone-1", 4, &state_json("phone-1")).unwrap();
    assert!(matches!(
        opener.open(&topic, &older),
        Err(SealError::Replay { got: 4, .. })
    ));
    let newer = seal::seal(&keys, &topic, "phone-1", 6, &state_json("phone-1")).unwrap();
    assert!(opener.open(&topic, &newer).is_ok());
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
