//! Pairing: a device that has the account (the host) hands the account secret and the
//! roster to a new device (the joiner), after both people compare a 6-digit code.
//!
//! The exchange (sans-IO here; `continuity pair` carries it over the broker):
//!
//! 1. host → `hello`: the exchange id, the host device, when the exchange expires.
//! 2. joiner → `commit`: the joiner device and its signing key, and a commitment
//!    `SHA-256("continuity-v1 pair commit\0" || x25519_joiner || nonce_joiner)`.
//! 3. host → `reveal`: its ephemeral X25519 key, a nonce and its signing key. Only the first
//!    commit of an exchange gets one: one attempt per exchange.
//! 4. joiner → `open`: its X25519 key and nonce, which the host checks against the commit.
//! 5. Both hash the transcript; the code is the first 4 bytes of it (big-endian) modulo
//!    1,000,000. The joiner chose its key before seeing the host's, and the host revealed
//!    before seeing the joiner's: a man in the middle must fix both sides blind, and matches
//!    the codes once in a million.
//! 6. Each side's person confirms the codes match. The joiner sends `confirm` sealed under
//!    the exchange key (HKDF of the X25519 secret, salted with the transcript); the host,
//!    confirmed on both ends, sends `welcome`: the account secret and the roster (with the
//!    joiner in it), sealed under the same key.
//!
//! Exchanges expire (default 120 s) and end after one attempt, success or not.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::agreement::EphemeralPrivateKey;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::security::account::Account;
use crate::security::seal::{
    PrimitiveError, agree, b64_32, ephemeral_from, open_with, random_from, seal_with_nonce_of,
};
use crate::wire::{self, Roster, RosterEntry};

/// How long an exchange lasts unless told otherwise.
pub const DEFAULT_TTL_NS: u64 = 120 * 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error("the exchange expired (pairing is open for a limited time): start again")]
    Expired,
    #[error("this exchange was already used by another device: start a new one")]
    Used,
    #[error("the joiner's key does not match what it committed to: someone tampered with it")]
    Commitment,
    #[error(
        "the other side's message does not open: the codes did not match, or it was tampered with"
    )]
    Open,
    #[error("the codes were not confirmed{0}")]
    Declined(String),
    #[error("the host ended the exchange: {0}")]
    Refused(String),
    #[error("a malformed pairing message: {0}")]
    Malformed(String),
    #[error("no randomness available")]
    Random,
    #[error("cannot keep the account: {0}")]
    Keep(String),
}

impl From<PrimitiveError> for PairError {
    fn from(e: PrimitiveError) -> Self {
        match e {
            PrimitiveError::Random => PairError::Random,
            PrimitiveError::Open => PairError::Open,
            PrimitiveError::Malformed(m) => PairError::Malformed(m),
        }
    }
}

/// A device taking part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Party {
    #[schemars(pattern(crate::patterns::DEVICE_ID))]
    pub device: String,
    #[schemars(length(max = 1024), pattern(crate::patterns::TEXT))]
    pub name: String,
}

/// What the two sides say to each other (plain JSON on the broker: nothing in it is secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PairMsg {
    Hello {
        #[schemars(pattern(crate::patterns::EXCHANGE))]
        exchange: String,
        host: Party,
        #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
        expires_unix_ns: u64,
    },
    Commit {
        #[schemars(pattern(crate::patterns::EXCHANGE))]
        exchange: String,
        joiner: Party,
        /// The joiner's Ed25519 signing key, base64url.
        #[schemars(pattern(crate::patterns::B64_32))]
        public_key: String,
        #[schemars(pattern(crate::patterns::B64_32))]
        commitment: String,
    },
    Reveal {
        #[schemars(pattern(crate::patterns::EXCHANGE))]
        exchange: String,
        #[schemars(pattern(crate::patterns::DEVICE_ID))]
        to: String,
        #[schemars(pattern(crate::patterns::B64_32))]
        x25519: String,
        #[schemars(pattern(crate::patterns::B64_32))]
        nonce: String,
        #[schemars(pattern(crate::patterns::B64_32))]
        public_key: String,
    },
    Open {
        #[schemars(pattern(crate::patterns::EXCHANGE))]
        exchange: String,
        #[schemars(pattern(crate::patterns::B64_32))]
        x25519: String,
        #[schemars(pattern(crate::patterns::B64_32))]
        nonce: String,
    },
    Confirm {
        #[schemars(pattern(crate::patterns::EXCHANGE))]
        exchange: String,
        #[schemars(pattern(crate::patterns::PAIR_SEALED))]
        sealed: String,
    },
    Welcome {
        #[schemars(pattern(crate::patterns::EXCHANGE))]
        exchange: String,
        #[schemars(pattern(crate::patterns::DEVICE_ID))]
        to: String,
        #[schemars(pattern(crate::patterns::PAIR_SEALED))]
        sealed: String,
    },
    /// The exchange is over for `to` (a second joiner, a decline, an expiry).
    Refused {
        #[schemars(pattern(crate::patterns::EXCHANGE))]
        exchange: String,
        #[schemars(pattern(crate::patterns::DEVICE_ID))]
        to: String,
        #[schemars(length(max = 1024), pattern(crate::patterns::TEXT))]
        reason: String,
    },
    /// The joiner's person said the codes differ.
    Decline {
        #[schemars(pattern(crate::patterns::EXCHANGE))]
        exchange: String,
    },
}

