//! Blobs: served from the cache, or from the fill already fetching them, or by claiming a
//! fill and giving it the upstream as its source; passed through uncached when the cache
//! cannot take them. This is the one place that decides between the cache and the upstream.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::isolation::Kind;
use super::{Error, Mirror, Want};
use crate::body::Body;
use crate::cache::{Failure, Fill, Lookup, Opened, Source, SourceError};
use crate::digest::Digest;
use crate::reference::RepoName;
use crate::upstream::{self, BlobStream, Upstream};

pub enum BlobAnswer {
    Cached {
        file: std::fs::File,
        size: u64,
    },
    /// What a HEAD wants of a blob the cache lacks: its size, from the upstream.
    Size {
        size: u64,
    },
    /// Being fetched into the cache; readers follow the fill.
    Filling {
        fill: Arc<Fill>,
        size: Option<u64>,
    },
    /// Passed through uncached, because the cache could not take it.
    Streaming {
        body: Body,
        size: Option<u64>,
    },
}

impl Mirror {
    pub async fn blob(&self, repo: &RepoName, digest: &Digest, want: Want) -> Result<BlobAnswer, Error> {
        match want {
            Want::Body => self.blob_body(repo, digest).await,
            Want::Size => self.blob_size(repo, digest).await,
        }
    }

    async fn blob_body(&self, repo: &RepoName, digest: &Digest) -> Result<BlobAnswer, Error> {
        let linked = self.cache.linked(&self.registry, repo, digest).await?;
        let lookup = match self.offline {
            true => self.cache.find(digest).await?,
            false => self.cache.find_or_claim(digest).await?,
        };
        match lookup {
            // What the cache holds, or another request is fetching (perhaps through another
            // repository), is served through this one only once it is known to be here.
            Lookup::Cached { file, size } => {
                self.confirm_unless(linked, repo, digest).await?;
                Ok(BlobAnswer::Cached { file, size })
            }
            Lookup::Filling(fill) => {
                self.confirm_unless(linked, repo, digest).await?;
                self.follow(repo, digest, fill, Want::Body).await
            }
            // Fetched through this repository: the upstream's answer is the confirmation.
            Lookup::Claimed(claim) => {
                let fill = claim.start(self.source(repo, digest));
                let answer = self.follow(repo, digest, fill, Want::Body).await?;
                self.link(repo, digest).await?;
                Ok(answer)
            }
            Lookup::Absent => Err(Error::OfflineBlob),
        }
    }

    async fn confirm_unless(&self, linked: bool, repo: &RepoName, digest: &Digest) -> Result<(), Error> {
        match linked {
            true => Ok(()),
            false => self.confirm(repo, digest, Kind::Blob).await,
        }
    }

    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<BlobAnswer, Error> {
        match self.cache.find(digest).await? {
            Lookup::Cached { file, size } => {
                self.confirm(repo, digest, Kind::Blob).await?;
                Ok(BlobAnswer::Cached { file, size })
            }
            Lookup::Filling(fill) => {
                self.confirm(repo, digest, Kind::Blob).await?;
                self.follow(repo, digest, fill, Want::Size).await
            }
            Lookup::Absent | Lookup::Claimed(_) => self.size_upstream(repo, digest).await,
        }
    }

    async fn size_upstream(&self, repo: &RepoName, digest: &Digest) -> Result<BlobAnswer, Error> {
        self.online(Error::OfflineBlob)?;
        let size = self.upstream.blob_size(repo, digest).await;
        let size = size.map_err(|e| Error::from_upstream(e, Error::BlobUnknown))?;
        Ok(BlobAnswer::Size { size })
    }

    async fn follow(&self, repo: &RepoName, digest: &Digest, fill: Arc<Fill>, want: Want) -> Result<BlobAnswer, Error> {
        match fill.ready().await {
            Ok(Some(size)) if want == Want::Size => Ok(BlobAnswer::Size { size }),
            // A HEAD asks the upstream when the fill cannot say: it never takes a body.
            Ok(None) | Err(Failure::Uncacheable(_)) if want == Want::Size => self.size_upstream(repo, digest).await,
            Ok(size) => Ok(BlobAnswer::Filling { fill, size }),
            Err(Failure::Uncacheable(reason)) => {
                tracing::warn!(%digest, reason, "passing the blob through uncached");
                match fill.take_unused() {
                    Some(opened) => Ok(self.relay(digest, opened)),
                    None => self.pass_through(repo, digest).await,
                }
            }
            Err(Failure::Refused(e)) => Err(refusal(&e)),
            Err(Failure::Aborted(reason)) => Err(Error::protocol(reason)),
        }
    }

    /// Opens the blob anew for this client alone, uncached.
    async fn pass_through(&self, repo: &RepoName, digest: &Digest) -> Result<BlobAnswer, Error> {
        let stream = self.upstream.open_blob(repo, digest, 0).await;
        let stream = stream.map_err(|e| Error::from_upstream(e, Error::BlobUnknown))?;
        Ok(self.relay(digest, opened(stream)))
    }

    fn relay(&self, digest: &Digest, opened: Opened) -> BlobAnswer {
        let body = upstream::pass_through(digest.clone(), opened.size, opened.bytes, self.metrics.clone());
        BlobAnswer::Streaming {
            body,
            size: opened.size,
        }
    }

    /// The fill's source: always through this repository, and through the registry again on
    /// every resume, never a cached redirect.
    fn source(&self, repo: &RepoName, digest: &Digest) -> UpstreamBlob {
        UpstreamBlob {
            upstream: self.upstream.clone(),
            repo: repo.clone(),
            digest: digest.clone(),
        }
    }
}

struct UpstreamBlob {
    upstream: Arc<Upstream>,
    repo: RepoName,
    digest: Digest,
}

impl Source for UpstreamBlob {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened, SourceError>> {
        Box::pin(async move {
            let stream = self.upstream.open_blob(&self.repo, &self.digest, offset).await;
            let stream = stream.map_err(|e| Arc::new(e) as SourceError)?;
            Ok(opened(stream))
        })
    }
}

fn opened(stream: BlobStream) -> Opened {
    Opened {
        size: stream.size,
        bytes: stream.into_stream(),
    }
}

/// What the upstream said when it refused the fill's source.
fn refusal(error: &SourceError) -> Error {
    match error.downcast_ref::<upstream::Error>() {
        Some(e) => Error::from_upstream(e.clone(), Error::BlobUnknown),
        None => Error::protocol(error.to_string()),
    }
}
