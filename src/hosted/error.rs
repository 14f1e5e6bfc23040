//! Why a hosted repository could not do what was asked, in its own words; `api/error` maps
//! each to the distribution spec's status and code.

use std::io;

use crate::cache::store;
use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository unknown: nothing was pushed to it")]
    NameUnknown,
    #[error("manifest unknown to this repository")]
    ManifestUnknown,
    #[error("blob unknown to this repository")]
    BlobUnknown,
    #[error("upload unknown: cancelled, finished, expired or never started")]
    UploadUnknown,
    #[error("the content's digest is {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("this chunk starts at {start}, but the upload holds {held} bytes")]
    OutOfOrder { start: u64, held: u64 },
    #[error("more than the {limit} bytes this registry takes")]
    TooLarge { limit: u64 },
    #[error("the disk is down to {free} bytes free, under the {keep} the mirror keeps")]
    DiskFull { free: u64, keep: u64 },
    #[error("invalid manifest: {0}")]
    ManifestInvalid(String),
    #[error("the manifest names {0}, which this repository does not hold")]
    ManifestBlobUnknown(Digest),
    #[error("the upload's body broke off: {0}")]
    Interrupted(io::Error),
    #[error("storage failed: {0}")]
    Io(#[from] io::Error),
    #[error("the stored manifest is not served: {0}")]
    ManifestTooLarge(store::TooLarge),
    /// The shared bucket, which holds the hosted repositories' record, failed.
    #[error("the shared store failed: {0}")]
    Bucket(String),
}

impl From<crate::bucket::Error> for Error {
    fn from(error: crate::bucket::Error) -> Error {
        Error::Bucket(error.to_string())
    }
}

impl From<store::ReadError> for Error {
    fn from(error: store::ReadError) -> Error {
        match error {
            store::ReadError::TooLarge(e) => Error::ManifestTooLarge(e),
            store::ReadError::Io(e) => Error::Io(e),
        }
    }
}
