//! The validated configuration: flags over environment over config file over defaults,
//! checked once at startup so that nothing downstream re-parses a string.
//!
//! `options` defines each option once; `file` reads the config file into the same shape;
//! `parse` holds the value parsers both use; `registries` the upstreams and their logins.

mod bucket;
pub(crate) mod file;
mod fleet;
mod options;
pub mod parse;
mod registries;
#[cfg(test)]
mod tests;

use std::net::{Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

pub use self::bucket::{from_options as bucket_from_options, BucketConfig, BucketCredentials, BucketOptions};
pub use self::fleet::FleetConfig;
pub use self::options::ServeOptions;
pub use self::registries::{env_credentials, Credentials, FileRegistry, RegistryConfig};
use crate::access::{AccessConfig, ClientCertificates};
use crate::reference::Registry;
use crate::tls::ClientAuth;
use crate::upstream::Dns;

const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V6(Ipv6Addr::UNSPECIFIED), 5000);
const DEFAULT_UPSTREAM: &str = "https://registry-1.docker.io";
const DEFAULT_TAG_TTL: Duration = Duration::from_secs(60);
const DEFAULT_MIN_FREE_DISK: u64 = 1 << 30;
const DEFAULT_MANIFEST_CACHE_SIZE: u64 = 64 << 20;
const DEFAULT_FILL_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A site's machines each keep a handful of connections (dockerd 3 layers at a time, containerd
/// a few more); a build host or a NAT gateway in front of a cluster may need tens.
const DEFAULT_CONNECTIONS: ConnectionLimits = ConnectionLimits {
    max_open: 4096,
    max_per_client: 256,
    first_request_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
};
const DEFAULT_MAX_BLOB_SIZE: u64 = 16 << 30;
/// A silent upstream body is given up on after this long (a fill resumes it, a pass-through
/// fails): long enough for a CDN that pauses, short enough that a dead connection does not
/// hold a transfer's place for the whole fill timeout.
const DEFAULT_SOURCE_IDLE: Duration = Duration::from_secs(60);
const DEFAULT_MAX_TRANSFERS: usize = 64;
const DEFAULT_MAX_TRANSFERS_PER_ADDRESS: usize = 16;
/// How long a request waits for an upstream transfer to end when the caps are reached: long
/// enough to ride out a burst of small blobs, short enough that a client is told (and can
/// back off) well within its own timeouts.
const DEFAULT_TRANSFER_WAIT: Duration = Duration::from_secs(10);
/// A push pauses between layers for seconds, a resumed one perhaps for hours; a day covers
/// both and keeps a crashed client's leftovers from piling up.
const DEFAULT_UPLOAD_MAX_AGE: Duration = Duration::from_secs(86_400);

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
    #[error("registry '{0}': username goes with one of password and password_file")]
    RegistryCredentials(String),
    #[error("REGMIRROR_UPSTREAM_USERNAME and REGMIRROR_UPSTREAM_PASSWORD must be set together")]
    CredentialsIncomplete,
    #[error("--insecure-http cannot be combined with --tls-cert/--tls-key")]
    TlsConflict,
    #[error("hosted namespace '{0}' is also a mirrored registry; choose a name no upstream has")]
    HostedCollides(Registry),
    #[error("fleet: {0}")]
    Fleet(String),
    #[error("bucket: {0}")]
    Bucket(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub upstream: Uri,
    /// PEM CA certificates to trust for `upstream` instead of the public roots.
    pub upstream_ca: Option<PathBuf>,
    pub tls: Tls,
    pub tag_ttl: Duration,
    pub max_cache_size: Option<u64>,
    /// Memory for the bytes of manifests, so that a warm manifest request reads no file.
    pub manifest_cache_size: u64,
    /// Fills are not started while the data directory's file system has less free space than
    /// this (plus the blob); such blobs pass through uncached.
    pub min_free_disk: u64,
    /// How long a cached tag may be served while the upstream is failing; `None`: no limit.
    pub max_stale: Option<Duration>,
    /// A fill may take this long plus one second per MiB (an hour at most) before it is given up.
    pub fill_timeout: Duration,
    /// The largest blob taken from the upstream, whatever it announces.
    pub max_blob_size: u64,
    /// How long an upstream body may be silent; not an option (see its default), a field so
    /// that tests can shorten it.
    pub source_idle: Duration,
    /// A second, plain-HTTP listener for `/metrics`, `/healthz` and `/readyz` only.
    pub admin_listen: Option<SocketAddr>,
    /// How long transfers in flight may go on after a shutdown signal.
    pub shutdown_grace: Duration,
    pub connections: ConnectionLimits,
    /// Upstream transfers (fills and pass-throughs) at a time, overall and per client address.
    pub max_transfers: usize,
    pub max_transfers_per_address: usize,
    /// How long a request waits for a transfer to end beyond those caps; not an option (see
    /// its default), a field so that tests can shorten it.
    pub transfer_wait: Duration,
    pub credentials: Option<Credentials>,
    /// Who may pull what; everything is open when nothing in it is set.
    pub access: AccessConfig,
    /// Registries mirrored besides Docker Hub (`upstream` and `credentials` are Docker Hub's).
    pub registries: Vec<RegistryConfig>,
    /// Never contact the upstream: tags resolve from the cache, misses are 404 (air-gapped sites).
    pub offline: bool,
    /// Where the site's own repositories live; `None`: nothing is hosted, pushes are refused.
    pub hosted: Option<Registry>,
    /// How long an unfinished upload is kept after its last write.
    pub upload_max_age: Duration,
    /// The instances sharing this one's work; `None`: it works alone.
    pub fleet: Option<FleetConfig>,
    /// The S3 bucket shared as the store; `None`: the data directory alone.
    pub bucket: Option<BucketConfig>,
    /// How upstream host names resolve: the system's resolver, unless a test or an embedder
    /// fixes them.
    pub dns: Dns,
}

