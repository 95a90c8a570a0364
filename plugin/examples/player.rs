//! A small player that embeds the `continuity` element, the way a media player would:
//! playbin with the element as its video filter, and the element's bus messages handled.
//!
//! ```text
//! cargo run -p gst-plugin-continuity --example player -- ~/Videos/film.ogg
//! cargo run -p gst-plugin-continuity --example player -- --ask --broker mqtt://nas:1883 URI
//! ```
//!
//! With `--ask` the element only offers the resume point (`continuity-resume-available`);
//! the player asks the person and emits the `resume` action signal on "yes".

use std::io::BufRead;

use gst::prelude::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut ask = false;
    let mut broker = None;
    let mut media = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ask" => ask = true,
            "--broker" => broker = args.next(),
            _ => media = Some(a),
        }
    }
    let Some(media) = media else {
        eprintln!("usage: player [--ask] [--broker URL] FILE|URI");
        std::process::exit(2);
    };
    gst::init().expect("GStreamer initialises");
    gstcontinuity::plugin_register_static().expect("the continuity plugin registers");

    let uri = if media.contains("://") {
        media
    } else {
        let path = std::fs::canonicalize(&media).unwrap_or_else(|e| {
            eprintln!("error: {media}: {e}");
            std::process::exit(2);
        });
        gst::glib::filename_to_uri(&path, None)
            .expect("a file URI")
            .to_string()
    };

    let mut filter = gst::ElementFactory::make("continuity")
        .property("device-name", "Example player")
        .property_from_str("resume", if ask { "ask" } else { "auto" });
    if let Some(b) = &broker {
        filter = filter.property("broker", b);
    }
    let filter = filter.build().expect("the continuity element");
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", &uri)
        .property("video-filter", &filter)
        .build()
        .expect("playbin");

    let bus = playbin.bus().unwrap();
    // Ctrl-C stops cleanly, so that the element records where playback stopped.
    let quit_bus = bus.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            let _ = quit_bus.post(gst::message::Application::new(gst::Structure::new_empty(
                "quit",
            )));
        }
    });
    playbin
        .set_state(gst::State::Playing)
        .expect("the pipeline starts");
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        use gst::MessageView;
        match msg.view() {
            MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                match s.name().as_str() {
                    "continuity-connection" => {
                        let connected = s.get::<bool>("connected").unwrap_or(false);
                        println!(
                            "[continuity] {}",
                            if connected {
                                "connected".to_owned()
                            } else {
                                format!(
                                    "offline: {}",
                                    s.get::<String>("reason").unwrap_or_default()
                                )
                            }
                        );
                    }
                    "continuity-resume-available" => {
                        let pos = s.get::<u64>("position").unwrap_or(0);
                        let device = s.get::<String>("device").unwrap_or_default();
                        println!(
                            "Continue from {} (left on {device})? [Y/n]",
                            gst::ClockTime::from_nseconds(pos).display()
                        );
                        let mut line = String::new();
                        let _ = std::io::stdin().lock().read_line(&mut line);
                        if !line.trim().eq_ignore_ascii_case("n") {
                            let _: bool = filter.emit_by_name("resume", &[]);
                        }
                    }
                    "continuity-resumed" => {
                        let pos = s.get::<u64>("position").unwrap_or(0);
                        println!(
                            "[continuity] continuing at {}",
                            gst::ClockTime::from_nseconds(pos).display()
                        );
                    }
                    _ => {}
                }
            }
            MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
            MessageView::Error(e) => {
                eprintln!("error: {} ({:?})", e.error(), e.debug());
                break;
            }
            MessageView::Eos(_) | MessageView::Application(_) => break,
            _ => {}
        }
    }
    playbin.set_state(gst::State::Null).unwrap();
}
