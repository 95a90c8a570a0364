/**
 * SECTION:element-continuity
 * @title: continuity
 *
 * `continuity` sits in any pipeline like `identity` and lets playback continue on another
 * device, at the same point. It records where playback is (media time from the segment and
 * the buffer timestamps, rate, playing/paused/ended) and what plays (URI, title, artist,
 * album, duration, languages), publishes it over MQTT as a compact anchor — never a message
 * per buffer — and keeps it in a local store. When the same media starts again, here or on
 * another device of the account, it seeks to where playback stopped.
 *
 * Buffers pass through untouched; a broker that is down never stops playback (one warning,
 * then reconnection in the background).
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 playbin uri=file:///home/me/film.ogg video-filter=continuity
 * ]| Plays the film; stopped with Ctrl-C and started again (here or on another device of
 * the account), it continues where it stopped.
 * |[
 * gst-launch-1.0 filesrc location=film.ogg ! oggdemux ! theoradec ! continuity \
 *     broker=mqtt://nas.local:1883 account=family device-name="Kitchen" ! autovideosink
 * ]| The same in a hand-made pipeline, against a broker on the LAN.
 * |[
 * gst-launch-1.0 audiotestsrc ! continuity resume=off ! autoaudiosink
 * ]| Publishes what plays without ever seeking.
 *
 * ## Messages
 * - `continuity-connection`: `connected` (boolean), `broker` (string), `reason` (string, when
 *   not connected).
 * - `continuity-resume-available` (`resume=ask`): `media-id`, `position` (ns), `device`,
 *   `when` (ns since the Unix epoch). Emit the `resume` action signal to seek there.
 * - `continuity-resumed`: `media-id`, `position` (ns), `device` it came from.
 * - `continuity-revoked`: this device was removed from its account (a warning comes with it);
 *   other devices no longer hear it, and playback goes on.
 *
 * Since: 0.1
 */
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use continuity::engine::{EngineConfig, Observation};
use continuity::model::{Device, PlayState};
use continuity::node::NodeConfig;
use continuity::security::account::Account;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::session::{
    self, GATE_HOLD, GATE_OPEN, GATE_SEEKING, POSITION_NONE, Session, SessionConfig, Shared,
};
use super::stream::{Kind, SAMPLE_EVERY_NS, Stream, ToPump};
use super::{CAT, DeviceClass, Encryption, ResumeMode};

const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";
const DEFAULT_ACCOUNT: &str = "default";
const DEFAULT_RESUME: ResumeMode = ResumeMode::Auto;
const DEFAULT_RESUME_TIMEOUT_MS: u32 = 500;
const DEFAULT_HEARTBEAT_S: u32 = 30;
const DEFAULT_DRIFT_THRESHOLD_MS: u32 = 100;
const DEFAULT_DEVICE_CLASS: DeviceClass = DeviceClass::Desktop;
/// Automatic mode looks this far back for a device that went offline mid-play.
const AUTOMATIC_WINDOW_NS: u64 = 30 * 60 * 1_000_000_000;
/// Stopping waits at most this long for the final state to be stored and published.
const STOP_WAIT: Duration = Duration::from_millis(800);
/// A render-time correction beyond this is not a pipeline that renders in time (a sink
/// with sync=false, say): use the arrival time instead.
const MAX_RENDER_AHEAD_NS: i128 = 2_000_000_000;

#[derive(Debug, Clone, PartialEq)]
struct Settings {
    broker: String,
    account: String,
    device_id: Option<String>,
    device_name: Option<String>,
    device_class: DeviceClass,
    media_id: Option<String>,
    resume: ResumeMode,
    resume_timeout_ms: u32,
    heartbeat_s: u32,
    drift_threshold_ms: u32,
    config_dir: Option<String>,
    advertise: bool,
    automatic: bool,
    encryption: Encryption,
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
            resume: DEFAULT_RESUME,
            resume_timeout_ms: DEFAULT_RESUME_TIMEOUT_MS,
            heartbeat_s: DEFAULT_HEARTBEAT_S,
            drift_threshold_ms: DEFAULT_DRIFT_THRESHOLD_MS,
            config_dir: None,
            advertise: false,
            automatic: false,
            encryption: Encryption::Sealed,
        }
    }
}

