//! Real processes as people run them: `continuity play` players whose output lines a test
//! waits on, the command line as a paired remote, a broker and a clip made by the test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::common::AnyBroker;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_continuity");

/// A 20 s Ogg Theora clip with a visible timecode.
pub fn make_clip(dir: &Path) -> PathBuf {
    make_clip_of(dir, "clip.ogg", 500)
}

/// An Ogg Theora clip of `frames` frames at 25 per second, with a visible timecode.
pub fn make_clip_of(dir: &Path, name: &str, frames: u32) -> PathBuf {
    let path = dir.join(name);
    let ok = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", &format!("num-buffers={frames}"), "!"])
        .args([
            "video/x-raw,width=160,height=120,framerate=25/1",
            "!",
            "timeoverlay",
            "!",
        ])
        .args(["theoraenc", "!", "oggmux", "!", "filesink"])
        .arg(format!("location={}", path.display()))
        .status()
        .expect("gst-launch-1.0 runs")
        .success();
    assert!(ok, "the clip was made");
    path
}

/// A `continuity play` process whose output lines arrive on a channel; killed on drop.
pub struct PlayProcess {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl PlayProcess {
    pub fn start(broker: &str, dir: &Path, name: &str, class: &str, media: Option<&Path>) -> Self {
        PlayProcess::spawn(Command::new(BIN), broker, dir, name, class, media, &[])
    }

    /// A player with more `play` options (`--audio-language fr`, ...).
    pub fn start_with(
        options: &[&str],
        broker: &str,
        dir: &Path,
        name: &str,
        class: &str,
        media: Option<&Path>,
    ) -> Self {
        PlayProcess::spawn(Command::new(BIN), broker, dir, name, class, media, options)
    }

    /// A player whose wall clock is `skew` off (`+30s`, `-30s`: libfaketime's syntax); its
    /// monotonic clock, which GStreamer and tokio run on, is left alone.
    pub fn start_skewed(
        skew: &str,
        broker: &str,
        dir: &Path,
        name: &str,
        class: &str,
        media: Option<&Path>,
    ) -> Self {
        let mut cmd = Command::new("faketime");
        cmd.args(["-f", skew, BIN])
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        PlayProcess::spawn(cmd, broker, dir, name, class, media, &[])
    }

    pub fn spawn(
        mut cmd: Command,
        broker: &str,
        dir: &Path,
        name: &str,
        class: &str,
        media: Option<&Path>,
        options: &[&str],
    ) -> Self {
        cmd.args(["--broker", broker, "--account", "play"])
            .arg("--config-dir")
            .arg(dir.join(name))
            .args(["play", "--no-advertise", "--device-name", name])
            .args(["--device-class", class])
            .args(options)
            .env("CONTINUITY_MDNS_INTERFACE", "lo")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(m) = media {
            cmd.arg(m);
        }
        // Its own process group: killing it kills a wrapper's child too (faketime's).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        PlayProcess { child, lines }
    }

    /// Ctrl-C: SIGINT to the player, which stops as a person stops it; waits for it to exit.
    pub fn interrupt(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        assert!(
            super::common::wait_exit(&mut self.child, Duration::from_secs(10)).is_some(),
            "the player did not stop on Ctrl-C"
        );
    }

    /// Type a line on the player's terminal.
    pub fn type_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The lines that come within `within`, none of which may contain `what`.
    pub fn no_line_within(&self, what: &str, within: Duration) -> Vec<String> {
        let end = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    assert!(!line.contains(what), "'{what}' came: {line}");
                    seen.push(line);
                }
                Err(_) => break,
            }
        }
        seen
    }

    /// Wait for output lines containing each of `whats`, in any order; the lines, in that
    /// order.
    pub fn wait_lines(&self, whats: &[&str]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; whats.len()];
        let mut seen = Vec::new();
        while found.iter().any(Option::is_none) {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| panic!("no line with each of {whats:?}; saw {seen:#?}"));
            for (what, slot) in whats.iter().zip(found.iter_mut()) {
                if slot.is_none() && line.contains(what) {
                    *slot = Some(line.clone());
                }
            }
            seen.push(line);
        }
        found.into_iter().map(Option::unwrap).collect()
    }

    /// Wait until the player says it plays (its pipeline reached PLAYING: the line is
    /// exactly `[time name] playing`).
    pub fn wait_playing(&self) -> String {
        self.wait_for("line saying it plays", |l| l.ends_with("] playing"))
    }

    /// Wait for an output line containing `what`.
    pub fn wait_line(&self, what: &str) -> String {
        self.wait_for(&format!("line with '{what}'"), |l| l.contains(what))
    }

    /// Wait for an output line that `is` it.
    fn wait_for(&self, it: &str, is: impl Fn(&str) -> bool) -> String {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| panic!("no {it}; saw {seen:#?}"));
            if is(&line) {
                return line;
            }
            seen.push(line);
        }
    }
}

