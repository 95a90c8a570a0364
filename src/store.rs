//! The local durable store: this device's sessions and the resume points it knows, in SQLite,
//! so that a device resumes its own media even when the broker has lost everything.
//!
//! WAL mode with `synchronous=NORMAL`: a commit survives the process being killed at any
//! point (Ctrl-C, `kill -9`, a crash); a power cut may take back the last commits: the last
//! heartbeat's position, or the replay record of a command taken in just before (sent
//! counters need no more, they follow the wall clock).
//! `FULL` waited for the disk on every commit, about 20 ms each here, and two such commits
//! (the first message counter, the sync echo's replay record) stood between a player's start
//! and its resume decision. Several processes may share one store (a player and the CLI on
//! the same desktop): SQLite's locking serialises them, with a busy timeout.
//!
//! Rows hold the wire JSON of each message, so the store and the wire never disagree on a
//! format; a resume point is only replaced by one with a greater stamp.

use crate::engine::plan::Estimate;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::wire::{self, Event, ResumePoint, SessionState};

/// How long events are kept, and how many at most (the oldest go first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    pub days: u32,
    pub rows: u32,
}

impl Default for EventRetention {
    /// 90 days, at most 100,000 events (about 30 MB).
    fn default() -> Self {
        EventRetention {
            days: 90,
            rows: 100_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("local store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("local store {path}: cannot create its directory: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("local store {path}: a stored row does not decode: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// An open store. Cheap to keep open; not shared between threads (open one per thread).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Events kept (counted once at open): trimming to [`EventRetention::rows`] then deletes
    /// the oldest few through the index instead of walking every event kept on each one.
    events: std::cell::Cell<u64>,
}

/// The store's page cache, in KiB.
const CACHE_KIB: i64 = 256;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (or create) the store file `state.sqlite3` in `dir`.
    pub fn open_in(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        Store::open(&dir.join("state.sqlite3"))
    }

    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(2)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // A small page cache: what a device looks up is a few rows, and every page written
        // (events, one or two a handoff) would otherwise stay in memory up to SQLite's 2 MB
        // default, which `make soak` saw as memory growing with each handoff.
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sessions (
                 device TEXT PRIMARY KEY,
                 json   TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS resume (
                 media_id TEXT PRIMARY KEY,
                 wall_ns  INTEGER NOT NULL,
                 counter  INTEGER NOT NULL,
                 device   TEXT NOT NULL,
                 json     TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS counters (
                 name  TEXT PRIMARY KEY,
                 value INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS ready_times (
                 key     TEXT PRIMARY KEY,
                 mean_ns REAL NOT NULL,
                 dev_ns  REAL NOT NULL,
                 samples INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS seen (
                 sender  TEXT NOT NULL,
                 topic   TEXT NOT NULL,
                 counter INTEGER NOT NULL,
                 PRIMARY KEY (sender, topic)
             );
             CREATE TABLE IF NOT EXISTS events (
                 key        TEXT PRIMARY KEY,
                 device     TEXT NOT NULL,
                 at_unix_ns INTEGER NOT NULL,
                 json       TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS events_at ON events (at_unix_ns);",
        )
        .map_err(err)?;
        // Stores from before the account's history was shared lack the column that keeps
        // an event as it came (the envelope its recorder signed). Two processes may add it
        // at once: whoever comes second finds it there.
        let has_payload = |conn: &Connection| -> rusqlite::Result<bool> {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM pragma_table_info('events') WHERE name = 'payload'",
                [],
                |r| r.get(0),
            )?;
            Ok(n > 0)
        };
        if !has_payload(&conn).map_err(err)?
            && let Err(e) = conn.execute("ALTER TABLE events ADD COLUMN payload TEXT", [])
            && !has_payload(&conn).map_err(err)?
        {
            return Err(err(e));
        }
        let events: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .map_err(err)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            events: std::cell::Cell::new(events.max(0) as u64),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, json: &str) -> Result<T, StoreError> {
        serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// A named counter (0 when never set).
    pub fn counter(&self, name: &str) -> Result<u64, StoreError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Raise a named counter to `value` (it never goes down, whoever writes).
    pub fn raise_counter(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)",
                params![name, value as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Keep an event (this device's or one it received), once: a second copy of the same
    /// event (QoS 1 may deliver twice, and a device hears its own) changes nothing. Then
    /// drop what `keep` no longer covers, measured from `now_unix_ns`. Whether it was new.
    pub fn put_event(
        &self,
        e: &Event,
        keep: EventRetention,
        now_unix_ns: u64,
    ) -> Result<bool, StoreError> {
        self.put_event_as(e, None, keep, now_unix_ns)
    }

    /// [`Store::put_event`], keeping also the sealed envelope that carried it (what this
    /// device hands on when another asks for the account's history: its recorder's
    /// signature stays checkable).
    pub fn put_event_as(
        &self,
        e: &Event,
        sealed: Option<&str>,
        keep: EventRetention,
        now_unix_ns: u64,
    ) -> Result<bool, StoreError> {
        let json = String::from_utf8(wire::encode(e)).expect("JSON is UTF-8");
        let key = format!("{}/{}", e.device, e.key());
        if let Some(sealed) = sealed {
            // An event kept before without its envelope (its own, recorded before it was
            // sealed and sent) gains it.
            self.conn
                .execute(
                    "UPDATE events SET payload = ?2 WHERE key = ?1 AND payload IS NULL",
                    params![key, sealed],
                )
                .map_err(|err| self.err(err))?;
        }
        let added = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO events (key, device, at_unix_ns, json, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key, e.device, e.at_unix_ns as i64, json, sealed],
            )
            .map_err(|err| self.err(err))?
            > 0;
        if added {
            self.events.set(self.events.get() + 1);
            let cutoff = now_unix_ns.saturating_sub(u64::from(keep.days) * 86_400 * 1_000_000_000);
            let old = self
                .conn
                .execute(
                    "DELETE FROM events WHERE at_unix_ns < ?1",
                    params![cutoff as i64],
                )
                .map_err(|err| self.err(err))?;
            self.events
                .set(self.events.get().saturating_sub(old as u64));
            let excess = self.events.get().saturating_sub(u64::from(keep.rows));
            if excess > 0 {
                let gone = self
                    .conn
                    .execute(
                        "DELETE FROM events WHERE key IN
                         (SELECT key FROM events ORDER BY at_unix_ns ASC LIMIT ?1)",
                        params![excess as i64],
                    )
                    .map_err(|err| self.err(err))?;
                self.events
                    .set(self.events.get().saturating_sub(gone as u64));
            }
        }
        Ok(added)
    }

    /// The keys of the events kept from `since_unix_ns` on: (recording device, store key,
    /// instant), as [`crate::history::Summary`] digests them.
    pub fn event_keys(&self, since_unix_ns: u64) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT device, key, at_unix_ns FROM events WHERE at_unix_ns >= ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since_unix_ns as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?.max(0) as u64,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The events of `device` kept from `from_unix_ns` up to (not including) `to_unix_ns`,
    /// as they came: (the plain event's JSON, the sealed envelope when one was kept).
    pub fn event_texts(
        &self,
        device: &str,
        from_unix_ns: u64,
        to_unix_ns: u64,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT json, payload FROM events
                 WHERE device = ?1 AND at_unix_ns >= ?2 AND at_unix_ns < ?3
                 ORDER BY at_unix_ns, key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![
                    device,
                    from_unix_ns as i64,
                    to_unix_ns.min(i64::MAX as u64) as i64
                ],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The events kept from `since_unix_ns` on, oldest first.
    pub fn events_since(&self, since_unix_ns: u64) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT json FROM events WHERE at_unix_ns >= ?1 ORDER BY at_unix_ns, key")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since_unix_ns as i64], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(self.decode(&json.map_err(|e| self.err(e))?)?);
        }
        Ok(out)
    }

    /// Keep what the engine learned of this device's readiness for handoffs.
    pub fn put_ready_time(&self, key: &str, e: &Estimate) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO ready_times (key, mean_ns, dev_ns, samples) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO UPDATE SET mean_ns = excluded.mean_ns,
                     dev_ns = excluded.dev_ns, samples = excluded.samples",
                params![key, e.mean_ns, e.dev_ns, e.samples],
            )
            .map_err(|err| self.err(err))?;
        Ok(())
    }

    /// What [`Store::put_ready_time`] kept.
    pub fn ready_times(&self) -> Result<Vec<(String, Estimate)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, mean_ns, dev_ns, samples FROM ready_times")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Estimate {
                        mean_ns: r.get(1)?,
                        dev_ns: r.get(2)?,
                        samples: r.get(3)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Remember the greatest counter accepted from `sender` on `topic`.
    pub fn put_seen(&self, sender: &str, topic: &str, counter: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO seen (sender, topic, counter) VALUES (?1, ?2, ?3)
                 ON CONFLICT(sender, topic) DO UPDATE SET counter = max(counter, excluded.counter)",
                params![sender, topic, counter as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every (sender, topic, counter) remembered.
    pub fn seen(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT sender, topic, counter FROM seen")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Save this device's session (the latest wins).
    pub fn put_session(&self, state: &SessionState) -> Result<(), StoreError> {
        let json = String::from_utf8(wire::encode(state)).expect("JSON is UTF-8");
        self.conn
            .execute(
                "INSERT INTO sessions (device, json) VALUES (?1, ?2)
                 ON CONFLICT(device) DO UPDATE SET json = excluded.json",
                params![state.device, json],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn session(&self, device: &str) -> Result<Option<SessionState>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT json FROM sessions WHERE device = ?1",
                params![device],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        json.map(|j| self.decode(&j)).transpose()
    }

    /// Save a resume point unless the store holds a newer one for the same media. Returns
    /// whether it was written.
    pub fn put_resume(&self, point: &ResumePoint) -> Result<bool, StoreError> {
        let json = String::from_utf8(wire::encode(point)).expect("JSON is UTF-8");
        let s = &point.stamp;
        // Stamps order by (wall, counter, device): write only when the new one is greater.
        let n = self
            .conn
            .execute(
                "INSERT INTO resume (media_id, wall_ns, counter, device, json)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(media_id) DO UPDATE SET
                     wall_ns = excluded.wall_ns, counter = excluded.counter,
                     device = excluded.device, json = excluded.json
                 WHERE (excluded.wall_ns, excluded.counter, excluded.device)
                     > (resume.wall_ns, resume.counter, resume.device)",
                params![
                    point.media.id,
                    s.wall_ns as i64,
                    s.counter as i64,
                    s.device,
                    json
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    pub fn resume(&self, media_id: &str) -> Result<Option<ResumePoint>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT json FROM resume WHERE media_id = ?1",
                params![media_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        json.map(|j| self.decode(&j)).transpose()
    }

    /// Every resume point, newest first.
    pub fn resume_points(&self) -> Result<Vec<ResumePoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT json FROM resume ORDER BY wall_ns DESC, counter DESC")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.decode(&row.map_err(|e| self.err(e))?)?);
        }
        Ok(out)
    }
}

type WriteFn = Box<dyn FnOnce(&Store) -> Result<(), StoreError> + Send>;

/// What the [`Writer`]'s thread is asked: a write, or to say when the writes before are done.
enum Job {
    Write(WriteFn),
    Sync(tokio::sync::oneshot::Sender<()>),
}

/// What the writer says about the writes it makes: one warning when the store stops taking
/// them (a full disk, a read-only config dir), one line when it takes them again, and debug
/// lines only in between, so that a heartbeat every 30 s does not fill the log. A store that
/// takes some writes and refuses others (a disk that is nearly full) goes back and forth:
/// its warning comes again only after [`Health::WARN_AGAIN`].
#[derive(Debug, Default)]
pub struct Health {
    failing: bool,
    warned: Option<std::time::Instant>,
}

impl Health {
    pub const WARN_AGAIN: Duration = Duration::from_secs(600);

    /// The line to log, if any, after a write that ended with `result` at `now`.
    pub fn note(
        &mut self,
        result: &Result<(), StoreError>,
        now: std::time::Instant,
    ) -> Option<(tracing::Level, String)> {
        match (result, self.failing) {
            (Ok(()), false) => None,
            (Ok(()), true) => {
                self.failing = false;
                Some((
                    tracing::Level::INFO,
                    "the local store takes writes again".into(),
                ))
            }
            (Err(e), false) => {
                self.failing = true;
                let recent = self
                    .warned
                    .is_some_and(|at| now.duration_since(at) < Self::WARN_AGAIN);
                if recent {
                    return Some((
                        tracing::Level::DEBUG,
                        format!("the local store cannot be written again: {e}"),
                    ));
                }
                self.warned = Some(now);
                Some((
                    tracing::Level::WARN,
                    format!(
                        "the local store cannot be written ({e}): positions are kept in \
                         memory and on the broker only until it can"
                    ),
                ))
            }
            (Err(e), true) => Some((
                tracing::Level::DEBUG,
                format!("the local store still cannot be written: {e}"),
            )),
        }
    }
}

/// The store on a thread of its own: writes are queued and never wait on the disk where they
/// are asked for (the network runtime's workers, the application's threads). The
/// thread ends once the writer is dropped and the queue is done; [`Writer::sync`] waits
/// until what was queued before it is written (the final position, before the process ends).
pub struct Writer {
    tx: std::sync::mpsc::Sender<Job>,
}

impl Writer {
    /// `trouble` hears the warning when the store stops taking writes (for the user: the
    /// log's default level may hide it).
    pub fn spawn(
        store: Store,
        trouble: impl Fn(String) + Send + 'static,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("continuity-store".into())
            .spawn(move || {
                let mut health = Health::default();
                for job in rx {
                    let write = match job {
                        Job::Write(write) => write,
                        Job::Sync(done) => {
                            let _ = done.send(());
                            continue;
                        }
                    };
                    match health.note(&write(&store), std::time::Instant::now()) {
                        Some((tracing::Level::WARN, line)) => {
                            tracing::warn!("{line}");
                            trouble(line);
                        }
                        Some((tracing::Level::INFO, line)) => tracing::info!("{line}"),
                        Some((_, line)) => tracing::debug!("{line}"),
                        None => {}
                    }
                }
            })?;
        Ok(Writer { tx })
    }

    /// Queue a write; a failure is logged (the store costs durability, never playback).
    pub fn write(&self, f: impl FnOnce(&Store) -> Result<(), StoreError> + Send + 'static) {
        if self.tx.send(Job::Write(Box::new(f))).is_err() {
            tracing::warn!("the local store's writer has stopped: a write was lost");
        }
    }

    /// Wait (at most `timeout`) until every write queued so far is done.
    pub async fn sync(&self, timeout: Duration) -> bool {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Job::Sync(done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Stamp;
    use crate::model::Media;

    fn event(device: &str, id: Option<&str>, at_s: u64) -> Event {
        Event {
            v: 1,
            id: id.map(str::to_owned),
            device: device.into(),
            name: wire::EventName::Paused,
            at_unix_ns: at_s * 1_000_000_000,
            media_id: None,
            position_ns: None,
            session: None,
            handoff: None,
        }
    }

    #[test]
    fn events_are_kept_once_and_within_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open_in(dir.path()).unwrap();
        let day = 86_400;
        let now = 1_800_000_000 * 1_000_000_000;
        let keep = EventRetention { days: 2, rows: 3 };
        let now_s = now / 1_000_000_000;
        assert!(
            st.put_event(&event("tv", Some("a-1"), now_s - 3 * day), keep, now)
                .unwrap()
        );
        // Three days old against two days kept: gone at the next insert.
        assert!(
            st.put_event(&event("tv", Some("a-2"), now_s - 10), keep, now)
                .unwrap()
        );
        assert_eq!(st.events_since(0).unwrap().len(), 1);
        // The same id again, from the same device: nothing new. From another: its own.
        assert!(
            !st.put_event(&event("tv", Some("a-2"), now_s - 10), keep, now)
                .unwrap()
        );
        assert!(
            st.put_event(&event("phone", Some("a-2"), now_s - 9), keep, now)
                .unwrap()
        );
        // An older device's event (no id) is told apart by its device, name and instant.
        assert!(
            st.put_event(&event("car", None, now_s - 8), keep, now)
                .unwrap()
        );
        assert!(
            !st.put_event(&event("car", None, now_s - 8), keep, now)
                .unwrap()
        );
        // At most three rows: the oldest goes.
        assert!(
            st.put_event(&event("car", None, now_s - 7), keep, now)
                .unwrap()
        );
        let kept = st.events_since(0).unwrap();
        let at: Vec<u64> = kept
            .iter()
            .map(|e| now_s - e.at_unix_ns / 1_000_000_000)
            .collect();
        assert_eq!(at, vec![9, 8, 7]);
        assert_eq!(st.events_since(now - 8_500_000_000).unwrap().len(), 2);
    }

    /// Reliability row 12: a store that cannot be written is one warning, not one a write.
    #[test]
    fn a_store_that_stops_taking_writes_is_one_warning_and_one_line_when_it_is_back() {
        let failed = || {
            Err(StoreError::Dir {
                path: "/ro".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            })
        };
        let t0 = std::time::Instant::now();
        let mut h = Health::default();
        assert_eq!(h.note(&Ok(()), t0), None);
        let (level, line) = h.note(&failed(), t0).unwrap();
        assert_eq!(level, tracing::Level::WARN);
        assert!(
            line.contains("cannot be written") && line.contains("/ro"),
            "{line}"
        );
        for _ in 0..5 {
            assert_eq!(h.note(&failed(), t0).unwrap().0, tracing::Level::DEBUG);
        }
        assert_eq!(h.note(&Ok(()), t0).unwrap().0, tracing::Level::INFO);
        assert_eq!(h.note(&Ok(()), t0), None);
        // A store that takes some writes and refuses others: not one warning per refusal.
        let soon = t0 + Duration::from_secs(60);
        assert_eq!(h.note(&failed(), soon).unwrap().0, tracing::Level::DEBUG);
        assert_eq!(h.note(&Ok(()), soon).unwrap().0, tracing::Level::INFO);
        // Once a while has passed, it is news again.
        let later = t0 + Health::WARN_AGAIN;
        assert_eq!(h.note(&failed(), later).unwrap().0, tracing::Level::WARN);
    }

    fn point(pos: u64, wall: u64) -> ResumePoint {
        ResumePoint {
            v: 1,
            media: Media {
                id: "file:a.ogg".into(),
                ..Default::default()
            },
            position_ns: pos,
            finished: false,
            audio: None,
            subtitle: None,
            device: "d".into(),
            stamp: Stamp {
                wall_ns: wall,
                counter: 0,
                device: "d".into(),
            },
        }
    }

    #[test]
    fn newer_resume_points_win_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open_in(dir.path()).unwrap();
            assert!(s.put_resume(&point(10, 100)).unwrap());
            assert!(!s.put_resume(&point(5, 50)).unwrap(), "older must not win");
            assert!(s.put_resume(&point(20, 200)).unwrap());
        }
        let s = Store::open_in(dir.path()).unwrap();
        assert_eq!(s.resume("file:a.ogg").unwrap().unwrap().position_ns, 20);
        assert_eq!(s.resume_points().unwrap().len(), 1);
        assert!(s.resume("file:none.ogg").unwrap().is_none());
    }
}
