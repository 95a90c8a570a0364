//! What the streaming thread keeps: the segment, the stream's identity and metadata, and
//! when it last reported. Only the streaming thread (and `start`/`stop`) touch it; the network
//! side never does, so the streaming thread never waits on it.

use continuity::engine::Observation;
use continuity::engine::gate::Decision;
use continuity::model::{Media, PlayState, Track, media_id_from_tags, media_id_from_uri};
use gst::prelude::*;
use tokio::sync::mpsc;

/// What the element tells its pump.
#[derive(Debug)]
pub enum ToPump {
    /// An observation that holds at a wall-clock instant.
    Observe(u64, Box<Observation>),
    /// New media started and the gate asks where to resume it (answer for `generation`).
    Lookup { media_id: String, generation: u64 },
    /// The gate decided something the streaming thread cannot carry out (a seek).
    Decided(Decision),
    /// The element goes away: say goodbye (offline, everything flushed) in the background.
    Stop,
}

/// A render-time correction beyond this is not a pipeline that renders in time (a sink
/// with sync=false, say): use the arrival time instead.
const MAX_RENDER_AHEAD_NS: i128 = 2_000_000_000;

/// Report the position at least this often (in stream time) while buffers flow, so that the
/// engine can check it against its prediction.
pub const SAMPLE_EVERY_NS: u64 = 1_000_000_000;

/// How many samples (one a second) ask for the duration again after the media started.
const DURATION_CHECKS: u32 = 10;
/// A duration that differs from the known one by more than this replaces it.
const DURATION_CHANGE_NS: u64 = 100_000_000;

/// What kind of stream flows through the element, from its caps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Unknown,
    Video,
    Audio,
    Text,
}

impl Kind {
    pub fn from_caps(caps: &gst::CapsRef) -> Kind {
        let Some(s) = caps.structure(0) else {
            return Kind::Unknown;
        };
        let name = s.name();
        if name.starts_with("video/") || name.starts_with("image/") {
            Kind::Video
        } else if name.starts_with("audio/") {
            Kind::Audio
        } else if name.starts_with("text/") || name.starts_with("subpicture/") {
            Kind::Text
        } else {
            Kind::Unknown
        }
    }
}

#[derive(Debug, Default)]
pub struct Stream {
    /// Where observations go; `None` before `start` and after `stop`.
    pub tx: Option<mpsc::Sender<ToPump>>,
    pub segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// A segment arrived: the next buffer is a discontinuity to report.
    pub segment_pending: bool,
    /// A stream started: the next buffer fixes the media's identity.
    pub new_stream: bool,
    pub stream_id: Option<String>,
    pub kind: Kind,
    /// What the tags and queries said about the current media (its `id` is set once known).
    pub media: Media,
    /// The media was announced to the engine.
    pub announced: bool,
    /// Stream time of the last position reported.
    pub last_sample: Option<u64>,
    /// Stream time of the end of the last buffer.
    pub last_end: Option<u64>,
    /// Rate of the current segment (rate × applied rate).
    pub rate: f64,
    /// End of stream reached: state changes until the next segment say nothing new.
    pub ended: bool,
    /// Upstream is live: it has no duration to ask for.
    pub live: bool,
    /// Times the duration was asked again since the media started: a demuxer's first answer
    /// may be an estimate (an Ogg file's said 0.64 s of a 30 s film), so it is asked with the
    /// first samples too, and a different answer replaces it.
    pub duration_asked: u32,
}

/// What upstream says of the media when it starts (asked before the stream lock is taken).
#[derive(Debug, Default)]
pub struct Upstream {
    pub uri: Option<String>,
    pub duration_ns: Option<u64>,
    pub live: bool,
}

impl Stream {
    /// Send to the network side without ever blocking: a full queue drops the message (the
    /// next sample or discontinuity corrects the picture).
    pub fn send(&self, msg: ToPump) -> bool {
        match &self.tx {
            Some(tx) => tx.try_send(msg).is_ok(),
            None => false,
        }
    }

    pub fn observe(&self, at_unix_ns: u64, obs: Observation) -> bool {
        self.send(ToPump::Observe(at_unix_ns, Box::new(obs)))
    }

