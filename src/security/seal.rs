//! Sealed messages: AES-256-GCM with keys derived by HKDF-SHA256 from the account secret,
//! the topic, the sender and a per-sender counter in the associated data, and a replay
//! check on that counter. ring is the only crypto provider; every primitive here is also in
//! WebCrypto, so a browser can open what a device seals (`docs/PROTOCOL.md`, "Sealed
//! envelope"; vectors in `tests/vectors/envelope.json`).
//!
//! Every sealed message is also signed with the sender's Ed25519 device key, and the
//! receiver checks the signer against the account's roster (see [`crate::security::account`]).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{self, EphemeralPrivateKey, X25519};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use ring::{hkdf, hmac};

use crate::wire::{self, Sealed, SealedEnvelope};

/// Salt of every derivation.
const SALT: &[u8] = b"continuity v1";
/// What the associated data starts with.
const AAD_LABEL: &[u8] = b"continuity-v1\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed with key '{0}', which this device does not have")]
    UnknownKey(String),
    #[error("'{field}' is not valid base64url")]
    Encoding { field: &'static str },
    #[error("the nonce must be 12 bytes")]
    Nonce,
    #[error("does not open: wrong key, altered, or moved to another topic or sender")]
    Open,
    #[error("replayed or old: counter {got} from '{sender}', already saw {seen}")]
    Replay { sender: String, got: u64, seen: u64 },
    #[error("{0}")]
    Wire(wire::WireError),
    #[error("the sealed content is not a valid message: {0}")]
    Inner(wire::WireError),
    #[error("no randomness available")]
    Random,
    #[error("'{0}' is not a paired device of this account")]
    UnknownSigner(String),
    #[error("'{0}' was revoked")]
    Revoked(String),
    #[error("the signature of '{0}' does not verify")]
    BadSignature(String),
    #[error("sent as '{claimed}' but sealed and signed by '{sender}'")]
    Impersonation { sender: String, claimed: String },
    #[error("plain (unsealed) message refused: this account is sealed")]
    Plaintext,
    #[error("an unsigned clear of retained state refused: this account is sealed")]
    UnsignedClear,
}

impl SealError {
    /// A stable short code, used by the envelope vectors (`docs/PROTOCOL.md`, "Order of
    /// checks"); a refusal by the wire decoder has the decoder's code.
    pub fn code(&self) -> &'static str {
        match self {
            SealError::Wire(e) => e.code(),
            SealError::Plaintext => "plaintext",
            SealError::UnsignedClear => "unsigned-clear",
            SealError::Encoding { .. } => "encoding",
            SealError::Nonce => "nonce",
            SealError::UnknownSigner(_) => "unknown-signer",
            SealError::Revoked(_) => "revoked",
            SealError::BadSignature(_) => "bad-signature",
            SealError::UnknownKey(_) => "unknown-key",
            SealError::Open => "open",
            SealError::Inner(_) => "inner",
            SealError::Replay { .. } => "replay",
            SealError::Impersonation { .. } => "impersonation",
            SealError::Random => "random",
        }
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(secret: &[u8], info: &[u8]) -> [u8; 32] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
    let mut out = [0u8; 32];
    prk.expand(&[info], Len(32))
        .and_then(|okm| okm.fill(&mut out))
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The keys of one account secret.
#[derive(Clone)]
pub struct AccountKeys {
    /// Names the key in envelopes (the first 8 bytes of its own derivation, hex).
    pub key_id: String,
    seal_key: [u8; 32],
    media_key: [u8; 32],
}

impl std::fmt::Debug for AccountKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKeys")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AccountKeys {
    /// Derive the keys of an account secret (32 random bytes, created once per account).
    pub fn derive(secret: &[u8]) -> AccountKeys {
        AccountKeys {
            key_id: hex(&derive(secret, b"continuity v1 key-id")[..8]),
            seal_key: derive(secret, b"continuity v1 seal"),
            media_key: derive(secret, b"continuity v1 media-key"),
        }
    }

    /// A new account secret.
    pub fn new_secret() -> Result<[u8; 32], SealError> {
        let mut s = [0u8; 32];
        SystemRandom::new()
            .fill(&mut s)
            .map_err(|_| SealError::Random)?;
        Ok(s)
    }

