//! `continuity play`: a real player — playbin with the `continuity` element — that shows a
//! live status line, resumes, answers handoffs, and with no media idles waiting for one.
//!
//! The element comes from the GStreamer registry: installed, on GST_PLUGIN_PATH, or the
//! `libgstcontinuity.so` built beside this executable (a cargo build puts both in
//! `target/<profile>/`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gst::prelude::*;

use continuity::model::DeviceClass;
use continuity::profile::Profile;

/// What `continuity play` is asked on its command line.
#[derive(Debug, clap::Args)]
pub struct PlayOptions {
    /// A file or URI; none to wait for a handoff.
    pub media: Option<String>,
    /// The name other devices show [default: the host name].
    #[arg(long)]
    pub device_name: Option<String>,
    /// phone, tablet, desktop, tv, speaker, car or other.
    #[arg(long, default_value = "desktop")]
    pub device_class: DeviceClass,
    /// Use this device id instead of the one kept in the config dir.
    #[arg(long)]
    pub device_id: Option<String>,
    /// Show the video in a window and play the sound (default: headless).
    #[arg(long)]
    pub window: bool,
    /// What to do with a resume point: auto, ask or off.
    #[arg(long, default_value = "auto", value_parser = ["auto", "ask", "off"])]
    pub resume: String,
    /// Save frames as PNG here: the last one on pausing, the first after a handoff.
    #[arg(long)]
    pub snapshot_dir: Option<PathBuf>,
    /// Do not advertise this player on the LAN (mDNS `_continuity._tcp.local.`).
    #[arg(long)]
    pub no_advertise: bool,
    /// Automatic mode: starting media that another device was playing when it went
    /// offline (in the last 30 minutes) continues from where it was then.
    #[arg(long)]
    pub automatic: bool,
    /// The audio language to select when media starts here and has it (e.g. fr); a
    /// handoff selects the source's language instead [default: the profile's].
    #[arg(long, value_name = "LANG")]
    pub audio_language: Option<String>,
    /// The subtitles to show when media starts here: a language, or none; a handoff shows
    /// the source's [default: the profile's, else the media's first when it has any].
    #[arg(long, value_name = "LANG")]
    pub subtitle_language: Option<String>,
    /// Play audio only: video is not decoded (the default of speaker and car).
    #[arg(long)]
    pub audio_only: bool,
    /// Continue on these devices by themselves: when one comes online while this one
    /// plays, the session goes there with no key pressed (`b` brings it back).
    /// Comma-separated names, ids or classes (`tv`).
    #[arg(long, value_name = "DEVICES")]
    pub auto_handoff_to: Option<String>,
}

/// Everything `continuity play` runs with: its options and the global ones.
pub struct PlayArgs {
    pub options: PlayOptions,
    pub broker: String,
    pub account: String,
    pub config_dir: Option<PathBuf>,
    /// Sealed messages (the default); `false` is `--insecure-plaintext`.
    pub encryption: bool,
    /// `-v` (1: info) or `-vv` (2: debug): what the element logs goes to stderr.
    pub verbose: u8,
}

/// Make the `continuity` element findable: the registry, else the plugin beside this
/// executable.
fn find_element() -> Result<(), String> {
    if gst::ElementFactory::find("continuity").is_some() {
        return Ok(());
    }
    // The plugin file itself, not a scan of the directory: a scan descends into every
    // folder beside the executable (a build tree holds hundreds of shared libraries, each
    // loaded once by the plugin scanner whenever it changed), which took seconds.
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        // `cargo run` of an example or a test binary lives one level further down.
        let candidates = [Some(dir.clone()), dir.parent().map(Path::to_owned)];
        for file in candidates
            .into_iter()
            .flatten()
            .map(|d| d.join("libgstcontinuity.so"))
        {
            if file.exists() {
                match gst::Plugin::load_file(&file) {
                    Ok(_) => break,
                    Err(e) => tracing::warn!("cannot load {}: {e}", file.display()),
                }
            }
        }
    }
    if gst::ElementFactory::find("continuity").is_some() {
        Ok(())
    } else {
        Err(
            "the continuity GStreamer plugin was not found: build it (cargo build -p \
             gst-plugin-continuity) or set GST_PLUGIN_PATH to the directory of \
             libgstcontinuity.so"
                .into(),
        )
    }
}

