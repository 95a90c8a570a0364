//! The account's history (its events), shared: each device hears only the events published
//! while it is connected, so devices and the command line's views ask the others for what
//! they lack (`history/ask`), and those that hold other events of a day send them
//! (`history/answer`). Sans-IO: what to ask, what to send and how to split it; the node and
//! the view do the rest.
//!
//! What an asker holds is summed up per recording device and UTC day as a count and an
//! order-free digest (XOR of a hash per event), so an ask stays small whatever the history
//! holds, and a day two devices hold alike costs nothing more.

use std::collections::BTreeMap;

use ring::digest::{SHA256, digest};
use serde_json::{Map, Value};

use crate::wire::{self, HeldDay, HeldEvents, HistoryAnswer, HistoryAsk};

/// One UTC day.
pub const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// The plaintext of one answer stays under this, so that sealed (base64, an envelope) it
/// fits the 64 KiB limit.
pub const ANSWER_BYTES: usize = 40_000;

/// Most events one device sends for one ask; an asker that lacks more gets the rest when it
/// asks again (each device asks whenever it connects).
pub const MAX_SENT: usize = 5_000;

/// A device that learns from an ask that another holds events it lacks asks in turn, at
/// most this often.
pub const ASK_BACK_NS: u64 = 60 * 1_000_000_000;

/// A recording device and a UTC day.
type Day = (String, u32);
/// How many events, and their digest.
type Held = (u32, u64);

/// How many asks a device answers, and how often for one asker: answering costs up to
/// [`MAX_SENT`] events, so a peer that asks in a loop (or under many helper names) must not
/// turn one device into a firehose. A person running `stats` twice in a row is answered.
#[derive(Debug, Default)]
pub struct AnswerBudget {
    /// Asks answered in the last minute: (asker, when).
    recent: std::collections::VecDeque<(String, u64)>,
}

impl AnswerBudget {
    /// One asker is answered at most once in this time.
    pub const PER_ASKER_NS: u64 = 2_000_000_000;
    /// At most this many asks a minute, from all askers.
    pub const PER_MINUTE: usize = 30;

    /// Whether to answer `asker` at `now` (and count it when so).
    pub fn allow(&mut self, asker: &str, now: u64) -> bool {
        let minute = 60_000_000_000;
        while self
            .recent
            .front()
            .is_some_and(|(_, at)| now.saturating_sub(*at) >= minute)
        {
            self.recent.pop_front();
        }
        let again = self
            .recent
            .iter()
            .any(|(who, at)| who == asker && now.saturating_sub(*at) < Self::PER_ASKER_NS);
        if again || self.recent.len() >= Self::PER_MINUTE {
            return false;
        }
        self.recent.push_back((asker.to_owned(), now));
        true
    }
}

/// What a device holds: per (recording device, UTC day), how many events and their digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    days: BTreeMap<Day, Held>,
}

/// The hash of one event in a digest: the first 8 bytes of SHA-256 over its store key.
fn event_hash(store_key: &str) -> u64 {
    let d = digest(&SHA256, store_key.as_bytes());
    u64::from_be_bytes(d.as_ref()[..8].try_into().expect("8 bytes"))
}

/// The UTC day of an instant.
pub fn day_of(unix_ns: u64) -> u32 {
    (unix_ns / DAY_NS).min(u64::from(u32::MAX)) as u32
}

impl Summary {
    /// From the store's keys: (recording device, `device/key`, instant), as
    /// [`crate::store::Store::event_keys`] lists them.
    pub fn of(keys: impl IntoIterator<Item = (String, String, u64)>) -> Summary {
        let mut days: BTreeMap<Day, Held> = BTreeMap::new();
        for (device, key, at) in keys {
            let e = days.entry((device, day_of(at))).or_default();
            e.0 += 1;
            e.1 ^= event_hash(&key);
        }
        Summary { days }
    }