    /// Forget the previous stream: a new one starts.
    pub fn reset_media(&mut self, stream_id: Option<String>) {
        self.new_stream = true;
        self.stream_id = stream_id;
        self.media = Media::default();
        self.announced = false;
        self.last_sample = None;
        self.last_end = None;
        self.ended = false;
        self.duration_asked = 0;
    }

    /// Take in a tag list. Returns the fields it changed, as a media update, if any.
    pub fn apply_tags(&mut self, tags: &gst::TagListRef) -> Option<Media> {
        use gst::tags;
        let mut update = Media::default();
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        if let Some(v) = tags.get::<tags::Title>() {
            update.title = text(v.get());
        }
        if let Some(v) = tags.get::<tags::Artist>() {
            update.artist = text(v.get());
        }
        if let Some(v) = tags.get::<tags::Album>() {
            update.album = text(v.get());
        }
        if let Some(v) = tags.get::<tags::Duration>() {
            update.duration_ns = Some(v.get().nseconds()).filter(|d| *d > 0);
        }
        let language = tags.get::<tags::LanguageCode>().and_then(|v| text(v.get()));
        let track = |codec: Option<String>| Track {
            language: language.clone(),
            codec,
        };
        match self.kind {
            Kind::Audio => {
                let codec = tags.get::<tags::AudioCodec>().and_then(|v| text(v.get()));
                if language.is_some() || codec.is_some() {
                    update.audio_tracks = vec![track(codec)];
                }
            }
            Kind::Text => {
                let codec = tags
                    .get::<tags::SubtitleCodec>()
                    .and_then(|v| text(v.get()));
                if language.is_some() || codec.is_some() {
                    update.subtitle_tracks = vec![track(codec)];
                }
            }
            Kind::Video | Kind::Unknown => {}
        }
        self.media.merge(&update).then_some(update)
    }

    /// The first buffer of a new stream: fix the media's identity (`media_id_property` when
    /// set) and announce it to the engine. `None`: a stream without identity, not tracked.
    pub fn start_media(
        &mut self,
        up: Upstream,
        media_id_property: Option<&str>,
        now: u64,
    ) -> Option<String> {
        self.new_stream = false;
        self.live = up.live;
        if up.uri.is_some() {
            self.media.uri = up.uri;
        }
        if self.media.duration_ns.is_none() {
            self.media.duration_ns = up.duration_ns;
        }
        let id = self.identity(media_id_property)?;
        self.media.id = id.clone();
        self.announced = true;
        self.observe(now, Observation::MediaStarted(self.media.clone()));
        Some(id)
    }

    /// Whether to ask upstream for the duration (demuxers often learn it after the first
    /// buffers, or correct a first estimate; live sources have none).
    pub fn wants_duration(&self) -> bool {
        !self.live && (self.media.duration_ns.is_none() || self.duration_asked < DURATION_CHECKS)
    }

    /// Upstream said the duration: tell the engine.
    pub fn take_duration(&mut self, duration_ns: Option<u64>, now: u64) {
        self.duration_asked = self.duration_asked.saturating_add(1);
        let Some(d) = duration_ns.filter(|d| {
            self.media
                .duration_ns
                .is_none_or(|known| known.abs_diff(*d) > DURATION_CHANGE_NS)
        }) else {
            return;
        };
        self.media.duration_ns = Some(d);
        if self.announced {
            let update = Media {
                duration_ns: Some(d),
                ..Default::default()
            };
            self.observe(now, Observation::MediaUpdated(update));
        }
    }

    /// The first buffer of a segment at stream time `pos`: a discontinuity. It renders as
    /// soon as the sinks preroll (and after a flushing seek the pipeline's base time is not
    /// yet the new one), so it is reported at `now`.
    pub fn segment_started(&mut self, pos: u64, playing: bool, now: u64) {
        self.segment_pending = false;
        self.last_sample = Some(pos);
        let state = if playing {
            PlayState::Playing
        } else {
            PlayState::Paused
        };
        let rate = self.rate;
        self.observe(
            now,
            Observation::Playback {
                position_ns: pos,
                state,
                rate,
            },
        );
        // A handoff target's preroll is done here (ignored unless one is awaited).
        self.observe(now, Observation::Prerolled { position_ns: pos });
    }

