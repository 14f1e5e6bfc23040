//! Which repository is known to hold which content: `tags/<registry>/<repo>/_links/<alg>/<hex>`,
//! an empty file, beside the repository's tag records. Content is served through a repository
//! only when such a link says the repository holds it, so a digest learned through one
//! repository or registry is never served through another on the strength of the shared cache.

use std::io;
use std::path::PathBuf;

use tokio::fs;

use super::{optional, Store};
use crate::digest::Digest;
use crate::reference::{Registry, RepoName};

/// Present once links were made from the tag records of a cache written before they existed.
const LINKS_BUILT: &str = "links-built";

impl Store {
    fn link_path(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(registry, repo)
            .join("_links")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub async fn linked(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> io::Result<bool> {
        Ok(optional(fs::metadata(self.link_path(registry, repo, digest)).await)?.is_some())
    }

    /// Records that `repo` holds `digest`. Not synced: a link lost to a crash is made again
    /// by the next pull, or confirmed with the upstream.
    pub async fn link(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> io::Result<()> {
        let path = self.link_path(registry, repo, digest);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).await?;
        }
        fs::write(path, b"").await
    }

    /// Whether links still have to be made from a cache written before they existed.
    pub fn links_built(&self) -> bool {
        self.root.join(LINKS_BUILT).exists()
    }

    pub fn mark_links_built(&self) -> io::Result<()> {
        std::fs::write(self.root.join(LINKS_BUILT), b"")
    }
}

impl Store {
    /// `link`, for startup and the command line, where no runtime drives the file system.
    pub fn link_blocking(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> io::Result<()> {
        let path = self.link_path(registry, repo, digest);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, b"")
    }
}
