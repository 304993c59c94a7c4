//! Where a client command finds the daemon, and the API token it sends with changes: one
//! [`Client`] per command, made from the global options, reading the config file at most once.
//!
//! The address: `--api`, else `NBWATCH_API`, else `api.listen` of `--config`, else
//! 127.0.0.1:7711. The token (only for commands that change something): `NBWATCH_TOKEN`, else
//! `--token-file`, else `api.token` in the `node.data_dir` of `--config` (or of the defaults).
//! Both the address and the token may come from the config, so it is loaded once, on first
//! need, and shared.

use super::client::Client;
use crate::config::{self, Config, ConfigErrors, DEFAULT_API_LISTEN, DEFAULT_DATA_DIR};
use anyhow::Context;
use std::cell::OnceCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Whether a command only reads (open on loopback) or changes something (sends the token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Change,
}

/// Where the API is: `host:port`, or `https://host:port` for an API with TLS (`http://` is
/// accepted too). The host is an IP address; a TLS certificate must name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiAddr {
    pub addr: SocketAddr,
    pub tls: bool,
}

impl std::str::FromStr for ApiAddr {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<ApiAddr, Self::Err> {
        let s = s.trim();
        let (tls, rest) = match (s.strip_prefix("https://"), s.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => (false, s),
        };
        Ok(ApiAddr {
            addr: rest.trim_end_matches('/').parse()?,
            tls,
        })
    }
}

/// The global options that say where the daemon is, and the environment they fall back on.
pub struct Target {
    pub api: Option<ApiAddr>,
    pub config: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    /// The process environment, taken once: `NBWATCH_API`, `NBWATCH_TOKEN` and the
    /// `NBWATCH_<SECTION>__<KEY>` overrides of the config.
    pub env: Vec<(String, String)>,
}

/// The config of `--config` (or the built-in defaults), loaded on first use and kept.
struct OnceConfig<'a> {
    path: Option<&'a Path>,
    env: &'a [(String, String)],
    loaded: OnceCell<Result<Config, ConfigErrors>>,
}

impl OnceConfig<'_> {
    fn get(&self) -> &Result<Config, ConfigErrors> {
        self.loaded
            .get_or_init(|| config::load_with_env(self.path, self.env))
    }
}

impl Target {
    /// The options and the environment of this process.
    pub fn from_process(
        api: Option<ApiAddr>,
        config: Option<PathBuf>,
        token_file: Option<PathBuf>,
    ) -> Target {
        // Lossy, as `config::load` reads it: a non-UTF-8 value then fails with a message.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
            .collect();
        Target {
            api,
            config,
            token_file,
            env,
        }
    }

    /// The client of one command. A token that cannot be read is said on stderr and left out:
    /// the daemon then answers 401, and says where the token is.
    pub fn client(&self, access: Access) -> anyhow::Result<Client> {
        let config = OnceConfig {
            path: self.config.as_deref(),
            env: &self.env,
            loaded: OnceCell::new(),
        };
        // The token before the address: a broken config then still falls back to the default
        // data_dir for the token, and is reported (with every problem) for the address.
        let token = match access {
            Access::Read => None,
            Access::Change => match self.token(&config) {
                Ok(token) => Some(token),
                Err((file, e)) => {
                    eprintln!("nbwatch: cannot read the API token {}: {e}", file.display());
                    None
                }
            },
        };
        let api = self.addr(&config)?;
        let mut client = Client::new(api.addr);
        if api.tls {
            client = client.with_tls(self.tls(&config)?);
        }
        Ok(match token {
            Some(token) => client.with_token(token),
            None => client,
        })
    }

