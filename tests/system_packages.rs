//! The system packages that `make demo` and `make test` install cover everything the project
//! runs: every GStreamer element and every program that the tests, the scripts, the examples
//! and the demo use.
//!
//! CI runs on the development machine, so a package installed there by hand hides a missing
//! install step (that happened: `timeoverlay`, in `gstreamer1.0-x`). Here the lists below say
//! what the project runs and from which Debian package; the sources are scanned so that the
//! lists stay complete, GStreamer and dpkg are asked where each element and program really
//! comes from, and the Makefile's `PACKAGES` (with their dependencies, and what every Debian
//! root has) must contain it.

use gst::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Which of the Makefile's lists installs a package: `make demo`/`make test`, `make test`
/// only (the cluster tests), or `make bench`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum List {
    Packages,
    Cluster,
    Bench,
}

/// Every GStreamer element the project makes: (factory, plugin, Debian package, who uses it).
/// Decoders and converters that playbin picks for the test media are here too (the test
/// `every_element_playbin_picks_is_listed` checks that).
#[rustfmt::skip]
const ELEMENTS: &[(&str, &str, &str, &str)] = &[
    ("videotestsrc", "videotestsrc", "gstreamer1.0-plugins-base", "generated clips"),
    ("audiotestsrc", "audiotestsrc", "gstreamer1.0-plugins-base", "generated clips"),
    ("timeoverlay", "pango", "gstreamer1.0-x", "the clips' visible timecode"),
    ("theoraenc", "theora", "gstreamer1.0-plugins-base", "generated clips"),
    ("vorbisenc", "vorbis", "gstreamer1.0-plugins-base", "generated clips"),
    ("oggmux", "ogg", "gstreamer1.0-plugins-base", "generated clips"),
    ("taginject", "debug", "gstreamer1.0-plugins-good", "the plugin tests' clip tags"),
    ("vp8enc", "vpx", "gstreamer1.0-plugins-good", "WebM clips for the web TV"),
    ("vp8dec", "vpx", "gstreamer1.0-plugins-good", "VP8 video"),
    ("webmmux", "matroska", "gstreamer1.0-plugins-good", "WebM clips for the web TV"),
    ("matroskademux", "matroska", "gstreamer1.0-plugins-good", "WebM media"),
    ("matroskamux", "matroska", "gstreamer1.0-plugins-good", "the two-language Matroska clip"),
    ("subparse", "subparse", "gstreamer1.0-plugins-base", "that clip's subtitles, from SRT"),
    ("souphttpsrc", "soup", "gstreamer1.0-plugins-good", "http:// media (the broker's --media)"),
    ("capsfilter", "coreelements", "libgstreamer1.0-0", "caps in pipeline descriptions"),
    ("filesink", "coreelements", "libgstreamer1.0-0", "generated clips"),
    ("filesrc", "coreelements", "libgstreamer1.0-0", "file:// media"),
    ("fakesrc", "coreelements", "libgstreamer1.0-0", "the per-buffer benchmark"),
    ("fakesink", "coreelements", "libgstreamer1.0-0", "players without a window"),
    ("identity", "coreelements", "libgstreamer1.0-0", "benchmark baseline"),
    ("queue", "coreelements", "libgstreamer1.0-0", "playbin"),
    ("multiqueue", "coreelements", "libgstreamer1.0-0", "playbin"),
    ("typefind", "coreelements", "libgstreamer1.0-0", "playbin"),
    ("playbin", "playback", "gstreamer1.0-plugins-base", "every player"),
    ("uridecodebin", "playback", "gstreamer1.0-plugins-base", "playbin"),
    ("decodebin", "playback", "gstreamer1.0-plugins-base", "playbin"),
    ("playsink", "playback", "gstreamer1.0-plugins-base", "playbin"),
    ("streamsynchronizer", "playback", "gstreamer1.0-plugins-base", "playbin"),
    ("oggdemux", "ogg", "gstreamer1.0-plugins-base", "Ogg media"),
    ("theoradec", "theora", "gstreamer1.0-plugins-base", "Theora video"),
    ("vorbisdec", "vorbis", "gstreamer1.0-plugins-base", "Vorbis audio"),
    ("videoconvert", "videoconvertscale", "gstreamer1.0-plugins-base", "playbin, snapshots"),
    ("videoscale", "videoconvertscale", "gstreamer1.0-plugins-base", "playbin, snapshots"),
    ("audioconvert", "audioconvert", "gstreamer1.0-plugins-base", "playbin"),
    ("audioresample", "audioresample", "gstreamer1.0-plugins-base", "playbin"),
    ("volume", "volume", "gstreamer1.0-plugins-base", "playbin"),
    ("videobalance", "videofilter", "gstreamer1.0-plugins-good", "playbin"),
    ("deinterlace", "deinterlace", "gstreamer1.0-plugins-good", "playbin"),
    ("input-selector", "coreelements", "libgstreamer1.0-0", "playbin"),
    ("tee", "coreelements", "libgstreamer1.0-0", "playbin"),
    ("appsrc", "app", "gstreamer1.0-plugins-base", "snapshots (convert_sample)"),
    ("appsink", "app", "gstreamer1.0-plugins-base", "snapshots (convert_sample)"),
    ("pngenc", "png", "gstreamer1.0-plugins-good", "snapshots (convert_sample)"),
    ("autovideosink", "autodetect", "gstreamer1.0-plugins-good", "continuity play --window"),
    ("autoaudiosink", "autodetect", "gstreamer1.0-plugins-good", "continuity play --window"),
];