impl PairMsg {
    pub fn exchange(&self) -> &str {
        match self {
            PairMsg::Hello { exchange, .. }
            | PairMsg::Commit { exchange, .. }
            | PairMsg::Reveal { exchange, .. }
            | PairMsg::Open { exchange, .. }
            | PairMsg::Confirm { exchange, .. }
            | PairMsg::Welcome { exchange, .. }
            | PairMsg::Refused { exchange, .. }
            | PairMsg::Decline { exchange } => exchange,
        }
    }

    /// Which topic leaf it goes on: the host's hello is retained on `hello`, the rest go on
    /// `host` or `joiner` by who sends them.
    pub fn leaf(&self) -> &'static str {
        match self {
            PairMsg::Hello { .. } => "hello",
            PairMsg::Reveal { .. } | PairMsg::Welcome { .. } | PairMsg::Refused { .. } => "host",
            _ => "joiner",
        }
    }
}

/// The topic of a pairing message: `continuity/v1/<account>/pairing/<exchange>/<leaf>`.
pub fn topic(account: &str, exchange: &str, leaf: &str) -> String {
    format!("{}/{account}/pairing/{exchange}/{leaf}", wire::PREFIX)
}

/// What the joiner's and the host's software subscribe to.
pub fn hello_filter(account: &str) -> String {
    format!("{}/{account}/pairing/+/hello", wire::PREFIX)
}

/// Decode a pairing message: at most [`wire::MAX_PAYLOAD`] bytes, `"v": 1`, a known `type`.
pub fn decode(payload: &[u8]) -> Result<PairMsg, PairError> {
    if payload.len() > wire::MAX_PAYLOAD {
        return Err(PairError::Malformed("too large".into()));
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| PairError::Malformed(e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| PairError::Malformed("not a JSON object".into()))?;
    match object.remove("v") {
        Some(v) if v == 1 => {}
        Some(v) => {
            return Err(PairError::Malformed(format!(
                "version {v}: this device speaks version 1"
            )));
        }
        None => return Err(PairError::Malformed("no \"v\"".into())),
    }
    serde_json::from_value(value).map_err(|e| PairError::Malformed(e.to_string()))
}

/// A pairing message as it is on the wire: `"v": 1`, then the message (its `type` first).
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(title = "PairingMessage")]
pub struct Versioned<'a> {
    #[schemars(range(min = 1, max = 1))]
    pub v: u8,
    #[serde(flatten)]
    pub msg: &'a PairMsg,
}

/// The JSON Schema of pairing messages (`docs/schema/pairing.json`).
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Versioned<'static>)).expect("schema serialises")
}

/// Encode a pairing message: `"v": 1`, then `type`, then the fields in their order.
pub fn encode(msg: &PairMsg) -> Vec<u8> {
    serde_json::to_vec(&Versioned { v: 1, msg }).expect("pairing messages serialise")
}

