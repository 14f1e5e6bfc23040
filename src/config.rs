//! The validated configuration: flags over environment over config file, checked once at
//! startup so that nothing downstream re-parses a string.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::access::{AccessConfig, ClientCertificates};
use crate::cli::ServeArgs;
use crate::reference::{self, Registry};
use crate::tls::ClientAuth;

const DEFAULT_LISTEN: &str = "[::]:5000";
pub const DEFAULT_UPSTREAM: &str = "https://registry-1.docker.io";
const DEFAULT_TAG_TTL: Duration = Duration::from_secs(60);
const DEFAULT_MIN_FREE_DISK: u64 = 1 << 30;
const DEFAULT_FILL_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {field} '{value}': {reason}")]
    Value {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("--tls-cert and --tls-key go together")]
    TlsIncomplete,
    #[error("registry '{0}': username and password go together")]
    RegistryCredentials(String),
    #[error("REGMIRROR_UPSTREAM_USERNAME and REGMIRROR_UPSTREAM_PASSWORD must be set together")]
    CredentialsIncomplete,
    #[error("--insecure-http cannot be combined with --tls-cert/--tls-key")]
    TlsConflict,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub upstream: Uri,
    pub tls: Tls,
    pub tag_ttl: Duration,
    pub max_cache_size: Option<u64>,
    /// Fills are not started while the data directory's file system has less free space than
    /// this (plus the blob); such blobs pass through uncached.
    pub min_free_disk: u64,
    /// How long a cached tag may be served while the upstream is failing; `None`: no limit.
    pub max_stale: Option<Duration>,
    /// A fill may take this long plus one second per MiB before it is given up.
    pub fill_timeout: Duration,
    /// A second, plain-HTTP listener for `/metrics`, `/healthz` and `/readyz` only.
    pub admin_listen: Option<SocketAddr>,
    /// How long transfers in flight may go on after a shutdown signal.
    pub shutdown_grace: Duration,
    pub credentials: Option<Credentials>,
    /// Who may pull what; everything is open when nothing in it is set.
    pub access: AccessConfig,
    /// Registries mirrored besides Docker Hub (`upstream` and `credentials` are Docker Hub's).
    pub registries: Vec<RegistryConfig>,
    /// Never contact the upstream: tags resolve from the cache, misses are 404 (air-gapped sites).
    pub offline: bool,
}

#[derive(Debug, Clone)]
pub enum Tls {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// The mirror's own CA and server certificate in this directory, created when missing.
    SelfIssued {
        dir: PathBuf,
    },
    /// Plain HTTP; only sensible on a trusted link or behind another TLS terminator.
    Off,
}

/// Upstream login. `Debug` is written by hand so the password never reaches a log.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One more registry to mirror: clients name it `registry` (with containerd's `ns=` or as a
/// path prefix), the mirror fetches from `url`.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub registry: Registry,
    pub url: Uri,
    pub credentials: Option<Credentials>,
    /// PEM CA certificates to trust for this upstream instead of the public roots.
    pub ca: Option<PathBuf>,
    pub tag_ttl: Option<Duration>,
}

/// A `[[registries]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRegistry {
    name: String,
    url: String,
    username: Option<String>,
    password: Option<String>,
    ca: Option<PathBuf>,
    tag_ttl: Option<String>,
}

impl FileRegistry {
    fn validate(self) -> Result<RegistryConfig, Error> {
        let registry = self.name.parse().map_err(|e: reference::Error| Error::Value {
            field: "registries.name",
            value: self.name.clone(),
            reason: e.to_string(),
        })?;
        let credentials = match (self.username, self.password) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            (None, None) => None,
            _ => return Err(Error::RegistryCredentials(self.name)),
        };
        Ok(RegistryConfig {
            registry,
            url: parse_upstream(&self.url)?,
            credentials,
            ca: self.ca,
            tag_ttl: optional("registries.tag_ttl", self.tag_ttl, parse_duration)?,
        })
    }
}

/// Credentials from `REGMIRROR_UPSTREAM_USERNAME` / `REGMIRROR_UPSTREAM_PASSWORD`; one
/// without the other is a mistake worth stopping for.
pub fn env_credentials(username: Option<String>, password: Option<String>) -> Result<Option<Credentials>, Error> {
    match (username, password) {
        (Some(username), Some(password)) => Ok(Some(Credentials { username, password })),
        (None, None) => Ok(None),
        _ => Err(Error::CredentialsIncomplete),
    }
}

/// The config file's shape: the same names as the flags, with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    upstream: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    insecure_http: bool,
    tag_ttl: Option<String>,
    max_cache_size: Option<String>,
    min_free_disk: Option<String>,
    max_stale: Option<String>,
    fill_timeout: Option<String>,
    admin_listen: Option<String>,
    shutdown_grace: Option<String>,
    upstream_credentials: Option<Credentials>,
    #[serde(default)]
    registries: Vec<FileRegistry>,
    #[serde(default)]
    access: AccessConfig,
    #[serde(default)]
    offline: bool,
}

