//! Keeping the broker's copy of this device's retained topics right.
//!
//! The broker is a cache that anyone on it can write to: a retained message of this device can
//! be cleared, replaced with garbage, with an old copy or with a forgery. Every device is
//! subscribed to its account's topics, its own among them, so it sees what the broker holds for
//! each of them. The keeper compares what arrives with what this device last published there:
//!
//! - the same bytes: the broker holds this device's copy (it is *confirmed*);
//! - anything else while this device's own latest copy has not come back yet: nothing to do,
//!   that copy is on its way and replaces it;
//! - anything else after that: the broker lost the copy, so it is published again after a
//!   short random delay.
//!
//! On shared topics (resume points, the roster) the copy to keep may be another device's: a
//! newer resume point, a roster that holds this device's. The link's owner says so with
//! [`Keeper::adopt`] before the repair is due, and from then on that copy is the one kept.
//! Every device that saw it keeps it, so it survives its author; the first repair to arrive
//! is the others' own copy coming back, which cancels theirs. The owner decides a moment
//! after the arrival, so something else may have reached the broker on the topic meanwhile
//! (a replay right behind a newer point): the keeper remembers the latest arrivals on every
//! topic ([`Keeper::heard`]) and puts the adopted copy back if it is not the latest.
//!
//! Repairs of one topic back off (0.1–0.4 s, then 1 s, 2 s, … up to 30 s while contested) so
//! that nobody can make two devices fight at the network's speed, and calm down after a minute
//! without contest. Sans-IO: the link calls it with the time and carries out what it says.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

/// The first repair of a topic waits this long at least, plus up to [`JITTER_NS`].
const FIRST_DELAY_NS: u64 = 100_000_000;
const JITTER_NS: u64 = 300_000_000;
/// How long after an ask its answers may still come: the latest a device sends its answer
/// after the ask arrived, and the trips of the ask and the answer.
pub const ANSWER_WINDOW: std::time::Duration =
    std::time::Duration::from_nanos(FIRST_DELAY_NS + JITTER_NS + 200_000_000);
/// Later repairs of a topic that stays contested wait this, doubled each time, up to the cap.
const BACKOFF_NS: u64 = 1_000_000_000;
const MAX_BACKOFF_NS: u64 = 30_000_000_000;
/// A topic not contested for this long counts as calm again.
const CALM_NS: u64 = 60_000_000_000;
/// The arrivals remembered (as hashes of topic and content) to tell whether a copy adopted
/// is still the latest on its topic: far more than arrive while the owner decides.
const RECENT_ARRIVALS: usize = 1024;

#[derive(Debug, Default)]
struct Kept {
    /// The broker has sent this device's latest copy back since it was last published.
    confirmed: bool,
    /// A repair is scheduled for this instant.
    repair_at: Option<u64>,
    /// Repairs made while contested; sets the backoff.
    strikes: u32,
    last_repair_ns: u64,
    /// The scheduled publish answers an ask ([`Keeper::answer`]), not a loss.
    answer: bool,
}

/// A topic to publish again now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub topic: String,
    /// It answers an ask (the broker of another device lacks it), rather than repairing
    /// what this device's broker lost.
    pub answer: bool,
}

/// What an arrival on a kept topic means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Not a topic this device publishes retained.
    NotKept,
    /// This device's own copy came back.
    Confirmed,
    /// Something else, before this device's latest copy came back: that copy replaces it.
    InFlight,
    /// The broker's copy was replaced: a repair is scheduled for this instant.
    Repair { at_ns: u64 },
}

/// The state of this device's retained topics on the broker.
#[derive(Debug, Default)]
pub struct Keeper {
    kept: BTreeMap<String, Kept>,
    /// The latest arrivals, oldest first: (topic, content) hashed with a per-process key.
    recent: VecDeque<(u64, u64)>,
    hasher: RandomState,
}

impl Keeper {
    /// This device (re)published its copy of `topic`.
    pub fn sent(&mut self, topic: &str) {
        let k = self.kept.entry(topic.to_owned()).or_default();
        k.confirmed = false;
        k.repair_at = None;
        k.answer = false;
    }

    /// Something arrived on `topic` (any topic): remembered for [`Keeper::adopt`].
    pub fn heard(&mut self, topic: &str, payload: &[u8]) {
        if self.recent.len() == RECENT_ARRIVALS {
            self.recent.pop_front();
        }
        let entry = (self.hasher.hash_one(topic), self.hasher.hash_one(payload));
        self.recent.push_back(entry);
    }