fn to_uri(media: &str) -> Result<String, String> {
    if media.contains("://") {
        return Ok(media.to_owned());
    }
    let path = std::fs::canonicalize(media).map_err(|e| format!("{media}: {e}"))?;
    gst::glib::filename_to_uri(&path, None)
        .map(|u| u.to_string())
        .map_err(|e| format!("{media}: {e}"))
}

fn clock(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!(
        "{}:{:02}:{:02}.{:01}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ns / 100_000_000 % 10
    )
}

/// A frame's time to the millisecond, as a timecode overlay shows it: `0:00:04.480`.
fn frame_clock(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!(
        "{}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ns / 1_000_000 % 1000
    )
}

/// `<what> 0:00:04.480` for a frame's time, or nothing when there was no frame.
fn at_frame(what: &str, frame_ns: Option<u64>) -> String {
    frame_ns
        .map(|ns| format!("{what} {}", frame_clock(ns)))
        .unwrap_or_default()
}

/// Wall-clock milliseconds, for log lines another process can line up.
fn stamp() -> String {
    let ns = continuity::hlc::now_unix_ns();
    format!("{}.{:03}", ns / 1_000_000_000, ns / 1_000_000 % 1000)
}

/// Where a player keeps its volume, in its config dir.
const VOLUME_FILE: &str = "volume";

/// What a line typed to the player asks.
#[derive(Debug, PartialEq)]
enum Command {
    /// `t`: continue on the device just suggested.
    Continue,
    /// `rate X`: play at X times the normal speed.
    Rate(f64),
    /// `b`: undo the automatic handoff just made.
    Back,
    /// `volume N`: this device's volume, in percent (kept for it, never handed over).
    Volume(u8),
    Nothing,
}

impl Command {
    fn parse(line: &str) -> Result<Command, String> {
        let mut words = line.split_whitespace();
        let help = "commands: t (continue on the suggested device), b (back, after an \
                    automatic handoff), rate X (play at X times the speed, 0.25 to 4), \
                    volume N (0 to 100 %)";
        match (words.next(), words.next(), words.next()) {
            (None, _, _) => Ok(Command::Nothing),
            (Some(t), None, _) if t.eq_ignore_ascii_case("t") => Ok(Command::Continue),
            (Some(b), None, _) if b.eq_ignore_ascii_case("b") => Ok(Command::Back),
            (Some("volume"), Some(x), None) => match x.trim_end_matches('%').parse::<u8>() {
                Ok(v) if v <= 100 => Ok(Command::Volume(v)),
                _ => Err(format!("volume {x}: a number from 0 to 100 ({help})")),
            },
            (Some("rate"), Some(x), None) => match x.parse::<f64>() {
                Ok(r) if (0.25..=4.0).contains(&r) => Ok(Command::Rate(r)),
                _ => Err(format!("rate {x}: a number from 0.25 to 4 ({help})")),
            },
            _ => Err(format!("'{line}'? {help}")),
        }
    }
}

struct Player {
    playbin: gst::Element,
    element: gst::Element,
    name: String,
    snapshot_dir: Option<PathBuf>,
    tty: bool,
}

impl Player {
    fn say(&self, what: &str) {
        if self.tty {
            print!("\r\x1b[2K");
        }
        println!("[{} {}] {what}", stamp(), self.name);
        let _ = std::io::stdout().flush();
    }

    fn status(&self) {
        if !self.tty {
            return;
        }
        let pos = self.playbin.query_position::<gst::ClockTime>();
        let dur = self.playbin.query_duration::<gst::ClockTime>();
        let (_, state, _) = self.playbin.state(gst::ClockTime::ZERO);
        let uri = self.playbin.property::<Option<String>>("current-uri");
        let title = uri
            .as_deref()
            .and_then(|u| u.rsplit('/').next())
            .unwrap_or("(idle: waiting for a handoff)");
        let connected = self.element.property::<bool>("connected");
        print!(
            "\r\x1b[2K{title}  {} / {}  {:?}{}",
            pos.map(|p| clock(p.nseconds()))
                .unwrap_or_else(|| "-".into()),
            dur.map(|p| clock(p.nseconds()))
                .unwrap_or_else(|| "-".into()),
            state,
            if connected { "" } else { "  (offline)" }
        );
        let _ = std::io::stdout().flush();
    }

