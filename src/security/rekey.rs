//! Key rotation: how the devices of an account get a new account secret after one of them
//! was revoked, without the revoked device learning it.
//!
//! Devices have no static encryption keys (ring's X25519 is ephemeral-only, and a device's
//! Ed25519 key only signs), so the new secret travels through a fresh exchange per device:
//!
//! 1. The device that revokes makes a new secret and publishes the roster (the revoked
//!    entry, and `key`: the new key's id), sealed under the key everyone still has.
//! 2. A device that learns of a key id it lacks (from that roster, or a message sealed with
//!    it by a trusted device) publishes a *request*, retained on `rekey/<device>/request`:
//!    the key id, an ephemeral X25519 public key, signed with its device key.
//! 3. Any device that holds that key and trusts the requester (paired, not revoked) answers
//!    on `rekey/<device>/answer`: its own ephemeral X25519 key and the secret with the
//!    current roster, sealed (AES-256-GCM) under a key derived from the X25519 agreement,
//!    signed with its device key.
//! 4. The requester checks the signer, opens the answer, checks that the secret derives to
//!    the key id it asked for, and takes it in.
//!
//! A device offline at the time asks when it comes back, and any device that has the new
//! key answers: the one that revoked need not be online.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::agreement::EphemeralPrivateKey;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::security::account::Account;
use crate::security::seal::{self, AccountKeys, PrimitiveError};
use crate::wire::{self, Roster};

const REQUEST_LABEL: &[u8] = b"continuity-v1 rekey request\0";
const ANSWER_LABEL: &[u8] = b"continuity-v1 rekey answer\0";
const WRAP_INFO: &[u8] = b"continuity-v1 rekey wrap";
const SEAL_LABEL: &[u8] = b"continuity-v1 rekey secret\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekeyError {
    #[error("a malformed key rotation message: {0}")]
    Malformed(String),
    #[error("'{0}' is not a paired device of this account (or was revoked)")]
    Untrusted(String),
    #[error("the signature of '{0}' does not verify")]
    BadSignature(String),
    #[error("asks for key '{0}', which this device does not hold")]
    NotHeld(String),
    #[error("answers another request")]
    Stale,
    #[error("the secret handed over is not the key asked for")]
    WrongKey,
    #[error("the key handed over is not newer than the one in use (an old key is not taken back)")]
    NotNewer,
    #[error("the sealed secret does not open")]
    Open,
    #[error("no randomness available")]
    Random,
}

impl From<PrimitiveError> for RekeyError {
    fn from(e: PrimitiveError) -> Self {
        match e {
            PrimitiveError::Random => RekeyError::Random,
            PrimitiveError::Open => RekeyError::Open,
            PrimitiveError::Malformed(m) => RekeyError::Malformed(m),
        }
    }
}

/// "Give me key `key_id`", from `device` (retained until answered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequest {
    pub v: u32,
    pub device: String,
    pub key_id: String,
    /// Ephemeral X25519 public key, base64url.
    pub x25519: String,
    pub sent_unix_ns: u64,
    /// Ed25519 signature of the requester over the fields above, base64url.
    pub sig: String,
}

/// The secret for `to`, from `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAnswer {
    pub v: u32,
    pub to: String,
    pub from: String,
    pub key_id: String,
    /// The answerer's ephemeral X25519 public key, base64url.
    pub x25519: String,
    /// The request's X25519 key, so that an answer to an older request is told apart.
    pub request_x25519: String,
    /// nonce (12 bytes) || AES-256-GCM ciphertext of `{"secret": ..., "roster": ...}`.
    pub sealed: String,
    pub sig: String,
}

#[derive(Serialize, Deserialize)]
struct Handed {
    secret: String,
    roster: Roster,
}

pub fn request_topic(account: &str, device: &str) -> String {
    format!("{}/{account}/rekey/{device}/request", wire::PREFIX)
}

pub fn answer_topic(account: &str, device: &str) -> String {
    format!("{}/{account}/rekey/{device}/answer", wire::PREFIX)
}

/// Every device's requests (what devices that hold the key subscribe to).
pub fn request_filter(account: &str) -> String {
    format!("{}/{account}/rekey/+/request", wire::PREFIX)
}

/// Whether a topic belongs to key rotation.
pub fn is_rekey_topic(account: &str, topic: &str) -> bool {
    topic
        .strip_prefix(&format!("{}/{account}/rekey/", wire::PREFIX))
        .is_some()
}

fn fields(label: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut m = label.to_vec();
    for p in parts {
        m.extend_from_slice(p.as_bytes());
        m.push(0);
    }
    m
}

