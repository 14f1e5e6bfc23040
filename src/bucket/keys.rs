//! Where things live in the bucket. The layout follows the data directory's, so an operator
//! who knows one can read the other:
//! - `blobs/<alg>/<hex>`: content, blobs and manifests alike, exactly as served;
//! - `manifests/<alg>/<hex>`: a manifest again, its media type as the object's `Content-Type`
//!   (so a reader needs one request, and a blob fetched as a blob never becomes a manifest);
//! - `tags/<registry>/<repo>/_tags/<tag>`: the tag record, as JSON;
//! - `tags/<registry>/<repo>/_links/<alg>/<hex>`: the repository is known to hold the
//!   content; the object holds the size a manifest gave it, in decimal, or nothing;
//! - `tags/<registry>/<repo>/_referrers/<subject alg>/<subject hex>/<alg>/<hex>`: a manifest
//!   of the repository that refers to the subject, as the referrers API lists it (JSON);
//! - `hosted/…`: the same layout again for the hosted repositories, their content included,
//!   apart from the cache so that nothing expiring cached content ever reaches it.

use std::fmt;

use crate::digest::Digest;
use crate::reference::{Registry, RepoName, Tag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// Where every blob's key begins.
    pub const BLOBS: &str = "blobs/";
    /// Where every manifest's key begins.
    pub const MANIFESTS: &str = "manifests/";
    /// Where every tag record's and link's key begins.
    pub const REPOSITORIES: &str = "tags/";
    /// Where the hosted repositories' content and record begin: never the cache's, so never
    /// expired with it.
    pub const HOSTED: &str = "hosted/";

    pub fn blob(digest: &Digest) -> Key {
        Key(format!("{}{}", Key::BLOBS, path(digest)))
    }

    /// A key as the bucket listed it.
    pub fn listed(key: String) -> Key {
        Key(key)
    }

    pub fn manifest(digest: &Digest) -> Key {
        Key(format!("{}{}", Key::MANIFESTS, path(digest)))
    }

    pub fn tag(registry: &Registry, repo: &RepoName, tag: &Tag) -> Key {
        Key(format!("{}{registry}/{repo}/_tags/{tag}", Key::REPOSITORIES))
    }

    pub fn link(registry: &Registry, repo: &RepoName, digest: &Digest) -> Key {
        Key(format!(
            "{}{registry}/{repo}/_links/{}",
            Key::REPOSITORIES,
            path(digest)
        ))
    }

    /// The repository's tag records, one key per tag below this prefix.
    pub fn tags_of(registry: &Registry, repo: &RepoName) -> Key {
        Key(format!("{}{registry}/{repo}/_tags/", Key::REPOSITORIES))
    }

    /// Every repository of `registry`, each below this prefix.
    pub fn repositories_of(registry: &Registry) -> Key {
        Key(format!("{}{registry}/", Key::REPOSITORIES))
    }

    /// A manifest of the repository whose `subject` is `subject`: the referrers API's entry.
    pub fn referrer(registry: &Registry, repo: &RepoName, subject: &Digest, digest: &Digest) -> Key {
        Key(format!(
            "{}{}",
            Key::referrers_of(registry, repo, subject),
            path(digest)
        ))
    }

    /// Every referrer of `subject` in the repository, each below this prefix.
    pub fn referrers_of(registry: &Registry, repo: &RepoName, subject: &Digest) -> Key {
        Key(format!(
            "{}{registry}/{repo}/_referrers/{}/",
            Key::REPOSITORIES,
            path(subject)
        ))
    }

    /// The same key in the hosted repositories' part of the bucket, which holds their own
    /// content and record apart from the mirrors' cache.
    pub fn hosted(self) -> Key {
        Key(format!("{}{}", Key::HOSTED, self.0))
    }

    /// The digest a content key (`blobs/<alg>/<hex>`, `manifests/<alg>/<hex>`, either in
    /// the hosted part too) names.
    pub fn digest(&self) -> Option<Digest> {
        let content = self.0.strip_prefix(Key::HOSTED).unwrap_or(&self.0);
        let (_, path) = content.split_once('/')?;
        Key::digest_at(path)
    }

    /// The digest a key's `<alg>/<hex>` part names.
    pub fn digest_at(path: &str) -> Option<Digest> {
        let (algorithm, hex) = path.split_once('/')?;
        format!("{algorithm}:{hex}").parse().ok()
    }

    /// `registry/repository:tag`, for a tag record's key.
    pub(super) fn tag_name(&self) -> Option<String> {
        let named = self.0.strip_prefix(Key::REPOSITORIES)?;
        let (repository, tag) = named.split_once("/_tags/")?;
        Some(format!("{repository}:{tag}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A digest as keys spell it: `<alg>/<hex>`.
fn path(digest: &Digest) -> String {
    format!("{}/{}", digest.algorithm().name(), digest.hex())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_data_directory() {
        let digest = Digest::sha256_of(b"x");
        assert_eq!(Key::blob(&digest).as_str(), format!("blobs/sha256/{}", digest.hex()));
        let registry: Registry = "ghcr.io".parse().expect("registry");
        let repo = RepoName::on(&registry, "org/app").expect("repo");
        let tag: Tag = "v1".parse().expect("tag");
        assert_eq!(
            Key::tag(&registry, &repo, &tag).as_str(),
            "tags/ghcr.io/org/app/_tags/v1"
        );
        assert_eq!(Key::blob(&digest).digest(), Some(digest.clone()));
        assert_eq!(Key::manifest(&digest).digest(), Some(digest.clone()));
        assert_eq!(Key::listed("blobs/sha256/zz".into()).digest(), None);
        assert_eq!(Key::blob(&digest).hosted().digest(), Some(digest.clone()));
        assert_eq!(
            Key::tag(&registry, &repo, &tag).tag_name().as_deref(),
            Some("ghcr.io/org/app:v1")
        );
        assert_eq!(Key::link(&registry, &repo, &digest).tag_name(), None);
        assert_eq!(
            Key::link(&registry, &repo, &digest).as_str(),
            format!("tags/ghcr.io/org/app/_links/sha256/{}", digest.hex())
        );
    }
}
