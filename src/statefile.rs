//! Versioned state files. Each file a daemon keeps says which format it is written in, so an
//! upgraded daemon migrates an older file, and an older daemon (after a rollback) refuses a
//! newer one with a clear error instead of misreading it.
//!
//! | file | format | where the format is written | migrations |
//! |---|---|---|---|
//! | `history.db` | schema version | SQLite's `user_version` | `store::schema::MIGRATIONS` |
//! | `alerts-sent.json` | 2 | a `"format"` field (absent: 1) | 1 → 2: the field is added |
//! | `cluster-settings.json` | 1 | a `"format"` field | none yet |
//! | `probe-health.json` | 1 | a `"format"` field | none yet |
//! | `incarnation` | 1 | a first line `# nbwatch incarnation format N` (absent: 1) | none yet |
//! | the keyring (`gossip.key_file`) | 1 | a first line `# nbwatch keyring format N` (absent: 1) | none yet |
//!
//! A file in its first format carries no header, so the files of every earlier build are read
//! as they are. [`check_data_dir`] runs before a node starts: a file from a newer build stops
//! the start, naming the file and both formats, and so does a data dir or state file that
//! another user could have prepared ([`access`]). (A base module: the keyring's reader in
//! `secure` and the store's use it alike.)

pub mod access;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io;
use std::path::{Path, PathBuf};

/// The API's bearer token.
pub const API_TOKEN: &str = "api.token";
/// The history database (SQLite keeps `-wal` and `-shm` files beside it).
pub const HISTORY: &str = "history.db";
/// The services this daemon started, for the next one to clean up.
pub const SERVICES_RUN: &str = "services.run";
/// The node's incarnation.
pub const INCARNATION: &str = "incarnation";
/// The alert actor's memory of what was sent.
pub const ALERTS_SENT: &str = "alerts-sent.json";
/// The cluster settings document this node applies (`control::settings`), and its format.
pub const CLUSTER_SETTINGS: &str = "cluster-settings.json";
/// Each host probe's health and since when it holds, so a restart does not make a probe that
/// stays critical a new incident.
pub const PROBE_HEALTH: &str = "probe-health.json";
/// Where the export to `store.remote_write` stands (`actors::export`).
pub const EXPORT_CURSOR: &str = "export-cursor.json";
pub const EXPORT_CURSOR_FORMAT: u32 = 1;
pub const PROBE_HEALTH_FORMAT: u32 = 1;
pub const CLUSTER_SETTINGS_FORMAT: u32 = 1;
/// The signed commands this node ran (`secure::directive::Ledger`), and the last number this
/// node gave a directive it issued (`secure::operator::Sequence`).
pub const DIRECTIVES: &str = "directives.json";
pub const DIRECTIVE_SEQ: &str = "directive.seq";
/// Its format now.
pub const ALERTS_SENT_FORMAT: u32 = 2;
/// The incarnation file's format now.
pub const INCARNATION_FORMAT: u32 = 1;
/// The keyring's format now.
pub const KEYRING_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error(
        "{path} is in format {found}, written by a newer nbwatch (this one reads formats up \
         to {supported}): run the newer binary, or move the file aside to start without it"
    )]
    Newer {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path} is not a valid state file: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the data dir {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Access(#[from] access::AccessError),
}

/// The header line of a text state file of `kind` in `format`.
pub fn header(kind: &str, format: u32) -> String {
    format!("# nbwatch {kind} format {format}\n")
}

/// A header line that names no format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the header names no format: {0:?}")]
pub struct BadHeader(pub String);

/// The format a text state file of `kind` says it is in (1 without a header), and the text
/// after the header.
pub fn text_format<'a>(kind: &str, text: &'a str) -> Result<(u32, &'a str), BadHeader> {
    let prefix = format!("# nbwatch {kind} format ");
    let Some(rest) = text.strip_prefix(&prefix) else {
        return Ok((1, text));
    };
    let (number, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let format = number
        .trim()
        .parse::<u32>()
        .map_err(|_| BadHeader(number.trim().to_string()))?;
    Ok((format, body))
}

/// Refuses a format newer than `supported`.
pub fn refuse_newer(path: &Path, found: u32, supported: u32) -> Result<(), StateFileError> {
    match found > supported {
        true => Err(StateFileError::Newer {
            path: path.to_path_buf(),
            found,
            supported,
        }),
        false => Ok(()),
    }
}

/// The format of a JSON state file's object (1 without a `"format"` field).
fn json_format(path: &Path, value: &Value) -> Result<u32, StateFileError> {
    match value.get("format") {
        None => Ok(1),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| StateFileError::Corrupt {
                path: path.to_path_buf(),
                why: format!("\"format\" is {v}, not a number"),
            }),
    }
}