    /// The keyed topic segment for a media id: HMAC-SHA256 with the media key, 16 bytes,
    /// hex. The broker learns nothing of the id.
    pub fn media_key(&self, media_id: &str) -> String {
        self.media_keys().key(media_id)
    }

    /// The account's way of keying resume topics.
    pub fn media_keys(&self) -> wire::MediaKeys {
        wire::MediaKeys::Keyed(hmac::Key::new(hmac::HMAC_SHA256, &self.media_key))
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &self.seal_key).expect("a 32-byte AES-256 key"),
        )
    }
}

/// The associated data: a label, the topic, the sender and the counter, so that a message
/// moved to another topic, or claimed by another sender, or renumbered, does not open.
pub fn associated_data(topic: &str, sender: &str, counter: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + topic.len() + sender.len() + 10);
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(topic.as_bytes());
    aad.push(0);
    aad.extend_from_slice(sender.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&counter.to_be_bytes());
    aad
}

/// What the sender's signature covers: the associated data, the nonce and the ciphertext
/// (with its tag).
pub fn signed_bytes(aad: &[u8], nonce: &[u8; 12], ct: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(aad.len() + 12 + ct.len());
    m.extend_from_slice(aad);
    m.extend_from_slice(nonce);
    m.extend_from_slice(ct);
    m
}

/// Seal and sign a plain message (its JSON bytes) for `topic`, with a fresh random nonce.
pub fn seal(
    keys: &AccountKeys,
    signer: &Ed25519KeyPair,
    topic: &str,
    sender: &str,
    counter: u64,
    plaintext: &[u8],
) -> Result<SealedEnvelope, SealError> {
    let mut nonce = [0u8; 12];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Random)?;
    let mut env = seal_with_nonce(keys, topic, sender, counter, nonce, plaintext);
    sign(&mut env, signer, topic);
    Ok(env)
}

/// Add the sender's signature to an envelope sealed for `topic`.
pub fn sign(env: &mut SealedEnvelope, signer: &Ed25519KeyPair, topic: &str) {
    let s = &env.sealed;
    let aad = associated_data(topic, &s.sender, s.counter);
    let nonce: [u8; 12] = B64
        .decode(&s.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .expect("an envelope this crate sealed has a 12-byte nonce");
    let ct = B64.decode(&s.ct).expect("an envelope this crate sealed");
    let sig = signer.sign(&signed_bytes(&aad, &nonce, &ct));
    env.sealed.sig = B64.encode(sig.as_ref());
}

/// The base64url form of a device's public signing key (as in the roster).
pub fn public_key(signer: &Ed25519KeyPair) -> String {
    B64.encode(signer.public_key().as_ref())
}

/// [`seal`] with a given nonce, not signed yet ([`sign`] does it): for test vectors only (a
/// nonce must never repeat).
pub fn seal_with_nonce(
    keys: &AccountKeys,
    topic: &str,
    sender: &str,
    counter: u64,
    nonce: [u8; 12],
    plaintext: &[u8],
) -> SealedEnvelope {
    let mut buf = plaintext.to_vec();
    keys.cipher()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(topic, sender, counter)),
            &mut buf,
        )
        .expect("AES-GCM seals any length a message can have");
    SealedEnvelope {
        v: wire::VERSION,
        sealed: Sealed {
            alg: "A256GCM".into(),
            key_id: keys.key_id.clone(),
            sender: sender.to_owned(),
            counter,
            nonce: B64.encode(nonce),
            ct: B64.encode(&buf),
            // Filled in by `sign`.
            sig: String::new(),
        },
    }
}

/// Who may sign: device id to public key (32 bytes), or revoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signers(pub HashMap<String, Option<[u8; 32]>>);

impl Signers {
    /// From a roster: revoked entries are kept as revoked.
    pub fn from_roster(roster: &wire::Roster) -> Signers {
        Signers(
            roster
                .devices
                .iter()
                .map(|e| {
                    let key = (!e.revoked)
                        .then(|| B64.decode(&e.public_key).ok()?.try_into().ok())
                        .flatten();
                    (e.device.clone(), key)
                })
                .collect(),
        )
    }
}

