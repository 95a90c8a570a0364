//! Helpers for the element's tests: plugin set-up, a test clip made at test time, a player
//! that records what its sink renders, and a recorder of everything published on the broker.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use continuity::net::link::{BrokerUrl, Link, LinkConfig, LinkEvent, client_id};
use continuity::wire::{self, Body, SessionState};
use gst::prelude::*;

#[path = "../../../tests/common/mod.rs"]
pub mod brokers;

pub const FRAME: Duration = Duration::from_millis(40);
pub const WAIT: Duration = Duration::from_secs(15);
pub const SECOND: u64 = 1_000_000_000;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstcontinuity::plugin_register_static().expect("plugin registers");
    });
}

/// A 20 s clip made once per test binary: Theora video with a visible timecode and Vorbis
/// audio in Ogg, titled "Test Clip". 25 frames per second.
pub fn clip() -> &'static Path {
    static CLIP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &CLIP.get_or_init(|| make_clip(20)).1
}

/// A 3 s clip of the same kind, for runs that go to the end.
pub fn short_clip() -> &'static Path {
    static CLIP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &CLIP.get_or_init(|| make_clip(3)).1
}

fn make_clip(seconds: u64) -> (tempfile::TempDir, PathBuf) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.ogg");
    let desc = format!(
        "videotestsrc num-buffers={} ! video/x-raw,width=160,height=120,framerate=25/1 \
         ! timeoverlay ! theoraenc ! oggmux name=mux ! filesink location={} \
         audiotestsrc num-buffers={} ! audio/x-raw,rate=44100,channels=1 ! vorbisenc \
         ! taginject tags=\"title=\\\"Test Clip\\\",artist=Tester\" ! mux.",
        seconds * 25,
        path.display(),
        seconds * 44_100 / 1024 + 1
    );
    let p = gst::parse::launch(&desc).expect("clip pipeline");
    p.set_state(gst::State::Playing).unwrap();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("clip written in time");
    assert!(
        matches!(msg.view(), gst::MessageView::Eos(_)),
        "clip: {msg:?}"
    );
    p.set_state(gst::State::Null).unwrap();
    (dir, path)
}

pub fn clip_uri() -> String {
    format!("file://{}", clip().display())
}

/// A playbin with `continuity` as its video filter and fake sinks that render in real time.
/// Records the stream time of every video frame rendered.
pub struct Player {
    pub pipeline: gst::Element,
    pub element: gst::Element,
    pub rendered: mpsc::Receiver<u64>,
    pub last_rendered: Arc<Mutex<Option<u64>>>,
}

impl Player {
    /// `props`: element properties, e.g. `broker=mqtt://... config-dir=... resume=ask`.
    pub fn new(props: &str) -> Player {
        init();
        let element = make_continuity(props);
        let pipeline = gst::ElementFactory::make("playbin")
            .property("uri", clip_uri())
            .build()
            .unwrap();
        let vsink = gst::ElementFactory::make("fakesink")
            .property("sync", true)
            .property("signal-handoffs", true)
            .build()
            .unwrap();
        let asink = gst::ElementFactory::make("fakesink")
            .property("sync", true)
            .build()
            .unwrap();
        let (tx, rendered) = mpsc::channel();
        let last = Arc::new(Mutex::new(None));
        let last2 = last.clone();
        vsink.connect("handoff", false, move |args| {
            let buf = args[1].get::<gst::Buffer>().unwrap();
            let pad = args[2].get::<gst::Pad>().unwrap();
            let seg = pad
                .sticky_event::<gst::event::Segment>(0)
                .and_then(|s| s.segment().downcast_ref::<gst::ClockTime>().cloned());
            if let (Some(seg), Some(pts)) = (seg, buf.pts())
                && let Some(t) = seg.to_stream_time(pts)
            {
                *last2.lock().unwrap() = Some(t.nseconds());
                let _ = tx.send(t.nseconds());
            }
            None
        });
        pipeline.set_property("video-sink", &vsink);
        pipeline.set_property("audio-sink", &asink);
        pipeline.set_property("video-filter", &element);
        Player {
            pipeline,
            element,
            rendered,
            last_rendered: last,
        }
    }