    /// What the client trusts for an API with TLS: the system's roots, the certificates of
    /// `NBWATCH_CA_FILE`, and those of `api.tls_cert` of `--config` (a chain that ends with
    /// its CA is then enough).
    fn tls(&self, config: &OnceConfig) -> anyhow::Result<tokio_rustls::TlsConnector> {
        let mut files: Vec<PathBuf> = self
            .var("NBWATCH_CA_FILE")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        if self.config.is_some()
            && let Ok(config) = config.get()
            && let Some(tls) = &config.api.tls
        {
            files.push(tls.cert.clone());
        }
        crate::tls::client_trusting(&files).context("cannot set up TLS to the API")
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `--api`, else `NBWATCH_API`, else `api.listen` of `--config` (TLS with `api.tls_cert`),
    /// else the default.
    fn addr(&self, config: &OnceConfig) -> anyhow::Result<ApiAddr> {
        if let Some(addr) = self.api {
            return Ok(addr);
        }
        if let Some(value) = self.var("NBWATCH_API") {
            return value.trim().parse().with_context(|| {
                format!("NBWATCH_API={value:?} is not an address like 127.0.0.1:7711")
            });
        }
        if let Some(path) = &self.config {
            return match config.get() {
                Ok(config) => Ok(ApiAddr {
                    addr: config.api.listen,
                    tls: config.api.tls.is_some(),
                }),
                Err(errors) => {
                    super::print_problems(errors.problems());
                    anyhow::bail!("cannot read api.listen from {}", path.display())
                }
            };
        }
        Ok(ApiAddr {
            addr: DEFAULT_API_LISTEN,
            tls: false,
        })
    }

    /// `NBWATCH_TOKEN`, else `--token-file`, else `api.token` in the data_dir of `--config`
    /// (or of the built-in defaults); the file that could not be read, and why.
    fn token(&self, config: &OnceConfig) -> Result<String, (PathBuf, std::io::Error)> {
        if let Some(token) = self.var("NBWATCH_TOKEN").map(str::trim)
            && !token.is_empty()
        {
            return Ok(token.to_string());
        }
        let file = match &self.token_file {
            Some(file) => file.clone(),
            None => {
                let data_dir = match config.get() {
                    Ok(config) => config.node.data_dir.clone(),
                    Err(_) => PathBuf::from(DEFAULT_DATA_DIR),
                };
                crate::secure::token::path(&data_dir)
            }
        };
        crate::secure::token::read(&file).map_err(|e| (file, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(env: &[(&str, &str)]) -> Target {
        Target {
            api: None,
            config: None,
            token_file: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A config file with `api.listen` and a data_dir holding an `api.token`.
    fn config_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        std::fs::write(data.join("api.token"), "from-config\n").expect("token");
        let file = dir.path().join("nbwatch.toml");
        let text = format!(
            "[node]\ndata_dir = {:?}\n\n[api]\nlisten = \"127.0.0.1:7999\"\n",
            data.display().to_string()
        );
        std::fs::write(&file, text).expect("config");
        (dir, file)
    }

    #[test]
    fn the_address_is_the_flag_else_the_variable_else_the_config_else_the_default() {
        let (_dir, file) = config_dir();
        let mut t = target(&[("NBWATCH_API", " 127.0.0.1:7001 ")]);
        t.config = Some(file);
        t.api = Some("127.0.0.1:7000".parse().expect("addr"));
        assert!(!t.api.is_some_and(|a| a.tls));
        assert_eq!(
            "https://127.0.0.1:7000/"
                .parse::<ApiAddr>()
                .map(|a| (a.addr.port(), a.tls)),
            Ok((7000, true))
        );
        let addr = |t: &Target| t.client(Access::Read).expect("client").addr().to_string();
        assert_eq!(addr(&t), "127.0.0.1:7000");
        t.api = None;
        assert_eq!(addr(&t), "127.0.0.1:7001");
        t.env.clear();
        assert_eq!(addr(&t), "127.0.0.1:7999");
        t.config = None;
        assert_eq!(addr(&t), DEFAULT_API_LISTEN.to_string());
    }

    #[test]
    fn a_bad_nbwatch_api_says_what_an_address_looks_like() {
        let t = target(&[("NBWATCH_API", "nas")]);
        let e = t.client(Access::Read).expect_err("bad address");
        assert_eq!(
            format!("{e:#}"),
            "NBWATCH_API=\"nas\" is not an address like 127.0.0.1:7711: invalid socket address syntax"
        );
    }

    #[test]
    fn the_token_is_the_variable_else_the_file_else_the_config_data_dir() {
        let (dir, file) = config_dir();
        let own = dir.path().join("own.token");
        std::fs::write(&own, "from-file\n").expect("token file");
        let mut t = target(&[("NBWATCH_TOKEN", " from-env ")]);
        t.config = Some(file);
        t.token_file = Some(own);
        let config = OnceConfig {
            path: t.config.as_deref(),
            env: &[],
            loaded: OnceCell::new(),
        };
        assert_eq!(t.token(&config).expect("token"), "from-env");
        t.env = vec![("NBWATCH_TOKEN".into(), "  ".into())];
        assert_eq!(t.token(&config).expect("token"), "from-file");
        t.token_file = None;
        assert_eq!(t.token(&config).expect("token"), "from-config");
        t.token_file = Some(dir.path().join("missing"));
        let (missing, _) = t.token(&config).expect_err("no such file");
        assert_eq!(missing, dir.path().join("missing"));
    }

    #[test]
    fn reading_commands_send_no_token() {
        let t = target(&[("NBWATCH_TOKEN", "from-env")]);
        let read = format!("{:?}", t.client(Access::Read).expect("client"));
        let change = format!("{:?}", t.client(Access::Change).expect("client"));
        assert!(read.contains("token: None"), "{read}");
        assert!(change.contains("token: Some(\"<set>\")"), "{change}");
    }
}
