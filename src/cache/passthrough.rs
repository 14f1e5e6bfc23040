//! The fallback when the cache cannot take a blob (no spool file can be created: a full or
//! read-only disk): stream it to the one client that asked, still verified, never cached.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{self, Body, BodySender};
use crate::digest::{Digest, Hasher};
use crate::metrics::Metrics;

const CLIENT_QUEUE: usize = 16;

/// Streams `upstream` to the client, holding back the last chunk until the digest and size
/// check out, so a bad transfer ends in an aborted response rather than a clean one.
pub fn stream(digest: Digest, size: Option<u64>, upstream: Incoming, metrics: Arc<Metrics>) -> Body {
    let (client, body) = body::channel(CLIENT_QUEUE);
    tokio::spawn(async move {
        if let Err(e) = relay(&digest, size, upstream, &client).await {
            if e.kind() == io::ErrorKind::InvalidData {
                metrics.digest_mismatches.inc();
            }
            tracing::warn!(%digest, error = %e, "pass-through transfer failed");
            client.abort(e).await;
        } else {
            client.finish().await;
        }
    });
    body
}

async fn relay(digest: &Digest, size: Option<u64>, mut upstream: Incoming, client: &BodySender) -> io::Result<()> {
    let mut hasher = Hasher::new(digest.algorithm());
    let mut received = 0u64;
    let mut held: Option<Bytes> = None;
    while let Some(frame) = upstream.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else { continue };
        received += data.len() as u64;
        hasher.update(&data);
        if let Some(previous) = held.replace(data) {
            if !client.send(previous).await {
                return Ok(());
            }
        }
    }
    if size.is_some_and(|size| size != received) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("upstream sent {received} bytes, not {size:?}"),
        ));
    }
    let actual = hasher.finish();
    if actual != *digest {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("upstream bytes hash to {actual}"),
        ));
    }
    if let Some(last) = held {
        client.send(last).await;
    }
    Ok(())
}
