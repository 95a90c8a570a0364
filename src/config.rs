//! Where a device keeps its own files, and its stable identity.
//!
//! The config dir (default `$XDG_CONFIG_HOME/continuity`, else `~/.config/continuity`) holds
//! `device-id` (created once) and the local store. Two config dirs on one machine are two
//! devices: that is how the tests run a "phone" and a "TV" side by side.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::wire::check_device_id;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: '{value}' is not a valid device id: {reason}")]
    BadDeviceId {
        path: PathBuf,
        value: String,
        reason: String,
    },
    #[error("no config dir: neither XDG_CONFIG_HOME nor HOME is set (use --config-dir)")]
    NoHome,
    #[error(
        "{path} holds the account secret but others can read it (mode {mode:o}); \
         fix it with: chmod 600 {path}"
    )]
    KeyReadable { path: PathBuf, mode: u32 },
    #[error("{path}: not a valid key file (damaged?); move it away to start afresh")]
    KeyCorrupt { path: PathBuf },
    #[error("{path}: {reason}")]
    Roster { path: PathBuf, reason: String },
    #[error(
        "config dir {dir} is in use by another player ({holder}): two players on one config \
         dir would be one device hiding the other; give each its own config dir"
    )]
    InUse { dir: PathBuf, holder: String },
}

/// A config dir taken by a running player (the directory itself is locked while this
/// lives; `player.lock` in it names the holder when the dir can be written): one device id,
/// one store and one key are one device, so a second player on the same dir is refused
/// rather than left to hide the first. Locking the directory, not a file in it, holds on a
/// read-only or full filesystem too.
#[derive(Debug)]
pub struct PlayerLock {
    _dir: std::fs::File,
}

/// Take `dir` for this player, or say who holds it.
pub fn lock_player(dir: &Path) -> Result<PlayerLock, ConfigError> {
    let io = |source| ConfigError::Io {
        path: dir.to_owned(),
        source,
    };
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // A directory opens read-only, and flock takes it whatever the filesystem allows.
    let handle = std::fs::File::open(dir).map_err(io)?;
    let path = dir.join("player.lock");
    match handle.try_lock() {
        Ok(()) => {
            // Who holds it, for the message the next one gets (nothing on a dir that cannot
            // be written: the lock holds all the same).
            let _ = std::fs::write(&path, format!("pid {}\n", std::process::id()));
            Ok(PlayerLock { _dir: handle })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "a process of this machine".into());
            Err(ConfigError::InUse {
                dir: dir.to_owned(),
                holder,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// The default config dir.
pub fn default_config_dir() -> Result<PathBuf, ConfigError> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("continuity"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".config").join("continuity")),
        None => Err(ConfigError::NoHome),
    }
}

/// This installation's device id, created on first use and kept in `<dir>/device-id`.
pub fn device_id(dir: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io {
        path: dir.to_owned(),
        source,
    };
    let path = dir.join("device-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_owned();
            check_device_id(&id).map_err(|reason| ConfigError::BadDeviceId {
                path: path.clone(),
                value: id.clone(),
                reason,
            })?;
            return Ok(id);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let id = format!("dev-{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff);
    // Write to a temporary file and link it into place, so that two processes starting at
    // once agree on one id.
    let tmp = dir.join(format!(".device-id.{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        writeln!(f, "{id}").map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(id),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => device_id(dir),
        Err(e) => Err(io(e)),
    }
}

/// The path of `account`'s secret in a config dir.
pub fn account_secret_path(dir: &Path, account: &str) -> PathBuf {
    dir.join("accounts").join(format!("{account}.key"))
}

/// The secret of `account`, in `<dir>/accounts/<account>.key` (64 hex digits, mode 0600),
/// created on first use. A file that others can read is refused, naming the fix.
pub fn account_secret(dir: &Path, account: &str) -> Result<[u8; 32], ConfigError> {
    let path = account_secret_path(dir, account);
    let text = private_file(&path, || {
        let secret = crate::security::seal::AccountKeys::new_secret()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(hex(&secret))
    })?;
    from_hex(text.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or(ConfigError::KeyCorrupt { path })
}

/// Replace `account`'s secret (after pairing, or a key rotation): written whole to a new
/// file with mode 0600 and renamed into place, so a crash leaves the old or the new one.
pub fn set_account_secret(dir: &Path, account: &str, secret: &[u8; 32]) -> Result<(), ConfigError> {
    replace_private(&account_secret_path(dir, account), &hex(secret))
}

/// How many secrets from before rotations a device keeps.
pub const KEEP_PREVIOUS: usize = 4;

fn previous_path(dir: &Path, account: &str) -> PathBuf {
    dir.join("accounts")
        .join(format!("{account}.previous.keys"))
}

/// The secrets `account` used before its key was rotated, oldest first, from
/// `<dir>/accounts/<account>.previous.keys` (64 hex digits a line, mode 0600): what was
/// sealed with them still opens after a restart. None when the file does not exist.
pub fn previous_secrets(dir: &Path, account: &str) -> Result<Vec<[u8; 32]>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let path = previous_path(dir, account);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Io { path, source }),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::KeyReadable { path, mode });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            from_hex(l.trim())
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| ConfigError::KeyCorrupt { path: path.clone() })
        })
        .collect()
}

