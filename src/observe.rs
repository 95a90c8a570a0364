//! A read-only view of an account on the broker: which devices exist and what they play.
//! The CLI's `devices` and `sessions` commands, and the tests, are built on it.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::Directory;
use crate::link::{BrokerUrl, Link, LinkConfig, LinkEvent, client_id};
use crate::wire::{self, filters};

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
    /// Messages that failed to decode (logged; never fatal).
    pub rejected: u64,
}

impl Observer {
    /// Connect and subscribe. Fails with [`ObserveError::Unreachable`] if the broker cannot
    /// be reached within `timeout`.
    pub async fn connect(
        broker: &BrokerUrl,
        account: &str,
        timeout: Duration,
    ) -> Result<Observer, ObserveError> {
        let mut cfg = LinkConfig::new(broker.clone(), client_id("observer"));
        cfg.subscriptions = vec![
            filters::availability(account),
            filters::device_info(account),
            filters::sessions(account),
            filters::resume(account),
        ];
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
        Ok(Observer {
            link,
            events,
            directory: Directory::default(),
            rejected: 0,
        })
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    fn take(&mut self, ev: LinkEvent) -> bool {
        match ev {
            LinkEvent::Message { topic, payload } => match wire::decode(&topic, &payload) {
                Ok(msg) => self.directory.apply(&msg),
                Err(e) => {
                    self.rejected += 1;
                    tracing::debug!("ignored a message on {topic}: {e}");
                    false
                }
            },
            LinkEvent::Connected | LinkEvent::Down { .. } => false,
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