/// Opens envelopes: checks the signature against the roster, opens the ciphertext, refuses
/// replays, and checks that the message speaks only for its signer.
///
/// Replays are judged per sender and topic: a retained topic (state) accepts the counter it
/// last accepted again (the broker delivers its retained copy after every reconnect, and
/// state merges by stamp anyway); a transient topic (commands, events) wants one it has not
/// accepted, at most [`LATE_WINDOW`] below the greatest (see [`Accepted`]).
#[derive(Debug)]
pub struct Opener {
    keys: Vec<AccountKeys>,
    pub signers: Signers,
    /// The roster the signers come from (merged as trusted rosters arrive).
    pub roster: wire::Roster,
    seen: HashMap<(String, String), Accepted>,
    media_keys: wire::MediaKeys,
}

/// How far below the greatest counter accepted on a transient topic a message may come and
/// still be taken in, in counter units (the sender's microseconds): 5 s. MQTT orders one
/// client's messages on a topic only within one QoS, and a device sends its clock probes at
/// QoS 0 and its other commands at QoS 1 to the same inbox: a broker may deliver a probe
/// behind a command sent after it (RabbitMQ does, across its nodes).
pub const LATE_WINDOW: u64 = 5_000_000;
/// The most counters remembered on one transient topic inside the window.
const LATE_KEPT: usize = 64;

/// The counters accepted from one sender on one topic.
#[derive(Debug, Default, Clone)]
struct Accepted {
    /// Nothing at or below it is taken in on a transient topic, and nothing below it on a
    /// retained one: what the store remembers from before a restart, the last counter of a
    /// retained topic, and what fell out of the window.
    floor: u64,
    /// The counters accepted on a transient topic above the floor, ascending.
    recent: Vec<u64>,
}

impl Accepted {
    fn greatest(&self) -> u64 {
        self.recent.last().copied().unwrap_or(self.floor)
    }

    fn fresh(&self, counter: u64, retained: bool) -> bool {
        if retained {
            return counter >= self.floor;
        }
        counter > self.floor
            && counter.saturating_add(LATE_WINDOW) > self.greatest()
            && self.recent.binary_search(&counter).is_err()
    }

    fn accept(&mut self, counter: u64, retained: bool) {
        if retained {
            self.floor = self.floor.max(counter);
            return;
        }
        if let Err(at) = self.recent.binary_search(&counter) {
            self.recent.insert(at, counter);
        }
        let greatest = self.greatest();
        let keep_from = self
            .recent
            .iter()
            .position(|c| c.saturating_add(LATE_WINDOW) > greatest)
            .unwrap_or(self.recent.len())
            .max(self.recent.len().saturating_sub(LATE_KEPT));
        if keep_from > 0 {
            self.floor = self.floor.max(self.recent[keep_from - 1]);
            self.recent.drain(..keep_from);
        }
    }
}

impl Opener {
    pub fn new(keys: Vec<AccountKeys>, roster: wire::Roster) -> Opener {
        let media_keys = keys
            .first()
            .map(AccountKeys::media_keys)
            .unwrap_or_default();
        Opener {
            keys,
            signers: Signers::from_roster(&roster),
            roster,
            seen: HashMap::new(),
            media_keys,
        }
    }

    pub fn media_keys(&self) -> wire::MediaKeys {
        self.media_keys.clone()
    }

    /// Open with these keys from now on (the first is current: it keys resume topics).
    pub fn set_keys(&mut self, keys: Vec<AccountKeys>) {
        self.media_keys = keys
            .first()
            .map(AccountKeys::media_keys)
            .unwrap_or_default();
        self.keys = keys;
    }

    /// Counters accepted before (from the local store, across restarts).
    pub fn remember(&mut self, sender: &str, topic: &str, counter: u64) {
        let e = self
            .seen
            .entry((sender.to_owned(), topic.to_owned()))
            .or_default();
        e.floor = e.floor.max(counter);
        e.recent.retain(|c| *c > counter);
    }