    /// Something arrived on `topic`; `mine` is whether it is this device's latest copy.
    pub fn arrived(&mut self, topic: &str, mine: bool, now_ns: u64) -> Arrival {
        let Some(k) = self.kept.get_mut(topic) else {
            return Arrival::NotKept;
        };
        if mine {
            k.confirmed = true;
            k.repair_at = None;
            k.answer = false;
            return Arrival::Confirmed;
        }
        if !k.confirmed {
            return Arrival::InFlight;
        }
        k.answer = false;
        Arrival::Repair {
            at_ns: k.schedule(now_ns),
        }
    }

    /// Another device's broker lacks this device's retained state: publish `topic` again
    /// soon, unless its copy arrives from another device first (a shared topic that
    /// device keeps too). Backs off like repairs, so that asks cannot make this device
    /// publish at the network's speed.
    pub fn answer(&mut self, topic: &str, now_ns: u64) {
        let k = self.kept.entry(topic.to_owned()).or_default();
        if k.repair_at.is_none() {
            k.answer = true;
            k.schedule(now_ns);
        }
    }

    /// The topics whose repair or answer is due at `now_ns`: publish them again (then call
    /// [`Keeper::sent`]).
    pub fn due(&mut self, now_ns: u64) -> Vec<Due> {
        let mut out = Vec::new();
        for (topic, k) in &mut self.kept {
            if k.repair_at.is_some_and(|at| at <= now_ns) {
                k.repair_at = None;
                k.strikes = k.strikes.saturating_add(1);
                k.last_repair_ns = now_ns;
                out.push(Due {
                    topic: topic.clone(),
                    answer: std::mem::take(&mut k.answer),
                });
            }
        }
        out
    }

    /// The earliest scheduled repair.
    pub fn next_due(&self) -> Option<u64> {
        self.kept.values().filter_map(|k| k.repair_at).min()
    }

    /// The copy of `topic` to keep is `payload`, which arrived from the broker a moment ago
    /// (another device's). If it is still the latest arrival on the topic it is confirmed and
    /// no repair is due; if something else arrived after it (or too long ago to tell), that
    /// is what the broker holds, and a repair is scheduled.
    pub fn adopt(&mut self, topic: &str, payload: &[u8], now_ns: u64) -> Arrival {
        let t = self.hasher.hash_one(topic);
        let latest = self.recent.iter().rev().find(|(rt, _)| *rt == t);
        let current = latest.is_some_and(|(_, rp)| *rp == self.hasher.hash_one(payload));
        let k = self.kept.entry(topic.to_owned()).or_default();
        k.confirmed = true;
        k.repair_at = None;
        k.answer = false;
        if current {
            Arrival::Confirmed
        } else {
            Arrival::Repair {
                at_ns: k.schedule(now_ns),
            }
        }
    }
}

