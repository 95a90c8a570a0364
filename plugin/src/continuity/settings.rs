//! The element's properties: their specs and defaults, the settings they make, and what the
//! network side is started from. Plain Rust apart from the specs, tested without a pipeline.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use continuity::engine::EngineConfig;
use continuity::model::Device;
use continuity::node::NodeConfig;
use continuity::security::account::Account;
use gst::glib;
use gst::prelude::*;

use super::network::{NetworkConfig, POSITION_NONE};
use super::{DeviceClass, Encryption, ResumeMode};

pub const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";
pub const DEFAULT_ACCOUNT: &str = "default";
pub const DEFAULT_RESUME: ResumeMode = ResumeMode::Auto;
pub const DEFAULT_RESUME_TIMEOUT_MS: u32 = 500;
pub const DEFAULT_HEARTBEAT_S: u32 = 30;
pub const DEFAULT_DRIFT_THRESHOLD_MS: u32 = 100;
pub const DEFAULT_DEVICE_CLASS: DeviceClass = DeviceClass::Desktop;
/// Automatic mode looks this far back for a device that went offline mid-play.
const AUTOMATIC_WINDOW_NS: u64 = 30 * 60 * 1_000_000_000;

/// The element's properties, as set.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub broker: String,
    pub account: String,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub device_class: DeviceClass,
    pub media_id: Option<String>,
    /// Preferred audio language, when the media has it (a handoff takes the source's).
    pub audio_language: Option<String>,
    /// Preferred subtitle language, or `none`; unset leaves the player's choice.
    pub subtitle_language: Option<String>,
    pub resume: ResumeMode,
    pub resume_timeout_ms: u32,
    pub heartbeat_s: u32,
    pub drift_threshold_ms: u32,
    pub config_dir: Option<String>,
    pub advertise: bool,
    pub automatic: bool,
    /// Devices to continue on by themselves (comma-separated names, ids or classes).
    pub auto_handoff: Option<String>,
    pub encryption: Encryption,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            broker: DEFAULT_BROKER.to_owned(),
            account: DEFAULT_ACCOUNT.to_owned(),
            device_id: None,
            device_name: None,
            device_class: DEFAULT_DEVICE_CLASS,
            media_id: None,
            audio_language: None,
            subtitle_language: None,
            resume: DEFAULT_RESUME,
            resume_timeout_ms: DEFAULT_RESUME_TIMEOUT_MS,
            heartbeat_s: DEFAULT_HEARTBEAT_S,
            drift_threshold_ms: DEFAULT_DRIFT_THRESHOLD_MS,
            config_dir: None,
            advertise: false,
            automatic: false,
            auto_handoff: None,
            encryption: Encryption::Sealed,
        }
    }
}

/// Why the settings cannot start a device (the element then fails NULL to READY).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("Property {property}='{value}' {reason}")]
    Invalid {
        property: &'static str,
        value: String,
        reason: String,
    },
    #[error("No config dir: HOME is not set (set config-dir or device-id)")]
    NoConfigDir,
    #[error(
        "No config dir for the account's keys: HOME is not set (set config-dir, or \
         encryption=off)"
    )]
    NoKeyDir,
    #[error(
        "Cannot create the device id: {0} (set device-id, or config-dir to a writable \
         directory)"
    )]
    DeviceId(String),
    #[error(
        "Property device-id='{given}' is not this config dir's identity ('{paired}', in \
         {dir}/device-id): sealed messages are signed as the device the dir was paired as, \
         and the other devices would not know '{given}'. Unset device-id, or give that \
         device its own config-dir and pair it"
    )]
    NotThisIdentity {
        given: String,
        paired: String,
        dir: String,
    },
    #[error("{0}")]
    Account(String),
}

/// What the element warns about when it starts (playback goes on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartWarning {
    /// The broker URL does not parse: playing without sharing.
    Broker(String),
    /// `encryption=off`.
    Plaintext,
}

