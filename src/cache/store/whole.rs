//! Content read whole into memory: manifests, and the image configs of `docker save` bundles.
//! The size is checked before a byte is read, so content over `manifest::MAX_SIZE` (a file put
//! in the data directory by hand, say, or a bundle's) can never make the process hold all of it.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{Staged, Store};
use crate::digest::Digest;
use crate::manifest;

/// Content bigger than a manifest may be, left unread.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{digest} is {size} bytes, more than the {} bytes a manifest (or config) may have",
    manifest::MAX_SIZE
)]
pub struct TooLarge {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// For callers to whom an oversized manifest is one more unreadable file.
impl From<ReadError> for io::Error {
    fn from(error: ReadError) -> io::Error {
        match error {
            ReadError::TooLarge(e) => io::Error::new(io::ErrorKind::InvalidData, e),
            ReadError::Io(e) => e,
        }
    }
}

impl Store {
    /// A manifest's bytes; `None` when the content is not on disk.
    pub async fn read_manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>, ReadError> {
        read_blocking(self.blob_path(digest), digest.clone()).await
    }

    /// `read_manifest`, for startup and the command line, where no runtime drives the file system.
    pub fn read_manifest_blocking(&self, digest: &Digest) -> Result<Option<Vec<u8>>, ReadError> {
        read_bounded(&self.blob_path(digest), digest)
    }

    /// A manifest or config staged earlier (verified, not yet committed), read back.
    pub async fn read_staged(&self, staged: &Staged, digest: &Digest) -> Result<Vec<u8>, ReadError> {
        let read = read_blocking(staged.path.clone(), digest.clone()).await?;
        read.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound).into())
    }
}

async fn read_blocking(path: PathBuf, digest: Digest) -> Result<Option<Vec<u8>>, ReadError> {
    tokio::task::spawn_blocking(move || read_bounded(&path, &digest))
        .await
        .map_err(io::Error::other)?
}

fn read_bounded(path: &Path, digest: &Digest) -> Result<Option<Vec<u8>>, ReadError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let limit = manifest::MAX_SIZE as u64;
    let too_large = |size| TooLarge {
        digest: digest.clone(),
        size,
    };
    let size = file.metadata()?.len();
    if size > limit {
        return Err(too_large(size).into());
    }
    // Stored content never changes, but the cap holds for a file that grew after the check.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64).into());
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse file of `size` bytes where the store keeps `digest`.
    fn place(store: &Store, digest: &Digest, size: u64) {
        let file = std::fs::File::create(store.blob_path(digest)).expect("create");
        file.set_len(size).expect("set_len");
    }

    #[tokio::test]
    async fn a_manifest_is_read_whole_up_to_the_limit_and_refused_unread_past_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path()).expect("open");
        let limit = manifest::MAX_SIZE as u64;
        let at_limit = Digest::sha256_of(b"at the limit");
        place(&store, &at_limit, limit);
        let read = store.read_manifest(&at_limit).await.expect("read").expect("present");
        assert_eq!(read.len() as u64, limit);

        let over = Digest::sha256_of(b"over the limit");
        place(&store, &over, limit + 1);
        match store.read_manifest(&over).await {
            Err(ReadError::TooLarge(e)) => assert_eq!((e.digest, e.size), (over.clone(), limit + 1)),
            other => panic!("an oversized manifest is refused, not {other:?}"),
        }
        let refused = store.read_manifest_blocking(&over).map(|_| ());
        assert!(matches!(refused, Err(ReadError::TooLarge(_))), "{refused:?}");
        let message = io::Error::from(ReadError::from(TooLarge { digest: over, size: 1 })).to_string();
        assert!(message.contains("more than the 4194304 bytes"), "{message}");

        let absent = Digest::sha256_of(b"absent");
        assert!(store.read_manifest(&absent).await.expect("read").is_none());
    }
}
