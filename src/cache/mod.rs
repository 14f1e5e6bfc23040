//! The cache: verified content on disk (`store`), an in-memory index of it (`index`), and the
//! single-flight fills that turn one transfer from a `Source` into bodies for every waiting
//! client and a cache entry (`fill`, registered in `fills`). It knows nothing of where the
//! bytes come from: the mirror hands a claimed fill its source.

mod fill;
mod fills;
mod hosted;
mod index;
mod links;
pub mod maintenance;
pub mod store;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::digest::Digest;
use crate::metrics::Metrics;
use crate::reference::{Registry, RepoName, Tag};
pub use fill::{Claim, Failure, Fill, Opened, Source, SourceError};
use fills::{Fills, OnAbsent, State};
pub use index::Entry;
use index::Index;
pub use links::vouched;
use links::Links;
use store::{ReadError, Store, TagRecord};
pub use store::{Referrer, UploadId};

pub struct Cache {
    store: Arc<Store>,
    index: Index,
    fills: Fills,
    limits: Limits,
    metrics: Arc<Metrics>,
    links: Links,
}

/// Bounds on what the cache takes in.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Byte cap on cached content; moka evicts beyond it.
    pub max_bytes: Option<u64>,
    /// Free space a fill must leave on the file system.
    pub min_free_disk: u64,
    /// A fill's time limit is this plus one second per MiB of blob (an hour at most).
    pub fill_timeout: Duration,
    /// Memory for the bytes of manifests served without reading their files.
    pub manifest_memory: u64,
    /// The largest blob a fill takes, whatever the source announces.
    pub max_blob_size: u64,
    /// How long a source may be silent before it is given up on (and resumed).
    pub source_idle: Duration,
}

impl Limits {
    /// The size to take a blob at, from what its source `announced` and what the manifest
    /// descriptor that led to it `described`: refused, before any disk space is claimed, when
    /// the two differ or the size is over `max_blob_size`.
    pub fn admit_size(&self, announced: Option<u64>, described: Option<u64>) -> Result<Option<u64>, String> {
        if let (Some(announced), Some(described)) = (announced, described) {
            if announced != described {
                return Err(format!(
                    "the upstream announced {announced} bytes for a blob its manifest says has {described}"
                ));
            }
        }
        match announced.or(described) {
            Some(size) if size > self.max_blob_size => Err(format!(
                "a blob of {size} bytes is more than the {} this mirror takes",
                self.max_blob_size
            )),
            size => Ok(size),
        }
    }
}

/// Where a blob stands.
pub enum Lookup {
    Cached {
        file: std::fs::File,
        size: u64,
    },
    Filling(Arc<Fill>),
    /// Neither cached nor being filled (from `find`).
    Absent,
    /// Neither, and now claimed by the caller, who starts the fill (from `find_or_claim`).
    Claimed(Claim),
}

/// How often a lookup goes round again: after waiting out a commit, or after finding that an
/// indexed file vanished.
const LOOKUP_ROUNDS: usize = 3;

/// A manifest as served: exact bytes and the media type the upstream gave it.
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: Arc<str>,
}