    /// What an asker says it holds.
    pub fn from_ask(ask: &HistoryAsk) -> Summary {
        let mut days = BTreeMap::new();
        for h in &ask.held {
            for d in &h.days {
                let digest = u64::from_str_radix(&d.digest, 16).unwrap_or(0);
                days.insert((h.device.clone(), d.day), (d.count, digest));
            }
        }
        Summary { days }
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// The ask for what others hold from `since_unix_ns` on. When this holds more days than
    /// an ask may list, it lists the newest and asks from the oldest day listed.
    pub fn ask(&self, id: &str, device: &str, since_unix_ns: u64) -> HistoryAsk {
        let since_day = day_of(since_unix_ns);
        let mut newest: Vec<(&Day, &Held)> = self
            .days
            .iter()
            .filter(|((_, day), _)| *day >= since_day)
            .collect();
        newest.sort_by(|a, b| b.0.1.cmp(&a.0.1).then_with(|| a.0.0.cmp(&b.0.0)));
        let mut since = since_unix_ns;
        if newest.len() > wire::MAX_HISTORY_DAYS {
            newest.truncate(wire::MAX_HISTORY_DAYS);
            // The oldest day listed may be cut in two by the limit: ask from the day after.
            let oldest = newest.last().map_or(since_day, |((_, day), _)| *day);
            newest.retain(|((_, day), _)| *day > oldest);
            since = since.max(u64::from(oldest + 1) * DAY_NS);
        }
        let mut held: BTreeMap<&str, Vec<HeldDay>> = BTreeMap::new();
        for ((dev, day), (count, digest)) in newest {
            held.entry(dev).or_default().push(HeldDay {
                day: *day,
                count: *count,
                digest: format!("{digest:016x}"),
            });
        }
        let devices: Vec<HeldEvents> = held
            .into_iter()
            .take(wire::MAX_ROSTER)
            .map(|(device, mut days)| {
                days.sort_by_key(|d| d.day);
                HeldEvents {
                    device: device.to_owned(),
                    days,
                }
            })
            .collect();
        HistoryAsk {
            v: wire::VERSION,
            id: id.to_owned(),
            device: device.to_owned(),
            since_unix_ns: since,
            held: devices,
        }
    }

    /// Held against what an asker holds (`theirs`, from `since_unix_ns` on): the days whose
    /// events this holds otherwise, which it sends (the asker keeps the new ones), and
    /// whether the asker holds something this lacks (a day this lacks, or more events of
    /// one), so that this asks in turn.
    pub fn compare(&self, theirs: &Summary, since_unix_ns: u64) -> Comparison {
        let since_day = day_of(since_unix_ns);
        let mut send = Vec::new();
        for ((device, day), (count, digest)) in &self.days {
            if *day < since_day {
                continue;
            }
            match theirs.days.get(&(device.clone(), *day)) {
                Some((c, d)) if c == count && d == digest => {}
                _ => send.push((device.clone(), *day)),
            }
        }
        let they_hold_more = theirs.days.iter().any(|(k, (c, d))| {
            k.1 >= since_day
                && match self.days.get(k) {
                    None => *c > 0,
                    Some((mine, digest)) => c > mine || (c == mine && d != digest),
                }
        });
        Comparison {
            send,
            they_hold_more,
        }
    }
}

/// See [`Summary::compare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// (recording device, UTC day) whose events to send.
    pub send: Vec<(String, u32)>,
    pub they_hold_more: bool,
}

