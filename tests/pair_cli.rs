//! `continuity pair` and `continuity pair --join` as people run them: two processes with their
//! own config dirs, through a real mosquitto (and mDNS on loopback).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Mosquitto;
use continuity::security::account::Account;

const BIN: &str = env!("CARGO_BIN_EXE_continuity");

/// A `continuity pair` process whose output lines arrive on a channel; killed on drop.
struct PairProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl PairProcess {
    fn start(broker: &str, dir: &Path, name: &str, extra: &[&str]) -> PairProcess {
        let mut child = Command::new(BIN)
            .args(["--broker", broker, "--account", "home", "--config-dir"])
            .arg(dir)
            .args(["pair", "--device-name", name, "--timeout", "20"])
            .args(extra)
            .env("CONTINUITY_MDNS_INTERFACE", "lo")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        PairProcess {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first output line containing `what`.
    fn wait_line(&mut self, what: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(what) => {
                    self.seen.push(line.clone());
                    return line;
                }
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line with '{what}'; saw {:#?}", self.seen),
            }
        }
    }

    fn answer(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// The exit code and all output.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for PairProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn account(dir: &Path) -> Account {
    let device = continuity::config::device_id(dir).unwrap();
    Account::open(dir, "home", &device, "x").unwrap()
}

/// The code from a `Verification code: 123 456` line.
fn code(line: &str) -> String {
    line.rsplit(':').next().unwrap().trim().to_owned()
}

#[test]
fn two_devices_pair_with_matching_codes_and_share_the_account() {
    let broker = Mosquitto::start();
    let url = broker.url().to_string();
    let (tv_dir, phone_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tv_before = account(tv_dir.path());
    let phone_before = account(phone_dir.path());
    assert_ne!(tv_before.secret(), phone_before.secret());

    let mut tv = PairProcess::start(&url, tv_dir.path(), "TV", &[]);
    tv.wait_line("pair --join");
    let mut phone = PairProcess::start(&url, phone_dir.path(), "Phone", &["--join"]);
    let tv_code = code(&tv.wait_line("Verification code"));
    let phone_code = code(&phone.wait_line("Verification code"));
    assert_eq!(tv_code, phone_code);
    assert_eq!(tv_code.replace(' ', "").len(), 6);
    tv.wait_line("Does Phone show the same code?");
    phone.wait_line("Does TV show the same code?");
    tv.answer("y\n");
    phone.answer("yes\n");
    let (tv_exit, tv_out) = tv.finish();
    let (phone_exit, phone_out) = phone.finish();
    assert_eq!(tv_exit, Some(0), "{tv_out}");
    assert_eq!(phone_exit, Some(0), "{phone_out}");
    assert!(tv_out.contains("Paired Phone"), "{tv_out}");
    assert!(
        phone_out.contains("Joined account home through TV"),
        "{phone_out}"
    );

    // Kept on disk: the phone holds the TV's account secret, each trusts the other's key.
    let (tv_after, phone_after) = (account(tv_dir.path()), account(phone_dir.path()));
    assert_eq!(phone_after.secret(), tv_before.secret());
    assert_eq!(tv_after.secret(), tv_before.secret());
    for (a, other) in [(&tv_after, &phone_after), (&phone_after, &tv_after)] {
        let e = a
            .roster
            .entry(&other.device)
            .expect("paired device in the roster");
        assert_eq!(
            e.public_key,
            continuity::security::seal::public_key(&other.signer)
        );
        assert!(a.roster.trusts(&other.device));
    }
}

#[test]
fn codes_that_do_not_match_share_nothing() {
    let broker = Mosquitto::start();
    let url = broker.url().to_string();
    let (tv_dir, phone_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let phone_before = account(phone_dir.path());

    let mut tv = PairProcess::start(&url, tv_dir.path(), "TV", &[]);
    tv.wait_line("pair --join");
    let phone = PairProcess::start(&url, phone_dir.path(), "Phone", &["--join", "--yes"]);
    tv.wait_line("Does Phone show the same code?");
    // The person at the TV sees a different code than on the phone.
    tv.answer("n\n");
    let (tv_exit, tv_out) = tv.finish();
    let (phone_exit, phone_out) = phone.finish();
    assert_eq!(tv_exit, Some(1), "{tv_out}");
    assert!(tv_out.contains("not confirmed"), "{tv_out}");
    assert_eq!(phone_exit, Some(1), "{phone_out}");
    assert!(
        phone_out.contains("not confirmed on the host"),
        "{phone_out}"
    );
    let phone_after = account(phone_dir.path());
    assert_eq!(
        phone_after.secret(),
        phone_before.secret(),
        "no secret travelled"
    );
    assert!(!account(tv_dir.path()).roster.trusts(&phone_after.device));
}

#[test]
fn a_new_device_finds_the_exchange_and_its_broker_on_the_lan() {
    let broker = Mosquitto::start();
    let url = broker.url().to_string();
    let (tv_dir, phone_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut tv = PairProcess::start(&url, tv_dir.path(), "TV", &["--yes"]);
    tv.wait_line("pair --join");
    // The phone knows neither the broker nor the TV: `--broker auto`.
    let mut phone = PairProcess::start("auto", phone_dir.path(), "Phone", &["--join", "--yes"]);
    let found = phone.wait_line("open for pairing on the LAN");
    assert!(found.contains("TV") && found.contains(&url), "{found}");
    both_paired(phone, tv, phone_dir.path(), tv_dir.path());
}

/// Both sides end well and the phone holds the TV's account secret.
fn both_paired(phone: PairProcess, tv: PairProcess, phone_dir: &Path, tv_dir: &Path) {
    let (phone_exit, phone_out) = phone.finish();
    assert_eq!(phone_exit, Some(0), "{phone_out}");
    assert_eq!(tv.finish().0, Some(0));
    assert_eq!(account(phone_dir).secret(), account(tv_dir).secret());
}

#[test]
fn joining_with_nobody_open_for_pairing_says_what_to_do() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--broker", &broker.url().to_string(), "--account", "home"])
        .arg("--config-dir")
        .arg(dir.path())
        .args(["pair", "--join", "--yes", "--timeout", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no device of account home is open for pairing")
            && err.contains("run `continuity pair`"),
        "{err}"
    );
}

/// Retain `payload` on `topic` as any user of the broker can (`mosquitto_pub`).
fn retain(broker: &Mosquitto, topic: &str, payload: &[u8]) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.addr().port().to_string()])
        .args(["-q", "1", "-r", "-t", topic, "-s"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(payload)?;
            child.wait()
        })
        .expect("mosquitto_pub runs");
    assert!(status.success());
}

#[test]
fn a_joiner_passes_over_fake_offers_a_stranger_left_on_the_broker() {
    // Hostile broker (issue 27, row 3): a broker user retains pairing hellos of a host that
    // does not exist, named like the real one: one that expires centuries ahead, one that
    // looks current. The joiner, started before the real host, hears them first; it used to
    // take the first one and fail after its timeout while the real exchange went unused.
    use continuity::security::pair::{self, PairMsg, Party};
    let broker = Mosquitto::start();
    let url = broker.url().to_string();
    let now = continuity::hlc::now_unix_ns();
    for (exchange, expires_unix_ns) in [
        ("x000000000002", 13_000_000_000_000_000_000u64),
        ("x000000000003", now + 100_000_000_000),
    ] {
        let hello = PairMsg::Hello {
            exchange: exchange.into(),
            host: Party {
                device: "dev-fakehost0001".into(),
                name: "TV".into(),
            },
            expires_unix_ns,
        };
        retain(
            &broker,
            &pair::topic("home", exchange, "hello"),
            &pair::encode(&hello),
        );
    }
    let (tv_dir, phone_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut phone = PairProcess::start(&url, phone_dir.path(), "Phone", &["--join", "--yes"]);
    phone.wait_line("Looking for a device");
    let mut tv = PairProcess::start(&url, tv_dir.path(), "TV", &["--yes"]);
    tv.wait_line("pair --join");
    let found = phone.wait_line("Found");
    let tv_device = continuity::config::device_id(tv_dir.path()).unwrap();
    assert!(found.contains(&tv_device), "{found}");
    both_paired(phone, tv, phone_dir.path(), tv_dir.path());
}

#[test]
fn a_host_is_known_by_the_name_it_pairs_with() {
    // Issue 27, row 7: the host's roster entry kept the name its account was first made
    // with (the host name, by any earlier command), not `pair --device-name`.
    let broker = Mosquitto::start();
    let url = broker.url().to_string();
    let (tv_dir, phone_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // An earlier command made the account under another name.
    account(tv_dir.path());
    let mut tv = PairProcess::start(&url, tv_dir.path(), "TV", &["--yes"]);
    tv.wait_line("pair --join");
    let phone = PairProcess::start(&url, phone_dir.path(), "Phone", &["--join", "--yes"]);
    let (phone_exit, phone_out) = phone.finish();
    assert_eq!(phone_exit, Some(0), "{phone_out}");
    assert_eq!(tv.finish().0, Some(0));
    let tv_device = continuity::config::device_id(tv_dir.path()).unwrap();
    let entry = account(phone_dir.path())
        .roster
        .entry(&tv_device)
        .cloned()
        .expect("the TV in the phone's roster");
    assert_eq!(entry.name, "TV");
}
