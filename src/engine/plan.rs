//! How long this device takes to be ready for a handoff: learned from its own handoffs, so
//! that a target prerolls, the first time, where the source will be when it is ready, and
//! seeks once.
//!
//! Two kinds of readiness: *cold*, a media that must be loaded first (open the file or the
//! HTTP stream, find the streams, decode up to the position), learned per media and for the
//! device as a whole; and *warm*, a seek within the media already loaded. Each is kept as
//! TCP keeps its round-trip time (RFC 6298): a smoothed mean and a smoothed mean deviation,
//! and the time to plan for is the mean plus three deviations (about the 99th percentile of
//! a normal spread). Planning short costs a second seek, planning long costs the excess in
//! latency. A device that has never handed off plans with a safe default; one that
//! sometimes stalls learns to leave room for it.

use std::collections::BTreeMap;

/// The time to plan for a cold load before this device has measured one (a local file
/// loads in 50–100 ms on a small machine; an HTTP stream takes longer).
pub const DEFAULT_COLD_NS: u64 = 250_000_000;

/// The time to plan for a seek in the loaded media before this device has measured one.
pub const DEFAULT_WARM_NS: u64 = 80_000_000;

/// Media whose load time is kept; the least recently used go first.
pub const MAX_MEDIA: usize = 64;

/// The most a sample counts for: one stall of a minute must not make every later handoff
/// wait a minute.
const MAX_SAMPLE_NS: u64 = 10_000_000_000;

/// A smoothed time and its smoothed deviation, in ns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub mean_ns: f64,
    pub dev_ns: f64,
    /// Samples taken (a count, for the record; it saturates).
    pub samples: u32,
}

impl Estimate {
    /// The first sample: a mean of it and a deviation of a quarter of it (RFC 6298 takes
    /// half, for a timer whose early firing costs much more).
    pub fn first(sample_ns: u64) -> Estimate {
        let s = sample_ns.min(MAX_SAMPLE_NS) as f64;
        Estimate {
            mean_ns: s,
            dev_ns: s / 4.0,
            samples: 1,
        }
    }

    /// Take another sample (RFC 6298, 2.3: α = 1/8, β = 1/4).
    pub fn add(&mut self, sample_ns: u64) {
        let s = sample_ns.min(MAX_SAMPLE_NS) as f64;
        self.dev_ns = 0.75 * self.dev_ns + 0.25 * (self.mean_ns - s).abs();
        self.mean_ns = 0.875 * self.mean_ns + 0.125 * s;
        self.samples = self.samples.saturating_add(1);
    }

    /// The time to plan for: the mean and three deviations.
    pub fn plan_ns(&self) -> u64 {
        (self.mean_ns + 3.0 * self.dev_ns).max(0.0) as u64
    }

    fn merge(slot: &mut Option<Estimate>, sample_ns: u64) {
        match slot {
            Some(e) => e.add(sample_ns),
            None => *slot = Some(Estimate::first(sample_ns)),
        }
    }
}

/// What this device knows of its own readiness.
#[derive(Debug, Clone, Default)]
pub struct ReadyTimes {
    cold: Option<Estimate>,
    warm: Option<Estimate>,
    /// Cold loads by media id, with a use counter for the eviction.
    media: BTreeMap<String, (Estimate, u64)>,
    uses: u64,
}

/// Where a learned estimate is kept in the local store: `cold`, `warm` or `media:<id>`.
pub fn store_key(media: Option<&str>, cold: bool) -> String {
    match (media, cold) {
        (Some(id), true) => format!("media:{id}"),
        (_, true) => "cold".into(),
        (_, false) => "warm".into(),
    }
}

impl ReadyTimes {
    /// The time to plan for to be ready at a position of `media`: a seek when it is
    /// `loaded`, else a load of it.
    pub fn plan_ns(&self, media: &str, loaded: bool) -> u64 {
        if loaded {
            return self.warm.map_or(DEFAULT_WARM_NS, |e| e.plan_ns());
        }
        match (self.media.get(media), self.cold) {
            (Some((e, _)), _) => e.plan_ns(),
            (None, Some(e)) => e.plan_ns(),
            (None, None) => DEFAULT_COLD_NS,
        }
    }

