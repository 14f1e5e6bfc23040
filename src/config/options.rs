//! `serve`'s options, each defined once: one field carries its flag, environment variable,
//! config-file key (the flag's name with `_` for `-`), parser and help. Flags and environment
//! come through clap, the file through serde, into the same struct; `or` layers them. A switch's
//! variable takes `1`/`0`, `true`/`false`, `yes`/`no` or `on`/`off`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::Args;
use http::Uri;
use serde::Deserialize;

use super::parse;
use super::registries::{Credentials, FileRegistry};
use crate::access::AccessConfig;
use crate::reference::Registry;

/// One layer's value for an option.
trait Layer {
    /// This layer's value where it has one, else `lower`'s.
    fn or(self, lower: Self) -> Self;
}

impl<T> Layer for Option<T> {
    fn or(self, lower: Self) -> Self {
        Option::or(self, lower)
    }
}

/// A switch is on when any layer turns it on; no layer can turn it off.
impl Layer for bool {
    fn or(self, lower: Self) -> Self {
        self || lower
    }
}

/// Declares the struct as written and an `or` that layers it field by field, so an option
/// added to the struct needs nothing more to take part in the precedence.
macro_rules! layered {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty, )* }
    ) => {
        $(#[$meta])*
        pub struct $name { $( $(#[$field_meta])* pub $field: $ty, )* }

        impl $name {
            /// Each option from `self` where it is set, else from `lower`.
            pub fn or(self, lower: Self) -> Self {
                Self { $( $field: Layer::or(self.$field, lower.$field), )* }
            }
        }
    };
}

layered! {
    /// Everything is optional so that each layer (flags, environment, file) can leave a value
    /// to the next; `Config::from_options` applies the defaults the help text names.
    #[derive(Debug, Default, Args, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ServeOptions {
        /// TOML config file; flags and environment variables override its values.
        #[arg(long, env = "REGMIRROR_CONFIG")]
        #[serde(skip)]
        pub config: Option<PathBuf>,

        /// Address to listen on [default: [::]:5000].
        #[arg(long, env = "REGMIRROR_LISTEN", value_parser = parse::addr)]
        #[serde(default, deserialize_with = "parse::de::addr")]
        pub listen: Option<SocketAddr>,

        /// Directory holding the cache [default: $STATE_DIRECTORY or ./regmirror-data].
        #[arg(long, env = "REGMIRROR_DATA_DIR")]
        pub data_dir: Option<PathBuf>,

        /// Registry that stands for docker.io [default: https://registry-1.docker.io].
        #[arg(long, env = "REGMIRROR_UPSTREAM", value_parser = parse::upstream)]
        #[serde(default, deserialize_with = "parse::de::upstream")]
        pub upstream: Option<Uri>,

        /// PEM CA certificates to trust for --upstream instead of the public roots.
        #[arg(long, env = "REGMIRROR_UPSTREAM_CA")]
        pub upstream_ca: Option<PathBuf>,

        /// PEM certificate chain to serve TLS with [default: the mirror's own, under <data-dir>/certs].
        #[arg(long, env = "REGMIRROR_TLS_CERT", requires = "tls_key")]
        pub tls_cert: Option<PathBuf>,

        /// PEM private key for --tls-cert.
        #[arg(long, env = "REGMIRROR_TLS_KEY", requires = "tls_cert")]
        pub tls_key: Option<PathBuf>,

        /// Serve plain HTTP instead of TLS.
        #[arg(
            long,
            env = "REGMIRROR_INSECURE_HTTP",
            conflicts_with = "tls_cert",
            value_parser = BoolishValueParser::new()
        )]
        #[serde(default)]
        pub insecure_http: bool,

        /// How long a tag→digest answer is trusted before asking the upstream again [default: 60s].
        #[arg(long, env = "REGMIRROR_TAG_TTL", value_parser = parse::duration)]
        #[serde(default, deserialize_with = "parse::de::duration")]
        pub tag_ttl: Option<Duration>,

        /// Cap on the bytes the cache keeps on disk, e.g. 50GiB [default: no cap].
        #[arg(long, env = "REGMIRROR_MAX_CACHE_SIZE", value_parser = parse::size)]
        #[serde(default, deserialize_with = "parse::de::size")]
        pub max_cache_size: Option<u64>,

        /// Memory for manifests served without reading their files; 0 keeps none [default: 64MiB].
        #[arg(long, env = "REGMIRROR_MANIFEST_CACHE_SIZE", value_parser = parse::size)]
        #[serde(default, deserialize_with = "parse::de::size")]
        pub manifest_cache_size: Option<u64>,

        /// Free space to leave on the data directory's file system; blobs that would eat into it
        /// pass through uncached [default: 1GiB].
        #[arg(long, env = "REGMIRROR_MIN_FREE_DISK", value_parser = parse::size)]
        #[serde(default, deserialize_with = "parse::de::size")]
        pub min_free_disk: Option<u64>,

        /// How long a cached tag may still be served while the upstream fails [default: no limit].
        #[arg(long, env = "REGMIRROR_MAX_STALE", value_parser = parse::duration)]
        #[serde(default, deserialize_with = "parse::de::duration")]
        pub max_stale: Option<Duration>,

        /// A separate plain-HTTP listener for /metrics, /healthz and /readyz [default: those are on --listen].
        #[arg(long, env = "REGMIRROR_ADMIN_LISTEN", value_parser = parse::addr)]
        #[serde(default, deserialize_with = "parse::de::addr")]
        pub admin_listen: Option<SocketAddr>,

        /// How long transfers in flight may finish after SIGTERM [default: 30s].
        #[arg(long, env = "REGMIRROR_SHUTDOWN_GRACE", value_parser = parse::duration)]
        #[serde(default, deserialize_with = "parse::de::duration")]
        pub shutdown_grace: Option<Duration>,

        /// Connections open at once; beyond it new ones are closed as accepted [default: 4096].
        #[arg(long, env = "REGMIRROR_MAX_CONNECTIONS")]
        pub max_connections: Option<NonZeroUsize>,

        /// Connections open at once from one IPv4 address or IPv6 /64 [default: 256].
        #[arg(long, env = "REGMIRROR_MAX_CONNECTIONS_PER_ADDRESS")]
        pub max_connections_per_address: Option<NonZeroUsize>,

        /// Time from accept to a connection's first request, TLS handshake included [default: 10s].
        #[arg(long, env = "REGMIRROR_FIRST_REQUEST_TIMEOUT", value_parser = parse::duration)]
        #[serde(default, deserialize_with = "parse::de::duration")]
        pub first_request_timeout: Option<Duration>,

        /// How long a connection with no request in flight stays open [default: 60s].
        #[arg(long, env = "REGMIRROR_IDLE_TIMEOUT", value_parser = parse::duration)]
        #[serde(default, deserialize_with = "parse::de::duration")]
        pub idle_timeout: Option<Duration>,

        /// Time a blob fill may take, plus one second per MiB (an hour at most), before it is
        /// given up [default: 5m].
        #[arg(long, env = "REGMIRROR_FILL_TIMEOUT", value_parser = parse::duration)]
        #[serde(default, deserialize_with = "parse::de::duration")]
        pub fill_timeout: Option<Duration>,

        /// The largest blob taken from the upstream; one announced larger is refused, and a body
        /// of unknown length is cut off past it [default: 16GiB].
        #[arg(long, env = "REGMIRROR_MAX_BLOB_SIZE", value_parser = parse::size)]
        #[serde(default, deserialize_with = "parse::de::size")]
        pub max_blob_size: Option<u64>,

        /// Upstream transfers (new blob fills and pass-throughs) at a time; beyond it a request
        /// waits a little, then gets 503 [default: 64].
        #[arg(long, env = "REGMIRROR_MAX_TRANSFERS", value_parser = parse::count)]
        #[serde(default, deserialize_with = "parse::de::count")]
        pub max_transfers: Option<usize>,

        /// Upstream transfers at a time for one client address (an IPv6 /64); beyond it a
        /// request waits a little, then gets 429 [default: 16].
        #[arg(long, env = "REGMIRROR_MAX_TRANSFERS_PER_ADDRESS", value_parser = parse::count)]
        #[serde(default, deserialize_with = "parse::de::count")]
        pub max_transfers_per_address: Option<usize>,

        /// Host a site's own repositories under this name, which clients push to and pull from
        /// as `<mirror>/<name>/<repo>`; it must read as a host (`site.lan`) and be no mirrored
        /// registry [default: none, pushes refused].
        #[arg(long, env = "REGMIRROR_HOSTED_NAMESPACE", value_parser = parse::namespace)]
        #[serde(default, deserialize_with = "parse::de::namespace")]
        pub hosted_namespace: Option<Registry>,

        /// How long an unfinished push upload is kept after its last write [default: 24h].
        #[arg(long, env = "REGMIRROR_UPLOAD_MAX_AGE", value_parser = parse::duration)]
        #[serde(default, deserialize_with = "parse::de::duration")]
        pub upload_max_age: Option<Duration>,

        /// Every instance sharing this one's work, this one included, as the others reach it
        /// (comma-separated URLs, the same list on each); each blob is then fetched from the
        /// upstream by one of them only [default: none, the instance works alone].
        #[arg(long, env = "REGMIRROR_FLEET", value_parser = parse::upstream, value_delimiter = ',')]
        #[serde(default, deserialize_with = "parse::de::upstreams")]
        pub fleet: Option<Vec<Uri>>,

        /// This instance's own URL in --fleet.
        #[arg(long, env = "REGMIRROR_FLEET_SELF", value_parser = parse::upstream)]
        #[serde(default, deserialize_with = "parse::de::upstream")]
        pub fleet_self: Option<Uri>,

        /// File holding the key every member of --fleet shares (at least 16 characters), which
        /// proves a request comes from a member.
        #[arg(long, env = "REGMIRROR_FLEET_KEY_FILE")]
        pub fleet_key_file: Option<PathBuf>,

        /// PEM CA certificates the members' TLS certificates are checked against [default: the
        /// public web roots].
        #[arg(long, env = "REGMIRROR_FLEET_CA")]
        pub fleet_ca: Option<PathBuf>,

        /// S3 bucket shared as the store, endpoint and bucket name as one URL
        /// (`http://garage.lan:3900/regmirror`); the data directory becomes a read-through tier
        /// in front of it [default: none, the data directory alone].
        #[arg(long, env = "REGMIRROR_BUCKET", value_parser = parse::bucket)]
        #[serde(default, deserialize_with = "parse::de::bucket")]
        pub bucket: Option<url::Url>,

        /// Other endpoints of the --bucket (other nodes of its cluster; comma-separated URLs
        /// without the bucket's name), tried in order when the ones before cannot be reached
        /// [default: none].
        #[arg(long, env = "REGMIRROR_BUCKET_FALLBACK", value_parser = parse::bucket, value_delimiter = ',')]
        #[serde(default, deserialize_with = "parse::de::buckets")]
        pub bucket_fallback: Option<Vec<url::Url>>,

        /// Region the bucket's requests are signed for, with --bucket: us-east-1 unless given
        /// (Garage's is `garage` unless its config says otherwise).
        #[arg(long, env = "REGMIRROR_BUCKET_REGION")]
        pub bucket_region: Option<String>,

        /// Address the bucket as a host name (`name.endpoint`) instead of a path.
        #[arg(long, env = "REGMIRROR_BUCKET_VIRTUAL_HOST", value_parser = BoolishValueParser::new())]
        #[serde(default)]
        pub bucket_virtual_host: bool,

        /// TOML file with the bucket's `access_key_id` and `secret_access_key`; without it,
        /// $CREDENTIALS_DIRECTORY/bucket, else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
        #[arg(long, env = "REGMIRROR_BUCKET_CREDENTIALS")]
        pub bucket_credentials: Option<PathBuf>,

        /// Never contact the upstream: serve only what the cache holds (air-gapped sites).
        #[arg(long, env = "REGMIRROR_OFFLINE", value_parser = BoolishValueParser::new())]
        #[serde(default)]
        pub offline: bool,

        /// Docker Hub's login, from the file's `[upstream_credentials]` (or the environment's
        /// REGMIRROR_UPSTREAM_USERNAME/PASSWORD): never a flag, which any user could read.
        #[arg(skip)]
        pub upstream_credentials: Option<Credentials>,

        /// The file's `[[registries]]`.
        #[arg(skip)]
        pub registries: Option<Vec<FileRegistry>>,

        /// The file's `[access]`.
        #[arg(skip)]
        pub access: Option<AccessConfig>,
    }
}
