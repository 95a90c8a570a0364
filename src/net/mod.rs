//! What touches the network: the MQTT link, the embedded broker, LAN discovery.
//!
//! - [`link`]: the MQTT link (tokio + rumqttc): reconnects, republishes, coalesces.
//! - [`broker`]: the embedded MQTT broker (rumqttd) for zero-config use.
//! - [`discovery`]: mDNS: brokers and players on the LAN, `broker=auto`.
//! - [`web`]: the web server of `continuity broker --web`: the smart-TV app and media.

pub mod broker;
pub mod discovery;
pub mod keeper;
pub mod link;
pub mod web;
