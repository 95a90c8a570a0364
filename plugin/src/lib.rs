//! GStreamer plugin `continuity`: the `continuity` element, which records where playback is
//! and what plays, shares it over MQTT, and resumes playback where another device left off.
//!
//! The element is a thin adapter: the decisions live in the `continuity` library's engine.

use gst::glib;

mod continuity;

pub use continuity::Continuity;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    continuity::register(plugin)
}

gst::plugin_define!(
    continuity,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
