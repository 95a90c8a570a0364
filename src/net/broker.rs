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
         mqtt://{addr}, or choose another port with {flag} {ip}:PORT"
    )]
    PortInUse {
        addr: SocketAddr,
        port: u16,
        ip: std::net::IpAddr,
        flag: &'static str,
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
    ws: Option<SocketAddr>,
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

    /// The WebSocket listener's address, when there is one.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws
    }

    /// `ws://ip:port/mqtt`, where browsers connect (MQTT over WebSockets, subprotocol
    /// `mqtt`; the listener takes any path).
    pub fn ws_url(&self) -> Option<String> {
        self.ws.map(|a| match a {
            SocketAddr::V4(a) => format!("ws://{a}/mqtt"),
            SocketAddr::V6(a) => format!("ws://[{}]:{}/mqtt", a.ip(), a.port()),
        })
    }

    /// Start listening on `listen`; port 0 picks a free port. Returns once clients can
    /// connect.
    pub fn start(listen: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        EmbeddedBroker::start_with(listen, None)
    }

    /// [`EmbeddedBroker::start_with`], admitting at most `max_connections` clients.
    pub fn start_limited(
        listen: SocketAddr,
        ws: Option<SocketAddr>,
        max_connections: usize,
    ) -> Result<EmbeddedBroker, BrokerError> {
        EmbeddedBroker::open(listen, ws, max_connections)
    }

    /// [`EmbeddedBroker::start`], and MQTT over WebSockets on `ws` too (for browsers: a
    /// smart-TV web app). Clients on either listener hear each other.
    pub fn start_with(
        listen: SocketAddr,
        ws: Option<SocketAddr>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        EmbeddedBroker::open(listen, ws, DEFAULT_MAX_CONNECTIONS)
    }

    fn open(
        listen: SocketAddr,
        ws: Option<SocketAddr>,
        max_connections: usize,
    ) -> Result<EmbeddedBroker, BrokerError> {
        // Both held until both are bound, so that two free ports are two ports.
        let tcp = reserve(listen, "--listen")?;
        let web = ws
            .map(|w| reserve(w, "--ws-listen").map(|l| (l, w)))
            .transpose()?;
        let addr = local(&tcp, listen)?;
        let ws = web.as_ref().map(|(l, w)| local(l, *w)).transpose()?;
        drop((tcp, web));
        let mut broker = Broker::new(config(addr, ws, max_connections));
        std::thread::Builder::new()
            .name("continuity-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!("embedded broker stopped: {e}");
                }
            })
            .map_err(|e| BrokerError::Start(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        for at in std::iter::once(addr).chain(ws) {
            while TcpStream::connect_timeout(&at, Duration::from_millis(200)).is_err() {
                if Instant::now() > deadline {
                    return Err(BrokerError::NotReady { addr: at, secs: 5 });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(EmbeddedBroker { addr, ws })
    }
}

/// Bind `listen` (port 0 picks a free port) and return the listener, so that a clear error
/// comes from here: rumqttd only logs a bind failure from its own thread. The listener is
/// closed just before rumqttd binds the same address. `flag` is the option that sets it.
fn reserve(listen: SocketAddr, flag: &'static str) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(listen).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            BrokerError::PortInUse {
                addr: listen,
                port: listen.port(),
                ip: listen.ip(),
                flag,
            }
        } else {
            BrokerError::Bind {
                addr: listen,
                source,
            }
        }
    })
}

fn local(l: &TcpListener, listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
    l.local_addr().map_err(|source| BrokerError::Bind {
        addr: listen,
        source,
    })
}

/// Clients the embedded broker admits unless told otherwise (`continuity broker
/// --max-connections`): a home has a few dozen; the load test needs thousands.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

fn config(addr: SocketAddr, ws: Option<SocketAddr>, max_connections: usize) -> Config {
    let server = |name: &str, listen| ServerSettings {
        name: name.into(),
        listen,
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
            max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(HashMap::from([(
            "1".to_owned(),
            server("continuity-v4", addr),
        )])),
        ws: ws.map(|a| HashMap::from([("1".to_owned(), server("continuity-ws", a))])),
        ..Default::default()
    }
}
