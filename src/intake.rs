//! The receive pipeline, sans-IO: what a device does with a payload from the broker before
//! anything believes it. One pipeline for the node (a device on the network) and the CLI's
//! read-only view ([`crate::observe`]), tested without a broker.
//!
//! In order: key rotation topics (requests, answers) go to [`crate::security::rekey`]; every
//! other payload is decoded strictly and, on a sealed account, opened (signature, sender,
//! replay, key). A retained message sealed with a key this device lacks is parked and the key
//! asked for: once it arrives the parked messages are taken in again, since the broker does
//! not send them twice. A roster from a trusted device is merged (and answered when it lacks
//! something this device knows). What is left is handed on as [`Intake::Message`].

use std::collections::BTreeMap;

use crate::hlc;
use crate::security::account::Account;
use crate::security::rekey::{self, KeyRequest};
use crate::security::seal::{AccountKeys, Opener, SealError};
use crate::wire::{self, Body, Topic};

/// Most retained messages kept for a key this device lacks (the latest per topic).
pub const MAX_PARKED: usize = 512;

/// What the receiver of a payload must do.
#[derive(Debug, Clone)]
pub enum Intake {
    /// A message to believe: the engine's or the directory's to take in.
    Message(Box<wire::Incoming>),
    /// A command or event was taken in: keep its counter durably, so that a restart does not
    /// let it be replayed.
    Seen {
        sender: String,
        topic: String,
        counter: u64,
    },
    /// Publish this as it is: key requests and answers carry their own signatures.
    Publish(Outgoing),
    /// Seal, sign and publish this plain payload (a roster).
    PublishSealed(Outgoing),
    /// The roster changed; these devices are revoked (forget what they said).
    RosterChanged { revoked: Vec<String> },
    /// This device was removed from its account.
    Revoked,
    /// The account key was rotated: seal with `current` from now on (the parked messages,
    /// taken in again, follow this intake).
    Rekeyed {
        current: AccountKeys,
        all: Vec<AccountKeys>,
    },
    /// Refused, with the reason (logged; never fatal).
    Rejected { topic: String, reason: String },
}

/// A message for the broker.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// The account as the pipeline holds it (sealed accounts).
struct Keys {
    account: Account,
    opener: Opener,
    asker: rekey::Asker,
    /// Retained messages sealed with a key this device lacks, by topic.
    parked: BTreeMap<String, Vec<u8>>,
    /// When to publish this device's roster.
    answer: RosterAnswer,
}

/// When a device publishes its roster: only when the account's copy lacks something it
/// knows, and then after a random delay that another device's answer cancels, so that a
/// device that missed a pairing costs one answer, not one from every device (each delivered
/// to every device).
#[derive(Debug, Default)]
struct RosterAnswer {
    /// An answer is due at this instant.
    due: Option<u64>,
    /// A roster that holds everything this device knows was seen since it connected.
    covered: bool,
}

impl RosterAnswer {
    /// How long a device waits before it answers, at most (a uniform draw from 50 ms up).
    const WINDOW_NS: u64 = 1_000_000_000;

    fn lacking(&mut self, now: u64) {
        self.covered = false;
        if self.due.is_none() {
            self.due = Some(now + 50_000_000 + fastrand::u64(..Self::WINDOW_NS));
        }
    }

    fn covered(&mut self) {
        self.covered = true;
        self.due = None;
    }
}

/// Which refusals are told in the log. The first of each kind on each topic is worth a
/// warning, but at most [`Refusals::PER_KIND`] new topics of a kind a minute: a broker user
/// who publishes garbage on thousands of topics (one per made-up device id) gets a few
/// lines and a count, not a line each. The rest are counted and the count is told when the
/// minute is over (with the next refusal, see [`Refusals::note`]). A repeat on a topic
/// already told is only a debug line, so that a flood (one oversize message retained and
/// sent again after every reconnect, a peer that keeps sending garbage) cannot fill the log.
#[derive(Debug, Default)]
pub struct Refusals {
    /// (topic, kind) told already, hashed: topics can be 64 KiB long.
    told: std::collections::HashSet<u64>,
    /// When the minute that runs began.
    minute_from: Option<u64>,
    /// New topics told per kind in that minute.
    told_now: BTreeMap<String, usize>,
    /// Refusals not told, per kind, in that minute.
    untold: BTreeMap<String, u64>,
}

/// What to log for one refusal (see [`Refusals::note`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Told {
    /// Worth a warning (else a debug line).
    pub warn: bool,
    /// The count of the refusals of the minute that ended, not told one by one.
    pub summary: Option<String>,
}

