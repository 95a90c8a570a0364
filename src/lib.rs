//! continuity: continue playback on another device, at the same point.
//!
//! The library behind the `continuity` GStreamer element and command line tool:
//!
//! - [`model`]: media, tracks, the anchor (where playback is), devices, resume rules.
//! - [`hlc`]: hybrid logical clock stamps and last-writer-wins merging.
//! - [`wire`]: wire contract v1: topics, JSON messages, strict decoding, schemas.
//! - [`engine`]: the sans-IO state machine that decides what to publish and when.
//! - [`security`]: sealed envelopes, the account's keys and roster, pairing, key rotation.
//! - [`net`]: the MQTT link, the embedded broker (rumqttd), mDNS discovery.
//! - [`store`]: the local durable store (SQLite) of sessions and resume points.
//! - [`intake`]: the receive pipeline (open, check, park for a key, merge rosters), sans-IO.
//! - [`history`]: the account's events shared between devices (what `stats` counts), sans-IO.
//! - [`node`]: engine, link and store wired together: a device on the network.
//! - [`observe`]: a read-only view of an account (the CLI's `devices` and `sessions`).
//! - [`config`]: the config dir and the stable device id.
//!
//! The engine and the wire contract know nothing of GStreamer or the network; see
//! `docs/PROTOCOL.md` for the contract that other implementations follow.

pub mod config;
pub mod engine;
pub mod history;
pub mod hlc;
pub mod intake;
pub mod model;
pub mod net;
pub mod node;
pub mod observe;
pub mod patterns;
pub mod profile;
pub mod security;
pub mod stats;
pub mod store;
pub mod wire;
