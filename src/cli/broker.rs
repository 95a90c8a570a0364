//! `continuity broker`: an MQTT broker in this process.

use std::io::Write;
use std::net::SocketAddr;

use continuity::net::broker::EmbeddedBroker;

use super::{Failure, wait_for_stop};

/// `continuity broker`: the embedded broker until Ctrl-C, advertised on the LAN unless told
/// not to.
pub async fn run(
    listen: SocketAddr,
    ws_listen: Option<SocketAddr>,
    advertise: bool,
) -> Result<(), Failure> {
    let b = tokio::task::spawn_blocking(move || EmbeddedBroker::start_with(listen, ws_listen))
        .await
        .map_err(Failure::new)?
        .map_err(Failure::new)?;
    println!(
        "continuity broker listening on {} (Ctrl-C to stop)",
        b.url()
    );
    if let Some(ws) = b.ws_url() {
        println!("MQTT over WebSockets for browsers on {ws}");
    }
    // Advertised while it runs; withdrawn when this returns.
    let _advert = if advertise {
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