    /// This device's volume: set, and kept in its config dir for its next start (a
    /// handoff never carries it over).
    fn set_volume(&self, percent: u8, dir: &Path) {
        self.playbin
            .set_property("volume", f64::from(percent) / 100.0);
        let kept = std::fs::write(dir.join(VOLUME_FILE), format!("{percent}\n"));
        match kept {
            Ok(()) => self.say(&format!("volume {percent} %")),
            Err(e) => self.say(&format!("volume {percent} % (not kept: {e})")),
        }
    }

    /// Play on from here at `rate` times the speed.
    fn set_rate(&self, rate: f64) {
        let Some(at) = self.playbin.query_position::<gst::ClockTime>() else {
            return self.say("nothing plays: no rate to set");
        };
        let ok = self
            .playbin
            .seek(
                rate,
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::SeekType::Set,
                at,
                gst::SeekType::None,
                gst::ClockTime::NONE,
            )
            .is_ok();
        if ok {
            self.say(&format!("rate x{rate}"));
        } else {
            self.say(&format!("this media cannot play at x{rate}"));
        }
    }

    /// Let go of the media: the player is idle, waiting for a handoff. playsink lets go of
    /// its filter at READY (the element, or the bin that holds it, has no parent any more):
    /// what the element (the device) posts must still reach this loop until playbin adopts
    /// it again, as when idle from the start.
    fn unload(&self, bus: &gst::Bus) {
        let _ = self.playbin.set_state(gst::State::Ready);
        let mut top: gst::Element = self.element.clone();
        while let Some(parent) = top.parent().and_then(|p| p.downcast::<gst::Element>().ok()) {
            top = parent;
        }
        if top != self.playbin {
            top.set_bus(Some(bus));
        }
    }

    /// The stream time of the frame the video sink shows now.
    fn frame_ns(&self) -> Option<u64> {
        let sample = self.playbin.property::<Option<gst::Sample>>("sample")?;
        let pts = sample.buffer()?.pts()?;
        let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
        segment.to_stream_time(pts).map(gst::ClockTime::nseconds)
    }

    /// Write the frame the video sink shows now as `<dir>/<name>-<what>.png`.
    fn snapshot(&self, what: &str) {
        let Some(dir) = &self.snapshot_dir else {
            return;
        };
        let Some(sample) = self.playbin.property::<Option<gst::Sample>>("sample") else {
            self.say("no frame to save yet");
            return;
        };
        let caps = gst::Caps::builder("image/png").build();
        let png = match gst_video::convert_sample(
            &sample,
            &caps,
            Some(gst::ClockTime::from_seconds(5)),
        ) {
            Ok(png) => png,
            Err(e) => return self.say(&format!("cannot convert the frame: {e}")),
        };
        let Some(buf) = png.buffer() else { return };
        let Ok(map) = buf.map_readable() else { return };
        let file = dir.join(format!("{}-{what}.png", self.name.to_lowercase()));
        match std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&file, map.as_slice())) {
            Ok(()) => self.say(&format!("saved {}", file.display())),
            Err(e) => self.say(&format!("cannot write {}: {e}", file.display())),
        }
    }
}

/// Set or clear playbin flags by nick ("video", "text").
fn set_flags(playbin: &gst::Element, nicks: &[&str], on: bool) {
    let flags = playbin.property_value("flags");
    let Some(class) = gst::glib::FlagsClass::with_type(flags.type_()) else {
        return;
    };
    let Some(mut builder) = class.builder_with_value(flags) else {
        return;
    };
    for nick in nicks {
        builder = if on {
            builder.set_by_nick(nick)
        } else {
            builder.unset_by_nick(nick)
        };
    }
    if let Some(v) = builder.build() {
        playbin.set_property_from_value("flags", &v);
    }
}

