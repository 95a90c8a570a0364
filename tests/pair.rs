//! Pairing: matching codes pair; a tampered exchange gives different codes and shares
//! nothing; an expired or reused exchange fails.

use continuity::security::account::Account;
use continuity::security::pair::{self, Host, Joiner, PairError, PairMsg, Party};
use continuity::security::seal;

const NOW: u64 = 1_800_000_000_000_000_000;
const TTL: u64 = 120_000_000_000;

fn account(dir: &std::path::Path, device: &str) -> Account {
    Account::open(dir, "home", device, device).unwrap()
}

fn joiner(acc: &Account) -> Joiner {
    Joiner::new(
        "home",
        Party {
            device: acc.device.clone(),
            name: acc.device.clone(),
        },
        seal::public_key(&acc.signer),
    )
    .unwrap()
}

/// Deliver messages to the host; what it answers.
fn to_host(h: &mut Host, msgs: &[PairMsg]) -> Vec<PairMsg> {
    msgs.iter()
        .flat_map(|m| h.handle(NOW, m).unwrap())
        .collect()
}

fn to_joiner(j: &mut Joiner, msgs: &[PairMsg]) -> (Vec<PairMsg>, Option<pair::Joined>) {
    let mut out = Vec::new();
    let mut joined = None;
    for m in msgs {
        let (o, d) = j.handle(NOW, m).unwrap();
        out.extend(o);
        joined = joined.or(d);
    }
    (out, joined)
}

/// An exchange between `host` and `joiner` up to the codes: hello, commit, reveal, open.
fn opened(host: &Account, joiner_account: &Account) -> (Host, Joiner) {
    let (mut h, hello) = Host::start(host, "TV", NOW, TTL).unwrap();
    let mut j = joiner(joiner_account);
    let (commit, _) = to_joiner(&mut j, &[hello]);
    let reveal = to_host(&mut h, &commit);
    let (open, _) = to_joiner(&mut j, &reveal);
    assert!(to_host(&mut h, &open).is_empty());
    (h, j)
}

#[test]
fn matching_codes_pair_the_devices() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut tv = account(a.path(), "tv");
    let mut phone = account(b.path(), "phone");
    assert_ne!(tv.secret(), phone.secret(), "two accounts before pairing");

    let (mut h, hello) = Host::start(&tv, "TV", NOW, TTL).unwrap();
    let mut j = joiner(&phone);
    let (commit, _) = to_joiner(&mut j, &[hello]);
    let reveal = to_host(&mut h, &commit);
    let (open, _) = to_joiner(&mut j, &reveal);
    assert!(to_host(&mut h, &open).is_empty());
    let code = h.code().expect("a code on the host").to_owned();
    assert_eq!(j.code(), Some(code.as_str()), "both show the same code");
    assert_eq!(code.len(), 7, "six digits: {code}");

    assert!(
        h.confirm(NOW, true).unwrap().is_empty(),
        "waits for the joiner"
    );
    let welcome = to_host(&mut h, &j.confirm(true).unwrap());
    let (_, joined) = to_joiner(&mut j, &welcome);
    let joined = joined.expect("welcomed");
    pair::adopt(&mut phone, &joined).unwrap();
    tv.merge_roster(h.roster()).unwrap();

    assert_eq!(tv.secret(), phone.secret(), "one account now");
    for acc in [&tv, &phone] {
        assert!(acc.roster.trusts("tv") && acc.roster.trusts("phone"));
    }
    // Kept: opening the config dir again gives the same account.
    let again = account(b.path(), "phone");
    assert_eq!(again.secret(), tv.secret());
    assert!(again.roster.trusts("tv"));
}

