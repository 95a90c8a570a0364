//! One `gst_check::Harness` test per observation rule: events and buffers pushed by hand,
//! what the element publishes read back from a real broker.

mod support;

use continuity::model::PlayState;
use continuity::wire::SessionState;
use gst::prelude::*;
use support::brokers::Mosquitto;
use support::{Recorder, SECOND};

struct Rig {
    _broker: Mosquitto,
    _dir: tempfile::TempDir,
    rec: Recorder,
    h: gst_check::Harness,
}

/// A harnessed `continuity` (resume off: the harness cannot seek) with extra properties.
fn rig(account: &str, extra: &[(&str, &str)]) -> Rig {
    support::init();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::start(&broker.url(), account, &[dir.path()]);
    let element = gst::ElementFactory::make("continuity")
        .property("broker", broker.url().to_string())
        .property("account", account)
        .property("config-dir", dir.path().to_str().unwrap())
        .property_from_str("resume", "off")
        .build()
        .unwrap();
    for (k, v) in extra {
        element.set_property_from_str(k, v);
    }
    let h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    Rig {
        _broker: broker,
        _dir: dir,
        rec,
        h,
    }
}

impl Rig {
    /// stream-start, caps and a TIME segment; then one buffer at `pts`.
    fn start(&mut self, caps: &str, segment: gst::FormattedSegment<gst::ClockTime>) {
        self.h.set_src_caps_str(caps);
        self.h.push_event(gst::event::Segment::new(&segment));
    }

    fn buffer(&mut self, pts: u64) {
        let mut b = gst::Buffer::with_size(16).unwrap();
        {
            let b = b.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_mseconds(40));
        }
        assert_eq!(self.h.push(b), Ok(gst::FlowSuccess::Ok));
        let _ = self.h.pull().unwrap();
    }

    fn wait(&self, pred: impl Fn(&SessionState) -> bool) -> SessionState {
        let all = self.rec.wait_sessions(0, |s| s.iter().any(&pred));
        all.into_iter()
            .rev()
            .find(|s| pred(s))
            .unwrap_or_else(|| panic!("no such session state was published"))
    }
}

fn segment(
    start_s: u64,
    time_s: u64,
    rate: f64,
    applied: f64,
) -> gst::FormattedSegment<gst::ClockTime> {
    let mut s = gst::FormattedSegment::<gst::ClockTime>::new();
    s.set_start(gst::ClockTime::from_seconds(start_s));
    s.set_time(gst::ClockTime::from_seconds(time_s));
    s.set_position(gst::ClockTime::from_seconds(start_s));
    s.set_rate(rate);
    s.set_applied_rate(applied);
    s
}

fn position(s: &SessionState) -> Option<u64> {
    s.anchor.map(|a| a.position_ns)
}

#[test]
fn position_is_stream_time_from_the_segment_and_the_timestamp() {
    let mut r = rig("h-pos", &[("media-id", "m1")]);
    // Running from 10 s of a segment whose stream time starts at 100 s.
    r.start("video/x-raw", segment(10, 100, 1.0, 1.0));
    r.buffer(12 * SECOND);
    let s = r.wait(|s| position(s) == Some(102 * SECOND));
    assert_eq!(s.anchor.unwrap().state, PlayState::Playing);
    assert_eq!(
        r.h.element().unwrap().property::<u64>("position"),
        102 * SECOND
    );
}

