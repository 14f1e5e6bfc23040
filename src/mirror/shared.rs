//! The bucket several instances share (`--bucket`), as the mirror uses it: read before the
//! fleet and the upstream, filled with what this instance fetched from the upstream.
//!
//! What comes out of the bucket is checked like anything else: a blob by the fill that
//! streams it (digest and size), a manifest by hashing it, and content found there is served
//! through a repository only once it is known to be in that repository, as cached content is.
//! The bucket failing is never the client's failure: it is logged and the mirror goes on as
//! if the bucket lacked the content.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::TryStreamExt;
use http_body_util::BodyDataStream;
use tokio::task::JoinSet;

use super::{Mirror, TagRecord};
use crate::bucket::{self, Bucket, Key};
use crate::cache::store::Link;
use crate::cache::{Fill, Manifest, Opened, Source, SourceError};
use crate::digest::Digest;
use crate::manifest;
use crate::reference::{RepoName, Tag};
use crate::sync::LockExt;

/// Uploads to the bucket under way, so that a shutdown or a `prefetch` can wait for them.
#[derive(Default)]
pub(super) struct Uploads(Mutex<JoinSet<()>>);

impl Uploads {
    pub(super) fn spawn(&self, upload: impl Future<Output = ()> + Send + 'static) {
        let mut uploads = self.0.locked();
        // Reap what finished, so the set holds only uploads in flight.
        while uploads.try_join_next().is_some() {}
        uploads.spawn(upload);
    }

    pub(super) async fn settle(&self) {
        let mut uploads = std::mem::take(&mut *self.0.locked());
        while uploads.join_next().await.is_some() {}
    }
}

/// Set by a fill's source once it has read from the upstream: what it fetched is then put in
/// the bucket, and what it read from a member (who puts it there) or the bucket is not.
#[derive(Clone, Default)]
pub(super) struct Fetched(Arc<AtomicBool>);

impl Fetched {
    pub(super) fn read_upstream(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Mirror {
    /// A source for the blob from the bucket, when it holds the blob: its GET is sent now, so
    /// that finding the blob and reading it is one request.
    pub(super) async fn blob_in_bucket(&self, digest: &Digest) -> Option<BucketBlob> {
        let bucket = self.bucket.as_ref()?;
        let key = Key::blob(digest);
        match bucket.get(&key, 0).await {
            Ok(object) => Some(BucketBlob {
                bucket: bucket.clone(),
                first: Mutex::new(Some(object?)),
                key,
            }),
            Err(e) => {
                tracing::warn!(%digest, error = %e, "bucket unavailable; asking past it");
                None
            }
        }
    }

    /// The size of the bucket's copy of the blob, when it holds one.
    pub(super) async fn blob_size_in_bucket(&self, digest: &Digest) -> Option<u64> {
        let bucket = self.bucket.as_ref()?;
        match bucket.size(&Key::blob(digest)).await {
            Ok(size) => size,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "bucket unavailable; asking past it");
                None
            }
        }
    }

    /// Once the fill has verified the blob, uploads it to the bucket if it came from the
    /// upstream, in the background: no client waits for it. The fill's own handle is read,
    /// so a blob the bounded data directory evicts at once still reaches the bucket.
    pub(super) fn publish_blob(&self, fill: Arc<Fill>, digest: &Digest, fetched: Fetched) {
        let Some(bucket) = self.bucket.clone() else {
            return;
        };
        let digest = digest.clone();
        self.uploads.spawn(async move {
            let Some((file, size)) = fill.verified().await else {
                return;
            };
            if !fetched.0.load(Ordering::Relaxed) {
                return;
            }
            let key = Key::blob(&digest);
            let uploaded = bucket::retried(|| upload_unless_there(&bucket, &key, &file, size)).await;
            match uploaded {
                Ok(()) => tracing::debug!(%digest, size, "blob in the bucket"),
                Err(e) => tracing::warn!(%digest, error = %e, "cannot put the blob in the bucket"),
            }
        });
    }

