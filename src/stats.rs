//! Handoff analytics, computed from the events a device kept (its own and those of the
//! account's other devices that it received): how many handoffs succeed, how long they take
//! and how far off they land, why they fail, where people give up, and how they move between
//! devices. Nothing leaves the account: each device computes them from its own store.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::wire::{Event, EventName, HandoffMode, HandoffTrigger};

/// A session stopped this soon after a handoff brought it counts as a drop-off.
pub const DROP_OFF_NS: u64 = 60_000_000_000;

/// A pause on one device and a start of the same media on another within this time count
/// as one person continuing there.
pub const CONTINUE_WITHIN_NS: u64 = 24 * 3600 * 1_000_000_000;

/// A source's pause this close to a handoff it gave is that handoff's.
const HANDOFF_PAUSE_NS: u64 = 5_000_000_000;

/// Percentiles of a set of values (ms), nearest rank.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let at = |p: f64| -> Option<f64> {
            if values.is_empty() {
                return None;
            }
            let rank = (p * values.len() as f64).ceil().max(1.0) as usize;
            Some(values[rank.min(values.len()) - 1])
        };
        Spread {
            count: values.len(),
            min: values.first().copied(),
            p50: at(0.5),
            p95: at(0.95),
            max: values.last().copied(),
        }
    }
}

/// One handoff as its events tell it (the target's end event, or the initiator's when the
/// target never answered).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handoff {
    pub id: String,
    pub at_unix_ns: u64,
    pub source: String,
    pub target: String,
    pub source_class: Option<String>,
    pub target_class: Option<String>,
    pub mode: HandoffMode,
    pub trigger: HandoffTrigger,
    /// `None` when it succeeded.
    pub failure: Option<String>,
    pub latency_ms: Option<f64>,
    pub position_error_ms: Option<f64>,
}

/// Everything `continuity stats` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub since_unix_ns: u64,
    pub until_unix_ns: u64,
    /// Events counted, and of how many devices.
    pub events: usize,
    pub devices: usize,
    pub handoffs: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// `succeeded / handoffs`; `None` without handoffs.
    pub success_rate: Option<f64>,
    /// Request (reaching the target) to the target playing.
    pub latency_ms: Spread,
    /// |target's first position − the source's at that instant|.
    pub position_error_ms: Spread,
    /// Failed handoffs by reason.
    pub failures: BTreeMap<String, usize>,
    /// Handoffs by how they were asked for: `push` or `pull`, `manual` or `automatic`.
    pub by_mode: BTreeMap<String, usize>,
    pub by_trigger: BTreeMap<String, usize>,
    pub drop_off: DropOff,
    /// Successful handoffs from one device class to another: `{"phone": {"tv": 3}}`.
    pub transitions_by_class: BTreeMap<String, BTreeMap<String, usize>>,
    /// The same by device id.
    pub transitions_by_device: BTreeMap<String, BTreeMap<String, usize>>,
    /// Handoffs (all) by the hour of the day they happened, UTC: 24 counts.
    pub by_hour_utc: Vec<usize>,
    /// From a pause (or stop) on one device to the same media playing on another, when
    /// that was not a handoff (the person started it there): seconds.
    pub time_to_continue_s: Spread,
    /// The handoffs themselves, oldest first.
    pub list: Vec<Handoff>,
}

/// Where people give up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropOff {
    /// Successful handoffs whose session the target stopped within 60 s.
    pub stopped_soon_after_handoff: usize,
    /// Of the successful handoffs.
    pub stopped_soon_rate: Option<f64>,
    pub resume_offers: usize,
    pub resume_declined: usize,
    pub resume_taken: usize,
    /// Declined offers of all offers.
    pub resume_declined_rate: Option<f64>,
}