    /// Decode a payload received on `topic`: open it if sealed, refuse it if plain (but for
    /// availability, which the broker's last will carries). An empty payload clears a
    /// retained topic on the broker, and anyone there can send one: only availability's is
    /// taken in (a revoked device's state goes when the roster says so, resume points move
    /// on a key rotation).
    pub fn decode(&mut self, topic: &str, payload: &[u8]) -> Result<wire::Incoming, SealError> {
        let msg = wire::decode_with(topic, payload, &self.media_keys).map_err(SealError::Wire)?;
        match &msg.body {
            wire::Body::Sealed(env) => self.open(topic, env),
            wire::Body::Availability(_) => Ok(msg),
            wire::Body::Cleared
                if matches!(msg.topic.kind, wire::TopicKind::Availability { .. }) =>
            {
                Ok(msg)
            }
            wire::Body::Cleared => Err(SealError::UnsignedClear),
            _ => Err(SealError::Plaintext),
        }
    }

    /// Open an envelope that arrived on `topic`; returns the plain message decoded for that
    /// topic. The signature is checked first, the replay counter after the message
    /// authenticates.
    pub fn open(&mut self, topic: &str, env: &SealedEnvelope) -> Result<wire::Incoming, SealError> {
        self.open_checked(topic, env, true)
    }

    /// Open an envelope that arrived earlier on `topic` and is handed on by another device
    /// (an event of the account's history): every check of [`Opener::open`] but the replay
    /// counter, which judges what is live. Whoever hands it on cannot change it; a copy
    /// that comes twice is the same event, kept once.
    pub fn open_archived(
        &mut self,
        topic: &str,
        env: &SealedEnvelope,
    ) -> Result<wire::Incoming, SealError> {
        self.open_checked(topic, env, false)
    }

    fn open_checked(
        &mut self,
        topic: &str,
        env: &SealedEnvelope,
        live: bool,
    ) -> Result<wire::Incoming, SealError> {
        let s = &env.sealed;
        let nonce: [u8; 12] = B64
            .decode(&s.nonce)
            .map_err(|_| SealError::Encoding { field: "nonce" })?
            .try_into()
            .map_err(|_| SealError::Nonce)?;
        let mut buf = B64
            .decode(&s.ct)
            .map_err(|_| SealError::Encoding { field: "ct" })?;
        let aad = associated_data(topic, &s.sender, s.counter);
        let sig = B64
            .decode(&s.sig)
            .map_err(|_| SealError::Encoding { field: "sig" })?;
        let public = match self.signers.0.get(&s.sender) {
            None => return Err(SealError::UnknownSigner(s.sender.clone())),
            Some(None) => return Err(SealError::Revoked(s.sender.clone())),
            Some(Some(k)) => *k,
        };
        UnparsedPublicKey::new(&ED25519, public)
            .verify(&signed_bytes(&aad, &nonce, &buf), &sig)
            .map_err(|_| SealError::BadSignature(s.sender.clone()))?;
        // After the signature: a key this device lacks, used by a device it trusts, means
        // the account key was rotated (see `crate::security::rekey`).
        let keys = self
            .keys
            .iter()
            .find(|k| k.key_id == s.key_id)
            .ok_or_else(|| SealError::UnknownKey(s.key_id.clone()))?;
        let plain = keys
            .cipher()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| SealError::Open)?;
        let msg = wire::decode_with(topic, plain, &self.media_keys).map_err(SealError::Inner)?;
        let seen_key = (s.sender.clone(), topic.to_owned());
        let retained = msg.topic.retained();
        if live
            && let Some(seen) = self.seen.get(&seen_key)
            && !seen.fresh(s.counter, retained)
        {
            return Err(SealError::Replay {
                sender: s.sender.clone(),
                got: s.counter,
                seen: seen.greatest(),
            });
        }
        if let Some(claimed) = speaks_for(&msg)
            && !speaks_as(&s.sender, claimed)
        {
            return Err(SealError::Impersonation {
                sender: s.sender.clone(),
                claimed: claimed.to_owned(),
            });
        }
        if live {
            self.seen
                .entry(seen_key)
                .or_default()
                .accept(s.counter, retained);
        }
        Ok(msg)
    }
}

