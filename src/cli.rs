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
    /// Log lines as text for people, or JSON for a log pipeline. Filter with RUST_LOG.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "REGMIRROR_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
    /// Fetch whole images into the cache ahead of need (safe while `serve` runs).
    Prefetch(PrefetchArgs),
    /// Write cached images to a tar holding an OCI image layout, to carry to an offline mirror.
    Export(ExportArgs),
    /// Add a bundle from `export` (tar or directory) or a `docker save` tarball to the cache.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct PrefetchArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Registry that stands for docker.io [default: https://registry-1.docker.io].
    #[arg(long, env = "REGMIRROR_UPSTREAM")]
    pub upstream: Option<String>,
    /// Platforms to take from multi-platform images [default: linux and this machine's architecture].
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT],...",
        value_delimiter = ',',
        conflicts_with = "all_platforms"
    )]
    pub platform: Vec<String>,
    /// Take every platform of multi-platform images, attestations included.
    #[arg(long)]
    pub all_platforms: bool,
    /// A file naming one image per line (`#` starts a comment).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Upstream transfers at a time.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Images such as alpine:3.20, library/nginx@sha256:..., someuser/tool.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// The tar file to write.
    #[arg(long, short = 'o', value_name = "FILE.tar")]
    pub output: PathBuf,
    /// Every tagged image in the cache.
    #[arg(long, conflicts_with = "images")]
    pub all: bool,
    /// Leave out the blobs an earlier bundle holds (repeatable).
    #[arg(long, value_name = "FILE.tar")]
    pub since: Vec<PathBuf>,
    /// Images to export, as cached: alpine:3.20, library/nginx@sha256:...
    #[arg(value_name = "IMAGE", required_unless_present = "all")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// A bundle from `regmirror export` (tar or unpacked directory) or a `docker save` tarball.
    #[arg(value_name = "FILE.tar|DIR")]
    pub bundle: PathBuf,
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
    /// Issue a client certificate (mutual TLS) named NAME, signed by the mirror's CA.
    Client(CertClientArgs),
}

#[derive(Debug, Args)]
pub struct CertClientArgs {
    /// The client's name: the certificate's common name, which access rules match.
    pub name: String,
    #[command(flatten)]
    pub data_dir: DataDirArg,
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

    /// A separate plain-HTTP listener for /metrics, /healthz and /readyz [default: those are on --listen].
    #[arg(long, env = "REGMIRROR_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,

    /// How long transfers in flight may finish after SIGTERM [default: 30s].
    #[arg(long, env = "REGMIRROR_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,

    /// Time a blob fill may take, plus one second per MiB, before it is given up [default: 5m].
    #[arg(long, env = "REGMIRROR_FILL_TIMEOUT")]
    pub fill_timeout: Option<String>,

    /// Never contact the upstream: serve only what the cache holds (air-gapped sites).
    #[arg(long, env = "REGMIRROR_OFFLINE")]
    pub offline: bool,
}
