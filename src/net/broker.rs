//! The embedded broker: rumqttd in-process, for zero-config use (`continuity broker`), the
//! demo and the tests. It keeps retained messages and fires last wills; it keeps nothing
//! across restarts, which is why every device republishes its own state after reconnecting.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot listen on {addr}: port {port} is already in use (another broker, such as a system \
         mosquitto, may be running there). Stop it, point clients at it with --broker \
         mqtt://{addr}, or choose another port with --listen {ip}:PORT"
    )]
    PortInUse {
        addr: SocketAddr,
        port: u16,
        ip: std::net::IpAddr,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the embedded broker did not start listening on {addr} within {secs} s")]
    NotReady { addr: SocketAddr, secs: u64 },
    #[error("cannot start the embedded broker: {0}")]
    Start(String),
}

/// A running embedded broker. It runs until the process exits (rumqttd has no shutdown).
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

impl EmbeddedBroker {
    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://ip:port` for this broker.
    pub fn url(&self) -> String {
        match self.addr {
            SocketAddr::V4(a) => format!("mqtt://{a}"),
            SocketAddr::V6(a) => format!("mqtt://[{}]:{}", a.ip(), a.port()),
        }
    }

    /// Start listening on `listen`; port 0 picks a free port. Returns once clients can
    /// connect.
    pub fn start(listen: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        // Bind first ourselves: rumqttd only logs a bind failure from its own thread.
        let addr = match TcpListener::bind(listen) {
            Ok(l) => l.local_addr().map_err(|source| BrokerError::Bind {
                addr: listen,
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(BrokerError::PortInUse {
                    addr: listen,
                    port: listen.port(),
                    ip: listen.ip(),
                });
            }
            Err(source) => {
                return Err(BrokerError::Bind {
                    addr: listen,
                    source,
                });
            }
        };
        let mut broker = Broker::new(config(addr));
        std::thread::Builder::new()
            .name("continuity-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!("embedded broker stopped: {e}");
                }
            })
            .map_err(|e| BrokerError::Start(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(EmbeddedBroker { addr });
            }
            if Instant::now() > deadline {
                return Err(BrokerError::NotReady { addr, secs: 5 });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn config(addr: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "continuity-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 5_000,
            // Room for the largest wire message and the MQTT header.
            max_payload_size: crate::wire::MAX_PAYLOAD + 4096,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    }
}