impl std::fmt::Display for StartWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartWarning::Broker(e) => {
                write!(f, "Invalid broker URL; playing without sharing: {e}")
            }
            StartWarning::Plaintext => f.write_str(
                "Encryption is off: what plays, where and at which position goes over the \
                 broker as plain JSON, and anyone who can publish there can command handoffs",
            ),
        }
    }
}

/// What a device starts from: the network side's config, and what to say about it.
pub struct Start {
    pub device_id: String,
    pub config: NetworkConfig,
    pub warnings: Vec<StartWarning>,
    /// Information for the log (which broker `auto` found).
    pub notes: Vec<String>,
}

/// A property settable up to READY: an unsigned number in `range`.
fn uint(
    name: &str,
    nick: &str,
    blurb: &str,
    range: RangeInclusive<u32>,
    default: u32,
) -> glib::ParamSpec {
    glib::ParamSpecUInt::builder(name)
        .nick(nick)
        .blurb(blurb)
        .minimum(*range.start())
        .maximum(*range.end())
        .default_value(default)
        .mutable_ready()
        .build()
}

/// A property settable up to READY: a switch, off by default.
fn flag(name: &str, nick: &str, blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecBoolean::builder(name)
        .nick(nick)
        .blurb(blurb)
        .default_value(false)
        .mutable_ready()
        .build()
}

