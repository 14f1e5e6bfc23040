//! The pull-through logic: answer from the cache when it can, ask the upstream when it must,
//! and only ever cache bytes that match their digest.
//!
//! Digests are immutable and served from the cache forever. Tags are mutable: a tag's digest
//! is trusted for `tag_ttl`, then revalidated with an upstream HEAD (free on Docker Hub), and
//! when the upstream is down a known tag is served stale rather than not at all (`resolve`).
//! Tag lists live in `tags`; what keeps a private registry's content to its own repositories
//! in `isolation`; the fleet's other members in `members`, the shared bucket in `shared`.

mod blob;
mod error;
mod isolation;
mod members;
mod resolve;
mod shared;
mod tags;
mod transfers;

pub use blob::BlobAnswer;
pub use error::Error;
use isolation::Kind;
pub use shared::{manifest_in, BucketBlob};
pub use tags::TagList;
pub use transfers::{Busy, Cap, Requester, TransferLimits, Transfers};

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::bucket::Bucket;
use crate::cache::store::TagRecord;
use crate::cache::{Cache, Limits, Manifest};
use crate::config::{Config, RegistryConfig};
use crate::digest::{Algorithm, Digest};
use crate::fleet::Fleet;
use crate::manifest;
use crate::metrics::Metrics;
use crate::reference::{Reference, Registry, RepoName};
use crate::upstream::Upstream;

/// The pull-through mirror of one registry. Several share one cache (see `registries`).
pub struct Mirror {
    registry: Registry,
    upstream: Arc<Upstream>,
    metrics: Arc<Metrics>,
    cache: Arc<Cache>,
    /// Shared by every registry's mirror: the caps are the gateway's.
    transfers: Arc<Transfers>,
    tag_ttl: Duration,
    /// Never ask the upstream (`--offline`): what the cache lacks is unknown.
    offline: bool,
    max_stale: Option<Duration>,
    tag_lists: moka::sync::Cache<(RepoName, Option<String>), TagList>,
    /// The other members of the fleet, when this instance is in one.
    members: Option<Arc<members::Members>>,
    /// The bucket the fleet shares as its store, when there is one.
    bucket: Option<Arc<Bucket>>,
    uploads: shared::Uploads,
}

/// Where an answer came from, for the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Upstream,
    /// From the cache because the upstream failed.
    Stale,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Cache => "hit",
            Source::Upstream => "miss",
            Source::Stale => "stale",
        }
    }
}

pub struct ManifestAnswer {
    pub digest: Digest,
    pub media_type: Arc<str>,
    pub size: u64,
    /// `None` for a HEAD answered from upstream headers alone.
    pub bytes: Option<Bytes>,
    pub source: Source,
}

/// What a request wants of the content: its bytes, or only what a HEAD answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Body,
    Size,
}

/// What a tag resolved to, and what the upstream's HEAD said of it if one was made.
struct Resolved {
    digest: Digest,
    head: Option<(Arc<str>, u64)>,
    source: Source,
}

impl Mirror {
    /// Docker Hub's mirror over a cache of its own: for one-registry commands like `prefetch`,
    /// whose transfers their own job bound caps.
    pub fn new(config: &Config) -> io::Result<Mirror> {
        let metrics = Arc::new(Metrics::default());
        let cache = Arc::new(Cache::load(&config.data_dir, limits(config), metrics.clone())?);
        let transfers = Transfers::new(TransferLimits::unbounded(), metrics.clone());
        let bucket = bucket(config)?;
        Mirror::on(&config.docker_hub(), config, cache, metrics, transfers, None, bucket)
    }

