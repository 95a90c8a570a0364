//! Audio and subtitle tracks by language, when the element sits in a `playbin`.
//!
//! Indices differ between containers and renditions, so tracks travel as what they are (the
//! language and codec their tags give). In a playbin the element reads which tracks play
//! (`current-audio`, `current-text` and the `text` flag) and follows every change of them; on
//! a handoff it selects the languages the source had, when the media has them, else the
//! device's own preference (`audio-language`, `subtitle-language`). Elsewhere the application
//! selects tracks itself, from the languages `continuity-handoff-incoming` gives.

use continuity::model::Track;
use gst::glib;
use gst::prelude::*;

/// Whether `element` is a playbin (version 2, whose selection is by index).
fn is_playbin(element: &gst::Element) -> bool {
    [
        "current-audio",
        "current-text",
        "n-audio",
        "n-text",
        "flags",
    ]
    .iter()
    .all(|p| element.find_property(p).is_some())
}

/// The playbin that holds `element` (as its video or audio filter), if one does.
pub fn playbin_of(element: &gst::Element) -> Option<gst::Element> {
    let mut at = element.parent()?.downcast::<gst::Element>().ok()?;
    loop {
        if is_playbin(&at) {
            return Some(at);
        }
        at = at.parent()?.downcast::<gst::Element>().ok()?;
    }
}

/// What plays and what could: the media's tracks and the selected ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub audio_tracks: Vec<Track>,
    pub subtitle_tracks: Vec<Track>,
    pub audio: Option<Track>,
    /// `None` when subtitles are off.
    pub subtitle: Option<Track>,
}

/// The languages to select.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// An audio language; `None` keeps the playbin's choice.
    pub audio: Option<String>,
    pub subtitle: Subtitles,
}

impl Wanted {
    /// What another device played (a handoff's source, a resume's): its languages, and
    /// subtitles off when they were off there. A device that tells no audio track tells no
    /// tracks at all: nothing to follow then.
    pub fn as_there(audio: &Option<Track>, subtitle: &Option<Track>) -> Wanted {
        let lang = |t: &Option<Track>| t.as_ref().and_then(|t| t.language.clone());
        Wanted {
            audio: lang(audio),
            subtitle: match (subtitle, lang(subtitle)) {
                (None, _) if audio.is_none() => Subtitles::Keep,
                (None, _) => Subtitles::Off,
                (Some(_), Some(l)) => Subtitles::In(l),
                (Some(_), None) => Subtitles::Keep,
            },
        }
    }
}

/// What to do with subtitles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Subtitles {
    /// Leave them as the playbin has them.
    #[default]
    Keep,
    Off,
    /// On, in this language.
    In(String),
}

impl Subtitles {
    /// The `subtitle-language` setting: empty keeps, `none` (or `off`) turns them off.
    pub fn from_setting(value: Option<&str>) -> Subtitles {
        match value.map(str::trim) {
            None | Some("") => Subtitles::Keep,
            Some(v) if v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("off") => {
                Subtitles::Off
            }
            Some(v) => Subtitles::In(v.to_owned()),
        }
    }
}

fn track(tags: Option<gst::TagList>, codec: fn(&gst::TagListRef) -> Option<String>) -> Track {
    let tags = tags.as_ref();
    Track {
        language: tags.and_then(|t| {
            t.get::<gst::tags::LanguageCode>()
                .map(|v| v.get().to_owned())
                .filter(|l| !l.is_empty())
        }),
        codec: tags.and_then(|t| codec(t)),
    }
}

fn tracks(playbin: &gst::Element, kind: Kind) -> Vec<Track> {
    let n: i32 = playbin.property(kind.count());
    (0..n)
        .map(|i| {
            let tags = playbin.emit_by_name::<Option<gst::TagList>>(kind.tags_signal(), &[&i]);
            track(tags, kind.codec())
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Kind {
    Audio,
    Text,
}

impl Kind {
    fn count(self) -> &'static str {
        match self {
            Kind::Audio => "n-audio",
            Kind::Text => "n-text",
        }
    }
    fn current(self) -> &'static str {
        match self {
            Kind::Audio => "current-audio",
            Kind::Text => "current-text",
        }
    }
    fn tags_signal(self) -> &'static str {
        match self {
            Kind::Audio => "get-audio-tags",
            Kind::Text => "get-text-tags",
        }
    }
    fn codec(self) -> fn(&gst::TagListRef) -> Option<String> {
        match self {
            Kind::Audio => |t| t.get::<gst::tags::AudioCodec>().map(|v| v.get().to_owned()),
            Kind::Text => |t| {
                t.get::<gst::tags::SubtitleCodec>()
                    .map(|v| v.get().to_owned())
            },
        }
    }
}

