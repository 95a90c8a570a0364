//! Resume with real pipelines (playbin, `video-filter=continuity`) on a clip made at test
//! time, through a real mosquitto on a free loopback port.

mod support;

use std::time::Duration;

use gst::prelude::*;

use support::brokers::Mosquitto;
use support::{FRAME, Player, SECOND, device_props};

/// One frame at 25 fps, in ns.
const FRAME_NS: u64 = 40_000_000;

fn within_a_frame(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= FRAME.as_nanos() as u64
}

/// Play from `from` until `until` (stream time) and stop without EOS. Returns the stream
/// time of the last frame rendered.
fn play_and_stop(props: &str, from: u64, until: u64) -> u64 {
    let p = Player::new(props);
    p.set_state(gst::State::Paused);
    if from > 0 {
        p.seek(from);
    }
    p.play();
    p.play_until(until);
    p.stop();
    p.last_rendered()
}

/// Start a new player and return the first frame it renders once PLAYING.
fn first_frame(p: &Player) -> u64 {
    p.play();
    p.next_frame()
}

/// The `continuity-resumed` message, posted once the resume seek is over (a pipeline set
/// to NULL while the element's seek still runs can deadlock inside GStreamer), at a
/// position within a frame of `stopped`.
fn resumed_near(p: &Player, stopped: u64) -> gst::Structure {
    let resumed = p
        .element_message("continuity-resumed", Duration::from_secs(5))
        .expect("continuity-resumed posted");
    assert!(within_a_frame(
        resumed.get::<u64>("position").unwrap(),
        stopped
    ));
    resumed
}

#[test]
fn stopping_and_starting_again_continues_within_a_frame() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let props = device_props(&broker.url(), "same", dir.path(), "Desk");
    let stopped = play_and_stop(&props, 2 * SECOND, 7 * SECOND);

    let p = Player::new(&props);
    let first = first_frame(&p);
    assert!(
        within_a_frame(first, stopped),
        "stopped at {stopped} ns, started again at {first} ns"
    );
    // Put down once its resume seek is over, as a player would.
    resumed_near(&p, stopped);
}

#[test]
fn a_second_device_continues_where_the_first_stopped() {
    let broker = Mosquitto::start();
    let phone_dir = tempfile::tempdir().unwrap();
    let tv_dir = tempfile::tempdir().unwrap();
    support::pair("family", &[phone_dir.path(), tv_dir.path()]);
    let phone = device_props(&broker.url(), "family", phone_dir.path(), "Phone");
    let tv = format!(
        "{} device-class=tv",
        device_props(&broker.url(), "family", tv_dir.path(), "TV")
    );
    let stopped = play_and_stop(&phone, 3 * SECOND, 8 * SECOND);

    let p = Player::new(&tv);
    let first = first_frame(&p);
    assert!(
        within_a_frame(first, stopped),
        "the phone stopped at {stopped} ns, the TV started at {first} ns"
    );
    let resumed = resumed_near(&p, stopped);
    assert_ne!(resumed.get::<String>("device").unwrap(), "");
}

#[test]
fn a_device_that_is_not_paired_neither_sees_nor_resumes_the_session() {
    let broker = Mosquitto::start();
    let phone_dir = tempfile::tempdir().unwrap();
    let stranger_dir = tempfile::tempdir().unwrap();
    // Same broker, same account name, but never paired: its own secret and roster.
    let phone = device_props(&broker.url(), "family", phone_dir.path(), "Phone");
    let stranger = device_props(&broker.url(), "family", stranger_dir.path(), "Stranger");
    play_and_stop(&phone, 3 * SECOND, 6 * SECOND);

    let p = Player::new(&stranger);
    assert!(
        first_frame(&p) < 2 * FRAME_NS,
        "an unpaired device starts at the beginning"
    );
    assert!(
        p.element_message("continuity-resumed", Duration::from_millis(500))
            .is_none()
    );
}

#[test]
fn resume_off_starts_at_the_beginning() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let props = device_props(&broker.url(), "off", dir.path(), "Desk");
    play_and_stop(&props, 5 * SECOND, 6 * SECOND);

    let p = Player::new(&format!("{props} resume=off"));
    assert!(first_frame(&p) < FRAME_NS, "resume=off starts at 0");
}

