//! The `continuity` command line tool: the options, and which command in `cli/` runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use cli::Failure;

mod cli;

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
    #[arg(long, global = true, env = "CONTINUITY_CLIENT_CERT")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM; with --client-cert).
    #[arg(long, global = true, env = "CONTINUITY_CLIENT_KEY")]
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
        /// Also serve MQTT over WebSockets here, for browsers and smart-TV web apps
        /// (`ws://ADDR/mqtt`, subprotocol `mqtt`), e.g. 127.0.0.1:9001.
        #[arg(long, value_name = "ADDR")]
        ws_listen: Option<SocketAddr>,
        /// Serve the smart-TV web app here (e.g. 0.0.0.0:8080), with MQTT over WebSockets at
        /// `/mqtt` on the same port: open the printed URL on the TV.
        #[arg(long, value_name = "ADDR")]
        web: Option<SocketAddr>,
        /// With --web: serve the files of this folder at `/media/` (HTTP range requests), so
        /// that every device plays the same `http://` URI.
        #[arg(long, value_name = "DIR", requires = "web")]
        media: Option<PathBuf>,
        /// Do not advertise the broker on the LAN (mDNS `_mqtt._tcp.local.`).
        #[arg(long)]
        no_advertise: bool,
        /// Clients admitted at once (each also needs an open file).
        #[arg(long, default_value_t = continuity::net::broker::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
    },
    /// List the devices of the account: online or offline, class, name. With --revoke,
    /// remove a paired device (a lost phone) and rotate the account key.
    Devices {
        /// One JSON document (see docs/CLI.md) instead of a table.
        #[arg(long, conflicts_with = "revoke")]
        json: bool,
        /// Also look for players on the LAN (mDNS, 2 s): devices the broker does not list,
        /// such as those of an account on another broker. Implied by `--broker auto`.
        #[arg(long, conflicts_with = "revoke")]
        lan: bool,
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
    Play(cli::play::PlayOptions),
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
        /// One JSON document (see docs/CLI.md) instead of a table; with --watch, one per
        /// line (JSON Lines), again each time a session, a device or a clock changes.
        #[arg(long)]
        json: bool,
        /// Redraw live, with a progress bar per session, until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Handoff analytics of the account (this device's store, and the events it lacks that
    /// the online devices send): success rate, latency, position error, failures, drop-off,
    /// and the moves between devices. Nothing leaves the account.
    Stats {
        /// How far back: 7d, 24h, 30m, 90s.
        #[arg(long, default_value = "7d")]
        since: String,
        /// One JSON document (see docs/CLI.md) instead of a summary.
        #[arg(long, conflicts_with = "serve")]
        json: bool,
        /// Also draw the charts into this directory: transitions.png, latency.png,
        /// handoffs-per-day.png.
        #[arg(long, value_name = "DIR", conflicts_with = "serve")]
        png: Option<PathBuf>,
        /// Serve the figures as OpenMetrics text at http://ADDR/metrics (for Prometheus),
        /// computed afresh at each scrape, until Ctrl-C. E.g. 127.0.0.1:9464.
        #[arg(long, value_name = "ADDR")]
        serve: Option<SocketAddr>,
    },
    /// Many simulated devices on the broker (sealed, each with its own connection): the
    /// delivery latency, traffic, broker CPU and memory, handoffs, and a reconnect burst.
    /// For those who host a broker for many households; loopback or a broker of your own.
    Loadtest(cli::loadtest::LoadArgs),
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
            // Empty: the command said why already (once).
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
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

/// The account as this device holds it (sealed), or `None` with a warning (plain JSON).
fn open_account(cli: &Cli) -> Result<Option<continuity::security::account::Account>, Failure> {
    if cli.insecure_plaintext {
        eprintln!("warning: {}", cli::PLAINTEXT_WARNING);
        return Ok(None);
    }
    let dir = match &cli.config_dir {
        Some(d) => d.clone(),
        None => continuity::config::default_config_dir().map_err(Failure::new)?,
    };
    let device = continuity::config::device_id(&dir).map_err(Failure::new)?;
    // `pair --device-name` names this device in the roster it starts (else the host name).
    let name = match &cli.command {
        Command::Pair {
            device_name: Some(n),
            ..
        } => n.clone(),
        _ => continuity::config::host_name(),
    };
    let mut account =
        continuity::security::account::Account::open(&dir, &cli.account, &device, &name)
            .map_err(Failure::new)?;
    if let Command::Pair {
        device_name: Some(n),
        ..
    } = &cli.command
    {
        account.rename(n).map_err(Failure::new)?;
    }
    Ok(Some(account))
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
    if cli.client_cert.is_some() != cli.client_key.is_some() {
        // Checked here, not by clap, because either may come from the environment.
        return Err(Failure::unreachable(
            "--client-cert and --client-key go together (a certificate and its private key)",
        ));
    }
    if cli.broker.eq_ignore_ascii_case("auto") {
        return Err(Failure::unreachable(
            "--ca-file, --client-cert, --client-key and --password-file need the broker's URL \
             in --broker (auto finds only plain brokers)",
        ));
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
        return Err(Failure::unreachable(format!(
            "--account '{}' {reason}",
            cli.account
        )));
    }
    let account = match cli.command {
        Command::Broker { .. } | Command::Play { .. } | Command::Loadtest(_) => None,
        _ => open_account(&cli)?,
    };
    let (broker, name) = (cli.broker.as_str(), cli.account.as_str());
    match cli.command {
        Command::Broker {
            listen,
            ws_listen,
            web,
            media,
            no_advertise,
            max_connections,
        } => {
            let args = cli::broker::BrokerArgs {
                listen,
                ws_listen,
                web,
                media,
                advertise: !no_advertise,
                max_connections,
            };
            cli::broker::run(args).await
        }
        Command::Play(options) => {
            let args = cli::play::PlayArgs {
                options,
                encryption: !cli.insecure_plaintext,
                broker: cli.broker.clone(),
                account: cli.account.clone(),
                config_dir: cli.config_dir.clone(),
                verbose: cli.verbose,
            };
            tokio::task::spawn_blocking(move || cli::play::run(args))
                .await
                .map_err(Failure::new)?
                .map_err(Failure::new)
        }
        Command::Transfer { to, from, json } => {
            cli::transfer::command(broker, name, account, &to, from.as_deref(), json).await
        }
        Command::Pair {
            join,
            yes,
            timeout,
            device_name,
            no_advertise,
        } => {
            let args = cli::pair::PairArgs {
                name: device_name.unwrap_or_else(continuity::config::host_name),
                yes,
                timeout: Duration::from_secs(timeout),
                advertise: !no_advertise,
            };
            cli::pair::command(broker, name, account, join, args).await
        }
        Command::Devices {
            revoke: Some(who),
            timeout,
            ..
        } => cli::pair::revoke_command(broker, account, &who, Duration::from_secs(timeout)).await,
        Command::Devices { json, lan, .. } => {
            let lan = lan || broker.trim() == "auto";
            cli::devices::run(broker, name, account, json, lan).await
        }
        Command::Sessions { json, watch } => {
            cli::sessions::run(broker, name, account, json, watch).await
        }
        Command::Stats {
            since,
            json,
            png,
            serve,
        } => {
            let dir = match &cli.config_dir {
                Some(d) => d.clone(),
                None => continuity::config::default_config_dir().map_err(Failure::new)?,
            };
            let account = cli::stats::Account {
                broker,
                name,
                keys: account,
            };
            match serve {
                Some(addr) => cli::stats::serve(&dir, &since, addr, account).await,
                None => cli::stats::run(&dir, &since, json, png.as_deref(), account).await,
            }
        }
        Command::Loadtest(args) => {
            let url = cli::parse_broker(broker).await?;
            let json = args.json;
            let report = cli::loadtest::run(args, url, !cli.insecure_plaintext).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(Failure::new)?
                );
            } else {
                cli::loadtest::print(&report);
            }
            Ok(())
        }
    }
}