impl Cache {
    /// Opens the store and rebuilds the index from what is on disk.
    pub fn load(dir: &Path, limits: Limits, metrics: Arc<Metrics>) -> io::Result<Cache> {
        let store = Arc::new(Store::init(dir)?);
        let index = Index::new(store.clone(), &limits, metrics.clone());
        let content = store.scan()?;
        if !store.links_built() {
            links::build_from_tags(&store, &content)?;
        }
        for found in content {
            let entry = Entry::new(found.size, found.media_type.map(Arc::from));
            index.insert(found.digest, entry);
        }
        Ok(Cache {
            store,
            index,
            fills: Fills::default(),
            limits,
            metrics,
            links: Links::default(),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn writable(&self) -> bool {
        self.store.writable()
    }

    /// Bytes of cached content (to the KiB: the index weighs entries in KiB).
    pub fn bytes(&self) -> u64 {
        self.index.bytes()
    }

    pub fn entry_count(&self) -> u64 {
        self.index.entry_count()
    }

    /// Where a blob stands, without claiming it (a HEAD, or an offline mirror).
    pub async fn find(self: &Arc<Self>, digest: &Digest) -> io::Result<Lookup> {
        self.locate(digest, OnAbsent::Report).await
    }

    /// Where a blob stands; when absent, the caller is given the claim to fill it, so any
    /// request after this one joins that fill.
    pub async fn find_or_claim(self: &Arc<Self>, digest: &Digest) -> io::Result<Lookup> {
        self.locate(digest, OnAbsent::Claim).await
    }

    async fn locate(self: &Arc<Self>, digest: &Digest, absent: OnAbsent) -> io::Result<Lookup> {
        for _ in 0..LOOKUP_ROUNDS {
            // A hit takes no lock: the index and the store alone answer it.
            if let Some(cached) = self.open_cached(digest).await? {
                return Ok(cached);
            }
            match self.fills.lookup(digest, &self.index, absent) {
                // Moments from the index: a request should find the blob there, not in a spool.
                State::Filling(fill) if fill.committing() => fill.settled().await,
                State::Filling(fill) => {
                    self.metrics.coalesced_waiters.inc();
                    return Ok(Lookup::Filling(fill));
                }
                // Committed since `open_cached` looked: round again to open it.
                State::Indexed => {}
                State::Absent(None) => return Ok(Lookup::Absent),
                State::Absent(Some(fill)) => {
                    return Ok(Lookup::Claimed(Claim::new(self.clone(), digest.clone(), fill)))
                }
            }
        }
        Err(io::Error::other("the cache entry kept changing under the lookup"))
    }

    /// The blob from the store, if there. A file that vanished behind the index's back (deleted
    /// by hand, say) leaves the index; one another process (`prefetch`, `import`) stored since
    /// the index was built joins it, so a running server serves it.
    async fn open_cached(&self, digest: &Digest) -> io::Result<Option<Lookup>> {
        let indexed = self.index.get(digest);
        let Some(file) = self.store.open(digest).await? else {
            if indexed.is_some() {
                self.index.forget(digest);
            }
            return Ok(None);
        };
        let size = match indexed {
            Some(entry) => entry.size,
            None => {
                let media_type = self.store.media_type(digest).await?.map(Arc::from);
                let entry = Entry::new(file.metadata()?.len(), media_type);
                let size = entry.size;
                self.index.insert(digest.clone(), entry);
                size
            }
        };
        Ok(Some(Lookup::Cached { file, size }))
    }

    /// A cached manifest, from memory when its bytes are kept there; content over the
    /// manifest size limit is refused by its size, unread.
    pub async fn manifest(&self, digest: &Digest) -> Result<Option<Manifest>, ReadError> {
        if let Some(kept) = self.index.manifest(digest) {
            return Ok(Some(kept));
        }
        // Not known here as a manifest: another process may have stored it since.
        let media_type = match self.index.get(digest).and_then(|e| e.media_type) {
            Some(media_type) => media_type,
            None => match self.store.media_type(digest).await? {
                Some(media_type) => Arc::from(media_type),
                None => return Ok(None),
            },
        };
        match self.store.read_manifest(digest).await? {
            Some(bytes) => {
                let manifest = Manifest {
                    bytes: Bytes::from(bytes),
                    media_type,
                };
                self.index.insert_manifest(digest, &manifest);
                Ok(Some(manifest))
            }
            None => {
                self.index.forget(digest);
                Ok(None)
            }
        }
    }

    /// Stores a manifest whose bytes the caller has already verified against `digest`.
    pub async fn put_manifest(&self, digest: &Digest, manifest: &Manifest) -> io::Result<()> {
        self.store.put(digest, &manifest.bytes).await?;
        self.store.put_media_type(digest, &manifest.media_type).await?;
        self.index.insert_manifest(digest, manifest);
        Ok(())
    }

    /// The last known digest of a tag, from memory or else from disk.
    pub async fn tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag) -> Option<TagRecord> {
        match self.index.tag(registry, repo, tag) {
            Some(record) => Some(record),
            None => self.reread_tag(registry, repo, tag).await,
        }
    }

    /// A tag's digest as the disk has it now: an `import` beside the server may have moved it.
    pub async fn reread_tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag) -> Option<TagRecord> {
        let record = self.store.tag(registry, repo, tag).await.ok().flatten()?;
        self.index.set_tag(registry, repo, tag, record.clone());
        Some(record)
    }

    /// A repository's tags as the disk has them, sorted.
    pub async fn repo_tags(&self, registry: &Registry, repo: &RepoName) -> io::Result<Vec<String>> {
        self.store.repo_tags(registry, repo).await
    }

    pub async fn set_tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag, digest: &Digest) -> io::Result<()> {
        self.keep_tag(registry, repo, tag, TagRecord::new(digest)).await
    }