impl Kept {
    /// When to publish again: soon with a random delay, or later while the topic stays
    /// contested (see the module's notes on backoff).
    fn schedule(&mut self, now_ns: u64) -> u64 {
        if now_ns.saturating_sub(self.last_repair_ns) > CALM_NS {
            self.strikes = 0;
        }
        let at_ns = match self.strikes {
            0 => now_ns + FIRST_DELAY_NS + fastrand::u64(..JITTER_NS),
            n => {
                let backoff = BACKOFF_NS
                    .saturating_mul(1 << (n - 1).min(16))
                    .min(MAX_BACKOFF_NS);
                (self.last_repair_ns + backoff).max(now_ns + FIRST_DELAY_NS)
            }
        };
        self.repair_at = Some(at_ns);
        at_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_copy_replaced_after_it_came_back_is_repaired_within_half_a_second() {
        let mut k = Keeper::default();
        k.sent("t");
        assert_eq!(
            k.arrived("t", false, S),
            Arrival::InFlight,
            "old copy first"
        );
        assert_eq!(k.arrived("t", true, S), Arrival::Confirmed);
        let Arrival::Repair { at_ns } = k.arrived("t", false, 2 * S) else {
            panic!("a clear after the echo is repaired")
        };
        assert!((2 * S + 100_000_000..=2 * S + 400_000_000).contains(&at_ns));
        assert!(k.due(at_ns - 1).is_empty());
        assert_eq!(
            k.due(at_ns),
            vec![Due {
                topic: "t".to_owned(),
                answer: false
            }]
        );
        assert_eq!(k.arrived("u", false, 2 * S), Arrival::NotKept);
    }

    #[test]
    fn a_topic_that_stays_contested_is_repaired_ever_more_slowly() {
        let mut k = Keeper::default();
        k.sent("t");
        k.arrived("t", true, 0);
        let mut now = 10 * S;
        let mut gaps = Vec::new();
        let mut last = now;
        for _ in 0..8 {
            let Arrival::Repair { at_ns } = k.arrived("t", false, now) else {
                panic!()
            };
            assert_eq!(k.due(at_ns).len(), 1);
            gaps.push(at_ns - last);
            last = at_ns;
            k.sent("t");
            k.arrived("t", true, at_ns);
            now = at_ns + 1; // contested again at once
        }
        assert!(gaps.windows(2).skip(1).all(|w| w[1] >= w[0]), "{gaps:?}");
        assert!(*gaps.last().unwrap() >= 30 * S - 1, "{gaps:?}");
        assert!(gaps.iter().all(|g| *g <= 30 * S + 1), "{gaps:?}");
    }

    #[test]
    fn a_newer_copy_from_another_device_is_kept_instead() {
        let mut k = Keeper::default();
        k.sent("t");
        k.heard("t", b"mine");
        k.arrived("t", true, 0);
        k.heard("t", b"newer");
        assert!(matches!(k.arrived("t", false, S), Arrival::Repair { .. }));
        // The owner took that arrival as the copy to keep.
        assert_eq!(k.adopt("t", b"newer", S), Arrival::Confirmed);
        assert!(k.due(60 * S).is_empty());
        assert_eq!(k.arrived("t", true, 2 * S), Arrival::Confirmed);
        assert!(matches!(
            k.arrived("t", false, 3 * S),
            Arrival::Repair { .. }
        ));
        // A device that never published the topic keeps a copy it saw just the same.
        k.heard("u", b"theirs");
        assert_eq!(k.adopt("u", b"theirs", 3 * S), Arrival::Confirmed);
        assert!(matches!(
            k.arrived("u", false, 3 * S),
            Arrival::Repair { .. }
        ));
    }

    #[test]
    fn a_copy_adopted_after_a_replay_landed_behind_it_is_put_back() {
        let mut k = Keeper::default();
        k.heard("t", b"kept");
        k.adopt("t", b"kept", 0);
        // A newer point, then a replay right behind it, both before the owner decided.
        k.heard("t", b"newer");
        k.arrived("t", false, S);
        k.heard("t", b"replay");
        k.arrived("t", false, S);
        k.heard("u", b"elsewhere");
        let Arrival::Repair { at_ns } = k.adopt("t", b"newer", S) else {
            panic!("the broker holds the replay: the newer copy goes back")
        };
        assert_eq!(k.due(at_ns).len(), 1);
        // So many arrivals since that it cannot tell: put back, to be sure.
        k.heard("v", b"x");
        for i in 0..RECENT_ARRIVALS {
            k.heard(&format!("w{i}"), b"junk");
        }
        assert!(matches!(k.adopt("v", b"x", 2 * S), Arrival::Repair { .. }));
    }

    #[test]
    fn an_ask_is_answered_soon_unless_another_device_sends_the_same_copy_first() {
        let mut k = Keeper::default();
        for t in ["own", "shared"] {
            k.sent(t);
            k.arrived(t, true, 0);
        }
        k.answer("own", 10 * S);
        k.answer("shared", 10 * S);
        // Another device that keeps the shared copy answered first: its bytes are ours.
        assert_eq!(k.arrived("shared", true, 10 * S + 1), Arrival::Confirmed);
        let due = k.due(10 * S + 400_000_000);
        assert_eq!(
            due,
            vec![Due {
                topic: "own".to_owned(),
                answer: true
            }]
        );
        // A second ask at once waits out the backoff: asks cannot drive this device.
        k.sent("own");
        k.arrived("own", true, 10 * S + 500_000_000);
        k.answer("own", 10 * S + 500_000_000);
        assert!(k.due(11 * S).is_empty());
        assert_eq!(k.next_due().map(|at| at >= 11 * S), Some(true));
    }
}
