//! An account as one device holds it: the account secret, this device's signing key and the
//! roster of paired devices, all in the config dir.
//!
//! - `<dir>/accounts/<account>.key`: the secret (mode 0600), see [`crate::config`].
//! - `<dir>/device.key`: this device's Ed25519 key (mode 0600), shared by its accounts.
//! - `<dir>/accounts/<account>.roster.json`: the paired devices and their public keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::signature::Ed25519KeyPair;

use crate::config::{self, ConfigError};
use crate::security::seal::{self, AccountKeys, Counter, Guard, Opener, Signers};
use crate::wire::{self, Roster, RosterEntry};

impl Roster {
    pub fn empty() -> Roster {
        Roster {
            v: wire::VERSION,
            devices: Vec::new(),
            key: None,
        }
    }

    pub fn entry(&self, device: &str) -> Option<&RosterEntry> {
        self.devices.iter().find(|e| e.device == device)
    }

    /// Whether `device` is a paired, not revoked, device.
    pub fn trusts(&self, device: &str) -> bool {
        self.entry(device).is_some_and(|e| !e.revoked)
    }

    /// Take an entry in if it is a later change than the one held (a revocation wins a tie).
    /// Returns whether anything changed.
    pub fn offer(&mut self, entry: RosterEntry) -> bool {
        match self.devices.iter_mut().find(|e| e.device == entry.device) {
            Some(held) => {
                let later = (entry.changed_unix_ns, entry.revoked, &entry.public_key)
                    > (held.changed_unix_ns, held.revoked, &held.public_key);
                if later {
                    *held = entry;
                }
                later
            }
            None => {
                self.devices.push(entry);
                self.devices.sort_by(|a, b| a.device.cmp(&b.device));
                true
            }
        }
    }

    /// Merge another roster in, entry by entry, and the later key change. Returns whether
    /// anything changed.
    pub fn merge(&mut self, other: &Roster) -> bool {
        let mut changed = false;
        if let Some(k) = &other.key {
            let later = self
                .key
                .as_ref()
                .is_none_or(|held| (k.changed_unix_ns, &k.id) > (held.changed_unix_ns, &held.id));
            if later {
                self.key = Some(k.clone());
                changed = true;
            }
        }
        for e in &other.devices {
            changed |= self.offer(e.clone());
        }
        changed
    }
}

/// The account material of one device.
#[derive(Clone)]
pub struct Account {
    pub name: String,
    /// This device.
    pub device: String,
    secret: [u8; 32],
    /// Secrets used before a rotation, oldest first (kept in the config dir): what was
    /// sealed with them still opens.
    previous: Vec<[u8; 32]>,
    pub signer: Arc<Ed25519KeyPair>,
    pub roster: Roster,
    dir: PathBuf,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("device", &self.device)
            .field("key_id", &self.keys().key_id)
            .field("roster", &self.roster.devices.len())
            .finish_non_exhaustive()
    }
}

pub fn roster_path(dir: &Path, account: &str) -> PathBuf {
    dir.join("accounts").join(format!("{account}.roster.json"))
}

