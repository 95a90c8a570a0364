//! The playback model: what plays (media, tracks, queue), where it is (the anchor), on what
//! (device), and the rules that decide whether a position is worth resuming.
//!
//! Everything here is plain data with no I/O; the wire contract serialises these types as they
//! are, so a field added here is a field on the wire (see `docs/PROTOCOL.md`).

use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Gives a fieldless enum its wire names: `ALL` (every variant, in declaration order),
/// `as_str` (the name serde writes, which `tests` below hold to) and `Display`.
macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_names;

/// One second in nanoseconds.
pub const SECOND_NS: u64 = 1_000_000_000;

/// What a device is, so that a handoff target can pick a rendition that suits it and a UI can
/// show the right icon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    Phone,
    Tablet,
    #[default]
    Desktop,
    Tv,
    Speaker,
    Car,
    Other,
}

wire_names!(DeviceClass {
    Phone => "phone",
    Tablet => "tablet",
    Desktop => "desktop",
    Tv => "tv",
    Speaker => "speaker",
    Car => "car",
    Other => "other",
});

impl FromStr for DeviceClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceClass::ALL
            .iter()
            .copied()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown device class '{s}' (expected one of: phone, tablet, desktop, tv, speaker, car, other)"
                )
            })
    }
}

/// A device taking part in an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Device {
    /// Stable identifier, created once per installation; also the MQTT topic segment.
    #[schemars(pattern(crate::patterns::ID))]
    pub id: String,
    /// Human-readable name shown in pickers ("Living room TV").
    #[schemars(length(max = 1024), pattern(crate::patterns::TEXT))]
    pub name: String,
    pub class: DeviceClass,
}

/// An audio or subtitle track, described by what it is rather than by its index, because
/// indices differ between containers, renditions and players.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Track {
    /// BCP 47 / ISO 639 language code as the stream tags it ("en", "fra").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 35), pattern(crate::patterns::TEXT))]
    pub language: Option<String>,
    /// Codec name as the stream describes it ("Vorbis", "Opus").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), pattern(crate::patterns::TEXT))]
    pub codec: Option<String>,
}

/// A piece of media: what is needed to find it again and to show it to a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Media {
    /// Identity that two devices agree on for the same media (see `media_id_from_uri`).
    #[schemars(length(min = 1, max = 4096), pattern(crate::patterns::TEXT))]
    pub id: String,
    /// Where the media can be loaded from, when it is addressable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096), pattern(crate::patterns::TEXT))]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), pattern(crate::patterns::TEXT))]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), pattern(crate::patterns::TEXT))]
    pub artist: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), pattern(crate::patterns::TEXT))]
    pub album: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096), pattern(crate::patterns::TEXT))]
    pub artwork_uri: Option<String>,
    /// Total length in nanoseconds, when known (live streams have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
    pub duration_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub audio_tracks: Vec<Track>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub subtitle_tracks: Vec<Track>,
    /// Other renditions for some classes of device (a lighter one for phones, say); a
    /// handoff target picks the one for its class, else `uri`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub alternates: Vec<Alternate>,
}

/// A rendition of a media for one class of device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Alternate {
    pub class: DeviceClass,
    #[schemars(length(max = 4096), pattern(crate::patterns::TEXT))]
    pub uri: String,
}

impl Media {
    /// The URI a device of `class` should load: its alternate, else the media's URI.
    pub fn uri_for(&self, class: DeviceClass) -> Option<&str> {
        self.alternates
            .iter()
            .find(|a| a.class == class)
            .map(|a| a.uri.as_str())
            .or(self.uri.as_deref())
    }

    /// Copy in the fields `update` has (a later tag list, a duration found later). Returns
    /// whether anything changed.
    pub fn merge(&mut self, update: &Media) -> bool {
        fn take<T: Clone + PartialEq>(into: &mut Option<T>, from: &Option<T>) -> bool {
            let changed = from.is_some() && into != from;
            if changed {
                into.clone_from(from);
            }
            changed
        }
        let mut changed = take(&mut self.uri, &update.uri);
        changed |= take(&mut self.title, &update.title);
        changed |= take(&mut self.artist, &update.artist);
        changed |= take(&mut self.album, &update.album);
        changed |= take(&mut self.artwork_uri, &update.artwork_uri);
        changed |= take(&mut self.duration_ns, &update.duration_ns);
        if !update.alternates.is_empty() && self.alternates != update.alternates {
            self.alternates.clone_from(&update.alternates);
            changed = true;
        }
        for (into, from) in [
            (&mut self.audio_tracks, &update.audio_tracks),
            (&mut self.subtitle_tracks, &update.subtitle_tracks),
        ] {
            if !from.is_empty() && into != from {
                into.clone_from(from);
                changed = true;
            }
        }
        changed
    }

