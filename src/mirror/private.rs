//! Private registries (reached with credentials): which cached content belongs to which
//! repository, so that bytes one client pulled from a private repository are never served
//! through another repository name without the upstream's say-so.

use super::{Error, Mirror};
use crate::cache::Manifest;
use crate::digest::Digest;
use crate::image::Node;
use crate::reference::{Reference, RepoName};

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Manifest,
    Blob,
}

/// Repository–content pairs remembered per private registry.
pub(super) const MAX_LINKS: u64 = 1_000_000;

impl Mirror {
    /// For a registry the mirror reaches with credentials (private content), makes sure
    /// `digest` belongs to `repo` before serving it from the cache: it was seen in one of the
    /// repository's manifests, or the upstream confirms it now. Public registries need no
    /// check: anyone may fetch their content anyway.
    pub(super) async fn confirm(&self, repo: &RepoName, digest: &Digest, kind: Kind) -> Result<(), Error> {
        let Some(links) = &self.links else { return Ok(()) };
        if links.contains_key(&(repo.clone(), digest.clone())) {
            return Ok(());
        }
        let confirmed = match kind {
            Kind::Manifest => self
                .upstream
                .head_manifest(repo, &Reference::Digest(digest.clone()))
                .await
                .map(drop),
            Kind::Blob => self.upstream.blob_size(repo, digest).await.map(drop),
        };
        let unknown = match kind {
            Kind::Manifest => Error::ManifestUnknown,
            Kind::Blob => Error::BlobUnknown,
        };
        confirmed.map_err(|e| Error::from_upstream(e, unknown))?;
        self.link(repo, digest);
        Ok(())
    }

    pub(super) fn link(&self, repo: &RepoName, digest: &Digest) {
        if let Some(links) = &self.links {
            links.insert((repo.clone(), digest.clone()), ());
        }
    }

    /// Records a manifest and everything it refers to as belonging to `repo`.
    pub(super) fn link_manifest(&self, repo: &RepoName, digest: &Digest, manifest: &Manifest) {
        if self.links.is_none() {
            return;
        }
        self.link(repo, digest);
        let children = match Node::parse(&manifest.media_type, &manifest.bytes) {
            Ok(Node::Index(children)) => children,
            Ok(Node::Image { config, layers }) => std::iter::once(config).chain(layers).collect(),
            Err(_) => Vec::new(),
        };
        for child in children {
            self.link(repo, &child.digest);
        }
    }
}
