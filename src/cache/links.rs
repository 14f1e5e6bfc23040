//! The cache's side of repository links (`store/links`): the links known to exist kept in
//! memory, so that a warm request checks one in-memory map, and the links of a cache written
//! before they existed made once from its tag records. A link made from a manifest keeps the
//! size its descriptor gives, which bounds the blob's fill.

use std::collections::HashMap;
use std::io;

use sha2::{Digest as _, Sha256};

use super::store::{Link, ReadError, Scanned, Store};
use super::Cache;
use crate::digest::Digest;
use crate::image::{Descriptor, Node};
use crate::reference::{Registry, RepoName};

/// Links remembered in memory, about 0.3 KiB each with moka's bookkeeping; a forgotten one
/// costs a `stat` of its file. No time to live: link files are never removed, so a link
/// known once stays true.
const KNOWN_LINKS: u64 = 100_000;

/// Links known to exist, by a hash of (registry, repository, digest): a fixed-size key that
/// a request's borrowed names can be looked up by without building an owned tuple.
pub(super) struct Links(moka::sync::Cache<[u8; 16], Link>);

impl Default for Links {
    fn default() -> Links {
        Links(moka::sync::Cache::new(KNOWN_LINKS))
    }
}

fn key(registry: &Registry, repo: &RepoName, digest: &Digest) -> [u8; 16] {
    let hash = Sha256::new()
        .chain_update(registry.as_str())
        .chain_update([0])
        .chain_update(repo.as_str())
        .chain_update([0])
        .chain_update(digest.algorithm().name())
        .chain_update([b':'])
        .chain_update(digest.hex())
        .finalize();
    let mut key = [0; 16];
    key.copy_from_slice(&hash[..16]);
    key
}

impl Cache {
    /// The link saying `registry`/`repo` holds `digest`, if there is one.
    pub async fn linked(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> io::Result<Option<Link>> {
        let key = key(registry, repo, digest);
        if let Some(link) = self.links.0.get(&key) {
            return Ok(Some(link));
        }
        let linked = self.store.linked(registry, repo, digest).await?;
        if let Some(link) = linked {
            self.links.0.insert(key, link);
        }
        Ok(linked)
    }

    /// Records that `registry`/`repo` holds `digest`, of `size` when a manifest said. A link
    /// that exists stands, unless this gives it a size it lacked or another one (a manifest
    /// pulled later): a link made without one never drops a size. The link written, if one was.
    pub async fn link(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
        size: Option<u64>,
    ) -> io::Result<Option<Link>> {
        let known = self.linked(registry, repo, digest).await?;
        if known.is_some_and(|link| size.is_none() || link.size == size) {
            return Ok(None);
        }
        let link = Link { size };
        self.store.link(registry, repo, digest, link).await?;
        self.links.0.insert(key(registry, repo, digest), link);
        Ok(Some(link))
    }
}

impl Cache {
    /// Forgets that `registry`/`repo` holds `digest`: a hosted repository's delete.
    pub async fn unlink(&self, registry: &Registry, repo: &RepoName, digest: &Digest) -> io::Result<()> {
        self.store.unlink(registry, repo, digest).await?;
        self.links.0.invalidate(&key(registry, repo, digest));
        Ok(())
    }
}

/// What a manifest vouches for: its children, but not foreign layers (descriptors with
/// `urls`), whose bytes live elsewhere and say nothing of what the repository holds.
pub fn vouched(media_type: &str, bytes: &[u8]) -> Vec<Descriptor> {
    let children = match Node::parse(media_type, bytes) {
        Ok(Node::Index(children)) => children,
        Ok(Node::Image { config, layers }) => std::iter::once(config).chain(layers).collect(),
        Err(_) => Vec::new(),
    };
    children.into_iter().filter(|d| d.urls.is_empty()).collect()
}

/// Links for a cache written before links existed: each tag record's manifest, and all a
/// manifest reaches through the cached manifests, belong to the tag's repository.
pub(super) fn build_from_tags(store: &Store, content: &[Scanned]) -> io::Result<()> {
    let media_types: HashMap<&Digest, &str> = (content.iter())
        .filter_map(|c| Some((&c.digest, c.media_type.as_deref()?)))
        .collect();
    for tag in store.tags()? {
        let mut pending = vec![(tag.record.digest.clone(), None)];
        let mut seen = std::collections::HashSet::new();
        while let Some((digest, size)) = pending.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            store.link_blocking(&tag.registry, &tag.repo, &digest, Link { size })?;
            if let Some(media_type) = media_types.get(&digest) {
                let bytes = match store.read_manifest_blocking(&digest) {
                    Ok(bytes) => bytes.unwrap_or_default(),
                    // As with one that does not parse: it vouches for nothing.
                    Err(ReadError::TooLarge(_)) => Vec::new(),
                    Err(ReadError::Io(e)) => return Err(e),
                };
                pending.extend(
                    vouched(media_type, &bytes)
                        .into_iter()
                        .map(|d| (d.digest, Some(d.size))),
                );
            }
        }
    }
    store.mark_links_built()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::cache::store::TagRecord;
    use crate::cache::Limits;
    use crate::metrics::Metrics;
    use crate::reference::Tag;

    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn descriptor(digest: &Digest, urls: &str) -> String {
        format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":1{urls}}}"#)
    }