#[derive(Default)]
pub struct Continuity {
    settings: Mutex<Settings>,
    /// Streaming-thread state (and start/stop); never locked by the network side.
    stream: Mutex<Stream>,
    shared: Arc<Shared>,
    /// The device on the network, with the settings it was made from. It lives as long as
    /// the element (players such as playbin take their filters to NULL and back when they
    /// change media; the device stays online, handoffs in flight survive).
    session: Mutex<Option<(Settings, Session)>>,
    /// Where playback paused last (PLAYING to PAUSED), the best final position.
    paused_at: AtomicU64,
}

impl Drop for Continuity {
    fn drop(&mut self) {
        let session = self
            .session
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((_, session)) = session {
            session.stop(STOP_WAIT);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[glib::object_subclass]
impl ObjectSubclass for Continuity {
    const NAME: &'static str = "GstContinuity";
    type Type = super::Continuity;
    type ParentType = gst_base::BaseTransform;

    fn class_init(klass: &mut Self::Class) {
        // gstreamer-rs installs a trampoline for every GstBaseTransform virtual method; for
        // those this element does not implement they only call GstBaseTransform's own. On
        // the per-buffer path that costs about 900 instructions a buffer (+20 % over
        // `identity` in `make bench`), so point the per-buffer ones straight back at
        // GstBaseTransform's implementations. Behaviour is unchanged: nothing of ours runs in
        // them.
        // SAFETY: the class struct starts with GstBaseTransformClass (our parent), and the
        // parent class pointer is set by glib before `class_init` runs.
        unsafe {
            use gst_base::ffi::GstBaseTransformClass;
            let klass = &mut *(klass as *mut Self::Class as *mut GstBaseTransformClass);
            let parent =
                &*(Self::type_data().as_ref().parent_class() as *const GstBaseTransformClass);
            klass.submit_input_buffer = parent.submit_input_buffer;
            klass.generate_output = parent.generate_output;
            klass.prepare_output_buffer = parent.prepare_output_buffer;
            klass.before_transform = parent.before_transform;
            klass.copy_metadata = parent.copy_metadata;
            klass.transform_meta = parent.transform_meta;
        }
    }
}

impl ObjectImpl for Continuity {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
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
                glib::ParamSpecEnum::builder_with_default("resume", DEFAULT_RESUME)
                    .nick("Resume")
                    .blurb(
                        "What to do with a resume point when media starts: auto (seek there at \
                         preroll), ask (post continuity-resume-available, seek on the resume \
                         signal), off",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("resume-timeout")
                    .nick("Resume timeout")
                    .blurb("Longest wait for the broker's resume point at preroll, in ms")
                    .maximum(60_000)
                    .default_value(DEFAULT_RESUME_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("heartbeat")
                    .nick("Heartbeat")
                    .blurb(
                        "While playing, save the position locally this often, in seconds; \
                         every 20th heartbeat also refreshes the broker's resume point",
                    )
                    .minimum(1)
                    .maximum(86_400)
                    .default_value(DEFAULT_HEARTBEAT_S)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("drift-threshold")
                    .nick("Drift threshold")
                    .blurb(
                        "Publish a new anchor when the stream is this far from the predicted \
                         position, in ms",
                    )
                    .minimum(1)
                    .maximum(60_000)
                    .default_value(DEFAULT_DRIFT_THRESHOLD_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("config-dir")
                    .nick("Config dir")
                    .blurb(
                        "Where the device id and the local store live (default: \
                         $XDG_CONFIG_HOME/continuity)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("advertise")
                    .nick("Advertise")
                    .blurb(
                        "Advertise this player on the LAN with mDNS (_continuity._tcp.local.: \
                         device id, name, class)",
                    )
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("encryption", Encryption::Sealed)
                    .nick("Encryption")
                    .blurb(
                        "sealed: state and commands are end-to-end encrypted and signed with \
                         the account's keys (in config-dir), only paired devices are heard; \
                         off: plain JSON that anyone on the broker can read and forge",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("automatic")
                    .nick("Automatic")
                    .blurb(
                        "Starting media that a device of the account was playing when it went \
                         offline (in the last 30 minutes) continues from where it was then",
                    )
                    .default_value(false)
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
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                glib::subclass::Signal::builder("handoff-to")
                    .action()
                    .param_types([String::static_type()])
                    .return_type::<Option<String>>()
                    .class_handler(|args| {
                        let element = args[0]
                            .get::<super::Continuity>()
                            .expect("signal arg is the element");
                        let target = args[1].get::<String>().expect("signal arg is a string");
                        Some(element.imp().handoff_to(&target).to_value())
                    })
                    .build(),
                glib::subclass::Signal::builder("handoff-failed")
                    .action()
                    .param_types([String::static_type()])
                    .class_handler(|args| {
                        let element = args[0]
                            .get::<super::Continuity>()
                            .expect("signal arg is the element");
                        let reason = args[1].get::<String>().expect("signal arg is a string");
                        element.imp().handoff_load_failed(&reason);
                        None
                    })
                    .build(),
                glib::subclass::Signal::builder("resume")
                    .action()
                    .return_type::<bool>()
                    .class_handler(|args| {
                        let element = args[0]
                            .get::<super::Continuity>()
                            .expect("signal arg is the element");
                        Some(element.imp().resume_offered().to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        let text = |v: &glib::Value| {
            v.get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|s| !s.is_empty())
        };
        match pspec.name() {
            "broker" => s.broker = text(value).unwrap_or_else(|| DEFAULT_BROKER.to_owned()),
            "account" => s.account = text(value).unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned()),
            "device-id" => s.device_id = text(value),
            "device-name" => s.device_name = text(value),
            "device-class" => s.device_class = value.get().expect("type checked upstream"),
            "media-id" => s.media_id = text(value),
            "resume" => s.resume = value.get().expect("type checked upstream"),
            "resume-timeout" => s.resume_timeout_ms = value.get().expect("type checked upstream"),
            "heartbeat" => s.heartbeat_s = value.get().expect("type checked upstream"),
            "drift-threshold" => s.drift_threshold_ms = value.get().expect("type checked upstream"),
            "config-dir" => s.config_dir = text(value),
            "advertise" => s.advertise = value.get().expect("type checked upstream"),
            "automatic" => s.automatic = value.get().expect("type checked upstream"),
            "encryption" => s.encryption = value.get().expect("type checked upstream"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "connected" => self.shared.connected.load(Ordering::Relaxed).to_value(),
            "position" => self.shared.position.load(Ordering::Relaxed).to_value(),
            name => {
                let s = lock(&self.settings);
                match name {
                    "broker" => s.broker.to_value(),
                    "account" => s.account.to_value(),
                    "device-id" => s.device_id.to_value(),
                    "device-name" => s.device_name.to_value(),
                    "device-class" => s.device_class.to_value(),
                    "media-id" => s.media_id.to_value(),
                    "resume" => s.resume.to_value(),
                    "resume-timeout" => s.resume_timeout_ms.to_value(),
                    "heartbeat" => s.heartbeat_s.to_value(),
                    "drift-threshold" => s.drift_threshold_ms.to_value(),
                    "config-dir" => s.config_dir.to_value(),
                    "advertise" => s.advertise.to_value(),
                    "automatic" => s.automatic.to_value(),
                    "encryption" => s.encryption.to_value(),
                    other => unreachable!("unknown property {other}"),
                }
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // Buffers are only looked at, never changed: let them through untouched.
        self.obj().set_passthrough(true);
        self.paused_at.store(POSITION_NONE, Ordering::Relaxed);
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

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            // The device lives from READY to NULL: a player that changes media (READY,
            // new URI, PAUSED) stays one device, online, with its handoffs in flight.
            gst::StateChange::NullToReady => {
                if let Err(e) = self.open_session() {
                    self.post_error_message(e);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PlayingToPaused => {
                let position = self.playback_position();
                if let Some(p) = position {
                    self.paused_at.store(p, Ordering::Relaxed);
                }
                self.playback(position, PlayState::Paused);
            }
            _ => {}
        }
        let result = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::PausedToPlaying => {
                self.paused_at.store(POSITION_NONE, Ordering::Relaxed);
                let position = self.playback_position();
                if self.shared.awaiting_start.swap(false, Ordering::SeqCst)
                    && let Some(p) = position
                {
                    // A handoff target's first frame plays now.
                    lock(&self.stream)
                        .observe(session::now(), Observation::Started { position_ns: p });
                }
                self.playback(position, PlayState::Playing);
            }
            gst::StateChange::ReadyToNull => {
                // The final position goes out now (the application may exit right after);
                // the goodbye comes when the element goes away.
                let node = lock(&self.session).as_ref().map(|(_, s)| s.node_handle());
                if let Some(node) = node {
                    session::flush_blocking(&node, STOP_WAIT);
                }
            }
            _ => {}
        }
        Ok(result)
    }
}

impl BaseTransformImpl for Continuity {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn src_event(&self, event: gst::Event) -> bool {
        // A seek from downstream while buffers are held for the resume decision is the
        // application's (the element's own seeks close the gate to SEEKING first): it wins.
        // Its flush opens the gate, and the decision, when it comes, does nothing.
        if let gst::EventView::Seek(_) = event.view()
            && self
                .shared
                .gate
                .compare_exchange(GATE_HOLD, GATE_SEEKING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.shared.app_seeked.store(true, Ordering::SeqCst);
        }
        self.parent_src_event(event)
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let tx = lock(&self.session).as_ref().map(|(_, s)| s.sender());
        let Some(tx) = tx else {
            return Err(gst::error_msg!(
                gst::CoreError::StateChange,
                ("started without a session (NULL to READY failed?)")
            ));
        };
        *lock(&self.stream) = Stream {
            tx: Some(tx),
            rate: 1.0,
            ..Stream::default()
        };
        self.shared.position.store(POSITION_NONE, Ordering::Relaxed);
        self.shared.gate.store(GATE_OPEN, Ordering::SeqCst);
        self.shared.eos_held.store(false, Ordering::SeqCst);
        self.shared.take_offer();
        self.paused_at.store(POSITION_NONE, Ordering::Relaxed);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let position = Some(self.paused_at.load(Ordering::Relaxed))
            .filter(|p| *p != POSITION_NONE)
            .or_else(|| self.shared.position());
        let mut st = lock(&self.stream);
        if st.announced
            && let Some(p) = position
        {
            st.observe(session::now(), Observation::Stopped { position_ns: p });
        }
        st.tx = None;
        drop(st);
        self.shared.gate.store(GATE_OPEN, Ordering::SeqCst);
        self.shared.eos_held.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::StreamStart(s) => {
                lock(&self.stream).reset_media(Some(s.stream_id().to_string()));
            }
            EventView::Caps(c) => lock(&self.stream).kind = Kind::from_caps(c.caps()),
            EventView::Segment(s) => {
                let mut st = lock(&self.stream);
                match s.segment().downcast_ref::<gst::ClockTime>() {
                    Some(seg) => {
                        st.ended = false;
                        st.rate = seg.rate() * seg.applied_rate();
                        st.segment = Some(seg.clone());
                        st.segment_pending = true;
                    }
                    None => st.segment = None,
                }
            }
            EventView::Tag(t) => {
                let mut st = lock(&self.stream);
                if let Some(update) = st.apply_tags(t.tag())
                    && st.announced
                {
                    st.observe(session::now(), Observation::MediaUpdated(update));
                }
            }
            EventView::StreamCollection(c) => {
                let mut st = lock(&self.stream);
                if let Some(update) = st.apply_collection(&c.stream_collection())
                    && st.announced
                {
                    st.observe(session::now(), Observation::MediaUpdated(update));
                }
            }
            EventView::FlushStop(_) => {
                // The resume seek's flush: buffers from the new position may pass, and an
                // EOS held back before it is gone.
                self.shared.eos_held.store(false, Ordering::SeqCst);
                let _ = self.shared.gate.compare_exchange(
                    GATE_SEEKING,
                    GATE_OPEN,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            EventView::Eos(_) if self.hold_eos() => return true,
            EventView::Eos(_) => {
                let mut st = lock(&self.stream);
                self.refresh_duration(&mut st);
                if st.announced
                    && let Some(p) = st.last_end.or_else(|| self.shared.position())
                {
                    st.ended = true;
                    st.observe(session::now(), Observation::Eos { position_ns: p });
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut st = lock(&self.stream);
        let position = match (st.segment.as_ref(), buf.pts()) {
            (Some(seg), Some(pts)) => seg.to_stream_time(pts).map(|t| {
                let end = buf
                    .duration()
                    .and_then(|d| seg.to_stream_time(pts + d))
                    .unwrap_or(t);
                (t.nseconds(), end.nseconds(), pts)
            }),
            _ => None,
        };
        if let Some((pos, end, _)) = position {
            self.shared.position.store(pos, Ordering::Relaxed);
            st.last_end = Some(end);
        }
        if st.new_stream {
            self.media_started(&mut st, position.map(|p| p.0));
        }
        // Buffers held back for the resume decision are not playback: report nothing.
        let open = self.shared.gate.load(Ordering::Relaxed) == GATE_OPEN;
        if let Some((pos, _, pts)) = position.filter(|_| open) {
            if st.segment_pending {
                st.segment_pending = false;
                st.last_sample = Some(pos);
                // The first buffer of a segment renders as soon as the sinks preroll (and
                // after a flushing seek the pipeline's base time is not yet the new one).
                let playing = self.obj().current_state() == gst::State::Playing;
                let at = session::now();
                let rate = st.rate;
                let state = if playing {
                    PlayState::Playing
                } else {
                    PlayState::Paused
                };
                st.observe(
                    at,
                    Observation::Playback {
                        position_ns: pos,
                        state,
                        rate,
                    },
                );
                if self.shared.awaiting_preroll.swap(false, Ordering::SeqCst) {
                    st.observe(at, Observation::Prerolled { position_ns: pos });
                }
            } else if st
                .last_sample
                .is_none_or(|s| s.abs_diff(pos) >= SAMPLE_EVERY_NS)
            {
                st.last_sample = Some(pos);
                self.refresh_duration(&mut st);
                let at = self.render_wall(&st, pts);
                st.observe(at, Observation::Position { position_ns: pos });
            }
        }
        drop(st);
        gst::trace!(CAT, imp = self, "buffer at {:?}", position.map(|p| p.0));
        if self.shared.gate.load(Ordering::Relaxed) == GATE_OPEN {
            Ok(gst::FlowSuccess::Ok)
        } else {
            Ok(gst_base::BASE_TRANSFORM_FLOW_DROPPED)
        }
    }
}

impl Continuity {
    /// While the gate is closed (the resume decision, a resume or handoff seek), buffers
    /// are dropped, so nothing holds upstream back: short media can reach its end before
    /// the decision. Its EOS is kept until the gate opens (see [`Shared::open_gate`]) or a
    /// flush discards it; passing it on would end playback and mark the media finished.
    fn hold_eos(&self) -> bool {
        if self.shared.gate.load(Ordering::SeqCst) == GATE_OPEN {
            return false;
        }
        self.shared.eos_held.store(true, Ordering::SeqCst);
        // The gate may have opened in between, without seeing the flag: then it is ours.
        if self.shared.gate.load(Ordering::SeqCst) == GATE_OPEN
            && self.shared.eos_held.swap(false, Ordering::SeqCst)
        {
            return false;
        }
        gst::debug!(CAT, imp = self, "EOS before the resume decision: held");
        true
    }

    /// Start the device: the engine, the link and the store (NULL to READY).
    fn open_session(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        {
            let mut current = lock(&self.session);
            match current.take() {
                Some((made_from, session)) if made_from == settings => {
                    *current = Some((made_from, session));
                    return Ok(());
                }
                // Settings changed while in NULL: a new device session.
                Some((_, old)) => old.stop(STOP_WAIT),
                None => {}
            }
        }
        if let Err(reason) = continuity::wire::check_id(&settings.account) {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("Property account='{}' {reason}", settings.account)
            ));
        }
        let config_dir = settings
            .config_dir
            .as_ref()
            .map(PathBuf::from)
            .or_else(|| continuity::config::default_config_dir().ok());
        let device_id = match (&settings.device_id, &config_dir) {
            (Some(id), _) => {
                continuity::wire::check_id(id).map_err(|reason| {
                    gst::error_msg!(
                        gst::ResourceError::Settings,
                        ("Property device-id='{id}' {reason}")
                    )
                })?;
                id.clone()
            }
            (None, Some(dir)) => continuity::config::device_id(dir).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("Cannot create the device id: {e}"),
                    ["Set device-id or config-dir to a writable directory"]
                )
            })?,
            (None, None) => {
                return Err(gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("No config dir: HOME is not set"),
                    ["Set config-dir or device-id"]
                ));
            }
        };
        let broker = match continuity::net::discovery::resolve_broker(
            &settings.broker,
            continuity::net::discovery::AUTO_WAIT,
        ) {
            Ok((b, note)) => {
                if let Some(note) = note {
                    gst::info!(CAT, imp = self, "{note}");
                }
                Some(b)
            }
            Err(e) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Settings,
                    ("Invalid broker URL; playing without sharing: {e}")
                );
                None
            }
        };
        let device_name = settings
            .device_name
            .clone()
            .unwrap_or_else(continuity::config::host_name);
        let account = match (settings.encryption, &config_dir) {
            (Encryption::Off, _) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Settings,
                    ("Encryption is off: what plays, where and at which position goes over the \
                      broker as plain JSON, and anyone who can publish there can command \
                      handoffs")
                );
                None
            }
            (Encryption::Sealed, None) => {
                return Err(gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("No config dir for the account's keys: HOME is not set"),
                    ["Set config-dir (or encryption=off)"]
                ));
            }
            (Encryption::Sealed, Some(dir)) => Some(
                Account::open(dir, &settings.account, &device_id, &device_name)
                    .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("{e}")))?,
            ),
        };
        let mut engine = EngineConfig::new(
            &settings.account,
            Device {
                id: device_id.clone(),
                name: device_name,
                class: settings.device_class.into(),
            },
        );
        engine.heartbeat_ns = u64::from(settings.heartbeat_s) * 1_000_000_000;
        engine.drift_threshold_ns = u64::from(settings.drift_threshold_ms) * 1_000_000;
        if settings.automatic {
            engine.automatic_window_ns = Some(AUTOMATIC_WINDOW_NS);
        }
        let cfg = |store_dir| SessionConfig {
            node: NodeConfig {
                engine: engine.clone(),
                broker: broker.clone(),
                store_dir,
                link: None,
                account: account.clone(),
            },
            mode: settings.resume,
            advertise: settings.advertise,
            resume_timeout: Duration::from_millis(u64::from(settings.resume_timeout_ms)),
            broker_text: broker
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| settings.broker.clone()),
        };
        let obj = self.obj();
        let started = match Session::start(cfg(config_dir.clone()), &obj, self.shared.clone()) {
            Ok(s) => s,
            Err(e) => {
                // A store that cannot be opened costs durability, not playback.
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::OpenReadWrite,
                    ("Local store unavailable, resume points are kept on the broker only: {e}")
                );
                Session::start(cfg(None), &obj, self.shared.clone()).map_err(|e| {
                    gst::error_msg!(gst::ResourceError::Failed, ("Cannot start: {e}"))
                })?
            }
        };
        *lock(&self.session) = Some((settings.clone(), started));
        gst::info!(
            CAT,
            imp = self,
            "device {device_id} in account {} via {}",
            settings.account,
            settings.broker
        );
        Ok(())
    }

