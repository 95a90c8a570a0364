//! A read-only view of an account on the broker: which devices exist and what they play.
//! The CLI's `devices` and `sessions` commands, and the tests, are built on it.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::Directory;
use crate::net::link::{BrokerUrl, ConnectError, Link, LinkConfig, LinkEvent, client_id};
use crate::security::account::Account;
use crate::security::rekey;
use crate::security::seal::{Opener, SealError, Signers};
use crate::wire::{self, Body, filters};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot reach the broker at {broker}: {reason}")]
    Unreachable { broker: String, reason: String },
    #[error(transparent)]
    Link(#[from] crate::net::link::LinkError),
}

/// A subscription to an account's devices, sessions and resume points.
pub struct Observer {
    link: Link,
    events: mpsc::Receiver<LinkEvent>,
    directory: Directory,
    /// Opens sealed messages; `None` reads plain JSON only.
    opener: Option<Opener>,
    /// The account, to take a rotated key in (sealed accounts).
    account: Option<Account>,
    asker: rekey::Asker,
    /// Retained messages sealed with a key this device lacks, until it has it.
    parked: std::collections::BTreeMap<String, Vec<u8>>,
    /// Messages that failed to decode or open (logged; never fatal).
    pub rejected: u64,
}

impl Observer {
    /// Connect and subscribe. Fails with [`ObserveError::Unreachable`] if the broker cannot
    /// be reached within `timeout`. With the device's `keys` (a sealed account) only sealed
    /// messages from paired devices count, and a rotated account key is asked for and kept;
    /// without, only plain ones.
    pub async fn connect(
        broker: &BrokerUrl,
        account: &str,
        timeout: Duration,
        keys: Option<Account>,
    ) -> Result<Observer, ObserveError> {
        let opener = keys.as_ref().map(Account::opener);
        let mut cfg = LinkConfig::new(broker.clone(), client_id("observer"));
        cfg.subscriptions = vec![
            filters::availability(account),
            filters::device_info(account),
            filters::sessions(account),
            filters::resume(account),
        ];
        if let Some(k) = &keys {
            cfg.subscriptions.extend([
                filters::roster(account),
                rekey::answer_topic(account, &k.device),
            ]);
        }
        let (link, events) = Link::connect(cfg, timeout).await.map_err(|e| match e {
            ConnectError::Link(e) => ObserveError::Link(e),
            ConnectError::Unreachable(reason) => ObserveError::Unreachable {
                broker: broker.to_string(),
                reason,
            },
        })?;
        let directory = Directory {
            media_keys: opener.as_ref().map(Opener::media_keys).unwrap_or_default(),
            ..Directory::default()
        };
        Ok(Observer {
            link,
            events,
            directory,
            opener,
            account: keys,
            asker: rekey::Asker::default(),
            parked: Default::default(),
            rejected: 0,
        })
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The account's paired devices as this view knows them (sealed accounts).
    pub fn roster(&self) -> Option<&wire::Roster> {
        self.opener.as_ref().map(|o| &o.roster)
    }

    fn take(&mut self, ev: LinkEvent) -> bool {
        let LinkEvent::Message { topic, payload } = ev else {
            return false;
        };
        self.take_message(&topic, &payload)
    }

    /// A rotated account key arrived (or was already in the config dir): open with it, and
    /// take in what was parked for it.
    fn rekeyed(&mut self) -> bool {
        let (Some(acc), Some(o)) = (&self.account, &mut self.opener) else {
            return false;
        };
        o.set_keys(acc.all_keys());
        o.roster.merge(&acc.roster);
        o.signers = Signers::from_roster(&o.roster);
        self.directory.media_keys = o.media_keys();
        let mut changed = false;
        for (topic, payload) in std::mem::take(&mut self.parked) {
            changed |= self.take_message(&topic, &payload);
        }
        changed
    }

    /// The account lacks key `key_id`: ask for it, or take it from the config dir. Returns
    /// whether the directory changed (the key was at hand).
    fn want_key(&mut self, key_id: &str) -> bool {
        let Some(acc) = &mut self.account else {
            return false;
        };
        match self.asker.want(acc, key_id, crate::hlc::now_unix_ns()) {
            rekey::Want::Ask { topic, payload } => {
                self.link.publish(&topic, payload, true, true);
                false
            }
            rekey::Want::Adopted => self.rekeyed(),
            rekey::Want::Nothing => false,
        }
    }

    fn take_message(&mut self, topic: &str, payload: &[u8]) -> bool {
        if let Some(acc) = &mut self.account
            && topic == rekey::answer_topic(&acc.name, &acc.device)
        {
            return match self.asker.take_answer(acc, payload) {
                Ok(true) => {
                    let request = rekey::request_topic(&acc.name, &acc.device);
                    self.link.publish(&request, Vec::new(), true, true);
                    self.rekeyed()
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::info!("refused a key answer: {e}");
                    false
                }
            };
        }
        let decoded = match &mut self.opener {
            Some(o) => match o.decode(topic, payload) {
                Err(SealError::UnknownKey(id)) => {
                    // Signed by a trusted device with a key this one lacks: a rotation.
                    if wire::Topic::parse(topic).is_ok_and(|t| t.retained()) {
                        self.parked.insert(topic.to_owned(), payload.to_vec());
                    }
                    if self.want_key(&id) {
                        return true;
                    }
                    Err(SealError::UnknownKey(id).to_string())
                }
                other => other.map_err(|e| e.to_string()),
            },
            None => match wire::decode(topic, payload) {
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
                        for e in merged.devices.iter().filter(|e| e.revoked) {
                            self.directory.forget(&e.device);
                        }
                        o.roster = merged;
                    }
                }
                // A roster that names a key this device lacks: ask for it.
                let lacking = self.account.as_mut().and_then(|acc| {
                    acc.roster.merge(&r);
                    acc.lacks_key()
                });
                lacking.is_some_and(|id| self.want_key(&id))
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
