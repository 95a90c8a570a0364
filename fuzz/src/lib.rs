//! What the fuzz targets share: a paired phone and TV of account `home` (from the committed
//! fixture, so that the committed corpus holds envelopes they can open), and the topics a
//! device listens on.

use std::path::Path;
use std::sync::OnceLock;

use continuity::security::account::Account;
use continuity::security::rekey;
use continuity::wire::Topic;

pub const ACCOUNT: &str = "home";
/// The film whose resume topic the corpus uses.
pub const FILM: &str = "file:Long Film.ogg";

/// The phone's and the TV's accounts, opened from a copy of `fuzz/fixture/`.
pub struct Paired {
    pub phone: Account,
    pub tv: Account,
    _dir: tempfile::TempDir,
}

/// Copy `from` into `to`, key files private (git keeps no modes).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

pub fn paired() -> &'static Paired {
    static PAIRED: OnceLock<Paired> = OnceLock::new();
    PAIRED.get_or_init(|| {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixture");
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&fixture, dir.path());
        let open = |name: &str| {
            let d = dir.path().join(name);
            let id = std::fs::read_to_string(d.join("device-id")).unwrap();
            Account::open(&d, ACCOUNT, id.trim(), name).unwrap()
        };
        Paired {
            phone: open("phone"),
            tv: open("tv"),
            _dir: dir,
        }
    })
}

/// The topics the TV listens on; an input's first byte picks one.
pub fn topics(p: &Paired) -> Vec<String> {
    let (phone, tv) = (&p.phone.device, &p.tv.device);
    let media_key = p.tv.opener().media_keys().key(FILM);
    vec![
        Topic::session_state(ACCOUNT, phone).to_string(),
        Topic::device_info(ACCOUNT, phone).to_string(),
        Topic::availability(ACCOUNT, phone).to_string(),
        Topic::resume_key(ACCOUNT, media_key).to_string(),
        Topic::inbox(ACCOUNT, tv).to_string(),
        Topic::events(ACCOUNT).to_string(),
        Topic::roster(ACCOUNT).to_string(),
        rekey::request_topic(ACCOUNT, phone),
        rekey::answer_topic(ACCOUNT, tv),
    ]
}

/// An input: the topic it picks and the payload.
pub fn split<'a>(topics: &'a [String], data: &'a [u8]) -> Option<(&'a str, &'a [u8])> {
    let (&pick, payload) = data.split_first()?;
    Some((&topics[usize::from(pick) % topics.len()], payload))
}
