//! Hosted content on a shared bucket: what a push stored here goes to the bucket's `hosted/`
//! part before the push is answered, and what another instance pushed is read from there
//! into the data directory, checked against its digest like everything read from a bucket.
//! Content never changes under its digest, so the copies kept here are only a cache: once the
//! bucket has a push's content, the pin that kept it here is lifted and `--max-cache-size`
//! bounds it like any cached content. The record (`record`) says what each repository holds.

use super::{Error, Hosted};
use crate::bucket::{self, Key};
use crate::cache::{Lookup, Manifest};
use crate::digest::Digest;
use crate::mirror::{manifest_in, BlobAnswer, BucketBlob};

impl Hosted {
    /// Puts a blob committed here in the bucket, unless another push put it there already.
    pub(super) async fn share_blob(&self, digest: &Digest) -> Result<(), Error> {
        let Some(bucket) = self.record.bucket() else {
            return Ok(());
        };
        let Lookup::Cached { file, size } = self.cache.find(digest).await? else {
            return Err(Error::BlobUnknown);
        };
        let key = Key::blob(digest).hosted();
        bucket::retried(|| bucket.upload_unless_there(&key, &file, size)).await?;
        Ok(self.cache.unpin(digest)?)
    }

    pub(super) async fn share_manifest(&self, digest: &Digest, manifest: &Manifest) -> Result<(), Error> {
        let Some(bucket) = self.record.bucket() else {
            return Ok(());
        };
        let key = Key::manifest(digest).hosted();
        let put = || bucket.put(&key, manifest.bytes.clone(), Some(&manifest.media_type));
        bucket::retried(put).await?;
        Ok(self.cache.unpin(digest)?)
    }

    /// A manifest's bytes: from the data directory, else from the bucket (kept here after).
    pub(super) async fn manifest_content(&self, digest: &Digest) -> Result<Option<Manifest>, Error> {
        if let Some(manifest) = self.cache.manifest(digest).await? {
            return Ok(Some(manifest));
        }
        let Some(bucket) = self.record.bucket() else {
            return Ok(None);
        };
        let key = Key::manifest(digest).hosted();
        let Some(manifest) = manifest_in(bucket, key, digest).await? else {
            return Ok(None);
        };
        self.cache.put_manifest(digest, &manifest).await?;
        Ok(Some(manifest))
    }

    /// A blob's bytes: from the data directory, else filled from the bucket.
    pub(super) async fn blob_content(&self, digest: &Digest, size: Option<u64>) -> Result<BlobAnswer, Error> {
        let Some(bucket) = self.record.bucket() else {
            return match self.cache.find(digest).await? {
                Lookup::Cached { file, size } => Ok(BlobAnswer::Cached { file, size }),
                _ => Err(Error::BlobUnknown),
            };
        };
        let claim = match self.cache.find_or_claim(digest).await? {
            Lookup::Cached { file, size } => return Ok(BlobAnswer::Cached { file, size }),
            Lookup::Filling(fill) => return Ok(BlobAnswer::Filling { fill, size }),
            Lookup::Claimed(claim) => claim,
            Lookup::Absent => return Err(Error::BlobUnknown),
        };
        let key = Key::blob(digest).hosted();
        let Some(object) = bucket.get(&key, 0).await? else {
            tracing::error!(%digest, "a hosted repository links a blob the bucket lacks");
            return Err(Error::BlobUnknown);
        };
        let fill = claim.start(BucketBlob::found(bucket.clone(), key, object), size);
        Ok(BlobAnswer::Filling { fill, size })
    }
}
