//! What the examples that run real processes share: players and brokers as child processes,
//! the paired devices of an account, percentiles.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use continuity::engine::EngineConfig;
use continuity::model::{Device, DeviceClass};
use continuity::node::{Node, NodeConfig, NodeEvent};
use continuity::security::account::Account;

/// A child process whose stdout lines arrive on a channel; stopped (SIGTERM) on drop.
pub struct Process {
    pub name: String,
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Process {
    pub fn spawn(name: &str, mut cmd: Command) -> Process {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().expect("piped"));
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Process {
            name: name.to_owned(),
            child,
            lines,
        }
    }

    /// The next line that contains `what`, within `max`.
    pub fn expect(&self, what: &str, max: Duration) -> Result<String, String> {
        let end = Instant::now() + max;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return Ok(line),
                Ok(_) => {}
                Err(_) => return Err(format!("{}: no '{what}' within {max:?}", self.name)),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM: a player stops cleanly, as when it is switched off.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `continuity` executable and the plugin library beside it (a cargo build of this
/// profile puts both in `target/<profile>/`; this example is in its `examples/`).
pub fn continuity_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("this executable");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("continuity");
    for needed in [bin.clone(), dir.join("libgstcontinuity.so")] {
        if !needed.exists() {
            eprintln!(
                "{} is missing: run `cargo build --release --bin continuity -p \
                 gst-plugin-continuity --lib` first (`make bench` does)",
                needed.display()
            );
            std::process::exit(2);
        }
    }
    bin
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn wait_listening(port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "no broker on port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A broker on a free loopback port: (its process, URL). `mosquitto` is set up as
/// docs/mosquitto.conf says (`set_tcp_nodelay true`), `mosquitto-defaults` is not.
pub fn start_broker(kind: &str, bin: &Path, dir: &Path) -> (Process, String) {
    let port = free_port();
    let process = if kind.starts_with("mosquitto") {
        let conf = dir.join("mosquitto.conf");
        let nodelay = if kind == "mosquitto" {
            "set_tcp_nodelay true\n"
        } else {
            ""
        };
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{nodelay}"
            ),
        )
        .expect("mosquitto.conf");
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mosquitto is not installed (`make bench` installs it)");
        let mut cmd = Command::new(exe);
        cmd.arg("-c").arg(conf);
        Process::spawn("mosquitto", cmd)
    } else {
        let mut cmd = Command::new(bin);
        cmd.args(["broker", "--no-advertise", "--listen"])
            .arg(format!("127.0.0.1:{port}"));
        Process::spawn("continuity broker", cmd)
    };
    wait_listening(port);
    (process, format!("mqtt://127.0.0.1:{port}"))
}

/// Devices paired into account `bench`, device ids their names in lower case.
pub fn pair(root: &Path, names: &[&str]) -> Vec<Account> {
    let dirs: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
    for (dir, name) in dirs.iter().zip(names) {
        std::fs::create_dir_all(dir).expect("config dir");
        std::fs::write(dir.join("device-id"), format!("{}\n", name.to_lowercase()))
            .expect("device-id");
    }
    let named: Vec<(&Path, &str)> = dirs
        .iter()
        .map(PathBuf::as_path)
        .zip(names.to_vec())
        .collect();
    continuity::security::pair::pair_dirs("bench", &named).expect("pairing")
}

/// `continuity play` with this device's config dir.
pub fn play(
    bin: &Path,
    url: &str,
    dir: &Path,
    name: &str,
    class: &str,
    media: Option<&Path>,
) -> Process {
    let mut cmd = Command::new(bin);
    cmd.args(["--broker", url, "--account", "bench", "--config-dir"])
        .arg(dir)
        .args(["play", "--no-advertise", "--resume", "off"])
        .args(["--device-name", name, "--device-class", class])
        .env_remove("CONTINUITY_BROKER")
        .env_remove("GST_DEBUG");
    if let Some(m) = media {
        cmd.arg(m);
    }
    Process::spawn(name, cmd)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A controller in this process (as `continuity transfer` is one): it asks for handoffs and
/// hears their results; it announces nothing. Start it inside a tokio runtime.
pub fn controller(url: &str, account: Account) -> (Node, tokio::sync::mpsc::Receiver<NodeEvent>) {
    let mut cfg = EngineConfig::new(
        "bench",
        Device {
            id: account.device.clone(),
            name: "Controller".into(),
            class: DeviceClass::Other,
        },
    );
    cfg.announce = false;
    Node::start(NodeConfig {
        engine: cfg,
        broker: Some(url.parse().expect("broker URL")),
        store_dir: None,
        link: None,
        account: Some(account),
    })
    .expect("controller")
}
