//! The `continuity` element: the public wrapper type, its enums and its registration.
//!
//! - `imp.rs`: the GObject and element glue (properties, signals, events, state changes).
//! - `stream.rs`: what the streaming thread keeps and turns into observations.
//! - `session.rs`: the network side (the library's `Node` on a small tokio runtime).

use gst::glib;
use gst::prelude::*;

mod imp;
mod log;
mod network;
mod settings;
mod stream;
mod tracks;

/// The element's debug category (`GST_DEBUG=continuity:5`).
static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "continuity",
        gst::DebugColorFlags::empty(),
        Some("Playback continuity across devices"),
    )
});

glib::wrapper! {
    /// A passthrough element that records the playback position and metadata of the stream
    /// flowing through it, publishes them, and resumes playback.
    pub struct Continuity(ObjectSubclass<imp::Continuity>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Whether what the element sends is sealed.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstContinuityEncryption")]
pub enum Encryption {
    /// Sealed and signed with the account's keys; only paired devices are heard.
    #[default]
    #[enum_value(name = "Sealed: end-to-end encrypted and signed", nick = "sealed")]
    Sealed,
    /// Plain JSON: anyone on the broker reads what plays and can command handoffs.
    #[enum_value(name = "Off: plain JSON that anyone on the broker reads", nick = "off")]
    Off,
}

/// What the element does when it finds a resume point for the media that starts.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstContinuityResume")]
pub enum ResumeMode {
    /// Seek there at preroll, so that PLAYING starts at the resume point.
    #[default]
    #[enum_value(name = "Auto: seek to the resume point at preroll", nick = "auto")]
    Auto,
    /// Post `continuity-resume-available` and seek when the application emits `resume`.
    #[enum_value(name = "Ask: offer it, seek on the resume signal", nick = "ask")]
    Ask,
    /// Never resume.
    #[enum_value(name = "Off: always play from where the stream starts", nick = "off")]
    Off,
}

/// What this device is, for pickers and for choosing renditions.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstContinuityDeviceClass")]
pub enum DeviceClass {
    #[enum_value(name = "Phone", nick = "phone")]
    Phone,
    #[enum_value(name = "Tablet", nick = "tablet")]
    Tablet,
    #[default]
    #[enum_value(name = "Desktop", nick = "desktop")]
    Desktop,
    #[enum_value(name = "TV", nick = "tv")]
    Tv,
    #[enum_value(name = "Speaker", nick = "speaker")]
    Speaker,
    #[enum_value(name = "Car", nick = "car")]
    Car,
    #[enum_value(name = "Other", nick = "other")]
    Other,
}

impl From<DeviceClass> for continuity::model::DeviceClass {
    fn from(c: DeviceClass) -> Self {
        use continuity::model::DeviceClass as M;
        match c {
            DeviceClass::Phone => M::Phone,
            DeviceClass::Tablet => M::Tablet,
            DeviceClass::Desktop => M::Desktop,
            DeviceClass::Tv => M::Tv,
            DeviceClass::Speaker => M::Speaker,
            DeviceClass::Car => M::Car,
            DeviceClass::Other => M::Other,
        }
    }
}

impl From<ResumeMode> for continuity::engine::gate::ResumeMode {
    fn from(m: ResumeMode) -> Self {
        use continuity::engine::gate::ResumeMode as M;
        match m {
            ResumeMode::Auto => M::Auto,
            ResumeMode::Ask => M::Ask,
            ResumeMode::Off => M::Off,
        }
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    log::install();
    ResumeMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    DeviceClass::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "continuity",
        gst::Rank::NONE,
        Continuity::static_type(),
    )
}
