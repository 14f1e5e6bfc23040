//! `import --bucket`: the images an import added go in the fleet's bucket too, so that every
//! instance on it serves them, online or offline, and not only the one the bundle reached.
//!
//! Everything read here was verified on its way into the data directory (the import hashed
//! it), so it goes in as the mirror's own uploads do: content the bucket lacks (a blob in one
//! PUT or a multipart upload), each manifest with its media type, the repository's links, and
//! the tag record last, so that an instance that finds the tag finds everything it names.
//! An image of a hosted repository goes in the bucket's hosted part, which is then its record.

use std::io;

use bytes::Bytes;

use crate::bucket::{self, Bucket, Key};
use crate::cache::store::{Store, TagRecord};
use crate::cache::vouched;
use crate::digest::Digest;
use crate::reference::{ImageRef, Reference, Registry, Tag};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Bucket(#[from] bucket::Error),
    #[error("data directory: {0}")]
    Io(#[from] io::Error),
    #[error("{image}: {digest} is not in the data directory")]
    Missing { image: String, digest: Digest },
}

/// What went in the bucket.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shared {
    /// Blobs and manifests uploaded, and the blobs' bytes.
    pub uploaded: usize,
    pub bytes: u64,
    /// Blobs and manifests the bucket had already.
    pub present: usize,
}

/// Puts each image (its manifests, the blobs they name, its repository's links to them and
/// its tag record) from the data directory in the bucket; those named under one of the
/// `hosted` namespaces in its hosted part.
pub async fn share(
    store: &Store,
    bucket: &Bucket,
    images: &[(ImageRef, Digest)],
    hosted: &[Registry],
) -> Result<Shared, Error> {
    let mut shared = Shared::default();
    for (image, digest) in images {
        let hosted = hosted.contains(&image.registry);
        let sharing = Sharing {
            store,
            bucket,
            image,
            hosted,
        };
        let reached = sharing.tree(digest, &mut shared).await?;
        // Links once the content is in, the root's last: a link found means what it names
        // and all below it are there.
        for digest in reached.iter().rev() {
            sharing.link(digest).await?;
        }
        if let Reference::Tag(tag) = &image.reference {
            if let Some(record) = store.tag(&image.registry, &image.repo, tag).await? {
                sharing.tag(tag, &record).await?;
            }
        }
    }
    Ok(shared)
}

struct Sharing<'a> {
    store: &'a Store,
    bucket: &'a Bucket,
    image: &'a ImageRef,
    /// Whether the image is a hosted repository's, so goes in the bucket's hosted part.
    hosted: bool,
}

impl Sharing<'_> {
    /// Where `key` is for this image: the hosted part's copy of it, for a hosted image.
    fn key(&self, key: Key) -> Key {
        match self.hosted {
            true => key.hosted(),
            false => key,
        }
    }

    /// The manifest `root` and everything it reaches that the data directory holds (a child
    /// manifest it lacks is a platform the bundle left out); what it reached, each
    /// manifest before the content it names.
    async fn tree(&self, root: &Digest, shared: &mut Shared) -> Result<Vec<Digest>, Error> {
        let mut manifests = vec![root.clone()];
        let mut reached = Vec::new();
        while let Some(digest) = manifests.pop() {
            let Some(media_type) = self.store.media_type(&digest).await? else {
                if digest == *root {
                    return Err(self.missing(&digest));
                }
                continue;
            };
            let bytes = self.store.read_manifest(&digest).await.map_err(io::Error::from)?;
            let bytes = bytes.ok_or_else(|| self.missing(&digest))?;
            reached.push(digest.clone());
            for child in vouched(&media_type, &bytes) {
                match crate::manifest::is_manifest(&child.media_type) {
                    true => manifests.push(child.digest.clone()),
                    false => {
                        self.blob(&child.digest, shared).await?;
                        reached.push(child.digest);
                    }
                }
            }
            let key = self.key(Key::manifest(&digest));
            if self.bucket.size(&key).await?.is_some() {
                shared.present += 1;
                continue;
            }
            let bytes = Bytes::from(bytes);
            bucket::retried(|| self.bucket.put(&key, bytes.clone(), Some(&media_type))).await?;
            shared.uploaded += 1;
        }
        Ok(reached)
    }

    async fn blob(&self, digest: &Digest, shared: &mut Shared) -> Result<(), Error> {
        let key = self.key(Key::blob(digest));
        let file = self.store.open(digest).await?.ok_or_else(|| self.missing(digest))?;
        let size = file.metadata()?.len();
        let uploaded = bucket::retried(|| self.bucket.upload_unless_there(&key, &file, size)).await?;
        match uploaded {
            true => (shared.uploaded, shared.bytes) = (shared.uploaded + 1, shared.bytes + size),
            false => shared.present += 1,
        }
        Ok(())
    }

    /// The repository's link to `digest`, as the import made it.
    async fn link(&self, digest: &Digest) -> Result<(), Error> {
        let image = self.image;
        let Some(link) = self.store.linked(&image.registry, &image.repo, digest).await? else {
            return Ok(());
        };
        let key = self.key(Key::link(&image.registry, &image.repo, digest));
        let text = Bytes::from(link.text());
        Ok(bucket::retried(|| self.bucket.put(&key, text.clone(), None)).await?)
    }

    async fn tag(&self, tag: &Tag, record: &TagRecord) -> Result<(), Error> {
        let key = self.key(Key::tag(&self.image.registry, &self.image.repo, tag));
        let json = serde_json::to_vec(record).map_err(io::Error::other)?;
        Ok(self
            .bucket
            .put(&key, Bytes::from(json), Some("application/json"))
            .await?)
    }

    fn missing(&self, digest: &Digest) -> Error {
        Error::Missing {
            image: self.image.to_string(),
            digest: digest.clone(),
        }
    }
}