    /// Keeps a tag record as another instance made it, with the time it was checked then.
    pub async fn keep_tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag, record: TagRecord) -> io::Result<()> {
        self.index.set_tag(registry, repo, tag, record.clone());
        self.store.put_tag(registry, repo, tag, &record).await
    }

    /// Waits for every commit under way (at shutdown).
    pub async fn settle_all(&self) {
        for fill in self.fills.all() {
            fill.settled().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> Arc<Cache> {
        let limits = Limits {
            max_bytes: None,
            min_free_disk: 0,
            fill_timeout: Duration::from_secs(5),
            manifest_memory: 1 << 20,
            max_blob_size: 1 << 30,
            source_idle: Duration::from_secs(60),
        };
        Arc::new(Cache::load(dir, limits, Arc::new(Metrics::default())).expect("load"))
    }

    /// A blob another process stored after the index was built is served, never fetched again.
    #[tokio::test]
    async fn a_blob_stored_behind_the_index_is_found_not_claimed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = cache(dir.path());
        let bytes = b"layer".to_vec();
        let digest = Digest::sha256_of(&bytes);
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).expect("mkdir");
        std::fs::write(dir.path().join("blobs/sha256").join(digest.hex()), &bytes).expect("write");
        let found = cache.find_or_claim(&digest).await.expect("lookup");
        assert!(matches!(found, Lookup::Cached { size: 5, .. }));
    }

    /// Content over the manifest size limit is refused by its size, never read into memory.
    #[tokio::test]
    async fn a_stored_manifest_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = cache(dir.path());
        let digest = Digest::sha256_of(b"huge");
        let media_type = crate::manifest::OCI_MANIFEST;
        cache.store.put_media_type(&digest, media_type).await.expect("type");
        let file = std::fs::File::create(cache.store.blob_path(&digest)).expect("create");
        file.set_len(crate::manifest::MAX_SIZE as u64 + 1).expect("grow");
        let read = cache.manifest(&digest).await.map(|m| m.is_some());
        assert!(matches!(read, Err(ReadError::TooLarge(_))), "{read:?}");
    }

    /// Once a request has claimed a blob, the next one joins that fill; a claim given up
    /// leaves the blob absent again.
    #[tokio::test]
    async fn the_first_miss_claims_and_the_next_joins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = cache(dir.path());
        let digest = Digest::sha256_of(b"never fetched");
        let claim = match cache.find_or_claim(&digest).await.expect("lookup") {
            Lookup::Claimed(claim) => claim,
            _ => panic!("an empty cache claims"),
        };
        assert!(matches!(cache.find(&digest).await.expect("lookup"), Lookup::Filling(_)));
        drop(claim);
        assert!(matches!(cache.find(&digest).await.expect("lookup"), Lookup::Absent));
    }
}
