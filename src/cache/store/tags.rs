//! Tag records on disk: `tags/<registry>/<repo>/_tags/<tag>` holds the tag's digest and when
//! the upstream last confirmed it, as JSON (`{"digest":"sha256:…","checked_at":…}`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::fs;

use super::{optional, write_atomically, Store};
use crate::digest::Digest;
use crate::reference::{Registry, RepoName, Tag};

/// A tag as `tags()` finds it on disk.
pub struct StoredTag {
    pub registry: Registry,
    pub repo: RepoName,
    pub tag: Tag,
    pub record: TagRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRecord {
    pub digest: Digest,
    /// Seconds since the epoch when the upstream last confirmed the tag.
    pub checked_at: u64,
}

impl TagRecord {
    pub fn new(digest: &Digest) -> Self {
        TagRecord {
            digest: digest.clone(),
            checked_at: unix_now(),
        }
    }

    pub fn age(&self) -> Duration {
        Duration::from_secs(unix_now().saturating_sub(self.checked_at))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// A repository's directory: its tag records under `_tags`, its links under `_links`.
    pub(super) fn repo_dir(&self, registry: &Registry, repo: &RepoName) -> PathBuf {
        self.root.join("tags").join(registry.as_str()).join(repo.as_str())
    }

    fn tag_path(&self, registry: &Registry, repo: &RepoName, tag: &Tag) -> PathBuf {
        self.repo_dir(registry, repo).join("_tags").join(tag.as_str())
    }

    /// Every tag record of every registry.
    pub fn tags(&self) -> io::Result<Vec<StoredTag>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(self.root.join("tags"))? {
            let root = entry?.path();
            let Some(registry) = root.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()) else {
                continue;
            };
            collect_tags(&registry, &root, &root, &mut found)?;
        }
        Ok(found)
    }

    pub async fn tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag) -> io::Result<Option<TagRecord>> {
        let Some(bytes) = optional(fs::read(self.tag_path(registry, repo, tag)).await)? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// The tags of one repository, sorted; none if it has no directory.
    pub async fn repo_tags(&self, registry: &Registry, repo: &RepoName) -> io::Result<Vec<String>> {
        let dir = self.repo_dir(registry, repo).join("_tags");
        let mut tags = Vec::new();
        let Some(mut entries) = optional(fs::read_dir(dir).await)? else {
            return Ok(tags);
        };
        while let Some(entry) = entries.next_entry().await? {
            tags.extend(entry.file_name().into_string());
        }
        tags.sort();
        Ok(tags)
    }

    pub async fn put_tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag, record: &TagRecord) -> io::Result<()> {
        let path = self.tag_path(registry, repo, tag);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).await?;
        }
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        write_atomically(self, &path, &bytes).await
    }
}

impl Store {
    /// Removes a tag; gone already is fine.
    pub async fn remove_tag(&self, registry: &Registry, repo: &RepoName, tag: &Tag) -> io::Result<()> {
        match fs::remove_file(self.tag_path(registry, repo, tag)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every registry with a directory of repositories here.
    pub fn registries(&self) -> io::Result<Vec<Registry>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(self.root.join("tags"))? {
            found.extend(entry?.file_name().to_str().and_then(|n| n.parse().ok()));
        }
        Ok(found)
    }

    /// The repositories of `registry` that hold anything (tags or links), sorted.
    pub fn repositories(&self, registry: &Registry) -> io::Result<Vec<RepoName>> {
        let root = self.root.join("tags").join(registry.as_str());
        let mut found = Vec::new();
        if root.is_dir() {
            collect_repositories(registry, &root, &root, &mut found)?;
        }
        found.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(found)
    }
}

fn collect_repositories(registry: &Registry, root: &Path, dir: &Path, found: &mut Vec<RepoName>) -> io::Result<()> {
    let mut holds = false;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        match path.file_name().and_then(|n| n.to_str()) {
            Some("_tags") => holds |= std::fs::read_dir(&path)?.next().is_some(),
            // Links sit one level down, under their algorithm.
            Some("_links") => {
                for alg in std::fs::read_dir(&path)? {
                    holds |= std::fs::read_dir(alg?.path())?.next().is_some();
                }
            }
            Some("_referrers") => {}
            _ if path.is_dir() => collect_repositories(registry, root, &path, found)?,
            _ => {}
        }
    }
    let name = dir.strip_prefix(root).ok().map(|p| p.to_string_lossy().into_owned());
    if let Some(repo) = name.filter(|_| holds).and_then(|n| RepoName::on(registry, &n).ok()) {
        found.push(repo);
    }
    Ok(())
}

/// Walks `tags/<upstream>/<repo…>/_tags/<tag>`.
fn collect_tags(registry: &Registry, root: &Path, dir: &Path, found: &mut Vec<StoredTag>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n == "_tags") {
            let repo = path
                .parent()
                .and_then(|p| p.strip_prefix(root).ok())
                .and_then(|p| RepoName::on(registry, &p.to_string_lossy()).ok());
            for tag in std::fs::read_dir(&path)? {
                let tag = tag?;
                let record = std::fs::read(tag.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let name = tag.file_name().to_string_lossy().parse::<Tag>().ok();
                if let (Some(repo), Some(tag), Some(record)) = (&repo, name, record) {
                    found.push(StoredTag {
                        registry: registry.clone(),
                        repo: repo.clone(),
                        tag,
                        record,
                    });
                }
            }
        } else if path.is_dir() && path.file_name().is_none_or(|n| n != "_links") {
            collect_tags(registry, root, &path, found)?;
        }
    }
    Ok(())
}