#[test]
fn tags_describe_the_media_and_identify_it_without_a_uri() {
    let mut r = rig("h-tags", &[]);
    r.start("audio/x-raw", segment(0, 0, 1.0, 1.0));
    let mut tags = gst::TagList::new();
    {
        let t = tags.get_mut().unwrap();
        t.add::<gst::tags::Title>(&"Some Song", gst::TagMergeMode::Replace);
        t.add::<gst::tags::Artist>(&"Some Band", gst::TagMergeMode::Replace);
        t.add::<gst::tags::Album>(&"Some Album", gst::TagMergeMode::Replace);
        t.add::<gst::tags::Duration>(
            &gst::ClockTime::from_seconds(180),
            gst::TagMergeMode::Replace,
        );
        t.add::<gst::tags::LanguageCode>(&"fr", gst::TagMergeMode::Replace);
        t.add::<gst::tags::AudioCodec>(&"Vorbis", gst::TagMergeMode::Replace);
    }
    r.h.push_event(gst::event::Tag::new(tags));
    r.buffer(0);
    let s = r.wait(|s| s.media.is_some());
    let m = s.media.unwrap();
    assert_eq!(m.id, "tags:some song:180");
    assert_eq!(m.title.as_deref(), Some("Some Song"));
    assert_eq!(m.artist.as_deref(), Some("Some Band"));
    assert_eq!(m.album.as_deref(), Some("Some Album"));
    assert_eq!(m.duration_ns, Some(180 * SECOND));
    assert_eq!(m.audio_tracks.len(), 1);
    assert_eq!(m.audio_tracks[0].language.as_deref(), Some("fr"));
    assert_eq!(m.audio_tracks[0].codec.as_deref(), Some("Vorbis"));
}

#[test]
fn tags_after_the_start_update_the_media() {
    let mut r = rig("h-late", &[("media-id", "radio")]);
    r.start("audio/x-raw", segment(0, 0, 1.0, 1.0));
    r.buffer(0);
    r.wait(|s| s.media.as_ref().is_some_and(|m| m.id == "radio"));
    let tags = gst::TagList::new();
    let mut tags = tags;
    tags.get_mut()
        .unwrap()
        .add::<gst::tags::Title>(&"Now Playing", gst::TagMergeMode::Replace);
    r.h.push_event(gst::event::Tag::new(tags));
    r.buffer(SECOND / 2);
    let s = r.wait(|s| {
        s.media
            .as_ref()
            .is_some_and(|m| m.title.as_deref() == Some("Now Playing"))
    });
    assert_eq!(s.media.unwrap().id, "radio", "the identity does not change");
}

#[test]
fn the_media_id_property_wins() {
    let mut r = rig("h-id", &[("media-id", "catalogue:42")]);
    r.start("video/x-raw", segment(0, 0, 1.0, 1.0));
    let mut tags = gst::TagList::new();
    tags.get_mut()
        .unwrap()
        .add::<gst::tags::Title>(&"Film", gst::TagMergeMode::Replace);
    r.h.push_event(gst::event::Tag::new(tags));
    r.buffer(0);
    let s = r.wait(|s| s.media.is_some());
    assert_eq!(s.media.unwrap().id, "catalogue:42");
}

#[test]
fn rate_and_applied_rate_make_the_anchor_rate() {
    let mut r = rig("h-rate", &[("media-id", "m")]);
    r.start("video/x-raw", segment(0, 0, 2.0, 1.0));
    r.buffer(0);
    r.wait(|s| s.anchor.is_some_and(|a| a.rate == 2.0));
    // A rate applied upstream (a scaletempo-like element) counts too.
    r.h.push_event(gst::event::FlushStart::new());
    r.h.push_event(gst::event::FlushStop::new(true));
    r.h.push_event(gst::event::Segment::new(&segment(5, 5, 1.0, 0.5)));
    r.buffer(5 * SECOND);
    let s = r.wait(|s| s.anchor.is_some_and(|a| a.rate == 0.5));
    assert_eq!(position(&s), Some(5 * SECOND));
}

#[test]
fn a_new_segment_is_one_new_anchor() {
    let mut r = rig("h-seg", &[("media-id", "m")]);
    r.start("video/x-raw", segment(0, 0, 1.0, 1.0));
    r.buffer(0);
    r.wait(|s| position(s) == Some(0));
    r.rec.settle();
    let before = r.rec.count();
    r.h.push_event(gst::event::FlushStart::new());
    r.h.push_event(gst::event::FlushStop::new(true));
    r.h.push_event(gst::event::Segment::new(&segment(50, 50, 1.0, 1.0)));
    r.buffer(50 * SECOND);
    r.buffer(50 * SECOND + 40_000_000);
    r.rec.settle();
    let anchors: Vec<_> = r
        .rec
        .sessions_since(before)
        .into_iter()
        .filter_map(|s| s.anchor)
        .collect();
    assert_eq!(anchors.len(), 1, "{anchors:?}");
    assert_eq!(anchors[0].position_ns, 50 * SECOND);
}