    /// The pipeline played or paused at `position_ns`. After the end of stream, pausing or
    /// stopping does not move the position.
    pub fn playback(&self, position_ns: u64, state: PlayState, now: u64) {
        if !self.announced || self.ended {
            return;
        }
        let rate = self.rate;
        self.observe(
            now,
            Observation::Playback {
                position_ns,
                state,
                rate,
            },
        );
    }

    /// A new segment: where stream time comes from, at which rate.
    pub fn on_segment(&mut self, segment: &gst::Segment) {
        match segment.downcast_ref::<gst::ClockTime>() {
            Some(seg) => {
                self.ended = false;
                self.rate = seg.rate() * seg.applied_rate();
                self.segment = Some(seg.clone());
                self.segment_pending = true;
            }
            None => self.segment = None,
        }
    }

    /// A buffer's stream time, the stream time of its end, and its PTS.
    pub fn stream_times(&self, buf: &gst::BufferRef) -> Option<(u64, u64, gst::ClockTime)> {
        let (seg, pts) = (self.segment.as_ref()?, buf.pts()?);
        let t = seg.to_stream_time(pts)?;
        let end = buf
            .duration()
            .and_then(|d| seg.to_stream_time(pts + d))
            .unwrap_or(t);
        Some((t.nseconds(), end.nseconds(), pts))
    }

    /// The wall-clock instant (`now` by the wall clock) at which the buffer with `pts` is
    /// rendered: now, corrected by how far ahead of the pipeline clock it travels.
    pub fn render_wall(
        &self,
        now: u64,
        clock: Option<gst::Clock>,
        base: Option<gst::ClockTime>,
        pts: gst::ClockTime,
    ) -> u64 {
        let (Some(seg), Some(clock), Some(base)) = (self.segment.as_ref(), clock, base) else {
            return now;
        };
        let Some(running) = seg.to_running_time(pts) else {
            return now;
        };
        let ahead = (base + running).nseconds() as i128 - clock.time().nseconds() as i128;
        if ahead.abs() > MAX_RENDER_AHEAD_NS {
            return now;
        }
        (now as i128 + ahead).max(0) as u64
    }

    /// Take in the tracks of a stream collection (decodebin3, playbin3).
    pub fn apply_collection(&mut self, collection: &gst::StreamCollection) -> Option<Media> {
        let mut update = Media::default();
        for stream in collection.iter() {
            let tags = stream.tags();
            let get = |f: fn(&gst::TagListRef) -> Option<String>| tags.as_ref().and_then(|t| f(t));
            let track = Track {
                language: get(|t| {
                    t.get::<gst::tags::LanguageCode>()
                        .map(|v| v.get().to_owned())
                }),
                codec: get(|t| {
                    t.get::<gst::tags::AudioCodec>()
                        .map(|v| v.get().to_owned())
                        .or_else(|| {
                            t.get::<gst::tags::SubtitleCodec>()
                                .map(|v| v.get().to_owned())
                        })
                }),
            };
            let st = stream.stream_type();
            if st.contains(gst::StreamType::AUDIO) {
                update.audio_tracks.push(track);
            } else if st.contains(gst::StreamType::TEXT) {
                update.subtitle_tracks.push(track);
            }
        }
        self.media.merge(&update).then_some(update)
    }

    /// The media's identity: the `media-id` property, else the normalised URI, else the tags
    /// (title and duration), else the stream id.
    pub fn identity(&self, media_id_property: Option<&str>) -> Option<String> {
        if let Some(id) = media_id_property.filter(|s| !s.is_empty()) {
            return Some(id.to_owned());
        }
        if let Some(uri) = self.media.uri.as_deref() {
            return Some(media_id_from_uri(uri));
        }
        if let Some(title) = self.media.title.as_deref() {
            return Some(media_id_from_tags(title, self.media.duration_ns));
        }
        self.stream_id.as_ref().map(|s| format!("stream:{s}"))
    }
}
