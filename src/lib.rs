//! continuity: continue playback on another device, at the same point.
//!
//! The library behind the `continuity` GStreamer element and command line tool:
//!
//! - [`model`]: media, tracks, the anchor (where playback is), devices, resume rules.
//! - [`hlc`]: hybrid logical clock stamps and last-writer-wins merging.
//! - [`wire`]: wire contract v1: topics, JSON messages, strict decoding, schemas.
//! - [`engine`]: the sans-IO state machine that decides what to publish and when.
//! - [`link`]: the MQTT link (tokio + rumqttc): reconnects, republishes, coalesces.
//! - [`store`]: the local durable store (SQLite) of sessions and resume points.
//! - [`node`]: engine, link and store wired together: a device on the network.
//! - [`observe`]: a read-only view of an account (the CLI's `devices` and `sessions`).
//! - [`seal`]: sealed envelopes (AES-256-GCM, HKDF, replay counters, Ed25519 signatures).
//! - [`account`]: the account secret, the device key and the roster of paired devices.
//! - [`pair`]: pairing a new device (X25519, a commitment, a 6-digit code).
//! - [`rekey`]: handing a rotated account key to the remaining devices after a revocation.
//! - [`broker`]: the embedded MQTT broker (rumqttd) for zero-config use.
//! - [`config`]: the config dir and the stable device id.
//! - [`discovery`]: mDNS: brokers and players on the LAN, `broker=auto`.
//!
//! The engine and the wire contract know nothing of GStreamer or the network; see
//! `docs/PROTOCOL.md` for the contract that other implementations follow.

pub mod account;
pub mod broker;
pub mod config;
pub mod discovery;
pub mod engine;
pub mod hlc;
pub mod link;
pub mod model;
pub mod node;
pub mod observe;
pub mod pair;
pub mod rekey;
pub mod seal;
pub mod store;
pub mod wire;
