//! A read-only view of an account on the broker: which devices exist and what they play.
//! The CLI's `devices` and `sessions` commands, and the tests, are built on it.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::Directory;
use crate::link::{BrokerUrl, Link, LinkConfig, LinkEvent, client_id};
use crate::seal::{Opener, Signers};
use crate::wire::{self, Body, filters};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot reach the broker at {broker}: {reason}")]
    Unreachable { broker: String, reason: String },
    #[error(transparent)]
    Link(#[from] crate::link::LinkError),
}

/// A subscription to an account's devices, sessions and resume points.
pub struct Observer {
    link: Link,
    events: mpsc::Receiver<LinkEvent>,
    directory: Directory,
    /// Opens sealed messages; `None` reads plain JSON only.
    opener: Option<Opener>,
    /// Messages that failed to decode or open (logged; never fatal).
    pub rejected: u64,
}

impl Observer {
    /// Connect and subscribe. Fails with [`ObserveError::Unreachable`] if the broker cannot
    /// be reached within `timeout`. With an `opener` (a sealed account) only sealed messages
    /// from paired devices count; without, only plain ones.
    pub async fn connect(
        broker: &BrokerUrl,
        account: &str,
        timeout: Duration,
        opener: Option<Opener>,
    ) -> Result<Observer, ObserveError> {
        let mut cfg = LinkConfig::new(broker.clone(), client_id("observer"));
        cfg.subscriptions = vec![
            filters::availability(account),
            filters::device_info(account),
            filters::sessions(account),
            filters::resume(account),
        ];
        if opener.is_some() {
            cfg.subscriptions.push(filters::roster(account));
        }
        cfg.connect_timeout = timeout;
        let (link, mut events) = Link::spawn(cfg)?;
        let unreachable = |reason: String| ObserveError::Unreachable {
            broker: broker.to_string(),
            reason,
        };
        match tokio::time::timeout(timeout, events.recv()).await {
            Ok(Some(LinkEvent::Connected)) => {}
            Ok(Some(LinkEvent::Down { reason })) => return Err(unreachable(reason)),
            Ok(Some(LinkEvent::Message { .. })) | Ok(None) => {
                return Err(unreachable("the connection closed".into()));
            }
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    timeout.as_secs_f32()
                )));
            }
        }
        let directory = Directory {
            media_keys: opener.as_ref().map(Opener::media_keys).unwrap_or_default(),
            ..Directory::default()
        };
        Ok(Observer {
            link,
            events,
            directory,
            opener,
            rejected: 0,
        })
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    fn take(&mut self, ev: LinkEvent) -> bool {
        let LinkEvent::Message { topic, payload } = ev else {
            return false;
        };
        let decoded = match &mut self.opener {
            Some(o) => o.decode(&topic, &payload).map_err(|e| e.to_string()),
            None => match wire::decode(&topic, &payload) {
                Ok(m) if matches!(m.body, Body::Sealed(_)) => {
                    Err("sealed, and this view reads plain JSON only".to_owned())
                }
                other => other.map_err(|e| e.to_string()),
            },
        };
        match decoded {
            Ok(wire::Incoming {
                body: Body::Roster(r),
                ..
            }) => {
                // A trusted device vouches for these: trust them too (in memory).
                if let Some(o) = &mut self.opener {
                    let mut merged = o.roster.clone();
                    if merged.merge(&r) {
                        o.signers = Signers::from_roster(&merged);
                        o.roster = merged;
                    }
                }
                false
            }
            Ok(msg) => self.directory.apply(&msg),
            Err(e) => {
                self.rejected += 1;
                tracing::debug!("ignored a message on {topic}: {e}");
                false
            }
        }
    }

    /// Take in what the broker sends until it has been quiet for `quiet` (retained messages
    /// arrive in a burst after subscribing), or `max` has passed.
    pub async fn settle(&mut self, quiet: Duration, max: Duration) {
        let end = Instant::now() + max;
        loop {
            let until = (Instant::now() + quiet).min(end);
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(ev)) => {
                    self.take(ev);
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Wait for the next change to the directory, at most `max`. Returns whether one came.
    pub async fn changed(&mut self, max: Duration) -> bool {
        let end = Instant::now() + max;
        loop {
            match tokio::time::timeout_at(end, self.events.recv()).await {
                Ok(Some(ev)) => {
                    if self.take(ev) {
                        return true;
                    }
                }
                Ok(None) | Err(_) => return false,
            }
        }
    }

    /// Wait until `pred` holds for the directory, at most `max`. Returns whether it did.
    pub async fn wait_for(&mut self, max: Duration, pred: impl Fn(&Directory) -> bool) -> bool {
        let end = Instant::now() + max;
        while !pred(&self.directory) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.changed(left).await && !pred(&self.directory) {
                return pred(&self.directory);
            }
        }
        true
    }

    pub async fn close(self) {
        self.link.shutdown(Duration::from_millis(200)).await;
    }
}
