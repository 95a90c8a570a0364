//! Transport security against a real mosquitto: `mqtts://` with a CA and certificates made
//! by the test (rcgen with ring), client certificates, and passwords from a file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::Mosquitto;
use continuity::engine::Observation;
use continuity::model::{DeviceClass, Media, PlayState, SECOND_NS};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_continuity");

/// A CA and what it signed, as PEM files in a temporary dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ca.pem`, `server.pem`/`server.key` (for 127.0.0.1 and localhost),
    /// `client.pem`/`client.key`, and `other-ca.pem`, a CA that signed nothing here.
    fn make() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = p.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("continuity test CA");
        write("ca.pem", ca_cert.pem());
        write("other-ca.pem", ca("another CA").0.pem());
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, stem);
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
            write(&format!("{stem}.pem"), cert.pem());
            write(&format!("{stem}.key"), key.serialize_pem());
        };
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "server",
        );
        leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, "client");
        Pki { dir }
    }

    /// Mosquitto listener settings for TLS with this PKI.
    fn listener(&self, extra: &str) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n{extra}",
            self.path("ca.pem").display(),
            self.path("server.pem").display(),
            self.path("server.key").display()
        )
    }
}

fn cli(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--account", "tls", "--config-dir"])
        .arg(config_dir)
        .args(args)
        .env("CONTINUITY_MDNS_INTERFACE", "lo")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_goes_over_mqtts_and_shows_with_the_ca_file() {
    let pki = Pki::make();
    let broker = Mosquitto::start_with(&pki.listener(""));
    let url = format!(
        "mqtts://127.0.0.1:{}?ca-file={}",
        broker.port,
        pki.path("ca.pem").display()
    );
    let (phone_dir, laptop_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut accounts = continuity::security::pair::pair_dirs(
        "tls",
        &[(phone_dir.path(), "Phone"), (laptop_dir.path(), "Laptop")],
    )
    .unwrap();
    let phone = accounts.swap_remove(0);
    let (node, _events) =
        common::sealed_node(url.parse().unwrap(), phone, "Phone", DeviceClass::Phone);
    node.observe(Observation::MediaStarted(Media {
        id: "file:film.mkv".into(),
        title: Some("A Film".into()),
        duration_ns: Some(600 * SECOND_NS),
        ..Default::default()
    }));
    node.observe(Observation::Playback {
        position_ns: 30 * SECOND_NS,
        state: PlayState::Playing,
        rate: 1.0,
    });
    assert!(
        node.flush(Duration::from_secs(10)).await,
        "the node published over TLS"
    );

    let base = format!("mqtts://127.0.0.1:{}", broker.port);
    let ca = pki.path("ca.pem");
    let laptop = laptop_dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        cli(
            &laptop,
            &[
                "--broker",
                &base,
                "--ca-file",
                ca.to_str().unwrap(),
                "sessions",
                "--json",
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["sessions"][0]["title"], "A Film", "{doc}");
    node.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn a_broker_certificate_from_an_unknown_ca_is_a_clear_error() {
    let pki = Pki::make();
    let broker = Mosquitto::start_with(&pki.listener(""));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let other = pki.path("other-ca.pem");
    for extra in [vec![], vec!["--ca-file", other.to_str().unwrap()]] {
        let mut args = vec!["--broker", url.as_str()];
        args.extend(extra);
        args.push("sessions");
        let out = cli(dir.path(), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("not signed by a CA this device trusts") && err.contains("--ca-file"),
            "{err}"
        );
    }
}

#[test]
fn a_broker_that_wants_a_client_certificate_gets_one() {
    let pki = Pki::make();
    let broker = Mosquitto::start_with(&pki.listener("require_certificate true\n"));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let without = cli(dir.path(), &["--broker", &url, "--ca-file", ca, "sessions"]);
    let err = stderr(&without);
    assert_eq!(without.status.code(), Some(2), "{err}");
    assert!(err.contains("client certificate"), "{err}");

    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let with = cli(
        dir.path(),
        &[
            "--broker",
            &url,
            "--ca-file",
            ca,
            "--client-cert",
            cert.to_str().unwrap(),
            "--client-key",
            key.to_str().unwrap(),
            "sessions",
            "--json",
        ],
    );
    assert!(with.status.success(), "{}", stderr(&with));
}

#[test]
fn a_password_comes_from_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["alice", "s3cret pass"])
        .status()
        .expect("mosquitto_passwd runs");
    assert!(made.success());
    let broker = Mosquitto::start_with(&format!(
        "allow_anonymous false\npassword_file {}\n",
        passwords.display()
    ));
    let url = format!("mqtt://alice@127.0.0.1:{}", broker.port);
    let file = dir.path().join("password");
    let write = |text: &str, mode: u32| {
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let run = || {
        cli(
            dir.path(),
            &[
                "--broker",
                &url,
                "--password-file",
                file.to_str().unwrap(),
                "sessions",
                "--json",
            ],
        )
    };
    write("s3cret pass\n", 0o600);
    let ok = run();
    assert!(ok.status.success(), "{}", stderr(&ok));

    write("wrong\n", 0o600);
    let refused = run();
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("refused"), "{err}");

    // A password file others can read is refused before it is used, naming the fix.
    write("s3cret pass\n", 0o644);
    let open = run();
    let err = stderr(&open);
    assert_ne!(open.status.code(), Some(0), "{err}");
    assert!(
        err.contains(file.to_str().unwrap()) && err.contains("chmod 600"),
        "{err}"
    );
}
