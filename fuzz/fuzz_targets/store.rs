//! The local store as it is loaded at start: rows whose JSON is damaged (a disk, an older
//! version, a person with sqlite3) are errors, not panics, and what loads goes into the
//! engine as a restarted device would take it.
#![no_main]

use continuity::engine::{Engine, EngineConfig};
use continuity::model::{Device, DeviceClass};
use continuity::store::Store;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    // The input is up to three rows' JSON, split at NUL bytes.
    let mut rows = data.split(|b| *b == 0).map(String::from_utf8_lossy);
    let raw = rusqlite::Connection::open(store.path()).unwrap();
    if let Some(json) = rows.next() {
        raw.execute(
            "INSERT OR REPLACE INTO resume (media_id, wall_ns, counter, device, json) \
             VALUES ('file:a.ogg', 1, 0, 'phone', ?1)",
            [json.as_ref()],
        )
        .unwrap();
    }
    if let Some(json) = rows.next() {
        raw.execute(
            "INSERT OR REPLACE INTO sessions (device, json) VALUES ('phone', ?1)",
            [json.as_ref()],
        )
        .unwrap();
    }
    if let Some(text) = rows.next() {
        raw.execute(
            "INSERT OR REPLACE INTO seen (sender, topic, counter) VALUES (?1, ?1, 7)",
            [text.as_ref()],
        )
        .unwrap();
    }
    drop(raw);
    let mut engine = Engine::new(EngineConfig::new(
        "home",
        Device {
            id: "tv".into(),
            name: "TV".into(),
            class: DeviceClass::Tv,
        },
    ));
    if let Ok(points) = store.resume_points() {
        for point in points {
            engine.load_resume(point);
        }
    }
    let _ = store.resume("file:a.ogg");
    let _ = store.session("phone");
    let _ = store.seen();
    let _ = store.counter("seal");
});
