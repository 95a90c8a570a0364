//! The element as people use it from a shell: `gst-launch-1.0` and `gst-inspect-1.0` as
//! subprocesses, with GST_PLUGIN_PATH at the build.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use continuity::model::PlayState;
use support::brokers::{Mosquitto, free_port};
use support::{Recorder, clip, short_clip};

/// The directory that holds the built `libgstcontinuity.so` (target/<profile>).
fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_owned();
    assert!(
        dir.join("libgstcontinuity.so").exists(),
        "no libgstcontinuity.so in {} (build it: cargo build -p gst-plugin-continuity)",
        dir.display()
    );
    dir
}

fn gst(tool: &str) -> Command {
    let mut c = Command::new(tool);
    c.env("GST_PLUGIN_PATH", plugin_dir())
        .env_remove("GST_DEBUG")
        .stdin(Stdio::null());
    c
}

fn launch(filter: &str, uri: &str, sync: bool) -> Command {
    let mut c = gst("gst-launch-1.0");
    c.arg("-m").args([
        "playbin",
        &format!("uri={uri}"),
        &format!("video-filter={filter}"),
        &format!("video-sink=fakesink sync={sync}"),
        &format!("audio-sink=fakesink sync={sync}"),
    ]);
    c
}

/// The short clip through `continuity <props>` with config dir `dir` and no broker
/// listening: whether gst-launch succeeded, and its stdout then stderr.
fn play_short_without_broker(props: &str, dir: &std::path::Path, sync: bool) -> (bool, String) {
    let filter = format!(
        "continuity broker=mqtt://127.0.0.1:{} config-dir={} {props}",
        free_port(),
        dir.display()
    );
    let uri = format!("file://{}", short_clip().display());
    let out = launch(&filter, &uri, sync).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), all)
}

fn interrupt(child: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT");
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

#[test]
fn gst_inspect_lists_every_property_with_its_blurb() {
    let out = gst("gst-inspect-1.0").arg("continuity").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for (prop, blurb) in [
        ("broker", "MQTT broker"),
        ("account", "The devices that share sessions"),
        ("device-id", "Stable id of this device"),
        ("device-name", "Name other devices show"),
        ("device-class", "What this device is"),
        ("media-id", "Identity of the media"),
        ("resume", "What to do with a resume point"),
        ("resume-timeout", "Longest wait for the broker"),
        ("heartbeat", "save the position locally"),
        ("drift-threshold", "Publish a new anchor when"),
        ("config-dir", "Where the device id and the local store live"),
        ("encryption", "end-to-end encrypted and signed"),
        ("connected", "Whether the element is connected"),
        ("position", "Media (stream) time of the last buffer"),
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{prop} ")))
            .unwrap_or_else(|| panic!("property {prop} missing:\n{text}"));
        assert!(line.contains(blurb), "{prop}: {line}");
    }
    assert!(text.contains("Element Signals") || text.contains("Element Actions"));
    assert!(text.contains("resume"));
}

#[test]
fn gst_launch_ctrl_c_then_again_continues_where_it_stopped() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&broker.url(), "launch", &[dir.path()]);
    let filter = format!(
        "continuity broker={} account=launch config-dir={}",
        broker.url(),
        dir.path().display()
    );
    let uri = format!("file://{}", clip().display());

    let first = launch(&filter, &uri, true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let playing = rec.wait_sessions(0, |s| {
        s.iter()
            .any(|s| s.anchor.is_some_and(|a| a.state == PlayState::Playing))
    });
    assert!(!playing.is_empty(), "the first run never played");
    // Elapsed time is the point: a person watches for a few seconds, then presses Ctrl-C.
    std::thread::sleep(Duration::from_secs(3));
    interrupt(&first);
    let out = finish(first);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let states = rec.wait_sessions(0, |s| {
        s.last()
            .and_then(|s| s.anchor)
            .is_some_and(|a| a.state == PlayState::Paused && a.position_ns > 2_000_000_000)
    });
    let stopped = states
        .last()
        .and_then(|s| s.anchor)
        .filter(|a| a.state == PlayState::Paused)
        .expect("the final position was published")
        .position_ns;

    let before = rec.count();
    let mut second = launch(&filter, &uri, true)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(second.stdout.take().unwrap()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut seen = Vec::new();
    let resumed = loop {
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.contains("continuity-resumed") => break l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no continuity-resumed message:\n{}", seen.join("\n")),
        }
    };
    // What other devices see of the second run: playing from where it stopped, never from
    // the beginning.
    let playing = rec.wait_sessions(before, |s| {
        s.iter()
            .any(|s| s.anchor.is_some_and(|a| a.state == PlayState::Playing))
    });
    let first_playing = playing
        .iter()
        .filter_map(|s| s.anchor)
        .find(|a| a.state == PlayState::Playing)
        .expect("the second run plays");
    assert!(
        first_playing.position_ns + 40_000_000 >= stopped,
        "published playing at {} ns, stopped at {stopped} ns",
        first_playing.position_ns
    );
    interrupt(&second);
    finish(second);
    let position: u64 = resumed
        .split("position=(guint64)")
        .nth(1)
        .and_then(|r| r.split([',', ';', ' ']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no position in {resumed}"));
    assert!(
        position.abs_diff(stopped) <= 40_000_000,
        "stopped at {stopped} ns, resumed at {position} ns"
    );
}

#[test]
fn without_a_broker_it_plays_to_the_end_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, all) = play_short_without_broker("", dir.path(), true);
    assert!(ok, "{all}");
    assert!(all.contains("Got EOS"), "played to the end:\n{all}");
    let warnings = all
        .lines()
        .filter(|l| l.starts_with("WARNING") && l.contains("Cannot reach the broker"))
        .count();
    assert_eq!(warnings, 1, "exactly one warning:\n{all}");
    assert!(!all.contains("ERROR"), "{all}");
}

#[test]
fn a_key_file_that_others_can_read_is_refused_naming_the_file_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    continuity::config::account_secret(dir.path(), "default").unwrap();
    let key = continuity::config::account_secret_path(dir.path(), "default");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, all) = play_short_without_broker("", dir.path(), false);
    assert!(!ok, "{all}");
    assert!(
        all.contains(&key.display().to_string()) && all.contains("chmod 600"),
        "{all}"
    );
    // Refused, not changed behind the person's back.
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn encryption_off_plays_with_a_warning_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, all) = play_short_without_broker("encryption=off", dir.path(), false);
    assert!(ok, "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("WARNING") && l.contains("Encryption is off")),
        "{all}"
    );
    // No account was created: plain mode keeps no keys.
    assert!(!continuity::config::account_secret_path(dir.path(), "default").exists());
}
