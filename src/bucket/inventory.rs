//! What the bucket holds, for `regmirror cache … --bucket`: objects listed a page at a time,
//! counted by kind, tags named, and every blob and manifest hashed again, a copy that
//! does not match its key deleted so the next miss fetches it afresh.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use http_body_util::BodyDataStream;
use rusty_s3::actions::ListObjectsV2;

use super::request::Payload;
use super::{answer_text, expect_ok, Bucket, Error, Key, LISTING_LIMIT};
use crate::digest::Hasher;

/// One listed object.
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// When the object was written, as the bucket says.
    pub modified: Option<SystemTime>,
}

/// An object's `LastModified` (ISO 8601).
fn modified(text: &str) -> Option<SystemTime> {
    text.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

/// Counts and sizes of what the bucket holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    pub blobs: u64,
    pub blob_bytes: u64,
    pub manifests: u64,
    pub tags: u64,
    pub links: u64,
}

/// What a re-hash of the bucket found.
#[derive(Debug, Default)]
pub struct Verified {
    pub checked: u64,
    /// Keys whose bytes did not match; each was deleted.
    pub deleted: Vec<String>,
}

impl Bucket {
    /// Every object whose key starts with `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, Error> {
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let list = |b, c| {
                let mut action = ListObjectsV2::new(b, Some(c));
                action.with_prefix(prefix);
                if let Some(token) = &token {
                    action.with_continuation_token(token.as_str());
                }
                action
            };
            let key = Key::listed(format!("?list-type=2&prefix={prefix}"));
            let response = self.act(list, &[], Payload::Empty).await?;
            expect_ok(&response, "GET", &key)?;
            let text = answer_text(response.into_body(), "list", &key, LISTING_LIMIT).await?;
            let page = ListObjectsV2::parse_response(&text).map_err(|e| Error::Answer {
                action: "list",
                key: key.to_string(),
                reason: e.to_string(),
            })?;
            let objects = page.contents.into_iter();
            listed.extend(objects.map(|o| Listed {
                size: o.size.unwrap_or_default(),
                modified: o.last_modified.as_deref().and_then(modified),
                key: o.key,
            }));
            match page.next_continuation_token {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => return Ok(listed),
            }
        }
    }

    /// Counts what the bucket holds, by kind.
    pub async fn inventory(&self) -> Result<Inventory, Error> {
        let mut inventory = Inventory::default();
        for blob in self.list(Key::BLOBS).await? {
            inventory.blobs += 1;
            inventory.blob_bytes += blob.size;
        }
        inventory.manifests = self.list(Key::MANIFESTS).await?.len() as u64;
        for record in self.list(Key::REPOSITORIES).await? {
            match Key::listed(record.key).tag_name().is_some() {
                true => inventory.tags += 1,
                false => inventory.links += 1,
            }
        }
        Ok(inventory)
    }

    /// Every tag the bucket holds a record of, as `registry/repository:tag`.
    pub async fn tags(&self) -> Result<Vec<String>, Error> {
        let records = self.list(Key::REPOSITORIES).await?.into_iter();
        Ok(records
            .filter_map(|record| Key::listed(record.key).tag_name())
            .collect())
    }

    /// Deletes cached content (blobs and manifest copies, never the hosted part) written
    /// over `older_than` ago, and the oldest while the blobs' bytes are over `max_bytes`:
    /// what `cache prune` does to a data directory, by write time, since the bucket keeps no
    /// access time. Each costs at most a refetch. Returns the objects and bytes deleted.
    pub async fn prune(&self, older_than: Option<Duration>, max_bytes: Option<u64>) -> Result<(u64, u64), Error> {
        let mut content = self.list(Key::BLOBS).await?;
        content.extend(self.list(Key::MANIFESTS).await?);
        content.sort_by_key(|object| object.modified);
        let now = SystemTime::now();
        let age = |object: &Listed| object.modified.and_then(|at| now.duration_since(at).ok());
        let mut total: u64 = content.iter().map(|object| object.size).sum();
        let (mut objects, mut bytes) = (0, 0);
        for object in content {
            let too_old = older_than.is_some_and(|limit| age(&object).is_none_or(|age| age >= limit));
            let too_big = max_bytes.is_some_and(|max| total > max);
            if !too_old && !too_big {
                continue;
            }
            self.delete(&Key::listed(object.key)).await?;
            total -= object.size;
            (objects, bytes) = (objects + 1, bytes + object.size);
        }
        Ok((objects, bytes))
    }

    /// Hashes every blob and manifest again, deleting each whose bytes do not match its key.
    pub async fn verify(&self) -> Result<Verified, Error> {
        let mut verified = Verified::default();
        for prefix in [Key::BLOBS, Key::MANIFESTS] {
            for object in self.list(prefix).await? {
                let key = Key::listed(object.key);
                verified.checked += 1;
                if !self.matches_its_key(&key).await? {
                    self.delete(&key).await?;
                    verified.deleted.push(key.to_string());
                }
            }
        }
        Ok(verified)
    }

    /// Whether the object's bytes hash to the digest its key names; a key naming no digest
    /// does not match.
    async fn matches_its_key(&self, key: &Key) -> Result<bool, Error> {
        let Some(digest) = key.digest() else {
            return Ok(false);
        };
        let Some(object) = self.get(key, 0).await? else {
            // Deleted meanwhile: nothing to check.
            return Ok(true);
        };
        let mut hasher = Hasher::new(digest.algorithm());
        let mut bytes = BodyDataStream::new(object.body);
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|e| Error::Unreachable(e.to_string()))?;
            hasher.update(&chunk);
        }
        Ok(hasher.finish() == digest)
    }
}
