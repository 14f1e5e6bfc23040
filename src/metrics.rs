//! Prometheus metrics, all named `regmirror_…`, and the numbers the status page shows.
//!
//! One `Metrics` per server instance (not a global), so servers started side by side in tests
//! count separately. Gauges that mirror other state (cache size, rate limit) are set when
//! scraped.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Metric;

use crate::reference::{Registry, RepoName, Tag};
use crate::sync::LockExt;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapLabels {
    pub cap: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadlineLabels {
    pub deadline: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cache,
    Upstream,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Origin::Cache => "cache",
            Origin::Upstream => "upstream",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabels {
    pub source: &'static str,
}

/// An image as its tag was pulled: the key of the status page's top list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaggedImage {
    pub registry: Registry,
    pub repo: RepoName,
    pub tag: Tag,
}

impl fmt::Display for TaggedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repo, self.tag)
    }
}

pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub bytes_served: Family<OriginLabels, Counter>,
    pub upstream_latency: Histogram,
    pub fills_in_flight: Gauge,
    pub coalesced_waiters: Counter,
    pub evictions: Counter,
    pub digest_mismatches: Counter,
    pub stale_serves: Counter,
    pub connections_open: Gauge,
    connections_refused: Family<CapLabels, Counter>,
    connections_timed_out: Family<DeadlineLabels, Counter>,
    pub transfer_waits: Counter,
    transfer_refusals: Family<CapLabels, Counter>,
    cache_bytes: Gauge,
    cache_entries: Gauge,
    ratelimit_remaining: Gauge,
    /// Tag pulls by image, for the status page's top list; too many labels for Prometheus.
    pulls: Mutex<HashMap<TaggedImage, u64>>,
}

/// Images tracked for the top list (a few hundred bytes each); beyond this, new names are
/// not counted. No time to live: the counts are totals since the start.
const MAX_TRACKED_IMAGES: usize = 10_000;

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registrar::default();
        // Fields are initialised, and so registered, in the order written; the registry last.
        let metrics = Metrics {
            requests: r.add("regmirror_requests", "Requests answered, by route and status"),
            cache_hits: r.add("regmirror_cache_hits", "Content requests answered from the cache"),
            cache_misses: r.add("regmirror_cache_misses", "Content requests that needed the upstream"),
            bytes_served: r.add(
                "regmirror_served_bytes",
                "Body bytes sent to clients, by where they came from",
            ),
            upstream_latency: r.with(
                "regmirror_upstream_request_seconds",
                "Upstream response time to headers",
                // 1 ms to ~16 s.
                Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            ),
            fills_in_flight: r.add("regmirror_fills_in_flight", "Blob fills from the upstream under way"),
            coalesced_waiters: r.add(
                "regmirror_coalesced_waiters",
                "Requests that joined a fill already under way",
            ),
            evictions: r.add("regmirror_cache_evictions", "Content evicted to stay under the cap"),
            digest_mismatches: r.add(
                "regmirror_digest_mismatches",
                "Upstream content refused for not matching its digest",
            ),
            stale_serves: r.add(
                "regmirror_stale_serves",
                "Tags served from the cache because the upstream failed",
            ),
            connections_open: r.add("regmirror_connections_open", "Client connections open"),
            connections_refused: r.add(
                "regmirror_connections_refused",
                "Connections closed as accepted, by the cap they would have passed (address, overall)",
            ),
            connections_timed_out: r.add(
                "regmirror_connections_timed_out",
                "Connections closed for missing a deadline (first_request, idle)",
            ),
            transfer_waits: r.add(
                "regmirror_transfer_waits",
                "Requests that waited for an upstream transfer to end, the transfers being at their cap",
            ),
            transfer_refusals: r.add(
                "regmirror_transfer_refusals",
                "Requests refused after that wait, by the cap that stopped them (address or overall)",
            ),
            cache_bytes: r.add("regmirror_cache_bytes", "Bytes of cached content"),
            cache_entries: r.add("regmirror_cache_entries", "Pieces of cached content"),
            ratelimit_remaining: r.add(
                "regmirror_upstream_ratelimit_remaining",
                "Docker Hub pulls left in the current window (-1: not limited or not yet seen)",
            ),
            pulls: Mutex::default(),
            registry: r.0,
        };
        metrics.write_every_label();
        metrics
    }
}

impl Metrics {
    /// Every label of the labelled counters is written from the start, so a rate over any of
    /// them sees its first increase and a dashboard's ratio of two has both sides.
    fn write_every_label(&self) {
        let metrics = self;
        for origin in [Origin::Cache, Origin::Upstream] {
            metrics.served(origin, 0);
        }
        for cap in ["address", "overall"] {
            metrics.transfer_refusals.get_or_create(&CapLabels { cap }).inc_by(0);
            metrics.connections_refused.get_or_create(&CapLabels { cap }).inc_by(0);
        }
        for deadline in ["first_request", "idle"] {
            (metrics.connections_timed_out)
                .get_or_create(&DeadlineLabels { deadline })
                .inc_by(0);
        }
    }
}