impl Refusals {
    /// At most this many (topic, kind) pairs are remembered; then memory starts afresh.
    const MAX: usize = 4096;
    /// New topics told per kind a minute.
    pub const PER_KIND: usize = 5;
    const MINUTE_NS: u64 = 60 * 1_000_000_000;

    /// A refusal on `topic` for `reason`, at `now`. Its kind is the reason with its numbers
    /// and what it quotes left out ("payload of 1048576 bytes" and "of 2097152 bytes" are
    /// one kind, and so are "topic 'a…': device id is longer…" and "topic 'b…': …").
    pub fn note(&mut self, topic: &str, reason: &str, now: u64) -> Told {
        use std::hash::{Hash, Hasher};
        let mut kind = String::new();
        let mut quoted = false;
        for c in reason.chars() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    if quoted {
                        kind.push_str("'…'");
                    }
                }
                _ if quoted || c.is_ascii_digit() => {}
                c => kind.push(c),
            }
        }
        let from = *self.minute_from.get_or_insert(now);
        let mut summary = None;
        if now.saturating_sub(from) >= Self::MINUTE_NS {
            summary = self.summary();
            self.minute_from = Some(now);
            self.told_now.clear();
        }
        if self.told.len() >= Self::MAX {
            self.told.clear();
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (topic, &kind).hash(&mut h);
        let new = self.told.insert(h.finish());
        let told_now = self.told_now.entry(kind.clone()).or_default();
        let warn = new && *told_now < Self::PER_KIND;
        if warn {
            *told_now += 1;
        } else if new {
            // A new topic over the kind's share: counted, never told on its own.
            *self.untold.entry(kind).or_default() += 1;
        }
        Told { warn, summary }
    }

    /// The refusals not told since the last summary, in words (None when there were none).
    fn summary(&mut self) -> Option<String> {
        if self.untold.is_empty() {
            return None;
        }
        let untold = std::mem::take(&mut self.untold);
        let total: u64 = untold.values().sum();
        let mut kinds: Vec<(String, u64)> = untold.into_iter().collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
        let shown: Vec<String> = kinds
            .iter()
            .take(3)
            .map(|(k, n)| format!("{n} × {}", shorten(k, 80)))
            .collect();
        let more = if kinds.len() > 3 {
            format!(" and {} other kinds", kinds.len() - 3)
        } else {
            String::new()
        };
        Some(format!(
            "refused {total} more messages on topics not named one by one in the last minute \
             or more: {}{more}",
            shown.join("; ")
        ))
    }
}

/// `text` for a log line: at most `max` characters, the rest said as a length. Topics,
/// ids and reasons that quote them come from the broker and can be 64 KiB long.
pub fn shorten(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => {
            std::borrow::Cow::Owned(format!("{}… ({} bytes)", &text[..cut], text.len()))
        }
    }
}

/// A stamped state too far ahead of this device's clock is refused (see
/// [`hlc::MAX_AHEAD_NS`]), in both modes, unless the account's devices agree that this
/// device's clock is the one that is behind ([`ClockCheck`]).
fn in_time(clock: &mut ClockCheck, msg: &wire::Incoming, now: u64) -> Result<(), String> {
    let Some(st) = msg.body.stamp() else {
        return Ok(());
    };
    match hlc::check_ahead(st, now.saturating_add(clock.behind_ns)) {
        Ok(()) => Ok(()),
        Err(why) => {
            let device = st.device.split('~').next().unwrap_or(&st.device);
            if clock.ahead(device, st.wall_ns.saturating_sub(now), now) {
                return hlc::check_ahead(st, now.saturating_add(clock.behind_ns));
            }
            Err(why)
        }
    }
}

/// Whether this device's own clock is far behind the account's. One device whose stamps
/// are far ahead is refused (its clock is wrong, or it wants its state to win for ever); when
/// two devices or more, within a few minutes, are ahead by about the same (a day, say), this
/// clock is the wrong one: it says so, naming the offset, and takes the account's time for
/// what it may believe (its own stamps then follow theirs: it never writes older news over
/// newer). A device whose clock is far ahead is refused by the others, which say so.
#[derive(Debug, Default)]
pub struct ClockCheck {
    /// Devices whose stamps came far ahead: how far, and when this clock saw it.
    ahead: BTreeMap<String, (u64, u64)>,
    /// How far behind the account's time this clock is taken to be (0: it is right).
    pub behind_ns: u64,
}