#[test]
fn resume_ask_offers_and_seeks_only_when_told() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let props = device_props(&broker.url(), "ask", dir.path(), "Desk");
    let stopped = play_and_stop(&props, 4 * SECOND, 6 * SECOND);

    let p = Player::new(&format!("{props} resume=ask"));
    p.set_state(gst::State::Paused);
    let offer = p
        .element_message("continuity-resume-available", Duration::from_secs(5))
        .expect("continuity-resume-available posted");
    assert!(within_a_frame(
        offer.get::<u64>("position").unwrap(),
        stopped
    ));
    assert_eq!(offer.get::<String>("media-id").unwrap(), "file:clip.ogg");
    // Nothing happens by itself: playback starts at 0.
    assert!(first_frame(&p) < 2 * FRAME_NS);

    let accepted: bool = p.element.emit_by_name("resume", &[]);
    assert!(accepted);
    p.wait_async_done();
    p.drain_frames();
    let t = p.next_frame();
    assert!(
        t.abs_diff(stopped) < 10 * FRAME_NS,
        "after the resume signal, frames come from {t} ns, not near {stopped} ns"
    );
    // A second emission has nothing to offer.
    let again: bool = p.element.emit_by_name("resume", &[]);
    assert!(!again);
    // Both are events of the device, kept in its store (`continuity stats` counts them).
    p.stop();
    drop(p);
    let store = continuity::store::Store::open_in(dir.path()).unwrap();
    let names: Vec<_> = store
        .events_since(0)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.as_str().starts_with("resume-"))
        .collect();
    use continuity::wire::EventName;
    assert_eq!(
        names,
        vec![EventName::ResumeOffered, EventName::ResumeTaken],
        "{names:?}"
    );
}

#[test]
fn eos_at_the_end_clears_the_resume_point() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let props = device_props(&broker.url(), "eos", dir.path(), "Desk");
    {
        let p = Player::new(&props);
        p.set_state(gst::State::Paused);
        p.seek(18 * SECOND);
        p.play();
        let msg = p
            .bus()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(15),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("EOS");
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        p.stop();
    }
    let p = Player::new(&props);
    assert!(
        first_frame(&p) < FRAME_NS,
        "finished media starts again at 0"
    );
}

#[test]
fn eos_far_from_the_end_keeps_the_resume_point() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let props = device_props(&broker.url(), "early", dir.path(), "Desk");
    let stopped = {
        let p = Player::new(&props);
        p.set_state(gst::State::Paused);
        p.seek(6 * SECOND);
        p.play();
        p.play_until(7 * SECOND);
        // What gst-launch -e does on Ctrl-C.
        p.pipeline.send_event(gst::event::Eos::new());
        let msg = p
            .bus()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(15),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("EOS");
        assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
        let last = p.last_rendered();
        p.stop();
        last
    };
    let p = Player::new(&props);
    let first = first_frame(&p);
    assert!(
        first.abs_diff(stopped) < 5 * FRAME_NS,
        "an interrupted EOS at {stopped} ns is not the end; started at {first} ns"
    );
}

#[test]
fn starting_the_same_media_on_another_device_takes_the_session_over() {
    let broker = Mosquitto::start();
    let phone_dir = tempfile::tempdir().unwrap();
    let tv_dir = tempfile::tempdir().unwrap();
    support::pair("pull", &[phone_dir.path(), tv_dir.path()]);
    let phone = Player::new(&device_props(
        &broker.url(),
        "pull",
        phone_dir.path(),
        "Phone",
    ));
    phone.play();
    phone.play_until(3 * SECOND);

    let tv = Player::new(&device_props(&broker.url(), "pull", tv_dir.path(), "TV"));
    let first = first_frame(&tv);
    let phone_now = phone.last_rendered();
    assert!(
        first.abs_diff(phone_now) < 150_000_000,
        "the TV started at {first} ns while the phone was at {phone_now} ns"
    );
    // The phone stops being the active device: it pauses.
    let bus = phone.bus();
    let paused = (0..100).any(|_| {
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::StateChanged],
        ) else {
            return phone.pipeline.current_state() == gst::State::Paused;
        };
        matches!(msg.view(), gst::MessageView::StateChanged(sc)
            if msg.src() == Some(phone.pipeline.upcast_ref()) && sc.current() == gst::State::Paused)
    });
    assert!(paused, "the phone kept playing");
}

/// Play the short clip's video through `filter` to the end; the number of frames rendered.
fn frames_to_the_end(filter: &str) -> u64 {
    support::init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! oggdemux ! theoradec ! {filter} \
         ! fakesink name=sink sync=true signal-handoffs=true",
        support::short_clip().display(),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = frames.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .connect("handoff", false, move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            None
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(15),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the clip ends");
    let rendered = frames.load(std::sync::atomic::Ordering::SeqCst);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    rendered
}

#[test]
fn short_media_that_ends_before_the_resume_decision_still_plays_whole() {
    // A broker that accepts the connection and never answers: the decision waits the whole
    // resume-timeout. (Found when the element dropped buffers while it decided: upstream,
    // held back by nothing, reached the end of the clip first.)
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let with_element = frames_to_the_end(&format!(
        "continuity broker=mqtt://127.0.0.1:{port} config-dir={} resume-timeout=1500",
        dir.path().display()
    ));
    let without = frames_to_the_end("identity");
    assert!(without > 70, "the clip has its frames: {without}");
    assert_eq!(with_element, without, "every frame played before the end");
}

#[test]
fn a_seek_by_the_application_during_the_resume_decision_wins() {
    // The decision waits the whole resume-timeout (a broker that never answers); the
    // application seeks meanwhile. Its position must stand: no resume seek, no seek back.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let p = Player::new(&format!(
        "broker=mqtt://127.0.0.1:{port} config-dir={} resume-timeout=1500",
        dir.path().display()
    ));
    p.set_state(gst::State::Paused);
    p.seek(18 * SECOND);
    p.drain_frames();
    p.play();
    let first = p.next_frame();
    assert!(
        first >= 18 * SECOND - FRAME_NS,
        "playback starts where the application seeked, not at {first} ns"
    );
    let msg = p
        .bus()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the last two seconds play to the end");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
}