    /// The title when there is one, else the last path segment of the URI, else the id.
    pub fn display_title(&self) -> &str {
        if let Some(t) = self.title.as_deref().filter(|t| !t.is_empty()) {
            return t;
        }
        if let Some(uri) = self.uri.as_deref() {
            let last = uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri);
            if !last.is_empty() {
                return last;
            }
        }
        &self.id
    }
}

/// Whether the anchor's position moves with the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlayState {
    Playing,
    Paused,
    /// Reached the end of the media; the position stays where it ended.
    Ended,
}

wire_names!(PlayState {
    Playing => "playing",
    Paused => "paused",
    Ended => "ended",
});

/// Where playback is, as a line through time: anyone computes the position at wall-clock
/// instant `t` as `position_ns + (t - at_unix_ns) * rate` while playing. A new anchor is needed
/// only when that prediction stops holding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Anchor {
    /// Media (stream) time in nanoseconds at the instant `at_unix_ns`.
    #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
    pub position_ns: u64,
    /// Wall-clock instant, nanoseconds since the Unix epoch, at which `position_ns` was true.
    #[schemars(range(max = crate::patterns::MAX_UNIX_NS))]
    pub at_unix_ns: u64,
    /// Playback rate; 1.0 is normal speed, negative plays backwards.
    #[schemars(range(min = -64.0, max = 64.0), extend("not" = {"const": 0}))]
    pub rate: f64,
    pub state: PlayState,
}

impl Anchor {
    /// The position at wall-clock instant `now_unix_ns`, clamped to `[0, duration]`.
    pub fn position_at(&self, now_unix_ns: u64, duration_ns: Option<u64>) -> u64 {
        let pos = if self.state == PlayState::Playing {
            let elapsed = now_unix_ns as i128 - self.at_unix_ns as i128;
            let moved = (elapsed as f64 * self.rate) as i128;
            (self.position_ns as i128 + moved).max(0) as u64
        } else {
            self.position_ns
        };
        match duration_ns {
            Some(d) => pos.min(d),
            None => pos,
        }
    }

    /// The same line re-expressed at another instant (useful to compare two anchors).
    pub fn rebased(&self, now_unix_ns: u64, duration_ns: Option<u64>) -> Anchor {
        Anchor {
            position_ns: self.position_at(now_unix_ns, duration_ns),
            at_unix_ns: now_unix_ns,
            ..*self
        }
    }
}

/// A short description of a queued item: enough to show it and to load it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QueueItem {
    #[schemars(length(max = 4096), pattern(crate::patterns::TEXT))]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096), pattern(crate::patterns::TEXT))]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), pattern(crate::patterns::TEXT))]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = crate::patterns::MAX_MEDIA_NS))]
    pub duration_ns: Option<u64>,
}

/// The rules that decide whether a position is worth coming back to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResumeRules {
    /// Positions before this are "not started": nothing to resume.
    pub min_position_ns: u64,
    /// For short media the "not started" threshold is at most this fraction of the duration
    /// (10 s of a 20 s clip is half of it).
    pub short_media_fraction: f64,
    /// At or beyond this fraction of the duration the media counts as finished.
    pub finished_fraction: f64,
}

impl Default for ResumeRules {
    fn default() -> Self {
        ResumeRules {
            min_position_ns: 10 * SECOND_NS,
            short_media_fraction: 0.05,
            finished_fraction: 0.95,
        }
    }
}

/// What the resume rules make of a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeVerdict {
    /// Too close to the start to be worth resuming.
    NotStarted,
    /// At the end, or close enough: start again from 0 next time.
    Finished,
    /// Resume here.
    Resume(u64),
}

impl ResumeRules {
    pub fn verdict(
        &self,
        position_ns: u64,
        duration_ns: Option<u64>,
        ended: bool,
    ) -> ResumeVerdict {
        if ended {
            return ResumeVerdict::Finished;
        }
        if let Some(d) = duration_ns.filter(|d| *d > 0)
            && position_ns as f64 >= d as f64 * self.finished_fraction
        {
            return ResumeVerdict::Finished;
        }
        let min = match duration_ns.filter(|d| *d > 0) {
            Some(d) => self
                .min_position_ns
                .min((d as f64 * self.short_media_fraction) as u64),
            None => self.min_position_ns,
        };
        if position_ns < min {
            return ResumeVerdict::NotStarted;
        }
        ResumeVerdict::Resume(position_ns)
    }
}