/// What one listener allows its clients' connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_open: usize,
    /// Per IPv4 address or IPv6 /64.
    pub max_per_client: usize,
    /// From accept to the first request's headers, TLS handshake included.
    pub first_request_timeout: Duration,
    /// How long a connection with no request in flight stays open.
    pub idle_timeout: Duration,
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

impl Config {
    /// Defaults for everything but the upstream and the data directory; tests and embedders
    /// start here and adjust the public fields.
    pub fn new(upstream: Uri, data_dir: PathBuf) -> Self {
        Config {
            listen: DEFAULT_LISTEN,
            data_dir,
            upstream,
            upstream_ca: None,
            tls: Tls::Off,
            tag_ttl: DEFAULT_TAG_TTL,
            max_cache_size: None,
            manifest_cache_size: DEFAULT_MANIFEST_CACHE_SIZE,
            min_free_disk: DEFAULT_MIN_FREE_DISK,
            max_stale: None,
            fill_timeout: DEFAULT_FILL_TIMEOUT,
            max_blob_size: DEFAULT_MAX_BLOB_SIZE,
            source_idle: DEFAULT_SOURCE_IDLE,
            admin_listen: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            connections: DEFAULT_CONNECTIONS,
            max_transfers: DEFAULT_MAX_TRANSFERS,
            max_transfers_per_address: DEFAULT_MAX_TRANSFERS_PER_ADDRESS,
            transfer_wait: DEFAULT_TRANSFER_WAIT,
            credentials: None,
            registries: Vec::new(),
            access: AccessConfig::default(),
            offline: false,
            hosted: None,
            upload_max_age: DEFAULT_UPLOAD_MAX_AGE,
            fleet: None,
            bucket: None,
            dns: Dns::System,
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
            ca: self.upstream_ca.clone(),
            tag_ttl: None,
            realm_hosts: Vec::new(),
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

    /// Layers the flags (already over the environment, by clap) over the config file they
    /// name and applies the defaults. Upstream credentials come from the environment or the
    /// file, never a flag. `state_directory` is systemd's `$STATE_DIRECTORY`, passed in so
    /// this stays pure.
    pub fn from_options(
        flags: ServeOptions,
        env_credentials: Option<Credentials>,
        state_directory: Option<PathBuf>,
    ) -> Result<Self, Error> {
        let file = match &flags.config {
            Some(path) => file::read(path)?,
            None => ServeOptions::default(),
        };
        let mut given = ServeOptions {
            upstream_credentials: env_credentials,
            ..flags
        }
        .or(file);
        let connections = connection_limits(&given);
        let (fleet, bucket) = sharing(&mut given)?;
        let data_dir = data_dir(given.data_dir, state_directory);
        let tls = pick_tls(given.tls_cert, given.tls_key, given.insecure_http)?.unwrap_or_else(|| Tls::SelfIssued {
            dir: data_dir.join("certs"),
        });
        let config = Config {
            listen: given.listen.unwrap_or(DEFAULT_LISTEN),
            data_dir,
            upstream: given.upstream.unwrap_or_else(default_upstream),
            upstream_ca: given.upstream_ca,
            tls,
            tag_ttl: given.tag_ttl.unwrap_or(DEFAULT_TAG_TTL),
            max_cache_size: given.max_cache_size,
            manifest_cache_size: given.manifest_cache_size.unwrap_or(DEFAULT_MANIFEST_CACHE_SIZE),
            min_free_disk: given.min_free_disk.unwrap_or(DEFAULT_MIN_FREE_DISK),
            max_stale: given.max_stale,
            fill_timeout: given.fill_timeout.unwrap_or(DEFAULT_FILL_TIMEOUT),
            max_blob_size: given.max_blob_size.unwrap_or(DEFAULT_MAX_BLOB_SIZE),
            source_idle: DEFAULT_SOURCE_IDLE,
            admin_listen: given.admin_listen,
            shutdown_grace: given.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            connections,
            max_transfers: given.max_transfers.unwrap_or(DEFAULT_MAX_TRANSFERS),
            max_transfers_per_address: (given.max_transfers_per_address).unwrap_or(DEFAULT_MAX_TRANSFERS_PER_ADDRESS),
            transfer_wait: DEFAULT_TRANSFER_WAIT,
            credentials: given.upstream_credentials,
            registries: (given.registries.into_iter().flatten())
                .map(FileRegistry::validate)
                .collect::<Result<_, _>>()?,
            access: given.access.unwrap_or_default(),
            offline: given.offline,
            hosted: given.hosted_namespace,
            upload_max_age: given.upload_max_age.unwrap_or(DEFAULT_UPLOAD_MAX_AGE),
            fleet,
            bucket,
            dns: Dns::System,
        };
        config.check_hosted()?;
        Ok(config)
    }

    /// A hosted namespace must never shadow a mirrored registry's repositories.
    fn check_hosted(&self) -> Result<(), Error> {
        match &self.hosted {
            Some(hosted) if self.all_registries().iter().any(|r| &r.registry == hosted) => {
                Err(Error::HostedCollides(hosted.clone()))
            }
            _ => Ok(()),
        }
    }
}

/// Docker Hub's registry, the upstream unless `--upstream` names another.
pub fn default_upstream() -> Uri {
    Uri::from_static(DEFAULT_UPSTREAM)
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

/// The instances this one shares its work with, and the bucket it shares as its store.
fn sharing(given: &mut ServeOptions) -> Result<(Option<FleetConfig>, Option<BucketConfig>), Error> {
    let fleet = fleet::from_options(
        given.fleet.take(),
        given.fleet_self.take(),
        given.fleet_key_file.take(),
        given.fleet_ca.take(),
    )?;
    let bucket = bucket::from_options(BucketOptions {
        url: given.bucket.take(),
        fallbacks: given.bucket_fallback.take().unwrap_or_default(),
        region: given.bucket_region.take(),
        virtual_host: given.bucket_virtual_host,
        credentials_file: given.bucket_credentials.take(),
    })?;
    Ok((fleet, bucket))
}

fn connection_limits(given: &ServeOptions) -> ConnectionLimits {
    ConnectionLimits {
        max_open: (given.max_connections).map_or(DEFAULT_CONNECTIONS.max_open, NonZeroUsize::get),
        max_per_client: (given.max_connections_per_address)
            .map_or(DEFAULT_CONNECTIONS.max_per_client, NonZeroUsize::get),
        first_request_timeout: (given.first_request_timeout).unwrap_or(DEFAULT_CONNECTIONS.first_request_timeout),
        idle_timeout: given.idle_timeout.unwrap_or(DEFAULT_CONNECTIONS.idle_timeout),
    }
}
