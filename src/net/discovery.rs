//! LAN discovery with mDNS (mdns-sd): brokers advertise `_mqtt._tcp.local.` with a TXT
//! record `continuity=1`; players advertise `_continuity._tcp.local.` with their device id,
//! name, class and account; a device open for pairing advertises `_continuity-pair._tcp.local.`
//! with its account, exchange and broker. `broker=auto` browses for a continuity broker with a bounded
//! wait and falls back to `mqtt://127.0.0.1:1883`, saying which it chose and why.
//!
//! `CONTINUITY_MDNS_INTERFACE=<name>` limits advertising and browsing to one interface (for
//! example `lo`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::model::{Device, DeviceClass};
use crate::net::link::BrokerUrl;

pub const BROKER_SERVICE: &str = "_mqtt._tcp.local.";
pub const PLAYER_SERVICE: &str = "_continuity._tcp.local.";
pub const PAIR_SERVICE: &str = "_continuity-pair._tcp.local.";
/// Where `broker=auto` goes when nothing answers.
pub const FALLBACK_BROKER: &str = "mqtt://127.0.0.1:1883";
/// How long `broker=auto` browses.
pub const AUTO_WAIT: Duration = Duration::from_millis(1500);
/// How long `continuity devices` browses for players (a resolution takes about a second).
pub const LAN_WAIT: Duration = Duration::from_millis(2000);

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("mDNS: {0}")]
    Mdns(String),
}

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError::Mdns(e.to_string())
    }
}

fn daemon() -> Result<ServiceDaemon, DiscoveryError> {
    let d = ServiceDaemon::new()?;
    if let Some(name) = std::env::var("CONTINUITY_MDNS_INTERFACE")
        .ok()
        .filter(|n| !n.is_empty())
    {
        d.disable_interface(IfKind::All)?;
        d.enable_interface(IfKind::Name(name))?;
    }
    Ok(d)
}

/// The interfaces mDNS uses here, for diagnostics: `lo (127.0.0.1), eth0 (192.0.2.7)`.
pub fn interfaces() -> String {
    let only = std::env::var("CONTINUITY_MDNS_INTERFACE").ok();
    let list: Vec<String> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| only.as_deref().is_none_or(|o| o == i.name))
        .map(|i| format!("{} ({})", i.name, i.ip()))
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// An advertisement; it is withdrawn when dropped.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

fn host() -> String {
    let h: String = crate::config::host_name()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{h}.local.")
}

fn advertise(
    service: &str,
    instance: &str,
    port: u16,
    props: HashMap<String, String>,
) -> Result<Advertisement, DiscoveryError> {
    let daemon = daemon()?;
    let info = ServiceInfo::new(service, instance, &host(), "", port, props)?.enable_addr_auto();
    let fullname = info.get_fullname().to_owned();
    daemon.register(info)?;
    Ok(Advertisement { daemon, fullname })
}

/// Advertise a continuity broker listening on `port`.
pub fn advertise_broker(port: u16) -> Result<Advertisement, DiscoveryError> {
    let props = HashMap::from([
        ("continuity".to_owned(), "1".to_owned()),
        ("v".to_owned(), crate::wire::VERSION.to_string()),
    ]);
    let instance = format!("continuity broker on {}", crate::config::host_name());
    advertise(BROKER_SERVICE, &instance, port, props)
}

/// Advertise a player (a device of `account`).
pub fn advertise_player(device: &Device, account: &str) -> Result<Advertisement, DiscoveryError> {
    let props = HashMap::from([
        ("id".to_owned(), device.id.clone()),
        ("name".to_owned(), device.name.clone()),
        ("class".to_owned(), device.class.as_str().to_owned()),
        ("account".to_owned(), account.to_owned()),
    ]);
    // The port is informational: players are reached through the broker.
    advertise(PLAYER_SERVICE, &device.id, 9, props)
}

