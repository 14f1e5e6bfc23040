//! A blob missing here, filled from the member of the fleet that owns it (`fleet`), or from
//! the upstream when this instance is the owner; likewise a tag's check and a manifest, so
//! that each is asked of the upstream by one member for all. The fill verifies the digest as
//! it would the upstream's bytes, so a member that fails mid-blob, or lies, leaves nothing
//! behind; a resume asks again, and by then a member that stopped answering is passed over.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::blob::{opened, UpstreamBlob};
use crate::cache::{Opened, Source, SourceError};
use crate::config::Config;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::reference::{Reference, Registry, RepoName, Tag};
use crate::upstream::{self, FetchedManifest, ManifestHead, Upstream};

/// The other members of the fleet, each as an upstream for one registry's content.
pub(super) struct Members {
    fleet: Arc<Fleet>,
    registry: Registry,
    /// By the member's place in the fleet; `None` at this instance's own.
    clients: Vec<Option<Arc<Upstream>>>,
}

impl Members {
    pub(super) fn new(
        fleet: &Arc<Fleet>,
        registry: &Registry,
        config: &Config,
        metrics: &Arc<Metrics>,
    ) -> Result<Members, upstream::Error> {
        let ca = fleet.config().ca.as_deref();
        let clients = (0..fleet.config().members.len()).map(|index| {
            if index == fleet.me() {
                return Ok(None);
            }
            let url = fleet.url(index).clone();
            let client = Upstream::new(url, None, ca, &[], config.dns.clone(), metrics.clone())?;
            Ok(Some(Arc::new(client.as_member(fleet.key(), registry)?)))
        });
        Ok(Members {
            fleet: fleet.clone(),
            registry: registry.clone(),
            clients: clients.collect::<Result<_, upstream::Error>>()?,
        })
    }

    /// The tag's HEAD from the member that checks it for the fleet, or from the next in order
    /// on an outage; `None` when this instance is the one to ask its upstream.
    pub(super) async fn head_tag(&self, repo: &RepoName, tag: &Tag) -> Option<Result<ManifestHead, upstream::Error>> {
        let reference = Reference::Tag(tag.clone());
        let key = self.key(repo, &reference);
        self.ask(&key, |member| member.head_manifest(repo, &reference)).await
    }

    /// The manifest from the member that fetches it for the fleet, as `head_tag` does.
    pub(super) async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Option<Result<FetchedManifest, upstream::Error>> {
        let key = self.key(repo, reference);
        self.ask(&key, |member| member.get_manifest(repo, reference)).await
    }

    /// What orders the members for `reference`: a digest (blobs and manifests share the
    /// digest's owner), or the tag with its registry and repository.
    fn key(&self, repo: &RepoName, reference: &Reference) -> String {
        match reference {
            Reference::Digest(digest) => digest.to_string(),
            Reference::Tag(tag) => format!("{}/{repo}:{tag}", self.registry),
        }
    }

    /// `request` of the members first in `key`'s order, passing over those with an outage;
    /// `None` once the order reaches this instance.
    async fn ask<'a, T, F, Fut>(&'a self, key: &str, request: F) -> Option<Result<T, upstream::Error>>
    where
        F: Fn(&'a Upstream) -> Fut,
        Fut: Future<Output = Result<T, upstream::Error>>,
    {
        for index in self.fleet.order(key) {
            let member = self.clients[index].as_deref()?;
            match request(member).await {
                Err(e) if e.is_outage() => self.fleet.pass_over(index, key, &e),
                answer => return Some(answer),
            }
        }
        None
    }

    /// The source for a fill of the blob `upstream` reads: `upstream` itself when this
    /// instance owns the blob, which it does unless a member above it in the digest's order
    /// is up.
    pub(super) fn source(self: &Arc<Self>, upstream: UpstreamBlob) -> Box<dyn Source> {
        if self.fleet.order(&upstream.digest.to_string()).first() == Some(&self.fleet.me()) {
            return Box::new(upstream);
        }
        Box::new(MemberBlob {
            members: self.clone(),
            upstream,
        })
    }
}

/// A fill's source that asks the members in the digest's order, on every open and resume,
/// and this instance's upstream once the order reaches it.
struct MemberBlob {
    members: Arc<Members>,
    upstream: UpstreamBlob,
}

impl Source for MemberBlob {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened, SourceError>> {
        Box::pin(async move {
            let (repo, digest) = (&self.upstream.repo, &self.upstream.digest);
            let key = digest.to_string();
            let asked = (self.members)
                .ask(&key, |member| member.open_blob(repo, digest, offset))
                .await;
            match asked {
                Some(stream) => Ok(opened(
                    stream.map_err(|e| Arc::new(e) as SourceError)?,
                    &self.upstream.permit,
                )),
                None => self.upstream.open(offset).await,
            }
        })
    }
}
