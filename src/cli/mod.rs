//! The commands of the `continuity` tool, one file each, and what they share: the failure a
//! command ends with (message and exit code), the broker lookup, the read-only snapshot.

use std::time::Duration;

use continuity::net::link::BrokerUrl;
use continuity::observe::{ObserveError, Observer};

pub mod broker;
pub mod charts;
pub mod devices;
pub mod loadtest;
pub mod pair;
pub mod play;
pub mod sessions;
pub mod stats;
pub mod transfer;

/// Exit code for "the broker cannot be reached" (and for usage errors, as clap does).
pub const EXIT_UNREACHABLE: u8 = 2;
/// How long a command waits for the broker before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest a view waits for the broker's echo of its sync, after which it answers with
/// what it has.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(3);

/// The warning that plain JSON mode gives, wherever it is chosen.
pub const PLAINTEXT_WARNING: &str = "encryption is off (--insecure-plaintext): what plays, \
     where and at which position goes over the broker as plain JSON, and anyone who can \
     publish there can command handoffs";

/// How a command failed: what to print, and the exit code.
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    /// The command failed (exit code 1).
    pub fn new(message: impl ToString) -> Failure {
        Failure {
            message: message.to_string(),
            code: 1,
        }
    }

    /// The broker cannot be reached, or the command was used wrongly (exit code 2).
    pub fn unreachable(message: impl ToString) -> Failure {
        Failure {
            message: message.to_string(),
            code: EXIT_UNREACHABLE,
        }
    }
}

/// What a command whose config dir is not paired with any device of the account says,
/// with the fix.
pub fn not_paired(name: &str) -> String {
    format!(
        "note: this device is not paired with any device of account '{name}': run `continuity \
         pair` on a device of the account and `continuity pair --join` here (or pair another \
         device with this one)"
    )
}

impl From<ObserveError> for Failure {
    fn from(e: ObserveError) -> Failure {
        match e {
            ObserveError::Unreachable { .. } => Failure::unreachable(e),
            ObserveError::Link(_) => Failure::new(e),
        }
    }
}

/// The broker URL, or for `auto` the one mDNS finds (saying which, and why, on stderr).
pub async fn parse_broker(url: &str) -> Result<BrokerUrl, Failure> {
    let url = url.to_owned();
    let resolved = tokio::task::spawn_blocking(move || {
        continuity::net::discovery::resolve_broker(&url, continuity::net::discovery::AUTO_WAIT)
    })
    .await
    .map_err(Failure::new)?;
    match resolved {
        Ok((url, note)) => {
            if let Some(note) = note {
                eprintln!("{note}");
            }
            Ok(url)
        }
        Err(e) => Err(Failure::unreachable(e)),
    }
}

/// A read-only view of the account, once the retained state (and, from a broker that held
/// none, the devices' answers to its ask) has arrived.
pub async fn snapshot(
    broker: &BrokerUrl,
    name: &str,
    account: Option<continuity::security::account::Account>,
) -> Result<Observer, Failure> {
    let mut obs = Observer::connect(broker, name, CONNECT_TIMEOUT, account).await?;
    if !obs.sync(SYNC_TIMEOUT).await {
        tracing::warn!(
            "the broker did not echo within {} s: what it holds may be incomplete",
            SYNC_TIMEOUT.as_secs()
        );
    }
    // What the broker lacks (a node of a cluster, a bridge), the devices send again.
    obs.ask(SYNC_TIMEOUT).await;
    Ok(obs)
}

/// Until Ctrl-C or SIGTERM.
pub async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl From<pair::PairFailure> for Failure {
    fn from(e: pair::PairFailure) -> Failure {
        match e {
            pair::PairFailure::Unreachable(m) => Failure::unreachable(m),
            pair::PairFailure::Failed(m) => Failure::new(m),
        }
    }
}

impl From<transfer::TransferError> for Failure {
    fn from(e: transfer::TransferError) -> Failure {
        match e {
            transfer::TransferError::Unreachable(m) | transfer::TransferError::Usage(m) => {
                Failure::unreachable(m)
            }
        }
    }
}

/// Raise the open-files limit to what `connections` need, up to the hard limit; the limit
/// now, or what is missing and how to raise it.
pub fn raise_open_files(connections: usize) -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit write and read the struct given, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err("cannot read the open-files limit".into());
        }
        let want = (connections as u64 + 256).min(lim.rlim_max);
        if lim.rlim_cur < want {
            lim.rlim_cur = want;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err("cannot raise the open-files limit".into());
            }
        }
    }
    let need = connections as u64 + 64;
    if lim.rlim_cur < need {
        return Err(format!(
            "{connections} connections need about {need} open files, and the hard limit is \
             {} (raise it: ulimit -Hn {need}, as root, or in /etc/security/limits.conf)",
            lim.rlim_max
        ));
    }
    Ok(lim.rlim_cur)
}
