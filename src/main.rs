//! The `continuity` command line tool.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;

use continuity::engine::Directory;
use continuity::hlc::now_unix_ns;
use continuity::model::{DeviceClass, PlayState};
use continuity::net::broker::EmbeddedBroker;
use continuity::net::discovery::LanDevice;
use continuity::net::link::BrokerUrl;
use continuity::observe::{ObserveError, Observer};
use continuity::wire::{SessionState, Status};

mod cli;

/// Exit code for "the broker cannot be reached" (and for usage errors, as clap does).
const EXIT_UNREACHABLE: u8 = 2;
/// How long a command waits for the broker before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Parser)]
#[command(
    name = "continuity",
    version,
    about = "Continue playback on another device, at the same point",
    long_about = "Continue playback on another device, at the same point.\n\n\
                  Devices running the `continuity` GStreamer element (or any client of the \
                  open MQTT contract) share what they play; this tool shows it and runs a \
                  broker for them."
)]
struct Cli {
    /// MQTT broker: mqtt://[user:password@]host[:port], mqtts://..., or `auto` (find a
    /// continuity broker on the LAN with mDNS, else mqtt://127.0.0.1:1883).
    #[arg(
        long,
        global = true,
        env = "CONTINUITY_BROKER",
        default_value = "mqtt://127.0.0.1:1883"
    )]
    broker: String,
    /// Account: the devices that share sessions (a topic namespace on the broker).
    #[arg(
        long,
        global = true,
        env = "CONTINUITY_ACCOUNT",
        default_value = "default"
    )]
    account: String,
    /// Where this device keeps its id and state [default: $XDG_CONFIG_HOME/continuity].
    #[arg(long, global = true, env = "CONTINUITY_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Send and accept plain JSON instead of sealed, signed messages: anyone on the broker
    /// reads what plays and can command handoffs. For brokers and apps that cannot do the
    /// sealed contract yet; says so with a warning.
    #[arg(long, global = true, env = "CONTINUITY_INSECURE_PLAINTEXT")]
    insecure_plaintext: bool,
    /// CA certificates (PEM) to trust for an mqtts:// broker, beside the system roots.
    #[arg(long, global = true, env = "CONTINUITY_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for brokers that ask for one (with --client-key).
    #[arg(
        long,
        global = true,
        env = "CONTINUITY_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "CONTINUITY_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
    /// A file whose first line is the broker password (for the user in --broker), so that
    /// the password is in no command line; it must be private (chmod 600).
    #[arg(long, global = true, env = "CONTINUITY_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// More log output (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an MQTT broker in this process, for devices on this machine or the LAN.
    Broker {
        /// Address to listen on (0.0.0.0:1883 to serve the LAN).
        #[arg(long, default_value = "127.0.0.1:1883")]
        listen: SocketAddr,
        /// Do not advertise the broker on the LAN (mDNS `_mqtt._tcp.local.`).
        #[arg(long)]
        no_advertise: bool,
    },
    /// List the devices of the account: online or offline, class, name. With --revoke,
    /// remove a paired device (a lost phone) and rotate the account key.
    Devices {
        /// One JSON document (see docs/CLI.md) instead of a table.
        #[arg(long, conflicts_with = "revoke")]
        json: bool,
        /// Revoke this paired device (name or id): its messages are refused, and the account
        /// key is rotated and handed to the other devices, so it reads nothing new.
        #[arg(long, value_name = "DEVICE")]
        revoke: Option<String>,
        /// With --revoke: how long to wait for the devices online to take the new key, in
        /// seconds.
        #[arg(long, default_value_t = 30, requires = "revoke")]
        timeout: u64,
    },
    /// Play a file or URI with the continuity element: resumes, shows a live status line,
    /// answers handoffs. With no media it idles, waiting for a handoff.
    Play {
        /// A file or URI; none to wait for a handoff.
        media: Option<String>,
        /// The name other devices show [default: the host name].
        #[arg(long)]
        device_name: Option<String>,
        /// phone, tablet, desktop, tv, speaker, car or other.
        #[arg(long, default_value = "desktop")]
        device_class: continuity::model::DeviceClass,
        /// Use this device id instead of the one kept in the config dir.
        #[arg(long)]
        device_id: Option<String>,
        /// Show the video in a window and play the sound (default: headless).
        #[arg(long)]
        window: bool,
        /// What to do with a resume point: auto, ask or off.
        #[arg(long, default_value = "auto", value_parser = ["auto", "ask", "off"])]
        resume: String,
        /// Save frames as PNG here: the last one on pausing, the first after a handoff.
        #[arg(long)]
        snapshot_dir: Option<PathBuf>,
        /// Do not advertise this player on the LAN (mDNS `_continuity._tcp.local.`).
        #[arg(long)]
        no_advertise: bool,
        /// Automatic mode: starting media that another device was playing when it went
        /// offline (in the last 30 minutes) continues from where it was then.
        #[arg(long)]
        automatic: bool,
    },
    /// Move a session to another device: "continue on the TV".
    Transfer {
        /// The device that takes over (name or id).
        #[arg(long)]
        to: String,
        /// The device that plays now (name or id) [default: the one that plays].
        #[arg(long)]
        from: Option<String>,
        /// One JSON document (see docs/CLI.md) instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Pair devices: run it on a device that has the account, and `pair --join` on the new
    /// one (same broker, or `--broker auto` to find it on the LAN). Both show a 6-digit code:
    /// confirm on both that they match, and the new device gets the account's keys.
    Pair {
        /// Join the account through a device that runs `continuity pair`.
        #[arg(long)]
        join: bool,
        /// Take the codes as matching without asking (when one person sees both screens).
        #[arg(long)]
        yes: bool,
        /// How long the exchange stays open, in seconds.
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// The name the other device shows for this one [default: the host name].
        #[arg(long)]
        device_name: Option<String>,
        /// Do not advertise the exchange on the LAN (mDNS `_continuity-pair._tcp.local.`).
        #[arg(long)]
        no_advertise: bool,
    },
    /// Show what plays where, with positions extrapolated to now.
    Sessions {
        /// One JSON document (see docs/CLI.md) instead of a table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Redraw live, with a progress bar per session, until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, matches!(cli.command, Command::Broker { .. }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("continuity")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { message, code }) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

fn init_logging(verbose: u8, broker: bool) {
    let default = match (verbose, broker) {
        (0, false) => "error",
        (0, true) => "warn,rumqttd=off",
        (1, _) => "info,rumqttd=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl ToString) -> Failure {
        Failure {
            message: message.to_string(),
            code: 1,
        }
    }
}

impl From<ObserveError> for Failure {
    fn from(e: ObserveError) -> Failure {
        let code = match e {
            ObserveError::Unreachable { .. } => EXIT_UNREACHABLE,
            ObserveError::Link(_) => 1,
        };
        Failure {
            message: e.to_string(),
            code,
        }
    }
}

/// The warning that plain JSON mode gives, wherever it is chosen.
pub const PLAINTEXT_WARNING: &str = "encryption is off (--insecure-plaintext): what plays, \
     where and at which position goes over the broker as plain JSON, and anyone who can \
     publish there can command handoffs";

/// The account as this device holds it (sealed), or `None` with a warning (plain JSON).
fn open_account(cli: &Cli) -> Result<Option<continuity::security::account::Account>, Failure> {
    if cli.insecure_plaintext {
        eprintln!("warning: {PLAINTEXT_WARNING}");
        return Ok(None);
    }
    let dir = match &cli.config_dir {
        Some(d) => d.clone(),
        None => continuity::config::default_config_dir().map_err(Failure::new)?,
    };
    let device = continuity::config::device_id(&dir).map_err(Failure::new)?;
    continuity::security::account::Account::open(
        &dir,
        &cli.account,
        &device,
        &continuity::config::host_name(),
    )
    .map(Some)
    .map_err(Failure::new)
}

/// The broker as one text (the element takes it so): the file options become URL parameters.
fn broker_text(cli: &Cli) -> Result<String, Failure> {
    let files = [
        ("ca-file", &cli.ca_file),
        ("cert-file", &cli.client_cert),
        ("key-file", &cli.client_key),
        ("password-file", &cli.password_file),
    ];
    if files.iter().all(|(_, f)| f.is_none()) {
        return Ok(cli.broker.clone());
    }
    if cli.broker.eq_ignore_ascii_case("auto") {
        return Err(Failure {
            message: "--ca-file, --client-cert, --client-key and --password-file need the \
                      broker's URL in --broker (auto finds only plain brokers)"
                .into(),
            code: EXIT_UNREACHABLE,
        });
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, f) in files {
        if let Some(f) = f {
            // Relative paths would change meaning in a player that changes directory.
            let path = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            query.append_pair(k, &path.to_string_lossy());
        }
    }
    let sep = if cli.broker.contains('?') { '&' } else { '?' };
    Ok(format!("{}{sep}{}", cli.broker, query.finish()))
}

async fn run(mut cli: Cli) -> Result<(), Failure> {
    cli.broker = broker_text(&cli)?;
    if let Err(reason) = continuity::wire::check_id(&cli.account) {
        return Err(Failure {
            message: format!("--account '{}' {reason}", cli.account),
            code: EXIT_UNREACHABLE,
        });
    }
    let account = match cli.command {
        Command::Broker { .. } | Command::Play { .. } => None,
        _ => open_account(&cli)?,
    };
    match cli.command {
        Command::Broker {
            listen,
            no_advertise,
        } => broker(listen, !no_advertise).await,
        Command::Play {
            media,
            device_name,
            device_class,
            device_id,
            window,
            resume,
            snapshot_dir,
            no_advertise,
            automatic,
        } => {
            let args = cli::play::PlayArgs {
                advertise: !no_advertise,
                automatic,
                media,
                encryption: !cli.insecure_plaintext,
                broker: cli.broker.clone(),
                account: cli.account.clone(),
                config_dir: cli.config_dir.clone(),
                device_name,
                device_class,
                device_id,
                window,
                resume,
                snapshot_dir,
            };
            tokio::task::spawn_blocking(move || cli::play::run(args))
                .await
                .map_err(Failure::new)?
                .map_err(Failure::new)
        }
        Command::Transfer { to, from, json } => {
            let broker = parse_broker(&cli.broker).await?;
            match cli::transfer::run(&broker, &cli.account, account, &to, from.as_deref()).await {
                Ok((r, names)) => {
                    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
                    cli::transfer::print(&r, json, name);
                    match r.failure {
                        Some(f) => Err(Failure {
                            message: format!("the handoff failed: {f}"),
                            code: 1,
                        }),
                        None => Ok(()),
                    }
                }
                Err(
                    cli::transfer::TransferError::Unreachable(m)
                    | cli::transfer::TransferError::Usage(m),
                ) => Err(Failure {
                    message: m,
                    code: EXIT_UNREACHABLE,
                }),
            }
        }
        Command::Pair {
            join,
            yes,
            timeout,
            device_name,
            no_advertise,
        } => {
            let Some(account) = account else {
                return Err(Failure::new(
                    "pairing shares the account's keys: it has no meaning with \
                     --insecure-plaintext",
                ));
            };
            let broker = if join && cli.broker.eq_ignore_ascii_case("auto") {
                // A new device: the exchange on the LAN says which broker it runs through.
                let found = tokio::task::spawn_blocking({
                    let name = cli.account.clone();
                    move || {
                        continuity::net::discovery::find_pairing(
                            &name,
                            continuity::net::discovery::LAN_WAIT,
                        )
                    }
                })
                .await
                .unwrap_or_default();
                match found {
                    Some(f) => {
                        println!(
                            "Found {} open for pairing on the LAN, via {}",
                            f.name, f.broker
                        );
                        f.broker
                    }
                    None => parse_broker(&cli.broker).await?,
                }
            } else {
                parse_broker(&cli.broker).await?
            };
            let args = cli::pair::PairArgs {
                name: device_name.unwrap_or_else(continuity::config::host_name),
                yes,
                timeout: Duration::from_secs(timeout),
                advertise: !no_advertise,
            };
            let done = if join {
                cli::pair::join(&broker, account, args).await
            } else {
                cli::pair::host(&broker, account, args).await
            };
            match done {
                Ok(summary) => {
                    println!("{summary}");
                    Ok(())
                }
                Err(cli::pair::PairFailure::Unreachable(m)) => Err(Failure {
                    message: m,
                    code: EXIT_UNREACHABLE,
                }),
                Err(cli::pair::PairFailure::Failed(m)) => Err(Failure::new(m)),
            }
        }
        Command::Devices {
            revoke: Some(who),
            timeout,
            ..
        } => {
            let Some(account) = account else {
                return Err(Failure::new(
                    "revoking rotates the account's keys: it has no meaning with \
                     --insecure-plaintext",
                ));
            };
            let broker = parse_broker(&cli.broker).await?;
            match cli::pair::revoke(&broker, account, &who, Duration::from_secs(timeout)).await {
                Ok(summary) => {
                    println!("{summary}");
                    Ok(())
                }
                Err(cli::pair::PairFailure::Unreachable(m)) => Err(Failure {
                    message: m,
                    code: EXIT_UNREACHABLE,
                }),
                Err(cli::pair::PairFailure::Failed(m)) => Err(Failure::new(m)),
            }
        }
        Command::Devices { json, .. } => {
            let broker = parse_broker(&cli.broker).await?;
            // What the LAN says, while the broker answers.
            let lan = tokio::task::spawn_blocking(|| {
                continuity::net::discovery::find_players(continuity::net::discovery::LAN_WAIT)
            });
            let obs = snapshot(&broker, &cli.account, account).await?;
            let lan: Vec<_> = lan
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|d| d.account == cli.account)
                .collect();
            let view = DeviceView {
                dir: obs.directory(),
                lan: &lan,
                roster: obs.roster(),
            };
            view.print(&cli.account, json);
            obs.close().await;
            Ok(())
        }
        Command::Sessions { json, watch } => {
            let broker = parse_broker(&cli.broker).await?;
            let mut obs = snapshot(&broker, &cli.account, account).await?;
            if watch {
                watch_sessions(&mut obs, &cli.account).await;
            } else {
                print_sessions(obs.directory(), &cli.account, &broker, json);
            }
            obs.close().await;
            Ok(())
        }
    }
}

/// The broker URL, or for `auto` the one mDNS finds (saying which, and why, on stderr).
async fn parse_broker(url: &str) -> Result<BrokerUrl, Failure> {
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
        Err(e) => Err(Failure {
            message: format!("{e}"),
            code: EXIT_UNREACHABLE,
        }),
    }
}

