//! What the streaming thread keeps: the segment, the stream's identity and metadata, and
//! when it last reported. Only the streaming thread (and `start`/`stop`) touch it; the network
//! side never does, so the streaming thread never waits on it.

use continuity::engine::Observation;
use continuity::engine::gate::Decision;
use continuity::model::{Media, Track, media_id_from_tags, media_id_from_uri};
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

/// Report the position at least this often (in stream time) while buffers flow, so that the
/// engine can check it against its prediction.
pub const SAMPLE_EVERY_NS: u64 = 1_000_000_000;

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