fn rate(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn ms(ns: i128) -> f64 {
    ns as f64 / 1e6
}

/// The analytics of `events` (any order, duplicates allowed) between `since` and `until`.
pub fn compute(events: &[Event], since_unix_ns: u64, until_unix_ns: u64) -> Stats {
    let mut events: Vec<&Event> = events
        .iter()
        .filter(|e| (since_unix_ns..=until_unix_ns).contains(&e.at_unix_ns))
        .collect();
    events.sort_by_key(|e| (e.at_unix_ns, e.device.clone()));
    let mut seen = BTreeSet::new();
    events.retain(|e| seen.insert((e.device.clone(), e.key())));
    // Helpers (`<device>~<name>`: the command line's transfer) are their device's, not more
    // devices of the account.
    let devices: BTreeSet<&str> = events
        .iter()
        .map(|e| e.device.split('~').next().unwrap_or(&e.device))
        .collect();

    // One entry per handoff id: a completion wins over a failure (an initiator that gave up
    // before the target's answer came), and the first of each kind counts.
    let mut handoffs: BTreeMap<String, Handoff> = BTreeMap::new();
    for e in &events {
        let Some(h) = &e.handoff else { continue };
        let failure = match e.name {
            EventName::HandoffCompleted => None,
            EventName::HandoffFailed => Some(h.failure.map_or("unknown", |f| f.as_str())),
            _ => continue,
        };
        let entry = Handoff {
            id: h.id.clone(),
            at_unix_ns: e.at_unix_ns,
            source: h.source.clone(),
            target: h.target.clone(),
            source_class: h.source_class.map(|c| c.as_str().to_owned()),
            target_class: h.target_class.map(|c| c.as_str().to_owned()),
            mode: h.mode,
            trigger: h.trigger,
            failure: failure.map(str::to_owned),
            latency_ms: h.latency_ns.map(|n| ms(n.into())),
            position_error_ms: h.position_error_ns.map(|n| ms(n.into())),
        };
        match handoffs.get(&h.id) {
            Some(held) if held.failure.is_none() || entry.failure.is_some() => {}
            _ => {
                handoffs.insert(h.id.clone(), entry);
            }
        }
    }
    let mut list: Vec<Handoff> = handoffs.into_values().collect();
    list.sort_by_key(|h| h.at_unix_ns);
    let ok: Vec<&Handoff> = list.iter().filter(|h| h.failure.is_none()).collect();

    let mut failures = BTreeMap::new();
    let mut by_mode = BTreeMap::new();
    let mut by_trigger = BTreeMap::new();
    let mut by_hour_utc = vec![0; 24];
    for h in &list {
        if let Some(f) = &h.failure {
            *failures.entry(f.clone()).or_insert(0) += 1;
        }
        let mode = match h.mode {
            HandoffMode::Push => "push",
            HandoffMode::Pull => "pull",
        };
        let trigger = match h.trigger {
            HandoffTrigger::Manual => "manual",
            HandoffTrigger::Automatic => "automatic",
        };
        *by_mode.entry(mode.to_owned()).or_insert(0) += 1;
        *by_trigger.entry(trigger.to_owned()).or_insert(0) += 1;
        by_hour_utc[(h.at_unix_ns / 3_600_000_000_000 % 24) as usize] += 1;
    }
    let mut transitions_by_class: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut transitions_by_device: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for h in &ok {
        let class = |c: &Option<String>| c.clone().unwrap_or_else(|| "unknown".into());
        *transitions_by_class
            .entry(class(&h.source_class))
            .or_default()
            .entry(class(&h.target_class))
            .or_insert(0) += 1;
        *transitions_by_device
            .entry(h.source.clone())
            .or_default()
            .entry(h.target.clone())
            .or_insert(0) += 1;
    }

    let stopped_soon = ok
        .iter()
        .filter(|h| {
            // A media that played to its end is no drop-off.
            let ended = |until: u64| {
                events.iter().any(|e| {
                    e.device == h.target
                        && e.name == EventName::Ended
                        && (h.at_unix_ns..=until).contains(&e.at_unix_ns)
                })
            };
            events.iter().any(|e| {
                e.device == h.target
                    && e.name == EventName::Stopped
                    && e.at_unix_ns >= h.at_unix_ns
                    && e.at_unix_ns - h.at_unix_ns <= DROP_OFF_NS
                    && !ended(e.at_unix_ns)
            })
        })
        .count();
    let count = |name: EventName| events.iter().filter(|e| e.name == name).count();
    let (offers, declined) = (
        count(EventName::ResumeOffered),
        count(EventName::ResumeDeclined),
    );

    // A pause or stop, then the same media started on another device; a source's pause at
    // a handoff's switch is the handoff, not a person continuing.
    let mut continues = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if !matches!(e.name, EventName::Paused | EventName::Stopped)
            || ok.iter().any(|h| {
                h.source == e.device && h.at_unix_ns.abs_diff(e.at_unix_ns) <= HANDOFF_PAUSE_NS
            })
        {
            continue;
        }
        let Some(media) = &e.media_id else { continue };
        let next = events[i + 1..].iter().find(|n| {
            n.media_id.as_ref() == Some(media)
                && matches!(
                    n.name,
                    EventName::Started | EventName::Resumed | EventName::ResumeTaken
                )
                && n.at_unix_ns - e.at_unix_ns <= CONTINUE_WITHIN_NS
        });
        if let Some(n) = next
            && n.device != e.device
        {
            continues.push((n.at_unix_ns - e.at_unix_ns) as f64 / 1e9);
        }
    }

    Stats {
        since_unix_ns,
        until_unix_ns,
        events: events.len(),
        devices: devices.len(),
        handoffs: list.len(),
        succeeded: ok.len(),
        failed: list.len() - ok.len(),
        success_rate: rate(ok.len(), list.len()),
        latency_ms: Spread::of(ok.iter().filter_map(|h| h.latency_ms).collect()),
        position_error_ms: Spread::of(
            ok.iter()
                .filter_map(|h| h.position_error_ms.map(f64::abs))
                .collect(),
        ),
        failures,
        by_mode,
        by_trigger,
        drop_off: DropOff {
            stopped_soon_after_handoff: stopped_soon,
            stopped_soon_rate: rate(stopped_soon, ok.len()),
            resume_offers: offers,
            resume_declined: declined,
            resume_taken: count(EventName::ResumeTaken),
            resume_declined_rate: rate(declined, offers),
        },
        transitions_by_class,
        transitions_by_device,
        by_hour_utc,
        time_to_continue_s: Spread::of(continues),
        list,
    }
}
