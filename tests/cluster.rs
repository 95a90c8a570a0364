//! One account whose devices are on different nodes of a broker: a 2-node RabbitMQ cluster and
//! two bridged mosquittos, on loopback, started and stopped here (`make test-cluster`).
//!
//! What these brokers do not carry across their nodes (found here, and checked by each test so
//! that it goes on testing what it says):
//! - RabbitMQ 3.10 keeps retained messages per node, and hands them only to a subscription of
//!   their exact topic, never to a wildcard's: a device subscribed to its account's topics
//!   finds nothing retained at all, on either node. Live messages cross the cluster.
//! - A mosquitto bridge that does not say it is one (`try_private false`, as towards a broker of
//!   another make) forwards what the far broker sends it with the retain flag cleared: what is
//!   published on the far broker is not retained on the near one, and every message the near
//!   one sends comes back to it once.
//!
//! The devices carry the account's state across: a device that has synced asks the account's
//! online devices for what its broker lacks, and they publish it again; so does a read-only
//! view of the command line's. Nothing here is specific to a broker.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Mosquitto;
use continuity::engine::{Notice, Observation, PlayerAction};
use continuity::hlc::now_unix_ns;
use continuity::model::{DeviceClass, Media, PlayState, SECOND_NS};
use continuity::net::link::{BrokerUrl, Link, LinkConfig, LinkEvent, client_id};
use continuity::node::{Node, NodeEvent};
use continuity::observe::Observer;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);
const ID: &str = "file:Night Train.ogg";
const TITLE: &str = "Night Train";
const START_NS: u64 = 509 * SECOND_NS;

