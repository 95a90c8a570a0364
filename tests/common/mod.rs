//! Test harness: brokers on free loopback ports, started and stopped by the tests.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

/// Wait until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
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
        m.spawn();
        m
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> BrokerUrl {
        format!("mqtt://127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\n{}\n{}persistence false\n\
                 set_tcp_nodelay true\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n",
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
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        assert!(
            wait_listening(self.addr(), Duration::from_secs(10)),
            "mosquitto did not start listening on {}",
            self.addr()
        );
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