    /// The mirror of one registry over a shared cache and shared caps on upstream transfers.
    pub fn on(
        registry: &RegistryConfig,
        config: &Config,
        cache: Arc<Cache>,
        metrics: Arc<Metrics>,
        transfers: Arc<Transfers>,
        fleet: Option<&Arc<Fleet>>,
        bucket: Option<Arc<Bucket>>,
    ) -> io::Result<Mirror> {
        let failed = |e: crate::upstream::Error| io::Error::other(format!("registry {}: {e}", registry.registry));
        let members =
            fleet.map(|fleet| members::Members::new(fleet, &registry.registry, config, &metrics).map(Arc::new));
        let upstream = Upstream::new(
            registry.url.clone(),
            registry.credentials.clone(),
            registry.ca.as_deref(),
            &registry.realm_hosts,
            config.dns.clone(),
            metrics.clone(),
        )
        .map_err(failed)?;
        Ok(Mirror {
            registry: registry.registry.clone(),
            upstream: Arc::new(upstream),
            metrics,
            cache,
            transfers,
            tag_ttl: registry.tag_ttl.unwrap_or(config.tag_ttl),
            offline: config.offline,
            max_stale: config.max_stale,
            tag_lists: tags::tag_list_cache(config.max_stale),
            members: members.transpose().map_err(failed)?,
            bucket,
            uploads: shared::Uploads::default(),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Waits for what is being put in the bucket.
    pub async fn settle(&self) {
        self.uploads.settle().await;
    }

    pub async fn manifest(&self, repo: &RepoName, reference: &Reference, want: Want) -> Result<ManifestAnswer, Error> {
        let resolved = match reference {
            Reference::Digest(digest) => Resolved {
                digest: digest.clone(),
                head: None,
                source: Source::Cache,
            },
            Reference::Tag(tag) => {
                let resolved = self.resolve(repo, tag).await?;
                self.metrics.count_pull(&self.registry, repo, tag);
                resolved
            }
        };
        let cached = match self.cache.manifest(&resolved.digest).await? {
            Some(cached) => Some(cached),
            None => self.manifest_in_bucket(&resolved.digest).await?,
        };
        if let Some(cached) = cached {
            if matches!(reference, Reference::Digest(_)) {
                self.confirm(repo, &resolved.digest, Kind::Manifest).await?;
            }
            self.link_manifest(repo, &resolved.digest, &cached).await?;
            let source = if resolved.source == Source::Stale {
                Source::Stale
            } else {
                Source::Cache
            };
            return Ok(answer(resolved.digest, cached, source));
        }
        if let (Want::Size, Some((media_type, size))) = (want, resolved.head) {
            self.link(repo, &resolved.digest, None).await?;
            return Ok(ManifestAnswer {
                digest: resolved.digest,
                media_type,
                size,
                bytes: None,
                source: Source::Upstream,
            });
        }
        let reference = Reference::Digest(resolved.digest);
        let (digest, fetched) = self.fetch_manifest(repo, &reference).await?;
        self.link_manifest(repo, &digest, &fetched).await?;
        Ok(answer(digest, fetched, Source::Upstream))
    }

    /// Fails with `miss` when the mirror is offline, before anything would reach the upstream.
    fn online(&self, miss: Error) -> Result<(), Error> {
        if self.offline {
            Err(miss)
        } else {
            Ok(())
        }
    }

    /// GETs a manifest, checks its bytes against the digest asked for (or, by tag, the one the
    /// upstream states) and stores it.
    async fn fetch_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<(Digest, Manifest), Error> {
        self.online(Error::OfflineManifest)?;
        let from_member = match &self.members {
            Some(members) => members.manifest(repo, reference).await,
            None => None,
        };
        let from_upstream = from_member.is_none();
        let fetched = match from_member {
            Some(answer) => answer,
            None => self.upstream.get_manifest(repo, reference).await,
        };
        let fetched = fetched.map_err(|e| Error::from_upstream(e, Error::ManifestUnknown))?;
        let media_type = fetched.head.media_type.ok_or_else(|| bad("no Content-Type"))?;
        if manifest::is_schema1(&media_type) {
            return Err(bad("schema1 manifests cannot be verified and are not served"));
        }
        if !manifest::is_manifest(&media_type) {
            return Err(bad(&format!(
                "the upstream sent Content-Type {media_type}, which is no manifest type"
            )));
        }
        let expected = match reference {
            Reference::Digest(digest) => Some(digest.clone()),
            Reference::Tag(_) => fetched.head.digest,
        };
        let algorithm = expected.as_ref().map_or(Algorithm::Sha256, Digest::algorithm);
        let actual = Digest::of(algorithm, &fetched.bytes);
        if expected.as_ref().is_some_and(|e| *e != actual) {
            self.metrics.digest_mismatches.inc();
            return Err(bad(&format!(
                "manifest bytes hash to {actual}, not the expected digest"
            )));
        }
        let manifest = Manifest {
            bytes: fetched.bytes,
            media_type,
        };
        self.cache.put_manifest(&actual, &manifest).await?;
        if from_upstream {
            self.publish_manifest(&actual, &manifest);
        }
        Ok((actual, manifest))
    }
}

fn answer(digest: Digest, manifest: Manifest, source: Source) -> ManifestAnswer {
    ManifestAnswer {
        digest,
        size: manifest.bytes.len() as u64,
        media_type: manifest.media_type,
        bytes: Some(manifest.bytes),
        source,
    }
}

/// The cache's bounds as the configuration sets them.
pub fn limits(config: &Config) -> Limits {
    Limits {
        max_bytes: config.max_cache_size,
        min_free_disk: config.min_free_disk,
        fill_timeout: config.fill_timeout,
        manifest_memory: config.manifest_cache_size,
        max_blob_size: config.max_blob_size,
        source_idle: config.source_idle,
    }
}

/// The bucket the configuration names, if any.
pub fn bucket(config: &Config) -> io::Result<Option<Arc<Bucket>>> {
    let bucket = config.bucket.as_ref().map(Bucket::new).transpose();
    Ok(bucket.map_err(io::Error::other)?.map(Arc::new))
}

/// The caps on upstream transfers as the configuration sets them.
pub fn transfer_limits(config: &Config) -> TransferLimits {
    TransferLimits {
        overall: config.max_transfers,
        per_address: config.max_transfers_per_address,
        wait: config.transfer_wait,
    }
}

fn bad(message: &str) -> Error {
    Error::BadManifest(message.to_owned())
}