/// The joiner's commitment: base64url(SHA-256(label || X25519 key || nonce)).
pub fn commitment(x25519: &[u8], nonce: &[u8]) -> String {
    let mut m = b"continuity-v1 pair commit\0".to_vec();
    m.extend_from_slice(x25519);
    m.extend_from_slice(nonce);
    B64.encode(digest(&SHA256, &m).as_ref())
}

/// The bytes hashed into the transcript: the label, then each part as a 4-byte big-endian
/// length and its bytes. The parts, in order: exchange, host device, host public key (its
/// base64url text), joiner device, joiner public key (text), host X25519 key, joiner X25519
/// key, host nonce, joiner nonce (these four raw).
pub fn transcript_input(parts: [&[u8]; 9]) -> Vec<u8> {
    let mut m = b"continuity-v1 pair transcript\0".to_vec();
    for part in parts {
        m.extend_from_slice(&(part.len() as u32).to_be_bytes());
        m.extend_from_slice(part);
    }
    m
}

/// The code people compare, from the transcript hash: six digits, read as `123 456`.
pub fn code_of(transcript_hash: &[u8; 32]) -> String {
    let n = u32::from_be_bytes(transcript_hash[..4].try_into().expect("4 bytes")) % 1_000_000;
    format!("{:03} {:03}", n / 1000, n % 1000)
}

struct KeyLen;

impl ring::hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

/// The exchange key: HKDF-SHA256 (salt = the transcript hash, input = the X25519 shared
/// secret, info `continuity-v1 pair key`), 32 bytes.
pub fn exchange_key(transcript_hash: &[u8; 32], shared: &[u8]) -> [u8; 32] {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, transcript_hash).extract(shared);
    let mut key = [0u8; 32];
    prk.expand(&[b"continuity-v1 pair key"], KeyLen)
        .and_then(|okm| okm.fill(&mut key))
        .expect("a valid HKDF length");
    key
}

/// Everything both sides agreed on, hashed: the code and the key come from it.
struct Transcript {
    hash: [u8; 32],
}

impl Transcript {
    #[allow(clippy::too_many_arguments)]
    fn new(
        exchange: &str,
        host: &Party,
        host_key: &str,
        joiner: &Party,
        joiner_key: &str,
        x_host: &[u8],
        x_joiner: &[u8],
        n_host: &[u8],
        n_joiner: &[u8],
    ) -> Transcript {
        let m = transcript_input([
            exchange.as_bytes(),
            host.device.as_bytes(),
            host_key.as_bytes(),
            joiner.device.as_bytes(),
            joiner_key.as_bytes(),
            x_host,
            x_joiner,
            n_host,
            n_joiner,
        ]);
        Transcript {
            hash: digest(&SHA256, &m).as_ref().try_into().expect("32 bytes"),
        }
    }

    fn code(&self) -> String {
        code_of(&self.hash)
    }

    fn key(&self, shared: &[u8]) -> LessSafeKey {
        let key = exchange_key(&self.hash, shared);
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte key"))
    }
}

/// What the welcome carries.
#[derive(Serialize, Deserialize)]
struct Welcome {
    account: String,
    secret: String,
    roster: Roster,
}

const CONFIRM_LABEL: &[u8] = b"continuity-v1 pair confirm";
const WELCOME_LABEL: &[u8] = b"continuity-v1 pair welcome";

/// The host's side of one exchange.
pub struct Host {
    exchange: String,
    account: String,
    me: Party,
    public_key: String,
    secret: [u8; 32],
    roster: Roster,
    expires_unix_ns: u64,
    joiner: Option<(Party, String, String)>,
    x: Option<(EphemeralPrivateKey, [u8; 32])>,
    nonce: [u8; 32],
    /// The nonce of the welcome's seal (all randomness is drawn at the start).
    seal_nonce: [u8; 12],
    code: Option<String>,
    key: Option<LessSafeKey>,
    local_ok: bool,
    remote_ok: bool,
    done: bool,
    /// The joiner was sent a `refused`: nothing more to tell it.
    told: bool,
}

impl Host {
    /// Open an exchange for `account`; returns the host and its `hello`.
    pub fn start(
        account: &Account,
        name: &str,
        now_unix_ns: u64,
        ttl_ns: u64,
    ) -> Result<(Host, PairMsg), PairError> {
        Host::start_with(account, name, now_unix_ns, ttl_ns, &SystemRandom::new())
    }

