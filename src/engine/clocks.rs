//! Other devices' wall clocks, as measured from here.
//!
//! An anchor says where a media was at an instant of its device's wall clock, so where it is
//! *now* needs that device's clock, not this one's: a TV whose clock is 30 s ahead publishes
//! anchors that, read with this device's clock, are 30 s behind. Offsets are measured with
//! the four timestamps of NTP: a `clock-probe` carries `t1` (this clock at sending), the
//! `clock-reply` carries `t2` and `t3` (the other clock when the probe arrived and when the
//! reply left), and `t4` is this clock when the reply arrived. A handoff's offer and accept
//! are such an exchange too. Of several samples, the one with the smallest round trip is
//! kept: its error is at most half of that round trip.

use std::collections::BTreeMap;

/// One measurement of a device's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// That device's clock minus this one's, in ns.
    pub offset_ns: i64,
    /// The round trip, in ns, without the time the other device took to answer. The offset
    /// is within half of it of the truth.
    pub rtt_ns: u64,
    /// This device's clock when the sample was taken.
    pub at_unix_ns: u64,
}

impl ClockSample {
    /// NTP: offset = ((t2 - t1) + (t3 - t4)) / 2, round trip = (t4 - t1) - (t3 - t2); `t1`
    /// and `t4` are this clock, `t2` and `t3` the other one.
    pub fn from_timestamps(t1: u64, t2: u64, t3: u64, t4: u64) -> ClockSample {
        let [a, b, c, d] = [t1, t2, t3, t4].map(i128::from);
        let offset = ((b - a) + (c - d)) / 2;
        ClockSample {
            offset_ns: offset.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
            rtt_ns: ((d - a) - (c - b)).clamp(0, u64::MAX.into()) as u64,
            at_unix_ns: t4,
        }
    }
}

/// A sample older than this is replaced by any new one, whatever its round trip: clocks get
/// set (NTP steps, a user fixing the time), and a sample does not stay true for ever.
pub const SAMPLE_LIFETIME_NS: u64 = 10 * 60 * 1_000_000_000;

/// A sample whose round trip took longer than this is not kept.
pub const MAX_RTT_NS: u64 = 1_000_000_000;

/// Most probes a device answers in one second; more are dropped (each answer is a message,
/// and nobody needs more than a few).
pub const MAX_REPLIES_PER_SECOND: u32 = 32;

/// Most probes to one device that wait for their replies at once (three after it comes
/// online, and those sent again).
const MAX_WAITING: usize = 8;

/// The measured offsets of other devices' clocks, and the probes waiting for a reply.
#[derive(Debug, Clone, Default)]
pub struct Clocks {
    samples: BTreeMap<String, ClockSample>,
    /// Probes sent and not yet answered: device → their `t1`s (a few at most). A reply is
    /// taken only for a probe that is waiting, so an unasked or replayed reply measures
    /// nothing; a probe sent while another waits does not make the first one's reply
    /// unwelcome, nor hide that it was lost.
    waiting: BTreeMap<String, Vec<u64>>,
    /// Replies given in the current second: (second, count).
    replies: (u64, u32),
}

impl Clocks {
    /// The best sample of `device`'s clock, if any was taken.
    pub fn sample(&self, device: &str) -> Option<&ClockSample> {
        self.samples.get(device)
    }

    /// `device`'s clock minus this one's, as used to read its anchors: 0 when it was never
    /// measured, and 0 when the measured offset is within the sample's error (half its round
    /// trip) of 0. Two devices whose clocks agree, such as two on one host, then read each
    /// other's positions exactly, not with a jitter of a few µs from one sample to the next.
    pub fn offset_ns(&self, device: &str) -> i64 {
        self.samples.get(device).map_or(0, |s| {
            if s.offset_ns.unsigned_abs() <= s.rtt_ns / 2 {
                0
            } else {
                s.offset_ns
            }
        })
    }

    /// `device`'s clock at the instant `local_unix_ns` of this one.
    pub fn remote_time(&self, device: &str, local_unix_ns: u64) -> u64 {
        local_unix_ns.saturating_add_signed(self.offset_ns(device))
    }

