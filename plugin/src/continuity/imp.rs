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
 * - `continuity-tracks-selected` (in a playbin, after a handoff): `audio-language`,
 *   `subtitle-language` (absent when subtitles are off), `message` (a sentence).
 * - `continuity-handoff-automatic` (`auto-handoff`): `device`, `name`, `direction` (`to`:
 *   the session goes there; `from`: it came here), `message` (a sentence). Emit
 *   `hand-back` to return it.
 * - `continuity-revoked`: this device was removed from its account (a warning comes with it);
 *   other devices no longer hear it, and playback goes on.
 *
 * Since: 0.1
 */
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use continuity::engine::Observation;
use continuity::engine::gate::{Decision, Gate};
use continuity::hlc::now_unix_ns;
use continuity::model::PlayState;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::CAT;
use super::network::{self, Network, POSITION_NONE, Shared};
use super::settings::Settings;
use super::stream::{Kind, SAMPLE_EVERY_NS, Stream, ToPump, Upstream};
use super::tracks::{self, Subtitles, Wanted};

/// Stopping waits at most this long for the final state to be stored and published.
const STOP_WAIT: Duration = Duration::from_millis(800);

/// How long a first buffer waits for the resume decision at most: the lookup's own timeout,
/// the clock measurement it may wait for, and the seek's grace, with room to spare. Only a
/// network side that is wedged ever reaches it.
fn hold_limit(resume_timeout_ms: u32) -> Duration {
    Duration::from_millis(u64::from(resume_timeout_ms)) + Duration::from_secs(5)
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
    network: Mutex<Option<(Settings, Network)>>,
    /// Where playback paused last (PLAYING to PAUSED), the best final position.
    paused_at: AtomicU64,
    /// In a playbin: the playbin and the handlers that follow its track selection.
    tracks_watch: Mutex<Option<(glib::WeakRef<gst::Element>, Vec<glib::SignalHandlerId>)>>,
    /// The latest selection asked for (this device's preference when media starts, then a
    /// resume's languages): an earlier one that gets to run later gives way.
    tracks_asked: AtomicU64,
    /// Held while a selection runs (on blocking threads only: never the streaming thread).
    selecting: Mutex<()>,
}

impl Drop for Continuity {
    /// Never waits: the goodbye goes on in the background (the final state went out at READY
    /// to NULL), whichever thread drops the last reference.
    fn drop(&mut self) {
        let network = self
            .network
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((_, network)) = network {
            network.stop();
        }
    }
}

fn disconnect((playbin, handlers): (glib::WeakRef<gst::Element>, Vec<glib::SignalHandlerId>)) {
    if let Some(playbin) = playbin.upgrade() {
        for h in handlers {
            playbin.disconnect(h);
        }
    }
}

