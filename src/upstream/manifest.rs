//! Manifests from the upstream: what a HEAD says of one (digest, media type, size) and the
//! bytes of a GET, read whole up to a cap. Always with the full Accept set, so a tag's digest
//! does not depend on which client asked.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, WARNING};
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt, Limited};

use super::blob::content_length;
use super::{Error, Response, Upstream};
use crate::digest::Digest;
use crate::manifest;
use crate::reference::{Reference, RepoName};

const DIGEST_HEADER: &str = "docker-content-digest";

/// What the upstream's answer says of a manifest; any part may be missing.
pub struct ManifestHead {
    pub digest: Option<Digest>,
    pub media_type: Option<Arc<str>>,
    /// The body's length; a HEAD that says 0 is taken as not saying.
    pub size: Option<u64>,
}

/// A manifest as the upstream sent it: exact bytes, and its headers' claims.
pub struct FetchedManifest {
    pub head: ManifestHead,
    pub bytes: Bytes,
}

impl Upstream {
    /// A fleet member's answer with a `Warning` came from its cache while its upstream fails:
    /// taken as a check, it would make a stale tag look fresh here.
    pub async fn head_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<ManifestHead, Error> {
        let response = self.manifest_request(Method::HEAD, repo, reference).await?;
        if self.is_member() && response.headers().contains_key(WARNING) {
            return Err(Error::Stale);
        }
        Ok(head_of(&response))
    }

    /// GETs a manifest, reading at most `manifest::MAX_SIZE` bytes of it.
    pub async fn get_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<FetchedManifest, Error> {
        let response = self.manifest_request(Method::GET, repo, reference).await?;
        let head = head_of(&response);
        let bytes = Limited::new(response.into_body(), manifest::MAX_SIZE).collect().await;
        let bytes = bytes.map_err(|e| {
            Error::Protocol(format!(
                "reading the manifest (at most {} bytes): {e}",
                manifest::MAX_SIZE
            ))
        })?;
        Ok(FetchedManifest {
            head,
            bytes: bytes.to_bytes(),
        })
    }

    async fn manifest_request(
        &self,
        method: Method,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Response, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(manifest::UPSTREAM_ACCEPT));
        self.send(method, repo, &format!("manifests/{reference}"), headers)
            .await
    }
}

fn head_of(response: &Response) -> ManifestHead {
    let headers = response.headers();
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    ManifestHead {
        digest: text(DIGEST_HEADER).and_then(|v| v.parse().ok()),
        media_type: text(CONTENT_TYPE.as_str())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Arc::from),
        size: content_length(response).filter(|&n| n > 0),
    }
}
