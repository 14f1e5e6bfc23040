//! What hosted repositories need of the cache beyond what mirrors do: uploads made content,
//! pins that keep pushed content from eviction, and the removals a delete makes. Content is
//! shared: a pushed layer that a mirrored image also has is stored once.

use std::io;
use std::path::PathBuf;

use super::index::Entry;
use super::store::{Referrer, UploadId};
use super::Cache;
use crate::digest::Digest;
use crate::reference::{Registry, RepoName, Tag};

impl Cache {
    pub async fn create_upload(&self, id: &UploadId, owner: &str) -> io::Result<()> {
        self.store.create_upload(id, owner).await
    }

    /// The repository (`registry/repo`) an upload belongs to; `None` for no such upload.
    pub async fn upload_owner(&self, id: &UploadId) -> io::Result<Option<String>> {
        self.store.upload_owner(id).await
    }

    /// The file an upload's bytes go to, for its writer.
    pub fn upload_data(&self, id: &UploadId) -> PathBuf {
        self.store.upload_data(id)
    }

    pub async fn remove_upload(&self, id: &UploadId) -> io::Result<()> {
        self.store.remove_upload(id).await
    }

    /// A verified upload of `size` bytes becomes pinned content under `digest`.
    pub async fn commit_upload(&self, id: &UploadId, digest: &Digest, size: u64) -> io::Result<()> {
        self.store.pin(digest)?;
        self.store.commit_upload(id, digest).await?;
        if self.index.get(digest).is_none() {
            self.index.insert(digest.clone(), Entry::new(size, None));
        }
        Ok(())
    }

    /// Keeps content from eviction from now on (it was mounted or pushed as a manifest).
    pub fn pin(&self, digest: &Digest) -> io::Result<()> {
        self.store.pin(digest)?;
        // Weighed again as pinned: nothing against the cap.
        if let Some(entry) = self.index.get(digest) {
            self.index.insert(digest.clone(), entry);
        }
        Ok(())
    }

    /// Lets content be evicted again: on a shared bucket the hosted copy is the bucket's, and
    /// the one here only a cache of it.
    pub fn unpin(&self, digest: &Digest) -> io::Result<()> {
        self.store.unpin(digest)?;
        // Weighed again as cached content: against the cap, evicted at once if over it.
        if let Some(entry) = self.index.get(digest) {
            self.index.insert(digest.clone(), entry);
        }
        Ok(())
    }

    pub async fn remove_tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag) -> io::Result<()> {
        self.store.remove_tag(registry, repo, tag).await?;
        self.index.forget_tag(registry, repo, tag);
        Ok(())
    }

    pub fn record_hosted(&self, namespace: &Registry) -> io::Result<()> {
        self.store.record_hosted(namespace)
    }

    pub fn repositories(&self, registry: &Registry) -> io::Result<Vec<RepoName>> {
        self.store.repositories(registry)
    }

    pub async fn referrers(&self, registry: &Registry, repo: &RepoName, subject: &Digest) -> io::Result<Vec<Referrer>> {
        self.store.referrers(registry, repo, subject).await
    }

    pub async fn put_referrer(
        &self,
        registry: &Registry,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Referrer,
    ) -> io::Result<()> {
        self.store.put_referrer(registry, repo, subject, referrer).await
    }

    pub async fn remove_referrer(
        &self,
        registry: &Registry,
        repo: &RepoName,
        subject: &Digest,
        digest: &Digest,
    ) -> io::Result<()> {
        self.store.remove_referrer(registry, repo, subject, digest).await
    }

    /// Uploads not written to for `max_age`, removed.
    pub async fn remove_stale_uploads(&self, max_age: std::time::Duration) -> io::Result<Vec<UploadId>> {
        let stale = self.store.stale_uploads(max_age)?;
        for id in &stale {
            self.store.remove_upload(id).await?;
        }
        Ok(stale)
    }
}