    /// A manifest from the bucket, verified against its digest and kept in the cache.
    pub(super) async fn manifest_in_bucket(&self, digest: &Digest) -> Result<Option<Manifest>, super::Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(None);
        };
        let read = bucket.read(&Key::manifest(digest), manifest::MAX_SIZE).await;
        let (bytes, media_type) = match read {
            Ok(Some((bytes, Some(media_type)))) if manifest::is_manifest(&media_type) => (bytes, media_type),
            Ok(_) => return Ok(None),
            Err(e) => {
                tracing::warn!(%digest, error = %e, "bucket unavailable; asking past it");
                return Ok(None);
            }
        };
        if !digest.matches(&bytes) {
            tracing::error!(%digest, "the bucket's copy of the manifest does not match its digest; deleting it");
            drop_corrupt(bucket.clone(), Key::manifest(digest));
            return Ok(None);
        }
        let manifest = Manifest {
            bytes,
            media_type: Arc::from(media_type),
        };
        self.cache.put_manifest(digest, &manifest).await?;
        Ok(Some(manifest))
    }

    /// Puts a manifest this instance fetched from the upstream in the bucket, in the background.
    pub(super) fn publish_manifest(&self, digest: &Digest, manifest: &Manifest) {
        let Some(bucket) = self.bucket.clone() else {
            return;
        };
        let (digest, bytes, media_type) = (digest.clone(), manifest.bytes.clone(), manifest.media_type.clone());
        self.uploads.spawn(async move {
            let key = Key::manifest(&digest);
            let put = bucket::retried(|| bucket.put(&key, bytes.clone(), Some(&media_type))).await;
            if let Err(e) = put {
                tracing::warn!(%digest, error = %e, "cannot put the manifest in the bucket");
            }
        });
    }

    /// The link another instance put in the bucket, saying `repo` holds `digest`.
    pub(super) async fn link_in_bucket(&self, repo: &RepoName, digest: &Digest) -> Option<Link> {
        let bucket = self.bucket.as_ref()?;
        let read = bucket.read(&Key::link(&self.registry, repo, digest), LINK_LIMIT).await;
        match read {
            Ok(found) => found.map(|(bytes, _)| Link::parse(&bytes)),
            Err(e) => {
                tracing::warn!(%repo, %digest, error = %e, "bucket unavailable; asking past it");
                None
            }
        }
    }

    /// Puts a link made here in the bucket, in the background.
    pub(super) fn publish_link(&self, repo: &RepoName, digest: &Digest, link: Link) {
        let Some(bucket) = self.bucket.clone() else {
            return;
        };
        let key = Key::link(&self.registry, repo, digest);
        let text = Bytes::from(link.text());
        self.uploads.spawn(async move {
            // A link never stops being true, so a retried write cannot put back a stale one.
            let put = bucket::retried(|| bucket.put(&key, text.clone(), None)).await;
            if let Err(e) = put {
                tracing::warn!(%key, error = %e, "cannot put the link in the bucket");
            }
        });
    }

    /// The tag's record in the bucket, as another instance last checked it.
    pub(super) async fn tag_in_bucket(&self, repo: &RepoName, tag: &Tag) -> Option<TagRecord> {
        let bucket = self.bucket.as_ref()?;
        let read = bucket
            .read(&Key::tag(&self.registry, repo, tag), TAG_RECORD_LIMIT)
            .await;
        match read {
            Ok(Some((bytes, _))) => serde_json::from_slice(&bytes).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(%repo, %tag, error = %e, "bucket unavailable; asking past it");
                None
            }
        }
    }

    /// Puts a tag this instance checked with the upstream in the bucket, in the background.
    pub(super) fn publish_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) {
        let Some(bucket) = self.bucket.clone() else {
            return;
        };
        let key = Key::tag(&self.registry, repo, tag);
        let Ok(record) = serde_json::to_vec(&TagRecord::new(digest)) else {
            return;
        };
        self.uploads.spawn(async move {
            if let Err(e) = bucket.put(&key, Bytes::from(record), Some("application/json")).await {
                tracing::warn!(%key, error = %e, "cannot put the tag in the bucket");
            }
        });
    }
}

/// Uploads the blob unless another instance has put it there meanwhile.
async fn upload_unless_there(bucket: &Bucket, key: &Key, file: &std::fs::File, size: u64) -> Result<(), bucket::Error> {
    match bucket.size(key).await? {
        Some(_) => Ok(()),
        None => bucket.upload(key, file, size).await,
    }
}

/// A tag record is under a hundred bytes; anything much bigger is not one.
const TAG_RECORD_LIMIT: usize = 4096;

/// A link holds a size in decimal, or nothing.
const LINK_LIMIT: usize = 64;

/// A fill's source reading the bucket's copy of a blob, resumed with a range.
pub(super) struct BucketBlob {
    bucket: Arc<Bucket>,
    key: Key,
    /// The whole object, as the GET that found it opened it: the fill's first open.
    first: Mutex<Option<bucket::Object>>,
}

impl BucketBlob {
    async fn object(&self, offset: u64) -> Result<bucket::Object, SourceError> {
        if let Some(first) = (offset == 0).then(|| self.first.locked().take()).flatten() {
            return Ok(first);
        }
        let object = self.bucket.get(&self.key, offset).await.map_err(source_error)?;
        let gone = || bucket::Error::Answer {
            action: "GET",
            key: self.key.to_string(),
            reason: "the object is gone".into(),
        };
        object.ok_or_else(gone).map_err(source_error)
    }
}

impl Source for BucketBlob {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened, SourceError>> {
        Box::pin(async move {
            let object = self.object(offset).await?;
            let bytes = BodyDataStream::new(object.body).map_err(std::io::Error::other);
            Ok(Opened {
                size: object.len.map(|len| len + offset),
                bytes: Box::pin(bytes),
            })
        })
    }

    fn rejected(&self) {
        tracing::error!(key = %self.key, "the bucket's copy of the blob does not match its digest; deleting it");
        drop_corrupt(self.bucket.clone(), self.key.clone());
    }
}

/// Deletes a corrupt object, in the background, so the next miss fetches the content afresh
/// and puts a good copy in its place. Deleting one that another instance has just replaced
/// with a good copy costs one more fetch, never a wrong answer.
fn drop_corrupt(bucket: Arc<Bucket>, key: Key) {
    tokio::spawn(async move {
        if let Err(e) = bucket.delete(&key).await {
            tracing::warn!(%key, error = %e, "cannot delete the corrupt object");
        }
    });
}

fn source_error(error: bucket::Error) -> SourceError {
    Arc::new(error)
}
