//! Content isolation: cached content is served through `registry/repository` only when that
//! repository is known to hold it, because the cache is shared by digest across every
//! repository and registry. It is known when a manifest pulled through the repository lists
//! it, when the repository's upstream confirms it, or when it was imported under the
//! repository's name; the links that record this are on disk, so they outlive restarts and
//! hold offline, where nothing can be confirmed. With a bucket, every link made here goes there
//! too, and one found there is as good as one made here: the fleet mirrors the same upstreams,
//! so what one member confirmed holds for all.

use super::{Error, Mirror};
use crate::cache::{vouched, Manifest};
use crate::digest::Digest;
use crate::reference::{Reference, RepoName};

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Manifest,
    Blob,
}

impl Kind {
    fn unknown(self, offline: bool) -> Error {
        match (self, offline) {
            (Kind::Manifest, false) => Error::ManifestUnknown,
            (Kind::Manifest, true) => Error::OfflineManifest,
            (Kind::Blob, false) => Error::BlobUnknown,
            (Kind::Blob, true) => Error::OfflineBlob,
        }
    }
}

impl Mirror {
    /// Makes sure `repo` holds `digest` before anything of it is served: a link says so, or
    /// (online) the upstream confirms it now through this repository.
    pub(super) async fn confirm(&self, repo: &RepoName, digest: &Digest, kind: Kind) -> Result<(), Error> {
        if self.known_to_hold(repo, digest).await? {
            return Ok(());
        }
        if self.offline {
            return Err(kind.unknown(true));
        }
        let confirmed = match kind {
            Kind::Manifest => self
                .upstream
                .head_manifest(repo, &Reference::Digest(digest.clone()))
                .await
                .map(drop),
            Kind::Blob => self.upstream.blob_size(repo, digest).await.map(drop),
        };
        confirmed.map_err(|e| Error::from_upstream(e, kind.unknown(false)))?;
        match kind {
            Kind::Blob => self.link(repo, digest, None).await,
            // `link_manifest` links it, after what it vouches for.
            Kind::Manifest => Ok(()),
        }
    }

    /// Whether a link, here or in the bucket, says `repo` holds `digest`. One from the bucket
    /// is kept here, so it is asked for once.
    pub(super) async fn known_to_hold(&self, repo: &RepoName, digest: &Digest) -> Result<bool, Error> {
        if self.cache.linked(&self.registry, repo, digest).await?.is_some() {
            return Ok(true);
        }
        let Some(link) = self.link_in_bucket(repo, digest).await else {
            return Ok(false);
        };
        self.cache.link(&self.registry, repo, digest, link.size).await?;
        Ok(true)
    }

    /// Records that `repo` holds `digest`, of `size` when a manifest gave it, and shares what
    /// is new with the fleet.
    pub(super) async fn link(&self, repo: &RepoName, digest: &Digest, size: Option<u64>) -> Result<(), Error> {
        if let Some(link) = self.cache.link(&self.registry, repo, digest, size).await? {
            self.publish_link(repo, digest, link);
        }
        Ok(())
    }

    /// Records a manifest pulled through `repo` and what it vouches for as held by `repo`, with
    /// the sizes its descriptors give, which bound the blobs' fills. The manifest's own link
    /// goes last, so that once it exists its children's do too.
    pub(super) async fn link_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        manifest: &Manifest,
    ) -> Result<(), Error> {
        if self.cache.linked(&self.registry, repo, digest).await?.is_some() {
            return Ok(());
        }
        for child in vouched(&manifest.media_type, &manifest.bytes) {
            self.link(repo, &child.digest, Some(child.size)).await?;
        }
        self.link(repo, digest, None).await
    }
}