#[test]
fn a_tampered_exchange_gives_different_codes_and_shares_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tv = account(a.path(), "tv");
    let phone = account(b.path(), "phone");

    let (mut h, hello) = Host::start(&tv, "TV", NOW, TTL).unwrap();
    let mut j = joiner(&phone);
    let (commit, _) = to_joiner(&mut j, &[hello]);
    let mut reveal = to_host(&mut h, &commit);
    // A man in the middle changes the host's X25519 key on its way.
    if let PairMsg::Reveal { x25519, .. } = &mut reveal[0] {
        let mut bytes = x25519.clone().into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        *x25519 = String::from_utf8(bytes).unwrap();
    }
    let (open, _) = to_joiner(&mut j, &reveal);
    to_host(&mut h, &open);
    assert_ne!(h.code(), j.code(), "the people see different codes");

    // Even if someone confirms anyway, nothing is shared: the keys differ.
    h.confirm(NOW, true).unwrap();
    let confirm = j.confirm(true).unwrap();
    assert_eq!(h.handle(NOW, &confirm[0]).unwrap_err(), PairError::Open);
    assert!(h.joined().is_none());
}

#[test]
fn a_joiner_that_changes_its_key_after_committing_is_caught() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tv = account(a.path(), "tv");
    let phone = account(b.path(), "phone");
    let (mut h, hello) = Host::start(&tv, "TV", NOW, TTL).unwrap();
    let mut j = joiner(&phone);
    let (commit, _) = to_joiner(&mut j, &[hello]);
    let reveal = to_host(&mut h, &commit);
    let (mut open, _) = to_joiner(&mut j, &reveal);
    if let PairMsg::Open { nonce, .. } = &mut open[0] {
        let mut bytes = nonce.clone().into_bytes();
        bytes[0] = if bytes[0] == b'A' { b'B' } else { b'A' };
        *nonce = String::from_utf8(bytes).unwrap();
    }
    assert_eq!(h.handle(NOW, &open[0]).unwrap_err(), PairError::Commitment);
}

#[test]
fn an_expired_or_reused_exchange_fails() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let tv = account(a.path(), "tv");
    let phone = account(b.path(), "phone");
    let tablet = account(c.path(), "tablet");

    // Expired: the joiner refuses an old hello, the host an old commit.
    let (mut h, hello) = Host::start(&tv, "TV", NOW, TTL).unwrap();
    let late = NOW + TTL + 1;
    assert_eq!(
        joiner(&phone).handle(late, &hello).unwrap_err(),
        PairError::Expired
    );
    let (commit, _) = joiner(&phone).handle(NOW, &hello).unwrap();
    assert_eq!(h.handle(late, &commit[0]).unwrap_err(), PairError::Expired);

    // Reused: the first joiner gets the reveal, a second one is turned away.
    let (mut h, hello) = Host::start(&tv, "TV", NOW, TTL).unwrap();
    let mut first = joiner(&phone);
    let (c1, _) = to_joiner(&mut first, std::slice::from_ref(&hello));
    assert!(matches!(to_host(&mut h, &c1)[0], PairMsg::Reveal { .. }));
    let mut second = joiner(&tablet);
    let (c2, _) = to_joiner(&mut second, &[hello]);
    let answer = to_host(&mut h, &c2);
    assert!(matches!(&answer[0], PairMsg::Refused { to, .. } if to == "tablet"));
    assert!(matches!(
        second.handle(NOW, &answer[0]),
        Err(PairError::Refused(_))
    ));
}

#[test]
fn declined_codes_share_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tv = account(a.path(), "tv");
    let phone = account(b.path(), "phone");
    let (mut h, mut j) = opened(&tv, &phone);
    // The joiner's person says no; the host's says yes: no welcome.
    let decline = j.confirm(false).unwrap();
    h.confirm(NOW, true).unwrap();
    assert!(matches!(
        h.handle(NOW, &decline[0]),
        Err(PairError::Declined(_))
    ));
    assert!(h.joined().is_none());
}