    pub fn bus(&self) -> gst::Bus {
        self.pipeline.bus().unwrap()
    }

    /// Set a state and wait for it to be reached.
    pub fn set_state(&self, state: gst::State) {
        self.pipeline.set_state(state).expect("state change");
        let (res, cur, _) = self.pipeline.state(gst::ClockTime::from_seconds(15));
        assert!(
            res.is_ok() && cur == state,
            "{state:?} not reached: {res:?} {cur:?}"
        );
    }

    pub fn play(&self) {
        self.set_state(gst::State::Playing);
    }

    /// Stop without EOS, as gst-launch does on Ctrl-C: to PAUSED, then (once there, or after
    /// 5 s) to NULL. Straight from PLAYING to NULL, while the sinks were still prerolling
    /// the pause, GStreamer 1.22 hung once in a stress run (a queue's task and the
    /// deactivation of its pads waiting on each other).
    /// Stop as gst-launch does: to PAUSED first, then NULL (a straight PLAYING to NULL hung
    /// inside GStreamer twice in stress runs).
    pub fn stop(&self) {
        let _ = self.pipeline.set_state(gst::State::Paused);
        let _ = self.pipeline.state(gst::ClockTime::from_seconds(5));
        self.pipeline.set_state(gst::State::Null).unwrap();
    }

