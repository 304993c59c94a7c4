//! Who may have written the files a daemon trusts. A data dir or a key prepared in advance by
//! another local user would otherwise be adopted with whatever they planted in it (an
//! `api.token` they know, a `services.run` naming processes for a root daemon to kill, a
//! key). So, at start, and with `stat(2)` on what is there:
//!
//! | what | owner | mode |
//! |---|---|---|
//! | the data dir | the daemon's user (euid) | not writable by group or others (created 0750) |
//! | its state files (`api.token`, `alerts-sent.json`, `cluster-settings.json`, `directives.json`, `directive.seq`, `incarnation`, `services.run`, `history.db`) | the daemon's user | not writable by group or others |
//! | a key file (`gossip.key_file`) | the daemon's user | no bit for group or others (0600) |
//!
//! Root is no exception for ownership: a root daemon is exactly the one a planted file would
//! harm. Group *read* is allowed on the data dir and `history.db` (0750/0640: a group such as
//! `nbwatch` may read the history with `sqlite3`); secrets (the token, keys) get no group bit.

use nix::sys::stat::{FileStat, stat};
use nix::unistd::geteuid;
use std::path::{Path, PathBuf};

/// The mode the daemon gives a data dir it creates.
pub const DATA_DIR_MODE: u32 = 0o750;

/// Why a file or folder is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(
        "{path} is owned by uid {owner}, not by this daemon's user (uid {euid}): someone else \
         prepared it. Check it, then chown it to the daemon's user, or remove it"
    )]
    NotOwned {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error(
        "{path} has mode {mode:04o}: users other than its owner can write it. Check it, then \
         chmod go-w it"
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error(
        "{path} has mode {mode:04o}: users other than its owner can read the key in it. Make a \
         new key if others may have read it, and chmod 600 the file"
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("cannot inspect {path}: {source}")]
    Stat { path: PathBuf, source: nix::Error },
}

/// The status of `path`, `None` if there is nothing there.
fn status(path: &Path) -> Result<Option<FileStat>, AccessError> {
    match stat(path) {
        Ok(s) => Ok(Some(s)),
        Err(nix::Error::ENOENT) => Ok(None),
        Err(source) => Err(AccessError::Stat {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `s` (of `path`) is owned by this process's effective user and not writable by others.
fn owned_and_not_writable(path: &Path, s: &FileStat) -> Result<u32, AccessError> {
    let euid = geteuid().as_raw();
    if s.st_uid != euid {
        return Err(AccessError::NotOwned {
            path: path.to_path_buf(),
            owner: s.st_uid,
            euid,
        });
    }
    let mode = s.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(AccessError::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(mode)
}

/// A state file (or folder), if there is one: ours and not writable by others.
pub fn check_state(path: &Path) -> Result<(), AccessError> {
    match status(path)? {
        Some(s) => owned_and_not_writable(path, &s).map(drop),
        None => Ok(()),
    }
}

/// A secret (a key file): ours, and no permission bit for group or others.
pub fn check_secret(path: &Path) -> Result<(), AccessError> {
    let Some(s) = status(path)? else {
        return Ok(()); // reading it says it is missing
    };
    let mode = owned_and_not_writable(path, &s)?;
    if mode & 0o077 != 0 {
        return Err(AccessError::Readable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Creates `data_dir` (and missing parents) at [`DATA_DIR_MODE`] if it is not there yet.
pub fn create_data_dir(data_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if data_dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_state_file_writable_by_others_is_refused_naming_it_and_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("api.token");
        std::fs::write(&token, "planted\n").unwrap();
        chmod(&token, 0o666);
        let e = check_state(&token).unwrap_err();
        assert!(
            matches!(e, AccessError::Writable { mode: 0o666, .. }),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("{} has mode 0666", token.display())),
            "{e}"
        );
        chmod(&token, 0o644);
        assert_eq!(
            check_state(&token),
            Ok(()),
            "readable is the token module's business"
        );
        assert_eq!(check_state(&dir.path().join("absent")), Ok(()));
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused_naming_it_and_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("cluster.key");
        std::fs::write(&key, "k\n").unwrap();
        chmod(&key, 0o644);
        let e = check_secret(&key).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} has mode 0644: users other than its owner can read the key in it. Make a \
                 new key if others may have read it, and chmod 600 the file",
                key.display()
            )
        );
        chmod(&key, 0o640);
        assert!(matches!(
            check_secret(&key),
            Err(AccessError::Readable { mode: 0o640, .. })
        ));
        chmod(&key, 0o600);
        assert_eq!(check_secret(&key), Ok(()));
    }

    #[test]
    fn a_file_of_another_user_is_refused_when_run_as_root() {
        if !geteuid().is_root() {
            println!("skipped: only root can give a file to another user (uid 65534)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("incarnation");
        std::fs::write(&file, "3\n").unwrap();
        chmod(&file, 0o600);
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&file, Some(nobody), None).expect("chown");
        let e = check_state(&file).unwrap_err();
        assert!(
            matches!(
                e,
                AccessError::NotOwned {
                    owner: 65534,
                    euid: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        assert!(matches!(
            check_secret(&file),
            Err(AccessError::NotOwned { .. })
        ));
    }
}
