//! `continuity pair` (a device that has the account opens an exchange) and `continuity pair
//! --join` (a new device joins it), carried over the broker: the sans-IO exchange of
//! [`continuity::security::pair`] with topics, prompts, a deadline and an mDNS advertisement.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use continuity::hlc::now_unix_ns;
use continuity::net::link::{BrokerUrl, Link, LinkConfig, LinkEvent, client_id};
use continuity::security::account::Account;
use continuity::security::pair::{self, Host, Joiner, PairError, PairMsg, Party};
use continuity::security::{rekey, seal};
use continuity::wire::{self, Topic};

use super::{Failure, parse_broker};

/// How a pairing run ends badly.
#[derive(Debug)]
pub enum PairFailure {
    /// The broker cannot be reached (exit 2).
    Unreachable(String),
    /// The exchange failed, was declined or expired (exit 1).
    Failed(String),
}

impl From<PairError> for PairFailure {
    fn from(e: PairError) -> Self {
        PairFailure::Failed(e.to_string())
    }
}

pub struct PairArgs {
    /// The name this device shows to the other one.
    pub name: String,
    /// Take the codes as matching without asking (for scripts that show both screens).
    pub yes: bool,
    /// How long the exchange stays open.
    pub timeout: Duration,
    /// Advertise (host) the exchange on the LAN with mDNS.
    pub advertise: bool,
}

/// A link to the broker with `subscriptions`, once it is connected.
async fn connect(
    broker: &BrokerUrl,
    subscriptions: Vec<String>,
) -> Result<(Link, mpsc::Receiver<LinkEvent>), PairFailure> {
    let mut cfg = LinkConfig::new(broker.clone(), client_id("pair"));
    cfg.subscriptions = subscriptions;
    Link::connect(cfg, super::CONNECT_TIMEOUT)
        .await
        .map_err(|e| PairFailure::Unreachable(format!("cannot reach the broker {broker}: {e}")))
}

/// `123456` as people read it: `123 456`.
fn spaced(code: &str) -> String {
    if code.len() == 6 {
        format!("{} {}", &code[..3], &code[3..])
    } else {
        code.to_owned()
    }
}

/// Ask whether the codes match, on a thread (stdin blocks). `None`: no answer (end of input).
fn ask(other: &str) -> tokio::task::JoinHandle<Option<bool>> {
    let question = format!("Does {other} show the same code? [y/N] ");
    if std::io::stdout().is_terminal() {
        print!("{question}");
        let _ = std::io::stdout().flush();
    } else {
        println!("{}", question.trim_end());
    }
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(matches!(line.trim(), "y" | "Y" | "yes" | "Yes" | "YES")),
        }
    })
}

fn send(link: &Link, account: &str, msgs: Vec<PairMsg>) {
    for m in msgs {
        let topic = pair::topic(account, m.exchange(), m.leaf());
        link.publish(&topic, pair::encode(&m), false, true);
    }
}

/// Publish the account's roster, sealed and signed by this device, so that the devices
/// online now learn of the change (the others take it from the broker when they connect).
fn publish_roster(link: &Link, account: &Account) {
    let topic = Topic::roster(&account.name).to_string();
    let mut guard = account.guard(0);
    let sealed = guard.seal(&topic, &wire::encode(&account.roster), now_unix_ns());
    link.publish(&topic, sealed, true, true);
}

/// Wait for the person's answer, if a question is out.
async fn answer(pending: &mut Option<tokio::task::JoinHandle<Option<bool>>>) -> Option<bool> {
    match pending {
        Some(h) => {
            let a = h.await.ok().flatten();
            *pending = None;
            a
        }
        None => std::future::pending().await,
    }
}

