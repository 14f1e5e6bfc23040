//! A tag to its digest: the record here while fresh (or the bucket's, when fresher), else a
//! HEAD (the fleet's owner of the tag, or the upstream), else, the upstream being down, the
//! record here served stale within `--max-stale`.

use super::{Error, Mirror, Resolved, Source};
use crate::cache::store::TagRecord;
use crate::reference::{Reference, RepoName, Tag};
use crate::upstream::{self, ManifestHead};

impl Mirror {
    /// A tag's digest: from the cache while fresh, else from an upstream HEAD, else (upstream
    /// down) from the cache with a warning.
    pub(super) async fn resolve(&self, repo: &RepoName, tag: &Tag) -> Result<Resolved, Error> {
        if self.offline {
            return self.resolve_offline(repo, tag).await;
        }
        let known = self.known_tag(repo, tag).await;
        let known_digest = known.as_ref().map(|r| r.digest.clone());
        if let (Some(record), Some(digest)) = (&known, &known_digest) {
            if record.age() < self.tag_ttl {
                return Ok(Resolved {
                    digest: digest.clone(),
                    head: None,
                    source: Source::Cache,
                });
            }
        }
        let reference = Reference::Tag(tag.clone());
        let head = match self.tag_head(repo, tag).await {
            Ok(head) => head,
            Err(e) => match known_digest {
                Some(digest) if e.is_outage() && self.may_serve_stale(known.as_ref()) => {
                    tracing::warn!(%repo, %tag, error = %e, "upstream unavailable; serving the cached tag");
                    self.metrics.stale_serves.inc();
                    return Ok(Resolved {
                        digest,
                        head: None,
                        source: Source::Stale,
                    });
                }
                _ => return Err(Error::from_upstream(e, Error::ManifestUnknown)),
            },
        };
        let resolved = match head.digest {
            Some(digest) => Resolved {
                head: head.media_type.zip(head.size),
                digest,
                source: Source::Upstream,
            },
            // Some registries omit the digest on HEAD: fetch by tag and hash what came.
            None => Resolved {
                digest: self.fetch_manifest(repo, &reference).await?.0,
                head: None,
                source: Source::Upstream,
            },
        };
        self.cache.set_tag(&self.registry, repo, tag, &resolved.digest).await?;
        Ok(resolved)
    }

    /// The tag's last check: this instance's, unless the bucket has a fresher one.
    async fn known_tag(&self, repo: &RepoName, tag: &Tag) -> Option<TagRecord> {
        let local = self.cache.tag(&self.registry, repo, tag).await;
        if local.as_ref().is_some_and(|record| record.age() < self.tag_ttl) || self.bucket.is_none() {
            return local;
        }
        let shared = self.tag_in_bucket(repo, tag).await;
        match (local, shared) {
            (Some(local), Some(shared)) if local.checked_at >= shared.checked_at => Some(local),
            (local, None) => local,
            (_, Some(shared)) => Some(self.keep_shared_tag(repo, tag, shared).await),
        }
    }

    /// Keeps the bucket's record of the tag here too.
    async fn keep_shared_tag(&self, repo: &RepoName, tag: &Tag, shared: TagRecord) -> TagRecord {
        let kept = self.cache.keep_tag(&self.registry, repo, tag, shared.clone()).await;
        if let Err(e) = kept {
            tracing::warn!(%repo, %tag, error = %e, "cannot keep the bucket's tag record");
        }
        shared
    }

    /// A tag's HEAD: in a fleet, from the member that checks this tag for all; else from the
    /// upstream, and then it goes in the bucket for the others.
    async fn tag_head(&self, repo: &RepoName, tag: &Tag) -> Result<ManifestHead, upstream::Error> {
        let from_member = match &self.members {
            Some(members) => members.head_tag(repo, tag).await,
            None => None,
        };
        if let Some(answer) = from_member {
            return answer;
        }
        let head = self.upstream.head_manifest(repo, &Reference::Tag(tag.clone())).await?;
        if let Some(digest) = &head.digest {
            self.publish_tag(repo, tag, digest);
        }
        Ok(head)
    }

    /// Offline, the record on disk is the tag's truth however old it is; it is read afresh
    /// because an `import` beside the server may just have set it. Without one here, the
    /// bucket's is kept.
    async fn resolve_offline(&self, repo: &RepoName, tag: &Tag) -> Result<Resolved, Error> {
        let record = match self.cache.reread_tag(&self.registry, repo, tag).await {
            Some(record) => record,
            None => {
                let shared = self.tag_in_bucket(repo, tag).await.ok_or(Error::OfflineManifest)?;
                self.keep_shared_tag(repo, tag, shared).await
            }
        };
        Ok(Resolved {
            digest: record.digest,
            head: None,
            source: Source::Cache,
        })
    }

    /// Whether a tag last confirmed by the upstream at `record` may still stand in for it.
    fn may_serve_stale(&self, record: Option<&TagRecord>) -> bool {
        match (self.max_stale, record) {
            (None, _) => true,
            (Some(max), Some(record)) => record.age() <= max,
            (Some(_), None) => false,
        }
    }
}