impl Config {
    /// Defaults for everything but the upstream and the data directory; tests and embedders
    /// start here and adjust the public fields.
    pub fn new(upstream: Uri, data_dir: PathBuf) -> Self {
        Config {
            listen: SocketAddr::from(([0u16; 8], 5000)),
            data_dir,
            upstream,
            tls: Tls::Off,
            tag_ttl: DEFAULT_TAG_TTL,
            max_cache_size: None,
            min_free_disk: DEFAULT_MIN_FREE_DISK,
            max_stale: None,
            fill_timeout: DEFAULT_FILL_TIMEOUT,
            admin_listen: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            credentials: None,
            registries: Vec::new(),
            access: AccessConfig::default(),
            offline: false,
        }
    }

    /// The client certificates the listener asks for, if access control uses them.
    pub fn client_auth(&self) -> Option<ClientAuth> {
        let mode = self.access.client_certificates?;
        Some(ClientAuth {
            ca: self.access.client_ca.clone(),
            required: mode == ClientCertificates::Required,
        })
    }

    /// Docker Hub as `--upstream` and the Docker Hub credentials configure it.
    pub fn docker_hub(&self) -> RegistryConfig {
        RegistryConfig {
            registry: Registry::docker_hub(),
            url: self.upstream.clone(),
            credentials: self.credentials.clone(),
            ca: None,
            tag_ttl: None,
        }
    }

    /// Every registry mirrored: Docker Hub (unless a `[[registries]]` entry redefines it) and
    /// the configured ones.
    pub fn all_registries(&self) -> Vec<RegistryConfig> {
        let mut all = self.registries.clone();
        if !all.iter().any(|r| r.registry.is_docker_hub()) {
            all.insert(0, self.docker_hub());
        }
        all
    }

    /// Merges flags (already merged with the environment by clap), the config file and the
    /// defaults. `state_directory` is systemd's `$STATE_DIRECTORY`, passed in so this stays pure.
    pub fn from_args(
        args: ServeArgs,
        env_credentials: Option<Credentials>,
        state_directory: Option<PathBuf>,
    ) -> Result<Self, Error> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        if let Some(path) = &args.config {
            warn_if_secrets_exposed(path, &file);
        }
        let listen = args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let upstream = args
            .upstream
            .or(file.upstream)
            .unwrap_or_else(|| DEFAULT_UPSTREAM.to_owned());
        let tag_ttl = args.tag_ttl.or(file.tag_ttl);
        let max_cache_size = args.max_cache_size.or(file.max_cache_size);
        let min_free_disk = args.min_free_disk.or(file.min_free_disk);
        let max_stale = args.max_stale.or(file.max_stale);
        let fill_timeout = args.fill_timeout.or(file.fill_timeout);
        let admin_listen = args.admin_listen.or(file.admin_listen);
        let shutdown_grace = args.shutdown_grace.or(file.shutdown_grace);
        let data_dir = data_dir(args.data_dir.or(file.data_dir), state_directory);
        let tls = pick_tls(
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            args.insecure_http || file.insecure_http,
        )?
        .unwrap_or_else(|| Tls::SelfIssued {
            dir: data_dir.join("certs"),
        });
        Ok(Config {
            listen: parse_listen(&listen)?,
            data_dir,
            upstream: parse_upstream(&upstream)?,
            tls,
            tag_ttl: optional("--tag-ttl", tag_ttl, parse_duration)?.unwrap_or(DEFAULT_TAG_TTL),
            max_cache_size: optional("--max-cache-size", max_cache_size, parse_size)?,
            min_free_disk: optional("--min-free-disk", min_free_disk, parse_size)?.unwrap_or(DEFAULT_MIN_FREE_DISK),
            max_stale: optional("--max-stale", max_stale, parse_duration)?,
            fill_timeout: optional("--fill-timeout", fill_timeout, parse_duration)?.unwrap_or(DEFAULT_FILL_TIMEOUT),
            admin_listen: admin_listen
                .as_deref()
                .map(|v| parse_addr("--admin-listen", v))
                .transpose()?,
            shutdown_grace: optional("--shutdown-grace", shutdown_grace, parse_duration)?
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            credentials: env_credentials.or(file.upstream_credentials),
            registries: file
                .registries
                .into_iter()
                .map(FileRegistry::validate)
                .collect::<Result<_, _>>()?,
            access: file.access,
            offline: args.offline || file.offline,
        })
    }
}

