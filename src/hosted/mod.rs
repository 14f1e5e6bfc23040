//! The site's own repositories, beside the mirrors: pushed content under one namespace (a
//! host-like name no mirrored registry has), stored in the same content store, never asked
//! of an upstream and never evicted. `uploads` takes blobs in, `manifests` verifies and
//! records manifests (tags, referrers), `gc` frees what nothing holds any more. Nothing here
//! knows HTTP.

mod error;
pub mod gc;
mod manifests;
mod uploads;

use std::io;
use std::sync::Arc;

pub use error::Error;
pub use manifests::Pushed;
pub use uploads::Progress;

use crate::cache::{Cache, Lookup, Referrer};
use crate::digest::Digest;
use crate::mirror::{BlobAnswer, ManifestAnswer, Source, Want};
use crate::reference::{Reference, Registry, RepoName};
use uploads::Uploads;

pub struct Hosted {
    namespace: Registry,
    cache: Arc<Cache>,
    uploads: Uploads,
}

impl Hosted {
    /// Hosted repositories under `namespace`, over the mirrors' cache; unfinished uploads
    /// are kept `upload_max_age` after their last write, and none grows past `max_size`.
    pub fn new(namespace: Registry, cache: Arc<Cache>, upload_max_age: std::time::Duration, max_size: u64) -> Hosted {
        if let Err(e) = cache.record_hosted(&namespace) {
            tracing::warn!(error = %e, "cannot record the hosted namespace for gc");
        }
        Hosted {
            namespace,
            cache,
            uploads: Uploads::new(upload_max_age, max_size),
        }
    }

    pub fn namespace(&self) -> &Registry {
        &self.namespace
    }

    /// A manifest by tag or digest, from this repository only.
    pub async fn manifest(&self, repo: &RepoName, reference: &Reference, want: Want) -> Result<ManifestAnswer, Error> {
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => match self.cache.tag(&self.namespace, repo, tag).await {
                Some(record) => record.digest,
                None => return Err(Error::ManifestUnknown),
            },
        };
        if !self.holds(repo, &digest).await? {
            return Err(Error::ManifestUnknown);
        }
        let manifest = self.cache.manifest(&digest).await?.ok_or(Error::ManifestUnknown)?;
        Ok(ManifestAnswer {
            digest,
            size: manifest.bytes.len() as u64,
            media_type: manifest.media_type,
            bytes: (want == Want::Body).then_some(manifest.bytes),
            source: Source::Cache,
        })
    }

    /// A blob of this repository, from the store.
    pub async fn blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobAnswer, Error> {
        if !self.holds(repo, digest).await? {
            return Err(Error::BlobUnknown);
        }
        match self.cache.find(digest).await? {
            Lookup::Cached { file, size } => Ok(BlobAnswer::Cached { file, size }),
            _ => Err(Error::BlobUnknown),
        }
    }

    /// The repository's tags, sorted; unknown when nothing was ever pushed to it.
    pub async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, Error> {
        let tags = self.cache.repo_tags(&self.namespace, repo).await?;
        if tags.is_empty() && !self.repositories()?.contains(repo) {
            return Err(Error::NameUnknown);
        }
        Ok(tags)
    }

    /// Every hosted repository that holds something.
    pub fn repositories(&self) -> io::Result<Vec<RepoName>> {
        self.cache.repositories(&self.namespace)
    }

    /// The manifests of this repository whose `subject` is `subject`, of `artifact_type` when
    /// one is given.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, Error> {
        let mut found = self.cache.referrers(&self.namespace, repo, subject).await?;
        if let Some(wanted) = artifact_type {
            found.retain(|r| r.artifact_type.as_deref() == Some(wanted));
        }
        Ok(found)
    }

    /// Links `digest` into `repo` when `from` (a hosted or mirrored repository) holds it and
    /// the store has it: a cross-repository mount. `false` leaves the client to upload it.
    pub async fn mount(&self, repo: &RepoName, digest: &Digest, from: (&Registry, &RepoName)) -> Result<bool, Error> {
        if self.cache.linked(from.0, from.1, digest).await?.is_none() {
            return Ok(false);
        }
        let Lookup::Cached { size, .. } = self.cache.find(digest).await? else {
            return Ok(false);
        };
        self.cache.pin(digest)?;
        self.cache.link(&self.namespace, repo, digest, Some(size)).await?;
        Ok(true)
    }

    /// Forgets that `repo` holds the blob; its bytes stay until `gc`.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), Error> {
        if !self.holds(repo, digest).await? {
            return Err(Error::BlobUnknown);
        }
        self.cache.unlink(&self.namespace, repo, digest).await?;
        Ok(())
    }

    async fn holds(&self, repo: &RepoName, digest: &Digest) -> io::Result<bool> {
        Ok(self.cache.linked(&self.namespace, repo, digest).await?.is_some())
    }
}

#[cfg(test)]
mod tests;
