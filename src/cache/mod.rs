//! The cache: verified content on disk (`store`), an in-memory index of it (`index`), the
//! single-flight streaming fill that turns one upstream transfer into bodies for every waiting
//! client and a cache entry (`fill`), and the uncached fallback (`passthrough`).

mod fill;
mod index;
pub mod maintenance;
pub mod passthrough;
pub mod store;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::digest::Digest;
use crate::metrics::Metrics;
use crate::reference::{Registry, RepoName, Tag};
use fill::Fills;
pub use fill::{Failure, Fill, Joined, Opener};
pub use index::Entry;
use index::Index;
use store::{Store, TagRecord};

pub struct Cache {
    store: Arc<Store>,
    index: Index,
    fills: Fills,
    limits: Limits,
    metrics: Arc<Metrics>,
}

/// Bounds on what the cache takes in.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Byte cap on cached content; moka evicts beyond it.
    pub max_bytes: Option<u64>,
    /// Free space a fill must leave on the file system.
    pub min_free_disk: u64,
    /// A fill's time limit is this plus one second per MiB of blob.
    pub fill_timeout: Duration,
}

/// A manifest as served: exact bytes and the media type the upstream gave it.
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: Arc<str>,
}

impl Cache {
    /// Opens the store and rebuilds the index from what is on disk.
    pub fn load(dir: &Path, limits: Limits, metrics: Arc<Metrics>) -> io::Result<Cache> {
        let store = Arc::new(Store::init(dir)?);
        let index = Index::new(store.clone(), limits.max_bytes, metrics.clone());
        for found in store.scan()? {
            let entry = Entry {
                size: found.size,
                media_type: found.media_type.map(Arc::from),
            };
            index.insert(found.digest, entry);
        }
        Ok(Cache {
            store,
            index,
            fills: Fills::default(),
            limits,
            metrics,
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

    pub fn lookup(&self, digest: &Digest) -> Option<Entry> {
        self.index.get(digest)
    }

    /// Opens cached content for reading. A file that vanished behind the index's back (deleted
    /// by hand, say) drops out of the index and reads as a miss; one that appeared behind it
    /// (from `prefetch` or `import` beside the server) joins it.
    pub async fn open(&self, digest: &Digest) -> io::Result<Option<(std::fs::File, Entry)>> {
        let indexed = self.index.get(digest);
        match (self.store.open(digest).await?, indexed) {
            (Some(file), Some(entry)) => Ok(Some((file, entry))),
            (Some(file), None) => {
                let entry = Entry {
                    size: file.metadata()?.len(),
                    media_type: self.store.media_type(digest).await?.map(Arc::from),
                };
                self.index.insert(digest.clone(), entry.clone());
                Ok(Some((file, entry)))
            }
            (None, indexed) => {
                if indexed.is_some() {
                    self.index.forget(digest);
                }
                Ok(None)
            }
        }
    }

    pub async fn manifest(&self, digest: &Digest) -> io::Result<Option<Manifest>> {
        // Not known here as a manifest: another process may have stored it since.
        let media_type = match self.index.get(digest).and_then(|e| e.media_type) {
            Some(media_type) => media_type,
            None => match self.store.media_type(digest).await? {
                Some(media_type) => Arc::from(media_type),
                None => return Ok(None),
            },
        };
        match self.store.read(digest).await? {
            Some(bytes) => {
                let entry = Entry {
                    size: bytes.len() as u64,
                    media_type: Some(media_type.clone()),
                };
                self.index.insert(digest.clone(), entry);
                Ok(Some(Manifest {
                    bytes: Bytes::from(bytes),
                    media_type,
                }))
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
        let entry = Entry {
            size: manifest.bytes.len() as u64,
            media_type: Some(manifest.media_type.clone()),
        };
        self.index.insert(digest.clone(), entry);
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
        let record = TagRecord::new(digest);
        self.index.set_tag(registry, repo, tag, record.clone());
        self.store.put_tag(registry, repo, tag, &record).await
    }

    /// Waits for a commit of `digest` under way, if any, so that a blob a client has just
    /// finished fetching is found cached; whether there was one.
    pub async fn settle(&self, digest: &Digest) -> bool {
        fill::settle(self, digest).await
    }

    /// Waits for every commit under way (at shutdown).
    pub async fn settle_all(&self) {
        fill::settle_all(self).await;
    }

    /// Joins the fill of an uncached blob, or starts one with `open`; see `fill`. An error
    /// means the cache cannot take the blob now and the caller should pass it through.
    pub async fn fill(self: &Arc<Self>, digest: &Digest, open: Opener) -> io::Result<Joined> {
        fill::join_or_start(self, digest, open).await
    }
}