/// Keep `secrets` (oldest first; the last [`KEEP_PREVIOUS`]) as `account`'s previous ones.
pub fn set_previous_secrets(
    dir: &Path,
    account: &str,
    secrets: &[[u8; 32]],
) -> Result<(), ConfigError> {
    let keep = &secrets[secrets.len().saturating_sub(KEEP_PREVIOUS)..];
    let text: Vec<String> = keep.iter().map(|s| hex(s)).collect();
    replace_private(&previous_path(dir, account), &text.join("\n"))
}

/// This device's Ed25519 signing key, in `<dir>/device.key` (mode 0600), created on first
/// use: PEM of a PKCS#8 v1 key (RFC 8410), which OpenSSL, Python's `cryptography` and
/// WebCrypto load as they are. Files of earlier versions, hex of a PKCS#8 v2 DER, are read
/// too.
pub fn device_key(dir: &Path) -> Result<ring::signature::Ed25519KeyPair, ConfigError> {
    let path = dir.join("device.key");
    let text = private_file(&path, || {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| std::io::Error::other("no randomness available"))?;
        Ok(ed25519_pem(&seed))
    })?;
    parse_device_key(&text).ok_or(ConfigError::KeyCorrupt { path })
}

/// The DER of a PKCS#8 v1 Ed25519 key holds the 32-byte seed after this prefix.
const PKCS8_V1_ED25519: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// PEM of the PKCS#8 v1 key with this seed.
pub fn ed25519_pem(seed: &[u8; 32]) -> String {
    use base64::Engine as _;
    let mut der = PKCS8_V1_ED25519.to_vec();
    der.extend_from_slice(seed);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
}

/// A device key file's text: PEM (PKCS#8 v1 or v2) or, as earlier versions wrote, hex of a
/// PKCS#8 v2 DER.
fn parse_device_key(text: &str) -> Option<ring::signature::Ed25519KeyPair> {
    use base64::Engine as _;
    let text = text.trim();
    let der = match text
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.trim_end().strip_suffix("-----END PRIVATE KEY-----"))
    {
        Some(body) => {
            let b64: String = body.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD.decode(b64).ok()?
        }
        None => from_hex(text)?,
    };
    match der.strip_prefix(&PKCS8_V1_ED25519[..]) {
        // v1 holds the seed alone; the public key is derived from it.
        Some(seed) if seed.len() == 32 => {
            ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).ok()
        }
        // v2 holds the public key too, checked against the seed.
        _ => ring::signature::Ed25519KeyPair::from_pkcs8(&der).ok(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Read a private file (refused when others can read it), or create it with mode 0600 and
/// the text `make` returns. Two processes creating it at once agree on the first.
fn private_file(
    path: &Path,
    make: impl Fn() -> std::io::Result<String>,
) -> Result<String, ConfigError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(ConfigError::KeyReadable {
                    path: path.to_owned(),
                    mode,
                });
            }
            std::fs::read_to_string(path).map_err(io)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let text = make().map_err(io)?;
            let mut f = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return private_file(path, make);
                }
                Err(e) => return Err(io(e)),
            };
            writeln!(f, "{text}").map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(text)
        }
        Err(e) => Err(io(e)),
    }
}

/// Write a private file (mode 0600) whole, replacing what was there.
pub fn replace_private(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    writeln!(f, "{text}").map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// This machine's host name, for a default device name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "continuity device".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    #[test]
    fn the_device_key_is_pem_pkcs8_v1_and_old_hex_files_still_load() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let key = device_key(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("device.key")).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(der.len(), 48, "PKCS#8 v1: the seed alone");
        assert_eq!(&der[..16], &PKCS8_V1_ED25519);
        let again = device_key(dir.path()).unwrap();
        assert_eq!(key.public_key().as_ref(), again.public_key().as_ref());

        // RFC 8410's example key, as OpenSSL writes it.
        let rfc = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        let pair = parse_device_key(rfc).unwrap();
        assert_eq!(
            hex(pair.public_key().as_ref()),
            "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1"
        );

        // Earlier versions: hex of ring's PKCS#8 v2 DER.
        let v2 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .unwrap();
        let old = parse_device_key(&hex(v2.as_ref())).unwrap();
        let direct = ring::signature::Ed25519KeyPair::from_pkcs8(v2.as_ref()).unwrap();
        assert_eq!(old.public_key().as_ref(), direct.public_key().as_ref());
        assert!(
            parse_device_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_none()
        );
    }

    #[test]
    fn the_account_secret_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = account_secret(dir.path(), "home").unwrap();
        let b = account_secret(dir.path(), "home").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, account_secret(dir.path(), "work").unwrap());
        let path = dir.path().join("accounts/home.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = account_secret(dir.path(), "home").unwrap_err().to_string();
        assert!(
            e.contains("home.key") && e.contains("chmod 600") && e.contains("644"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(matches!(
            account_secret(dir.path(), "home"),
            Err(ConfigError::KeyCorrupt { .. })
        ));
    }

    #[test]
    fn device_id_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = device_id(dir.path()).unwrap();
        let b = device_id(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(check_device_id(&a).is_ok());
        std::fs::write(dir.path().join("device-id"), "bad/id\n").unwrap();
        let e = device_id(dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad/id") && e.contains("device-id"), "{e}");
    }
}
