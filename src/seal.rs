//! Sealed messages: AES-256-GCM with keys derived by HKDF-SHA256 from the account secret,
//! the topic, the sender and a per-sender counter in the associated data, and a replay
//! check on that counter. ring is the only crypto provider; every primitive here is also in
//! WebCrypto, so a browser can open what a device seals (`docs/PROTOCOL.md`, "Sealed
//! envelope"; vectors in `tests/vectors/envelope.json`).
//!
//! Groundwork for the security issue: the link does not seal yet.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
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
    #[error("the sealed content is not a valid message: {0}")]
    Inner(String),
    #[error("no randomness available")]
    Random,
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
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.media_key);
        hex(&hmac::sign(&key, media_id.as_bytes()).as_ref()[..16])
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

/// Seal a plain message (its JSON bytes) for `topic`, with a fresh random nonce.
pub fn seal(
    keys: &AccountKeys,
    topic: &str,
    sender: &str,
    counter: u64,
    plaintext: &[u8],
) -> Result<SealedEnvelope, SealError> {
    let mut nonce = [0u8; 12];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Random)?;
    Ok(seal_with_nonce(
        keys, topic, sender, counter, nonce, plaintext,
    ))
}

/// [`seal`] with a given nonce: for test vectors only (a nonce must never repeat).
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
        },
    }
}

/// Opens envelopes and remembers, per sender, the greatest counter seen.
#[derive(Debug, Default)]
pub struct Opener {
    keys: Vec<AccountKeys>,
    seen: HashMap<String, u64>,
}

impl Opener {
    pub fn new(keys: Vec<AccountKeys>) -> Opener {
        Opener {
            keys,
            seen: HashMap::new(),
        }
    }

    /// Open an envelope that arrived on `topic`; returns the plain message decoded for that
    /// topic. A replayed or older counter is refused after the message authenticates.
    pub fn open(&mut self, topic: &str, env: &SealedEnvelope) -> Result<wire::Incoming, SealError> {
        let s = &env.sealed;
        let keys = self
            .keys
            .iter()
            .find(|k| k.key_id == s.key_id)
            .ok_or_else(|| SealError::UnknownKey(s.key_id.clone()))?;
        let nonce: [u8; 12] = B64
            .decode(&s.nonce)
            .map_err(|_| SealError::Encoding { field: "nonce" })?
            .try_into()
            .map_err(|_| SealError::Nonce)?;
        let mut buf = B64
            .decode(&s.ct)
            .map_err(|_| SealError::Encoding { field: "ct" })?;
        let plain = keys
            .cipher()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(topic, &s.sender, s.counter)),
                &mut buf,
            )
            .map_err(|_| SealError::Open)?;
        if let Some(&seen) = self.seen.get(&s.sender)
            && s.counter <= seen
        {
            return Err(SealError::Replay {
                sender: s.sender.clone(),
                got: s.counter,
                seen,
            });
        }
        let msg = wire::decode(topic, plain).map_err(|e| SealError::Inner(e.to_string()))?;
        self.seen.insert(s.sender.clone(), s.counter);
        Ok(msg)
    }
}
