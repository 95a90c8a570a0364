//! Implementation of the `continuity` element.

use std::sync::LazyLock;

use gst::glib;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "continuity",
        gst::DebugColorFlags::empty(),
        Some("Playback continuity across devices"),
    )
});

#[derive(Default)]
pub struct Continuity {}

#[glib::object_subclass]
impl ObjectSubclass for Continuity {
    const NAME: &'static str = "GstContinuity";
    type Type = super::Continuity;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for Continuity {
    fn constructed(&self) {
        self.parent_constructed();
        // Buffers are only looked at, never changed: let them through untouched.
        self.obj().set_passthrough(true);
    }
}

impl GstObjectImpl for Continuity {}

impl ElementImpl for Continuity {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Playback continuity",
                "Generic",
                "Records the playback position and metadata, shares them over MQTT and resumes \
                 playback where another device left off",
                "The continuity developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::new_any();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("src template"),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("sink template"),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for Continuity {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        gst::trace!(CAT, imp = self, "buffer pts {:?}", buf.pts());
        Ok(gst::FlowSuccess::Ok)
    }
}
