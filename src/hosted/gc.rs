//! Garbage collection of hosted content, safe beside a running server. Marks from every
//! hosted tag: the manifest, what it names (config, layers, child manifests) and, in turn,
//! the manifests that refer to any of those (signatures, SBOMs). Links of hosted repositories
//! to anything unmarked go, and content no longer held is unpinned; unpinned content that no
//! mirrored repository links is deleted. Everything younger than the grace period stays:
//! it may belong to a push under way (blobs go up before the manifest that names them).

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::cache::store::Store;
use crate::digest::Digest;
use crate::image::Descriptor;
use crate::reference::{Registry, RepoName};

/// What a collection did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Hosted repositories' links removed.
    pub unlinked: u64,
    /// Content files deleted, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Content left to the cache: no hosted repository holds it, a mirrored one does.
    pub unpinned: u64,
    /// Abandoned uploads removed.
    pub uploads: u64,
}

/// The references a manifest makes, whatever its kind.
#[derive(Deserialize)]
struct Named {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// Collects the data directory `dir`; content and links younger than `grace` stay, and
/// uploads untouched for `upload_max_age` go.
pub async fn collect(dir: &Path, grace: Duration, upload_max_age: Duration) -> io::Result<Report> {
    let store = Store::at(dir)?;
    let started = SystemTime::now();
    let old = |at: Option<SystemTime>| at.is_some_and(|at| started.duration_since(at).is_ok_and(|age| age >= grace));
    let mut report = Report::default();
    for id in store.stale_uploads(upload_max_age)? {
        store.remove_upload(&id).await?;
        report.uploads += 1;
    }
    let namespaces = store.hosted_namespaces()?;
    let mut marked = HashSet::new();
    for namespace in &namespaces {
        for repo in store.repositories(namespace)? {
            let held = mark(&store, namespace, &repo).await?;
            for digest in store.links_of(namespace, &repo)? {
                if !held.contains(&digest) && old(store.linked_at(namespace, &repo, &digest)) {
                    store.unlink(namespace, &repo, &digest).await?;
                    report.unlinked += 1;
                }
            }
            marked.extend(held);
        }
    }
    let mirrored = mirrored_links(&store, &namespaces)?;
    for digest in store.pins()? {
        // A pin renewed since the collection started (a mount, a push) keeps the content.
        if marked.contains(&digest) || !old(store.pinned_at(&digest)) {
            continue;
        }
        store.unpin(&digest)?;
        if mirrored.contains(&digest) {
            report.unpinned += 1;
            continue;
        }
        let size = std::fs::metadata(store.blob_path(&digest)).map_or(0, |m| m.len());
        store.remove(&digest)?;
        report.files += 1;
        report.bytes += size;
    }
    Ok(report)
}

/// Everything `repo` holds for its tags: the tagged manifests, all they name, and the
/// manifests filed as referring to any of it.
async fn mark(store: &Store, namespace: &Registry, repo: &RepoName) -> io::Result<HashSet<Digest>> {
    let mut pending: Vec<Digest> = Vec::new();
    for tag in store.repo_tags(namespace, repo).await? {
        let Ok(tag) = tag.parse() else { continue };
        pending.extend(store.tag(namespace, repo, &tag).await?.map(|record| record.digest));
    }
    let mut held = HashSet::new();
    while let Some(digest) = pending.pop() {
        if !held.insert(digest.clone()) {
            continue;
        }
        let referrers = store.referrers(namespace, repo, &digest).await?;
        pending.extend(referrers.into_iter().map(|r| r.digest));
        let bytes = match store.read_manifest(&digest).await {
            Ok(Some(bytes)) if store.media_type(&digest).await?.is_some() => bytes,
            _ => continue,
        };
        pending.extend(named_by(&bytes));
    }
    Ok(held)
}

/// What a manifest names, whatever its kind: config and layers, or child manifests; never a
/// foreign layer, which lives elsewhere.
pub(super) fn named_by(manifest: &[u8]) -> Vec<Digest> {
    let Ok(named) = serde_json::from_slice::<Named>(manifest) else {
        return Vec::new();
    };
    let children = named.config.into_iter().chain(named.layers).chain(named.manifests);
    children.filter(|d| !d.is_foreign()).map(|d| d.digest).collect()
}

/// Every digest a mirrored (not hosted) repository links: the cache's, left to eviction.
fn mirrored_links(store: &Store, hosted: &[Registry]) -> io::Result<HashSet<Digest>> {
    let mut found = HashSet::new();
    for registry in store.registries()?.iter().filter(|r| !hosted.contains(r)) {
        for repo in store.repositories(registry)? {
            found.extend(store.links_of(registry, &repo)?);
        }
    }
    Ok(found)
}