/// `continuity-tracks-selected`: the languages a handoff selected, in words as well.
fn tracks_message(selection: &tracks::Selection, done: &tracks::Selected) -> gst::Structure {
    let lang = |t: &Option<continuity::model::Track>| {
        t.as_ref().map(|t| {
            t.language
                .clone()
                .unwrap_or_else(|| "an untagged language".into())
        })
    };
    let mut words = Vec::new();
    let mut s = gst::Structure::builder("continuity-tracks-selected");
    if let Some(l) = lang(&selection.audio) {
        words.push(format!("audio in {l}"));
        s = s.field("audio-language", &l);
    }
    match lang(&selection.subtitle) {
        Some(l) => {
            words.push(format!("subtitles in {l}"));
            s = s.field("subtitle-language", &l);
        }
        None => words.push("no subtitles".into()),
    }
    let text = words.join(", ");
    let mut sentence = text[..1].to_uppercase() + &text[1..] + ", as on the other device";
    for (what, missing) in [
        ("audio", &done.missing_audio),
        ("subtitles", &done.missing_subtitle),
    ] {
        if let Some(m) = missing {
            sentence.push_str(&format!(" (this media has no {what} in {m})"));
        }
    }
    s.field("message", sentence).build()
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
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(Settings::specs);
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            fn element(args: &[glib::Value]) -> super::Continuity {
                args[0].get().expect("signal arg is the element")
            }
            fn text(args: &[glib::Value]) -> String {
                args[1].get().expect("signal arg is a string")
            }
            let load_failed = |name: &str| {
                glib::subclass::Signal::builder(name)
                    .action()
                    .param_types([String::static_type()])
                    .class_handler(|args| {
                        element(args).imp().load_failed(&text(args));
                        None
                    })
                    .build()
            };
            vec![
                glib::subclass::Signal::builder("handoff-to")
                    .action()
                    .param_types([String::static_type()])
                    .return_type::<Option<String>>()
                    .class_handler(|args| {
                        Some(element(args).imp().handoff_to(&text(args)).to_value())
                    })
                    .build(),
                // Application to element: the handoff's media cannot be loaded (the bus
                // message continuity-handoff-failed goes the other way). `handoff-failed` is
                // its first name, kept for the applications that use it.
                load_failed("load-failed"),
                load_failed("handoff-failed"),
                // After an automatic handoff, on either device: the session goes back.
                glib::subclass::Signal::builder("hand-back")
                    .action()
                    .return_type::<Option<String>>()
                    .class_handler(|args| Some(element(args).imp().hand_back().to_value()))
                    .build(),
                glib::subclass::Signal::builder("resume")
                    .action()
                    .return_type::<bool>()
                    .class_handler(|args| {
                        let element = element(args);
                        let imp = element.imp();
                        let taken = network::resume_offered(&element, &imp.shared);
                        if taken {
                            imp.note(continuity::wire::EventName::ResumeTaken);
                        }
                        Some(taken.to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        lock(&self.settings).set(pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "connected" => self.shared.connected.load(Ordering::Relaxed).to_value(),
            "position" => self.shared.position.load(Ordering::Relaxed).to_value(),
            name => lock(&self.settings).get(name),
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
                if let Err(e) = self.open_network() {
                    self.post_error_message(e);
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => {
                // Like a sink's unlock: a first buffer held for the resume decision lets go,
                // so that the pads can be deactivated.
                self.shared.set_flushing(true);
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
                if let Some(p) = position {
                    // A handoff target's first frame plays now (the engine knows whether it
                    // waits for one).
                    lock(&self.stream)
                        .observe(now_unix_ns(), Observation::Started { position_ns: p });
                }
                self.playback(position, PlayState::Playing);
            }
            gst::StateChange::ReadyToNull => {
                // The final position goes out now (the application may exit right after);
                // the goodbye comes when the element goes away: players take their filters
                // to NULL and back when they change media, and the device stays online.
                let node = lock(&self.network).as_ref().map(|(_, n)| n.node_handle());
                if let Some(node) = node {
                    network::flush_blocking(&node, STOP_WAIT);
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
            && self.shared.gate(Gate::on_app_seek)
        {
            gst::info!(
                CAT,
                imp = self,
                "the application seeks during the resume decision: it wins"
            );
        }
        self.parent_src_event(event)
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let tx = lock(&self.network).as_ref().map(|(_, n)| n.sender());
        let Some(tx) = tx else {
            return Err(gst::error_msg!(
                gst::CoreError::StateChange,
                ("started without a network side (NULL to READY failed?)")
            ));
        };
        *lock(&self.stream) = Stream {
            tx: Some(tx),
            rate: 1.0,
            ..Stream::default()
        };
        self.shared.position.store(POSITION_NONE, Ordering::Relaxed);
        self.shared.set_flushing(false);
        self.shared.gate(Gate::reset);
        if self.shared.take_offer().is_some() {
            // Offered and never taken: the media stopped, or another one started.
            self.note(continuity::wire::EventName::ResumeDeclined);
        }
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
            st.observe(now_unix_ns(), Observation::Stopped { position_ns: p });
        }
        st.tx = None;
        drop(st);
        self.shared.gate(Gate::reset);
        self.unwatch_tracks();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::StreamStart(s) => {
                lock(&self.stream).reset_media(Some(s.stream_id().to_string()));
            }
            EventView::Caps(c) => lock(&self.stream).kind = Kind::from_caps(c.caps()),
            EventView::Segment(s) => lock(&self.stream).on_segment(s.segment()),
            EventView::Tag(t) => {
                let mut st = lock(&self.stream);
                if let Some(update) = st.apply_tags(t.tag())
                    && st.announced
                {
                    st.observe(now_unix_ns(), Observation::MediaUpdated(update));
                }
            }
            EventView::StreamCollection(c) => {
                let mut st = lock(&self.stream);
                if let Some(update) = st.apply_collection(&c.stream_collection())
                    && st.announced
                {
                    st.observe(now_unix_ns(), Observation::MediaUpdated(update));
                }
            }
            EventView::FlushStart(_) => {
                // Not serialized: it comes while a first buffer may be held for the resume
                // decision, and lets it go.
                self.shared.set_flushing(true);
            }
            EventView::FlushStop(_) => {
                // A seek's flush: buffers from the new position may pass, and an EOS held
                // back before it is gone.
                self.shared.set_flushing(false);
                self.shared.gate(Gate::on_flush_stop);
            }
            EventView::Eos(_) if self.shared.gate(Gate::on_eos) => {
                // Short media can end before the resume decision: kept until the gate opens.
                gst::debug!(CAT, imp = self, "EOS before the resume decision: held");
                return true;
            }
            EventView::Eos(_) => {
                let wants = lock(&self.stream).wants_duration();
                let d = wants.then(|| self.ask_duration()).flatten();
                let mut st = lock(&self.stream);
                st.take_duration(d, now_unix_ns());
                if st.announced
                    && let Some(p) = st.last_end.or_else(|| self.shared.position())
                {
                    st.ended = true;
                    st.observe(now_unix_ns(), Observation::Eos { position_ns: p });
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
        let position = st.stream_times(buf);
        if let Some((pos, end, _)) = position {
            self.shared.position.store(pos, Ordering::Relaxed);
            st.last_end = Some(end);
        }
        if st.new_stream {
            // Upstream is asked without the lock (only this thread takes it meanwhile).
            drop(st);
            let up = self.ask_upstream();
            st = lock(&self.stream);
            self.media_started(&mut st, up, position.map(|p| p.0));
            if !self.shared.passes() {
                // `resume=auto`: this buffer waits for the decision, without the stream lock
                // (report_tracks and the state changes take it).
                drop(st);
                let limit = hold_limit(lock(&self.settings).resume_timeout_ms);
                if self.shared.hold(limit) == network::Held::Flushing {
                    gst::debug!(CAT, imp = self, "the held first buffer is flushed");
                    return Err(gst::FlowError::Flushing);
                }
                st = lock(&self.stream);
            }
        }
        // Buffers held back for the resume decision are not playback: report nothing.
        if let Some((pos, _, pts)) = position.filter(|_| self.shared.passes()) {
            if st.segment_pending {
                let playing = self.obj().current_state() == gst::State::Playing;
                st.segment_started(pos, playing, now_unix_ns());
            } else if st
                .last_sample
                .is_none_or(|s| s.abs_diff(pos) >= SAMPLE_EVERY_NS)
            {
                st.last_sample = Some(pos);
                if st.wants_duration() {
                    drop(st);
                    let d = self.ask_duration();
                    st = lock(&self.stream);
                    st.take_duration(d, now_unix_ns());
                }
                let obj = self.obj();
                let at = st.render_wall(now_unix_ns(), obj.clock(), obj.base_time(), pts);
                st.observe(at, Observation::Position { position_ns: pos });
            }
        }
        drop(st);
        gst::trace!(CAT, imp = self, "buffer at {:?}", position.map(|p| p.0));
        if self.shared.passes() {
            Ok(gst::FlowSuccess::Ok)
        } else {
            Ok(gst_base::BASE_TRANSFORM_FLOW_DROPPED)
        }
    }
}

impl Continuity {
    /// Record an event of this device (a resume offered, taken or declined).
    fn note(&self, name: continuity::wire::EventName) {
        if let Some((_, network)) = lock(&self.network).as_ref() {
            network.note(name);
        }
    }

    /// Start the device: the engine, the link and the store (NULL to READY). A device made
    /// from the same settings lives on (see `change_state`).
    fn open_network(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        {
            let mut current = lock(&self.network);
            match current.take() {
                Some((made_from, network)) if made_from.same_device(&settings) => {
                    *current = Some((made_from, network));
                    return Ok(());
                }
                // Settings changed while in NULL: a new device.
                Some((_, old)) => old.stop(),
                None => {}
            }
        }
        let start = settings
            .start()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{e}")))?;
        for note in &start.notes {
            gst::info!(CAT, imp = self, "{note}");
        }
        for warning in &start.warnings {
            gst::element_imp_warning!(self, gst::ResourceError::Settings, ("{warning}"));
        }
        let obj = self.obj();
        let device_id = start.device_id.clone();
        let mut config = start.config;
        config.take_config_dir(&obj)?;
        let started = match Network::start(config.clone(), &obj, self.shared.clone()) {
            Ok(n) => n,
            Err(e) => {
                // A store that cannot be opened costs durability, not playback.
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::OpenReadWrite,
                    ("Local store unavailable, resume points are kept on the broker only: {e}")
                );
                config.node.store_dir = None;
                Network::start(config, &obj, self.shared.clone()).map_err(|e| {
                    gst::error_msg!(gst::ResourceError::Failed, ("Cannot start: {e}"))
                })?
            }
        };
        *lock(&self.network) = Some((settings.clone(), started));
        gst::info!(
            CAT,
            imp = self,
            "device {device_id} in account {} via {}",
            settings.account,
            settings.broker
        );
        Ok(())
    }

    /// What upstream says of the media (URI, duration, live), asked without the stream lock.
    fn ask_upstream(&self) -> Upstream {
        let pad = self.obj().sink_pad().clone();
        let mut uri = gst::query::Uri::new();
        let mut latency = gst::query::Latency::new();
        let live = pad.peer_query(&mut latency) && latency.result().0;
        Upstream {
            uri: pad
                .peer_query(&mut uri)
                .then(|| uri.uri().map(|u| u.to_string()))
                .flatten(),
            duration_ns: if live { None } else { self.ask_duration() },
            live,
        }
    }

    fn ask_duration(&self) -> Option<u64> {
        self.obj()
            .sink_pad()
            .peer_query_duration::<gst::ClockTime>()
            .map(|d| d.nseconds())
            .filter(|d| *d > 0)
    }

    /// The first buffer of a new stream: announce the media and ask the gate what to do
    /// (with `resume=auto`, it holds preroll for the resume decision).
    fn media_started(&self, st: &mut Stream, up: Upstream, position: Option<u64>) {
        let (media_id, mode) = {
            let s = lock(&self.settings);
            (s.media_id.clone(), s.resume)
        };
        let Some(id) = st.start_media(up, media_id.as_deref(), now_unix_ns()) else {
            gst::debug!(CAT, imp = self, "stream without identity: not tracked");
            return;
        };
        gst::info!(CAT, imp = self, "media {id} ({:?})", st.media.title);
        self.follow_tracks();
        let d = self
            .shared
            .gate(|g| g.on_media_started(&id, position, mode.into()));
        match d {
            Decision::Lookup { generation } => {
                if !st.send(ToPump::Lookup {
                    media_id: id,
                    generation,
                }) {
                    self.shared.gate(Gate::on_lookup_unavailable);
                }
            }
            Decision::None => {}
            // A handoff's media: preroll where the handoff needs it (the pump seeks).
            d => {
                if !st.send(ToPump::Decided(d)) {
                    self.shared.gate(Gate::on_seek_failed);
                }
            }
        }
    }

    /// In a playbin, for the media that starts: follow its track selection from now on, and
    /// select the languages a handoff brought, else this device's preferred ones.
    fn follow_tracks(&self) {
        let Some(playbin) = tracks::playbin_of(self.obj().upcast_ref()) else {
            return;
        };
        self.watch_tracks(&playbin);
        let (wanted, handoff) = match self.shared.take_wanted() {
            Some(w) => (w, true),
            None => {
                let s = lock(&self.settings);
                let w = Wanted {
                    audio: s.audio_language.clone(),
                    subtitle: Subtitles::from_setting(s.subtitle_language.as_deref()),
                };
                (w, false)
            }
        };
        self.select_tracks(wanted, handoff);
    }

    /// Select `wanted` in the element's playbin (off the streaming thread: the playbin takes
    /// its locks), then report what plays. A handoff's selection is told in words.
    pub(super) fn select_tracks(&self, wanted: Wanted, handoff: bool) {
        let element = self.obj().downgrade();
        let asked = self.tracks_asked.fetch_add(1, Ordering::SeqCst) + 1;
        network::RUNTIME.spawn_blocking(move || {
            let Some(element) = element.upgrade() else {
                return;
            };
            let Some(playbin) = tracks::playbin_of(element.upcast_ref()) else {
                return;
            };
            // Not while it prerolls: a switch then waits on the preroll it holds up.
            let _ = playbin.state(gst::ClockTime::from_seconds(10));
            let imp = element.imp();
            let selecting = lock(&imp.selecting);
            if imp.tracks_asked.load(Ordering::SeqCst) != asked {
                return;
            }
            let done = tracks::select(&playbin, &wanted);
            drop(selecting);
            let selection = element.imp().report_tracks(&playbin);
            if handoff {
                network::post(&element, tracks_message(&selection, &done));
            }
        });
    }

    /// Tell the engine which tracks the playbin has and plays.
    fn report_tracks(&self, playbin: &gst::Element) -> tracks::Selection {
        let selection = tracks::read(playbin);
        let st = lock(&self.stream);
        if st.announced {
            let now = now_unix_ns();
            st.observe(
                now,
                Observation::MediaUpdated(continuity::model::Media {
                    audio_tracks: selection.audio_tracks.clone(),
                    subtitle_tracks: selection.subtitle_tracks.clone(),
                    ..Default::default()
                }),
            );
            st.observe(
                now,
                Observation::Tracks {
                    audio: selection.audio.clone(),
                    subtitle: selection.subtitle.clone(),
                },
            );
        }
        selection
    }

    /// Follow the playbin's selection (a person picking another language or subtitles).
    fn watch_tracks(&self, playbin: &gst::Element) {
        let mut watch = lock(&self.tracks_watch);
        if watch
            .as_ref()
            .is_some_and(|(p, _)| p.upgrade().as_ref() == Some(playbin))
        {
            return;
        }
        if let Some(old) = watch.take() {
            disconnect(old);
        }
        let handlers = tracks::CHANGES
            .iter()
            .map(|signal| {
                let element = self.obj().downgrade();
                let changed = move || {
                    let element = element.clone();
                    network::RUNTIME.spawn_blocking(move || {
                        let Some(element) = element.upgrade() else {
                            return;
                        };
                        if let Some(playbin) = tracks::playbin_of(element.upcast_ref()) {
                            element.imp().report_tracks(&playbin);
                        }
                    });
                };
                match signal.strip_prefix("notify::") {
                    Some(property) => playbin.connect_notify(Some(property), move |_, _| changed()),
                    None => playbin.connect(signal, false, move |_| {
                        changed();
                        None
                    }),
                }
            })
            .collect();
        *watch = Some((playbin.downgrade(), handlers));
    }

    fn unwatch_tracks(&self) {
        if let Some(w) = lock(&self.tracks_watch).take() {
            disconnect(w);
        }
    }

    /// Where playback is: the pipeline's answer (the sinks know what they rendered), else the
    /// last buffer's stream time.
    fn playback_position(&self) -> Option<u64> {
        network::top_level(&self.obj())
            .query_position::<gst::ClockTime>()
            .map(|p| p.nseconds())
            .or_else(|| self.shared.position())
    }

    fn playback(&self, position: Option<u64>, state: PlayState) {
        // While the gate is closed the pipeline's position is not where playback will be
        // (the resume decision or seek is pending): the first buffer through the gate reports.
        if let Some(position_ns) = position.filter(|_| self.shared.passes()) {
            lock(&self.stream).playback(position_ns, state, now_unix_ns());
        }
    }

    /// The `handoff-to` action signal: ask `target` (a device id or name, the same rule as
    /// `continuity transfer`) to take over this device's session. Returns the handoff id, or
    /// `None` without a network side or when the name means several devices.
    fn handoff_to(&self, target: &str) -> Option<String> {
        let guard = lock(&self.network);
        match guard.as_ref()?.1.handoff_to(target) {
            Ok(id) => Some(id),
            Err(e) => {
                gst::element_imp_warning!(self, gst::LibraryError::Settings, ("handoff-to: {e}"));
                None
            }
        }
    }

    /// The `hand-back` action signal: undo the last automatic handoff. The handoff's id, or
    /// `None` when there was none.
    fn hand_back(&self) -> Option<String> {
        lock(&self.network).as_ref()?.1.hand_back()
    }

    /// The `load-failed` action signal (also `handoff-failed`): the application could not
    /// load what `continuity-handoff-incoming` asked for.
    fn load_failed(&self, reason: &str) {
        if let Some((_, network)) = lock(&self.network).as_ref() {
            network.load_failed(reason);
        }
    }
}