/// The pairing vector (`tests/vectors/pairing.json`): one whole exchange with fixed keys,
/// nonces and clocks, byte for byte, and every derived value another implementation needs
/// to check its own (transcript bytes and hash, code, shared secret, exchange key, the
/// welcome's plaintext). This test makes the exchange with the library's own `Host` and
/// `Joiner` (their randomness drawn from the fixed bytes) and compares with the committed
/// file; `UPDATE_VECTORS=1` rewrites it.
#[test]
#[allow(deprecated)] // ring's fixed-bytes generator: the only way to fix an X25519 key.
fn the_pairing_vector_is_what_the_library_sends() {
    use base64::Engine as _;
    use continuity::wire::{Roster, RosterEntry};
    use ring::test::rand::FixedSliceSequenceRandom;
    use serde_json::{Value, json};

    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let unb64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let fill = |start: u8, n: usize| {
        (0..n)
            .map(|i| start.wrapping_add(i as u8))
            .collect::<Vec<u8>>()
    };

    let secret = fill(0x00, 32);
    let host_seed: [u8; 32] = fill(0x40, 32).try_into().unwrap();
    let joiner_seed: [u8; 32] = fill(0x60, 32).try_into().unwrap();
    let exchange_bytes = fill(0xa0, 6);
    let host_x = fill(0x80, 32);
    let host_nonce = fill(0xc0, 32);
    let welcome_nonce = fill(0xe0, 12);
    let joiner_x = fill(0x10, 32);
    let joiner_nonce = fill(0x30, 32);
    let confirm_nonce = fill(0x50, 12);
    let created = NOW - 3_600_000_000_000;

    // The host's config dir, written as a device keeps it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("accounts")).unwrap();
    let private = |path: std::path::PathBuf, text: String| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    private(
        dir.path().join("device.key"),
        continuity::config::ed25519_pem(&host_seed),
    );
    private(dir.path().join("accounts/home.key"), hex(&secret));
    let host_pub = {
        use ring::signature::KeyPair;
        b64(
            ring::signature::Ed25519KeyPair::from_seed_unchecked(&host_seed)
                .unwrap()
                .public_key()
                .as_ref(),
        )
    };
    let joiner_pub = {
        use ring::signature::KeyPair;
        b64(
            ring::signature::Ed25519KeyPair::from_seed_unchecked(&joiner_seed)
                .unwrap()
                .public_key()
                .as_ref(),
        )
    };
    let roster = Roster {
        v: 1,
        devices: vec![RosterEntry {
            device: "tv-1".into(),
            name: "TV".into(),
            public_key: host_pub.clone(),
            changed_unix_ns: created,
            revoked: false,
        }],
        key: None,
    };
    std::fs::write(
        dir.path().join("accounts/home.roster.json"),
        serde_json::to_vec(&roster).unwrap(),
    )
    .unwrap();
    let account = Account::open(dir.path(), "home", "tv-1", "TV").unwrap();

    let host_rng = FixedSliceSequenceRandom {
        bytes: &[&exchange_bytes, &host_x, &host_nonce, &welcome_nonce],
        current: Default::default(),
    };
    let joiner_rng = FixedSliceSequenceRandom {
        bytes: &[&joiner_x, &joiner_nonce, &confirm_nonce],
        current: Default::default(),
    };
    let (mut h, hello) = Host::start_with(&account, "TV", NOW, TTL, &host_rng).unwrap();
    let me = Party {
        device: "phone-1".into(),
        name: "Phone".into(),
    };
    let mut j = Joiner::new_with("home", me, joiner_pub.clone(), &joiner_rng).unwrap();
    let (commit, _) = to_joiner(&mut j, std::slice::from_ref(&hello));
    let reveal = to_host(&mut h, &commit);
    let (open, _) = to_joiner(&mut j, &reveal);
    assert!(to_host(&mut h, &open).is_empty());
    assert!(
        h.confirm(NOW, true).unwrap().is_empty(),
        "waits for the joiner"
    );
    let confirm = j.confirm(true).unwrap();
    let welcome = to_host(&mut h, &confirm);
    let (_, joined) = to_joiner(&mut j, &welcome);
    let joined = joined.expect("welcomed");
    assert_eq!(joined.secret.as_slice(), secret.as_slice());
    let code = h.code().unwrap().to_owned();
    assert_eq!(j.code(), Some(code.as_str()));

    // The derived values, from the public functions other implementations mirror.
    let x_pub = |private: &[u8]| {
        let rng = ring::test::rand::FixedSliceRandom { bytes: private };
        let k =
            ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &rng).unwrap();
        (k.compute_public_key().unwrap().as_ref().to_vec(), k)
    };
    let (host_x_pub, host_k) = x_pub(&host_x);
    let (joiner_x_pub, _) = x_pub(&joiner_x);
    let shared = ring::agreement::agree_ephemeral(
        host_k,
        &ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, &joiner_x_pub),
        |k| k.to_vec(),
    )
    .unwrap();
    let exchange = format!("x{}", hex(&exchange_bytes));
    let input = pair::transcript_input([
        exchange.as_bytes(),
        b"tv-1",
        host_pub.as_bytes(),
        b"phone-1",
        joiner_pub.as_bytes(),
        &host_x_pub,
        &joiner_x_pub,
        &host_nonce,
        &joiner_nonce,
    ]);
    let hash: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &input)
        .as_ref()
        .try_into()
        .unwrap();
    assert_eq!(pair::code_of(&hash), code, "the code is the transcript's");
    let key = pair::exchange_key(&hash, &shared);
    let open_sealed = |sealed: &str, label: &[u8]| {
        let bytes = unb64(sealed);
        let (nonce, ct) = bytes.split_at(12);
        let k = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).unwrap(),
        );
        let mut ct = ct.to_vec();
        let plain = k
            .open_in_place(
                ring::aead::Nonce::try_assume_unique_for_key(nonce).unwrap(),
                ring::aead::Aad::from(label),
                &mut ct,
            )
            .unwrap()
            .to_vec();
        (nonce.to_vec(), plain)
    };
    let PairMsg::Confirm { sealed, .. } = &confirm[0] else {
        panic!("{confirm:?}")
    };
    let (n, plain) = open_sealed(sealed, b"continuity-v1 pair confirm");
    assert_eq!(
        (n, plain),
        (confirm_nonce.clone(), exchange.as_bytes().to_vec())
    );
    let PairMsg::Welcome { sealed, .. } = &welcome[0] else {
        panic!("{welcome:?}")
    };
    let (n, welcome_plain) = open_sealed(sealed, b"continuity-v1 pair welcome");
    assert_eq!(n, welcome_nonce);
    assert_eq!(
        pair::commitment(&joiner_x_pub, &joiner_nonce),
        match &commit[0] {
            PairMsg::Commit { commitment, .. } => commitment.clone(),
            m => panic!("{m:?}"),
        }
    );

    let message = |leaf: &str, m: &PairMsg| {
        assert_eq!(m.leaf(), leaf);
        json!({
            "leaf": leaf,
            "topic": pair::topic("home", &exchange, leaf),
            "payload_text": String::from_utf8(pair::encode(m)).unwrap(),
        })
    };
    let doc = json!({
        "description": "continuity pairing vector: one whole exchange (docs/PROTOCOL.md, Pairing) \
            with fixed randomness. Ed25519 keys are given by their 32-byte seeds, X25519 keys by \
            their 32 private bytes (as drawn; X25519 clamps them). Every payload_text is the exact \
            message bytes. transcript_input is what is hashed: the label, then each part as a \
            4-byte big-endian length and its bytes (ids and public_keys as UTF-8 text, X25519 keys \
            and nonces raw). sealed = base64url(nonce || AES-256-GCM ciphertext || tag).",
        "version": 1,
        "account": "home",
        "now_unix_ns": NOW,
        "ttl_ns": TTL,
        "account_secret_hex": hex(&secret),
        "host": {
            "device": "tv-1", "name": "TV",
            "ed25519_seed_hex": hex(&host_seed), "public_key": host_pub,
            "roster_before": roster,
            "exchange_random_hex": hex(&exchange_bytes),
            "x25519_private_hex": hex(&host_x), "x25519_public": b64(&host_x_pub),
            "nonce_hex": hex(&host_nonce),
            "welcome_nonce_hex": hex(&welcome_nonce),
        },
        "joiner": {
            "device": "phone-1", "name": "Phone",
            "ed25519_seed_hex": hex(&joiner_seed), "public_key": joiner_pub,
            "x25519_private_hex": hex(&joiner_x), "x25519_public": b64(&joiner_x_pub),
            "nonce_hex": hex(&joiner_nonce),
            "confirm_nonce_hex": hex(&confirm_nonce),
        },
        "exchange": exchange,
        "messages": [
            message("hello", &hello),
            message("joiner", &commit[0]),
            message("host", &reveal[0]),
            message("joiner", &open[0]),
            message("joiner", &confirm[0]),
            message("host", &welcome[0]),
        ],
        "transcript_input_hex": hex(&input),
        "transcript_sha256_hex": hex(&hash),
        "code": code,
        "x25519_shared_hex": hex(&shared),
        "exchange_key_hex": hex(&key),
        "confirm_plaintext": exchange,
        "welcome_plaintext": String::from_utf8(welcome_plain).unwrap(),
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/pairing.json");
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .expect("tests/vectors/pairing.json (UPDATE_VECTORS=1 writes it)"),
    )
    .unwrap();
    assert_eq!(
        committed, doc,
        "the committed pairing vector differs from what the library sends"
    );
    // And every message decodes back to itself.
    for m in committed["messages"].as_array().unwrap() {
        let text = m["payload_text"].as_str().unwrap();
        let back = pair::decode(text.as_bytes()).unwrap();
        assert_eq!(pair::encode(&back), text.as_bytes());
    }
}

