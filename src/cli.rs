//! The command line: subcommands, their flags and environment variables, each value parsed
//! into its type by clap (`config::parse`). `serve`'s options are `config::ServeOptions`,
//! which a config file can also give; `config` layers and validates them into a `Config`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand, ValueEnum};
use http::uri::{Authority, Uri};

use crate::config::{self, parse, BucketConfig, ServeOptions};
use crate::reference::Registry;

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
    Serve(Box<ServeOptions>),
    /// Manage the mirror's own CA and server certificate.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Print what to configure on a client so it pulls through this mirror.
    ClientConfig(ClientConfigArgs),
    /// Inspect, shrink or check the cache (safe while `serve` runs).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Fetch whole images into the cache ahead of need (safe while `serve` runs).
    Prefetch(Box<PrefetchArgs>),
    /// Write cached images to a tar holding an OCI image layout, to carry to an offline mirror.
    Export(ExportArgs),
    /// Add a bundle from `export` (tar or directory) or a `docker save` tarball to the cache.
    Import(ImportArgs),
    /// Free hosted content that no hosted tag reaches any more (safe while `serve` runs).
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Keep what was pushed, mounted or linked this recently: it may belong to a push under way.
    #[arg(long, value_parser = parse::duration, default_value = "1h")]
    pub grace: Duration,
    /// Remove unfinished uploads not written to for this long.
    #[arg(long, env = "REGMIRROR_UPLOAD_MAX_AGE", value_parser = parse::duration, default_value = "24h")]
    pub upload_max_age: Duration,
    /// With --bucket, the hosted repositories' part of the bucket is collected too.
    #[command(flatten)]
    pub bucket: BucketArgs,
}

#[derive(Debug, Args)]
pub struct PrefetchArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Registry that stands for docker.io [default: https://registry-1.docker.io].
    #[arg(long, env = "REGMIRROR_UPSTREAM", value_parser = parse::upstream)]
    pub upstream: Option<Uri>,
    /// PEM CA certificates to trust for --upstream instead of the public roots.
    #[arg(long, env = "REGMIRROR_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
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
    #[command(flatten)]
    pub bucket: BucketArgs,
}

/// The bucket a fleet shares, which `prefetch` and `import` fill and `export` reads: `serve`'s
/// bucket options.
#[derive(Debug, Args)]
pub struct BucketArgs {
    /// S3 bucket the gateways share as their store (`http://host:port/bucket`): prefetch and
    /// import put what they add in it too; export first reads from it what the data
    /// directory lacks.
    #[arg(long, env = "REGMIRROR_BUCKET", value_parser = parse::bucket)]
    pub bucket: Option<url::Url>,
    /// Other endpoints of the bucket (comma-separated URLs without its name), tried in order
    /// when the ones before cannot be reached.
    #[arg(long, env = "REGMIRROR_BUCKET_FALLBACK", value_parser = parse::bucket, value_delimiter = ',')]
    pub bucket_fallback: Vec<url::Url>,
    /// Region the bucket's requests are signed for: us-east-1 unless given.
    #[arg(long, env = "REGMIRROR_BUCKET_REGION")]
    pub bucket_region: Option<String>,
    /// Address the bucket as a host name (`name.endpoint`) instead of a path.
    #[arg(long, env = "REGMIRROR_BUCKET_VIRTUAL_HOST", value_parser = clap::builder::BoolishValueParser::new())]
    pub bucket_virtual_host: bool,
    /// TOML file with the bucket's `access_key_id` and `secret_access_key`; without it,
    /// $CREDENTIALS_DIRECTORY/bucket, else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "REGMIRROR_BUCKET_CREDENTIALS")]
    pub bucket_credentials: Option<PathBuf>,
}