/// Reads a JSON state file written in a format up to `current`, migrating it step by step:
/// `migrations[i]` turns format `i + 1` into `i + 2`. `Ok(None)`: there is no file.
pub fn read_json<T: DeserializeOwned>(
    path: &Path,
    current: u32,
    migrations: &[fn(&mut Value)],
) -> Result<Option<T>, StateFileError> {
    debug_assert_eq!(migrations.len() + 1, current as usize);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let corrupt = |why: String| StateFileError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let mut value: Value = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if !value.is_object() {
        return Err(corrupt("not a JSON object".into()));
    }
    let found = json_format(path, &value)?;
    refuse_newer(path, found, current)?;
    if found == 0 {
        return Err(corrupt("format 0 does not exist".into()));
    }
    for migrate in &migrations[found as usize - 1..] {
        migrate(&mut value);
    }
    if let Some(object) = value.as_object_mut() {
        object.remove("format");
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

/// Writes `value` (a struct: a JSON object) with its `"format"`, atomically: a temporary
/// file, synced, renamed over the old one.
pub fn write_json<T: Serialize>(path: &Path, current: u32, value: &T) -> io::Result<()> {
    let mut object = serde_json::to_value(value).map_err(io::Error::other)?;
    let Some(map) = object.as_object_mut() else {
        return Err(io::Error::other("a state file holds a JSON object"));
    };
    map.insert("format".into(), Value::from(current));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_string(&object).map_err(io::Error::other)?,
    )?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Moves a file that cannot be read aside (`<name>.corrupt`), so that starting without it
/// loses nothing a person could still look at.
pub fn move_aside(path: &Path) -> io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".corrupt");
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

/// Refuses to start on a data dir that someone else could have prepared (see [`access`]) or
/// that holds a state file from a newer build. Creates the data dir (mode 0750) if it is not
/// there yet.
pub fn check_data_dir(data_dir: &Path) -> Result<(), StateFileError> {
    access::create_data_dir(data_dir).map_err(|source| StateFileError::Create {
        path: data_dir.to_path_buf(),
        source,
    })?;
    access::check_state(data_dir)?;
    let history = |suffix: &str| format!("{HISTORY}{suffix}");
    for name in [
        API_TOKEN,
        ALERTS_SENT,
        CLUSTER_SETTINGS,
        DIRECTIVES,
        DIRECTIVE_SEQ,
        INCARNATION,
        SERVICES_RUN,
        &history(""),
        &history("-wal"),
        &history("-shm"),
    ] {
        access::check_state(&data_dir.join(name))?;
    }
    for (name, supported) in [
        (ALERTS_SENT, ALERTS_SENT_FORMAT),
        (CLUSTER_SETTINGS, CLUSTER_SETTINGS_FORMAT),
    ] {
        let file = data_dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(value) = serde_json::from_str::<Value>(&text)
            && let Ok(found) = json_format(&file, &value)
        {
            refuse_newer(&file, found, supported)?;
        }
    }
    let incarnation = data_dir.join(INCARNATION);
    if let Ok(text) = std::fs::read_to_string(&incarnation)
        && let Ok((found, _)) = text_format("incarnation", &text)
    {
        refuse_newer(&incarnation, found, INCARNATION_FORMAT)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Memory {
        seen: Vec<String>,
        #[serde(default)]
        count: u32,
    }

    fn count_from_seen(v: &mut Value) {
        let n = v["seen"].as_array().map_or(0, Vec::len);
        v["count"] = Value::from(n);
    }

    #[test]
    fn a_file_without_a_format_is_format_1_and_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, r#"{"seen":["a","b"]}"#).unwrap();
        let read: Option<Memory> = read_json(&path, 2, &[count_from_seen]).unwrap();
        assert_eq!(
            read,
            Some(Memory {
                seen: vec!["a".into(), "b".into()],
                count: 2
            })
        );
    }

    #[test]
    fn what_is_written_says_its_format_and_reads_back_unmigrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let memory = Memory {
            seen: vec!["x".into()],
            count: 7,
        };
        write_json(&path, 2, &memory).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""format":2"#), "{text}");
        let read: Option<Memory> = read_json(&path, 2, &[count_from_seen]).unwrap();
        assert_eq!(read, Some(memory), "format 2 is not migrated again");
    }

    #[test]
    fn a_newer_file_is_refused_naming_both_formats_and_corrupt_ones_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, r#"{"format":3,"seen":[]}"#).unwrap();
        let err = read_json::<Memory>(&path, 2, &[count_from_seen]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("format 3") && text.contains("up to 2"),
            "{text}"
        );
        for (bytes, why) in [
            ("{\"seen\":[", "EOF"),
            ("[1,2]", "not a JSON object"),
            (r#"{"format":"x"}"#, "not a number"),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let err = read_json::<Memory>(&path, 2, &[count_from_seen]).unwrap_err();
            assert!(
                matches!(&err, StateFileError::Corrupt { why: w, .. } if w.contains(why)),
                "{bytes}: {err}"
            );
        }
        assert!(
            read_json::<Memory>(&dir.path().join("none"), 2, &[count_from_seen])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn text_headers_name_the_format_and_their_absence_is_format_1() {
        assert_eq!(text_format("incarnation", "41\n"), Ok((1, "41\n")));
        let text = format!("{}41\n", header("incarnation", 2));
        assert_eq!(text_format("incarnation", &text), Ok((2, "41\n")));
        assert!(text_format("incarnation", "# nbwatch incarnation format x\n1").is_err());
        // Another kind's header is just text to this one.
        let keyring = format!("{}abc\n", header("keyring", 1));
        assert_eq!(text_format("incarnation", &keyring).unwrap().0, 1);
    }

    #[test]
    fn a_data_dir_with_a_newer_state_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_data_dir(dir.path()).is_ok(), "an empty dir");
        std::fs::write(dir.path().join(ALERTS_SENT), r#"{"seen":[],"own":{}}"#).unwrap();
        std::fs::write(dir.path().join("incarnation"), "12\n").unwrap();
        assert!(check_data_dir(dir.path()).is_ok(), "older files");
        std::fs::write(
            dir.path().join("incarnation"),
            format!("{}12\n", header("incarnation", INCARNATION_FORMAT + 1)),
        )
        .unwrap();
        let err = check_data_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("incarnation"), "{err}");
        std::fs::write(dir.path().join("incarnation"), "12\n").unwrap();
        std::fs::write(
            dir.path().join(ALERTS_SENT),
            format!(
                r#"{{"format":{},"seen":[],"own":{{}}}}"#,
                ALERTS_SENT_FORMAT + 1
            ),
        )
        .unwrap();
        let err = check_data_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains(ALERTS_SENT), "{err}");
    }

    #[test]
    fn a_data_dir_others_could_have_prepared_is_refused_and_a_new_one_is_made_0750() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("new").join("data");
        check_data_dir(&dir).expect("a new data dir");
        assert_eq!(mode(&dir), access::DATA_DIR_MODE);

        chmod(&dir, 0o777);
        let err = check_data_dir(&dir).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{} has mode 0777", dir.display())),
            "{err}"
        );
        chmod(&dir, 0o755);
        check_data_dir(&dir).expect("readable by others is allowed");

        // A planted token that anyone could have written.
        let token = dir.join(API_TOKEN);
        std::fs::write(&token, "planted\n").unwrap();
        chmod(&token, 0o666);
        let err = check_data_dir(&dir).unwrap_err();
        assert!(
            matches!(&err, StateFileError::Access(access::AccessError::Writable { path, .. }) if *path == token),
            "{err}"
        );
        chmod(&token, 0o600);
        check_data_dir(&dir).expect("a private token");

        // The same for the cluster settings and the ledger and numbering of directives.
        for name in [CLUSTER_SETTINGS, DIRECTIVES, DIRECTIVE_SEQ] {
            let file = dir.join(name);
            std::fs::write(&file, "planted\n").unwrap();
            chmod(&file, 0o666);
            let err = check_data_dir(&dir).unwrap_err();
            assert!(
                matches!(&err, StateFileError::Access(access::AccessError::Writable { path, .. }) if *path == file),
                "{name}: {err}"
            );
            std::fs::remove_file(&file).unwrap();
        }

        if !nix::unistd::geteuid().is_root() {
            println!("skipped the ownership half: only root can chown to uid 65534");
            return;
        }
        let nobody = Some(nix::unistd::Uid::from_raw(65534));
        for planted in [ALERTS_SENT, INCARNATION, SERVICES_RUN, HISTORY, API_TOKEN] {
            let file = dir.join(planted);
            std::fs::write(&file, "").unwrap();
            chmod(&file, 0o600);
            nix::unistd::chown(&file, nobody, None).unwrap();
            let err = check_data_dir(&dir).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("{} is owned by uid 65534", file.display())),
                "{err}"
            );
            std::fs::remove_file(&file).unwrap();
        }
        nix::unistd::chown(&dir, nobody, None).unwrap();
        let err = check_data_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ALERTS_SENT);
        std::fs::write(&path, "{garbage").unwrap();
        let aside = move_aside(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(aside).unwrap(), "{garbage");
    }
}
