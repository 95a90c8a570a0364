//! Where a device keeps its own files, and its stable identity.
//!
//! The config dir (default `$XDG_CONFIG_HOME/continuity`, else `~/.config/continuity`) holds
//! `device-id` (created once) and the local store. Two config dirs on one machine are two
//! devices: that is how the tests run a "phone" and a "TV" side by side.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::wire::check_id;

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
    #[error("{path}: not an account secret (expected 64 hex digits)")]
    KeyCorrupt { path: PathBuf },
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
            check_id(&id).map_err(|reason| ConfigError::BadDeviceId {
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

/// The secret of `account`, in `<dir>/accounts/<account>.key` (64 hex digits, mode 0600),
/// created on first use. A file that others can read is refused, naming the fix.
pub fn account_secret(dir: &Path, account: &str) -> Result<[u8; 32], ConfigError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let keys = dir.join("accounts");
    let path = keys.join(format!("{account}.key"));
    let io = |source| ConfigError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(ConfigError::KeyReadable {
                    path: path.clone(),
                    mode,
                });
            }
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let text = text.trim();
            let bytes: Option<Vec<u8>> = (text.len() == 64)
                .then(|| {
                    (0..32)
                        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                        .collect()
                })
                .flatten();
            bytes
                .and_then(|b| b.try_into().ok())
                .ok_or(ConfigError::KeyCorrupt { path })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&keys).map_err(io)?;
            let secret = crate::seal::AccountKeys::new_secret()
                .map_err(|e| io(std::io::Error::other(e.to_string())))?;
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            let mut f = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => f,
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return account_secret(dir, account);
                }
                Err(e) => return Err(io(e)),
            };
            writeln!(f, "{hex}").map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(secret)
        }
        Err(e) => Err(io(e)),
    }
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
        assert!(check_id(&a).is_ok());
        std::fs::write(dir.path().join("device-id"), "bad/id\n").unwrap();
        let e = device_id(dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad/id") && e.contains("device-id"), "{e}");
    }
}