impl BucketArgs {
    /// The bucket these name, checked as `serve` checks its own.
    pub fn config(self) -> Result<Option<BucketConfig>, config::Error> {
        config::bucket_from_options(config::BucketOptions {
            url: self.bucket,
            fallbacks: self.bucket_fallback,
            region: self.bucket_region,
            virtual_host: self.bucket_virtual_host,
            credentials_file: self.bucket_credentials,
        })
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// The tar file to write.
    #[arg(long, short = 'o', value_name = "FILE.tar")]
    pub output: PathBuf,
    /// Every tagged image in the cache (and, with --bucket, every Docker Hub tag in the bucket).
    #[arg(long, conflicts_with = "images")]
    pub all: bool,
    /// Leave out the blobs an earlier bundle holds (repeatable).
    #[arg(long, value_name = "FILE.tar")]
    pub since: Vec<PathBuf>,
    /// Images to export, as cached: alpine:3.20, library/nginx@sha256:...
    #[arg(value_name = "IMAGE", required_unless_present = "all")]
    pub images: Vec<String>,
    #[command(flatten)]
    pub bucket: BucketArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// A bundle from `regmirror export` (tar or unpacked directory) or a `docker save` tarball.
    #[arg(value_name = "FILE.tar|DIR")]
    pub bundle: PathBuf,
    /// Images named under this namespace become hosted repositories (pinned, never evicted);
    /// namespaces `serve` has hosted in this data directory count without it.
    #[arg(long, env = "REGMIRROR_HOSTED_NAMESPACE", value_parser = parse::namespace)]
    pub hosted_namespace: Option<Registry>,
    #[command(flatten)]
    pub bucket: BucketArgs,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Counts and sizes (of the bucket's content, with --bucket).
    Stats(CacheArgs),
    /// Cached images (tags) and content with last access (the bucket's tags, with --bucket).
    Ls(CacheArgs),
    /// Delete content: unused for a while, then least recently used down to a size.
    Prune(PruneArgs),
    /// Re-hash every file; mismatches are quarantined (deleted from the bucket, with --bucket)
    /// and the exit code is non-zero.
    Verify(CacheArgs),
}

/// The data directory, or with `--bucket` the fleet's bucket instead.
#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    #[command(flatten)]
    pub bucket: BucketArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Shrink the cache to at most this size, e.g. 20GiB.
    #[arg(long, value_parser = parse::size)]
    pub max_size: Option<u64>,
    /// Delete content not used for this long, e.g. 30d (in a bucket: not written for this long).
    #[arg(long, value_parser = parse::duration)]
    pub older_than: Option<Duration>,
    /// With --bucket, the bucket's cached content is pruned instead (never its hosted part).
    #[command(flatten)]
    pub bucket: BucketArgs,
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
    #[arg(long, value_name = "HOST:PORT", value_parser = parse::authority)]
    pub mirror: Option<Authority>,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

/// A value that was refused, as one line naming where it was given: `invalid --tag-ttl 'soon':
/// why`, or `invalid REGMIRROR_TAG_TTL 'soon': why` when the environment gave it. `argv` is the
/// command line, which tells the two apart: clap reads a variable only when its flag is absent.
/// `None` for any other command-line mistake, which clap explains better itself.
pub fn invalid_value(error: &clap::Error, argv: &[String]) -> Option<String> {
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => Some(text.as_str()),
        _ => None,
    };
    let reason = match error.kind() {
        ErrorKind::ValueValidation => std::error::Error::source(error)?.to_string(),
        // A value outside a fixed set (`--log-format`), or none at all.
        ErrorKind::InvalidValue => match error.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!("expected one of {}", valid.join(", ")),
            _ => "a value is required".to_owned(),
        },
        _ => return None,
    };
    let flag = context(ContextKind::InvalidArg)?.split(' ').next()?;
    let value = context(ContextKind::InvalidValue)?;
    Some(format!(
        "invalid {} '{}': {reason}",
        origin(flag, argv),
        parse::shown(value)
    ))
}

/// The flag if the command line gives it, else its environment variable (if it has one).
fn origin(flag: &str, argv: &[String]) -> String {
    let given = |arg: &String| arg == flag || arg.strip_prefix(flag).is_some_and(|rest| rest.starts_with('='));
    let from_env = match argv.iter().any(given) {
        true => None,
        false => env_var_of(flag),
    };
    from_env.unwrap_or_else(|| flag.to_owned())
}

/// The environment variable of a `--long` flag of any subcommand.
fn env_var_of(flag: &str) -> Option<String> {
    let long = flag.strip_prefix("--")?;
    let mut commands = vec![<Cli as clap::CommandFactory>::command()];
    while let Some(command) = commands.pop() {
        let arg = command.get_arguments().find(|arg| arg.get_long() == Some(long));
        if let Some(env) = arg.and_then(clap::Arg::get_env) {
            return Some(env.to_string_lossy().into_owned());
        }
        commands.extend(command.get_subcommands().cloned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_value_is_named_where_it_was_given() {
        let argv = |args: &[&str]| args.iter().map(ToString::to_string).collect::<Vec<_>>();
        let flag = argv(&["regmirror", "serve", "--tag-ttl", "soon"]);
        assert_eq!(origin("--tag-ttl", &flag), "--tag-ttl");
        let joined = argv(&["regmirror", "serve", "--tag-ttl=soon"]);
        assert_eq!(origin("--tag-ttl", &joined), "--tag-ttl");
        let neither = argv(&["regmirror", "serve", "--tag-ttl-x"]);
        assert_eq!(origin("--tag-ttl", &neither), "REGMIRROR_TAG_TTL");
        assert_eq!(origin("--log-format", &neither), "REGMIRROR_LOG_FORMAT");
        // No variable to blame: the flag it is.
        assert_eq!(
            origin("--max-size", &argv(&["regmirror", "cache", "prune"])),
            "--max-size"
        );
    }
}