/// The answers of `device` to `ask`, carrying `events` (each as published on `events`),
/// each under [`ANSWER_BYTES`] and [`wire::MAX_HISTORY_EVENTS`]; the last says so. At
/// least one (an empty last answer tells the asker that this device has nothing more).
pub fn answers(
    device: &str,
    ask: &HistoryAsk,
    events: Vec<Map<String, Value>>,
) -> Vec<HistoryAnswer> {
    let empty = || HistoryAnswer {
        v: wire::VERSION,
        device: device.to_owned(),
        ask: ask.id.clone(),
        to: ask.device.clone(),
        events: Vec::new(),
        last: false,
    };
    let base = wire::encode(&empty()).len() + 16;
    let mut out = vec![empty()];
    let mut size = base;
    for e in events {
        let len = wire::encode(&e).len() + 1;
        if base + len > ANSWER_BYTES {
            tracing::debug!("an event of {len} bytes is too large to hand on");
            continue;
        }
        let current = out.last_mut().expect("one answer at least");
        if size + len > ANSWER_BYTES || current.events.len() >= wire::MAX_HISTORY_EVENTS {
            out.push(empty());
            size = base;
        }
        out.last_mut().expect("one answer at least").events.push(e);
        size += len;
    }
    out.last_mut().expect("one answer at least").last = true;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
        list.iter()
            .map(|(d, k, at)| (d.to_string(), format!("{d}/{k}"), *at))
            .collect()
    }

    const DAY: u64 = DAY_NS;

    #[test]
    fn a_day_held_alike_is_not_sent_and_one_held_otherwise_is() {
        let mine = Summary::of(keys(&[
            ("tv", "a", 10 * DAY + 5),
            ("tv", "b", 10 * DAY + 6),
            ("tv", "c", 11 * DAY),
            ("phone", "x", 11 * DAY + 1),
        ]));
        // The asker holds day 10 of the TV alike, day 11 with another event, and nothing
        // of the phone.
        let theirs = Summary::of(keys(&[
            ("tv", "b", 10 * DAY + 6),
            ("tv", "a", 10 * DAY + 5),
            ("tv", "d", 11 * DAY + 3),
        ]));
        let ask = theirs.ask("h-1", "phone~stats", 0);
        assert_eq!(Summary::from_ask(&ask), theirs, "the ask says all it holds");
        let c = mine.compare(&Summary::from_ask(&ask), 0);
        assert_eq!(
            c.send,
            vec![("phone".to_string(), 11), ("tv".to_string(), 11)]
        );
        assert!(c.they_hold_more, "the asker holds d, which this lacks");
        // Once both hold the same, nothing is sent either way.
        let same = mine.compare(&mine.clone(), 0);
        assert!(same.send.is_empty() && !same.they_hold_more);
        // Days before the asker's window are not its business.
        assert_eq!(mine.compare(&theirs, 11 * DAY).send.len(), 2);
        assert!(mine.compare(&Summary::default(), 12 * DAY).send.is_empty());
    }

    #[test]
    fn an_ask_stays_within_its_limits_and_asks_from_the_oldest_day_it_lists() {
        let many: Vec<(String, String, u64)> = (0..4)
            .flat_map(|d| {
                (0..300u64).map(move |day| {
                    (
                        format!("dev-{d}"),
                        format!("dev-{d}/e{day}"),
                        (1000 + day) * DAY,
                    )
                })
            })
            .collect();
        let s = Summary::of(many);
        let ask = s.ask("h-2", "tv", 0);
        let days: usize = ask.held.iter().map(|h| h.days.len()).sum();
        assert!(days <= wire::MAX_HISTORY_DAYS, "{days}");
        let oldest = ask
            .held
            .iter()
            .flat_map(|h| h.days.iter().map(|d| d.day))
            .min()
            .unwrap();
        assert_eq!(ask.since_unix_ns, u64::from(oldest) * DAY);
        let topic = crate::wire::Topic::history_ask("home").to_string();
        let decoded = crate::wire::decode(&topic, &crate::wire::encode(&ask)).unwrap();
        assert!(matches!(decoded.body, crate::wire::Body::HistoryAsk(_)));
        assert!(crate::wire::encode(&ask).len() < 40_000);
        // One that lists more is refused by its receivers.
        let mut over = ask.clone();
        over.held[0].days = (0..601)
            .map(|day| HeldDay {
                day,
                count: 1,
                digest: "0000000000000000".into(),
            })
            .collect();
        let err = crate::wire::decode(&topic, &crate::wire::encode(&over)).unwrap_err();
        assert_eq!(err.field(), Some("held"), "{err}");
    }

    #[test]
    fn a_device_answers_a_flood_of_asks_within_its_budget() {
        let mut b = AnswerBudget::default();
        let s = 1_000_000_000;
        assert!(b.allow("phone~stats", 0));
        assert!(!b.allow("phone~stats", s), "the same asker within 2 s");
        assert!(b.allow("phone~stats", 3 * s), "and after");
        // Many names at once: 30 a minute, then nothing until the minute has passed.
        let answered = (0..100)
            .filter(|i| b.allow(&format!("phone~x{i}"), 4 * s))
            .count();
        assert_eq!(answered, AnswerBudget::PER_MINUTE - 2);
        assert!(!b.allow("tv", 30 * s));
        assert!(b.allow("tv", 65 * s));
    }

    #[test]
    fn answers_are_split_under_the_size_limit_and_the_last_says_so() {
        let ask = Summary::default().ask("h-3", "phone", 0);
        let nothing = answers("tv", &ask, Vec::new());
        assert_eq!(nothing.len(), 1);
        assert!(nothing[0].last && nothing[0].events.is_empty());
        let serde_json::Value::Object(event) = serde_json::json!({"v": 1, "device": "tv",
            "name": "started", "at_unix_ns": 1u64, "media_id": "x".repeat(900)})
        else {
            unreachable!()
        };
        let all = answers("tv", &ask, vec![event; 200]);
        assert!(all.len() > 1, "200 events of 1 KB do not fit one answer");
        assert_eq!(all.iter().map(|a| a.events.len()).sum::<usize>(), 200);
        assert!(all.iter().all(|a| wire::encode(a).len() <= ANSWER_BYTES));
        assert_eq!(all.iter().filter(|a| a.last).count(), 1);
        assert!(all.last().unwrap().last);
    }
}