impl ClockCheck {
    /// Reports older than this are forgotten.
    const WINDOW_NS: u64 = 5 * 60 * 1_000_000_000;

    /// `device`'s stamp came `by_ns` ahead at `now`. Whether this clock is now taken to be
    /// behind (at least two devices agree, within [`hlc::MAX_AHEAD_NS`] of each other).
    fn ahead(&mut self, device: &str, by_ns: u64, now: u64) -> bool {
        self.ahead.insert(device.to_owned(), (by_ns, now));
        self.ahead
            .retain(|_, (_, at)| now.saturating_sub(*at) <= Self::WINDOW_NS);
        let by: Vec<u64> = self.ahead.values().map(|(b, _)| *b).collect();
        let (min, max) = (by.iter().min().copied(), by.iter().max().copied());
        let Some((min, max)) = min.zip(max) else {
            return false;
        };
        if by.len() < 2 || max - min > hlc::MAX_AHEAD_NS {
            if by.len() == 1 {
                tracing::warn!(
                    "{device}'s clock is {} s ahead of this device's: one of the two is wrong \
                     (its messages are refused until another device agrees with it)",
                    by_ns / 1_000_000_000
                );
            }
            return false;
        }
        if min > self.behind_ns {
            let names: Vec<&str> = self.ahead.keys().map(String::as_str).collect();
            tracing::warn!(
                "this device's clock is {} s behind the account's ({} say so): set it right \
                 (NTP); until then it takes the account's time for what it believes",
                min / 1_000_000_000,
                names.join(", ")
            );
            self.behind_ns = min;
        }
        true
    }
}

/// One device's receive pipeline.
pub struct Inbound {
    account: String,
    device: String,
    /// Whether this device's clock is the account's.
    pub clock: ClockCheck,
    /// `None`: plain JSON (`--insecure-plaintext`, `encryption=off`).
    keys: Option<Keys>,
}

impl Inbound {
    /// The pipeline of `device` in `account`, sealed when `keys` is given.
    pub fn new(account: &str, device: &str, keys: Option<Account>) -> Inbound {
        Inbound {
            account: account.to_owned(),
            device: device.to_owned(),
            clock: ClockCheck::default(),
            keys: keys.map(|account| Keys {
                opener: account.opener(),
                account,
                asker: rekey::Asker::default(),
                parked: BTreeMap::new(),
                answer: RosterAnswer::default(),
            }),
        }
    }

    /// A command or event counter seen before a restart (from the local store).
    pub fn remember(&mut self, sender: &str, topic: &str, counter: u64) {
        if let Some(k) = &mut self.keys {
            k.opener.remember(sender, topic, counter);
        }
    }

    /// Whether the account is sealed (messages are opened and their signers checked).
    pub fn sealed(&self) -> bool {
        self.keys.is_some()
    }