    /// The first buffer of a new stream: fix the media's identity, announce it, and look up
    /// where to resume it (holding preroll for the answer with `resume=auto`).
    fn media_started(&self, st: &mut Stream, position: Option<u64>) {
        st.new_stream = false;
        let obj = self.obj();
        let pad = obj.sink_pad();
        let mut q = gst::query::Uri::new();
        if pad.peer_query(&mut q)
            && let Some(uri) = q.uri()
        {
            st.media.uri = Some(uri.to_string());
        }
        self.refresh_duration(st);
        let (media_id, mode) = {
            let s = lock(&self.settings);
            (s.media_id.clone(), s.resume)
        };
        let Some(id) = st.identity(media_id.as_deref()) else {
            gst::debug!(CAT, imp = self, "stream without identity: not tracked");
            return;
        };
        gst::info!(CAT, imp = self, "media {id} ({:?})", st.media.title);
        st.media.id = id.clone();
        st.announced = true;
        let media = st.media.clone();
        st.observe(session::now(), Observation::MediaStarted(media));
        let handoff_at = self.shared.handoff_position.load(Ordering::SeqCst);
        if handoff_at != POSITION_NONE {
            // Media loaded for a handoff: preroll where the handoff needs it, not at a
            // resume point.
            self.shared.gate.store(GATE_HOLD, Ordering::SeqCst);
            if !st.send(ToPump::HandoffPreroll {
                position_ns: handoff_at,
            }) {
                self.shared.gate.store(GATE_OPEN, Ordering::SeqCst);
            }
            return;
        }
        let held_at = match (mode, position) {
            (ResumeMode::Off, _) | (_, None) => return,
            (ResumeMode::Auto, Some(p)) => Some(p),
            (ResumeMode::Ask, Some(_)) => None,
        };
        if held_at.is_some() {
            self.shared.app_seeked.store(false, Ordering::SeqCst);
            self.shared.gate.store(GATE_HOLD, Ordering::SeqCst);
        }
        if !st.send(ToPump::Lookup {
            media_id: id,
            held_at,
        }) {
            self.shared.gate.store(GATE_OPEN, Ordering::SeqCst);
        }
    }

