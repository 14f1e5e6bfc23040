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
        let object = passed_over(&key, bucket.get(&key, 0).await)?;
        Some(BucketBlob::found(bucket.clone(), key, object))
    }

    /// The size of the bucket's copy of the blob, when it holds one.
    pub(super) async fn blob_size_in_bucket(&self, digest: &Digest) -> Option<u64> {
        let bucket = self.bucket.as_ref()?;
        let key = Key::blob(digest);
        passed_over(&key, bucket.size(&key).await)
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
            let uploaded = bucket::retried(|| bucket.upload_unless_there(&key, &file, size)).await;
            match uploaded {
                Ok(_) => tracing::debug!(%digest, size, "blob in the bucket"),
                Err(e) => tracing::warn!(%digest, error = %e, "cannot put the blob in the bucket"),
            }
        });
    }

    /// A manifest from the bucket, verified against its digest and kept in the cache.
    pub(super) async fn manifest_in_bucket(&self, digest: &Digest) -> Result<Option<Manifest>, super::Error> {
        let Some(bucket) = &self.bucket else {
            return Ok(None);
        };
        let key = Key::manifest(digest);
        let Some(manifest) = passed_over(&key, manifest_in(bucket, key.clone(), digest).await) else {
            return Ok(None);
        };
        self.cache.put_manifest(digest, &manifest).await?;
        Ok(Some(manifest))
    }

    /// Puts a manifest this instance fetched from the upstream in the bucket, in the background.
    pub(super) fn publish_manifest(&self, digest: &Digest, manifest: &Manifest) {
        let content_type = Some(manifest.media_type.clone());
        self.publish(
            Key::manifest(digest),
            manifest.bytes.clone(),
            content_type,
            Write::Retried,
        );
    }

    /// Puts small bytes in the bucket in the background, if there is a bucket.
    fn publish(&self, key: Key, bytes: Bytes, content_type: Option<Arc<str>>, write: Write) {
        let Some(bucket) = self.bucket.clone() else {
            return;
        };
        self.uploads.spawn(async move {
            let put = || bucket.put(&key, bytes.clone(), content_type.as_deref());
            let put = match write {
                Write::Once => put().await,
                Write::Retried => bucket::retried(put).await,
            };
            if let Err(e) = put {
                tracing::warn!(%key, error = %e, "cannot put it in the bucket");
            }
        });
    }

    /// The link another instance put in the bucket, saying `repo` holds `digest`.
    pub(super) async fn link_in_bucket(&self, repo: &RepoName, digest: &Digest) -> Option<Link> {
        let bucket = self.bucket.as_ref()?;
        let key = Key::link(&self.registry, repo, digest);
        let (bytes, _) = passed_over(&key, bucket.read(&key, LINK_LIMIT).await)?;
        Some(Link::parse(&bytes))
    }

    /// Puts a link made here in the bucket, in the background.
    pub(super) fn publish_link(&self, repo: &RepoName, digest: &Digest, link: Link) {
        let key = Key::link(&self.registry, repo, digest);
        // A link never stops being true, so a retried write cannot put back a stale one.
        self.publish(key, Bytes::from(link.text()), None, Write::Retried);
    }

    /// The tag's record in the bucket, as another instance last checked it.
    pub(super) async fn tag_in_bucket(&self, repo: &RepoName, tag: &Tag) -> Option<TagRecord> {
        let bucket = self.bucket.as_ref()?;
        let key = Key::tag(&self.registry, repo, tag);
        let (bytes, _) = passed_over(&key, bucket.read(&key, TAG_RECORD_LIMIT).await)?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Puts a tag this instance checked with the upstream in the bucket, in the background.
    pub(super) fn publish_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) {
        let Ok(record) = serde_json::to_vec(&TagRecord::new(digest)) else {
            return;
        };
        let key = Key::tag(&self.registry, repo, tag);
        // Once: a record retried a minute late could put back one older than another's.
        self.publish(
            key,
            Bytes::from(record),
            Some(Arc::from("application/json")),
            Write::Once,
        );
    }
}

/// Whether a write to the bucket is tried again when it fails (`bucket::retried`).
enum Write {
    Once,
    Retried,
}

/// What the bucket answered, or nothing when it failed: a failing bucket is passed over like
/// one that lacks the object, and said so in the log.
fn passed_over<T>(key: &Key, answer: Result<Option<T>, bucket::Error>) -> Option<T> {
    answer.unwrap_or_else(|e| {
        tracing::warn!(%key, error = %e, "bucket unavailable; asking past it");
        None
    })
}

/// A tag record is under a hundred bytes; anything much bigger is not one.
const TAG_RECORD_LIMIT: usize = 4096;

/// A link holds a size in decimal, or nothing.
const LINK_LIMIT: usize = 64;

/// A fill's source reading the bucket's copy of a blob, resumed with a range.
pub struct BucketBlob {
    bucket: Arc<Bucket>,
    key: Key,
    /// The whole object, as the GET that found it opened it: the fill's first open.
    first: Mutex<Option<bucket::Object>>,
}

impl BucketBlob {
    /// The blob under `key`, which a GET just opened whole as `object`.
    pub fn found(bucket: Arc<Bucket>, key: Key, object: bucket::Object) -> BucketBlob {
        BucketBlob {
            bucket,
            key,
            first: Mutex::new(Some(object)),
        }
    }

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
/// The manifest the bucket keeps under `key`, checked against `digest`: a copy that is not a
/// manifest counts as none, and one that fails its digest is deleted (the next miss puts a
/// good one) and counts as none too.
pub async fn manifest_in(bucket: &Arc<Bucket>, key: Key, digest: &Digest) -> Result<Option<Manifest>, bucket::Error> {
    let (bytes, media_type) = match bucket.read(&key, manifest::MAX_SIZE).await? {
        Some((bytes, Some(media_type))) if manifest::is_manifest(&media_type) => (bytes, media_type),
        _ => return Ok(None),
    };
    if !digest.matches(&bytes) {
        tracing::error!(%digest, %key, "the bucket's copy of the manifest does not match its digest; deleting it");
        drop_corrupt(bucket.clone(), key);
        return Ok(None);
    }
    Ok(Some(Manifest {
        bytes,
        media_type: Arc::from(media_type),
    }))
}

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
