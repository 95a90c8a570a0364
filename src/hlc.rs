//! Hybrid logical clock stamps and last-writer-wins merging.
//!
//! Every state on the wire carries a [`Stamp`]: the sender's wall clock, a counter that orders
//! events within one wall-clock value (and keeps causality when clocks disagree), and the
//! sender's device id to break ties. Stamps are totally ordered, so "keep the greatest" is a
//! merge that every replica agrees on whatever the delivery order ([`LwwMap`]).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Wall-clock now, in ns since the Unix epoch (0 for a clock before 1970).
pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// How far ahead of this device's wall clock a remote stamp may be. A stamp further ahead is
/// refused where messages come in ([`check_ahead`]): taken in, it would pin every later
/// stamp of this device to it, and nothing newer could ever replace the state it carries.
pub const MAX_AHEAD_NS: u64 = 5 * 60 * 1_000_000_000;

/// `Err` with the reason when `stamp` is more than [`MAX_AHEAD_NS`] ahead of `now_unix_ns`.
pub fn check_ahead(stamp: &Stamp, now_unix_ns: u64) -> Result<(), String> {
    let ahead = stamp.wall_ns.saturating_sub(now_unix_ns);
    if ahead > MAX_AHEAD_NS {
        return Err(format!(
            "stamped {} s ahead of this device's clock (at most {} s are taken)",
            ahead / 1_000_000_000,
            MAX_AHEAD_NS / 1_000_000_000
        ));
    }
    Ok(())
}

/// A hybrid logical clock stamp. Ordered by wall time, then counter, then device id.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct Stamp {
    /// Wall-clock part, nanoseconds since the Unix epoch (never behind any stamp seen).
    #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
    pub wall_ns: u64,
    /// Orders stamps that share a wall-clock value.
    pub counter: u32,
    /// The device that made the stamp; breaks ties between devices.
    #[schemars(pattern(crate::patterns::ID))]
    pub device: String,
}

impl Stamp {
    pub fn zero(device: &str) -> Stamp {
        Stamp {
            wall_ns: 0,
            counter: 0,
            device: device.to_owned(),
        }
    }
}

/// The clock of one device.
#[derive(Debug, Clone)]
pub struct HybridClock {
    device: String,
    wall_ns: u64,
    counter: u32,
}

impl HybridClock {
    pub fn new(device: &str) -> HybridClock {
        HybridClock {
            device: device.to_owned(),
            wall_ns: 0,
            counter: 0,
        }
    }

    /// A new stamp, greater than every stamp this clock made or observed.
    pub fn stamp(&mut self, now_unix_ns: u64) -> Stamp {
        if now_unix_ns > self.wall_ns {
            self.wall_ns = now_unix_ns;
            self.counter = 0;
        } else {
            self.bump();
        }
        self.current()
    }

    /// Take a remote stamp into account so that later local stamps order after it.
    pub fn observe(&mut self, remote: &Stamp, now_unix_ns: u64) {
        let wall = self.wall_ns.max(remote.wall_ns).max(now_unix_ns);
        if wall == self.wall_ns && wall == remote.wall_ns {
            self.counter = self.counter.max(remote.counter);
            self.bump();
        } else if wall == self.wall_ns {
            self.bump();
        } else if wall == remote.wall_ns {
            self.wall_ns = wall;
            self.counter = remote.counter;
            self.bump();
        } else {
            self.wall_ns = wall;
            self.counter = 0;
        }
    }

    fn bump(&mut self) {
        match self.counter.checked_add(1) {
            Some(c) => self.counter = c,
            None => {
                // Counter exhausted within one nanosecond: borrow from the wall clock.
                self.wall_ns += 1;
                self.counter = 0;
            }
        }
    }

    fn current(&self) -> Stamp {
        Stamp {
            wall_ns: self.wall_ns,
            counter: self.counter,
            device: self.device.clone(),
        }
    }
}

/// Something that carries a stamp.
pub trait Stamped {
    fn stamp(&self) -> &Stamp;
}

/// A map whose entries each keep the value with the greatest stamp ever offered. Merging is
/// commutative, associative and idempotent: replicas that saw the same offers agree.
#[derive(Debug, Clone, PartialEq)]
pub struct LwwMap<K: Ord, V> {
    entries: BTreeMap<K, V>,
}

impl<K: Ord, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        LwwMap {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V: Stamped> LwwMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep `value` if it is newer than what `key` holds. Returns whether it was kept.
    pub fn offer(&mut self, key: K, value: V) -> bool {
        match self.entries.get(&key) {
            Some(old) if old.stamp() >= value.stamp() => false,
            _ => {
                self.entries.insert(key, value);
                true
            }
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_only_grow_even_when_the_wall_clock_goes_back() {
        let mut c = HybridClock::new("a");
        let s1 = c.stamp(100);
        let s2 = c.stamp(90);
        let s3 = c.stamp(100);
        assert!(s1 < s2 && s2 < s3);
        assert_eq!(s2.wall_ns, 100);
    }

    #[test]
    fn observing_a_future_stamp_orders_later_stamps_after_it() {
        let mut c = HybridClock::new("a");
        let remote = Stamp {
            wall_ns: 1_000,
            counter: 7,
            device: "b".into(),
        };
        c.observe(&remote, 10);
        let s = c.stamp(20);
        assert!(s > remote, "{s:?} must order after {remote:?}");
    }

    #[test]
    fn ties_break_by_device() {
        let a = Stamp {
            wall_ns: 5,
            counter: 0,
            device: "a".into(),
        };
        let b = Stamp {
            device: "b".into(),
            ..a.clone()
        };
        assert!(b > a);
    }
}