impl Drop for PlayProcess {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn transfer(setup: &Setup, to: &str) -> (Option<i32>, Value) {
    let out = setup
        .cli()
        .args(["transfer", "--to", to, "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), doc)
}

/// The devices of these tests, paired before any starts: three players and a remote control
/// (the device that runs `transfer`, `sessions` and `devices`).
pub const DEVICES: [&str; 4] = ["Phone", "TV", "Remote", "Speaker"];

/// A broker, a clip, and the config dirs of the paired devices.
pub struct Setup {
    pub _broker: AnyBroker,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub clip: PathBuf,
}

impl Setup {
    pub fn new() -> Setup {
        Setup::on(AnyBroker::Mosquitto(super::common::Mosquitto::start()))
    }

    pub fn on(broker: AnyBroker) -> Setup {
        let url = broker.url().to_string();
        let dir = tempfile::tempdir().unwrap();
        let clip = make_clip(dir.path());
        let dirs: Vec<PathBuf> = DEVICES.iter().map(|d| dir.path().join(d)).collect();
        let named: Vec<(&Path, &str)> = dirs.iter().map(|d| d.as_path()).zip(DEVICES).collect();
        continuity::security::pair::pair_dirs("play", &named).expect("the devices pair");
        Setup {
            _broker: broker,
            url,
            dir,
            clip,
        }
    }

    /// The command line tool, as the remote control.
    pub fn cli(&self) -> Command {
        self.cli_of("Remote")
    }

    /// The command line tool on the config dir of device `name`.
    pub fn cli_of(&self, name: &str) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["--broker", &self.url, "--account", "play", "--config-dir"])
            .arg(self.dir.path().join(name))
            .env("CONTINUITY_MDNS_INTERFACE", "lo");
        cmd
    }

    /// An idle player (waits for a handoff), once it is online.
    pub fn idle(&self, name: &str, class: &str) -> PlayProcess {
        let p = PlayProcess::start(&self.url, self.dir.path(), name, class, None);
        p.wait_line("connected");
        p
    }

    /// A player of the clip whose wall clock is `skew` off, once it plays.
    pub fn playing_skewed(&self, skew: &str, name: &str, class: &str) -> PlayProcess {
        let p = PlayProcess::start_skewed(
            skew,
            &self.url,
            self.dir.path(),
            name,
            class,
            Some(&self.clip),
        );
        p.wait_playing();
        p
    }

    /// A player of the clip, once it plays.
    pub fn playing(&self, name: &str, class: &str) -> PlayProcess {
        let p = self.player(name, class);
        p.wait_playing();
        p
    }

    /// A player of the clip, started.
    pub fn player(&self, name: &str, class: &str) -> PlayProcess {
        PlayProcess::start(&self.url, self.dir.path(), name, class, Some(&self.clip))
    }
}

/// Every session `continuity sessions --json` shows, run as the remote.
pub fn sessions(setup: &Setup) -> Vec<Value> {
    let out = setup
        .cli()
        .args(["sessions", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["sessions"].as_array().cloned().unwrap_or_default()
}

/// `name`'s session, as `sessions --json` shows it.
pub fn session_of(setup: &Setup, name: &str) -> Option<Value> {
    sessions(setup)
        .into_iter()
        .find(|s| s["device_name"] == name)
}

/// Wait until `name`'s session says `what`: on the lines of `sessions --watch --json`,
/// which prints the sessions again each time one changes (a deadline bounds a failure).
pub fn wait_session(setup: &Setup, name: &str, what: impl Fn(&Value) -> bool) -> Value {
    let mine = |doc: &Value| {
        doc["sessions"]
            .as_array()?
            .iter()
            .find(|s| s["device_name"] == name)
            .cloned()
    };
    let mut last = None;
    let found = watch_sessions(setup, Duration::from_secs(15), |doc| {
        last = mine(doc);
        last.as_ref().is_some_and(&what)
    });
    found
        .and_then(|doc| mine(&doc))
        .unwrap_or_else(|| panic!("{name}'s session never got there: {last:#?}"))
}

/// Follow `sessions --watch --json` until a document satisfies `what` (returned) or
/// `within` has passed (`None`).
pub fn watch_sessions(
    setup: &Setup,
    within: Duration,
    mut what: impl FnMut(&Value) -> bool,
) -> Option<Value> {
    let mut child = setup
        .cli()
        .args(["sessions", "--watch", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let end = std::time::Instant::now() + within;
    let found = loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let doc: Value = serde_json::from_str(&line).unwrap();
                if what(&doc) {
                    break Some(doc);
                }
            }
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    found
}
