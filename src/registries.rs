//! Every registry the gateway mirrors: one `Mirror` per upstream, all over one cache, so a blob
//! that two registries serve is stored once; and the hosted repositories, over the same
//! cache. Tags stay per registry.

use std::io;
use std::sync::Arc;

use crate::cache::Cache;
use crate::config::Config;
use crate::fleet::Fleet;
use crate::hosted::{self, Hosted};
use crate::metrics::{Metrics, Origin, Snapshot, TaggedImage};
use crate::mirror::{self, Mirror, Transfers};
use crate::reference::{Registry, RepoName};
use crate::upstream::Health;

/// One upstream on the status page.
pub struct UpstreamOverview {
    pub registry: Registry,
    pub url: String,
    pub health: Health,
    pub rate_limit_remaining: Option<u64>,
}

/// The mirrors at a glance.
pub struct Overview {
    pub upstreams: Vec<UpstreamOverview>,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub bytes_from_cache: u64,
    pub bytes_from_upstream: u64,
    pub cache_bytes: u64,
    pub cache_entries: u64,
    pub cache_cap: Option<u64>,
    pub top_images: Vec<(TaggedImage, u64)>,
}

/// The hosted repositories on the status page, each with its tags (sorted).
pub struct HostedOverview {
    pub namespace: Registry,
    pub repositories: Vec<(RepoName, Vec<String>)>,
}

pub struct Registries {
    mirrors: Vec<Mirror>,
    hosted: Option<Hosted>,
    /// Kept for as long as the gateway serves: the members' probes stop once it is dropped.
    fleet: Option<Arc<Fleet>>,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
}

impl Registries {
    pub fn new(config: &Config) -> io::Result<Registries> {
        let metrics = Arc::new(Metrics::default());
        let cache = Arc::new(Cache::load(&config.data_dir, mirror::limits(config), metrics.clone())?);
        let transfers = Transfers::new(mirror::transfer_limits(config), metrics.clone());
        let fleet = config.fleet.as_ref().map(Fleet::new);
        let bucket = mirror::bucket(config)?;
        let mirrors = (config.all_registries().iter())
            .map(|registry| {
                Mirror::on(
                    registry,
                    config,
                    cache.clone(),
                    metrics.clone(),
                    transfers.clone(),
                    fleet.as_ref(),
                    bucket.clone(),
                )
            })
            .collect::<io::Result<Vec<_>>>()?;
        if let Some(fleet) = &fleet {
            fleet.watch(config.dns.clone()).map_err(io::Error::other)?;
            tracing::info!(members = fleet.config().members.len(), me = %fleet.url(fleet.me()), "in a fleet");
        }
        if let (Some(bucket), Some(shared)) = (&config.bucket, &bucket) {
            tracing::info!(endpoint = %bucket.endpoint, bucket = %bucket.name, "sharing a bucket as the store");
            crate::bucket::sweep(shared);
        }
        for mirror in &mirrors {
            tracing::info!(registry = %mirror.registry(), upstream = %mirror.upstream().base(), "mirroring");
        }
        let hosted = (config.hosted.clone()).map(|namespace| {
            let limits = hosted::Limits {
                upload_max_age: config.upload_max_age,
                max_size: config.max_blob_size,
            };
            Hosted::new(namespace, cache.clone(), bucket.clone(), limits)
        });
        if let Some(hosted) = &hosted {
            tracing::info!(namespace = %hosted.namespace(), "hosting the site's own repositories");
        }
        if config.offline {
            tracing::info!("offline: no upstream is contacted; what the cache lacks answers 404");
        }
        Ok(Registries {
            mirrors,
            hosted,
            fleet,
            cache,
            metrics,
        })
    }

    /// Every registry mirrored.
    pub fn names(&self) -> impl Iterator<Item = &Registry> {
        self.mirrors.iter().map(Mirror::registry)
    }

    /// The mirror for `registry`; `None` when the gateway does not mirror it, which must never
    /// fall back to Docker Hub.
    pub fn get(&self, registry: &Registry) -> Option<&Mirror> {
        self.mirrors.iter().find(|m| m.registry() == registry)
    }

    /// The hosted repositories, when `registry` is their namespace.
    pub fn hosted(&self, registry: &Registry) -> Option<&Hosted> {
        self.hosted.as_ref().filter(|h| h.namespace() == registry)
    }

    /// The hosted repositories, if the gateway hosts any.
    pub fn any_hosted(&self) -> Option<&Hosted> {
        self.hosted.as_ref()
    }

    /// The fleet this instance is a member of, if any.
    pub fn fleet(&self) -> Option<&Fleet> {
        self.fleet.as_deref()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The Prometheus text, with the gauges that mirror cache and upstream state brought up to date.
    pub fn encode_metrics(&self) -> String {
        let hub = self.get(&Registry::docker_hub());
        self.metrics.encode(&Snapshot {
            cache_bytes: self.cache.bytes(),
            cache_entries: self.cache.entry_count(),
            ratelimit_remaining: hub.and_then(|m| m.upstream().rate_limit_remaining()),
        })
    }

    /// What the status page shows.
    pub fn overview(&self) -> Overview {
        let m = &self.metrics;
        let upstreams = self.mirrors.iter().map(|mirror| UpstreamOverview {
            registry: mirror.registry().clone(),
            url: mirror.upstream().base().to_string(),
            health: mirror.upstream().health(),
            rate_limit_remaining: mirror.upstream().rate_limit_remaining(),
        });
        Overview {
            upstreams: upstreams.collect(),
            hits: m.cache_hits.get(),
            misses: m.cache_misses.get(),
            stale: m.stale_serves.get(),
            bytes_from_cache: m.bytes_served_from(Origin::Cache),
            bytes_from_upstream: m.bytes_served_from(Origin::Upstream),
            cache_bytes: self.cache.bytes(),
            cache_entries: self.cache.entry_count(),
            cache_cap: self.cache.limits().max_bytes,
            top_images: m.top_pulls(10),
        }
    }

    /// What the status page shows of the hosted repositories; `None` when nothing is hosted.
    /// A repository that cannot be read is listed without tags: the page is not where a disk
    /// error should surface, the log is.
    pub async fn hosted_overview(&self) -> Option<HostedOverview> {
        let hosted = self.hosted.as_ref()?;
        let names = hosted.repositories().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list the hosted repositories");
            Vec::new()
        });
        let mut repositories = Vec::with_capacity(names.len());
        for repo in names {
            let tags = hosted.tags(&repo).await.unwrap_or_default();
            repositories.push((repo, tags));
        }
        Some(HostedOverview {
            namespace: hosted.namespace().clone(),
            repositories,
        })
    }

    /// Waits for blob commits under way (their clients already have the bytes, so an exit
    /// now would silently drop blobs from the cache), then for uploads to the bucket.
    pub async fn settle(&self) {
        self.cache.settle_all().await;
        for mirror in &self.mirrors {
            mirror.settle().await;
        }
    }

    pub fn cache_writable(&self) -> bool {
        self.cache.writable()
    }

    pub fn cached_entries(&self) -> u64 {
        self.cache.entry_count()
    }
}