/// Every program the tests, the scripts and the demo run: (name, Debian package, list).
/// Programs of the toolchain (cargo) and the project's own binary are not here.
#[rustfmt::skip]
const PROGRAMS: &[(&str, &str, List)] = &[
    ("gst-launch-1.0", "gstreamer1.0-tools", List::Packages),
    ("gst-inspect-1.0", "gstreamer1.0-tools", List::Packages),
    ("mosquitto", "mosquitto", List::Packages),
    ("mosquitto_passwd", "mosquitto", List::Packages),
    ("ip", "iproute2", List::Packages),
    ("node", "nodejs", List::Packages),
    ("npm", "npm", List::Packages),
    ("chromium", "chromium", List::Packages),
    ("mosquitto_sub", "mosquitto-clients", List::Packages),
    ("mosquitto_pub", "mosquitto-clients", List::Packages),
    ("faketime", "faketime", List::Packages),
    ("kill", "procps", List::Packages),
    // With python3-prometheus-client: the reference OpenMetrics parser of the stats test.
    ("python3", "python3-minimal", List::Packages),
    // The cluster tests: RabbitMQ nodes, and the Erlang port mapper they register with.
    ("rabbitmq-server", "rabbitmq-server", List::Cluster),
    ("epmd", "erlang-base", List::Cluster),
    ("valgrind", "valgrind", List::Bench),
    // What every Debian root has (Essential or Priority: required, and apt).
    ("apt-get", "apt", List::Packages),
    ("dpkg-query", "dpkg", List::Packages),
    ("cat", "coreutils", List::Packages),
    ("date", "coreutils", List::Packages),
    ("dirname", "coreutils", List::Packages),
    ("head", "coreutils", List::Packages),
    ("tail", "coreutils", List::Packages),
    ("id", "coreutils", List::Packages),
    ("ls", "coreutils", List::Packages),
    ("mkdir", "coreutils", List::Packages),
    ("mkfifo", "coreutils", List::Packages),
    ("mktemp", "coreutils", List::Packages),
    ("seq", "coreutils", List::Packages),
    ("timeout", "coreutils", List::Packages),
    ("tr", "coreutils", List::Packages),
    ("rm", "coreutils", List::Packages),
    ("sleep", "coreutils", List::Packages),
    ("sort", "coreutils", List::Packages),
    ("tee", "coreutils", List::Packages),
    ("grep", "grep", List::Packages),
    ("sed", "sed", List::Packages),
    ("awk", "mawk", List::Packages),
];

/// Programs the sources start by their Debian path: another one may come first on PATH (a
/// python of pyenv's has no Debian modules).
const BY_PATH: &[(&str, &str)] = &[("python3", "/usr/bin/python3")];

