//! The in-memory index of what the store holds: content by digest (size, and media type for
//! manifests), the bytes of manifests, and tags by repository. Lookups on the hit path touch
//! no disk.
//!
//! Content entries are weighed by size, so with a cap moka evicts the least valuable content
//! and the eviction listener deletes its file (and drops the manifest's bytes with it).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::store::{Store, TagRecord};
use super::{Limits, Manifest};
use crate::digest::Digest;
use crate::metrics::Metrics;
use crate::reference::{Registry, RepoName, Tag};

/// moka weighs entries in u32; KiB units let one entry be up to 4 TiB.
const WEIGHT_UNIT: u64 = 1024;
/// Tag records kept in memory (about 0.5 KiB each); the others are read from disk when asked for.
const MAX_TAGS: u64 = 20_000;
/// Kept manifest bytes and tag records are dropped this long after they were read, so the
/// files are read again now and then: a manifest's access time stays fresh for `cache prune`,
/// a manifest deleted or quarantined beside the server stops being served, and a tag that
/// `prefetch` or `import` moved beside the server is seen.
const REREAD_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Entry {
    pub size: u64,
    /// Set for content fetched as a manifest: the `Content-Type` it is served with.
    pub media_type: Option<Arc<str>>,
    /// Held by a hosted repository: weighs nothing against the cap and is never evicted.
    /// `Index::insert` sets it from the store's pins.
    pub pinned: bool,
}

impl Entry {
    pub fn new(size: u64, media_type: Option<Arc<str>>) -> Entry {
        Entry {
            size,
            media_type,
            pinned: false,
        }
    }
}

pub struct Index {
    content: Cache<Digest, Entry>,
    /// Bytes of manifests, read only while `content` also holds the digest.
    manifests: Cache<Digest, Bytes>,
    /// Memory for `manifests`, in bytes.
    manifest_memory: u64,
    tags: Cache<(Registry, RepoName, Tag), TagRecord>,
    store: Arc<Store>,
    /// `--max-cache-size 0`: nothing unpinned is kept (a fleet's bucket holds it all).
    keeps_nothing: bool,
    metrics: Arc<Metrics>,
}

impl Index {
    pub fn new(store: Arc<Store>, limits: &Limits, metrics: Arc<Metrics>) -> Self {
        let manifests = Cache::builder()
            .weigher(|_: &Digest, b: &Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
            .max_capacity(limits.manifest_memory)
            .time_to_live(REREAD_AFTER)
            .build();
        let kept = manifests.clone();
        let evicted = store.clone();
        let counted = metrics.clone();
        let mut content = Cache::builder()
            .weigher(|_: &Digest, e: &Entry| match e.pinned {
                true => 0,
                false => u32::try_from(e.size.div_ceil(WEIGHT_UNIT)).unwrap_or(u32::MAX),
            })
            .eviction_listener(move |digest: Arc<Digest>, _, cause| {
                if cause != RemovalCause::Replaced {
                    kept.invalidate(&*digest);
                }
                // A pin made since the entry was weighed (by `gc` or a push) still saves the file.
                if cause == RemovalCause::Size && !evicted.pinned(&digest) {
                    evict(&evicted, &counted, &digest);
                }
            });
        // At a capacity of nothing moka would drop entries without calling the listener,
        // leaving their files behind: a cap of zero is `keeps_nothing` instead.
        if let Some(max) = limits.max_bytes {
            content = content.max_capacity(max.div_ceil(WEIGHT_UNIT).max(1));
        }
        Index {
            content: content.build(),
            manifests,
            manifest_memory: limits.manifest_memory,
            tags: Cache::builder()
                .max_capacity(MAX_TAGS)
                .time_to_live(REREAD_AFTER)
                .build(),
            store,
            keeps_nothing: limits.max_bytes == Some(0),
            metrics,
        }
    }

    pub fn get(&self, digest: &Digest) -> Option<Entry> {
        self.content.get(digest)
    }

    /// Inserts and applies any eviction it causes now, so the disk is within the cap by the
    /// time the inserting fill releases its last chunk (moka would otherwise defer it).
    pub fn insert(&self, digest: Digest, mut entry: Entry) {
        entry.pinned = self.store.pinned(&digest);
        if self.keeps_nothing && !entry.pinned {
            self.manifests.invalidate(&digest);
            evict(&self.store, &self.metrics, &digest);
            return;
        }
        self.content.insert(digest, entry);
        self.content.run_pending_tasks();
    }

    pub fn forget(&self, digest: &Digest) {
        self.content.invalidate(digest);
        self.manifests.invalidate(digest);
    }

    /// A manifest from memory alone, when its bytes are kept.
    pub fn manifest(&self, digest: &Digest) -> Option<Manifest> {
        let media_type = self.content.get(digest)?.media_type?;
        let bytes = self.manifests.get(digest)?;
        Some(Manifest { bytes, media_type })
    }

    /// Indexes a manifest, keeping its bytes in memory unless they would fill it alone.
    pub fn insert_manifest(&self, digest: &Digest, manifest: &Manifest) {
        let entry = Entry::new(manifest.bytes.len() as u64, Some(manifest.media_type.clone()));
        // Bytes first: should the entry be evicted at once, the listener drops them too.
        if (manifest.bytes.len() as u64) < self.manifest_memory {
            self.manifests.insert(digest.clone(), manifest.bytes.clone());
        }
        self.insert(digest.clone(), entry);
    }

    pub fn tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag) -> Option<TagRecord> {
        self.tags.get(&(registry.clone(), repo.clone(), tag.clone()))
    }