#[test]
fn pairing_messages_carry_their_version() {
    let msg = PairMsg::Decline {
        exchange: "x0123456789ab".into(),
    };
    let text = String::from_utf8(pair::encode(&msg)).unwrap();
    assert_eq!(
        text,
        r#"{"v":1,"type":"decline","exchange":"x0123456789ab"}"#
    );
    for bad in [
        r#"{"type":"decline","exchange":"x0123456789ab"}"#,
        r#"{"v":2,"type":"decline","exchange":"x0123456789ab"}"#,
        r#"[1]"#,
    ] {
        assert!(
            matches!(pair::decode(bad.as_bytes()), Err(PairError::Malformed(_))),
            "{bad}"
        );
    }
}

#[test]
fn a_joiner_with_another_devices_id_is_refused_and_told_why() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tv = account(a.path(), "tv");
    // A copied config dir with a new key, or a chosen id that clashes: "tv" is taken.
    let impostor = account(b.path(), "tv");
    let (mut h, hello) = Host::start(&tv, "TV", NOW, TTL).unwrap();
    let mut j = joiner(&impostor);
    let (commit, _) = to_joiner(&mut j, &[hello]);
    let answer = to_host(&mut h, &commit);
    let PairMsg::Refused { reason, .. } = &answer[0] else {
        panic!("{answer:?}")
    };
    assert!(
        reason.contains("already paired with another key"),
        "{reason}"
    );
    assert!(matches!(
        j.handle(NOW, &answer[0]),
        Err(PairError::Refused(_))
    ));
    assert!(h.farewell("late").is_none(), "told once");
}

#[test]
fn a_confirm_that_does_not_open_ends_with_a_refusal_the_joiner_sees() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tv = account(a.path(), "tv");
    let phone = account(b.path(), "phone");
    let (mut h, mut j) = opened(&tv, &phone);
    let forged = PairMsg::Confirm {
        exchange: h.exchange().to_owned(),
        sealed: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
    };
    let err = h.handle(NOW, &forged).unwrap_err();
    let farewell = h.farewell(&err.to_string()).expect("the joiner is told");
    assert!(matches!(
        j.handle(NOW, &farewell),
        Err(PairError::Refused(why)) if why.contains("does not open")
    ));
}
