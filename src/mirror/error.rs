//! Why the mirror could not answer: the content is unknown, the mirror is offline, the upstream
//! failed or sent something unservable, or the cache's disk failed. `api::error` decides what
//! each means over HTTP; nothing here knows.

use std::io;

use super::transfers::{Busy, Cap};
use crate::cache::store;
use crate::upstream;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository unknown to the upstream")]
    NameUnknown,
    #[error("manifest unknown to the upstream")]
    ManifestUnknown,
    #[error("blob unknown to the upstream")]
    BlobUnknown,
    #[error("manifest not in the cache, and the mirror is offline: it never asks the upstream")]
    OfflineManifest,
    #[error("blob not in the cache, and the mirror is offline: it never asks the upstream")]
    OfflineBlob,
    #[error("no tags of this repository are cached, and the mirror is offline")]
    OfflineTags,
    #[error("the upstream sent a manifest the mirror will not serve: {0}")]
    BadManifest(String),
    #[error(transparent)]
    Upstream(upstream::Error),
    #[error("the cached manifest is not served: {0}")]
    ManifestTooLarge(store::TooLarge),
    #[error("cache i/o failed: {0}")]
    Cache(#[from] io::Error),
    /// Too many upstream transfers under way, for the client's address or in all.
    #[error("{}", busy_message(.0))]
    Busy(Busy),
}

fn busy_message(busy: &Busy) -> String {
    let whose = match busy.cap {
        Cap::Address => "for this client address",
        Cap::Overall => "on this mirror",
    };
    format!(
        "{} upstream transfers are already under way {whose}, the most allowed; try again in {} s",
        busy.limit,
        busy.retry_after.as_secs()
    )
}

impl From<store::ReadError> for Error {
    fn from(error: store::ReadError) -> Error {
        match error {
            store::ReadError::TooLarge(e) => Error::ManifestTooLarge(e),
            store::ReadError::Io(e) => Error::Cache(e),
        }
    }
}

impl Error {
    /// Upstream "not found" (or Docker Hub's 401 for a repository that does not exist) means
    /// the content is unknown: `unknown` says which kind of unknown the request was after.
    pub fn from_upstream(error: upstream::Error, unknown: Error) -> Error {
        match error {
            upstream::Error::NotFound | upstream::Error::Denied => unknown,
            other => Error::Upstream(other),
        }
    }

    pub(super) fn protocol(message: impl Into<String>) -> Error {
        Error::Upstream(upstream::Error::Protocol(message.into()))
    }
}
