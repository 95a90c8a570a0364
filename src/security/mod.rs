//! End-to-end security, with ring as the only crypto provider. The modules form a tree:
//! `seal` (envelopes and the primitives) under `account` (keys and roster), under `pair`
//! (joining an account) and `rekey` (handing on a rotated key).
//!
//! - [`seal`]: sealed envelopes (AES-256-GCM, HKDF, replay counters, Ed25519 signatures) and
//!   the ephemeral X25519 agreement that pairing and key rotation share.
//! - [`account`]: the account secret, the device key and the roster of paired devices.
//! - [`pair`]: pairing a new device (X25519, a commitment, a 6-digit code).
//! - [`rekey`]: handing a rotated account key to the remaining devices after a revocation.

pub mod account;
pub mod pair;
pub mod rekey;
pub mod seal;