/// Browse `service` for `wait`; call `found` on each resolved instance until it says stop.
fn browse(
    service: &str,
    wait: Duration,
    mut found: impl FnMut(&mdns_sd::ResolvedService) -> bool,
) -> Result<(), DiscoveryError> {
    let daemon = daemon()?;
    let rx = daemon.browse(service)?;
    let end = Instant::now() + wait;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(info)) => {
                if !found(&info) {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(service);
    let _ = daemon.shutdown();
    Ok(())
}

/// The address to reach an advertiser at, as a URL host: IPv4 first, loopback last unless it
/// is all there is.
fn best_host(info: &mdns_sd::ResolvedService) -> Option<String> {
    let mut addrs: Vec<IpAddr> = info
        .get_addresses()
        .iter()
        .map(|a| a.to_ip_addr())
        .collect();
    addrs.sort_by_key(|a| (a.is_ipv6(), a.is_loopback()));
    Some(match addrs.first()? {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    })
}

/// Advertise an open pairing exchange of `account` on the LAN, with the broker it runs
/// through (shown without credentials), so that a new device finds both.
pub fn advertise_pairing(
    account: &str,
    exchange: &str,
    host_name: &str,
    broker: &BrokerUrl,
) -> Result<Advertisement, DiscoveryError> {
    let props = HashMap::from([
        ("account".to_owned(), account.to_owned()),
        ("exchange".to_owned(), exchange.to_owned()),
        ("name".to_owned(), host_name.to_owned()),
        ("broker".to_owned(), broker.to_string()),
    ]);
    advertise(PAIR_SERVICE, exchange, broker.port, props)
}

/// Whether `ip` is an address of one of this machine's interfaces.
fn is_this_machine(ip: IpAddr) -> bool {
    ip.is_loopback()
        || if_addrs::get_if_addrs()
            .map(|all| all.iter().any(|i| i.ip() == ip))
            .unwrap_or(false)
}

/// A pairing exchange found on the LAN.
#[derive(Debug, Clone)]
pub struct FoundPairing {
    /// The broker the exchange runs through, as reachable from here.
    pub broker: BrokerUrl,
    /// The name of the device that offers it.
    pub name: String,
    pub exchange: String,
}

/// Browse for an open pairing exchange of `account` for at most `wait`. A broker the
/// advertiser reaches on its own loopback is reached here at the advertiser's address.
pub fn find_pairing(account: &str, wait: Duration) -> Option<FoundPairing> {
    let mut found = None;
    let _ = browse(PAIR_SERVICE, wait, |info| {
        let p = |k| info.txt_properties.get_property_val_str(k);
        if p("account") != Some(account) {
            return true;
        }
        let (Some(exchange), Some(name), Some(broker)) = (p("exchange"), p("name"), p("broker"))
        else {
            return true;
        };
        let Ok(mut url) = broker.parse::<BrokerUrl>() else {
            return true;
        };
        let local = url
            .host
            .parse::<IpAddr>()
            .is_ok_and(|a| a.is_loopback() || a.is_unspecified())
            || url.host == "localhost";
        // On this machine, its own loopback reaches it; elsewhere, its address does.
        let here = info
            .get_addresses()
            .iter()
            .any(|a| is_this_machine(a.to_ip_addr()));
        if local
            && !here
            && let Some(host) = best_host(info)
        {
            url.host = host.trim_matches(['[', ']']).to_owned();
        }
        found = Some(FoundPairing {
            broker: url,
            name: name.to_owned(),
            exchange: exchange.to_owned(),
        });
        false
    });
    found
}

/// A broker found on the LAN.
#[derive(Debug, Clone)]
pub struct FoundBroker {
    pub url: BrokerUrl,
    /// The advertised instance name.
    pub instance: String,
}

/// Why no broker was found.
#[derive(Debug, Clone)]
pub struct NotFound(pub String);

/// Browse for a continuity broker for at most `wait`.
pub fn find_broker(wait: Duration) -> Result<FoundBroker, NotFound> {
    let mut best: Option<FoundBroker> = None;
    let browsed = browse(BROKER_SERVICE, wait, |info| {
        if info.txt_properties.get_property_val_str("continuity") != Some("1") {
            return true;
        }
        let Some(host) = best_host(info) else {
            return true;
        };
        if let Ok(url) = format!("mqtt://{host}:{}", info.get_port()).parse() {
            best = Some(FoundBroker {
                url,
                instance: info.get_fullname().to_owned(),
            });
            return false;
        }
        true
    });
    if let Err(e) = browsed {
        return Err(NotFound(format!("mDNS is not available here: {e}")));
    }
    best.ok_or_else(|| {
        NotFound(format!(
            "no continuity broker answered on {BROKER_SERVICE} within {:.1} s (interfaces: {})",
            wait.as_secs_f32(),
            interfaces()
        ))
    })
}

/// Resolve a `--broker`/`broker` value: `auto` browses the LAN, anything else is a URL.
/// Returns the URL and, for `auto`, a sentence saying which broker was chosen and why.
pub fn resolve_broker(
    text: &str,
    wait: Duration,
) -> Result<(BrokerUrl, Option<String>), crate::net::link::LinkError> {
    if !text.eq_ignore_ascii_case("auto") {
        return Ok((text.parse()?, None));
    }
    match find_broker(wait) {
        Ok(f) => Ok((
            f.url.clone(),
            Some(format!(
                "broker=auto: using {} ({} on mDNS)",
                f.url, f.instance
            )),
        )),
        Err(NotFound(why)) => Ok((
            FALLBACK_BROKER.parse()?,
            Some(format!(
                "broker=auto: {why}; falling back to {FALLBACK_BROKER}"
            )),
        )),
    }
}

/// A player seen on the LAN.
#[derive(Debug, Clone, PartialEq)]
pub struct LanDevice {
    pub id: String,
    pub name: String,
    pub class: DeviceClass,
    pub account: String,
}

/// The players that answer on the LAN within `wait`.
pub fn find_players(wait: Duration) -> Vec<LanDevice> {
    let mut out: Vec<LanDevice> = Vec::new();
    let _ = browse(PLAYER_SERVICE, wait, |info| {
        let p = |k| {
            info.txt_properties
                .get_property_val_str(k)
                .map(str::to_owned)
        };
        if let (Some(id), Some(name), Some(class), Some(account)) =
            (p("id"), p("name"), p("class"), p("account"))
            && !out.iter().any(|d| d.id == id)
        {
            out.push(LanDevice {
                id,
                name,
                class: class.parse().unwrap_or(DeviceClass::Other),
                account,
            });
        }
        true
    });
    out
}