async fn snapshot(
    broker: &BrokerUrl,
    name: &str,
    account: Option<continuity::security::account::Account>,
) -> Result<Observer, Failure> {
    let mut obs = Observer::connect(broker, name, CONNECT_TIMEOUT, account).await?;
    obs.settle(Duration::from_millis(300), Duration::from_secs(3))
        .await;
    Ok(obs)
}

async fn broker(listen: SocketAddr, advertise: bool) -> Result<(), Failure> {
    let b = tokio::task::spawn_blocking(move || EmbeddedBroker::start(listen))
        .await
        .map_err(Failure::new)?
        .map_err(Failure::new)?;
    println!(
        "continuity broker listening on {} (Ctrl-C to stop)",
        b.url()
    );
    // Advertised while it runs; withdrawn when this returns.
    let _advert = if advertise {
        match continuity::net::discovery::advertise_broker(b.addr().port()) {
            Ok(a) => {
                println!(
                    "advertised on the LAN as {} (--no-advertise to stop)",
                    continuity::net::discovery::BROKER_SERVICE
                );
                Some(a)
            }
            Err(e) => {
                eprintln!("warning: not advertised on the LAN: {e}");
                None
            }
        }
    } else {
        None
    };
    let _ = std::io::stdout().flush();
    wait_for_stop().await;
    Ok(())
}