    /// [`Host::start`] with the randomness drawn from `rng`, in this order: the exchange id
    /// (6 bytes), the X25519 key (32), the nonce (32), the welcome's seal nonce (12). Only
    /// test vectors pass anything but the system's generator.
    pub fn start_with(
        account: &Account,
        name: &str,
        now_unix_ns: u64,
        ttl_ns: u64,
        rng: &dyn SecureRandom,
    ) -> Result<(Host, PairMsg), PairError> {
        let exchange = format!("x{}", hex(&random_from::<6>(rng)?));
        let me = Party {
            device: account.device.clone(),
            name: name.to_owned(),
        };
        let expires_unix_ns = now_unix_ns + ttl_ns;
        let hello = PairMsg::Hello {
            exchange: exchange.clone(),
            host: me.clone(),
            expires_unix_ns,
        };
        Ok((
            Host {
                exchange,
                account: account.name.clone(),
                me,
                public_key: crate::security::seal::public_key(&account.signer),
                secret: *account.secret(),
                roster: account.roster.clone(),
                expires_unix_ns,
                joiner: None,
                x: Some(ephemeral_from(rng)?),
                nonce: random_from(rng)?,
                seal_nonce: random_from(rng)?,
                code: None,
                key: None,
                local_ok: false,
                remote_ok: false,
                done: false,
                told: false,
            },
            hello,
        ))
    }

    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The verification code, once the joiner has opened its commitment.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The joiner, once it committed.
    pub fn joiner(&self) -> Option<&Party> {
        self.joiner.as_ref().map(|j| &j.0)
    }