/// The decoders in the pipeline, by factory name ("vorbisdec, vp8dec").
fn decoders(playbin: &gst::Element) -> Vec<String> {
    let Some(bin) = playbin.downcast_ref::<gst::Bin>() else {
        return Vec::new();
    };
    let mut names: Vec<String> = bin
        .iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.factory())
        .filter(|f| {
            f.metadata(gst::ELEMENT_METADATA_KLASS).is_some_and(|k| {
                let k: Vec<&str> = k.split('/').collect();
                k.contains(&"Decoder") && !k.contains(&"Bin")
            })
        })
        .map(|f| f.name().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// With `-v`/`-vv` (and no GST_DEBUG of the user's own), print the element's debug category
/// on stderr like the rest of the command's log: the player's refusals, reconnects and
/// repairs are logged there, by the plugin's own copy of the library.
fn show_element_log(verbose: u8) {
    if verbose == 0 || std::env::var_os("GST_DEBUG").is_some() {
        return;
    }
    let threshold = if verbose == 1 {
        gst::DebugLevel::Info
    } else {
        gst::DebugLevel::Debug
    };
    gst::log::remove_default_log_function();
    gst::log::set_active(true);
    gst::log::set_threshold_for_name("continuity", threshold);
    gst::log::add_log_function(
        |category, level, _file, _function, _line, _object, message| {
            if category.name() != "continuity" {
                return;
            }
            let tag = match level {
                gst::DebugLevel::Error => "ERROR",
                gst::DebugLevel::Warning => " WARN",
                gst::DebugLevel::Info => " INFO",
                gst::DebugLevel::Debug => "DEBUG",
                _ => "TRACE",
            };
            if let Some(text) = message.get() {
                eprintln!("{tag} {text}");
            }
        },
    );
}

pub fn run(args: PlayArgs) -> Result<(), String> {
    gst::init().map_err(|e| format!("GStreamer: {e}"))?;
    show_element_log(args.verbose);
    find_element()?;
    let uri = args.options.media.as_deref().map(to_uri).transpose()?;
    let dir = match &args.config_dir {
        Some(d) => d.clone(),
        None => continuity::config::default_config_dir().map_err(|e| e.to_string())?,
    };
    let mut profile = Profile::load(args.options.device_class, &dir).map_err(|e| e.to_string())?;
    if args.options.audio_only {
        profile.video = false;
    }
    let audio_language = args
        .options
        .audio_language
        .clone()
        .or(profile.audio_language);
    let subtitle_language = args
        .options
        .subtitle_language
        .clone()
        .or(profile.subtitle_language);

    let element = gst::ElementFactory::make("continuity")
        .property("broker", &args.broker)
        .property("account", &args.account)
        .property_from_str("device-class", args.options.device_class.as_str())
        .property_from_str("resume", &args.options.resume)
        .property("advertise", !args.options.no_advertise)
        .property("automatic", args.options.automatic)
        .property_from_str("encryption", if args.encryption { "sealed" } else { "off" })
        .build()
        .map_err(|e| format!("continuity element: {e}"))?;
    if let Some(dir) = &args.config_dir {
        element.set_property("config-dir", dir.to_string_lossy().to_string());
    }
    if let Some(name) = &args.options.device_name {
        element.set_property("device-name", name);
    }
    if let Some(id) = &args.options.device_id {
        element.set_property("device-id", id);
    }
    if let Some(l) = &audio_language {
        element.set_property("audio-language", l);
    }
    if let Some(list) = &args.options.auto_handoff_to {
        element.set_property("auto-handoff", list);
    }
    if let Some(l) = &subtitle_language {
        element.set_property("subtitle-language", l);
    }
    let playbin = gst::ElementFactory::make("playbin")
        .build()
        .map_err(|e| format!("playbin: {e} (install gstreamer1.0-plugins-base)"))?;
    let (video, audio) = if args.options.window {
        ("autovideosink", "autoaudiosink")
    } else {
        ("fakesink", "fakesink")
    };
    let vsink = gst::ElementFactory::make(video)
        .build()
        .map_err(|e| format!("{video}: {e}"))?;
    let asink = gst::ElementFactory::make(audio)
        .build()
        .map_err(|e| format!("{audio}: {e}"))?;
    if !args.options.window {
        vsink.set_property("sync", true);
        asink.set_property("sync", true);
    }
    playbin.set_property("video-sink", &vsink);
    playbin.set_property("audio-sink", &asink);
    if profile.video {
        playbin.set_property("video-filter", &element);
    } else {
        // Audio only: no video (nor subtitles on it) is decoded, and the element follows
        // the sound.
        set_flags(&playbin, &["video", "text"], false);
        playbin.set_property("audio-filter", &element);
        // The flags alone leave decodebin decoding video that nothing shows: it exposes the
        // encoded video (and subtitle) streams instead of plugging their decoders.
        playbin.connect("element-setup", false, |args| {
            let element = args[1].get::<gst::Element>().ok()?;
            if element
                .factory()
                .is_some_and(|f| f.name() == "uridecodebin")
            {
                element.connect("autoplug-select", false, |args| {
                    let factory = args[3].get::<gst::ElementFactory>().ok()?;
                    let klass = factory.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or("");
                    let picture = klass.contains("Decoder")
                        && (klass.contains("Video")
                            || klass.contains("Image")
                            || klass.contains("Subtitle"));
                    // GstAutoplugSelectResult: 0 try, 1 expose.
                    let class = gst::glib::EnumClass::with_type(gst::glib::Type::from_name(
                        "GstAutoplugSelectResult",
                    )?)?;
                    class.to_value(if picture { 1 } else { 0 })
                });
            }
            None
        });
    }

    // The volume this device had last time.
    let mut kept_volume = None;
    match std::fs::read_to_string(dir.join(VOLUME_FILE)) {
        _ if !dir.is_dir() => {}
        Ok(text) => match text.trim().parse::<u8>() {
            Ok(v) if v <= 100 => {
                playbin.set_property("volume", f64::from(v) / 100.0);
                kept_volume = Some(v);
            }
            _ => eprintln!(
                "warning: {}: '{}' is not a volume from 0 to 100; playing at full volume",
                dir.join(VOLUME_FILE).display(),
                text.trim()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("warning: {}: {e}", dir.join(VOLUME_FILE).display()),
    }
    let player = Player {
        name: args
            .options
            .device_name
            .clone()
            .unwrap_or_else(continuity::config::host_name),
        playbin: playbin.clone(),
        element,
        snapshot_dir: args.options.snapshot_dir.clone(),
        tty: std::io::stdout().is_terminal(),
    };

    if let Some(v) = kept_volume {
        player.say(&format!("volume {v} % (this device's own)"));
    }

    // Ctrl-C and SIGTERM stop cleanly: the element records where playback stopped.
    let (quit_tx, quit_rx) = mpsc::channel::<()>();
    let bus = playbin.bus().expect("a pipeline has a bus");
    {
        let bus = bus.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("signal runtime");
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let mut term = signal(SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            });
            let _ = quit_tx.send(());
            let _ = bus.post(gst::message::Application::new(gst::Structure::new_empty(
                "continuity-quit",
            )));
        });
    }

    match &uri {
        Some(uri) => {
            playbin.set_property("uri", uri);
            playbin
                .set_state(gst::State::Playing)
                .map_err(|_| format!("cannot play {uri}"))?;
            player.say(&format!("opening {uri}"));
        }
        None => {
            playbin
                .set_state(gst::State::Ready)
                .map_err(|_| "cannot start the player".to_owned())?;
            // playbin adds its video filter only once it has a stream: start the element
            // (the device) ourselves so that it is online and can be handed a session. Until
            // playbin adopts it, its messages come on the pipeline's bus all the same.
            player.element.set_bus(Some(&bus));
            player.element.set_state(gst::State::Ready).map_err(|_| {
                // Why, as the element said it (the same reason as when it plays media).
                bus.pop_filtered(&[gst::MessageType::Error])
                    .and_then(|m| match m.view() {
                        gst::MessageView::Error(e) => Some(e.error().to_string()),
                        _ => None,
                    })
                    .unwrap_or_else(|| "cannot start the continuity element".to_owned())
            })?;
            player.say("idle: waiting for a handoff");
        }
    }

    // The device last suggested ("the TV is on"), which `t` hands off to.
    let mut suggested: Option<String> = None;
    {
        // Commands, a line each on the terminal or stdin (see `Command`).
        let bus = bus.clone();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines().map_while(Result::ok) {
                let s = gst::Structure::builder("continuity-command")
                    .field("line", line.trim())
                    .build();
                let _ = bus.post(gst::message::Application::new(s));
            }
        });
    }
    let mut handoff_loading = false;
    let mut told_decoders: Option<String> = None;
    // The frame a handoff prerolled: the first the target shows at the switch.
    let mut handoff_frame: Option<u64> = None;
    let mut last_status = Instant::now();
    let mut was_playing = false;
    let mut failed = None;
    // The media of the command line has not played yet: an error now ends the command.
    let mut own_media_pending = uri.is_some();
    // The last handoff whose load brought nothing in time, and after how long.
    let mut stalled: Option<(String, u64)> = None;
    loop {
        if quit_rx.try_recv().is_ok() {
            break;
        }
        let msg = bus.timed_pop(gst::ClockTime::from_mseconds(250));
        if last_status.elapsed() >= Duration::from_millis(250) {
            player.status();
            last_status = Instant::now();
        }
        let Some(msg) = msg else { continue };
        use gst::MessageView;
        match msg.view() {
            MessageView::Application(a)
                if a.structure().is_some_and(|s| s.name() == "continuity-quit") =>
            {
                break;
            }
            MessageView::Application(a)
                if a.structure()
                    .is_some_and(|s| s.name() == "continuity-command") =>
            {
                let line = a
                    .structure()
                    .and_then(|s| s.get::<String>("line").ok())
                    .unwrap_or_default();
                match Command::parse(&line) {
                    Ok(Command::Continue) => match suggested.take() {
                        Some(device) => {
                            player.say("continuing there");
                            let _ = player
                                .element
                                .emit_by_name::<Option<String>>("handoff-to", &[&device]);
                        }
                        None => player.say("nothing to continue on: no device was suggested"),
                    },
                    Ok(Command::Rate(rate)) => player.set_rate(rate),
                    Ok(Command::Volume(v)) => player.set_volume(v, &dir),
                    Ok(Command::Back) => {
                        let id = player
                            .element
                            .emit_by_name::<Option<String>>("hand-back", &[]);
                        match id {
                            Some(_) => player.say("going back"),
                            None => player.say("nothing to go back from: no automatic handoff"),
                        }
                    }
                    Ok(Command::Nothing) => {}
                    Err(e) => player.say(&e),
                }
            }
            MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                match s.name().as_str() {
                    "continuity-handoff-incoming" => {
                        let uri = s.get::<String>("uri").unwrap_or_default();
                        let pos = s.get::<u64>("position").unwrap_or(0);
                        let title = s.get::<String>("title").unwrap_or_else(|_| uri.clone());
                        handoff_loading = true;
                        own_media_pending = false;
                        player.say(&format!("handoff incoming: {title} at {}", clock(pos)));
                        if s.get::<bool>("loaded").unwrap_or(false) {
                            // The element seeks the media it already has.
                            if was_playing {
                                let _ = playbin.set_state(gst::State::Paused);
                            }
                            continue;
                        }
                        let _ = playbin.set_state(gst::State::Ready);
                        playbin.set_property("uri", &uri);
                        if playbin.set_state(gst::State::Paused).is_err() {
                            player
                                .element
                                .emit_by_name::<()>("load-failed", &[&"cannot load the media"]);
                        }
                    }
                    "continuity-handoff-complete" => {
                        let latency = s.get::<u64>("latency").unwrap_or(0);
                        let err = s.get::<i64>("position-error").unwrap_or(0);
                        let offset = s.get::<i64>("clock-offset").unwrap_or(0);
                        let prerolls = match s.get::<u32>("prerolls") {
                            Ok(1) => " (one preroll)".to_owned(),
                            Ok(n) => format!(" ({n} prerolls)"),
                            Err(_) => String::new(),
                        };
                        player.say(&format!(
                            "handoff complete: playing {:.1} ms after the request{prerolls}, \
                             position error {:+.1} ms, clock offset {:+.1} ms{}",
                            latency as f64 / 1e6,
                            err as f64 / 1e6,
                            offset as f64 / 1e6,
                            at_frame(", first frame", handoff_frame.take())
                        ));
                        player.snapshot("first-after-handoff");
                    }
                    "continuity-load-stalled" => {
                        let handoff = s.get::<String>("handoff").unwrap_or_default();
                        let after = s.get::<u64>("after").unwrap_or(0);
                        stalled = Some((handoff, after));
                    }
                    "continuity-handoff-failed" => {
                        let reason = s.get::<String>("reason").unwrap_or_default();
                        let handoff = s.get::<String>("handoff").unwrap_or_default();
                        let why = match stalled.take() {
                            Some((h, after)) if h == handoff => {
                                format!(": no data within {:.0} s", after as f64 / 1e9)
                            }
                            _ => String::new(),
                        };
                        player.say(&format!("handoff failed: {reason}{why}"));
                        if handoff_loading {
                            handoff_loading = false;
                            player.unload(&bus);
                        }
                    }
                    "continuity-revoked" => {
                        player.say(
                            "this device was removed from the account: other devices no \
                             longer hear it (pair it again to rejoin)",
                        );
                    }
                    "continuity-tracks-selected" => {
                        if let Ok(m) = s.get::<String>("message") {
                            player.say(&m);
                        }
                    }
                    "continuity-handoff-automatic" => {
                        if let Ok(m) = s.get::<String>("message") {
                            player.say(&format!("{m}: b, then Enter, to go back"));
                        }
                    }
                    "continuity-handoff-suggested" => {
                        let name = s.get::<String>("name").unwrap_or_default();
                        suggested = s.get::<String>("device").ok();
                        player.say(&format!("{name} is on: continue there? (t, then Enter)"));
                    }
                    "continuity-session-moved" => {
                        let to = s
                            .get::<String>("name")
                            .or_else(|_| s.get::<String>("device"))
                            .unwrap_or_default();
                        player.say(&format!("the session moved to {to}: now playing there"));
                    }
                    "continuity-resumed" => {
                        let pos = s.get::<u64>("position").unwrap_or(0);
                        player.say(&format!("resumed at {}", clock(pos)));
                    }
                    "continuity-connection" if s.get::<bool>("connected").unwrap_or(false) => {
                        player.say("connected");
                    }
                    _ => {}
                }
            }
            MessageView::AsyncDone(_) if handoff_loading => {
                // Read before the switch: once playing, the sink shows the next frames.
                handoff_frame = player.frame_ns();
            }
            MessageView::StateChanged(sc) if sc.src().map(|s| s == &playbin).unwrap_or(false) => {
                let now_playing = sc.current() == gst::State::Playing;
                if was_playing && sc.current() == gst::State::Paused {
                    player.say(&format!(
                        "paused{}",
                        at_frame(" at frame", player.frame_ns())
                    ));
                    player.snapshot("last-before-pause");
                }
                if now_playing && !was_playing {
                    handoff_loading = false;
                    own_media_pending = false;
                    player.say("playing");
                    // Once per media: what decodes it (a speaker's has no video decoder).
                    let uri = playbin.property::<Option<String>>("current-uri");
                    if uri != told_decoders {
                        let list = decoders(&playbin);
                        player.say(&format!(
                            "decoders: {}",
                            if list.is_empty() {
                                "none".into()
                            } else {
                                list.join(", ")
                            }
                        ));
                        told_decoders = uri;
                    }
                }
                was_playing = now_playing;
            }
            MessageView::Eos(_) => {
                player.say("end of the media; waiting for a handoff");
                player.unload(&bus);
                was_playing = false;
            }
            MessageView::Warning(w) => player.say(&format!("warning: {}", w.error())),
            MessageView::Error(e) => {
                if own_media_pending {
                    // The media of the command line cannot play: the command failed.
                    failed = Some(e.error().to_string());
                    break;
                }
                // Anything else (a handoff's load, a media that broke while playing, a
                // download that gave up after its handoff did) leaves this device up and
                // idle: it is a TV waiting for the next handoff.
                player.say(&format!("error: {}; waiting for a handoff", e.error()));
                if handoff_loading {
                    handoff_loading = false;
                    player
                        .element
                        .emit_by_name::<()>("load-failed", &[&e.error().to_string()]);
                }
                player.unload(&bus);
                was_playing = false;
            }
            _ => {}
        }
    }
    if player.tty {
        println!();
    }
    player.say("stopping");
    let _ = playbin.set_state(gst::State::Null);
    // A fatal error is the command's failure too (its exit code is not 0).
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::Command;

    #[test]
    fn typed_lines_are_commands_or_say_what_the_commands_are() {
        assert_eq!(Command::parse("t"), Ok(Command::Continue));
        assert_eq!(Command::parse("T"), Ok(Command::Continue));
        assert_eq!(Command::parse(""), Ok(Command::Nothing));
        assert_eq!(Command::parse("rate 1.5"), Ok(Command::Rate(1.5)));
        assert_eq!(Command::parse("b"), Ok(Command::Back));
        assert_eq!(Command::parse("volume 40"), Ok(Command::Volume(40)));
        assert_eq!(Command::parse("volume 40%"), Ok(Command::Volume(40)));
        assert!(Command::parse("volume 140").is_err());
        for bad in ["rate", "rate fast", "rate 9", "rate -1", "rate 1 2", "x"] {
            let e = Command::parse(bad).unwrap_err();
            assert!(e.contains("commands: t ("), "{bad}: {e}");
        }
    }
}
