//! Where the hosted repositories' record lives: what each holds (links), its tags and its
//! referrers. Alone, that is the data directory. On a shared bucket (`--bucket`) it is the
//! bucket, under `hosted/`, read on every request: a push to any instance is then pulled
//! from every instance, and a delete made on one is seen by all at once, which a copy kept
//! here could outlive. The bucket failing fails the request (503): serving a record that may
//! have been deleted meanwhile would be worse.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::Error;
use crate::bucket::{Bucket, Key};
use crate::cache::store::{Link, TagRecord};
use crate::cache::{Cache, Referrer};
use crate::digest::Digest;
use crate::reference::{Registry, RepoName, Tag};

/// A link or tag record is a few dozen bytes; a referrer a few hundred plus annotations.
const RECORD_LIMIT: usize = 64 << 10;

pub(super) struct Record {
    namespace: Registry,
    cache: Arc<Cache>,
    bucket: Option<Arc<Bucket>>,
}

impl Record {
    pub fn new(namespace: Registry, cache: Arc<Cache>, bucket: Option<Arc<Bucket>>) -> Record {
        Record {
            namespace,
            cache,
            bucket,
        }
    }

    pub fn bucket(&self) -> Option<&Arc<Bucket>> {
        self.bucket.as_ref()
    }

    pub async fn tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(self.cache.tag(&self.namespace, repo, tag).await.map(|r| r.digest));
        };
        let key = Key::tag(&self.namespace, repo, tag).hosted();
        let Some((bytes, _)) = bucket.read(&key, RECORD_LIMIT).await? else {
            return Ok(None);
        };
        let record: TagRecord = serde_json::from_slice(&bytes).map_err(|e| unreadable(&key, &e))?;
        Ok(Some(record.digest))
    }

    pub async fn set_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> Result<(), Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(self.cache.set_tag(&self.namespace, repo, tag, digest).await?);
        };
        let record = serde_json::to_vec(&TagRecord::new(digest)).map_err(std::io::Error::other)?;
        let key = Key::tag(&self.namespace, repo, tag).hosted();
        Ok(bucket.put(&key, Bytes::from(record), Some("application/json")).await?)
    }

    pub async fn remove_tag(&self, repo: &RepoName, tag: &Tag) -> Result<(), Error> {
        match &self.bucket {
            None => Ok(self.cache.remove_tag(&self.namespace, repo, tag).await?),
            Some(bucket) => Ok(bucket.delete(&Key::tag(&self.namespace, repo, tag).hosted()).await?),
        }
    }

    /// The repository's tags, sorted.
    pub async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(self.cache.repo_tags(&self.namespace, repo).await?);
        };
        let prefix = Key::tags_of(&self.namespace, repo).hosted();
        let listed = bucket.list(prefix.as_str()).await?;
        // S3 lists keys in order: the tags come sorted.
        let names = listed.iter().filter_map(|l| l.key.strip_prefix(prefix.as_str()));
        Ok(names.map(str::to_owned).collect())
    }

    /// Whether the repository holds the content, and the size it was pushed with.
    pub async fn linked(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Link>, Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(self.cache.linked(&self.namespace, repo, digest).await?);
        };
        let key = Key::link(&self.namespace, repo, digest).hosted();
        Ok(bucket
            .read(&key, RECORD_LIMIT)
            .await?
            .map(|(bytes, _)| Link::parse(&bytes)))
    }

    pub async fn link(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<(), Error> {
        let Some(bucket) = &self.bucket else {
            self.cache.link(&self.namespace, repo, digest, Some(size)).await?;
            return Ok(());
        };
        let key = Key::link(&self.namespace, repo, digest).hosted();
        Ok(bucket.put(&key, Bytes::from(size.to_string()), None).await?)
    }

    pub async fn unlink(&self, repo: &RepoName, digest: &Digest) -> Result<(), Error> {
        match &self.bucket {
            None => Ok(self.cache.unlink(&self.namespace, repo, digest).await?),
            Some(bucket) => Ok(bucket
                .delete(&Key::link(&self.namespace, repo, digest).hosted())
                .await?),
        }
    }

    /// Every hosted repository that holds something.
    pub async fn repositories(&self) -> Result<Vec<RepoName>, Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(self.cache.repositories(&self.namespace)?);
        };
        let prefix = Key::repositories_of(&self.namespace).hosted();
        let listed = bucket.list(prefix.as_str()).await?;
        let named = listed.iter().filter_map(|l| {
            let rest = l.key.strip_prefix(prefix.as_str())?;
            let (repo, _) = rest.split_once("/_links/")?;
            RepoName::on(&self.namespace, repo).ok()
        });
        Ok(named.collect::<BTreeSet<_>>().into_iter().collect())
    }

    pub async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<Referrer>, Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(self.cache.referrers(&self.namespace, repo, subject).await?);
        };
        let prefix = Key::referrers_of(&self.namespace, repo, subject).hosted();
        let mut found = Vec::new();
        for listed in bucket.list(prefix.as_str()).await? {
            let key = Key::listed(listed.key);
            // Removed since the listing: no longer a referrer.
            let Some((bytes, _)) = bucket.read(&key, RECORD_LIMIT).await? else {
                continue;
            };
            found.push(serde_json::from_slice(&bytes).map_err(|e| unreadable(&key, &e))?);
        }
        Ok(found)
    }

    pub async fn put_referrer(&self, repo: &RepoName, subject: &Digest, referrer: &Referrer) -> Result<(), Error> {
        let Some(bucket) = &self.bucket else {
            return Ok((self.cache)
                .put_referrer(&self.namespace, repo, subject, referrer)
                .await?);
        };
        let bytes = serde_json::to_vec(referrer).map_err(std::io::Error::other)?;
        let key = Key::referrer(&self.namespace, repo, subject, &referrer.digest).hosted();
        Ok(bucket.put(&key, Bytes::from(bytes), Some("application/json")).await?)
    }

    pub async fn remove_referrer(&self, repo: &RepoName, subject: &Digest, digest: &Digest) -> Result<(), Error> {
        let Some(bucket) = &self.bucket else {
            return Ok((self.cache)
                .remove_referrer(&self.namespace, repo, subject, digest)
                .await?);
        };
        Ok(bucket
            .delete(&Key::referrer(&self.namespace, repo, subject, digest).hosted())
            .await?)
    }
}

fn unreadable(key: &Key, error: &serde_json::Error) -> Error {
    Error::Bucket(format!("{key} is not a record: {error}"))
}
