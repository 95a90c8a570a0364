//! Test harness: brokers on free loopback ports, started and stopped by the tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use continuity::net::broker::EmbeddedBroker;
use continuity::net::link::BrokerUrl;

/// A free TCP port on 127.0.0.1 (bound and released; the tests use it at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until `child` exits, at most `within`: on a pidfd, woken by the exit itself.
/// Returns its status, or `None` when it still runs.
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    if let Some(status) = child.try_wait().ok().flatten() {
        return Some(status);
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor (or -1), which
    // is closed below; the child is ours and not yet reaped, so the pid is still its own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    let fd = fd as libc::c_int;
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready =
            unsafe { libc::poll(&mut poll, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        let interrupted =
            ready < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
        if !interrupted || left.is_zero() {
            break;
        }
    }
    // SAFETY: the descriptor opened above, closed once.
    unsafe { libc::close(fd) };
    child.try_wait().ok().flatten()
}

/// Read `out` line by line on a thread of its own; each line goes to `keep` (a log), and
/// the receiver gets a message when a line contains `ready`. The receiver is disconnected
/// when the output ends (the process exited) without it.
pub fn watch_output(
    out: impl std::io::Read + Send + 'static,
    ready: &'static str,
    mut keep: impl FnMut(&str) + Send + 'static,
) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(ready) {
                let _ = tx.send(());
            }
            keep(&line);
        }
    });
    rx
}

fn mosquitto_path() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!(
        "mosquitto is not installed: run `make test`, which installs it (apt-get install mosquitto)"
    );
}

/// A real mosquitto on a free loopback port, with a generated config; killed on drop.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Listener settings after the `listener` line (TLS, passwords).
    extra: String,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// With extra listener settings, e.g. `certfile ...`, `password_file ...`; anonymous
    /// clients are let in unless `extra` says otherwise.
    pub fn start_with(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mosquitto {
            port: free_port(),
            dir,
            child: None,
            extra: extra.to_owned(),
        };
        // A free port can be taken between its pick and mosquitto's bind (by a test beside
        // this one, an Erlang node of the cluster test): then another port, a few times.
        for _ in 0..5 {
            if m.try_spawn() {
                return m;
            }
            m.port = free_port();
        }
        panic!("mosquitto did not start listening on any of five free ports");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> BrokerUrl {
        format!("mqtt://127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "mosquitto did not start listening on {}",
            self.addr()
        );
    }

    /// Start mosquitto on `self.port`; whether it said it listens within 10 s (if not, it
    /// is stopped).
    fn try_spawn(&mut self) -> bool {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\n{}\n{}persistence false\n\
                 set_tcp_nodelay true\n\
                 log_dest stderr\nlog_type error\nlog_type warning\nlog_type information\n",
                self.port,
                self.extra,
                if self.extra.contains("allow_anonymous") {
                    ""
                } else {
                    "allow_anonymous true\n"
                }
            ),
        )
        .unwrap();
        let mut child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto");
        // It says "running" once its listener is open (the "information" log type, which
        // says nothing per connection); its errors and warnings go to the test's output.
        let port = self.port;
        let err = child.stderr.take().unwrap();
        let running = watch_output(err, " running", move |line| {
            let startup = [
                "starting",
                "running",
                "Config loaded",
                "Opening ip",
                "terminating",
            ];
            if !startup.iter().any(|s| line.contains(s)) {
                eprintln!("mosquitto on {port}: {line}");
            }
        });
        if running.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        self.child = Some(child);
        true
    }

    /// SIGKILL: no goodbye, retained messages lost (no persistence).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An embedded broker on a free loopback port (it lives until the test process exits).
pub fn embedded() -> BrokerUrl {
    let b = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).expect("embedded broker");
    b.url().parse().unwrap()
}

/// Both kinds of broker, for tests that must hold on each.
pub enum AnyBroker {
    Mosquitto(Mosquitto),
    Embedded(BrokerUrl),
}

impl AnyBroker {
    pub fn all() -> Vec<(&'static str, AnyBroker)> {
        vec![
            ("mosquitto", AnyBroker::Mosquitto(Mosquitto::start())),
            ("embedded", AnyBroker::Embedded(embedded())),
        ]
    }

    pub fn url(&self) -> BrokerUrl {
        match self {
            AnyBroker::Mosquitto(m) => m.url(),
            AnyBroker::Embedded(u) => u.clone(),
        }
    }
}

/// A sealed device of `account` (the account's own name) on the broker at `url`: the
/// account's device id, no local store, a heartbeat of an hour (nothing periodic in the way
/// of a test). Call it on a tokio runtime.
pub fn sealed_node(
    url: BrokerUrl,
    account: continuity::security::account::Account,
    name: &str,
    class: continuity::model::DeviceClass,
) -> (
    continuity::node::Node,
    tokio::sync::mpsc::Receiver<continuity::node::NodeEvent>,
) {
    let mut engine = continuity::engine::EngineConfig::new(
        &account.name,
        continuity::model::Device {
            id: account.device.clone(),
            name: name.into(),
            class,
        },
    );
    engine.heartbeat_ns = 3600 * continuity::model::SECOND_NS;
    continuity::node::Node::start(continuity::node::NodeConfig {
        engine,
        broker: Some(url),
        store_dir: None,
        link: None,
        account: Some(account),
    })
    .expect("the node starts")
}

/// Devices paired into account `home`, each with its own config dir under the returned one.
pub fn paired(
    names: &[&str],
) -> (
    tempfile::TempDir,
    Vec<continuity::security::account::Account>,
) {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = names.iter().map(|n| root.path().join(n)).collect();
    let named: Vec<_> = dirs
        .iter()
        .map(|d| d.as_path())
        .zip(names.to_vec())
        .collect();
    let accounts = continuity::security::pair::pair_dirs("home", &named).unwrap();
    (root, accounts)
}

/// Retain junk on `n` topics as any user of the broker could (no key), and wait until the
/// broker has taken every one.
pub async fn retain_junk(url: &BrokerUrl, topics: impl Fn(usize) -> String, n: usize) {
    use continuity::net::link::{Link, LinkConfig, client_id};
    let cfg = LinkConfig::new(url.clone(), client_id("evil"));
    let (link, _events) = Link::connect(cfg, Duration::from_secs(5))
        .await
        .expect("the junk publisher connects");
    for i in 0..n {
        link.publish(&topics(i), b"{junk".to_vec(), true, true);
    }
    assert!(
        link.flush(Duration::from_secs(120)).await,
        "the broker took the {n} junk messages"
    );
    link.shutdown(Duration::from_secs(1)).await;
}