    /// Take a sample of `device`'s clock: kept when it is the first, more precise than the
    /// one kept, or the one kept is old.
    pub fn record(&mut self, device: &str, sample: ClockSample) {
        if sample.rtt_ns > MAX_RTT_NS {
            // Held up for that long (a device frozen, a link cut off), the offset is
            // anywhere within half a second or more: worth nothing.
            return;
        }
        let keep = self.samples.get(device).is_none_or(|old| {
            sample.rtt_ns <= old.rtt_ns
                || sample.at_unix_ns.saturating_sub(old.at_unix_ns) > SAMPLE_LIFETIME_NS
        });
        if keep {
            self.samples.insert(device.to_owned(), sample);
        }
    }

    /// A probe to `device` leaves now (`t1`); returns `t1` to send.
    pub fn probing(&mut self, device: &str, t1: u64) -> u64 {
        let waiting = self.waiting.entry(device.to_owned()).or_default();
        if waiting.len() >= MAX_WAITING {
            waiting.remove(0);
        }
        waiting.push(t1);
        t1
    }

    /// The probes that have waited since `before` or earlier (lost: a probe goes at QoS 0,
    /// and a device that has just come online may not listen to its inbox yet), a device
    /// named once for each; they wait no more.
    pub fn unanswered(&mut self, before: u64) -> Vec<String> {
        let mut lost = Vec::new();
        self.waiting.retain(|device, waiting| {
            waiting.retain(|t1| {
                let gone = *t1 <= before;
                if gone {
                    lost.push(device.clone());
                }
                !gone
            });
            !waiting.is_empty()
        });
        lost
    }

    /// When the oldest probe still waiting left.
    pub fn oldest_waiting(&self) -> Option<u64> {
        self.waiting.values().flatten().min().copied()
    }

    /// Whether a probe to `device` waits for its reply.
    pub fn is_waiting(&self, device: &str) -> bool {
        self.waiting.contains_key(device)
    }

    /// A reply from `device` to the probe sent at `t1`, arriving at `t4`. Returns the sample
    /// taken, or `None` when no such probe was waiting (the reply is ignored).
    pub fn replied(
        &mut self,
        device: &str,
        t1: u64,
        t2: u64,
        t3: u64,
        t4: u64,
    ) -> Option<ClockSample> {
        let waiting = self.waiting.get_mut(device)?;
        let i = waiting.iter().position(|t| *t == t1)?;
        if t4 < t1 || t3 < t2 {
            return None;
        }
        waiting.remove(i);
        if waiting.is_empty() {
            self.waiting.remove(device);
        }
        let sample = ClockSample::from_timestamps(t1, t2, t3, t4);
        self.record(device, sample);
        Some(sample)
    }

    /// Whether a probe arriving at `now_unix_ns` may be answered (at most
    /// [`MAX_REPLIES_PER_SECOND`]); counts it when it may.
    pub fn may_reply(&mut self, now_unix_ns: u64) -> bool {
        let second = now_unix_ns / 1_000_000_000;
        if self.replies.0 != second {
            self.replies = (second, 0);
        }
        if self.replies.1 >= MAX_REPLIES_PER_SECOND {
            return false;
        }
        self.replies.1 += 1;
        true
    }