    /// A handoff's preparation took `took_ns`: a load of `media` when `cold`, else a seek.
    /// Returns what to keep in the store: (key, estimate) pairs.
    pub fn learn(&mut self, media: &str, cold: bool, took_ns: u64) -> Vec<(String, Estimate)> {
        if !cold {
            Estimate::merge(&mut self.warm, took_ns);
            return vec![(store_key(None, false), self.warm.expect("set"))];
        }
        Estimate::merge(&mut self.cold, took_ns);
        self.uses += 1;
        let uses = self.uses;
        let e = match self.media.get_mut(media) {
            Some((e, used)) => {
                e.add(took_ns);
                *used = uses;
                *e
            }
            None => {
                if self.media.len() >= MAX_MEDIA
                    && let Some(oldest) = self
                        .media
                        .iter()
                        .min_by_key(|(_, (_, used))| *used)
                        .map(|(k, _)| k.clone())
                {
                    self.media.remove(&oldest);
                }
                let e = Estimate::first(took_ns);
                self.media.insert(media.to_owned(), (e, uses));
                e
            }
        };
        vec![
            (store_key(None, true), self.cold.expect("set")),
            (store_key(Some(media), true), e),
        ]
    }

    /// Take back what the store kept (`key` as [`store_key`] makes them; others are
    /// ignored, and so are estimates that are not finite and positive).
    pub fn restore(&mut self, key: &str, e: Estimate) {
        if !(e.mean_ns.is_finite() && e.dev_ns.is_finite() && e.mean_ns >= 0.0 && e.dev_ns >= 0.0) {
            return;
        }
        let e = Estimate {
            mean_ns: e.mean_ns.min(MAX_SAMPLE_NS as f64),
            dev_ns: e.dev_ns.min(MAX_SAMPLE_NS as f64),
            ..e
        };
        match key {
            "cold" => self.cold = Some(e),
            "warm" => self.warm = Some(e),
            _ => {
                if let Some(id) = key.strip_prefix("media:")
                    && (self.media.len() < MAX_MEDIA || self.media.contains_key(id))
                {
                    self.uses += 1;
                    self.media.insert(id.to_owned(), (e, self.uses));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_new_device_plans_with_the_defaults() {
        let r = ReadyTimes::default();
        assert_eq!(r.plan_ns("file:a", false), DEFAULT_COLD_NS);
        assert_eq!(r.plan_ns("file:a", true), DEFAULT_WARM_NS);
    }

    #[test]
    fn steady_loads_converge_on_their_time_and_a_stall_widens_the_plan() {
        let mut r = ReadyTimes::default();
        for _ in 0..40 {
            r.learn("file:a", true, 90 * MS);
        }
        let steady = r.plan_ns("file:a", false);
        assert!(
            (90 * MS..100 * MS).contains(&steady),
            "steady at 90 ms: plans {} ms",
            steady / MS
        );
        r.learn("file:a", true, 400 * MS);
        let after = r.plan_ns("file:a", false);
        assert!(after > 200 * MS, "a stall is room made: {} ms", after / MS);
        assert_eq!(
            r.plan_ns("file:b", false),
            r.cold.unwrap().plan_ns(),
            "another media: the device's own cold time"
        );
    }

    #[test]
    fn media_are_bounded_and_the_least_recently_used_go_first() {
        let mut r = ReadyTimes::default();
        for i in 0..MAX_MEDIA {
            r.learn(&format!("file:{i}"), true, 50 * MS);
        }
        r.learn("file:0", true, 50 * MS);
        r.learn("file:new", true, 500 * MS);
        assert_eq!(r.media.len(), MAX_MEDIA);
        assert!(r.media.contains_key("file:0"), "used again: kept");
        assert!(!r.media.contains_key("file:1"), "the oldest went");
    }

    #[test]
    fn what_the_store_gives_back_is_checked() {
        let mut r = ReadyTimes::default();
        let bad = Estimate {
            mean_ns: f64::NAN,
            dev_ns: 0.0,
            samples: 1,
        };
        r.restore("cold", bad);
        r.restore("nonsense", Estimate::first(MS));
        assert_eq!(r.plan_ns("file:a", false), DEFAULT_COLD_NS);
        r.restore("media:file:a", Estimate::first(60 * MS));
        assert_eq!(r.plan_ns("file:a", false), 105 * MS, "60 ms + 3 × 15 ms");
        let huge = Estimate {
            mean_ns: 1e30,
            dev_ns: 0.0,
            samples: 1,
        };
        r.restore("warm", huge);
        assert_eq!(r.plan_ns("file:a", true), MAX_SAMPLE_NS, "bounded");
    }
}
