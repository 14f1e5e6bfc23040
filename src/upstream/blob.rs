//! Blob bytes from the upstream, and nothing else: a blob opened whole or from an offset (the
//! range request, and the checks that the answer really starts there), its size from a HEAD,
//! and the verified pass-through for when the cache cannot take it. The cache's fills read
//! what this opens as a plain byte stream and never see an HTTP status or header.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{Error, Response, Upstream};
use crate::body::{self, Body, BodySender};
use crate::digest::{Digest, Hasher};
use crate::metrics::Metrics;
use crate::reference::RepoName;

/// Chunks queued towards a pass-through client.
const CLIENT_QUEUE: usize = 16;

/// A blob's bytes from the offset it was opened at, as the upstream sends them.
pub struct BlobStream {
    /// The whole blob's size, when the upstream said.
    pub size: Option<u64>,
    body: Incoming,
    /// Bytes to drop first: an upstream that ignored the range resends the start.
    skip: u64,
}

impl Upstream {
    /// The blob's size, from a HEAD.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64, Error> {
        let response = self
            .send(Method::HEAD, repo, &blob_path(digest), HeaderMap::new())
            .await?;
        content_length(&response).ok_or_else(|| Error::Protocol("blob HEAD without Content-Length".into()))
    }

    /// Opens the blob from byte `offset` on (0: whole). Asked for a range, the upstream may
    /// answer 206 starting exactly there, or 200 with the whole blob, whose first `offset`
    /// bytes are then skipped; anything else would splice wrong bytes in, so it is an error.
    pub async fn open_blob(&self, repo: &RepoName, digest: &Digest, offset: u64) -> Result<BlobStream, Error> {
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range =
                HeaderValue::from_str(&format!("bytes={offset}-")).map_err(|e| Error::Protocol(e.to_string()))?;
            headers.insert(RANGE, range);
        }
        let response = self.send(Method::GET, repo, &blob_path(digest), headers).await?;
        match response.status() {
            StatusCode::OK => Ok(BlobStream {
                size: content_length(&response),
                skip: offset,
                body: response.into_body(),
            }),
            StatusCode::PARTIAL_CONTENT => match content_range(&response) {
                Some((start, size)) if start == offset => Ok(BlobStream {
                    size,
                    skip: 0,
                    body: response.into_body(),
                }),
                _ => Err(Error::Protocol(format!(
                    "a range from {offset} answered with another range"
                ))),
            },
            status => Err(Error::Status(status)),
        }
    }
}

impl BlobStream {
    /// The next bytes; `None` at the body's end (whether it was complete is the reader's to
    /// judge against `size` and the digest).
    pub async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            let frame = match self.body.frame().await? {
                Ok(frame) => frame,
                Err(e) => return Some(Err(io::Error::other(e))),
            };
            let Ok(mut data) = frame.into_data() else { continue };
            let dropped = self.skip.min(data.len() as u64);
            self.skip -= dropped;
            let data = data.split_off(dropped as usize);
            if !data.is_empty() {
                return Some(Ok(data));
            }
        }
    }

    pub fn into_stream(self) -> BoxStream<'static, io::Result<Bytes>> {
        Box::pin(stream::unfold(self, |mut s| async move {
            s.next().await.map(|item| (item, s))
        }))
    }
}

/// What a pass-through holds the upstream's bytes to.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The whole blob's size, when announced.
    pub size: Option<u64>,
    /// The most bytes taken when the size is unknown.
    pub max_size: u64,
    /// How long the upstream may go silent before the transfer is given up.
    pub idle: Duration,
}

/// Streams a blob's bytes to one client, uncached, holding back the last chunk until digest
/// and size check out, so a bad transfer ends in an aborted response rather than a clean one.
pub fn pass_through(
    digest: Digest,
    expect: Expect,
    bytes: BoxStream<'static, io::Result<Bytes>>,
    metrics: Arc<Metrics>,
) -> Body {
    let (client, body) = body::channel(CLIENT_QUEUE);
    tokio::spawn(async move {
        match relay(&digest, expect, bytes, &client).await {
            Ok(()) => client.finish().await,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    metrics.digest_mismatches.inc();
                }
                tracing::warn!(%digest, error = %e, "pass-through transfer failed");
                client.abort(e).await;
            }
        }
    });
    body
}

async fn relay(
    digest: &Digest,
    expect: Expect,
    mut bytes: BoxStream<'static, io::Result<Bytes>>,
    client: &BodySender,
) -> io::Result<()> {
    let (size, bound) = (expect.size, expect.size.unwrap_or(expect.max_size));
    let invalid = |message| Err(io::Error::new(io::ErrorKind::InvalidData, message));
    let mut hasher = Hasher::new(digest.algorithm());
    let mut received = 0u64;
    let mut held: Option<Bytes> = None;
    loop {
        let next = tokio::time::timeout(expect.idle, bytes.next()).await;
        let data = match next {
            Ok(Some(data)) => data?,
            Ok(None) => break,
            Err(_) => return Err(silent("upstream", expect.idle)),
        };
        received += data.len() as u64;
        if received > bound {
            return invalid(format!("upstream sent more than {bound} bytes"));
        }
        hasher.update(&data);
        if let Some(previous) = held.replace(data) {
            // A client that takes nothing for as long holds the transfer's place as surely as
            // a silent upstream does.
            match tokio::time::timeout(expect.idle, client.send(previous)).await {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(_) => return Err(silent("the client", expect.idle)),
            }
        }
    }
    if size.is_some_and(|size| size != received) {
        return invalid(format!("upstream sent {received} bytes, not {size:?}"));
    }
    let actual = hasher.finish();
    if actual != *digest {
        return invalid(format!("upstream bytes hash to {actual}"));
    }
    if let Some(last) = held {
        client.send(last).await;
    }
    Ok(())
}

fn silent(who: &str, idle: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{who} went silent for {idle:?}"))
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{digest}")
}

pub(super) fn content_length(response: &Response) -> Option<u64> {
    response.headers().get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The first byte and the whole size of a `Content-Range: bytes N-M/size` answer (size `*`:
/// unknown).
fn content_range(response: &Response) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, size) = value.strip_prefix("bytes ")?.split_once('/')?;
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, size.trim().parse().ok()))
}