    /// Forget `device` (it was revoked).
    pub fn forget(&mut self, device: &str) {
        self.samples.remove(device);
        self.waiting.remove(device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_symmetric_exchange_measures_the_true_offset() {
        // The other clock is 30 s ahead; 4 ms each way, 2 ms to answer.
        let skew = 30_000 * MS;
        let t1 = 1_000_000 * MS;
        let t2 = t1 + 4 * MS + skew;
        let t3 = t2 + 2 * MS;
        let t4 = t1 + 10 * MS;
        let s = ClockSample::from_timestamps(t1, t2, t3, t4);
        assert_eq!(s.offset_ns, skew as i64);
        assert_eq!(s.rtt_ns, 8 * MS);
    }

    #[test]
    fn the_sample_with_the_smallest_round_trip_is_kept_until_it_is_old() {
        let mut c = Clocks::default();
        let at = 1_000_000 * MS;
        let sample = |offset_ms: i64, rtt_ms: u64, at| ClockSample {
            offset_ns: offset_ms * MS as i64,
            rtt_ns: rtt_ms * MS,
            at_unix_ns: at,
        };
        c.record("tv", sample(100, 10, at));
        c.record("tv", sample(50, 40, at + MS));
        assert_eq!(
            c.offset_ns("tv"),
            100 * MS as i64,
            "a worse sample is not kept"
        );
        c.record("tv", sample(90, 2, at + 2 * MS));
        assert_eq!(c.offset_ns("tv"), 90 * MS as i64, "a better one is");
        c.record("tv", sample(70, 40, at + SAMPLE_LIFETIME_NS + 3 * MS));
        assert_eq!(c.offset_ns("tv"), 70 * MS as i64, "an old one gives way");
        assert_eq!(c.remote_time("tv", at), at + 70 * MS);
        assert_eq!(c.remote_time("phone", at), at, "never measured: no offset");
    }

    #[test]
    fn an_offset_within_its_error_of_zero_is_read_as_zero() {
        let mut c = Clocks::default();
        let at = 1_000_000 * MS;
        c.record(
            "tv",
            ClockSample {
                offset_ns: -30_000,
                rtt_ns: 200_000,
                at_unix_ns: at,
            },
        );
        assert_eq!(c.offset_ns("tv"), 0, "30 µs with ±100 µs: the clocks agree");
        assert_eq!(c.sample("tv").unwrap().offset_ns, -30_000, "as measured");
        c.record(
            "tv",
            ClockSample {
                offset_ns: -30_000,
                rtt_ns: 40_000,
                at_unix_ns: at,
            },
        );
        assert_eq!(c.offset_ns("tv"), -30_000, "30 µs with ±20 µs: they do not");
    }

    #[test]
    fn only_a_waiting_probe_takes_a_reply() {
        let mut c = Clocks::default();
        let t1 = c.probing("tv", 1_000 * MS);
        assert!(
            c.replied("tv", t1 + 1, t1, t1, t1 + MS).is_none(),
            "not our t1"
        );
        assert!(
            c.replied("phone", t1, t1, t1, t1 + MS).is_none(),
            "not probed"
        );
        assert!(c.replied("tv", t1, t1, t1, t1 + MS).is_some());
        assert!(
            c.replied("tv", t1, t1, t1, t1 + MS).is_none(),
            "a replayed reply is ignored"
        );
    }

    #[test]
    fn a_probe_sent_while_another_waits_leaves_the_first_one_welcome_and_counted() {
        let mut c = Clocks::default();
        let first = c.probing("tv", 1_000 * MS);
        let second = c.probing("tv", 1_500 * MS);
        assert!(
            c.replied("tv", second, second, second, second + MS)
                .is_some()
        );
        assert!(c.is_waiting("tv"), "the first still waits");
        assert_eq!(c.oldest_waiting(), Some(first));
        assert_eq!(c.unanswered(first), vec!["tv".to_string()], "lost");
        assert!(!c.is_waiting("tv"));
        let (a, b) = (c.probing("tv", 3_000 * MS), c.probing("tv", 3_100 * MS));
        assert_eq!(c.unanswered(b).len(), 2, "each lost probe is named");
        assert!(
            c.replied("tv", a, a, a, a + MS).is_none(),
            "it waits no more"
        );
        for t in 0..20 {
            c.probing("tv", (4_000 + t) * MS);
        }
        assert_eq!(
            c.unanswered(u64::MAX).len(),
            MAX_WAITING,
            "a few wait at most"
        );
    }

    #[test]
    fn replies_are_bounded_per_second() {
        let mut c = Clocks::default();
        let now = 5_000 * MS * 1000;
        let given = (0..100).filter(|_| c.may_reply(now)).count();
        assert_eq!(given, MAX_REPLIES_PER_SECOND as usize);
        assert!(
            c.may_reply(now + 1_000 * MS),
            "the next second starts afresh"
        );
    }
}