/// The host: open an exchange, wait for a joiner, compare codes, hand over the account.
pub async fn host(
    broker: &BrokerUrl,
    mut account: Account,
    args: PairArgs,
) -> Result<String, PairFailure> {
    let ttl_ns = args.timeout.as_nanos() as u64;
    let (mut h, hello) = Host::start(&account, &args.name, now_unix_ns(), ttl_ns)?;
    let ex = h.exchange().to_owned();
    let name = account.name.clone();
    let hello_topic = pair::topic(&name, &ex, "hello");
    let (link, mut events) = connect(broker, vec![pair::topic(&name, &ex, "joiner")]).await?;
    link.publish(&hello_topic, pair::encode(&hello), true, true);
    let _advert = args
        .advertise
        .then(|| continuity::net::discovery::advertise_pairing(&name, &ex, &args.name, broker))
        .and_then(|r| {
            r.map_err(|e| tracing::info!("not advertised on the LAN: {e}"))
                .ok()
        });
    println!(
        "Pairing is open for {} s. On the new device, run:\n  continuity --account {name} pair --join",
        args.timeout.as_secs()
    );
    let deadline = Instant::now() + args.timeout;
    let mut asked = false;
    let mut pending = None;
    let result = loop {
        tokio::select! {
            msg = next_message(&mut events) => {
                match msg.and_then(|m| Ok(h.handle(now_unix_ns(), &m)?)) {
                    Ok(out) => send(&link, &name, out),
                    Err(e) => break Err(e),
                }
            }
            a = answer(&mut pending) => {
                let yes = a == Some(true);
                match h.confirm(now_unix_ns(), yes) {
                    Ok(out) => send(&link, &name, out),
                    Err(e) => break Err(e.into()),
                }
                if let Some(no) = declined(a) {
                    break Err(no);
                }
                if h.joined().is_none() {
                    println!("Waiting for the other device to confirm...");
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                break Err(PairError::Expired.into());
            }
        }
        if let (false, Some(code), Some(joiner)) = (asked, h.code(), h.joiner()) {
            asked = true;
            let joiner = joiner.name.clone();
            println!("Verification code: {}", spaced(code));
            if args.yes {
                match h.confirm(now_unix_ns(), true) {
                    Ok(out) => send(&link, &name, out),
                    Err(e) => break Err(e.into()),
                }
            } else {
                pending = Some(ask(&joiner));
            }
        }
        if let Some(entry) = h.joined() {
            if let Err(e) = account.merge_roster(h.roster()) {
                break Err(PairFailure::Failed(e.to_string()));
            }
            publish_roster(&link, &account);
            break Ok(format!(
                "Paired {} ({}): {} devices in account {name}",
                entry.name,
                entry.device,
                account.roster.devices.iter().filter(|e| !e.revoked).count()
            ));
        }
    };
    // A joiner that committed hears why the exchange ended here, not just a timeout.
    if let Err(PairFailure::Failed(why) | PairFailure::Unreachable(why)) = &result
        && let Some(farewell) = h.farewell(why)
    {
        send(&link, &name, vec![farewell]);
    }
    // The exchange is over either way: take the retained hello off the broker.
    link.publish(&hello_topic, Vec::new(), true, true);
    link.shutdown(Duration::from_secs(2)).await;
    result
}

/// A joiner tries at most this many open exchanges at once: anyone on the broker can retain
/// hellos, and only a real host answers one.
const MAX_TRIED: usize = 8;

/// No host offers an exchange for longer than `pair --timeout` allows (3600 s); with room
/// for clocks that disagree, a hello that expires further ahead than this is not a host's.
const MAX_AHEAD_NS: u64 = (3600 + 600) * 1_000_000_000;

/// The open exchanges a joiner saw, and the one whose host answered.
#[derive(Default)]
struct Candidates {
    tried: Vec<Joiner>,
    /// Index in `tried` of the exchange whose host revealed: the only one from then on.
    chosen: Option<usize>,
    /// Hellos left behind by hosts that did not clean up.
    stale: usize,
    /// Hellos that expire implausibly far ahead, or beyond `MAX_TRIED`.
    ignored: usize,
}

impl Candidates {
    fn chosen(&mut self) -> Option<&mut Joiner> {
        self.chosen.map(|i| &mut self.tried[i])
    }

    /// The hosts that offered an exchange, for a message.
    fn hosts(&self) -> String {
        let names: Vec<String> = self
            .tried
            .iter()
            .filter_map(|j| j.host())
            .map(|h| format!("{} ({})", h.name, h.device))
            .collect();
        names.join(", ")
    }

    /// Take a message from the broker: a plausible hello opens a new candidate (its commit
    /// is returned to send), anything else goes to the candidate of its exchange. The host
    /// that reveals first is chosen; the other candidates are dropped.
    fn handle(
        &mut self,
        now: u64,
        msg: &PairMsg,
        new_joiner: impl FnOnce() -> Result<Joiner, PairError>,
    ) -> Result<(Vec<PairMsg>, Option<pair::Joined>), PairFailure> {
        if let PairMsg::Hello {
            exchange,
            expires_unix_ns,
            ..
        } = msg
        {
            if self.chosen.is_some() || self.tried.iter().any(|j| j.exchange() == Some(exchange)) {
                return Ok((Vec::new(), None));
            }
            if *expires_unix_ns < now {
                self.stale += 1;
                return Ok((Vec::new(), None));
            }
            if *expires_unix_ns > now.saturating_add(MAX_AHEAD_NS) || self.tried.len() >= MAX_TRIED
            {
                self.ignored += 1;
                tracing::info!(
                    "pairing offer on exchange {exchange} ignored: expires too far ahead, or too many offers"
                );
                return Ok((Vec::new(), None));
            }
            let mut j = new_joiner()?;
            let out = j.handle(now, msg)?;
            self.tried.push(j);
            return Ok(out);
        }
        let Some(i) = self
            .tried
            .iter()
            .position(|j| j.exchange() == Some(msg.exchange()))
        else {
            return Ok((Vec::new(), None));
        };
        if self.chosen.is_some_and(|c| c != i) {
            return Ok((Vec::new(), None));
        }
        match self.tried[i].handle(now, msg) {
            Ok(out) => {
                if self.chosen.is_none() && self.tried[i].code().is_some() {
                    self.chosen = Some(i);
                }
                Ok(out)
            }
            // A candidate that was never chosen failing (a forged refusal, garbage) ends
            // only that candidate.
            Err(e) if self.chosen.is_none() => {
                tracing::info!("pairing offer on exchange {} dropped: {e}", msg.exchange());
                self.tried.remove(i);
                Ok((Vec::new(), None))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The joiner: find an open exchange of the account, compare codes, take the account in.
/// Every plausible offer on the broker is tried (a stranger can retain fake ones); the host
/// that answers is the one.
pub async fn join(
    broker: &BrokerUrl,
    mut account: Account,
    args: PairArgs,
) -> Result<String, PairFailure> {
    let name = account.name.clone();
    let me = Party {
        device: account.device.clone(),
        name: args.name.clone(),
    };
    let public_key = seal::public_key(&account.signer);
    let new_joiner = || Joiner::new(&name, me.clone(), public_key.clone());
    // A joiner that cannot draw its keys fails now, not at the first offer.
    new_joiner()?;
    let (link, mut events) = connect(
        broker,
        vec![
            pair::hello_filter(&name),
            format!("{}/{name}/pairing/+/host", wire::PREFIX),
        ],
    )
    .await?;
    println!("Looking for a device of account {name} that is open for pairing...");
    let deadline = Instant::now() + args.timeout;
    let mut asked = false;
    let mut pending = None;
    let mut c = Candidates::default();
    let mut found = false;
    let result = loop {
        tokio::select! {
            msg = next_message(&mut events) => {
                let msg = match msg {
                    Ok(msg) => msg,
                    Err(e) => break Err(e),
                };
                match c.handle(now_unix_ns(), &msg, new_joiner) {
                    Ok((out, None)) => send(&link, &name, out),
                    Ok((_, Some(joined))) => {
                        if let Err(e) = pair::adopt(&mut account, &joined) {
                            break Err(PairFailure::Failed(e.to_string()));
                        }
                        publish_roster(&link, &account);
                        break Ok(format!(
                            "Joined account {name} through {}: {} devices",
                            joined.host.name,
                            account.roster.devices.iter().filter(|e| !e.revoked).count()
                        ));
                    }
                    Err(e) => break Err(e),
                }
                if let (false, Some(host)) = (found, c.chosen().and_then(|j| j.host().cloned())) {
                    found = true;
                    println!("Found {} ({}); exchanging keys...", host.name, host.device);
                }
            }
            a = answer(&mut pending) => {
                let yes = a == Some(true);
                let out = match c.chosen().map(|j| j.confirm(yes)) {
                    Some(Ok(out)) => out,
                    Some(Err(e)) => break Err(e.into()),
                    None => Vec::new(),
                };
                send(&link, &name, out);
                if let Some(no) = declined(a) {
                    break Err(no);
                }
                println!("Waiting for the other device to confirm...");
            }
            _ = tokio::time::sleep_until(deadline) => {
                let waited = args.timeout.as_secs();
                break Err(PairFailure::Failed(match c.chosen().and_then(|j| j.host().cloned()) {
                    Some(h) => format!("{} did not finish pairing within {waited} s", h.name),
                    None if !c.tried.is_empty() => format!(
                        "no device open for pairing answered within {waited} s (offers seen \
                         from {}): run `continuity pair` on a device that has the account",
                        c.hosts()
                    ),
                    None => format!(
                        "no device of account {name} is open for pairing on {broker} \
                         (waited {waited} s{}): run `continuity pair` on a device that has the account",
                        if c.stale + c.ignored > 0 { ", saw only expired or implausible offers" } else { "" }
                    ),
                }));
            }
        }
        let code = c
            .chosen()
            .and_then(|j| Some((j.code()?.to_owned(), j.host()?.name.clone())));
        if let (false, Some((code, host))) = (asked, code) {
            asked = true;
            println!("Verification code: {}", spaced(&code));
            if args.yes {
                match c.chosen().map(|j| j.confirm(true)) {
                    Some(Ok(out)) => send(&link, &name, out),
                    Some(Err(e)) => break Err(e.into()),
                    None => {}
                }
            } else {
                pending = Some(ask(&host));
            }
        }
    };
    link.shutdown(Duration::from_secs(2)).await;
    result
}

/// `continuity devices --revoke`: revoke a paired device, rotate the account key, and hand
/// the new key to the devices that are online (the others ask for it when they come back,
/// and any device that has it answers).
pub async fn revoke(
    broker: &BrokerUrl,
    mut account: Account,
    who: &str,
    timeout: Duration,
) -> Result<String, PairFailure> {
    let name = account.name.clone();
    let matches: Vec<_> = account
        .roster
        .devices
        .iter()
        .filter(|e| e.device == who || e.name == who)
        .cloned()
        .collect();
    let target = match matches.as_slice() {
        [one] => one.clone(),
        [] => {
            let known: Vec<_> = account
                .roster
                .devices
                .iter()
                .map(|e| format!("{} ({})", e.name, e.device))
                .collect();
            return Err(PairFailure::Failed(format!(
                "no paired device '{who}' in account {name}; paired: {}",
                known.join(", ")
            )));
        }
        many => {
            let ids: Vec<_> = many.iter().map(|e| e.device.as_str()).collect();
            return Err(PairFailure::Failed(format!(
                "'{who}' names {} devices: give the id ({})",
                many.len(),
                ids.join(", ")
            )));
        }
    };
    if target.device == account.device {
        return Err(PairFailure::Failed(
            "that is this device: revoke it from another paired device".into(),
        ));
    }
    let (link, mut events) = connect(
        broker,
        vec![
            rekey::request_filter(&name),
            wire::filters::availability(&name),
        ],
    )
    .await?;
    // The roster goes out sealed under the key the others still have; it names the new one.
    let mut old_guard = account.guard(0);
    let key_id = account
        .revoke_and_rotate(&target.device)
        .map_err(|e| PairFailure::Failed(e.to_string()))?;
    let roster_topic = Topic::roster(&name).to_string();
    let sealed = old_guard.seal(&roster_topic, &wire::encode(&account.roster), now_unix_ns());
    link.publish(&roster_topic, sealed, true, true);
    // What the broker keeps of the revoked device goes.
    for topic in [
        Topic::availability(&name, &target.device),
        Topic::device_info(&name, &target.device),
        Topic::session_state(&name, &target.device),
    ] {
        link.publish(&topic.to_string(), Vec::new(), true, true);
    }
    println!(
        "Revoked {} ({}): the account key is now {key_id}; handing it to the devices online...",
        target.name, target.device
    );
    let names = |id: &str| {
        account
            .roster
            .entry(id)
            .map(|e| e.name.clone())
            .unwrap_or_else(|| id.to_owned())
    };
    let mut online = std::collections::BTreeSet::new();
    let mut handed = std::collections::BTreeSet::new();
    // Retained availability arrives first; after it, only the online devices count.
    let settled = Instant::now() + Duration::from_millis(800);
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() >= settled && online.is_subset(&handed) {
            break;
        }
        let wake = if Instant::now() < settled {
            settled
        } else {
            deadline
        };
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    break;
                }
                continue;
            }
        };
        let Some(LinkEvent::Message { topic, payload, .. }) = ev else {
            continue;
        };
        if rekey::is_rekey_topic(&name, &topic) {
            let Ok(req) = rekey::decode::<rekey::KeyRequest>(&payload) else {
                continue;
            };
            match rekey::answer(&account, &req) {
                Ok(ans) => {
                    link.publish(
                        &rekey::answer_topic(&name, &req.device),
                        wire::encode(&ans),
                        false,
                        true,
                    );
                    if handed.insert(req.device.clone()) {
                        println!("  handed the new key to {}", names(&req.device));
                    }
                }
                Err(rekey::RekeyError::NotHeld(_)) => {}
                Err(e) => println!("  refused a key request from {}: {e}", req.device),
            }
        } else if let Ok(wire::Incoming {
            body: wire::Body::Availability(a),
            ..
        }) = wire::decode(&topic, &payload)
        {
            let counts = a.device != account.device && account.roster.trusts(&a.device);
            if counts && a.status == wire::Status::Online {
                online.insert(a.device);
            } else {
                online.remove(&a.device);
            }
        }
    }
    link.flush(Duration::from_secs(2)).await;
    link.shutdown(Duration::from_secs(2)).await;
    let missing: Vec<_> = account
        .roster
        .devices
        .iter()
        .filter(|e| !e.revoked && e.device != account.device && !handed.contains(&e.device))
        .map(|e| e.name.clone())
        .collect();
    let mut summary = format!(
        "{} can no longer read what the account's devices send, nor command them.",
        target.name
    );
    if !missing.is_empty() {
        summary.push_str(&format!(
            "\nNot online now: {}. They take the new key from any paired device when they \
             come back.",
            missing.join(", ")
        ));
    }
    Ok(summary)
}

/// What a link event means to a pairing run: a payload to read, nothing (a reconnection,
/// said on stderr), or the end.
/// The next pairing message from the broker. Connection changes carry none, and neither do
/// empty payloads (a hello taken back) nor what does not decode (not for this exchange).
/// Cancel-safe: nothing is lost when another branch of a `select!` wins.
async fn next_message(events: &mut mpsc::Receiver<LinkEvent>) -> Result<PairMsg, PairFailure> {
    loop {
        match events.recv().await {
            Some(LinkEvent::Message { payload, .. }) => {
                if let Ok(msg) = pair::decode(&payload) {
                    return Ok(msg);
                }
            }
            Some(LinkEvent::Down { reason }) => {
                eprintln!("warning: the broker connection dropped ({reason}); retrying");
            }
            Some(LinkEvent::Connected) => {}
            None => return Err(PairFailure::Failed("the broker connection closed".into())),
        }
    }
}

/// The person's answer to "do the codes match?": `Some` failure unless it was yes.
fn declined(answer: Option<bool>) -> Option<PairFailure> {
    let why = match answer {
        Some(true) => return None,
        Some(false) => "",
        None => ": no answer (--yes confirms without asking)",
    };
    Some(PairError::Declined(format!(" here{why}")).into())
}

/// `continuity pair [--join]` for account `name`: the broker as given (`auto` looks for an
/// open exchange on the LAN first when joining).
pub async fn command(
    broker: &str,
    name: &str,
    account: Option<Account>,
    join_it: bool,
    args: PairArgs,
) -> Result<(), Failure> {
    let Some(account) = account else {
        return Err(Failure::new(
            "pairing shares the account's keys: it has no meaning with --insecure-plaintext",
        ));
    };
    let broker = if join_it && broker.eq_ignore_ascii_case("auto") {
        // A new device: the exchange on the LAN says which broker it runs through.
        let found = tokio::task::spawn_blocking({
            let name = name.to_owned();
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
            None => parse_broker(broker).await?,
        }
    } else {
        parse_broker(broker).await?
    };
    let summary = if join_it {
        join(&broker, account, args).await?
    } else {
        host(&broker, account, args).await?
    };
    println!("{summary}");
    Ok(())
}

/// `continuity devices --revoke WHO`.
pub async fn revoke_command(
    broker: &str,
    account: Option<Account>,
    who: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let Some(account) = account else {
        return Err(Failure::new(
            "revoking rotates the account's keys: it has no meaning with --insecure-plaintext",
        ));
    };
    let broker = parse_broker(broker).await?;
    let summary = revoke(&broker, account, who, timeout).await?;
    println!("{summary}");
    Ok(())
}
