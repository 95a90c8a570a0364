//! `continuity broker`: an MQTT broker in this process.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use continuity::net::broker::EmbeddedBroker;
use continuity::net::web::{WebConfig, WebServer};

use super::{Failure, wait_for_stop};

pub struct BrokerArgs {
    pub listen: SocketAddr,
    pub ws_listen: Option<SocketAddr>,
    /// The web app's address (`--web`).
    pub web: Option<SocketAddr>,
    /// A folder served at `/media/` (`--media`).
    pub media: Option<PathBuf>,
    pub advertise: bool,
    pub max_connections: usize,
}

/// `continuity broker`: the embedded broker until Ctrl-C, advertised on the LAN unless told
/// not to; with `--web`, the smart-TV web app too.
pub async fn run(args: BrokerArgs) -> Result<(), Failure> {
    let (listen, ws_listen) = (args.listen, args.ws_listen);
    // The web app reaches the broker at `/mqtt` of its own port: a WebSocket listener on
    // loopback, unless one was asked for.
    let ws = ws_listen.or(args.web.map(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 0))));
    let max = args.max_connections;
    if let Err(e) = super::raise_open_files(max) {
        eprintln!("warning: fewer clients than --max-connections can connect: {e}");
    }
    let b = tokio::task::spawn_blocking(move || EmbeddedBroker::start_limited(listen, ws, max))
        .await
        .map_err(Failure::new)?
        .map_err(Failure::new)?;
    println!(
        "continuity broker listening on {} (Ctrl-C to stop)",
        b.url()
    );
    if let Some(ws) = b.ws_url().filter(|_| ws_listen.is_some()) {
        println!("MQTT over WebSockets for browsers on {ws}");
    }
    let _web = match args.web {
        None => None,
        Some(at) => {
            let cfg = WebConfig {
                media: args.media.clone(),
                mqtt_ws: b.ws_addr(),
            };
            let w = WebServer::start(at, cfg).await.map_err(Failure::new)?;
            for url in w.lan_urls() {
                println!("web app (open it on the TV): {url}");
            }
            if let Some(dir) = &args.media {
                println!(
                    "media of {} at {}media/<file>",
                    dir.display(),
                    w.lan_urls()[0]
                );
            }
            Some(w)
        }
    };
    // Advertised while it runs; withdrawn when this returns.
    let _advert = if args.advertise {
        match continuity::net::discovery::advertise_broker(b.addr().port()) {
            Ok(a) => {
                println!(
                    "advertised on the LAN as {} (--no-advertise to stop)",
                    continuity::net::discovery::BROKER_SERVICE
                );
                Some(a)
            }
            Err(e) => {
                eprintln!("warning: not advertised on the LAN: {e}");
                None
            }
        }
    } else {
        None
    };
    let _ = std::io::stdout().flush();
    wait_for_stop().await;
    Ok(())
}
