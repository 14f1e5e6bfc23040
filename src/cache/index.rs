//! The in-memory index of what the store holds: content by digest (size, and media type for
//! manifests) and tags by repository. Lookups on the hit path touch no disk.
//!
//! Content entries are weighed by size, so with a cap moka evicts the least valuable content
//! and the eviction listener deletes its file.

use std::sync::Arc;

use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::store::{Store, TagRecord};
use crate::digest::Digest;
use crate::metrics::Metrics;
use crate::reference::{Registry, RepoName, Tag};

/// moka weighs entries in u32; KiB units let one entry be up to 4 TiB.
const WEIGHT_UNIT: u64 = 1024;
const MAX_TAGS: u64 = 100_000;

#[derive(Debug, Clone)]
pub struct Entry {
    pub size: u64,
    /// Set for content fetched as a manifest: the `Content-Type` it is served with.
    pub media_type: Option<Arc<str>>,
}

pub struct Index {
    content: Cache<Digest, Entry>,
    tags: Cache<(Registry, RepoName, Tag), TagRecord>,
}

impl Index {
    pub fn new(store: Arc<Store>, max_bytes: Option<u64>, metrics: Arc<Metrics>) -> Self {
        let mut content = Cache::builder()
            .weigher(|_: &Digest, e: &Entry| u32::try_from(e.size.div_ceil(WEIGHT_UNIT)).unwrap_or(u32::MAX))
            .eviction_listener(move |digest: Arc<Digest>, _, cause| {
                if cause == RemovalCause::Size {
                    metrics.evictions.inc();
                    if let Err(e) = store.remove(&digest) {
                        tracing::warn!(%digest, error = %e, "cannot delete evicted content");
                    }
                }
            });
        if let Some(max) = max_bytes {
            content = content.max_capacity(max.div_ceil(WEIGHT_UNIT));
        }
        Index {
            content: content.build(),
            tags: Cache::new(MAX_TAGS),
        }
    }

    pub fn get(&self, digest: &Digest) -> Option<Entry> {
        self.content.get(digest)
    }

    /// Inserts and applies any eviction it causes now, so the disk is within the cap by the
    /// time the inserting fill releases its last chunk (moka would otherwise defer it).
    pub fn insert(&self, digest: Digest, entry: Entry) {
        self.content.insert(digest, entry);
        self.content.run_pending_tasks();
    }

    pub fn forget(&self, digest: &Digest) {
        self.content.invalidate(digest);
    }

    pub fn tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag) -> Option<TagRecord> {
        self.tags.get(&(registry.clone(), repo.clone(), tag.clone()))
    }

    pub fn set_tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag, record: TagRecord) {
        self.tags.insert((registry.clone(), repo.clone(), tag.clone()), record);
    }

    pub fn bytes(&self) -> u64 {
        self.content.run_pending_tasks();
        self.content.weighted_size() * WEIGHT_UNIT
    }

    pub fn entry_count(&self) -> u64 {
        self.content.run_pending_tasks();
        self.content.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eviction_deletes_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::init(dir.path()).expect("open"));
        let metrics = Arc::new(Metrics::default());
        let index = Index::new(store.clone(), Some(3 * WEIGHT_UNIT), metrics.clone());
        let mut digests = Vec::new();
        for i in 0..8u8 {
            let bytes = vec![i; WEIGHT_UNIT as usize];
            let digest = Digest::sha256_of(&bytes);
            store.put(&digest, &bytes).await.expect("put");
            index.insert(
                digest.clone(),
                Entry {
                    size: WEIGHT_UNIT,
                    media_type: None,
                },
            );
            digests.push(digest);
        }
        assert!(index.entry_count() <= 3);
        assert_eq!(metrics.evictions.get() + index.entry_count(), 8);
        let on_disk = store.scan().expect("scan").len();
        assert_eq!(
            on_disk as u64,
            index.entry_count(),
            "every evicted entry's file is gone"
        );
    }
}
