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
        Err(PairError::Declined(_))
    ));
}

#[test]
fn declined_codes_share_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tv = account(a.path(), "tv");
    let phone = account(b.path(), "phone");
    let (mut h, hello) = Host::start(&tv, "TV", NOW, TTL).unwrap();
    let mut j = joiner(&phone);
    let (commit, _) = to_joiner(&mut j, &[hello]);
    let reveal = to_host(&mut h, &commit);
    let (open, _) = to_joiner(&mut j, &reveal);
    to_host(&mut h, &open);
    // The joiner's person says no; the host's says yes: no welcome.
    let decline = j.confirm(false).unwrap();
    h.confirm(NOW, true).unwrap();
    assert!(matches!(
        h.handle(NOW, &decline[0]),
        Err(PairError::Declined(_))
    ));
    assert!(h.joined().is_none());
}