/// Programs another package may bring instead: NodeSource's `nodejs` carries `npm`.
const ALSO_FROM: &[(&str, &str)] = &[("npm", "nodejs")];

/// Names that are elements but come from no plugin file: our own element (built by cargo) and
/// GStreamer's own containers.
const NOT_FROM_PACKAGES: &[&str] = &["continuity", "bin", "pipeline"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gst_init() {
    gst::init().expect("GStreamer initialises");
}

// ---------------------------------------------------------------------------------------
// The lists cover the sources

/// Every file whose pipelines and commands run when someone runs the tests, the demo, the
/// benchmarks or the examples.
fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [
        "src",
        "tests",
        "examples",
        "scripts",
        "plugin/src",
        "plugin/tests",
        "plugin/examples",
        "web/test",
    ] {
        collect(&root().join(dir), &mut files);
    }
    // The web TV's demo driver (web/demo.js; web/app runs in the browser, web/node_modules is
    // not ours).
    files.push(root().join("web").join("demo.js"));
    let me = root().join("tests").join("system_packages.rs");
    files.retain(|f| *f != me);
    files
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("rs" | "sh" | "js")
        ) {
            out.push(path);
        }
    }
}

/// The text inside a Rust source's string literals (not its comments), one entry a literal.
fn rust_string_literals(src: &str) -> Vec<String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            '\'' => {
                // A char literal ('x', '\n', '"') or a lifetime ('a).
                if chars.get(i + 1) == Some(&'\\') {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            'r' if matches!(chars.get(i + 1), Some('"' | '#'))
                && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while chars.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    i += 1;
                    continue;
                }
                j += 1;
                let start = j;
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (1..=hashes).all(|h| chars.get(j + h) == Some(&'#')) {
                        break;
                    }
                    j += 1;
                }
                out.push(chars[start..j.min(chars.len())].iter().collect());
                i = j + 1 + hashes;
            }
            '"' => {
                let mut text = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                        match chars.get(i) {
                            Some('n' | 't' | 'r') => text.push(' '),
                            Some('\n') => {
                                // A line continuation: the next line's indent is skipped.
                                while chars.get(i + 1).is_some_and(|c| c.is_whitespace()) {
                                    i += 1;
                                }
                                text.push(' ');
                            }
                            Some(c) => text.push(*c),
                            None => {}
                        }
                    } else {
                        text.push(chars[i]);
                    }
                    i += 1;
                }
                out.push(text);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// The words of a text: runs of letters, digits, `_`, `-`, `.`.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .map(|w| w.trim_matches('.'))
        .filter(|w| !w.is_empty())
}

/// The element names a pipeline text may hold: every word, but for `key=value` only the
/// values of keys that name elements (`video-sink=fakesink`, not `pattern=smpte`).
fn element_words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        match token.split_once('=') {
            Some((key, value))
                if key.ends_with("sink") || key.ends_with("filter") || key.ends_with("src") =>
            {
                out.extend(words(value))
            }
            Some(_) => {}
            None => out.extend(words(token)),
        }
    }
    out
}

