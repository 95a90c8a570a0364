//! The `continuity` element registers and passes buffers through untouched.

use std::sync::Once;

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstcontinuity::plugin_register_static().expect("plugin registers");
    });
}

#[test]
fn registers_with_any_caps_and_passes_buffers_through() {
    init();
    use gst::prelude::*;
    let factory = gst::ElementFactory::find("continuity").expect("factory 'continuity'");
    assert_eq!(factory.plugin_name().as_deref(), Some("continuity"));

    let dir = tempfile::tempdir().unwrap();
    let element = gst::ElementFactory::make("continuity")
        .property("broker", "mqtt://127.0.0.1:1")
        .property("config-dir", dir.path().to_str().unwrap())
        .property_from_str("resume", "off")
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str("video/x-raw,format=I420,width=4,height=4,framerate=25/1");
    let mut buf = gst::Buffer::from_slice(vec![7u8; 24]);
    buf.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_mseconds(40));
    let ptr = buf.as_ptr();
    assert_eq!(h.push(buf), Ok(gst::FlowSuccess::Ok));
    let out = h.pull().unwrap();
    assert_eq!(out.as_ptr(), ptr, "the same buffer, not a copy");
    assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(40)));
    assert_eq!(out.map_readable().unwrap().as_slice(), &[7u8; 24][..]);
}

#[test]
fn load_failed_is_an_action_signal_and_handoff_failed_its_old_name() {
    init();
    use gst::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let element = gst::ElementFactory::make("continuity")
        .property("config-dir", dir.path().to_str().unwrap())
        .build()
        .unwrap();
    for name in ["load-failed", "handoff-failed"] {
        let id = gst::glib::subclass::SignalId::lookup(name, element.type_())
            .unwrap_or_else(|| panic!("signal {name}"));
        assert!(
            id.query().flags().contains(gst::glib::SignalFlags::ACTION),
            "{name} is an action signal"
        );
        // Without a network side (NULL) it does nothing, and says nothing is wrong.
        element.emit_by_name::<()>(name, &[&"cannot decode"]);
    }
}