impl Settings {
    /// The property specs, in the order `gst-inspect-1.0` shows them.
    pub fn specs() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("broker")
                .nick("Broker")
                .blurb(
                    "MQTT broker: mqtt://[user:password@]host[:port], mqtts://..., or auto \
                 (find one on the LAN with mDNS, else mqtt://127.0.0.1:1883)",
                )
                .default_value(Some(DEFAULT_BROKER))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("account")
                .nick("Account")
                .blurb("The devices that share sessions (a topic namespace on the broker)")
                .default_value(Some(DEFAULT_ACCOUNT))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("device-id")
                .nick("Device id")
                .blurb(
                    "Stable id of this device (default: created once and kept in the \
                 config dir)",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("device-name")
                .nick("Device name")
                .blurb("Name other devices show for this one (default: the host name)")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("device-class", DEFAULT_DEVICE_CLASS)
                .nick("Device class")
                .blurb("What this device is: phone, tablet, desktop, tv, speaker, car, other")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("media-id")
                .nick("Media id")
                .blurb(
                    "Identity of the media that plays (default: the normalised URI, else \
                 the title and duration); read when a stream starts",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("audio-language")
                .nick("Audio language")
                .blurb(
                    "In a playbin: the audio language to select when media starts and has it \
                 (ISO 639 or BCP 47, e.g. fr); a handoff selects the source's language instead",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("subtitle-language")
                .nick("Subtitle language")
                .blurb(
                    "In a playbin: the subtitle language to show when media starts and has it, \
                 or none for no subtitles (default: the playbin's choice); a handoff shows the \
                 source's subtitles, or none when they were off there",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecEnum::builder_with_default("resume", DEFAULT_RESUME)
                .nick("Resume")
                .blurb(
                    "What to do with a resume point when media starts: auto (seek there at \
                 preroll), ask (post continuity-resume-available, seek on the resume \
                 signal), off",
                )
                .mutable_ready()
                .build(),
            uint(
                "resume-timeout",
                "Resume timeout",
                "Longest wait for the broker's resume point at preroll, in ms",
                0..=60_000,
                DEFAULT_RESUME_TIMEOUT_MS,
            ),
            uint(
                "heartbeat",
                "Heartbeat",
                "While playing, save the position locally this often, in seconds; every 20th \
                 heartbeat also refreshes the broker's resume point",
                1..=86_400,
                DEFAULT_HEARTBEAT_S,
            ),
            uint(
                "drift-threshold",
                "Drift threshold",
                "Publish a new anchor when the stream is this far from the predicted position, \
                 in ms",
                1..=60_000,
                DEFAULT_DRIFT_THRESHOLD_MS,
            ),
            glib::ParamSpecString::builder("config-dir")
                .nick("Config dir")
                .blurb(
                    "Where the device id and the local store live (default: \
                 $XDG_CONFIG_HOME/continuity)",
                )
                .mutable_ready()
                .build(),
            flag(
                "advertise",
                "Advertise",
                "Advertise this player on the LAN with mDNS (_continuity._tcp.local.: device id, \
                 name, class)",
            ),
            glib::ParamSpecEnum::builder_with_default("encryption", Encryption::Sealed)
                .nick("Encryption")
                .blurb(
                    "sealed: state and commands are end-to-end encrypted and signed with \
                 the account's keys (in config-dir), only paired devices are heard; \
                 off: plain JSON that anyone on the broker can read and forge",
                )
                .mutable_ready()
                .build(),
            flag(
                "automatic",
                "Automatic",
                "Starting media that a device of the account was playing when it went offline \
                 (in the last 30 minutes) continues from where it was then",
            ),
            glib::ParamSpecString::builder("auto-handoff")
                .nick("Automatic handoff")
                .blurb(
                    "Devices to continue on by themselves: when one of them comes online while \
                 this device plays, the session goes there with no key pressed (posting \
                 continuity-handoff-automatic; hand-back returns it). Comma-separated device \
                 names, ids or classes (tv); default: none, only suggestions",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("connected")
                .nick("Connected")
                .blurb("Whether the element is connected to the broker")
                .read_only()
                .build(),
            glib::ParamSpecUInt64::builder("position")
                .nick("Position")
                .blurb("Media (stream) time of the last buffer, in ns (-1 when unknown)")
                .default_value(POSITION_NONE)
                .read_only()
                .build(),
        ]
    }

    pub fn set(&mut self, name: &str, value: &glib::Value) {
        let text = |v: &glib::Value| {
            v.get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|s| !s.is_empty())
        };
        match name {
            "broker" => self.broker = text(value).unwrap_or_else(|| DEFAULT_BROKER.to_owned()),
            "account" => self.account = text(value).unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned()),
            "device-id" => self.device_id = text(value),
            "device-name" => self.device_name = text(value),
            "device-class" => self.device_class = value.get().expect("type checked upstream"),
            "media-id" => self.media_id = text(value),
            "audio-language" => self.audio_language = text(value),
            "subtitle-language" => self.subtitle_language = text(value),
            "resume" => self.resume = value.get().expect("type checked upstream"),
            "resume-timeout" => {
                self.resume_timeout_ms = value.get().expect("type checked upstream")
            }
            "heartbeat" => self.heartbeat_s = value.get().expect("type checked upstream"),
            "drift-threshold" => {
                self.drift_threshold_ms = value.get().expect("type checked upstream")
            }
            "config-dir" => self.config_dir = text(value),
            "advertise" => self.advertise = value.get().expect("type checked upstream"),
            "automatic" => self.automatic = value.get().expect("type checked upstream"),
            "auto-handoff" => self.auto_handoff = text(value),
            "encryption" => self.encryption = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
    }

    /// Whether `other` makes the same device: what is read per media (the media id, the
    /// languages) aside, since changing it must not take the device off the network.
    pub fn same_device(&self, other: &Settings) -> bool {
        let device = |s: &Settings| Settings {
            media_id: None,
            audio_language: None,
            subtitle_language: None,
            ..s.clone()
        };
        device(self) == device(other)
    }

    /// The value of a settings property (not `connected` or `position`).
    pub fn get(&self, name: &str) -> glib::Value {
        match name {
            "broker" => self.broker.to_value(),
            "account" => self.account.to_value(),
            "device-id" => self.device_id.to_value(),
            "device-name" => self.device_name.to_value(),
            "device-class" => self.device_class.to_value(),
            "media-id" => self.media_id.to_value(),
            "audio-language" => self.audio_language.to_value(),
            "subtitle-language" => self.subtitle_language.to_value(),
            "resume" => self.resume.to_value(),
            "resume-timeout" => self.resume_timeout_ms.to_value(),
            "heartbeat" => self.heartbeat_s.to_value(),
            "drift-threshold" => self.drift_threshold_ms.to_value(),
            "config-dir" => self.config_dir.to_value(),
            "advertise" => self.advertise.to_value(),
            "automatic" => self.automatic.to_value(),
            "auto-handoff" => self.auto_handoff.to_value(),
            "encryption" => self.encryption.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    /// What the device starts from: the id (given, or kept in the config dir), the broker
    /// (`auto` resolved), the account's keys (sealed) and the engine's timings.
    pub fn start(&self) -> Result<Start, SettingsError> {
        let invalid = |property, value: &str, reason| SettingsError::Invalid {
            property,
            value: value.to_owned(),
            reason,
        };
        continuity::wire::check_id(&self.account)
            .map_err(|reason| invalid("account", &self.account, reason))?;
        let config_dir = self
            .config_dir
            .as_ref()
            .map(PathBuf::from)
            .or_else(|| continuity::config::default_config_dir().ok());
        let device_id = match (&self.device_id, &config_dir) {
            (Some(id), _) => {
                continuity::wire::check_id(id)
                    .map_err(|reason| invalid("device-id", id, reason))?;
                id.clone()
            }
            (None, Some(dir)) => continuity::config::device_id(dir)
                .map_err(|e| SettingsError::DeviceId(e.to_string()))?,
            (None, None) => return Err(SettingsError::NoConfigDir),
        };
        let mut warnings = Vec::new();
        let mut notes = Vec::new();
        let broker = match continuity::net::discovery::resolve_broker(
            &self.broker,
            continuity::net::discovery::AUTO_WAIT,
        ) {
            Ok((b, note)) => {
                notes.extend(note);
                Some(b)
            }
            Err(e) => {
                warnings.push(StartWarning::Broker(e.to_string()));
                None
            }
        };
        let device_name = self
            .device_name
            .clone()
            .unwrap_or_else(continuity::config::host_name);
        let account = match (self.encryption, &config_dir) {
            (Encryption::Off, _) => {
                warnings.push(StartWarning::Plaintext);
                None
            }
            (Encryption::Sealed, None) => return Err(SettingsError::NoKeyDir),
            (Encryption::Sealed, Some(dir)) if self.device_id.is_some() => {
                // Sealed messages are signed as the device this dir was paired as.
                let paired = continuity::config::device_id(dir)
                    .map_err(|e| SettingsError::DeviceId(e.to_string()))?;
                if paired != device_id {
                    return Err(SettingsError::NotThisIdentity {
                        given: device_id,
                        paired,
                        dir: dir.display().to_string(),
                    });
                }
                Some(
                    Account::open(dir, &self.account, &device_id, &device_name)
                        .map_err(|e| SettingsError::Account(e.to_string()))?,
                )
            }
            (Encryption::Sealed, Some(dir)) => Some(
                Account::open(dir, &self.account, &device_id, &device_name)
                    .map_err(|e| SettingsError::Account(e.to_string()))?,
            ),
        };
        let mut engine = EngineConfig::new(
            &self.account,
            Device {
                id: device_id.clone(),
                name: device_name,
                class: self.device_class.into(),
            },
        );
        engine.heartbeat_ns = u64::from(self.heartbeat_s) * 1_000_000_000;
        engine.drift_threshold_ns = u64::from(self.drift_threshold_ms) * 1_000_000;
        if self.automatic {
            engine.automatic_window_ns = Some(AUTOMATIC_WINDOW_NS);
        }
        engine.auto_handoff = self
            .auto_handoff
            .iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        let config = NetworkConfig {
            node: NodeConfig {
                engine,
                broker: broker.clone(),
                store_dir: config_dir,
                link: None,
                account,
            },
            advertise: self.advertise,
            resume_timeout: Duration::from_millis(u64::from(self.resume_timeout_ms)),
            broker_text: broker
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| self.broker.clone()),
            player_lock: None,
        };
        Ok(Start {
            device_id,
            config,
            warnings,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_dir() -> (tempfile::TempDir, Settings) {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings {
            config_dir: Some(dir.path().display().to_string()),
            broker: "mqtt://127.0.0.1:1".into(),
            ..Settings::default()
        };
        (dir, s)
    }

    #[test]
    fn defaults_start_a_sealed_device_with_an_id_kept_in_the_config_dir() {
        let (dir, s) = in_dir();
        let start = s.start().unwrap();
        assert!(start.warnings.is_empty(), "{:?}", start.warnings);
        assert!(start.config.node.account.is_some(), "sealed by default");
        assert_eq!(start.config.node.engine.account, "default");
        assert_eq!(start.config.node.engine.heartbeat_ns, 30_000_000_000);
        assert_eq!(start.config.resume_timeout, Duration::from_millis(500));
        assert_eq!(start.config.node.store_dir.as_deref(), Some(dir.path()));
        // The same id the next time.
        assert_eq!(s.start().unwrap().device_id, start.device_id);
    }

    /// Reliability row 10: in sealed mode a device is who its config dir was paired as.
    #[test]
    fn a_device_id_that_is_not_the_config_dirs_identity_is_refused_when_sealed() {
        let (dir, mut s) = in_dir();
        let own = s.start().unwrap().device_id;
        s.device_id = Some(own.clone());
        assert_eq!(s.start().unwrap().device_id, own, "repeating it is fine");
        s.device_id = Some("living-room".into());
        let e = s.start().err().unwrap().to_string();
        assert!(e.contains("device-id='living-room'"), "{e}");
        assert!(
            e.contains(&own) && e.contains(&dir.path().display().to_string()),
            "{e}"
        );
        s.encryption = Encryption::Off;
        assert_eq!(
            s.start().unwrap().device_id,
            "living-room",
            "plain mode: any id"
        );
    }

    #[test]
    fn a_bad_account_or_device_id_names_the_property() {
        let (_dir, mut s) = in_dir();
        s.account = "has space".into();
        let e = s.start().err().unwrap().to_string();
        assert!(e.starts_with("Property account='has space' "), "{e}");
        let (_dir, mut s) = in_dir();
        s.device_id = Some("a/b".into());
        let e = s.start().err().unwrap().to_string();
        assert!(e.starts_with("Property device-id='a/b' "), "{e}");
    }

    #[test]
    fn a_bad_broker_url_or_plain_mode_warns_and_still_starts() {
        let (_dir, mut s) = in_dir();
        s.broker = "ftp://nowhere".into();
        s.encryption = Encryption::Off;
        let start = s.start().unwrap();
        assert!(start.config.node.broker.is_none());
        assert!(start.config.node.account.is_none());
        assert!(matches!(start.warnings[0], StartWarning::Broker(_)));
        assert_eq!(start.warnings[1], StartWarning::Plaintext);
        assert_eq!(start.config.broker_text, "ftp://nowhere");
    }

    #[test]
    fn timings_and_automatic_mode_reach_the_engine() {
        let (_dir, mut s) = in_dir();
        s.heartbeat_s = 5;
        s.drift_threshold_ms = 40;
        s.automatic = true;
        let engine = s.start().unwrap().config.node.engine;
        assert_eq!(engine.heartbeat_ns, 5_000_000_000);
        assert_eq!(engine.drift_threshold_ns, 40_000_000);
        assert_eq!(engine.automatic_window_ns, Some(AUTOMATIC_WINDOW_NS));
    }
}