#[test]
fn eos_ends_the_session_at_the_last_buffer() {
    let mut r = rig("h-eos", &[("media-id", "m")]);
    r.start("video/x-raw", segment(0, 0, 1.0, 1.0));
    r.buffer(0);
    r.buffer(SECOND);
    r.h.push_event(gst::event::Eos::new());
    let s = r.wait(|s| s.anchor.is_some_and(|a| a.state == PlayState::Ended));
    // The end of the last buffer: 1 s + 40 ms.
    assert_eq!(position(&s), Some(SECOND + 40_000_000));
}

#[test]
fn buffers_are_never_a_message_each() {
    let mut r = rig("h-many", &[("media-id", "m")]);
    r.start("video/x-raw", segment(0, 0, 1.0, 1.0));
    // Connected first: while offline, retained states coalesce into the latest one (by
    // design), and the burst below could be over before the broker is reached.
    let element = r.h.element().unwrap();
    let (tx, connected) = std::sync::mpsc::channel();
    element.connect_notify(Some("connected"), move |e, _| {
        let _ = tx.send(e.property::<bool>("connected"));
    });
    if !element.property::<bool>("connected") {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !connected
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the element connects")
        {}
    }
    // 20 s of video pushed as fast as possible: far ahead of the wall clock, so the anchor
    // drifts, but positions are sampled once per second of stream time at most.
    for i in 0..500u64 {
        r.buffer(i * 40_000_000);
    }
    r.rec.settle();
    let n = r.rec.sessions_since(0).len();
    assert!(n >= 2, "the drift was published");
    assert!(n <= 25, "{n} session messages for 500 buffers");
}

#[test]
fn a_stream_collection_lists_audio_and_subtitle_tracks() {
    let mut r = rig("h-coll", &[("media-id", "m")]);
    r.start("video/x-raw", segment(0, 0, 1.0, 1.0));
    let track = |ty, lang: &str, codec: &str| {
        let mut tags = gst::TagList::new();
        {
            let t = tags.get_mut().unwrap();
            t.add::<gst::tags::LanguageCode>(&lang, gst::TagMergeMode::Replace);
            t.add::<gst::tags::AudioCodec>(&codec, gst::TagMergeMode::Replace);
        }
        let stream = gst::Stream::new(None, None, ty, gst::StreamFlags::empty());
        stream.set_tags(Some(&tags));
        stream
    };
    let collection = gst::StreamCollection::builder(None)
        .stream(track(gst::StreamType::AUDIO, "en", "Opus"))
        .stream(track(gst::StreamType::AUDIO, "de", "Opus"))
        .stream(track(gst::StreamType::TEXT, "fr", "WebVTT"))
        .build();
    r.h.push_event(gst::event::StreamCollection::new(&collection));
    r.buffer(0);
    let s = r.wait(|s| s.media.as_ref().is_some_and(|m| !m.audio_tracks.is_empty()));
    let m = s.media.unwrap();
    let langs: Vec<_> = m
        .audio_tracks
        .iter()
        .map(|t| t.language.clone().unwrap())
        .collect();
    assert_eq!(langs, ["en", "de"]);
    assert_eq!(m.subtitle_tracks[0].language.as_deref(), Some("fr"));
}

#[test]
fn an_upstream_that_cannot_carry_out_the_resume_seek_does_not_stall_playback() {
    support::init();
    let dir = tempfile::tempdir().unwrap();
    // No broker at all, resume=auto: the first buffer is held for the decision, the seek
    // back goes to the harness (which accepts it and does nothing), and playback must go
    // on regardless.
    let element = gst::ElementFactory::make("continuity")
        .property("broker", "mqtt://127.0.0.1:1")
        .property("config-dir", dir.path().to_str().unwrap())
        .property("media-id", "m")
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str("video/x-raw");
    let pushed_until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut passed = 0;
    let mut i = 0u64;
    while passed == 0 && std::time::Instant::now() < pushed_until {
        let mut b = gst::Buffer::with_size(1).unwrap();
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(40 * i));
        i += 1;
        assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
        passed += h.buffers_in_queue();
        if passed == 0 {
            // Elapsed time is the point: the decision's grace period runs out.
            let _ = h.try_pull_upstream_event();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert!(passed > 0, "buffers flow again after the grace period");
}