/// Whose message this says it is, where it says so.
fn speaks_for(msg: &wire::Incoming) -> Option<&str> {
    use wire::{Body, TopicKind};
    match (&msg.topic.kind, &msg.body) {
        (_, Body::Command(c)) => Some(&c.from),
        (_, Body::Event(e)) => Some(&e.device),
        (_, Body::Ask(a)) => Some(&a.device),
        (_, Body::HistoryAsk(a)) => Some(&a.device),
        (_, Body::HistoryAnswer(a)) => Some(&a.device),
        (TopicKind::DeviceInfo { device }, _) | (TopicKind::SessionState { device }, _) => {
            Some(device)
        }
        _ => None,
    }
}

/// A device speaks as itself, and as its helpers `<device>~<name>` (the command line tool
/// run on that device signs with its key).
pub fn speaks_as(sender: &str, claimed: &str) -> bool {
    claimed == sender
        || claimed
            .strip_prefix(sender)
            .is_some_and(|rest| rest.starts_with(wire::HELPER_SEP))
}

/// The per-sender counter: greater than every counter this device used before, across
/// restarts and across processes sharing the device (it follows the wall clock in
/// microseconds, never going back). The floor is kept in the local store, reserved a minute
/// ahead so that the store is written about once a minute, not once a message.
#[derive(Debug, Default)]
pub struct Counter {
    last: u64,
    reserved: u64,
    /// A new floor the owner must keep (see [`Counter::take_reservation`]).
    pending: Option<u64>,
}

/// How far ahead the stored floor is reserved, in microseconds.
const RESERVE_US: u64 = 60_000_000;

impl Counter {
    /// Start above `floor` (what the store kept).
    pub fn new(floor: u64) -> Counter {
        Counter {
            last: floor,
            reserved: floor,
            pending: None,
        }
    }

    pub fn next(&mut self, now_unix_ns: u64) -> u64 {
        let c = (self.last + 1).max(now_unix_ns / 1000);
        if c >= self.reserved {
            self.reserved = c + RESERVE_US;
            self.pending = Some(self.reserved);
        }
        self.last = c;
        c
    }

    /// A floor to keep in the local store before the counters it covers are trusted to
    /// survive a restart; `None` when nothing changed.
    pub fn take_reservation(&mut self) -> Option<u64> {
        self.pending.take()
    }
}

/// A device's end of the sealed channel: seals and signs what it sends, opens what it
/// receives. Availability stays plain (it is what the broker's last will carries); every
/// other message is sealed, and a plain one is refused.
pub struct Guard {
    device: String,
    keys: AccountKeys,
    signer: Arc<Ed25519KeyPair>,
    counter: Counter,
    pub opener: Opener,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("device", &self.device)
            .field("key_id", &self.keys.key_id)
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub fn new(
        device: &str,
        keys: AccountKeys,
        signer: Arc<Ed25519KeyPair>,
        roster: wire::Roster,
        counter: Counter,
    ) -> Guard {
        Guard {
            device: device.to_owned(),
            opener: Opener::new(vec![keys.clone()], roster),
            keys,
            signer,
            counter,
        }
    }

    pub fn media_keys(&self) -> wire::MediaKeys {
        self.keys.media_keys()
    }

    /// Seal with `current` from now on, and open with `all` (the current keys and those
    /// rotated away from); counters and replay memory carry on.
    pub fn set_keys(&mut self, current: AccountKeys, all: Vec<AccountKeys>) {
        self.keys = current;
        self.opener.set_keys(all);
    }

    pub fn key_id(&self) -> &str {
        &self.keys.key_id
    }

    /// See [`Counter::take_reservation`].
    pub fn take_reservation(&mut self) -> Option<u64> {
        self.counter.take_reservation()
    }

    /// The payload to publish on `topic` for a plain message.
    pub fn seal(&mut self, topic: &str, plaintext: &[u8], now_unix_ns: u64) -> Vec<u8> {
        if plaintext.is_empty() || is_availability(topic) {
            return plaintext.to_vec();
        }
        let counter = self.counter.next(now_unix_ns);
        match seal(
            &self.keys,
            &self.signer,
            topic,
            &self.device,
            counter,
            plaintext,
        ) {
            Ok(env) => wire::encode(&env),
            // No randomness: send nothing rather than something weak.
            Err(e) => {
                tracing::error!("cannot seal for {topic}: {e}");
                Vec::new()
            }
        }
    }

    /// See [`Opener::decode`].
    pub fn open(&mut self, topic: &str, payload: &[u8]) -> Result<wire::Incoming, SealError> {
        self.opener.decode(topic, payload)
    }
}

