//! Blobs: served from the cache, or from the fill already fetching them, or by claiming a
//! fill and giving it the upstream as its source; passed through uncached when the cache
//! cannot take them. This is the one place that decides between the cache and the upstream,
//! and so the one that takes a place among the capped upstream transfers (`transfers`)
//! before starting one.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::isolation::Kind;
use super::shared::Fetched;
use super::transfers::{Permit, Requester};
use super::{Error, Mirror, Want};
use crate::body::Body;
use crate::cache::store::Link;
use crate::cache::{Failure, Fill, Lookup, Opened, Source, SourceError};
use crate::digest::Digest;
use crate::reference::RepoName;
use crate::upstream::{self, BlobStream, Expect, Upstream};

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

/// One blob request, as the decisions below need it.
struct Asked<'a> {
    repo: &'a RepoName,
    digest: &'a Digest,
    requester: Requester,
    /// The repository's link to the blob, if it is known to hold it.
    link: Option<Link>,
}

impl Asked<'_> {
    /// The size the manifest that listed the blob in this repository gives it, if one did.
    fn described(&self) -> Option<u64> {
        self.link.and_then(|link| link.size)
    }
}

impl Mirror {
    /// The blob for `requester`, whose new upstream transfers count against its address's cap.
    pub async fn blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        want: Want,
        requester: Requester,
    ) -> Result<BlobAnswer, Error> {
        let asked = Asked {
            repo,
            digest,
            requester,
            link: self.cache.linked(&self.registry, repo, digest).await?,
        };
        match want {
            Want::Body => self.blob_body(&asked).await,
            Want::Size => self.blob_size(&asked).await,
        }
    }

    async fn blob_body(&self, asked: &Asked<'_>) -> Result<BlobAnswer, Error> {
        match self.cache.find(asked.digest).await? {
            Lookup::Absent if !self.offline => self.fetch(asked).await,
            Lookup::Absent if self.bucket.is_some() => self.fetch_from_bucket(asked).await,
            found => self.serve_found(asked, found).await,
        }
    }

    /// Offline, the bucket is the one place left to fill from: it is on the site.
    async fn fetch_from_bucket(&self, asked: &Asked<'_>) -> Result<BlobAnswer, Error> {
        match self.cache.find_or_claim(asked.digest).await? {
            Lookup::Claimed(claim) => {
                self.confirm_unless_linked(asked).await?;
                let shared = self.blob_in_bucket(asked.digest).await.ok_or(Error::OfflineBlob)?;
                let fill = claim.start(shared, asked.described());
                self.follow(asked, fill, Want::Body).await
            }
            found => self.serve_found(asked, found).await,
        }
    }

    /// A blob nobody is fetching: a place among the upstream transfers first, then the claim.
    /// A fill someone else started meanwhile is followed instead, even after waiting in vain
    /// for a place: following costs no transfer.
    async fn fetch(&self, asked: &Asked<'_>) -> Result<BlobAnswer, Error> {
        let permit = match self.transfers.acquire(asked.requester).await {
            Ok(permit) => permit,
            Err(busy) => {
                return match self.cache.find(asked.digest).await? {
                    Lookup::Absent => Err(Error::Busy(busy)),
                    found => self.serve_found(asked, found).await,
                }
            }
        };
        match self.cache.find_or_claim(asked.digest).await? {
            // From the bucket, the repository's right to the blob is confirmed first; fetched
            // through this repository, the upstream's answer is the confirmation.
            Lookup::Claimed(claim) => {
                let fill = match self.blob_in_bucket(asked.digest).await {
                    Some(shared) => {
                        drop(permit);
                        self.confirm_unless_linked(asked).await?;
                        claim.start(shared, asked.described())
                    }
                    None => {
                        let fetched = Fetched::default();
                        let fill = claim.start(self.source(asked, permit, &fetched), asked.described());
                        self.publish_blob(fill.clone(), asked.digest, fetched);
                        fill
                    }
                };
                let answer = self.follow(asked, fill, Want::Body).await?;
                self.link(asked.repo, asked.digest, None).await?;
                Ok(answer)
            }
            found => {
                drop(permit);
                self.serve_found(asked, found).await
            }
        }
    }

    /// What the cache holds, or another request is fetching (perhaps through another
    /// repository), is served through this one only once it is known to be here.
    async fn serve_found(&self, asked: &Asked<'_>, found: Lookup) -> Result<BlobAnswer, Error> {
        match found {
            Lookup::Cached { file, size } => {
                self.confirm_unless_linked(asked).await?;
                Ok(BlobAnswer::Cached { file, size })
            }
            Lookup::Filling(fill) => {
                self.confirm_unless_linked(asked).await?;
                self.follow(asked, fill, Want::Body).await
            }
            // Only `fetch` claims, and it starts what it claims.
            Lookup::Absent | Lookup::Claimed(_) => Err(Error::OfflineBlob),
        }
    }

    async fn confirm_unless_linked(&self, asked: &Asked<'_>) -> Result<(), Error> {
        match asked.link {
            Some(_) => Ok(()),
            None => self.confirm(asked.repo, asked.digest, Kind::Blob).await,
        }
    }

    async fn blob_size(&self, asked: &Asked<'_>) -> Result<BlobAnswer, Error> {
        match self.cache.find(asked.digest).await? {
            Lookup::Cached { file, size } => {
                self.confirm_unless_linked(asked).await?;
                Ok(BlobAnswer::Cached { file, size })
            }
            Lookup::Filling(fill) => {
                self.confirm_unless_linked(asked).await?;
                self.follow(asked, fill, Want::Size).await
            }
            Lookup::Absent | Lookup::Claimed(_) => match self.size_in_bucket(asked).await? {
                Some(size) => Ok(BlobAnswer::Size { size }),
                None => self.size_upstream(asked).await,
            },
        }
    }

    /// The blob's size from the bucket, when the repository is known to hold it: a HEAD the
    /// upstream need not answer. Unknown, the upstream's answer confirms it.
    async fn size_in_bucket(&self, asked: &Asked<'_>) -> Result<Option<u64>, Error> {
        if self.bucket.is_none() || !self.known_to_hold(asked.repo, asked.digest).await? {
            return Ok(None);
        }
        Ok(self.blob_size_in_bucket(asked.digest).await)
    }

    async fn size_upstream(&self, asked: &Asked<'_>) -> Result<BlobAnswer, Error> {
        self.online(Error::OfflineBlob)?;
        let size = self.upstream.blob_size(asked.repo, asked.digest).await;
        let size = size.map_err(|e| Error::from_upstream(e, Error::BlobUnknown))?;
        Ok(BlobAnswer::Size { size })
    }

    async fn follow(&self, asked: &Asked<'_>, fill: Arc<Fill>, want: Want) -> Result<BlobAnswer, Error> {
        match fill.ready().await {
            Ok(Some(size)) if want == Want::Size => Ok(BlobAnswer::Size { size }),
            // A HEAD asks the upstream when the fill cannot say: it never takes a body.
            Ok(None) | Err(Failure::Uncacheable(_)) if want == Want::Size => self.size_upstream(asked).await,
            Ok(size) => Ok(BlobAnswer::Filling { fill, size }),
            Err(Failure::Uncacheable(reason)) => {
                tracing::warn!(digest = %asked.digest, reason, "passing the blob through uncached");
                match fill.take_unused() {
                    Some(opened) => Ok(self.relay(asked, opened)),
                    None => self.pass_through(asked).await,
                }
            }
            Err(Failure::Refused(e)) => Err(refusal(&e)),
            Err(Failure::Aborted(reason) | Failure::BadSize(reason)) => Err(Error::protocol(reason)),
        }
    }

    /// Opens the blob anew for this client alone, uncached: a transfer of its own, so it
    /// takes a place under the caps.
    async fn pass_through(&self, asked: &Asked<'_>) -> Result<BlobAnswer, Error> {
        let permit = self.transfers.acquire(asked.requester).await.map_err(Error::Busy)?;
        let stream = self.upstream.open_blob(asked.repo, asked.digest, 0).await;
        let stream = stream.map_err(|e| Error::from_upstream(e, Error::BlobUnknown))?;
        (self.cache.limits())
            .admit_size(stream.size, asked.described())
            .map_err(Error::protocol)?;
        Ok(self.relay(asked, opened(stream, &Arc::new(permit))))
    }

    /// Relays opened bytes whose announced size the cache's limits admitted, held to the same
    /// bounds as a fill: the size (announced, or described), or the largest blob taken, and
    /// the silence allowed.
    fn relay(&self, asked: &Asked<'_>, opened: Opened) -> BlobAnswer {
        let limits = self.cache.limits();
        let size = opened.size.or(asked.described());
        let expect = Expect {
            size,
            max_size: limits.max_blob_size,
            idle: limits.source_idle,
        };
        let body = upstream::pass_through(asked.digest.clone(), expect, opened.bytes, self.metrics.clone());
        BlobAnswer::Streaming { body, size }
    }

    /// The fill's source: always through this repository, and through the registry again on
    /// every resume, never a cached redirect. It holds the transfer's place for as long as
    /// the fill runs. In a fleet, the member that owns the blob is asked first. `fetched`
    /// records whether the upstream was read.
    fn source(&self, asked: &Asked<'_>, permit: Permit, fetched: &Fetched) -> Box<dyn Source> {
        let permit = Arc::new(permit);
        let upstream = UpstreamBlob {
            upstream: self.upstream.clone(),
            repo: asked.repo.clone(),
            digest: asked.digest.clone(),
            permit,
            fetched: fetched.clone(),
        };
        match &self.members {
            Some(members) => members.source(upstream),
            None => Box::new(upstream),
        }
    }
}

