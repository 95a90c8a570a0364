//! `continuity devices`: the account's devices, from the broker, the LAN and the roster.

use serde_json::json;

use continuity::engine::Directory;
use continuity::model::DeviceClass;
use continuity::net::discovery::LanDevice;
use continuity::security::account::Account;
use continuity::wire::Status;

use super::{Failure, parse_broker, snapshot};

/// `continuity devices [--json] [--lan]` for account `name` through `broker`: as soon as the
/// broker has given what it holds, and with `lan`, after the LAN's players have had
/// [`LAN_WAIT`](continuity::net::discovery::LAN_WAIT) to answer.
pub async fn run(
    broker: &str,
    name: &str,
    account: Option<Account>,
    json: bool,
    lan: bool,
) -> Result<(), Failure> {
    let broker = parse_broker(broker).await?;
    // What the LAN says, while the broker answers.
    let found = lan.then(|| {
        let wait = continuity::net::discovery::LAN_WAIT;
        eprintln!(
            "Looking for players on the LAN for {} s…",
            wait.as_secs_f32()
        );
        tokio::task::spawn_blocking(move || continuity::net::discovery::find_players(wait))
    });
    let alone = account.as_ref().is_some_and(|a| a.alone());
    let obs = snapshot(&broker, name, account).await?;
    let lan: Option<Vec<_>> = match found {
        Some(task) => Some(
            task.await
                .unwrap_or_default()
                .into_iter()
                .filter(|d| d.account == name)
                .collect(),
        ),
        None => None,
    };
    let view = DeviceView {
        dir: obs.directory(),
        lan: lan.as_deref(),
        roster: obs.roster(),
    };
    view.print(name, json);
    obs.close().await;
    if alone {
        eprintln!("{}", super::not_paired(name));
    }
    Ok(())
}

/// What `continuity devices` knows of the account: the broker's directory, the players on
/// the LAN (when it looked: `--lan`), and (sealed accounts) the roster of paired devices.
struct DeviceView<'a> {
    dir: &'a Directory,
    lan: Option<&'a [LanDevice]>,
    roster: Option<&'a continuity::wire::Roster>,
}

impl DeviceView<'_> {
    fn status(&self, id: &str) -> &'static str {
        if self
            .roster
            .and_then(|r| r.entry(id))
            .is_some_and(|e| e.revoked)
        {
            return "revoked";
        }
        match self.dir.availability.get(id) {
            Some(Status::Online) => "online",
            Some(Status::Offline) => "offline",
            None => "unknown",
        }
    }

    /// Whether the device is paired (`None`: a plain account has no roster).
    fn paired(&self, id: &str) -> Option<bool> {
        self.roster.map(|r| r.trusts(id))
    }

    fn ids(&self) -> Vec<String> {
        let roster = self.roster.map(|r| &r.devices[..]).unwrap_or_default();
        let mut ids: Vec<String> = self
            .dir
            .devices
            .iter()
            .map(|(k, _)| k.clone())
            .chain(self.dir.availability.keys().cloned())
            .chain(self.lan.unwrap_or_default().iter().map(|d| d.id.clone()))
            .chain(roster.iter().map(|e| e.device.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Name and class of a device, from the broker, else from the LAN, else the roster.
    fn describe(&self, id: &str) -> (Option<String>, Option<DeviceClass>) {
        if let Some(i) = self.dir.devices.get(&id.to_owned()) {
            return (Some(i.device.name.clone()), Some(i.device.class));
        }
        if let Some(d) = self.lan.unwrap_or_default().iter().find(|d| d.id == id) {
            return (Some(d.name.clone()), Some(d.class));
        }
        let name = self
            .roster
            .and_then(|r| r.entry(id))
            .map(|e| e.name.clone());
        (name, None)
    }

    fn print(&self, account: &str, as_json: bool) {
        let ids = self.ids();
        // `None` when it did not look.
        let on_lan = |id: &str| self.lan.map(|l| l.iter().any(|d| d.id == id));
        if as_json {
            let devices: Vec<_> = ids
                .iter()
                .map(|id| {
                    let info = self.dir.devices.get(id);
                    let (name, class) = self.describe(id);
                    json!({
                        "id": id,
                        "name": name,
                        "class": class,
                        "status": self.status(id),
                        "paired": self.paired(id),
                        "lan": on_lan(id),
                        "software": info.map(|i| i.software.clone()),
                        "capabilities": info.map(|i| i.capabilities.clone()).unwrap_or_default(),
                    })
                })
                .collect();
            let doc = json!({ "v": 1, "account": account, "devices": devices });
            println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
            return;
        }
        if ids.is_empty() {
            println!("No devices in account '{account}' yet.");
            return;
        }
        println!(
            "{:<8} {:<8} {:<24} {:<6} {:<5} ID",
            "STATUS", "CLASS", "NAME", "PAIRED", "LAN"
        );
        for id in ids {
            let (name, class) = self.describe(&id);
            let paired = match self.paired(&id) {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            println!(
                "{:<8} {:<8} {:<24} {:<6} {:<5} {}",
                self.status(&id),
                class.map(|c| c.as_str()).unwrap_or("?"),
                name.as_deref().unwrap_or("?"),
                paired,
                match on_lan(&id) {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                },
                id
            );
        }
    }
}