async fn wait_for_stop() {
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

// ---------------------------------------------------------------------------------------------
// devices

/// What `continuity devices` knows of the account: the broker's directory, the players on
/// the LAN, and (sealed accounts) the roster of paired devices.
struct DeviceView<'a> {
    dir: &'a Directory,
    lan: &'a [LanDevice],
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
            .chain(self.lan.iter().map(|d| d.id.clone()))
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
        if let Some(d) = self.lan.iter().find(|d| d.id == id) {
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
        let on_lan = |id: &str| self.lan.iter().any(|d| d.id == id);
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
                if on_lan(&id) { "yes" } else { "-" },
                id
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sessions

fn state_name(s: &SessionState) -> &'static str {
    match (&s.media, &s.anchor) {
        (Some(_), Some(a)) => a.state.as_str(),
        _ => "idle",
    }
}

fn session_json(dir: &Directory, s: &SessionState, now: u64) -> serde_json::Value {
    let info = dir.devices.get(&s.device);
    let position = s.position_at(now);
    json!({
        "device": s.device,
        "device_name": info.map(|i| i.device.name.clone()),
        "device_class": info.map(|i| i.device.class),
        "online": dir.availability.get(&s.device) == Some(&Status::Online),
        "session": s.session,
        "state": state_name(s),
        "title": s.media.as_ref().map(|m| m.display_title().to_owned()),
        "media": s.media,
        "position_ns": position,
        "position_s": position.map(|p| p as f64 / 1e9),
        "duration_ns": s.media.as_ref().and_then(|m| m.duration_ns),
        "rate": s.anchor.map(|a| a.rate),
        "lease": s.lease,
        "updated_unix_ns": s.stamp.wall_ns,
    })
}

fn print_sessions(dir: &Directory, account: &str, broker: &BrokerUrl, as_json: bool) {
    let now = now_unix_ns();
    if as_json {
        let sessions: Vec<_> = dir
            .sessions
            .values()
            .map(|s| session_json(dir, s, now))
            .collect();
        let doc = json!({
            "v": 1,
            "account": account,
            "broker": broker.to_string(),
            "at_unix_ns": now,
            "sessions": sessions,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
        return;
    }
    print!("{}", sessions_table(dir, account, now, false));
}

fn clock(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn sessions_table(dir: &Directory, account: &str, now: u64, bars: bool) -> String {
    let mut out = String::new();
    if dir.sessions.is_empty() {
        out.push_str(&format!("Nothing plays in account '{account}'.\n"));
        return out;
    }
    out.push_str(&format!(
        "{:<22} {:<32} {:<19} STATE\n",
        "DEVICE", "TITLE", "POSITION"
    ));
    for s in dir.sessions.values() {
        let info = dir.devices.get(&s.device);
        let name = match info {
            Some(i) => format!("{} ({})", i.device.name, i.device.class),
            None => s.device.clone(),
        };
        let title = s
            .media
            .as_ref()
            .map(|m| m.display_title().to_owned())
            .unwrap_or_else(|| "-".into());
        let duration = s.media.as_ref().and_then(|m| m.duration_ns);
        let position = s.position_at(now);
        let pos = match (position, duration) {
            (Some(p), Some(d)) => format!("{} / {}", clock(p), clock(d)),
            (Some(p), None) => clock(p),
            _ => "-".into(),
        };
        let mut state = state_name(s).to_owned();
        if let Some(a) = s.anchor
            && a.state == PlayState::Playing
            && a.rate != 1.0
        {
            state.push_str(&format!(" x{}", a.rate));
        }
        if dir.availability.get(&s.device) == Some(&Status::Offline) {
            state.push_str(" (offline)");
        }
        out.push_str(&format!(
            "{:<22} {:<32} {:<19} {}\n",
            truncate(&name, 22),
            truncate(&title, 32),
            pos,
            state
        ));
        if bars && let (Some(p), Some(d)) = (position, duration.filter(|d| *d > 0)) {
            let width = 40;
            let filled = ((p as f64 / d as f64) * width as f64).round() as usize;
            let filled = filled.min(width);
            out.push_str(&format!(
                "{:<22} [{}{}] {:>3}%\n",
                "",
                "#".repeat(filled),
                ".".repeat(width - filled),
                p * 100 / d
            ));
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

async fn watch_sessions(obs: &mut Observer, account: &str) {
    let tty = std::io::stdout().is_terminal();
    let stop = wait_for_stop();
    tokio::pin!(stop);
    loop {
        let table = sessions_table(obs.directory(), account, now_unix_ns(), true);
        let mut stdout = std::io::stdout().lock();
        if tty {
            // Home the cursor and clear the screen, then draw.
            let _ = write!(stdout, "\x1b[H\x1b[2J");
        }
        let _ = write!(stdout, "{table}");
        if tty {
            let _ = write!(stdout, "\n(live; Ctrl-C to stop)\n");
        } else {
            let _ = writeln!(stdout);
        }
        let _ = stdout.flush();
        drop(stdout);
        tokio::select! {
            _ = &mut stop => return,
            _ = obs.changed(Duration::from_millis(500)) => {}
        }
    }
}