/// The blob from this instance's upstream, through one repository.
pub(super) struct UpstreamBlob {
    upstream: Arc<Upstream>,
    pub(super) repo: RepoName,
    pub(super) digest: Digest,
    pub(super) permit: Arc<Permit>,
    fetched: Fetched,
}

impl Source for UpstreamBlob {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened, SourceError>> {
        Box::pin(async move {
            self.fetched.read_upstream();
            let stream = self.upstream.open_blob(&self.repo, &self.digest, offset).await;
            let stream = stream.map_err(|e| Arc::new(e) as SourceError)?;
            Ok(opened(stream, &self.permit))
        })
    }
}

/// The stream's bytes, holding `permit` until they are dropped: a fill the cache could not
/// take hands its opened bytes to a pass-through, and the transfer keeps its place there.
pub(super) fn opened(stream: BlobStream, permit: &Arc<Permit>) -> Opened {
    let size = stream.size;
    let permit = permit.clone();
    let bytes = stream.into_stream().map(move |item| {
        let _held = &permit;
        item
    });
    Opened {
        size,
        bytes: Box::pin(bytes),
    }
}

/// What the upstream said when it refused the fill's source.
fn refusal(error: &SourceError) -> Error {
    match error.downcast_ref::<upstream::Error>() {
        Some(e) => Error::from_upstream(e.clone(), Error::BlobUnknown),
        None => Error::protocol(error.to_string()),
    }
}
