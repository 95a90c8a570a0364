//! The `continuity` element: the public wrapper type and its registration.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// A passthrough element that records the playback position and metadata of the stream
    /// flowing through it, publishes them, and resumes playback.
    pub struct Continuity(ObjectSubclass<imp::Continuity>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "continuity",
        gst::Rank::NONE,
        Continuity::static_type(),
    )
}