    /// Ask upstream for the duration while it is unknown (demuxers often learn it after the
    /// first buffers); tell the engine once it is known.
    fn refresh_duration(&self, st: &mut Stream) {
        if st.media.duration_ns.is_some() {
            return;
        }
        let Some(d) = self
            .obj()
            .sink_pad()
            .peer_query_duration::<gst::ClockTime>()
            .map(|d| d.nseconds())
            .filter(|d| *d > 0)
        else {
            return;
        };
        st.media.duration_ns = Some(d);
        if st.announced {
            let update = continuity::model::Media {
                duration_ns: Some(d),
                ..Default::default()
            };
            st.observe(session::now(), Observation::MediaUpdated(update));
        }
    }

    /// The wall-clock instant at which the buffer with `pts` is rendered: now, corrected by
    /// how far ahead of the clock the buffer travels.
    fn render_wall(&self, st: &Stream, pts: gst::ClockTime) -> u64 {
        let now = session::now();
        let obj = self.obj();
        let (Some(seg), Some(clock), Some(base)) =
            (st.segment.as_ref(), obj.clock(), obj.base_time())
        else {
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

    /// Where playback is: the pipeline's answer (the sinks know what they rendered), else the
    /// last buffer's stream time.
    fn playback_position(&self) -> Option<u64> {
        session::top_level(&self.obj())
            .query_position::<gst::ClockTime>()
            .map(|p| p.nseconds())
            .or_else(|| self.shared.position())
    }

    fn playback(&self, position: Option<u64>, state: PlayState) {
        let st = lock(&self.stream);
        // After the end of stream, pausing or stopping does not move the position. While
        // the gate is closed the pipeline's position is not where playback will be (the
        // resume decision or seek is pending): the first buffer through the gate reports.
        if !st.announced || st.ended || self.shared.gate.load(Ordering::SeqCst) != GATE_OPEN {
            return;
        }
        if let Some(position_ns) = position {
            let rate = st.rate;
            st.observe(
                session::now(),
                Observation::Playback {
                    position_ns,
                    state,
                    rate,
                },
            );
        }
    }

    /// The `handoff-to` action signal: ask `target` (a device id or name) to take over this
    /// device's session. Returns the handoff id, or `None` without a session.
    fn handoff_to(&self, target: &str) -> Option<String> {
        let guard = lock(&self.session);
        let node = guard.as_ref()?.1.node();
        let (me, target) = node.with_engine(|e| {
            let dir = e.directory();
            let by_name = dir
                .devices
                .values()
                .find(|i| i.device.name == target)
                .map(|i| i.device.id.clone());
            (
                e.config().device.id.clone(),
                by_name.unwrap_or_else(|| target.to_owned()),
            )
        });
        Some(node.request_handoff(&target, &me))
    }

    /// The `handoff-failed` action signal: the application could not load what
    /// `continuity-handoff-incoming` asked for.
    fn handoff_load_failed(&self, reason: &str) {
        self.shared
            .handoff_position
            .store(POSITION_NONE, Ordering::SeqCst);
        if let Some((_, session)) = lock(&self.session).as_ref() {
            session.node().observe(Observation::LoadFailed {
                reason: reason.to_owned(),
            });
        }
    }

    /// The `resume` action signal: seek to the offered resume point.
    fn resume_offered(&self) -> bool {
        let Some(offer) = self.shared.take_offer() else {
            gst::info!(CAT, imp = self, "resume: nothing offered");
            return false;
        };
        let obj = self.obj();
        match session::seek(&session::top_level(&obj), offer.position_ns) {
            Ok(()) => {
                session::post(
                    &obj,
                    session::resumed(&offer.media_id, offer.position_ns, &offer.device),
                );
                true
            }
            Err(e) => {
                gst::warning!(CAT, imp = self, "resume seek failed: {e}");
                false
            }
        }
    }
}
