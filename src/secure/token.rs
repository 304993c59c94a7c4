//! The API's bearer token on disk: made by the daemon at first start in
//! `data_dir/api.token`, mode 0600, so only the daemon's user (and root) can read it; read
//! by the CLI. What the token guards is in `api::token`.

use std::path::{Path, PathBuf};

/// The token's file name in `data_dir`.
pub const TOKEN_FILE: &str = crate::statefile::API_TOKEN;

/// Where the token of the node with this data dir is.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// Reads the token in `data_dir`, creating it (32 random bytes, hex, mode 0600) if there is
/// none. A token file that others can read is made private again.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let file = path(data_dir);
    match read(&file) {
        Ok(token) if !is_made_here(&token) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} does not hold a token nbwatch made (64 hex digits): it may have been cut \
                 short or damaged. Delete it and start again to make a new one (and give the \
                 new one to whoever used the old)",
                file.display()
            ),
        )),
        Ok(token) => {
            let mode = std::fs::metadata(&file)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(file = %file.display(), "the API token was readable by others: made it 0600");
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let bytes: [u8; 32] = chacha20poly1305::aead::Generate::generate();
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            crate::secure::keyring::write_private(&file, format!("{token}\n").as_bytes())?;
            tracing::info!(file = %file.display(), "created the API token");
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

/// True for what [`load_or_create`] writes: 32 bytes in hex. The daemon's own token file must
/// hold one, so a file a crash cut short or a disk garbled never becomes a weaker token.
fn is_made_here(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a token file (the first line, trimmed); an empty one is an error.
pub fn read(file: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(file)?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is empty", file.display()),
        ));
    }
    Ok(token)
}