/// A media id two devices agree on for the same URI: scheme and host lower-cased, a `file`
/// URI reduced to its file name (two machines rarely share directory layouts), and the query
/// and fragment dropped for files. Network URIs keep their path and query, since those name
/// the resource.
pub fn media_id_from_uri(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(u) if u.scheme() == "file" => {
            let name = u
                .path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
                .unwrap_or_default();
            let name = percent_decode(&name);
            format!("file:{name}")
        }
        Ok(mut u) => {
            u.set_fragment(None);
            // Url already lower-cases scheme and host and removes default ports.
            u.to_string()
        }
        Err(_) => uri.trim().to_owned(),
    }
}

/// A media id from tags alone, for streams that carry no URI.
pub fn media_id_from_tags(title: &str, duration_ns: Option<u64>) -> String {
    let secs = duration_ns.map(|d| (d + SECOND_NS / 2) / SECOND_NS);
    match secs {
        Some(s) => format!("tags:{}:{s}", title.trim().to_lowercase()),
        None => format!("tags:{}", title.trim().to_lowercase()),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_extrapolates_while_playing_only() {
        let a = Anchor {
            position_ns: 5 * SECOND_NS,
            at_unix_ns: 1_000 * SECOND_NS,
            rate: 1.0,
            state: PlayState::Playing,
        };
        assert_eq!(a.position_at(1_002 * SECOND_NS, None), 7 * SECOND_NS);
        let fast = Anchor { rate: 2.0, ..a };
        assert_eq!(fast.position_at(1_002 * SECOND_NS, None), 9 * SECOND_NS);
        let paused = Anchor {
            state: PlayState::Paused,
            ..a
        };
        assert_eq!(paused.position_at(1_002 * SECOND_NS, None), 5 * SECOND_NS);
        assert_eq!(
            a.position_at(2_000 * SECOND_NS, Some(60 * SECOND_NS)),
            60 * SECOND_NS
        );
        let back = Anchor { rate: -1.0, ..a };
        assert_eq!(back.position_at(1_010 * SECOND_NS, None), 0);
    }

    #[test]
    fn resume_rules() {
        let r = ResumeRules::default();
        let film = Some(1000 * SECOND_NS);
        let verdict = |pos_s: f64, d: Option<u64>, ended| {
            r.verdict((pos_s * SECOND_NS as f64) as u64, d, ended)
        };
        assert_eq!(verdict(9.0, film, false), ResumeVerdict::NotStarted);
        assert_eq!(verdict(9.0, None, false), ResumeVerdict::NotStarted);
        assert_eq!(
            verdict(500.0, film, false),
            ResumeVerdict::Resume(500 * SECOND_NS)
        );
        assert_eq!(verdict(950.0, film, false), ResumeVerdict::Finished);
        assert_eq!(verdict(500.0, film, true), ResumeVerdict::Finished);
        assert_eq!(
            verdict(50.0, None, false),
            ResumeVerdict::Resume(50 * SECOND_NS)
        );
        // A 20 s clip: 5 s in is worth resuming (the threshold is 5 % of it, 1 s).
        let clip = Some(20 * SECOND_NS);
        assert_eq!(
            verdict(5.0, clip, false),
            ResumeVerdict::Resume(5 * SECOND_NS)
        );
        assert_eq!(verdict(0.5, clip, false), ResumeVerdict::NotStarted);
        assert_eq!(verdict(19.0, clip, false), ResumeVerdict::Finished);
    }

    #[test]
    fn media_ids_agree_across_devices() {
        assert_eq!(
            media_id_from_uri("file:///home/a/Videos/My%20Clip.ogg"),
            media_id_from_uri("file:///media/usb/My%20Clip.ogg")
        );
        assert_eq!(
            media_id_from_uri("file:///x/My%20Clip.ogg"),
            "file:My Clip.ogg"
        );
        assert_eq!(
            media_id_from_uri("HTTP://Example.COM:80/a/b.mp4#t=3"),
            "http://example.com/a/b.mp4"
        );
        assert_eq!(
            media_id_from_tags(" Big Buck Bunny ", Some(596_400_000_000)),
            "tags:big buck bunny:596"
        );
    }

    #[test]
    fn device_class_parses_case_insensitively() {
        assert_eq!("TV".parse::<DeviceClass>(), Ok(DeviceClass::Tv));
        assert!(
            "fridge"
                .parse::<DeviceClass>()
                .unwrap_err()
                .contains("phone")
        );
    }

    /// `as_str` is what serde writes, for every variant of every enum with wire names.
    #[test]
    fn wire_names_are_the_serde_names() {
        fn check<T: serde::Serialize + std::fmt::Display>(all: &[T]) {
            for v in all {
                assert_eq!(serde_json::to_value(v).unwrap(), v.to_string());
            }
        }
        check(DeviceClass::ALL);
        check(PlayState::ALL);
        check(crate::wire::HandoffFailure::ALL);
    }
}
