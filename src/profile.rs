//! How a device plays what is handed to it: its class's defaults, overridden in the device's
//! own `profile` file (in its config dir) and then on the command line.
//!
//! | class | video | subtitles |
//! |---|---|---|
//! | phone, tablet, desktop, tv, other | decoded | as the source had them |
//! | speaker, car | not decoded (audio only) | none |
//!
//! Every class takes its own rendition when the media has per-class alternates
//! ([`crate::model::Media::uri_for`]), and keeps its own volume: a handoff never carries
//! the volume over.
//!
//! The file holds `key = value` lines (`#` starts a comment):
//!
//! ```text
//! video = off              # on | off
//! audio-language = fr      # preferred audio language when media starts here
//! subtitle-language = en   # preferred subtitles, or none
//! ```

use std::path::{Path, PathBuf};

use crate::model::DeviceClass;

/// The file in the config dir.
pub const FILE: &str = "profile";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Decode and show video; `false` plays audio only.
    pub video: bool,
    /// The audio language to select when media starts here (a handoff brings its own).
    pub audio_language: Option<String>,
    /// Subtitles to show when media starts here: a language, or `none`.
    pub subtitle_language: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    #[error("{path}:{line}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

impl Profile {
    /// The class's defaults.
    pub fn for_class(class: DeviceClass) -> Profile {
        Profile {
            video: !matches!(class, DeviceClass::Speaker | DeviceClass::Car),
            audio_language: None,
            subtitle_language: None,
        }
    }

    /// The class's defaults with `<dir>/profile` applied, when there is one.
    pub fn load(class: DeviceClass, dir: &Path) -> Result<Profile, ProfileError> {
        let path = dir.join(FILE);
        let mut profile = Profile::for_class(class);
        if !dir.is_dir() {
            // No profile yet (a config dir that cannot be made is the player's error).
            return Ok(profile);
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => profile.apply(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ProfileError::Unreadable {
                    path,
                    reason: e.to_string(),
                });
            }
        }
        Ok(profile)
    }

    /// Apply a profile file's lines; the first bad line is the error, and nothing of the
    /// file is taken then.
    pub fn apply(&mut self, text: &str, path: &Path) -> Result<(), ProfileError> {
        let mut next = self.clone();
        for (i, raw) in text.lines().enumerate() {
            let invalid = |reason: String| ProfileError::Invalid {
                path: path.to_owned(),
                line: i + 1,
                reason,
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(invalid(format!("'{line}' is not key = value")));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "video" => {
                    next.video = match value {
                        "on" | "true" | "yes" => true,
                        "off" | "false" | "no" => false,
                        v => return Err(invalid(format!("video = '{v}': on or off"))),
                    }
                }
                "audio-language" => next.audio_language = Some(language(value, &invalid)?),
                "subtitle-language" => {
                    next.subtitle_language = Some(if value.eq_ignore_ascii_case("none") {
                        "none".to_owned()
                    } else {
                        language(value, &invalid)?
                    })
                }
                k => {
                    return Err(invalid(format!(
                        "unknown key '{k}' (video, audio-language, subtitle-language)"
                    )));
                }
            }
        }
        *self = next;
        Ok(())
    }
}

/// A language tag as streams carry them: letters, digits and '-', 2 to 35 characters.
fn language(value: &str, invalid: &dyn Fn(String) -> ProfileError) -> Result<String, ProfileError> {
    let ok = (2..=35).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(format!(
            "'{value}' is not a language tag (ISO 639 or BCP 47, e.g. fr or pt-BR)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speakers_and_cars_play_audio_only_by_default() {
        for class in [DeviceClass::Speaker, DeviceClass::Car] {
            assert!(!Profile::for_class(class).video, "{class:?}");
        }
        for class in [DeviceClass::Phone, DeviceClass::Tv, DeviceClass::Desktop] {
            assert!(Profile::for_class(class).video, "{class:?}");
        }
    }

    #[test]
    fn a_profile_file_overrides_the_class_and_a_bad_line_changes_nothing() {
        let path = Path::new("/dev/null/profile");
        let mut p = Profile::for_class(DeviceClass::Tv);
        p.apply(
            "# the kitchen TV\nvideo = off\naudio-language = fr # French\n\nsubtitle-language=none\n",
            path,
        )
        .unwrap();
        assert!(!p.video);
        assert_eq!(p.audio_language.as_deref(), Some("fr"));
        assert_eq!(p.subtitle_language.as_deref(), Some("none"));

        let before = Profile::for_class(DeviceClass::Tv);
        for (text, line, says) in [
            ("video = maybe", 1, "on or off"),
            ("audio-language = fr\nvolume = 3", 2, "unknown key 'volume'"),
            ("\n\nsubtitles", 3, "not key = value"),
            ("audio-language = f r", 1, "not a language tag"),
        ] {
            let mut p = before.clone();
            let e = p.apply(text, path).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("/dev/null/profile:{line}: ")) && msg.contains(says),
                "{text:?}: {msg}"
            );
            assert_eq!(p, before, "a bad file changes nothing");
        }
    }
}