fn request_bytes(r: &KeyRequest) -> Vec<u8> {
    fields(
        REQUEST_LABEL,
        &[&r.device, &r.key_id, &r.x25519, &r.sent_unix_ns.to_string()],
    )
}

fn answer_bytes(a: &KeyAnswer) -> Vec<u8> {
    fields(
        ANSWER_LABEL,
        &[
            &a.to,
            &a.from,
            &a.key_id,
            &a.x25519,
            &a.request_x25519,
            &a.sealed,
        ],
    )
}

fn verify(roster: &Roster, device: &str, bytes: &[u8], sig: &str) -> Result<(), RekeyError> {
    let entry = roster
        .entry(device)
        .filter(|e| !e.revoked)
        .ok_or_else(|| RekeyError::Untrusted(device.to_owned()))?;
    let public = B64
        .decode(&entry.public_key)
        .map_err(|_| RekeyError::Untrusted(device.to_owned()))?;
    let sig = B64
        .decode(sig)
        .map_err(|_| RekeyError::BadSignature(device.to_owned()))?;
    UnparsedPublicKey::new(&ED25519, public)
        .verify(bytes, &sig)
        .map_err(|_| RekeyError::BadSignature(device.to_owned()))
}

fn wrap_key(shared: &[u8], request_x: &[u8], answer_x: &[u8]) -> LessSafeKey {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"continuity v1").extract(shared);
    let info = [WRAP_INFO, request_x, answer_x];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .expect("a valid HKDF length");
    LessSafeKey::new(UnboundKey::from(okm))
}

fn seal_label(to: &str, key_id: &str) -> Vec<u8> {
    fields(SEAL_LABEL, &[to, key_id])
}

/// A request in flight: its ephemeral key is used once, by the first valid answer.
pub struct Pending {
    pub key_id: String,
    pub sent_unix_ns: u64,
    private: Option<EphemeralPrivateKey>,
    x_pub: [u8; 32],
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("key_id", &self.key_id)
            .field("sent_unix_ns", &self.sent_unix_ns)
            .finish_non_exhaustive()
    }
}

/// Ask for key `key_id` as the device of `account`.
pub fn request(
    account: &Account,
    key_id: &str,
    now_unix_ns: u64,
) -> Result<(Pending, KeyRequest), RekeyError> {
    let (private, x_pub) = seal::ephemeral()?;
    let mut req = KeyRequest {
        v: wire::VERSION,
        device: account.device.clone(),
        key_id: key_id.to_owned(),
        x25519: B64.encode(x_pub),
        sent_unix_ns: now_unix_ns,
        sig: String::new(),
    };
    req.sig = B64.encode(account.signer.sign(&request_bytes(&req)).as_ref());
    Ok((
        Pending {
            key_id: key_id.to_owned(),
            sent_unix_ns: now_unix_ns,
            private: Some(private),
            x_pub,
        },
        req,
    ))
}

/// Answer a request with the account's current secret and roster, if the requester is a
/// paired device and asks for the key this device holds.
pub fn answer(account: &Account, req: &KeyRequest) -> Result<KeyAnswer, RekeyError> {
    if account.keys().key_id != req.key_id {
        return Err(RekeyError::NotHeld(req.key_id.clone()));
    }
    verify(&account.roster, &req.device, &request_bytes(req), &req.sig)?;
    let request_x = seal::b64_32("x25519", &req.x25519)?;
    let (private, x_pub) = seal::ephemeral()?;
    let shared = seal::agree(private, &request_x)?;
    let key = wrap_key(&shared, &request_x, &x_pub);
    let handed = Handed {
        secret: B64.encode(account.secret()),
        roster: account.roster.clone(),
    };
    let sealed = seal::seal_with(
        &key,
        &seal_label(&req.device, &req.key_id),
        &serde_json::to_vec(&handed).expect("serialises"),
    )?;
    let mut ans = KeyAnswer {
        v: wire::VERSION,
        to: req.device.clone(),
        from: account.device.clone(),
        key_id: req.key_id.clone(),
        x25519: B64.encode(x_pub),
        request_x25519: req.x25519.clone(),
        sealed,
        sig: String::new(),
    };
    ans.sig = B64.encode(account.signer.sign(&answer_bytes(&ans)).as_ref());
    Ok(ans)
}