fn is_availability(topic: &str) -> bool {
    wire::Topic::parse(topic).is_ok_and(|t| matches!(t.kind, wire::TopicKind::Availability { .. }))
}

// One-off sealing under an ephemeral agreement: pairing and key rotation hand a secret to
// one device this way (ring's X25519 is ephemeral-only, so both sides make a fresh key).

/// What the one-off primitives fail with; pairing and key rotation say it in their terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrimitiveError {
    #[error("no randomness available")]
    Random,
    #[error("the sealed text does not open")]
    Open,
    #[error("{0}")]
    Malformed(String),
}

/// `N` random bytes from the system's generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], PrimitiveError> {
    random_from(&SystemRandom::new())
}

/// `N` random bytes from `rng` (the system's generator, but for test vectors).
pub(crate) fn random_from<const N: usize>(
    rng: &dyn SecureRandom,
) -> Result<[u8; N], PrimitiveError> {
    let mut b = [0u8; N];
    rng.fill(&mut b).map_err(|_| PrimitiveError::Random)?;
    Ok(b)
}

/// A 32-byte value sent as base64url without padding (`field` names it in the error).
pub(crate) fn b64_32(field: &str, v: &str) -> Result<[u8; 32], PrimitiveError> {
    B64.decode(v)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| PrimitiveError::Malformed(format!("{field} is not 32 bytes of base64url")))
}

/// `plain` sealed under `key` with `label` as associated data: base64url of nonce || ct.
pub(crate) fn seal_with(
    key: &LessSafeKey,
    label: &[u8],
    plain: &[u8],
) -> Result<String, PrimitiveError> {
    seal_with_nonce_of(key, label, plain, random::<12>()?)
}

/// [`seal_with`] with the nonce given: it must never be used twice with one key.
pub(crate) fn seal_with_nonce_of(
    key: &LessSafeKey,
    label: &[u8],
    plain: &[u8],
    nonce: [u8; 12],
) -> Result<String, PrimitiveError> {
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(label),
        &mut buf,
    )
    .map_err(|_| PrimitiveError::Open)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(B64.encode(out))
}

/// The inverse of [`seal_with`].
pub(crate) fn open_with(
    key: &LessSafeKey,
    label: &[u8],
    sealed: &str,
) -> Result<Vec<u8>, PrimitiveError> {
    let mut bytes = B64.decode(sealed).map_err(|_| PrimitiveError::Open)?;
    if bytes.len() < 12 + 16 {
        return Err(PrimitiveError::Open);
    }
    let mut ct = bytes.split_off(12);
    let nonce: [u8; 12] = bytes.try_into().map_err(|_| PrimitiveError::Open)?;
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(label),
            &mut ct,
        )
        .map_err(|_| PrimitiveError::Open)?;
    Ok(plain.to_vec())
}

/// A fresh X25519 key pair: the private half and the public key's 32 bytes.
pub(crate) fn ephemeral() -> Result<(EphemeralPrivateKey, [u8; 32]), PrimitiveError> {
    ephemeral_from(&SystemRandom::new())
}

/// [`ephemeral`] with the key's 32 bytes drawn from `rng`.
pub(crate) fn ephemeral_from(
    rng: &dyn SecureRandom,
) -> Result<(EphemeralPrivateKey, [u8; 32]), PrimitiveError> {
    let private =
        EphemeralPrivateKey::generate(&X25519, rng).map_err(|_| PrimitiveError::Random)?;
    let public = private
        .compute_public_key()
        .map_err(|_| PrimitiveError::Random)?
        .as_ref()
        .try_into()
        .expect("an X25519 public key is 32 bytes");
    Ok((private, public))
}

/// The shared secret of `private` and the peer's public key.
pub(crate) fn agree(
    private: EphemeralPrivateKey,
    peer: &[u8; 32],
) -> Result<Vec<u8>, PrimitiveError> {
    agreement::agree_ephemeral(
        private,
        &agreement::UnparsedPublicKey::new(&X25519, peer),
        |k| k.to_vec(),
    )
    .map_err(|_| PrimitiveError::Malformed("not an X25519 public key".into()))
}