/// Credentials in a file others can read are credentials others have.
fn warn_if_secrets_exposed(path: &Path, file: &FileConfig) {
    use std::os::unix::fs::PermissionsExt;
    let secrets = file.upstream_credentials.is_some() || file.registries.iter().any(|r| r.password.is_some());
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(0);
    if secrets && mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the config file holds credentials but other users can read it; chmod 600 it"
        );
    }
}

fn read_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| Error::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

/// The data directory: as given, else systemd's `$STATE_DIRECTORY`, else `./regmirror-data`.
pub fn data_dir(given: Option<PathBuf>, state_directory: Option<PathBuf>) -> PathBuf {
    given
        .or(state_directory)
        .unwrap_or_else(|| PathBuf::from("./regmirror-data"))
}

/// `None` when neither files nor plain HTTP were asked for: the mirror's own certificates.
fn pick_tls(cert: Option<PathBuf>, key: Option<PathBuf>, insecure: bool) -> Result<Option<Tls>, Error> {
    match (cert, key, insecure) {
        (Some(_), _, true) | (_, Some(_), true) => Err(Error::TlsConflict),
        (Some(cert), Some(key), false) => Ok(Some(Tls::Files { cert, key })),
        (None, None, true) => Ok(Some(Tls::Off)),
        (None, None, false) => Ok(None),
        _ => Err(Error::TlsIncomplete),
    }
}

fn parse_field<T>(field: &'static str, value: &str, parse: fn(&str) -> Result<T, String>) -> Result<T, Error> {
    parse(value).map_err(|reason| Error::Value {
        field,
        value: value.to_owned(),
        reason,
    })
}

fn optional<T>(
    field: &'static str,
    value: Option<String>,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, Error> {
    value.map(|v| parse_field(field, &v, parse)).transpose()
}

fn parse_listen(value: &str) -> Result<SocketAddr, Error> {
    parse_addr("--listen", value)
}

fn parse_addr(field: &'static str, value: &str) -> Result<SocketAddr, Error> {
    parse_field(field, value, |v| {
        v.parse()
            .map_err(|_| "expected HOST:PORT, e.g. [::]:5000 or 0.0.0.0:5000".to_owned())
    })
}

pub fn parse_upstream(value: &str) -> Result<Uri, Error> {
    parse_field("--upstream", value, |v| {
        let uri: Uri = v.trim_end_matches('/').parse().map_err(|e| format!("{e}"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) if uri.path() == "/" || uri.path().is_empty() => Ok(uri),
            (Some("http" | "https"), Some(_)) => Err("a path prefix is not supported".to_owned()),
            _ => Err("expected an http:// or https:// URL".to_owned()),
        }
    })
}

/// Parses `90`, `500ms`, `30s`, `5m`, `2h`, `1d`; a bare number is seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(value)?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit '{unit}' (use ms, s, m, h or d)")),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| "too large".to_owned())
}

/// Parses byte sizes: `1024`, `512MiB`, `50GiB`, `10GB`, `1T`; binary and decimal units.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let (number, unit) = split_number(value)?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"
            ))
        }
    };
    number.checked_mul(multiplier).ok_or_else(|| "too large".to_owned())
}

fn split_number(value: &str) -> Result<(u64, &str), String> {
    let value = value.trim();
    let digits = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let number = value[..digits]
        .parse()
        .map_err(|_| "expected a number with an optional unit".to_owned())?;
    Ok((number, value[digits..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50GiB"), Ok(50 << 30));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999TiB").is_err());
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\ntag_ttl = \"5m\"\ninsecure_http = true\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(path),
            tag_ttl: Some("10s".into()),
            ..Default::default()
        };
        let config = Config::from_args(args, None, None).expect("valid");
        assert_eq!(config.listen, "127.0.0.1:7000".parse().expect("addr"));
        assert_eq!(config.tag_ttl, Duration::from_secs(10));
        assert!(matches!(config.tls, Tls::Off));
    }

    #[test]
    fn bad_values_name_the_field() {
        let args = ServeArgs {
            insecure_http: true,
            tag_ttl: Some("soon".into()),
            ..Default::default()
        };
        let err = Config::from_args(args, None, None).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "invalid --tag-ttl 'soon': expected a number with an optional unit"
        );
        let args = ServeArgs {
            insecure_http: true,
            upstream: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(Config::from_args(args, None, None).is_err());
        let args = ServeArgs {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(matches!(Config::from_args(args, None, None), Err(Error::TlsIncomplete)));
    }

    #[test]
    fn defaults_to_self_issued_certificates_in_the_state_directory() {
        let config = Config::from_args(ServeArgs::default(), None, Some("/var/lib/regmirror".into())).expect("valid");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/regmirror"));
        assert!(matches!(config.tls, Tls::SelfIssued { ref dir } if dir == Path::new("/var/lib/regmirror/certs")));
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