/// Take an answer to `pending`: checked against `roster` (who may answer), opened, and the
/// secret checked against the key id asked for, which the answerer's roster must name as
/// its current key, changed no earlier than the rotation `roster` knows of: a device that
/// lags behind cannot hand an old key back. Returns the secret and the answerer's roster.
pub fn accept(
    pending: &mut Pending,
    roster: &Roster,
    ans: &KeyAnswer,
) -> Result<([u8; 32], Roster), RekeyError> {
    if ans.key_id != pending.key_id || ans.request_x25519 != B64.encode(pending.x_pub) {
        return Err(RekeyError::Stale);
    }
    verify(roster, &ans.from, &answer_bytes(ans), &ans.sig)?;
    let answer_x = seal::b64_32("x25519", &ans.x25519)?;
    let private = pending.private.take().ok_or(RekeyError::Stale)?;
    let shared = seal::agree(private, &answer_x)?;
    let key = wrap_key(&shared, &pending.x_pub, &answer_x);
    let plain = seal::open_with(&key, &seal_label(&ans.to, &ans.key_id), &ans.sealed)?;
    let handed: Handed =
        serde_json::from_slice(&plain).map_err(|e| RekeyError::Malformed(e.to_string()))?;
    let secret = seal::b64_32("secret", &handed.secret)?;
    if AccountKeys::derive(&secret).key_id != pending.key_id {
        return Err(RekeyError::WrongKey);
    }
    let newer = match (&handed.roster.key, &roster.key) {
        (Some(theirs), _) if theirs.id != pending.key_id => false,
        (Some(theirs), Some(ours)) => {
            (theirs.changed_unix_ns, &theirs.id) >= (ours.changed_unix_ns, &ours.id)
        }
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !newer {
        return Err(RekeyError::NotNewer);
    }
    Ok((secret, handed.roster))
}

/// Decode a request or an answer (plain JSON; nothing in either is secret).
pub fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, RekeyError> {
    if payload.len() > wire::MAX_PAYLOAD {
        return Err(RekeyError::Malformed("too large".into()));
    }
    serde_json::from_slice(payload).map_err(|e| RekeyError::Malformed(e.to_string()))
}

/// How long a request waits for an answer before it is sent again.
pub const RETRY_NS: u64 = 60 * 1_000_000_000;

/// What to do about a key this device lacks.
#[derive(Debug)]
pub enum Want {
    /// Nothing: the key is held, a request is in flight, or this device was revoked.
    Nothing,
    /// Another process of this device rotated it: the account has taken it from the config
    /// dir; seal with it from now on.
    Adopted,
    /// Publish this request, retained, on this topic.
    Ask { topic: String, payload: Vec<u8> },
}

/// One device's side of key rotation (a node, or the command line tool's view): asks for a
/// key at most once a minute, and takes the first valid answer to its request.
#[derive(Debug, Default)]
pub struct Asker {
    pending: Option<Pending>,
}

impl Asker {
    /// `account` lacks key `key_id`, which a trusted device uses or names.
    pub fn want(&mut self, account: &mut Account, key_id: &str, now_unix_ns: u64) -> Want {
        let revoked = account
            .roster
            .entry(&account.device)
            .is_some_and(|e| e.revoked);
        if revoked || account.all_keys().iter().any(|k| k.key_id == key_id) {
            return Want::Nothing;
        }
        if let Some(secret) = account.secret_on_disk()
            && AccountKeys::derive(&secret).key_id == key_id
        {
            let roster = account.roster.clone();
            return match account.adopt_rotation(secret, &roster) {
                Ok(()) => Want::Adopted,
                Err(e) => {
                    tracing::warn!("{e}");
                    Want::Nothing
                }
            };
        }
        let in_flight = self
            .pending
            .as_ref()
            .is_some_and(|p| p.key_id == key_id && now_unix_ns < p.sent_unix_ns + RETRY_NS);
        if in_flight {
            return Want::Nothing;
        }
        match request(account, key_id, now_unix_ns) {
            Ok((p, req)) => {
                tracing::info!("the account key was rotated: asking for key {key_id}");
                self.pending = Some(p);
                Want::Ask {
                    topic: request_topic(&account.name, &account.device),
                    payload: wire::encode(&req),
                }
            }
            Err(e) => {
                tracing::warn!("cannot ask for the rotated key: {e}");
                Want::Nothing
            }
        }
    }

    /// An answer on this device's answer topic. `Ok(true)`: the key is taken in (kept in
    /// the config dir); clear the request and seal with it from now on.
    pub fn take_answer(
        &mut self,
        account: &mut Account,
        payload: &[u8],
    ) -> Result<bool, RekeyError> {
        let ans: KeyAnswer = decode(payload)?;
        let Some(p) = self.pending.as_mut() else {
            return Ok(false);
        };
        let (secret, roster) = accept(p, &account.roster, &ans)?;
        self.pending = None;
        account
            .adopt_rotation(secret, &roster)
            .map_err(|e| RekeyError::Malformed(e.to_string()))?;
        tracing::info!("took the rotated account key from {}", ans.from);
        Ok(true)
    }
}
