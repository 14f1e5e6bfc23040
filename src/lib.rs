//! regmirror: a pull-through caching mirror for container registries.
//!
//! Reading order:
//! - `cli` and `config`: flags, environment and config file, validated once into `Config`;
//! - `server`: the accept loop (TLS via `tls` and `certs`, or plain HTTP), the request log,
//!   `metrics`, systemd `notify`;
//! - `access`: who may pull what;
//! - `api`: the registry pull API — `Route` parsing, one handler, the error mapping;
//! - `registries` and `mirror`: one pull-through mirror per upstream registry over one cache;
//! - `cache`: verified content on disk with a moka index, and the single-flight fills;
//! - `upstream`: the HTTP client towards the upstream registry: token auth, manifests, and
//!   blob bytes (opened, resumed, or passed through);
//! - `airgap`: prefetch, export and import of bundles for sites without internet;
//! - `reference`, `digest`, `manifest`, `image`: the protocol's vocabulary as validated types,
//!   and what manifests say about other content;
//! - `client_config`, `tag_page`: client setup text; offline tag-list pages;
//! - `body`: the response body type; `sync`: locking that outlives a panic; `log_sink`: where
//!   log lines go;
//! - `fuzzing` (`api::fuzzing`): the fuzz targets' way in to parsers the library keeps private.

pub mod access;
pub mod airgap;
pub mod api;
pub mod body;
pub mod bucket;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod client_config;
pub mod config;
pub mod digest;
pub mod fleet;
// The fuzz targets in fuzz/ are a crate of their own, and must reach parsers that are not the
// library's API; hidden, so no one takes them for it. It sits in `api`, the top layer, because
// it reaches into every layer below.
#[doc(hidden)]
pub use api::fuzzing;
pub mod hosted;
pub mod image;
pub mod log_sink;
pub mod manifest;
pub mod metrics;
pub mod mirror;
pub mod notify;
pub mod reference;
pub mod registries;
pub mod server;
pub mod sync;
pub mod tag_page;
pub mod tls;
pub mod upstream;

pub use config::{Config, Credentials, Tls};