    pub fn set_tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag, record: TagRecord) {
        self.tags.insert((registry.clone(), repo.clone(), tag.clone()), record);
    }

    pub fn forget_tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag) {
        self.tags.invalidate(&(registry.clone(), repo.clone(), tag.clone()));
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

/// Deletes content the cap has no room for; readers holding it open read on.
fn evict(store: &Store, metrics: &Metrics, digest: &Digest) {
    metrics.evictions.inc();
    if let Err(e) = store.remove(digest) {
        tracing::warn!(%digest, error = %e, "cannot delete evicted content");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index over `store` with a cap on content and on kept manifest bytes.
    fn index(store: Arc<Store>, max_bytes: Option<u64>, manifest_memory: u64, metrics: Arc<Metrics>) -> Index {
        let limits = Limits {
            max_bytes,
            min_free_disk: 0,
            fill_timeout: Duration::from_secs(5),
            manifest_memory,
            max_blob_size: 1 << 30,
            source_idle: Duration::from_secs(60),
        };
        Index::new(store, &limits, metrics)
    }

    #[tokio::test]
    async fn eviction_deletes_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::init(dir.path()).expect("open"));
        let metrics = Arc::new(Metrics::default());
        let index = index(store.clone(), Some(3 * WEIGHT_UNIT), 1 << 20, metrics.clone());
        let mut digests = Vec::new();
        for i in 0..8u8 {
            let bytes = vec![i; WEIGHT_UNIT as usize];
            let digest = Digest::sha256_of(&bytes);
            store.put(&digest, &bytes).await.expect("put");
            index.insert(digest.clone(), Entry::new(WEIGHT_UNIT, None));
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

    #[tokio::test]
    async fn a_cap_of_nothing_keeps_only_pinned_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::init(dir.path()).expect("open"));
        let metrics = Arc::new(Metrics::default());
        let index = index(store.clone(), Some(0), 1 << 20, metrics.clone());
        let mut digests = Vec::new();
        for size in [1, 300, 5 * WEIGHT_UNIT as usize] {
            let bytes = vec![7; size];
            let digest = Digest::sha256_of(&bytes);
            store.put(&digest, &bytes).await.expect("put");
            digests.push(digest);
        }
        store.pin(&digests[2]).expect("pin");
        for digest in &digests {
            index.insert(digest.clone(), Entry::new(1, None));
        }
        let on_disk: Vec<Digest> = store.scan().expect("scan").into_iter().map(|s| s.digest).collect();
        assert_eq!(on_disk, [digests[2].clone()], "only the pinned file stays");
        assert_eq!(metrics.evictions.get(), 2);
        assert_eq!(index.entry_count(), 1);
    }

    fn manifest(bytes: Vec<u8>) -> (Digest, Manifest) {
        let digest = Digest::sha256_of(&bytes);
        let media_type = Arc::from(crate::manifest::OCI_MANIFEST);
        (
            digest,
            Manifest {
                bytes: Bytes::from(bytes),
                media_type,
            },
        )
    }

    #[tokio::test]
    async fn manifests_are_kept_in_memory_until_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::init(dir.path()).expect("open"));
        let index = index(store, None, 4 * WEIGHT_UNIT, Arc::new(Metrics::default()));
        let (small, small_manifest) = manifest(b"{}".to_vec());
        let (large, large_manifest) = manifest(vec![b' '; 4 * WEIGHT_UNIT as usize]);
        index.insert_manifest(&small, &small_manifest);
        index.insert_manifest(&large, &large_manifest);
        let kept = index.manifest(&small).expect("kept");
        assert_eq!(kept.bytes, small_manifest.bytes);
        assert_eq!(kept.media_type, small_manifest.media_type);
        assert!(
            index.manifest(&large).is_none(),
            "a manifest that would fill the memory alone is read from disk"
        );
        assert_eq!(
            index.get(&large).map(|e| e.size),
            Some(large_manifest.bytes.len() as u64)
        );
        index.forget(&small);
        assert!(index.manifest(&small).is_none());
    }

    #[tokio::test]
    async fn kept_manifest_bytes_stay_within_their_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::init(dir.path()).expect("open"));
        let memory = 4 * WEIGHT_UNIT;
        let index = index(store, None, memory, Arc::new(Metrics::default()));
        let manifests: Vec<_> = (0..32u8).map(|i| manifest(vec![i; 1000])).collect();
        for (digest, manifest) in &manifests {
            index.insert_manifest(digest, manifest);
        }
        index.manifests.run_pending_tasks();
        assert!(
            index.manifests.weighted_size() <= memory,
            "{}",
            index.manifests.weighted_size()
        );
        assert!(index.manifests.entry_count() > 0, "some are kept");
        assert_eq!(index.entry_count(), 32, "all are indexed");
        assert_eq!(index.manifests.policy().time_to_live(), Some(REREAD_AFTER));

        let dir = tempfile::tempdir().expect("tempdir");
        let none = self::index(
            Arc::new(Store::init(dir.path()).expect("open")),
            None,
            0,
            Default::default(),
        );
        none.insert_manifest(&manifests[0].0, &manifests[0].1);
        assert!(none.manifest(&manifests[0].0).is_none(), "no memory, none kept");
    }

    #[test]
    fn tag_records_are_bounded_and_read_again_after_a_while() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::init(dir.path()).expect("open"));
        let index = index(store, None, 0, Arc::new(Metrics::default()));
        assert_eq!(index.tags.policy().max_capacity(), Some(MAX_TAGS));
        assert_eq!(index.tags.policy().time_to_live(), Some(REREAD_AFTER));
    }

    #[tokio::test]
    async fn evicted_manifests_are_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::init(dir.path()).expect("open"));
        let index = index(store, Some(2 * WEIGHT_UNIT), 1 << 20, Arc::new(Metrics::default()));
        let manifests: Vec<_> = (0..8u8).map(|i| manifest(vec![i; WEIGHT_UNIT as usize])).collect();
        for (digest, manifest) in &manifests {
            index.insert_manifest(digest, manifest);
        }
        assert!(index.entry_count() <= 2);
        for (digest, _) in &manifests {
            if index.manifests.contains_key(digest) {
                assert!(index.get(digest).is_some(), "kept bytes outlived their index entry");
            }
        }
    }
}
