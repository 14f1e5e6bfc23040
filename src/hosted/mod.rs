//! The site's own repositories, beside the mirrors: pushed content under one namespace (a
//! host-like name no mirrored registry has), stored in the same content store, never asked
//! of an upstream and never evicted. `uploads` takes blobs in, `manifests` verifies and
//! records manifests (tags, referrers), `gc` frees what nothing holds any more. On a shared
//! bucket, `record` keeps what each repository holds there and `content` puts and reads the
//! content there, so every instance on the bucket hosts the same repositories; `bucket_gc`
//! collects that part of the bucket. Nothing here knows HTTP.

pub mod bucket_gc;
mod content;
mod error;
pub mod gc;
mod manifests;
mod record;
mod uploads;

use std::sync::Arc;

pub use error::Error;
pub use manifests::Pushed;
pub use uploads::Progress;

use crate::bucket::Bucket;
use crate::cache::{Cache, Lookup, Referrer};
use crate::digest::Digest;
use crate::mirror::{BlobAnswer, ManifestAnswer, Source, Want};
use crate::reference::{Reference, Registry, RepoName};
use record::Record;
use uploads::Uploads;

pub struct Hosted {
    namespace: Registry,
    cache: Arc<Cache>,
    /// What each repository holds, its tags and referrers: here, or in the shared bucket.
    record: Record,
    uploads: Uploads,
}

/// What hosted repositories are kept within.
pub struct Limits {
    /// How long an unfinished upload is kept after its last write.
    pub upload_max_age: std::time::Duration,
    /// The most bytes one upload may grow to.
    pub max_size: u64,
}

impl Hosted {
    /// Hosted repositories under `namespace`, over the mirrors' cache, recorded in `bucket`
    /// when the instance shares one.
    pub fn new(namespace: Registry, cache: Arc<Cache>, bucket: Option<Arc<Bucket>>, limits: Limits) -> Hosted {
        if let Err(e) = cache.record_hosted(&namespace) {
            tracing::warn!(error = %e, "cannot record the hosted namespace for gc");
        }
        Hosted {
            record: Record::new(namespace.clone(), cache.clone(), bucket),
            namespace,
            cache,
            uploads: Uploads::new(limits.upload_max_age, limits.max_size),
        }
    }

    pub fn namespace(&self) -> &Registry {
        &self.namespace
    }

    /// A manifest by tag or digest, from this repository only.
    pub async fn manifest(&self, repo: &RepoName, reference: &Reference, want: Want) -> Result<ManifestAnswer, Error> {
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => self.record.tag(repo, tag).await?.ok_or(Error::ManifestUnknown)?,
        };
        if self.record.linked(repo, &digest).await?.is_none() {
            return Err(Error::ManifestUnknown);
        }
        let manifest = self.manifest_content(&digest).await?.ok_or(Error::ManifestUnknown)?;
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
        let Some(link) = self.record.linked(repo, digest).await? else {
            return Err(Error::BlobUnknown);
        };
        self.blob_content(digest, link.size).await
    }

    /// The repository's tags, sorted; unknown when nothing was ever pushed to it.
    pub async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, Error> {
        let tags = self.record.tags(repo).await?;
        if tags.is_empty() && !self.repositories().await?.contains(repo) {
            return Err(Error::NameUnknown);
        }
        Ok(tags)
    }

    /// Every hosted repository that holds something.
    pub async fn repositories(&self) -> Result<Vec<RepoName>, Error> {
        self.record.repositories().await
    }

    /// The manifests of this repository whose `subject` is `subject`, of `artifact_type` when
    /// one is given.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, Error> {
        let mut found = self.record.referrers(repo, subject).await?;
        if let Some(wanted) = artifact_type {
            found.retain(|r| r.artifact_type.as_deref() == Some(wanted));
        }
        Ok(found)
    }

    /// Links `digest` into `repo` when `from` (a hosted or mirrored repository) holds it and
    /// the store has it: a cross-repository mount. `false` leaves the client to upload it.
    pub async fn mount(&self, repo: &RepoName, digest: &Digest, from: (&Registry, &RepoName)) -> Result<bool, Error> {
        let hosted = from.0 == &self.namespace;
        let held = match hosted {
            true => self.record.linked(from.1, digest).await?,
            false => self.cache.linked(from.0, from.1, digest).await?,
        };
        let Some(held) = held else {
            return Ok(false);
        };
        let size = match (hosted, held.size) {
            // Hosted content is already where the record keeps it, on a bucket too.
            (true, Some(size)) => size,
            _ => {
                let Lookup::Cached { size, .. } = self.cache.find(digest).await? else {
                    return Ok(false);
                };
                self.cache.pin(digest)?;
                self.share_blob(digest).await?;
                size
            }
        };
        self.record.link(repo, digest, size).await?;
        Ok(true)
    }

    /// Forgets that `repo` holds the blob; its bytes stay until `gc`.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), Error> {
        if self.record.linked(repo, digest).await?.is_none() {
            return Err(Error::BlobUnknown);
        }
        self.record.unlink(repo, digest).await
    }
}

#[cfg(test)]
mod tests;
