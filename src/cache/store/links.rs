//! Which repository is known to hold which content: `tags/<registry>/<repo>/_links/<alg>/<hex>`,
//! beside the repository's tag records. Content is served through a repository only when such
//! a link says the repository holds it, so a digest learned through one repository or registry
//! is never served through another on the strength of the shared cache.
//!
//! The file holds the content's size in decimal when a manifest listed it, else nothing. Links
//! written before sizes were recorded are empty, and an empty link still links; a version that
//! only checks that the file exists reads the newer ones just as well.

use std::io;
use std::path::PathBuf;

use tokio::fs;

use super::{optional, Store};
use crate::digest::{Algorithm, Digest};
use crate::reference::{Registry, RepoName};

/// Present once links were made from the tag records of a cache written before they existed.
const LINKS_BUILT: &str = "links-built";

/// A repository's link to content, and what it knows of the content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    /// The size a manifest listing the content gave it, when one did.
    pub size: Option<u64>,
}

impl Link {
    /// A link file's text: its size, or nothing (a link from before sizes, or unreadable).
    pub fn parse(bytes: &[u8]) -> Link {
        let size = std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        Link { size }
    }

    pub fn text(self) -> String {
        self.size.map(|size| size.to_string()).unwrap_or_default()
    }
}

impl Store {
    fn link_path(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(registry, repo)
            .join("_links")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// The link of `repo` to `digest`, if there is one.
    pub async fn linked(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> io::Result<Option<Link>> {
        let text = optional(fs::read(self.link_path(registry, repo, digest)).await)?;
        Ok(text.as_deref().map(Link::parse))
    }

    /// Records that `repo` holds `digest`. Not synced: a link lost to a crash is made again
    /// by the next pull, or confirmed with the upstream.
    pub async fn link(&self, registry: &Registry, repo: &RepoName, digest: &Digest, link: Link) -> io::Result<()> {
        let path = self.link_path(registry, repo, digest);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).await?;
        }
        fs::write(path, link.text()).await
    }

    /// Removes `repo`'s link to `digest` (a hosted repository's delete); gone already is fine.
    pub async fn unlink(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> io::Result<()> {
        match fs::remove_file(self.link_path(registry, repo, digest)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// When `repo` was linked to `digest`; `None` when it is not.
    pub fn linked_at(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.link_path(registry, repo, digest))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Every digest `repo` links to.
    pub fn links_of(&self, registry: &Registry, repo: &RepoName) -> io::Result<Vec<Digest>> {
        let mut found = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.repo_dir(registry, repo).join("_links").join(alg.name());
            let Some(entries) = optional(std::fs::read_dir(dir))? else {
                continue;
            };
            for entry in entries {
                let name = entry?.file_name();
                found.extend(format!("{}:{}", alg.name(), name.to_string_lossy()).parse().ok());
            }
        }
        Ok(found)
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
    pub fn link_blocking(&self, registry: &Registry, repo: &RepoName, digest: &Digest, link: Link) -> io::Result<()> {
        let path = self.link_path(registry, repo, digest);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, link.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_holds_its_size_and_an_empty_one_from_before_sizes_still_links() {
        assert_eq!(Link::parse(b"").size, None);
        assert_eq!(Link::parse(b"1234").size, Some(1234));
        assert_eq!(Link::parse(b"1234\n").size, Some(1234));
        assert_eq!(Link::parse(b"junk").size, None);
        assert_eq!(Link { size: Some(7) }.text(), "7");
        assert_eq!(Link::default().text(), "");
    }
}