impl Account {
    /// Open (creating on first use) the account `name` for `device` in config dir `dir`.
    /// A device that creates the account's secret is its first paired device.
    pub fn open(
        dir: &Path,
        name: &str,
        device: &str,
        device_name: &str,
    ) -> Result<Account, ConfigError> {
        let secret = config::account_secret(dir, name)?;
        let previous = config::previous_secrets(dir, name)?;
        let signer = Arc::new(config::device_key(dir)?);
        let path = roster_path(dir, name);
        let mut roster = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<Roster>(&bytes).map_err(|e| ConfigError::Roster {
                    path: path.clone(),
                    reason: format!("not a roster ({e}); move it away to start afresh"),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Roster::empty(),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        let public_key = seal::public_key(&signer);
        let fresh = roster
            .entry(device)
            .is_none_or(|e| e.public_key != public_key);
        let mut account = Account {
            name: name.to_owned(),
            device: device.to_owned(),
            secret,
            previous,
            signer,
            roster: Roster::empty(),
            dir: dir.to_owned(),
        };
        if fresh {
            roster.offer(account.own_entry(device_name));
            account.roster = roster;
            account.save_roster()?;
        } else {
            account.roster = roster;
        }
        Ok(account)
    }

    /// Name this device `name` in its roster (what `pair --device-name` says it is called),
    /// when its entry says otherwise.
    pub fn rename(&mut self, name: &str) -> Result<(), ConfigError> {
        if self
            .roster
            .entry(&self.device)
            .is_some_and(|e| e.name == name)
        {
            return Ok(());
        }
        let entry = self.own_entry(name);
        self.roster.offer(entry);
        self.save_roster()
    }

    /// Whether this device is paired with no other device of the account (its roster names
    /// only itself, or only revoked others): what it sees is its own, and nobody hears it.
    pub fn alone(&self) -> bool {
        !self
            .roster
            .devices
            .iter()
            .any(|e| e.device != self.device && !e.revoked)
    }

    /// This device's roster entry, changed now.
    pub fn own_entry(&self, device_name: &str) -> RosterEntry {
        RosterEntry {
            device: self.device.clone(),
            name: device_name.to_owned(),
            public_key: seal::public_key(&self.signer),
            changed_unix_ns: crate::hlc::now_unix_ns(),
            revoked: false,
        }
    }

    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    pub fn keys(&self) -> AccountKeys {
        AccountKeys::derive(&self.secret)
    }

    /// The current keys first, then the ones rotated away from.
    pub fn all_keys(&self) -> Vec<AccountKeys> {
        std::iter::once(&self.secret)
            .chain(self.previous.iter().rev())
            .map(|s| AccountKeys::derive(s))
            .collect()
    }

    /// Whether the roster names a current key other than the one this device holds.
    pub fn lacks_key(&self) -> Option<String> {
        let named = &self.roster.key.as_ref()?.id;
        (*named != self.keys().key_id).then(|| named.clone())
    }

    /// Revoke `device` and rotate the account key, keeping both: the revoked device's
    /// messages are refused from now on, and what is sealed from now on it cannot open.
    /// Returns the new key id.
    pub fn revoke_and_rotate(&mut self, device: &str) -> Result<String, ConfigError> {
        let now = crate::hlc::now_unix_ns();
        if let Some(e) = self.roster.devices.iter_mut().find(|e| e.device == device) {
            e.revoked = true;
            e.changed_unix_ns = now.max(e.changed_unix_ns + 1);
        }
        let secret = AccountKeys::new_secret().map_err(|e| ConfigError::Roster {
            path: roster_path(&self.dir, &self.name),
            reason: e.to_string(),
        })?;
        self.take_secret(secret)?;
        let id = self.keys().key_id;
        self.roster.key = Some(wire::RosterKey {
            id: id.clone(),
            changed_unix_ns: now,
        });
        self.save_roster()?;
        Ok(id)
    }

    /// Take a rotated secret in (the old one still opens what was sealed with it) with the
    /// roster that came with it.
    pub fn adopt_rotation(&mut self, secret: [u8; 32], roster: &Roster) -> Result<(), ConfigError> {
        if secret != self.secret {
            self.take_secret(secret)?;
        }
        self.merge_roster(roster)?;
        Ok(())
    }

    fn take_secret(&mut self, secret: [u8; 32]) -> Result<(), ConfigError> {
        let old = self.secret;
        let mut previous = self.previous.clone();
        previous.retain(|p| *p != secret && *p != old);
        previous.push(old);
        let from = previous.len().saturating_sub(config::KEEP_PREVIOUS);
        previous.drain(..from);
        // The old secret is kept before the new one replaces it: a crash in between loses
        // neither.
        config::set_previous_secrets(&self.dir, &self.name, &previous)?;
        self.previous = previous;
        self.set_secret(secret)
    }

    /// The secret kept on disk now, if it differs from the one in hand (another process of
    /// this device rotated it).
    pub fn secret_on_disk(&self) -> Option<[u8; 32]> {
        config::account_secret(&self.dir, &self.name)
            .ok()
            .filter(|s| *s != self.secret)
    }

    pub fn signers(&self) -> Signers {
        Signers::from_roster(&self.roster)
    }

    /// Opens what the account's devices send (for read-only views).
    pub fn opener(&self) -> Opener {
        Opener::new(self.all_keys(), self.roster.clone())
    }

    /// This device's sealed channel, with its counter starting above `counter_floor`.
    pub fn guard(&self, counter_floor: u64) -> Guard {
        let mut g = Guard::new(
            &self.device,
            self.keys(),
            self.signer.clone(),
            self.roster.clone(),
            Counter::new(counter_floor),
        );
        g.set_keys(self.keys(), self.all_keys());
        g
    }

    /// Merge a roster in and keep the result. Returns whether anything changed.
    pub fn merge_roster(&mut self, other: &Roster) -> Result<bool, ConfigError> {
        let changed = self.roster.merge(other);
        if changed {
            self.save_roster()?;
        }
        Ok(changed)
    }

    /// Take on another secret (pairing joined an account, or the key rotated) and keep it.
    pub fn set_secret(&mut self, secret: [u8; 32]) -> Result<(), ConfigError> {
        config::set_account_secret(&self.dir, &self.name, &secret)?;
        self.secret = secret;
        Ok(())
    }

    pub fn save_roster(&self) -> Result<(), ConfigError> {
        let text = serde_json::to_string_pretty(&self.roster).expect("a roster serialises");
        config::replace_private(&roster_path(&self.dir, &self.name), &text)
    }
}