    /// One event of a [`wire::HistoryAnswer`], as it was published on `events`: in a sealed
    /// account the envelope its recorder signed (checked as on `events`, but for the replay
    /// counter: it is history, and kept once however often it comes), in a plain account
    /// the plain event. With the text to keep for handing it on in turn (the envelope), or
    /// why it is refused.
    pub fn archived_event(
        &mut self,
        item: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(wire::Event, Option<String>), String> {
        let topic = Topic::events(&self.account).to_string();
        let bytes = serde_json::to_vec(item).map_err(|e| e.to_string())?;
        let msg = match &mut self.keys {
            None => wire::decode(&topic, &bytes).map_err(|e| e.to_string())?,
            Some(k) => {
                let env = match wire::decode(&topic, &bytes)
                    .map_err(|e| e.to_string())?
                    .body
                {
                    Body::Sealed(env) => env,
                    _ => return Err("a plain event in a sealed account".into()),
                };
                k.opener
                    .open_archived(&topic, &env)
                    .map_err(|e| e.to_string())?
            }
        };
        match msg.body {
            Body::Event(e) => Ok((
                e,
                self.keys
                    .is_some()
                    .then(|| String::from_utf8(bytes).expect("JSON is UTF-8")),
            )),
            Body::Sealed(_) => {
                Err("a sealed event, and this device runs unencrypted (plain JSON)".into())
            }
            _ => Err("not an event".into()),
        }
    }

    /// How resume topics are keyed now.
    pub fn media_keys(&self) -> wire::MediaKeys {
        self.keys
            .as_ref()
            .map(|k| k.opener.media_keys())
            .unwrap_or_default()
    }

    /// The account's roster as this device knows it (sealed accounts).
    pub fn roster(&self) -> Option<&wire::Roster> {
        self.keys.as_ref().map(|k| &k.account.roster)
    }

    /// The link (re)connected: what the broker holds of the roster is learnt again.
    pub fn connected(&mut self) {
        if let Some(k) = &mut self.keys {
            k.answer = RosterAnswer::default();
        }
    }

    /// Every retained message has arrived since the link connected: if none was a roster
    /// that holds everything this device knows (it was just paired, or the broker lost the
    /// roster), this device publishes its own, after the same random delay as an answer.
    pub fn synced(&mut self, now: u64) {
        if let Some(k) = &mut self.keys
            && !k.answer.covered
        {
            k.answer.lacking(now);
        }
    }

    /// When [`Inbound::tick`] has something to do.
    pub fn next_due(&self) -> Option<u64> {
        self.keys.as_ref().and_then(|k| k.answer.due)
    }

    /// What is due at `now`: this device's roster, when an answer is due.
    pub fn tick(&mut self, now: u64) -> Vec<Intake> {
        let Some(k) = &mut self.keys else {
            return Vec::new();
        };
        if k.answer.due.is_none_or(|due| due > now) {
            return Vec::new();
        }
        k.answer.due = None;
        vec![Intake::PublishSealed(Outgoing {
            topic: Topic::roster(&self.account).to_string(),
            payload: wire::encode(&k.account.roster),
            retain: true,
        })]
    }

    /// How many retained messages wait for a key.
    pub fn parked(&self) -> usize {
        self.keys.as_ref().map_or(0, |k| k.parked.len())
    }

    /// Take in a payload that arrived on `topic`.
    pub fn take(&mut self, topic: &str, payload: &[u8], now_unix_ns: u64) -> Vec<Intake> {
        let mut out = Vec::new();
        self.take_into(topic, payload, now_unix_ns, &mut out);
        out
    }

    fn take_into(&mut self, topic: &str, payload: &[u8], now: u64, out: &mut Vec<Intake>) {
        if rekey::is_rekey_topic(&self.account, topic) {
            return self.take_rekey(topic, payload, now, out);
        }
        let reject = |reason: String| Intake::Rejected {
            topic: topic.to_owned(),
            reason,
        };
        let Some(k) = &mut self.keys else {
            out.push(match wire::decode(topic, payload) {
                Ok(m) if matches!(m.body, Body::Sealed(_)) => reject(
                    "a sealed message, and this device runs unencrypted (plain JSON): pair it \
                     with the account instead"
                        .into(),
                ),
                Ok(m) => match in_time(&mut self.clock, &m, now) {
                    Ok(()) => Intake::Message(Box::new(m)),
                    Err(why) => reject(why),
                },
                Err(e) => reject(e.to_string()),
            });
            return;
        };
        match k.opener.decode(topic, payload) {
            Ok(wire::Incoming {
                body: Body::Roster(r),
                ..
            }) => self.take_roster(&r, now, out),
            Ok(msg) => {
                if let Err(why) = in_time(&mut self.clock, &msg, now) {
                    return out.push(reject(why));
                }
                if !msg.topic.retained()
                    && let Ok(Body::Sealed(env)) = wire::decode(topic, payload).map(|m| m.body)
                {
                    out.push(Intake::Seen {
                        sender: env.sealed.sender,
                        topic: topic.to_owned(),
                        counter: env.sealed.counter,
                    });
                }
                out.push(Intake::Message(Box::new(msg)));
            }
            Err(SealError::UnknownKey(id)) => {
                // Signed by a device this one trusts: the account key was rotated.
                if Topic::parse(topic).is_ok_and(|t| t.retained())
                    && (k.parked.len() < MAX_PARKED || k.parked.contains_key(topic))
                {
                    k.parked.insert(topic.to_owned(), payload.to_vec());
                }
                let adopted = self.want_key(&id, now, out);
                if !adopted {
                    out.push(reject(SealError::UnknownKey(id).to_string()));
                }
            }
            Err(e) => out.push(reject(e.to_string())),
        }
    }

    /// A roster from a trusted device: merge it, and answer with ours when it lacks
    /// something we know. One that names a key this device lacks starts a key request.
    fn take_roster(&mut self, roster: &wire::Roster, now: u64, out: &mut Vec<Intake>) {
        let Some(k) = &mut self.keys else { return };
        let was_revoked = k
            .account
            .roster
            .entry(&self.device)
            .is_some_and(|e| e.revoked);
        match k.account.merge_roster(roster) {
            Ok(true) => {
                tracing::info!(
                    "roster of {} now has {} devices",
                    k.account.name,
                    k.account.roster.devices.len()
                );
                if !was_revoked
                    && k.account
                        .roster
                        .entry(&self.device)
                        .is_some_and(|e| e.revoked)
                {
                    tracing::warn!(
                        "this device was revoked from account {}: pair it again to rejoin",
                        k.account.name
                    );
                    out.push(Intake::Revoked);
                }
                k.opener.signers = k.account.signers();
                k.opener.roster = k.account.roster.clone();
                let revoked = k
                    .account
                    .roster
                    .devices
                    .iter()
                    .filter(|e| e.revoked)
                    .map(|e| e.device.clone())
                    .collect();
                out.push(Intake::RosterChanged { revoked });
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        let mut theirs = roster.clone();
        if !theirs.merge(&k.account.roster) {
            k.answer.covered();
        } else if roster.trusts(&self.device) {
            // It lacks something this device knows: answer, unless another device does
            // first (every device of the account saw the same roster).
            k.answer.lacking(now);
        }
        // A roster that does not name this device comes from a device that would refuse
        // its answer (an unknown signer): the devices it names answer (found by the fault
        // suite's row 14: a device paired while another was away answered first, was
        // refused, and the race went on, one roster more each time).
        if let Some(id) = k.account.lacks_key() {
            self.want_key(&id, now, out);
        }
    }

    /// This device lacks key `key_id`: take it from the config dir if another process of
    /// this device rotated it, else ask the account's devices for it. Returns whether the
    /// key was adopted at once.
    fn want_key(&mut self, key_id: &str, now: u64, out: &mut Vec<Intake>) -> bool {
        let Some(k) = &mut self.keys else {
            return false;
        };
        match k.asker.want(&mut k.account, key_id, now) {
            rekey::Want::Nothing => false,
            rekey::Want::Adopted => {
                self.rekeyed(now, out);
                true
            }
            rekey::Want::Ask { topic, payload } => {
                out.push(Intake::Publish(Outgoing {
                    topic,
                    payload,
                    retain: true,
                }));
                false
            }
        }
    }

    /// A key request from another device, or the answer to ours.
    fn take_rekey(&mut self, topic: &str, payload: &[u8], now: u64, out: &mut Vec<Intake>) {
        let Some(k) = &mut self.keys else { return };
        if payload.is_empty() {
            return;
        }
        if topic == rekey::answer_topic(&self.account, &self.device) {
            match k.asker.take_answer(&mut k.account, payload) {
                Ok(true) => {
                    // The request is answered: take it off the broker.
                    out.push(Intake::Publish(Outgoing {
                        topic: rekey::request_topic(&self.account, &self.device),
                        payload: Vec::new(),
                        retain: true,
                    }));
                    self.rekeyed(now, out);
                }
                Ok(false) => {}
                Err(e) => out.push(Intake::Rejected {
                    topic: topic.to_owned(),
                    reason: format!("a key answer: {e}"),
                }),
            }
        } else if topic.ends_with("/request") {
            let req = match rekey::decode::<KeyRequest>(payload) {
                Ok(req) if req.device == self.device => return,
                Ok(req) => req,
                Err(e) => {
                    return out.push(Intake::Rejected {
                        topic: topic.to_owned(),
                        reason: format!("a key request: {e}"),
                    });
                }
            };
            match rekey::answer(&k.account, &req) {
                Ok(ans) => {
                    tracing::info!("handing the account key to {}", req.device);
                    out.push(Intake::Publish(Outgoing {
                        topic: rekey::answer_topic(&self.account, &req.device),
                        payload: wire::encode(&ans),
                        retain: false,
                    }));
                }
                Err(rekey::RekeyError::NotHeld(_)) => {}
                Err(e) => out.push(Intake::Rejected {
                    topic: topic.to_owned(),
                    reason: format!("a key request from {}: {e}", req.device),
                }),
            }
        }
    }

    /// The account key changed: open with every key kept, and take in what was parked.
    fn rekeyed(&mut self, now: u64, out: &mut Vec<Intake>) {
        let Some(k) = &mut self.keys else { return };
        k.opener.set_keys(k.account.all_keys());
        k.opener.signers = k.account.signers();
        k.opener.roster = k.account.roster.clone();
        out.push(Intake::Rekeyed {
            current: k.account.keys(),
            all: k.account.all_keys(),
        });
        for (topic, payload) in std::mem::take(&mut k.parked) {
            self.take_into(&topic, &payload, now, out);
        }
    }
}