/// The simple commands of a shell script, as words: outside quotes and inside `$(...)`, with
/// leading assignments (`A=b cmd`) and keywords (`if ! cmd`, `do cmd`) left out.
fn shell_segments(script: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let chars: Vec<char> = script.replace("\\\n", " ").chars().collect();
    let mut i = 0;
    shell_lex(&chars, &mut i, None, &mut segments);
    segments
        .iter()
        .map(|segment| {
            segment
                .split_whitespace()
                .skip_while(|w| {
                    w.contains('=')
                        || matches!(
                            *w,
                            "if" | "then"
                                | "else"
                                | "elif"
                                | "do"
                                | "while"
                                | "until"
                                | "!"
                                | "{"
                                | "time"
                        )
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .collect()
}

/// The programs a shell script runs: the first word of every simple command, with the
/// script's own functions, the shell's builtins and `for` lists left out.
fn shell_commands(script: &str) -> BTreeSet<String> {
    let functions: BTreeSet<String> = script
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let name = l.split("()").next()?;
            (l.contains("()") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .then(|| name.to_string())
        })
        .collect();
    const BUILTINS: &[&str] = &[
        "fi", "for", "done", "case", "esac", "in", "}", "[", "[[", "]]", "echo", "printf", "read",
        "cd", "set", "export", "local", "declare", "trap", "wait", "kill", "exit", "return",
        "command", "true", "false", ":", "test", "exec", "unset", "shift", "break", "continue",
        "ulimit", "mapfile",
    ];
    let mut commands = BTreeSet::new();
    for words in shell_segments(script) {
        let first = words[0].as_str();
        let plain = first.starts_with(|c: char| c.is_ascii_alphabetic())
            && first
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        if !plain || BUILTINS.contains(&first) || functions.contains(first) {
            continue;
        }
        commands.insert(first.rsplit('/').next().unwrap_or(first).to_string());
    }
    commands
}

/// Split shell text into simple-command segments. Single-quoted text is dropped, double-quoted
/// text becomes a `"` placeholder (its `$(...)` are lexed as commands), `${...}` and `$((...))`
/// are dropped. Stops at `until` when given (the `)` closing a `$(`).
fn shell_lex(chars: &[char], i: &mut usize, until: Option<char>, segments: &mut Vec<String>) {
    let mut current = String::new();
    let flush = |current: &mut String, segments: &mut Vec<String>| {
        if !current.trim().is_empty() {
            segments.push(std::mem::take(current));
        }
        current.clear();
    };
    while *i < chars.len() {
        let c = chars[*i];
        if Some(c) == until {
            *i += 1;
            break;
        }
        match c {
            '#' if current.is_empty() || current.ends_with(char::is_whitespace) => {
                while *i < chars.len() && chars[*i] != '\n' {
                    *i += 1;
                }
                continue;
            }
            '\'' => {
                *i += 1;
                while *i < chars.len() && chars[*i] != '\'' {
                    *i += 1;
                }
                current.push('\'');
            }
            '"' => {
                *i += 1;
                while *i < chars.len() && chars[*i] != '"' {
                    if chars[*i] == '\\' {
                        *i += 1;
                    } else if chars[*i] == '$' && chars.get(*i + 1) == Some(&'(') {
                        *i += 2;
                        shell_lex(chars, i, Some(')'), segments);
                        continue;
                    }
                    *i += 1;
                }
                current.push('"');
            }
            '$' if chars.get(*i + 1) == Some(&'(') && chars.get(*i + 2) == Some(&'(') => {
                while *i < chars.len() && !(chars[*i] == ')' && chars.get(*i + 1) == Some(&')')) {
                    *i += 1;
                }
                *i += 1;
                current.push('$');
            }
            '$' if chars.get(*i + 1) == Some(&'(') => {
                *i += 2;
                shell_lex(chars, i, Some(')'), segments);
                current.push('$');
                continue;
            }
            '$' if chars.get(*i + 1) == Some(&'{') => {
                while *i < chars.len() && chars[*i] != '}' {
                    *i += 1;
                }
                current.push('$');
            }
            '(' if current.ends_with('=') => {
                // An array (`pids=(...)`, `list+=(...)`): values, not commands.
                while *i < chars.len() && chars[*i] != ')' {
                    *i += 1;
                }
                current.push('$');
            }
            '\n' | ';' | '|' | '&' | '(' | ')' | '`' => flush(&mut current, segments),
            _ => current.push(c),
        }
        *i += 1;
    }
    flush(&mut current, segments);
}

/// The programs that Rust sources start: `Command::new("name")`, and the GStreamer tools
/// named anywhere in a literal (the tests wrap them in helpers).
fn rust_commands(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in src.split("Command::new(\"").skip(1) {
        if let Some(name) = part.split('"').next() {
            out.insert(name.rsplit('/').next().unwrap_or(name).to_string());
        }
    }
    for literal in rust_string_literals(src) {
        for word in words(&literal) {
            if word.starts_with("gst-") && word.ends_with("-1.0") {
                out.insert(word.to_string());
            }
        }
        if let Some(name) = program_path(&literal) {
            out.insert(name);
        }
    }
    out
}

/// The program a literal names by absolute path: `/usr/sbin/mosquitto`, or one in a
/// package's own `bin` (`/usr/lib/rabbitmq/bin/rabbitmq-server`).
fn program_path(literal: &str) -> Option<String> {
    if let Some(name) = literal
        .strip_prefix("/usr/sbin/")
        .or(literal.strip_prefix("/usr/bin/"))
    {
        return Some(name.to_string());
    }
    let rest = literal.strip_prefix("/usr/lib/")?;
    let (dir, name) = rest.rsplit_once('/')?;
    (dir.ends_with("/bin") && !name.is_empty() && !literal.contains(char::is_whitespace))
        .then(|| name.to_string())
}

/// The text inside a JavaScript source's string literals ("…", '…' and `…`), one entry a
/// literal; comments are skipped.
fn js_string_literals(src: &str) -> Vec<String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            q @ ('"' | '\'' | '`') => {
                let mut lit = String::new();
                i += 1;
                while i < chars.len() && chars[i] != q {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    if let Some(&c) = chars.get(i) {
                        lit.push(c);
                    }
                    i += 1;
                }
                out.push(lit);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// The programs a JavaScript source starts: the first argument of `spawn`, `spawnSync` and
/// the tests' `start` when it is a literal, and programs named by absolute path.
fn js_commands(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for call in ["spawn(\"", "spawnSync(\"", "start(\""] {
        for part in src.split(call).skip(1) {
            if let Some(name) = part.split('"').next() {
                out.insert(name.rsplit('/').next().unwrap_or(name).to_string());
            }
        }
    }
    for literal in js_string_literals(src) {
        if let Some(name) = program_path(&literal) {
            out.insert(name);
        }
    }
    out
}

#[test]
fn every_element_the_sources_name_is_listed() {
    gst_init();
    let known: BTreeSet<String> = gst::Registry::get()
        .features(gst::ElementFactory::static_type())
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let listed: BTreeSet<&str> = ELEMENTS.iter().map(|e| e.0).collect();
    let mut missing = BTreeMap::<String, BTreeSet<String>>::new();
    let mut found = 0;
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let texts = if file.extension().is_some_and(|e| e == "rs") {
            rust_string_literals(&text)
        } else if file.extension().is_some_and(|e| e == "js") {
            js_string_literals(&text)
        } else {
            // In scripts, the pipelines are what gst-launch-1.0 runs.
            shell_segments(&text)
                .into_iter()
                .filter(|words| words[0] == "gst-launch-1.0")
                .map(|words| words.join(" "))
                .collect()
        };
        for text in &texts {
            for word in element_words(text) {
                if !known.contains(word) || NOT_FROM_PACKAGES.contains(&word) {
                    continue;
                }
                found += 1;
                if !listed.contains(word) {
                    let at = file.strip_prefix(root()).unwrap().display().to_string();
                    missing.entry(word.to_string()).or_default().insert(at);
                }
            }
        }
    }
    assert!(
        found > 20,
        "the scan found only {found} element names: is the lexer broken?"
    );
    assert!(
        missing.is_empty(),
        "GStreamer elements used in the sources but not in ELEMENTS (add them with their \
         plugin and Debian package): {missing:#?}"
    );
}

#[test]
fn every_element_playbin_picks_is_listed() {
    gst_init();
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.ogg");
    // The media the tests and the demo generate: Theora and Vorbis in Ogg.
    run_to_eos(&format!(
        "videotestsrc num-buffers=10 ! video/x-raw,width=160,height=120,framerate=25/1 \
         ! timeoverlay ! theoraenc ! oggmux name=mux ! filesink location={} \
         audiotestsrc num-buffers=20 ! vorbisenc ! mux.",
        clip.display()
    ));
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", format!("file://{}", clip.display()))
        .property(
            "video-sink",
            gst::ElementFactory::make("fakesink").build().unwrap(),
        )
        .property(
            "audio-sink",
            gst::ElementFactory::make("fakesink").build().unwrap(),
        )
        .property(
            "video-filter",
            gst::ElementFactory::make("identity").build().unwrap(),
        )
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let record = seen.clone();
    playbin
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .connect_deep_element_added(move |_, _, element| {
            if let Some(f) = element.factory() {
                record.lock().unwrap().insert(f.name().to_string());
            }
        });
    play(&playbin);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains("theoradec"),
        "playbin decoded the video: {seen:?}"
    );
    let listed: BTreeSet<String> = ELEMENTS.iter().map(|e| e.0.to_string()).collect();
    let unlisted: Vec<&String> = seen
        .difference(&listed)
        .filter(|name| !NOT_FROM_PACKAGES.contains(&name.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "playbin picked elements that ELEMENTS does not list: {unlisted:?}"
    );
}

fn run_to_eos(desc: &str) {
    let pipeline = gst::parse::launch(desc).unwrap_or_else(|e| panic!("{desc}: {e}"));
    play(&pipeline);
}

fn play(pipeline: &gst::Element) {
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the pipeline ends in time");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
}

#[test]
fn every_program_the_sources_run_is_listed() {
    let listed: BTreeSet<&str> = PROGRAMS.iter().map(|p| p.0).collect();
    let mut missing = BTreeMap::<String, BTreeSet<String>>::new();
    let mut found = BTreeSet::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let commands = if file.extension().is_some_and(|e| e == "rs") {
            rust_commands(&text)
        } else if file.extension().is_some_and(|e| e == "js") {
            js_commands(&text)
        } else {
            shell_commands(&text)
        };
        for program in commands {
            found.insert(program.clone());
            if !listed.contains(program.as_str()) {
                let at = file.strip_prefix(root()).unwrap().display().to_string();
                missing.entry(program).or_default().insert(at);
            }
        }
    }
    for expected in [
        "gst-launch-1.0",
        "mosquitto",
        "ip",
        "grep",
        "chromium",
        "mosquitto_sub",
    ] {
        assert!(
            found.contains(expected),
            "the scan missed {expected}: {found:?}"
        );
    }
    assert!(
        missing.is_empty(),
        "programs run by the sources but not in PROGRAMS (add them with their Debian \
         package): {missing:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// The packages cover the lists

/// What dpkg knows of the installed packages.
struct Installed {
    /// Package → the names in its Depends and Pre-Depends, one group of alternatives each.
    depends: BTreeMap<String, Vec<Vec<String>>>,
    /// Virtual package → the installed packages that provide it.
    providers: BTreeMap<String, Vec<String>>,
    /// Essential, Priority: required, or apt: on every Debian root (a minimal one included).
    base: BTreeSet<String>,
}

impl Installed {
    fn read() -> Installed {
        let out = Command::new("dpkg-query")
            .args([
                "-W",
                "-f=${Package}\t${db:Status-Status}\t${Essential}\t${Priority}\t${Pre-Depends}, ${Depends}\t${Provides}\n",
            ])
            .output()
            .expect("dpkg-query runs: this check is for Debian and Ubuntu, as the Makefile is");
        let mut installed = Installed {
            depends: BTreeMap::new(),
            providers: BTreeMap::new(),
            base: BTreeSet::new(),
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 6 || f[1] != "installed" {
                continue;
            }
            let name = f[0].to_string();
            // What a minimal root (debootstrap's or mmdebstrap's minbase) holds: Essential and
            // Priority: required packages, and apt, whatever priority it has there.
            if f[2] == "yes" || f[3] == "required" || name == "apt" {
                installed.base.insert(name.clone());
            }
            let groups = f[4]
                .split(',')
                .map(|group| {
                    group
                        .split('|')
                        .map(package_name)
                        .filter(|n| !n.is_empty())
                        .collect::<Vec<_>>()
                })
                .filter(|g: &Vec<String>| !g.is_empty())
                .collect();
            installed.depends.insert(name.clone(), groups);
            for provided in f[5].split(',').map(package_name).filter(|n| !n.is_empty()) {
                installed
                    .providers
                    .entry(provided)
                    .or_default()
                    .push(name.clone());
            }
        }
        installed
    }

    /// `roots` and every installed package they depend on, directly or not.
    fn closure(&self, roots: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = roots.into_iter().collect();
        while let Some(p) = todo.pop() {
            if !seen.insert(p.clone()) {
                continue;
            }
            for group in self.depends.get(&p).into_iter().flatten() {
                for alt in group {
                    if self.depends.contains_key(alt) {
                        todo.push(alt.clone());
                    }
                    todo.extend(self.providers.get(alt).into_iter().flatten().cloned());
                }
            }
        }
        seen
    }
}

/// `libfoo:any (>= 1.2)` → `libfoo`.
fn package_name(s: &str) -> String {
    let s = s.trim();
    let s = s.split([' ', '(']).next().unwrap_or("");
    s.split(':').next().unwrap_or("").to_string()
}

/// A Makefile variable's words (`NAME := a b \` continued on the next lines).
fn makefile_list(name: &str) -> Vec<String> {
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let joined = makefile.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name) && l.contains(":="))
        .unwrap_or_else(|| panic!("the Makefile has no `{name} :=` list"));
    line.split_once(":=")
        .unwrap()
        .1
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The package that owns `path`, by dpkg. Debian 12 registers many files under /bin and /lib
/// while they are reached through /usr (merged /usr), so both spellings are asked.
fn owner(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).unwrap_or(path.to_path_buf());
    let mut candidates = vec![path.to_path_buf(), real.clone()];
    for p in [path.to_path_buf(), real] {
        if let Ok(rest) = p.strip_prefix("/usr") {
            candidates.push(Path::new("/").join(rest));
        } else {
            candidates.push(Path::new("/usr").join(p.strip_prefix("/").unwrap_or(&p)));
        }
    }
    for candidate in candidates {
        let out = Command::new("dpkg")
            .arg("-S")
            .arg(&candidate)
            .output()
            .ok()?;
        if !out.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| !l.starts_with("diversion"))?;
        let (packages, _) = line.split_once(": ")?;
        return Some(package_name(packages.split(',').next()?));
    }
    None
}

/// Where `program` is on the PATH (sbin included: the tests run mosquitto from there).
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// What `make test` and `make demo` install (and the cluster tests' and the bench's own lists,
/// for `List::Cluster` and `List::Bench`), with their dependencies and what every Debian root
/// has.
struct Covered {
    packages: Vec<String>,
    cluster: Vec<String>,
    bench: Vec<String>,
    make: BTreeSet<String>,
    make_test: BTreeSet<String>,
    make_bench: BTreeSet<String>,
}

impl Covered {
    fn read() -> Covered {
        let installed = Installed::read();
        let packages = makefile_list("PACKAGES");
        let cluster = makefile_list("CLUSTER_PACKAGES");
        let bench = makefile_list("BENCH_PACKAGES");
        let base: Vec<String> = installed.base.iter().cloned().collect();
        let make = installed.closure(packages.iter().cloned().chain(base.iter().cloned()));
        let make_test = installed.closure(
            packages
                .iter()
                .chain(&cluster)
                .cloned()
                .chain(base.iter().cloned()),
        );
        let make_bench = installed.closure(
            packages
                .iter()
                .chain(&bench)
                .cloned()
                .chain(base.iter().cloned()),
        );
        Covered {
            packages,
            cluster,
            bench,
            make,
            make_test,
            make_bench,
        }
    }

    /// Why `package` is not installed by `list`, or None when it is.
    fn gap(&self, package: &str, list: List) -> Option<String> {
        let (covered, name, words) = match list {
            List::Packages => (&self.make, "PACKAGES", self.packages.clone()),
            List::Cluster => (
                &self.make_test,
                "PACKAGES and CLUSTER_PACKAGES",
                [self.packages.clone(), self.cluster.clone()].concat(),
            ),
            List::Bench => (
                &self.make_bench,
                "PACKAGES and BENCH_PACKAGES",
                [self.packages.clone(), self.bench.clone()].concat(),
            ),
        };
        (!covered.contains(package)).then(|| {
            format!(
                "`{package}` is not in the Makefile's {name} ({}) nor a dependency of one of \
                 them, nor part of every Debian root",
                words.join(" ")
            )
        })
    }
}

#[test]
fn system_packages_cover_every_element() {
    gst_init();
    let covered = Covered::read();
    let mut problems = Vec::new();
    for &(element, plugin, package, why) in ELEMENTS {
        let Some(factory) = gst::ElementFactory::find(element) else {
            problems.push(format!(
                "element `{element}` ({why}) is not on this machine: its plugin `{plugin}` \
                 comes in the Debian package `{package}`{}",
                covered
                    .gap(package, List::Packages)
                    .map(|g| format!("; {g}"))
                    .unwrap_or_default()
            ));
            continue;
        };
        let found = factory.plugin().expect("an element factory has a plugin");
        let file = found.filename().expect("a plugin loaded from a file");
        if found.plugin_name() != plugin {
            problems.push(format!(
                "element `{element}`: ELEMENTS says plugin `{plugin}`, GStreamer says `{}` ({})",
                found.plugin_name(),
                file.display()
            ));
        }
        let Some(owner) = owner(&file) else {
            problems.push(format!(
                "element `{element}` comes from {} ({}), which no Debian package owns",
                file.display(),
                found.plugin_name()
            ));
            continue;
        };
        if owner != package {
            problems.push(format!(
                "element `{element}`: ELEMENTS says package `{package}`, dpkg says `{owner}` \
                 owns {}",
                file.display()
            ));
        }
        if let Some(gap) = covered.gap(&owner, List::Packages) {
            problems.push(format!(
                "element `{element}` ({why}) is in plugin `{}` ({}) from package `{owner}`: {gap}",
                found.plugin_name(),
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn system_packages_cover_every_program() {
    let covered = Covered::read();
    let mut problems = Vec::new();
    for &(program, package, list) in PROGRAMS {
        let by_path = BY_PATH
            .iter()
            .find(|(p, _)| *p == program)
            .map(|(_, path)| PathBuf::from(path))
            .filter(|p| p.is_file());
        let Some(path) = by_path.or_else(|| which(program)) else {
            // `make test` does not install what only `make bench` runs: then the list's word
            // is checked against the bench's list.
            if list == List::Bench && covered.gap(package, list).is_none() {
                continue;
            }
            problems.push(format!(
                "program `{program}` is not on this machine: it comes in the Debian package \
                 `{package}`{}",
                covered
                    .gap(package, list)
                    .map(|g| format!("; {g}"))
                    .unwrap_or_default()
            ));
            continue;
        };
        let Some(owner) = owner(&path) else {
            problems.push(format!(
                "program `{program}` ({}) is owned by no Debian package",
                path.display()
            ));
            continue;
        };
        if owner != package && !ALSO_FROM.contains(&(program, owner.as_str())) {
            problems.push(format!(
                "program `{program}`: PROGRAMS says package `{package}`, dpkg says `{owner}` \
                 owns {}",
                path.display()
            ));
        }
        if let Some(gap) = covered.gap(&owner, list) {
            problems.push(format!(
                "program `{program}` ({}) is in package `{owner}`: {gap}",
                path.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_shell_scan_sees_commands_and_skips_quotes_functions_and_builtins() {
    let script = r#"
        #!/usr/bin/env bash
        set -euo pipefail
        now() { date +%s; }
        log() { echo "[$(now) demo] $*; not a command" | tee -a "$out/x"; }
        url=$(grep -o 'mqtt://[^ ]*; awk' <<<"$line")
        local end=$((SECONDS + $3))
        cd "$(dirname "$0")/.."
        "${cli[@]}" devices
        X=1 "$bin" play
        for p in "${pids[@]}"; do kill "$p"; done
        until grep -q "$2" "$1"; do sleep 0.1; done
        sudo=(sudo)
        echo oops >&2 2>&1
        if ! dpkg-query -W; then
            missing+=("$p")
        fi
        cat a | sort -n |
            awk '{ t0 = a[2] }'
        gst-launch-1.0 -q videotestsrc \
            ! fakesink
    "#;
    let found: Vec<String> = shell_commands(script).into_iter().collect();
    assert_eq!(
        found,
        [
            "awk",
            "cat",
            "date",
            "dirname",
            "dpkg-query",
            "grep",
            "gst-launch-1.0",
            "sleep",
            "sort",
            "tee"
        ]
    );
}