    /// A manifest with a config, a layer, and a foreign layer (`urls`); their digests.
    fn manifest() -> (Vec<u8>, [Digest; 3]) {
        let [config, layer, foreign] = [b"config", b"layer1", b"layer2"].map(|b| Digest::sha256_of(b));
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{},{}]}}"#,
            descriptor(&config, ""),
            descriptor(&layer, ""),
            descriptor(&foreign, r#","urls":["https://elsewhere.example/l"]"#),
        );
        (text.into_bytes(), [config, layer, foreign])
    }

    #[test]
    fn foreign_layers_vouch_for_nothing() {
        let (bytes, [config, layer, _foreign]) = manifest();
        let vouched: Vec<Digest> = vouched(OCI_MANIFEST, &bytes).into_iter().map(|d| d.digest).collect();
        assert_eq!(vouched, [config, layer]);
    }

    #[test]
    fn links_kept_in_memory_are_bounded() {
        let links = Links::default();
        assert_eq!(links.0.policy().max_capacity(), Some(KNOWN_LINKS));
        assert_eq!(links.0.policy().time_to_live(), None, "a link never goes stale");
    }

    fn load(dir: &Path) -> Cache {
        let limits = Limits {
            max_bytes: None,
            min_free_disk: 0,
            fill_timeout: Duration::from_secs(5),
            manifest_memory: 1 << 20,
            max_blob_size: 1 << 30,
            source_idle: Duration::from_secs(60),
        };
        Cache::load(dir, limits, Arc::new(Metrics::default())).expect("load")
    }

    /// A cache written before links existed: its tagged manifests and what they vouch for are
    /// linked to the tag's repository at the first start, and nothing else is.
    #[tokio::test]
    async fn links_are_made_once_from_the_tags_of_an_older_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path()).expect("store");
        let (bytes, [config, layer, foreign]) = manifest();
        let digest = Digest::sha256_of(&bytes);
        store.put(&digest, &bytes).await.expect("put");
        store.put_media_type(&digest, OCI_MANIFEST).await.expect("media type");
        let (hub, repo) = (
            Registry::docker_hub(),
            RepoName::on(&Registry::docker_hub(), "app").expect("repo"),
        );
        let tag: Tag = "1".parse().expect("tag");
        store
            .put_tag(&hub, &repo, &tag, &TagRecord::new(&digest))
            .await
            .expect("tag");
        assert!(!store.links_built());

        let cache = load(dir.path());
        let linked = |digest| cache.linked(&hub, &repo, digest);
        assert_eq!(linked(&digest).await.expect("linked"), Some(Link { size: None }));
        for held in [&config, &layer] {
            let link = linked(held).await.expect("linked");
            assert_eq!(link, Some(Link { size: Some(1) }), "{held}: the descriptor's size");
        }
        assert_eq!(linked(&foreign).await.expect("linked"), None);
        let other = RepoName::on(&hub, "other").expect("repo");
        assert_eq!(cache.linked(&hub, &other, &digest).await.expect("linked"), None);
        assert!(store.links_built(), "done once");
    }

    /// A link made without a size (a blob fetched or confirmed through the repository) keeps
    /// the size a manifest gave it, in memory and on disk; a manifest's size replaces it.
    #[tokio::test]
    async fn a_link_keeps_its_descriptor_size_until_a_manifest_gives_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = Registry::docker_hub();
        let repo = RepoName::on(&hub, "app").expect("repo");
        let digest = Digest::sha256_of(b"layer");
        let cache = load(dir.path());
        cache.link(&hub, &repo, &digest, None).await.expect("link");
        cache.link(&hub, &repo, &digest, Some(5)).await.expect("link");
        cache.link(&hub, &repo, &digest, None).await.expect("link");
        assert_eq!(
            cache.linked(&hub, &repo, &digest).await.expect("linked"),
            Some(Link { size: Some(5) })
        );
        let reloaded = load(dir.path());
        reloaded.link(&hub, &repo, &digest, None).await.expect("link");
        assert_eq!(
            reloaded.linked(&hub, &repo, &digest).await.expect("linked"),
            Some(Link { size: Some(5) })
        );
        reloaded.link(&hub, &repo, &digest, Some(6)).await.expect("link");
        assert_eq!(
            load(dir.path()).linked(&hub, &repo, &digest).await.expect("linked"),
            Some(Link { size: Some(6) })
        );
    }
}
