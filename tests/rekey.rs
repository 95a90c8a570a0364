//! Key rotation without a broker: who may ask for a rotated key, who may answer, and what a
//! device refuses to take.

mod common;

use common::paired;
use continuity::security::account::Account;
use continuity::security::rekey::{self, Asker, KeyAnswer, KeyRequest, RekeyError, Want};

/// `asker` on `account` asks for `key_id`: the request it publishes.
fn ask(asker: &mut Asker, account: &mut Account, key_id: &str) -> KeyRequest {
    match asker.want(account, key_id, continuity::hlc::now_unix_ns()) {
        Want::Ask { topic, payload } => {
            assert_eq!(topic, rekey::request_topic("home", &account.device));
            rekey::decode(&payload).unwrap()
        }
        other => panic!("expected a request, got {other:?}"),
    }
}

fn payload(ans: &KeyAnswer) -> Vec<u8> {
    serde_json::to_vec(ans).unwrap()
}

#[test]
fn remaining_devices_take_the_new_key_and_the_revoked_one_cannot() {
    let (_root, mut acc) = paired(&["phone", "tv", "tablet"]);
    let (mut phone, mut tv, mut tablet) = (acc.remove(0), acc.remove(0), acc.remove(0));
    let old = phone.keys().key_id;
    let new = phone.revoke_and_rotate(&tablet.device).unwrap();
    assert_ne!(old, new);
    // The TV and the tablet read the roster (sealed under the old key) that names the key.
    tv.merge_roster(&phone.roster).unwrap();
    tablet.merge_roster(&phone.roster).unwrap();
    assert_eq!(tv.lacks_key().as_deref(), Some(new.as_str()));

    let mut tv_asker = Asker::default();
    let req = ask(&mut tv_asker, &mut tv, &new);
    // Asking again at once sends nothing: one request a minute.
    assert!(matches!(
        tv_asker.want(&mut tv, &new, continuity::hlc::now_unix_ns()),
        Want::Nothing
    ));
    let ans = rekey::answer(&phone, &req).unwrap();
    assert_eq!(tv_asker.take_answer(&mut tv, &payload(&ans)), Ok(true));
    assert_eq!(tv.keys().key_id, new);
    assert!(
        tv.all_keys().iter().any(|k| k.key_id == old),
        "the old key still opens what was sealed with it"
    );

    // The tablet knows it was revoked and does not even ask; a request it makes anyway is
    // refused by every device that knows.
    let mut tablet_asker = Asker::default();
    assert!(matches!(
        tablet_asker.want(&mut tablet, &new, continuity::hlc::now_unix_ns()),
        Want::Nothing
    ));
    let (_, forced) = rekey::request(&tablet, &new, 1).unwrap();
    assert_eq!(
        rekey::answer(&phone, &forced).unwrap_err(),
        RekeyError::Untrusted(tablet.device.clone())
    );
    assert_eq!(
        rekey::answer(&tv, &forced).unwrap_err(),
        RekeyError::Untrusted(tablet.device.clone())
    );
}

#[test]
fn a_device_that_lags_behind_cannot_hand_an_old_key_back() {
    let (root, mut acc) = paired(&["phone", "tv", "tablet"]);
    let (mut phone, tv, tablet) = (acc.remove(0), acc.remove(0), acc.remove(0));
    let old = phone.keys().key_id;
    let new = phone.revoke_and_rotate(&tablet.device).unwrap();
    // Kept across a restart: the old key still opens what was sealed with it.
    let again = Account::open(&root.path().join("phone"), "home", &phone.device, "phone").unwrap();
    assert_eq!(again.keys().key_id, new);
    assert!(again.all_keys().iter().any(|k| k.key_id == old));

    // A laptop paired after the rotation has only the new key. The TV was off and still
    // seals with the old one: the laptop sees that, asks, and the TV answers with it.
    let laptop_dir = root.path().join("laptop");
    let device = continuity::config::device_id(&laptop_dir).unwrap();
    let mut laptop = Account::open(&laptop_dir, "home", &device, "laptop").unwrap();
    continuity::security::pair::pair_local(&mut phone, &mut laptop).unwrap();
    assert_eq!(laptop.keys().key_id, new);
    let mut tv = tv;
    tv.merge_roster(&phone.roster).unwrap();
    let mut asker = Asker::default();
    let req = ask(&mut asker, &mut laptop, &old);
    let ans = rekey::answer(&tv, &req).unwrap();
    assert_eq!(
        asker.take_answer(&mut laptop, &payload(&ans)),
        Err(RekeyError::NotNewer)
    );
    assert_eq!(laptop.keys().key_id, new, "still sealing with the new key");
}

#[test]
fn a_tampered_request_or_answer_is_refused() {
    let (_root, mut acc) = paired(&["phone", "tv", "tablet"]);
    let (mut phone, mut tv, tablet) = (acc.remove(0), acc.remove(0), acc.remove(0));
    let new = phone.revoke_and_rotate(&tablet.device).unwrap();
    tv.merge_roster(&phone.roster).unwrap();
    let mut asker = Asker::default();
    let req = ask(&mut asker, &mut tv, &new);

    // A request whose key was swapped (to read the answer) no longer verifies.
    let mut swapped = req.clone();
    swapped.x25519 = rekey::request(&tablet, &new, 1).unwrap().1.x25519;
    assert_eq!(
        rekey::answer(&phone, &swapped).unwrap_err(),
        RekeyError::BadSignature(tv.device.clone())
    );

    // An answer with a flipped byte: its signature fails, nothing is taken.
    let ans = rekey::answer(&phone, &req).unwrap();
    let mut flipped = ans.clone();
    let mut bytes = flipped.sealed.into_bytes();
    bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
    flipped.sealed = String::from_utf8(bytes).unwrap();
    assert_eq!(
        asker.take_answer(&mut tv, &payload(&flipped)),
        Err(RekeyError::BadSignature(phone.device.clone()))
    );
    // An answer signed by a device outside the roster.
    let mut stranger = ans.clone();
    stranger.from = "stranger".into();
    assert_eq!(
        asker.take_answer(&mut tv, &payload(&stranger)),
        Err(RekeyError::Untrusted("stranger".into()))
    );
    // The genuine answer still works (the request's key was not used up).
    assert_eq!(asker.take_answer(&mut tv, &payload(&ans)), Ok(true));
    assert_eq!(tv.keys().key_id, new);
}