    /// Take a message from the joiner; returns what to send back. An `Err` ends the
    /// exchange.
    pub fn handle(&mut self, now_unix_ns: u64, msg: &PairMsg) -> Result<Vec<PairMsg>, PairError> {
        if msg.exchange() != self.exchange || self.done {
            return Ok(Vec::new());
        }
        if now_unix_ns > self.expires_unix_ns {
            self.done = true;
            return Err(PairError::Expired);
        }
        match msg {
            PairMsg::Commit {
                joiner,
                public_key,
                commitment,
                ..
            } => {
                if let Some((j, _, _)) = &self.joiner {
                    if j.device == joiner.device {
                        return Ok(Vec::new());
                    }
                    // One attempt per exchange: a second joiner is turned away.
                    return Ok(vec![PairMsg::Refused {
                        exchange: self.exchange.clone(),
                        to: joiner.device.clone(),
                        reason: PairError::Used.to_string(),
                    }]);
                }
                b64_32("public_key", public_key)?;
                wire::check_device_id(&joiner.device).map_err(PairError::Malformed)?;
                // The joiner picks its id; one that is another device's is turned away
                // (a copied config dir, say), or the welcome would hand that device's
                // place in the roster to the joiner.
                if self
                    .roster
                    .entry(&joiner.device)
                    .is_some_and(|e| e.public_key != *public_key)
                {
                    self.done = true;
                    self.told = true;
                    return Ok(vec![PairMsg::Refused {
                        exchange: self.exchange.clone(),
                        to: joiner.device.clone(),
                        reason: format!(
                            "the device id '{}' is already paired with another key: give \
                             this device another id (the device-id file of its config dir)",
                            joiner.device
                        ),
                    }]);
                }
                self.joiner = Some((joiner.clone(), public_key.clone(), commitment.clone()));
                let (_, x_pub) = self.x.as_ref().expect("the key is kept until the open");
                Ok(vec![PairMsg::Reveal {
                    exchange: self.exchange.clone(),
                    to: joiner.device.clone(),
                    x25519: B64.encode(x_pub),
                    nonce: B64.encode(self.nonce),
                    public_key: self.public_key.clone(),
                }])
            }
            PairMsg::Open { x25519, nonce, .. } => {
                let Some((joiner, joiner_key, commit)) = self.joiner.clone() else {
                    return Ok(Vec::new());
                };
                let Some((private, x_pub)) = self.x.take() else {
                    return Ok(Vec::new());
                };
                let x_joiner = b64_32("x25519", x25519)?;
                let n_joiner = b64_32("nonce", nonce)?;
                if commitment(&x_joiner, &n_joiner) != commit {
                    self.done = true;
                    return Err(PairError::Commitment);
                }
                let t = Transcript::new(
                    &self.exchange,
                    &self.me,
                    &self.public_key,
                    &joiner,
                    &joiner_key,
                    &x_pub,
                    &x_joiner,
                    &self.nonce,
                    &n_joiner,
                );
                let shared = agree(private, &x_joiner)?;
                self.code = Some(t.code());
                self.key = Some(t.key(&shared));
                Ok(Vec::new())
            }
            PairMsg::Confirm { sealed, .. } => {
                let Some(key) = &self.key else {
                    return Ok(Vec::new());
                };
                open_with(key, CONFIRM_LABEL, sealed)?;
                self.remote_ok = true;
                self.welcome(now_unix_ns)
            }
            PairMsg::Decline { .. } => {
                self.done = true;
                Err(PairError::Declined(" on the other device".into()))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// This side's person compared the codes: `true` when they match.
    pub fn confirm(&mut self, now_unix_ns: u64, matches: bool) -> Result<Vec<PairMsg>, PairError> {
        if self.code.is_none() || self.done {
            return Ok(Vec::new());
        }
        if !matches {
            self.done = true;
            self.told = true;
            let to = self.joiner().map(|j| j.device.clone()).unwrap_or_default();
            return Ok(vec![PairMsg::Refused {
                exchange: self.exchange.clone(),
                to,
                reason: PairError::Declined(" on the host".into()).to_string(),
            }]);
        }
        self.local_ok = true;
        self.welcome(now_unix_ns)
    }

    /// What to tell the joiner when the exchange failed on this side (`why`, in words): a
    /// `refused`, so that it does not wait for a timeout. `None` before anyone committed,
    /// after a welcome, and when the joiner was already told.
    pub fn farewell(&self, why: &str) -> Option<PairMsg> {
        if self.told || self.joined().is_some() {
            return None;
        }
        let (joiner, _, _) = self.joiner.as_ref()?;
        Some(PairMsg::Refused {
            exchange: self.exchange.clone(),
            to: joiner.device.clone(),
            reason: why.to_owned(),
        })
    }

    /// The roster entry the joiner gets, once the exchange is done.
    pub fn joined(&self) -> Option<RosterEntry> {
        if !(self.done && self.local_ok && self.remote_ok) {
            return None;
        }
        let (j, key, _) = self.joiner.as_ref()?;
        self.roster
            .entry(&j.device)
            .cloned()
            .filter(|e| e.public_key == *key)
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    fn welcome(&mut self, now_unix_ns: u64) -> Result<Vec<PairMsg>, PairError> {
        if !(self.local_ok && self.remote_ok) || self.done {
            return Ok(Vec::new());
        }
        let (joiner, key, _) = self.joiner.clone().expect("confirmed after a commit");
        self.roster.offer(RosterEntry {
            device: joiner.device.clone(),
            name: joiner.name.clone(),
            public_key: key,
            changed_unix_ns: now_unix_ns,
            revoked: false,
        });
        let body = Welcome {
            account: self.account.clone(),
            secret: B64.encode(self.secret),
            roster: self.roster.clone(),
        };
        let sealed = seal_with_nonce_of(
            self.key.as_ref().expect("a code comes with a key"),
            WELCOME_LABEL,
            &serde_json::to_vec(&body).expect("serialises"),
            self.seal_nonce,
        )?;
        self.done = true;
        Ok(vec![PairMsg::Welcome {
            exchange: self.exchange.clone(),
            to: joiner.device,
            sealed,
        }])
    }
}

/// What a joiner ends with.
#[derive(Debug, Clone)]
pub struct Joined {
    pub secret: [u8; 32],
    pub roster: Roster,
    pub host: Party,
}

/// The joiner's side of one exchange.
pub struct Joiner {
    me: Party,
    public_key: String,
    account: String,
    exchange: Option<(String, Party)>,
    x: Option<(EphemeralPrivateKey, [u8; 32])>,
    nonce: [u8; 32],
    /// The nonce of the confirm's seal.
    seal_nonce: [u8; 12],
    code: Option<String>,
    key: Option<LessSafeKey>,
    confirmed: bool,
    done: bool,
}

impl Joiner {
    /// A device that wants to join `account`; `public_key` is its signing key.
    pub fn new(account: &str, me: Party, public_key: String) -> Result<Joiner, PairError> {
        Joiner::new_with(account, me, public_key, &SystemRandom::new())
    }

    /// [`Joiner::new`] with the randomness drawn from `rng`, in this order: the X25519 key
    /// (32 bytes), the nonce (32), the confirm's seal nonce (12).
    pub fn new_with(
        account: &str,
        me: Party,
        public_key: String,
        rng: &dyn SecureRandom,
    ) -> Result<Joiner, PairError> {
        Ok(Joiner {
            me,
            public_key,
            account: account.to_owned(),
            exchange: None,
            x: Some(ephemeral_from(rng)?),
            nonce: random_from(rng)?,
            seal_nonce: random_from(rng)?,
            code: None,
            key: None,
            confirmed: false,
            done: false,
        })
    }

    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    pub fn exchange(&self) -> Option<&str> {
        self.exchange.as_ref().map(|(e, _)| e.as_str())
    }

    pub fn host(&self) -> Option<&Party> {
        self.exchange.as_ref().map(|(_, h)| h)
    }

    /// Take a message from the host; returns what to send, and the result once welcomed.
    pub fn handle(
        &mut self,
        now_unix_ns: u64,
        msg: &PairMsg,
    ) -> Result<(Vec<PairMsg>, Option<Joined>), PairError> {
        if self.done {
            return Ok((Vec::new(), None));
        }
        if let PairMsg::Hello {
            exchange,
            host,
            expires_unix_ns,
        } = msg
        {
            if self.exchange.is_some() {
                return Ok((Vec::new(), None));
            }
            if now_unix_ns > *expires_unix_ns {
                return Err(PairError::Expired);
            }
            self.exchange = Some((exchange.clone(), host.clone()));
            let (_, x_pub) = self.x.as_ref().expect("kept until the reveal");
            return Ok((
                vec![PairMsg::Commit {
                    exchange: exchange.clone(),
                    joiner: self.me.clone(),
                    public_key: self.public_key.clone(),
                    commitment: commitment(x_pub, &self.nonce),
                }],
                None,
            ));
        }
        let Some((exchange, host)) = self.exchange.clone() else {
            return Ok((Vec::new(), None));
        };
        if msg.exchange() != exchange {
            return Ok((Vec::new(), None));
        }
        match msg {
            PairMsg::Reveal {
                to,
                x25519,
                nonce,
                public_key,
                ..
            } if *to == self.me.device => {
                let Some((private, x_pub)) = self.x.take() else {
                    return Ok((Vec::new(), None));
                };
                let x_host = b64_32("x25519", x25519)?;
                let n_host = b64_32("nonce", nonce)?;
                b64_32("public_key", public_key)?;
                let t = Transcript::new(
                    &exchange,
                    &host,
                    public_key,
                    &self.me,
                    &self.public_key,
                    &x_host,
                    &x_pub,
                    &n_host,
                    &self.nonce,
                );
                let shared = agree(private, &x_host)?;
                self.code = Some(t.code());
                self.key = Some(t.key(&shared));
                Ok((
                    vec![PairMsg::Open {
                        exchange,
                        x25519: B64.encode(x_pub),
                        nonce: B64.encode(self.nonce),
                    }],
                    None,
                ))
            }
            PairMsg::Welcome { to, sealed, .. } if *to == self.me.device => {
                let Some(key) = &self.key else {
                    return Ok((Vec::new(), None));
                };
                if !self.confirmed {
                    return Ok((Vec::new(), None));
                }
                let plain = open_with(key, WELCOME_LABEL, sealed)?;
                let w: Welcome = serde_json::from_slice(&plain)
                    .map_err(|e| PairError::Malformed(e.to_string()))?;
                if w.account != self.account {
                    return Err(PairError::Malformed(format!(
                        "welcomed to account '{}', not '{}'",
                        w.account, self.account
                    )));
                }
                let secret = b64_32("secret", &w.secret)?;
                self.done = true;
                Ok((
                    Vec::new(),
                    Some(Joined {
                        secret,
                        roster: w.roster,
                        host,
                    }),
                ))
            }
            PairMsg::Refused { to, reason, .. } if *to == self.me.device => {
                self.done = true;
                Err(PairError::Refused(reason.clone()))
            }
            _ => Ok((Vec::new(), None)),
        }
    }

    /// This side's person compared the codes.
    pub fn confirm(&mut self, matches: bool) -> Result<Vec<PairMsg>, PairError> {
        let (Some(key), Some((exchange, _))) = (&self.key, &self.exchange) else {
            return Ok(Vec::new());
        };
        if !matches {
            self.done = true;
            return Ok(vec![PairMsg::Decline {
                exchange: exchange.clone(),
            }]);
        }
        self.confirmed = true;
        Ok(vec![PairMsg::Confirm {
            exchange: exchange.clone(),
            sealed: seal_with_nonce_of(key, CONFIRM_LABEL, exchange.as_bytes(), self.seal_nonce)?,
        }])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Take a joiner's result into its account: the secret and the roster are kept.
pub fn adopt(account: &mut Account, joined: &Joined) -> Result<(), crate::config::ConfigError> {
    account.set_secret(joined.secret)?;
    account.merge_roster(&joined.roster)?;
    Ok(())
}

/// Pair two accounts held on this machine (two config dirs), running the exchange in
/// memory with the codes compared by the program: how tests and benchmarks provision a
/// "phone" and a "TV". People pair with `continuity pair`.
pub fn pair_local(host: &mut Account, joiner: &mut Account) -> Result<(), PairError> {
    let now = crate::hlc::now_unix_ns();
    let (mut h, hello) = Host::start(host, "host", now, DEFAULT_TTL_NS)?;
    let joiner_name = joiner
        .roster
        .entry(&joiner.device)
        .map(|e| e.name.clone())
        .unwrap_or_else(|| joiner.device.clone());
    let mut j = Joiner::new(
        &joiner.name,
        Party {
            device: joiner.device.clone(),
            name: joiner_name,
        },
        crate::security::seal::public_key(&joiner.signer),
    )?;
    let to_host = |h: &mut Host, msgs: Vec<PairMsg>| -> Result<Vec<PairMsg>, PairError> {
        let mut out = Vec::new();
        for m in &msgs {
            out.extend(h.handle(now, m)?);
        }
        Ok(out)
    };
    let (commit, _) = j.handle(now, &hello)?;
    let reveal = to_host(&mut h, commit)?;
    let mut open = Vec::new();
    for m in &reveal {
        open.extend(j.handle(now, m)?.0);
    }
    to_host(&mut h, open)?;
    if j.code().is_none() || j.code() != h.code() {
        return Err(PairError::Declined(": the codes differ".into()));
    }
    h.confirm(now, true)?;
    let welcome = to_host(&mut h, j.confirm(true)?)?;
    let mut joined = None;
    for m in &welcome {
        joined = joined.or(j.handle(now, m)?.1);
    }
    let joined = joined.ok_or(PairError::Open)?;
    adopt(joiner, &joined).map_err(|e| PairError::Keep(e.to_string()))?;
    host.merge_roster(h.roster())
        .map_err(|e| PairError::Keep(e.to_string()))?;
    Ok(())
}

/// Pair the devices whose config dirs are given (with the names they show) into `account`,
/// the first as the host, and give each the whole roster: how tests, benchmarks and the demo
/// provision devices on one machine before any of them starts. Device ids are the ones kept
/// in each dir. Returns the accounts, in the order given.
pub fn pair_dirs(
    account: &str,
    devices: &[(&std::path::Path, &str)],
) -> Result<Vec<Account>, PairError> {
    let fail = |e: crate::config::ConfigError| PairError::Keep(e.to_string());
    let mut accounts = Vec::with_capacity(devices.len());
    for (dir, name) in devices {
        let device = crate::config::device_id(dir).map_err(fail)?;
        accounts.push(Account::open(dir, account, &device, name).map_err(fail)?);
    }
    let Some((host, joiners)) = accounts.split_first_mut() else {
        return Ok(accounts);
    };
    for j in joiners.iter_mut() {
        if j.secret() != host.secret() || !host.roster.trusts(&j.device) {
            pair_local(host, j)?;
        }
    }
    for j in joiners.iter_mut() {
        j.merge_roster(&host.roster).map_err(fail)?;
    }
    Ok(accounts)
}