/// Registers each metric as it is made, so its field, name and help text stay together.
#[derive(Default)]
struct Registrar(prometheus_client::registry::Registry);

impl Registrar {
    fn add<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M {
        self.with(name, help, M::default())
    }

    fn with<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }
}

/// State owned elsewhere that the scrape reports.
pub struct Snapshot {
    pub cache_bytes: u64,
    pub cache_entries: u64,
    pub ratelimit_remaining: Option<u64>,
}

impl Metrics {
    pub fn count_pull(&self, registry: &Registry, repo: &RepoName, tag: &Tag) {
        let image = TaggedImage {
            registry: registry.clone(),
            repo: repo.clone(),
            tag: tag.clone(),
        };
        let mut pulls = self.pulls.locked();
        if let Some(n) = pulls.get_mut(&image) {
            *n += 1;
        } else if pulls.len() < MAX_TRACKED_IMAGES {
            pulls.insert(image, 1);
        }
    }

    /// The `n` most pulled images, most first.
    pub fn top_pulls(&self, n: usize) -> Vec<(TaggedImage, u64)> {
        let pulls = self.pulls.locked();
        let mut top: Vec<_> = pulls.iter().map(|(k, v)| (k.clone(), *v)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }

    pub fn connection_refused(&self, cap: &'static str) {
        self.connections_refused.get_or_create(&CapLabels { cap }).inc();
    }

    pub fn connection_timed_out(&self, deadline: &'static str) {
        self.connections_timed_out
            .get_or_create(&DeadlineLabels { deadline })
            .inc();
    }

    pub fn observe_upstream(&self, elapsed: Duration) {
        self.upstream_latency.observe(elapsed.as_secs_f64());
    }

    pub fn served(&self, origin: Origin, bytes: u64) {
        self.bytes_served
            .get_or_create(&OriginLabels { source: origin.label() })
            .inc_by(bytes);
    }

    /// Counts a transfer refused at `cap` (`address` or `overall`).
    pub fn refused_transfer(&self, cap: &'static str) {
        self.transfer_refusals.get_or_create(&CapLabels { cap }).inc();
    }

    pub fn bytes_served_from(&self, origin: Origin) -> u64 {
        self.bytes_served
            .get_or_create(&OriginLabels { source: origin.label() })
            .get()
    }

    /// The Prometheus text format.
    pub fn encode(&self, snapshot: &Snapshot) -> String {
        self.cache_bytes
            .set(i64::try_from(snapshot.cache_bytes).unwrap_or(i64::MAX));
        self.cache_entries
            .set(i64::try_from(snapshot.cache_entries).unwrap_or(i64::MAX));
        self.ratelimit_remaining.set(
            snapshot
                .ratelimit_remaining
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_pulls() {
        let m = Metrics::default();
        let hub = Registry::docker_hub();
        let tag: Tag = "1".parse().expect("tag");
        for name in ["a", "b", "b", "c", "c", "c"] {
            m.count_pull(&hub, &name.parse().expect("name"), &tag);
        }
        let top: Vec<_> = m.top_pulls(2).into_iter().map(|(i, n)| (i.to_string(), n)).collect();
        assert_eq!(
            top,
            vec![
                ("docker.io/library/c:1".to_owned(), 3),
                ("docker.io/library/b:1".to_owned(), 2)
            ]
        );
    }

    #[test]
    fn pulls_are_counted_for_a_bounded_number_of_images() {
        let m = Metrics::default();
        let hub = Registry::docker_hub();
        let tag: Tag = "1".parse().expect("tag");
        let repo = |n: usize| -> RepoName { format!("r{n}").parse().expect("name") };
        for n in 0..=MAX_TRACKED_IMAGES {
            m.count_pull(&hub, &repo(n), &tag);
        }
        assert_eq!(m.pulls.locked().len(), MAX_TRACKED_IMAGES);
        m.count_pull(&hub, &repo(0), &tag);
        let top = m.top_pulls(1);
        assert_eq!(top[0].0.repo, repo(0));
        assert_eq!(top[0].1, 2, "an image counted already still counts");
    }

    #[test]
    fn names_and_values() {
        let m = Metrics::default();
        m.cache_hits.inc();
        m.served(Origin::Upstream, 42);
        m.requests
            .get_or_create(&RequestLabels {
                route: "blob",
                status: 200,
            })
            .inc();
        let text = m.encode(&Snapshot {
            cache_bytes: 7,
            cache_entries: 1,
            ratelimit_remaining: Some(76),
        });
        for line in [
            "regmirror_cache_hits_total 1",
            "regmirror_served_bytes_total{source=\"upstream\"} 42",
            "regmirror_served_bytes_total{source=\"cache\"} 0",
            "regmirror_requests_total{route=\"blob\",status=\"200\"} 1",
            "regmirror_cache_bytes 7",
            "regmirror_upstream_ratelimit_remaining 76",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        for name in text
            .lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(|l| l.split(' ').nth(2).unwrap_or(""))
        {
            assert!(name.starts_with("regmirror_"), "{name}");
        }
    }
}