fn film() -> Media {
    Media {
        id: ID.into(),
        uri: Some("file:///films/Night%20Train.ogg".into()),
        title: Some(TITLE.into()),
        duration_ns: Some(5_400 * SECOND_NS),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// RabbitMQ: two nodes of one cluster

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const EPMD: &str = "/usr/bin/epmd";

/// A 2-node RabbitMQ cluster with the MQTT plugin, on loopback ports of its own and with an
/// Erlang port mapper of its own (so that nothing of it outlives the test); stopped on drop.
struct Rabbit {
    dir: tempfile::TempDir,
    epmd_port: u16,
    epmd: Option<Child>,
    nodes: Vec<RabbitNode>,
}

struct RabbitNode {
    name: String,
    mqtt: u16,
    child: Option<Child>,
}

impl Rabbit {
    fn start() -> Rabbit {
        assert!(
            Path::new(RABBITMQ_SERVER).exists(),
            "rabbitmq-server is not installed: run `make test-cluster` (or `make test`), which \
             installs it (apt-get install rabbitmq-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        // The nodes and the port mapper share one Erlang cookie, in the HOME they are given.
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let cookie = home.join(".erlang.cookie");
        let secret: String = (0..20).map(|_| fastrand::uppercase()).collect();
        std::fs::write(&cookie, secret).unwrap();
        std::fs::set_permissions(&cookie, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .unwrap();
        let mut cluster = Rabbit {
            dir,
            epmd_port: common::free_port(),
            epmd: None,
            nodes: Vec::new(),
        };
        // The port mapper first, and listening, before any node: each node (and its
        // prelaunch phase, which starts distribution under a name of its own) would start
        // one otherwise, and on a first start, right after the package was installed, a
        // prelaunch could find none yet and die (`nodistribution`).
        // In the foreground (-d), so that it says when it listens and is stopped with the
        // test.
        let mut epmd = Command::new(EPMD)
            .args([
                "-port",
                &cluster.epmd_port.to_string(),
                "-address",
                "127.0.0.1",
                "-d",
            ])
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start epmd");
        let running = common::watch_output(epmd.stderr.take().unwrap(), "epmd running", |_| {});
        cluster.epmd = Some(epmd);
        assert!(
            running.recv_timeout(Duration::from_secs(30)).is_ok(),
            "epmd did not start on port {}",
            cluster.epmd_port
        );
        // The second node finds the first by classic peer discovery, as it boots for the
        // first time, and joins its cluster.
        cluster.start_node("one", None);
        let first = cluster.nodes[0].name.clone();
        cluster.start_node("two", Some(&first));
        cluster
    }

    fn start_node(&mut self, tag: &str, join: Option<&str>) {
        // Long names on the loopback address: nothing to resolve (a minimal machine may have
        // no /etc/hosts, and then not even `localhost` resolves).
        let name = format!("{tag}@127.0.0.1");
        let base = self.dir.path().join(tag);
        std::fs::create_dir_all(&base).unwrap();
        let (amqp, dist, mqtt) = (
            common::free_port(),
            common::free_port(),
            common::free_port(),
        );
        let mut conf = format!(
            "listeners.tcp.default = 127.0.0.1:{amqp}\n\
             mqtt.listeners.tcp.default = 127.0.0.1:{mqtt}\n\
             mqtt.allow_anonymous = true\n\
             log.file = false\n\
             log.console = true\n\
             log.console.level = warning\n"
        );
        if let Some(peer) = join {
            conf.push_str(&format!(
                "cluster_formation.peer_discovery_backend = classic_config\n\
                 cluster_formation.classic_config.nodes.1 = {peer}\n"
            ));
        }
        std::fs::write(base.join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(base.join("enabled_plugins"), "[rabbitmq_mqtt].\n").unwrap();
        let log = std::fs::File::create(base.join("node.log")).unwrap();
        let mut child = Command::new(RABBITMQ_SERVER)
            .env("HOME", self.dir.path().join("home"))
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            // Not the system's settings (/etc/rabbitmq): only what is set here.
            .env("RABBITMQ_CONF_ENV_FILE", "/dev/null")
            .env("RABBITMQ_NODENAME", &name)
            .env("RABBITMQ_USE_LONGNAME", "true")
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", amqp.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("RABBITMQ_CONFIG_FILE", base.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                base.join("advanced.config"),
            )
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                base.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", base.join("log"))
            .env("RABBITMQ_PID_FILE", base.join("pid"))
            // A crash dump goes with the rest of the node, not into the working directory.
            .env("ERL_CRASH_DUMP", base.join("erl_crash.dump"))
            // The VM uses the port mapper started above, and starts none of its own.
            .env("ERL_ZFLAGS", "-start_epmd false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().unwrap())
            // Its own process group: the server script, the Erlang VM and its helpers are
            // stopped together.
            .process_group(0)
            .spawn()
            .expect("start rabbitmq-server");
        // It prints "Starting broker... completed with N plugins." once it has booted, its
        // plugins' listeners open; the lines go to its log.
        let out = child.stdout.take().unwrap();
        let mut log = std::io::LineWriter::new(log);
        let booted = common::watch_output(out, "completed with", move |line| {
            use std::io::Write;
            let _ = writeln!(log, "{line}");
        });
        self.nodes.push(RabbitNode {
            name,
            mqtt,
            child: Some(child),
        });
        assert!(
            booted.recv_timeout(Duration::from_secs(90)).is_ok(),
            "RabbitMQ node {tag} did not boot (its MQTT listener on 127.0.0.1:{mqtt}):\n{}",
            self.log(tag)
        );
    }

    fn log(&self, tag: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join(tag).join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn url(&self, i: usize) -> BrokerUrl {
        format!("mqtt://127.0.0.1:{}", self.nodes[i].mqtt)
            .parse()
            .unwrap()
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        // SIGTERM to both at once (the script stops the VM cleanly), then whatever is left
        // is killed.
        let signal = |child: &Child, sig| unsafe {
            libc::kill(-(child.id() as i32), sig);
        };
        for node in &self.nodes {
            if let Some(child) = &node.child {
                signal(child, libc::SIGTERM);
            }
        }
        let end = Instant::now() + Duration::from_secs(20);
        for node in &mut self.nodes {
            let Some(mut child) = node.child.take() else {
                continue;
            };
            common::wait_exit(&mut child, end.saturating_duration_since(Instant::now()));
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
        if let Some(mut epmd) = self.epmd.take() {
            let _ = epmd.kill();
            let _ = epmd.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Two bridged mosquittos

/// `far`, a plain mosquitto, and `near`, bridged to it for the account topics both ways, as
/// towards a broker of another make (`try_private false`).
struct Bridged {
    far: Mosquitto,
    near: Mosquitto,
}

impl Bridged {
    fn start() -> Bridged {
        let far = Mosquitto::start();
        let near = Mosquitto::start_with(&format!(
            "connection far\n\
             address 127.0.0.1:{}\n\
             topic continuity/# both 1\n\
             try_private false\n\
             cleansession true\n\
             restart_timeout 1\n",
            far.port
        ));
        Bridged { far, near }
    }
}

// ---------------------------------------------------------------------------------------
// What both topologies must do

/// Whether a message published through `from` reaches a subscriber on `to` (the cluster has
/// formed, the bridge is up), trying for at most `within`.
async fn carries(from: &BrokerUrl, to: &BrokerUrl, within: Duration) -> bool {
    let mut sub = LinkConfig::new(to.clone(), client_id("probe-sub"));
    sub.subscriptions = vec!["continuity/probe/#".into()];
    let (_sub, mut heard) = Link::spawn(sub).unwrap();
    let (publisher, _events) =
        Link::spawn(LinkConfig::new(from.clone(), client_id("probe-pub"))).unwrap();
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        publisher.publish("continuity/probe/x", b"probe".to_vec(), false, true);
        let got = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(ev) = heard.recv().await {
                if matches!(ev, LinkEvent::Message { ref topic, .. } if topic == "continuity/probe/x")
                {
                    return true;
                }
            }
            false
        })
        .await;
        if got == Ok(true) {
            return true;
        }
    }
    false
}

/// The account's messages that a new subscription on `url` finds retained, within `quiet`.
async fn retained_on(url: &BrokerUrl, quiet: Duration) -> Vec<String> {
    let mut cfg = LinkConfig::new(url.clone(), client_id("spy"));
    cfg.subscriptions = vec!["continuity/v1/home/#".into()];
    let (_spy, mut seen) = Link::spawn(cfg).unwrap();
    let mut retained = Vec::new();
    let _ = tokio::time::timeout(quiet, async {
        while let Some(ev) = seen.recv().await {
            if let LinkEvent::Message {
                topic,
                retained: true,
                ..
            } = ev
            {
                retained.push(topic);
            }
        }
    })
    .await;
    retained
}

/// Plays the player's part of a handoff until its result reaches the TV: the TV (the
/// initiator and target) prerolls what it is asked to load and starts when told; the phone
/// pauses when told. Returns the result and the position the TV started at.
async fn play_the_handoff(
    id: &str,
    tv: &Node,
    tv_events: &mut mpsc::Receiver<NodeEvent>,
    phone: &Node,
    phone_events: &mut mpsc::Receiver<NodeEvent>,
    phone_started_unix_ns: u64,
) -> (continuity::wire::HandoffResult, u64, bool) {
    let mut prerolled = None;
    let mut phone_paused = false;
    let outcome = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                Some(ev) = tv_events.recv() => match ev {
                    NodeEvent::Player(PlayerAction::Load { position_ns, .. })
                    | NodeEvent::Player(PlayerAction::Preroll { position_ns, .. }) => {
                        prerolled = Some(position_ns);
                        tv.observe(Observation::Prerolled { position_ns });
                    }
                    NodeEvent::Player(PlayerAction::PlayAt { at_unix_ns }) => {
                        let position_ns = prerolled.expect("PlayAt comes after the preroll");
                        // The first frame plays at the switch instant, not before.
                        // Elapsed time is the point: a player waits for that instant.
                        let wait = at_unix_ns.saturating_sub(now_unix_ns());
                        tokio::time::sleep(Duration::from_nanos(wait)).await;
                        tv.observe_at(at_unix_ns, Observation::Started { position_ns });
                        // As a player does once it plays.
                        tv.observe_at(at_unix_ns, Observation::Playback {
                            position_ns,
                            state: PlayState::Playing,
                            rate: 1.0,
                        });
                    }
                    NodeEvent::Notice(Notice::HandoffResult(r)) if r.handoff == id => {
                        return r;
                    }
                    _ => {}
                },
                Some(ev) = phone_events.recv() => {
                    if let NodeEvent::Player(PlayerAction::PauseAt { at_unix_ns }) = ev {
                        phone_paused = true;
                        let position_ns =
                            START_NS + at_unix_ns.saturating_sub(phone_started_unix_ns);
                        phone.observe_at(at_unix_ns, Observation::Playback {
                            position_ns,
                            state: PlayState::Paused,
                            rate: 1.0,
                        });
                    }
                }
            }
        }
    })
    .await
    .expect("the handoff ends in time");
    // The source's command may come after the result reached the TV.
    if !phone_paused {
        phone_paused = tokio::time::timeout(WAIT, async {
            while let Some(ev) = phone_events.recv().await {
                if let NodeEvent::Player(PlayerAction::PauseAt { .. } | PlayerAction::Pause) = ev {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
    }
    (outcome, prerolled.unwrap(), phone_paused)
}

/// A sealed phone on `phone_node` plays a film; a TV on `tv_node` (another node) reads its
/// session and continues it there; then a tablet on the phone's node, starting the same film,
/// resumes from where the TV is.
async fn hand_off_across(phone_node: BrokerUrl, tv_node: BrokerUrl) {
    // RUST_LOG=continuity=debug shows what the devices did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    assert!(
        carries(&phone_node, &tv_node, Duration::from_secs(30)).await
            && carries(&tv_node, &phone_node, Duration::from_secs(30)).await,
        "messages do not cross between {phone_node} and {tv_node}"
    );
    let (_dir, accounts) = common::paired(&["phone", "tv", "tablet"]);
    let (phone_id, tv_id) = (accounts[0].device.clone(), accounts[1].device.clone());
    let (phone, mut phone_events) = common::sealed_node(
        phone_node.clone(),
        accounts[0].clone(),
        "Phone",
        DeviceClass::Phone,
    );
    phone.observe(Observation::MediaStarted(film()));
    let phone_started = now_unix_ns();
    phone.observe_at(
        phone_started,
        Observation::Playback {
            position_ns: START_NS,
            state: PlayState::Playing,
            rate: 1.0,
        },
    );
    assert!(
        phone.flush(WAIT).await,
        "the phone's state reached its node"
    );

    // What the broker lacks: the phone's state is not retained where the TV connects, so
    // the TV can only learn it from the phone.
    let there = retained_on(&tv_node, Duration::from_secs(1)).await;
    assert!(
        there.iter().all(|t| !t.contains(&phone_id)),
        "the TV's node holds the phone's retained state ({there:?}): this topology no longer \
         tests what devices do when the broker lacks it"
    );

    let (tv, mut tv_events) =
        common::sealed_node(tv_node.clone(), accounts[1].clone(), "TV", DeviceClass::Tv);
    let reads = tv
        .wait_until(WAIT, |e| {
            let d = e.directory();
            d.availability.get(&phone_id) == Some(&continuity::wire::Status::Online)
                && d.sessions
                    .get(&phone_id)
                    .and_then(|s| s.media.as_ref())
                    .and_then(|m| m.title.as_deref())
                    == Some(TITLE)
        })
        .await;
    assert!(reads, "the TV reads the phone's sealed session, online");

    // "Continue on the TV".
    let asked_at = now_unix_ns();
    let id = tv.request_handoff(&tv_id, &phone_id);
    let (result, started_at, phone_paused) = play_the_handoff(
        &id,
        &tv,
        &mut tv_events,
        &phone,
        &mut phone_events,
        phone_started,
    )
    .await;
    assert_eq!(result.failure, None, "the handoff succeeds: {result:?}");
    assert!(phone_paused, "the phone was told to pause");
    let played_ns = now_unix_ns() - asked_at;
    assert!(
        started_at >= START_NS && started_at <= START_NS + played_ns + 30 * SECOND_NS,
        "the TV starts where the phone was: {started_at} ns, the phone was at {START_NS} ns"
    );
    let moved = phone.wait_until(WAIT, |e| e.lease().device == tv_id).await;
    assert!(moved, "the phone knows the session moved to the TV");

    // Resume: a tablet on the phone's node starts the same film, and is offered the TV's
    // position, live there.
    let (tablet, _tablet_events) = common::sealed_node(
        phone_node.clone(),
        accounts[2].clone(),
        "Tablet",
        DeviceClass::Tablet,
    );
    let from = tablet
        .resume_lookup(ID, WAIT)
        .await
        .expect("the tablet finds where to resume the film");
    let dump = tablet.with_engine(|e| {
        let d = e.directory();
        format!(
            "tv session {:?}\navail {:?}\npoint {:?}\nclock of the TV {:?}, offset {} ns",
            d.sessions.get(&tv_id),
            d.availability.get(&tv_id),
            d.resume_point(ID),
            d.clocks.sample(&tv_id),
            d.clocks.offset_ns(&tv_id)
        )
    });
    assert_eq!(
        from.device, tv_id,
        "from the TV's session: {from:?}\n{dump}"
    );
    assert!(from.live.is_some(), "live on the TV: {from:?}");
    let until_now = now_unix_ns() - asked_at;
    assert!(
        from.position_ns >= started_at && from.position_ns <= started_at + until_now + SECOND_NS,
        "the tablet resumes where the TV is: {} ns, the TV started at {started_at} ns\n{dump}",
        from.position_ns
    );

    // What `continuity sessions` does, run on the tablet against the TV's node: a read-only
    // helper view (its own inbox, `<tablet>~view-…`) asks for what that node lacks, sees
    // what plays where, and measures the TV's clock through its inbox.
    let mut view = Observer::connect(&tv_node, "home", WAIT, Some(accounts[2].clone()))
        .await
        .expect("the view connects");
    assert!(view.sync(WAIT).await, "the view's sync echo comes back");
    view.ask(WAIT).await;
    let sees = view
        .wait_for(WAIT, |d| {
            let plays = |id: &str, state: PlayState| {
                d.availability.get(id) == Some(&continuity::wire::Status::Online)
                    && d.sessions.get(&id.to_owned()).is_some_and(|s| {
                        s.media.as_ref().and_then(|m| m.title.as_deref()) == Some(TITLE)
                            && s.anchor.is_some_and(|a| a.state == state)
                    })
            };
            plays(&tv_id, PlayState::Playing) && plays(&phone_id, PlayState::Paused)
        })
        .await;
    assert!(
        sees,
        "the view sees the film playing on the TV, paused on the phone: {:?}",
        view.directory().sessions
    );
    view.measure_clocks(1, WAIT).await;
    assert!(
        view.directory().clocks.sample(&tv_id).is_some(),
        "the TV answered the view's clock probe, in the view's own inbox"
    );
    view.close().await;

    for node in [tablet, tv, phone] {
        node.shutdown(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_hands_off_to_a_tv_on_another_node_of_a_rabbitmq_cluster() {
    let rabbit = Rabbit::start();
    hand_off_across(rabbit.url(0), rabbit.url(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_hands_off_to_a_tv_across_bridged_mosquittos() {
    let bridged = Bridged::start();
    // The phone on the far broker: what it publishes reaches the near one not retained.
    hand_off_across(bridged.far.url(), bridged.near.url()).await;
}