/// What crossed the element's sink pad: buffers, and seeks going upstream, with the number
/// of buffers that had come in when the first one went out.
#[derive(Default)]
struct Crossings {
    buffers_in: usize,
    seeks: usize,
    in_when_first_out: Option<usize>,
}

fn count_crossings(element: &gst::Element) -> std::sync::Arc<std::sync::Mutex<Crossings>> {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Crossings::default()));
    let sink = element.static_pad("sink").unwrap();
    let src = element.static_pad("src").unwrap();
    let s = seen.clone();
    sink.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_UPSTREAM,
        move |_, info| {
            let mut c = s.lock().unwrap_or_else(|e| e.into_inner());
            match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => c.buffers_in += 1,
                Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Seek => {
                    c.seeks += 1
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    let s = seen.clone();
    src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let mut c = s.lock().unwrap_or_else(|e| e.into_inner());
        if c.in_when_first_out.is_none() {
            c.in_when_first_out = Some(c.buffers_in);
        }
        gst::PadProbeReturn::Ok
    });
    seen
}

#[test]
fn with_nothing_to_resume_the_first_buffer_plays_as_it_came_and_nothing_seeks() {
    // Found as a bug under load: the element dropped buffers while it waited for the resume
    // decision and then seeked back to them; a player stopped at that moment met the
    // element's seek and hung in set_state(NULL). The first buffer now waits for the
    // decision, upstream waits with it, and it plays as it came.
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let p = Player::new(&device_props(&broker.url(), "fresh", dir.path(), "Desk"));
    let seen = count_crossings(&p.element);
    assert!(
        first_frame(&p) < FRAME_NS,
        "a new media starts at its start"
    );
    let (seeks, in_when_first_out) = {
        let c = seen.lock().unwrap();
        (c.seeks, c.in_when_first_out)
    };
    assert_eq!(seeks, 0, "the element seeks only to resume");
    assert_eq!(
        in_when_first_out,
        Some(1),
        "the first buffer in is the first out: nothing decoded for nothing"
    );
}

/// A broker that lets clients connect and answers their pings, and nothing else: a resume
/// lookup against it waits its whole timeout.
fn mute_broker() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                while conn.read_exact(&mut byte).is_ok() {
                    let kind = byte[0] >> 4;
                    let mut len = 0usize;
                    for shift in (0..28).step_by(7) {
                        if conn.read_exact(&mut byte).is_err() {
                            return;
                        }
                        len |= usize::from(byte[0] & 0x7f) << shift;
                        if byte[0] & 0x80 == 0 {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    if conn.read_exact(&mut body).is_err() {
                        return;
                    }
                    let reply: &[u8] = match kind {
                        1 => &[0x20, 2, 0, 0],
                        12 => &[0xd0, 0],
                        _ => &[],
                    };
                    if conn.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_player_stopped_while_its_first_buffer_waits_for_the_decision_stops() {
    // The first buffer waits on the streaming thread (a minute here: the broker never
    // answers); stopping lets it go, as a sink's unlock does, or the pads could not be
    // deactivated until the wait was over.
    let port = mute_broker();
    let dir = tempfile::tempdir().unwrap();
    let p = Player::new(&format!(
        "broker=mqtt://127.0.0.1:{port} config-dir={} resume-timeout=60000",
        dir.path().display()
    ));
    let (arrived_tx, arrived) = std::sync::mpsc::channel();
    p.element
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let _ = arrived_tx.send(());
            gst::PadProbeReturn::Ok
        });
    assert_eq!(
        p.pipeline.set_state(gst::State::Paused),
        Ok(gst::StateChangeSuccess::Async)
    );
    arrived
        .recv_timeout(support::WAIT)
        .expect("the first buffer reaches the element");
    let (stopped_tx, stopped) = std::sync::mpsc::channel();
    let pipeline = p.pipeline.clone();
    std::thread::spawn(move || {
        let _ = stopped_tx.send(pipeline.set_state(gst::State::Null));
    });
    // Well inside the hold's limit (65 s): only a stop that waited it out fails here.
    let result = stopped
        .recv_timeout(Duration::from_secs(30))
        .expect("the player stops while the first buffer waits");
    assert_eq!(result, Ok(gst::StateChangeSuccess::Success));
    assert!(
        p.element_message("continuity-resumed", Duration::ZERO)
            .is_none()
    );
}