    /// Flushing, accurate seek of the whole pipeline; waits for it to complete.
    pub fn seek(&self, position_ns: u64) {
        self.pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::ClockTime::from_nseconds(position_ns),
            )
            .expect("seek");
        self.wait_async_done();
    }

    pub fn wait_async_done(&self) {
        let msg = self
            .bus()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(15),
                &[gst::MessageType::AsyncDone, gst::MessageType::Error],
            )
            .expect("async-done");
        assert!(
            matches!(msg.view(), gst::MessageView::AsyncDone(_)),
            "{msg:?}"
        );
    }

    /// The next rendered frame's stream time.
    pub fn next_frame(&self) -> u64 {
        self.rendered
            .recv_timeout(WAIT)
            .expect("a frame is rendered")
    }

    /// Drain rendered frames until one at or after `position_ns` (real-time playback).
    pub fn play_until(&self, position_ns: u64) -> u64 {
        let end = Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let t = self
                .rendered
                .recv_timeout(left)
                .expect("frames keep coming");
            if t >= position_ns {
                return t;
            }
        }
    }

    pub fn drain_frames(&self) {
        while self.rendered.try_recv().is_ok() {}
    }

    pub fn last_rendered(&self) -> u64 {
        self.last_rendered
            .lock()
            .unwrap()
            .expect("something rendered")
    }

    /// The first element message with this structure name, within `timeout`.
    pub fn element_message(&self, name: &str, timeout: Duration) -> Option<gst::Structure> {
        let end = Instant::now() + timeout;
        let bus = self.bus();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let msg = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(left.as_nanos() as u64),
                &[gst::MessageType::Element],
            )?;
            if let Some(s) = msg.structure()
                && s.name() == name
            {
                return Some(s.to_owned());
            }
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        // A player left PLAYING goes through PAUSED, as `stop` does; one stopped already
        // stays down (to PAUSED from NULL would start it again).
        let (_, current, pending) = self.pipeline.state(gst::ClockTime::ZERO);
        if current == gst::State::Playing || pending == gst::State::Playing {
            let _ = self.pipeline.set_state(gst::State::Paused);
            let _ = self.pipeline.state(gst::ClockTime::from_seconds(5));
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A `continuity` element with properties given as `name=value` pairs.
pub fn make_continuity(props: &str) -> gst::Element {
    let bin = gst::parse::launch(&format!("continuity {props}")).expect("continuity props");
    // parse::launch returns the element itself for a single element description.
    bin
}

/// Element properties for a device: its own config dir, the broker, an account.
pub fn device_props(broker: &BrokerUrl, account: &str, dir: &Path, name: &str) -> String {
    format!(
        "broker={broker} account={account} config-dir={} device-name={name}",
        dir.display()
    )
}

/// Pair the devices whose config dirs are given into `account` (all before any starts), as
/// `continuity pair` would: each trusts the others. Returns the first device's account.
pub fn pair(account: &str, dirs: &[&Path]) -> continuity::security::account::Account {
    let named: Vec<(&Path, &str)> = dirs.iter().map(|d| (*d, "test device")).collect();
    continuity::security::pair::pair_dirs(account, &named)
        .expect("devices pair")
        .swap_remove(0)
}

/// A received message: topic, payload, arrival, and the session state it carries (opened).
pub type Received = (String, Vec<u8>, Instant, Option<SessionState>);

/// Everything published under an account, as it arrives, opened with the account's keys
/// (read from the config dirs of the devices it listens to, which this pairs).
pub struct Recorder {
    pub rt: tokio::runtime::Runtime,
    link: Option<Link>,
    /// Every message, and a condition variable signalled at each arrival.
    pub messages: Arc<(Mutex<Vec<Received>>, Condvar)>,
}

impl Recorder {
    pub fn start(broker: &BrokerUrl, account: &str, dirs: &[&Path]) -> Recorder {
        let mut opener = pair(account, dirs).opener();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let messages = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut cfg = LinkConfig::new(broker.clone(), client_id("recorder"));
        cfg.subscriptions = vec![format!("{}/{account}/#", wire::PREFIX)];
        let (link, mut events) = rt.block_on(async { Link::spawn(cfg) }).unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let msgs = messages.clone();
        rt.spawn(async move {
            while let Some(ev) = events.recv().await {
                match ev {
                    LinkEvent::Connected => {
                        let _ = ready_tx.send(());
                    }
                    LinkEvent::Message { topic, payload, .. } => {
                        let session = match opener.decode(&topic, &payload).map(|m| m.body) {
                            Ok(Body::Session(s)) => Some(*s),
                            _ => None,
                        };
                        msgs.0
                            .lock()
                            .unwrap()
                            .push((topic, payload, Instant::now(), session));
                        msgs.1.notify_all();
                    }
                    LinkEvent::Down { .. } => {}
                }
            }
        });
        ready_rx.recv_timeout(WAIT).expect("recorder connects");
        // Retained messages from earlier tests of the same account arrive first.
        let r = Recorder {
            rt,
            link: Some(link),
            messages,
        };
        r.settle();
        r
    }

    /// Wait until nothing has arrived for 300 ms (at most `WAIT`).
    pub fn settle(&self) {
        let (lock, cv) = &*self.messages;
        let end = Instant::now() + WAIT;
        let mut guard = lock.lock().unwrap();
        while Instant::now() < end {
            let before = guard.len();
            let (g, timeout) = cv.wait_timeout(guard, Duration::from_millis(300)).unwrap();
            guard = g;
            if timeout.timed_out() && guard.len() == before {
                return;
            }
        }
    }

    pub fn count(&self) -> usize {
        self.messages.0.lock().unwrap().len()
    }

    /// Session states published since message index `from`.
    pub fn sessions_since(&self, from: usize) -> Vec<SessionState> {
        sessions(&self.messages.0.lock().unwrap()[from..])
    }

    /// Wait (at most `WAIT`) until `pred` holds for the session states published since
    /// `from`; returns them either way.
    pub fn wait_sessions(
        &self,
        from: usize,
        pred: impl Fn(&[SessionState]) -> bool,
    ) -> Vec<SessionState> {
        let (lock, cv) = &*self.messages;
        let end = Instant::now() + WAIT;
        let mut guard = lock.lock().unwrap();
        loop {
            let s = sessions(&guard[from..]);
            let left = end.saturating_duration_since(Instant::now());
            if pred(&s) || left.is_zero() {
                return s;
            }
            guard = cv.wait_timeout(guard, left).unwrap().0;
        }
    }

    pub fn bytes_since(&self, from: usize) -> usize {
        self.messages.0.lock().unwrap()[from..]
            .iter()
            .map(|(t, p, _, _)| t.len() + p.len())
            .sum()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            self.rt.block_on(link.shutdown(Duration::from_millis(100)));
        }
    }
}

fn sessions(msgs: &[Received]) -> Vec<SessionState> {
    msgs.iter().filter_map(|m| m.3.clone()).collect()
}
