//! Raw command-line flags and their environment variables, exactly as the user gave them.
//!
//! Nothing here is validated beyond what clap does; `config` turns these into a `Config`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "regmirror",
    version,
    about = "A pull-through caching mirror for container registries"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the registry pull API, caching what it fetches from the upstream.
    Serve(ServeArgs),
    /// Manage the mirror's own CA and server certificate.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Print what to configure on a client so it pulls through this mirror.
    ClientConfig(ClientConfigArgs),
    /// Inspect, shrink or check the cache (safe while `serve` runs).
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Counts and sizes.
    Stats(DataDirArg),
    /// Cached images (tags) and content with last access.
    Ls(DataDirArg),
    /// Delete content: unused for a while, then least recently used down to a size.
    Prune(PruneArgs),
    /// Re-hash every file; mismatches are quarantined and the exit code is non-zero.
    Verify(DataDirArg),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Shrink the cache to at most this size, e.g. 20GiB.
    #[arg(long)]
    pub max_size: Option<String>,
    /// Delete content not used for this long, e.g. 30d.
    #[arg(long)]
    pub older_than: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create the CA (never replacing one) and issue or renew the server certificate.
    Init(CertInitArgs),
    /// Print the server certificate's names and expiry and the CA's fingerprint.
    Show(DataDirArg),
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// Directory holding the cache and `certs/` [default: $STATE_DIRECTORY or ./regmirror-data].
    #[arg(long, env = "REGMIRROR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CertInitArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// A DNS name clients use for the mirror (repeatable); localhost and the host name are always added.
    #[arg(long = "hostname", value_name = "NAME")]
    pub hostnames: Vec<String>,
    /// An IP address clients use for the mirror (repeatable); loopback and interface addresses are always added.
    #[arg(long = "ip", value_name = "ADDR")]
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    Docker,
    Containerd,
    Podman,
}

#[derive(Debug, Args)]
pub struct ClientConfigArgs {
    /// Which client to configure.
    pub client: ClientKind,
    /// The mirror as clients reach it [default: this host name:5000].
    #[arg(long, value_name = "HOST:PORT")]
    pub mirror: Option<String>,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

/// Every value is optional here so that a config file can fill what the flags and
/// environment leave out; defaults are applied in `config`.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML config file; flags and environment variables override its values.
    #[arg(long, env = "REGMIRROR_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: [::]:5000].
    #[arg(long, env = "REGMIRROR_LISTEN")]
    pub listen: Option<String>,

    /// Directory holding the cache [default: $STATE_DIRECTORY or ./regmirror-data].
    #[arg(long, env = "REGMIRROR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Registry that stands for docker.io [default: https://registry-1.docker.io].
    #[arg(long, env = "REGMIRROR_UPSTREAM")]
    pub upstream: Option<String>,

    /// PEM certificate chain to serve TLS with [default: the mirror's own, under <data-dir>/certs].
    #[arg(long, env = "REGMIRROR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "REGMIRROR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve plain HTTP instead of TLS.
    #[arg(long, env = "REGMIRROR_INSECURE_HTTP", conflicts_with = "tls_cert")]
    pub insecure_http: bool,

    /// How long a tag→digest answer is trusted before asking the upstream again [default: 60s].
    #[arg(long, env = "REGMIRROR_TAG_TTL")]
    pub tag_ttl: Option<String>,

    /// Cap on the bytes the cache keeps on disk, e.g. 50GiB [default: no cap].
    #[arg(long, env = "REGMIRROR_MAX_CACHE_SIZE")]
    pub max_cache_size: Option<String>,

    /// Free space to leave on the data directory's file system; blobs that would eat into it
    /// pass through uncached [default: 1GiB].
    #[arg(long, env = "REGMIRROR_MIN_FREE_DISK")]
    pub min_free_disk: Option<String>,

    /// How long a cached tag may still be served while the upstream fails [default: no limit].
    #[arg(long, env = "REGMIRROR_MAX_STALE")]
    pub max_stale: Option<String>,

    /// Time a blob fill may take, plus one second per MiB, before it is given up [default: 5m].
    #[arg(long, env = "REGMIRROR_FILL_TIMEOUT")]
    pub fill_timeout: Option<String>,
}