fn text_flag(playbin: &gst::Element) -> Option<bool> {
    let flags = playbin.property_value("flags");
    let class = glib::FlagsClass::with_type(flags.type_())?;
    Some(class.is_set_by_nick(&flags, "text"))
}

fn set_text_flag(playbin: &gst::Element, on: bool) -> bool {
    let flags = playbin.property_value("flags");
    let Some(class) = glib::FlagsClass::with_type(flags.type_()) else {
        return false;
    };
    let Some(builder) = class.builder_with_value(flags) else {
        return false;
    };
    let builder = if on {
        builder.set_by_nick("text")
    } else {
        builder.unset_by_nick("text")
    };
    match builder.build() {
        Some(v) => {
            playbin.set_property_from_value("flags", &v);
            true
        }
        None => false,
    }
}

/// Read the playbin's tracks and its selection.
pub fn read(playbin: &gst::Element) -> Selection {
    let audio_tracks = tracks(playbin, Kind::Audio);
    let subtitle_tracks = tracks(playbin, Kind::Text);
    let pick = |list: &[Track], kind: Kind| {
        let i: i32 = playbin.property(kind.current());
        usize::try_from(i).ok().and_then(|i| list.get(i).cloned())
    };
    let audio = pick(&audio_tracks, Kind::Audio);
    let subtitle = if text_flag(playbin).unwrap_or(false) {
        pick(&subtitle_tracks, Kind::Text)
    } else {
        None
    };
    Selection {
        audio_tracks,
        subtitle_tracks,
        audio,
        subtitle,
    }
}

/// The index of the track in `language` (the first such): exact, else the same primary
/// language ("en" for "en-GB", "fre" and "fra" only when tagged alike).
fn find(list: &[Track], language: &str) -> Option<usize> {
    let primary = |l: &str| l.split(['-', '_']).next().unwrap_or(l).to_ascii_lowercase();
    let lang = |t: &Track| t.language.clone().unwrap_or_default();
    list.iter()
        .position(|t| lang(t).eq_ignore_ascii_case(language))
        .or_else(|| {
            list.iter()
                .position(|t| primary(&lang(t)) == primary(language))
        })
}

/// What [`select`] did, for the application's message: the languages that play now, and
/// those asked for that the media does not have.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Selected {
    pub missing_audio: Option<String>,
    pub missing_subtitle: Option<String>,
}

/// Select the wanted languages in the playbin, where the media has them; what it does not
/// have keeps the playbin's own choice.
pub fn select(playbin: &gst::Element, wanted: &Wanted) -> Selected {
    let mut done = Selected::default();
    if let Some(lang) = &wanted.audio {
        match find(&tracks(playbin, Kind::Audio), lang) {
            Some(i) => {
                let current: i32 = playbin.property(Kind::Audio.current());
                if usize::try_from(current).ok() != Some(i) {
                    playbin.set_property(Kind::Audio.current(), i as i32);
                }
            }
            None => done.missing_audio = Some(lang.clone()),
        }
    }
    match &wanted.subtitle {
        Subtitles::Keep => {}
        Subtitles::In(lang) => match find(&tracks(playbin, Kind::Text), lang) {
            Some(i) => {
                let current: i32 = playbin.property(Kind::Text.current());
                if usize::try_from(current).ok() != Some(i) {
                    playbin.set_property(Kind::Text.current(), i as i32);
                }
                if text_flag(playbin) == Some(false) {
                    set_text_flag(playbin, true);
                }
            }
            None => done.missing_subtitle = Some(lang.clone()),
        },
        Subtitles::Off => {
            if text_flag(playbin) == Some(true) {
                set_text_flag(playbin, false);
            }
        }
    }
    done
}

/// The playbin's signals that say its selection or its tracks changed.
pub const CHANGES: [&str; 5] = [
    "notify::current-audio",
    "notify::current-text",
    "notify::flags",
    "audio-tags-changed",
    "text-tags-changed",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn t(l: &str) -> Track {
        Track {
            language: Some(l.into()),
            codec: None,
        }
    }

    #[test]
    fn a_language_is_found_exactly_else_by_its_primary_subtag() {
        let list = [t("en"), t("fr-CA"), t("de")];
        assert_eq!(find(&list, "de"), Some(2));
        assert_eq!(find(&list, "FR-ca"), Some(1));
        assert_eq!(find(&list, "fr"), Some(1));
        assert_eq!(find(&list, "en-GB"), Some(0));
        assert_eq!(find(&list, "it"), None);
        assert_eq!(find(&[], "en"), None);
    }
}
