//! A blob miss: the upstream body is teed to the client and to a temp file while it is hashed.
//!
//! The last chunk is held back until the digest and size check out, and the file is renamed
//! into the store before that chunk goes out, so a client never sees a clean end of wrong
//! bytes and a cached file is always whole. The fill runs in its own task: a client that goes
//! away does not stop it, and the next puller finds the blob cached.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::store::TempFile;
use super::{Cache, Entry};
use crate::body::{self, Body, BodySender};
use crate::digest::{Digest, Hasher};

/// Chunks queued towards a slow client before the fill waits for it.
const CLIENT_QUEUE: usize = 16;
const WRITE_BUFFER: usize = 256 * 1024;
/// A silent upstream is given up on after this long, so a stalled fill cannot live forever.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

pub fn start(cache: Arc<Cache>, digest: Digest, size: Option<u64>, upstream: Incoming) -> Body {
    let (client, body) = body::channel(CLIENT_QUEUE);
    tokio::spawn(async move {
        let fill = Fill { cache, digest, size };
        if let Err(e) = fill.run(upstream, client).await {
            tracing::warn!(digest = %fill.digest, error = %e, "blob fill failed; nothing cached");
        }
    });
    body
}

struct Fill {
    cache: Arc<Cache>,
    digest: Digest,
    size: Option<u64>,
}

/// Where the bytes go besides the client. A write error (a full disk, say) drops the file but
/// not the client: it still gets its verified bytes.
struct Spool {
    writer: Option<BufWriter<TempFile>>,
}

impl Fill {
    async fn run(&self, mut upstream: Incoming, client: BodySender) -> io::Result<()> {
        let mut spool = self.spool().await;
        let mut hasher = Hasher::new(self.digest.algorithm());
        let mut received: u64 = 0;
        let mut held: Option<Bytes> = None;
        let mut client = Some(client);
        loop {
            let frame = match tokio::time::timeout(UPSTREAM_IDLE, upstream.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(e))) => return abort(client, io::Error::other(format!("upstream body: {e}"))).await,
                Err(_) => return abort(client, io::Error::new(io::ErrorKind::TimedOut, "upstream went silent")).await,
            };
            let Ok(data) = frame.into_data() else { continue };
            received += data.len() as u64;
            if self.size.is_some_and(|size| received > size) {
                return abort(client, mismatch("upstream sent more bytes than announced")).await;
            }
            hasher.update(&data);
            spool.write(&data).await;
            if let Some(previous) = held.replace(data) {
                client = forward(client, previous).await;
            }
        }
        if self.size.is_some_and(|size| received != size) {
            return abort(
                client,
                mismatch(&format!("upstream sent {received} bytes, announced {:?}", self.size)),
            )
            .await;
        }
        let actual = hasher.finish();
        if actual != self.digest {
            return abort(client, mismatch(&format!("upstream bytes hash to {actual}"))).await;
        }
        self.commit(spool, received).await;
        if let Some(last) = held {
            client = forward(client, last).await;
        }
        if let Some(client) = client {
            client.finish().await;
        }
        Ok(())
    }

    async fn spool(&self) -> Spool {
        match self.cache.store.temp().await {
            Ok(temp) => Spool {
                writer: Some(BufWriter::with_capacity(WRITE_BUFFER, temp)),
            },
            Err(e) => {
                tracing::error!(digest = %self.digest, error = %e, "cannot create a temp file; passing through uncached");
                Spool { writer: None }
            }
        }
    }

    async fn commit(&self, spool: Spool, size: u64) {
        let Some(mut writer) = spool.writer else { return };
        if let Err(e) = writer.flush().await {
            tracing::error!(digest = %self.digest, error = %e, "cannot write the blob to disk; not cached");
            return;
        }
        match self.cache.store.commit(writer.into_inner(), &self.digest).await {
            Ok(()) => self
                .cache
                .index
                .insert(self.digest.clone(), Entry { size, media_type: None }),
            Err(e) => tracing::error!(digest = %self.digest, error = %e, "cannot commit the blob; not cached"),
        }
    }
}

impl Spool {
    async fn write(&mut self, data: &[u8]) {
        let Some(writer) = &mut self.writer else { return };
        if let Err(e) = writer.write_all(data).await {
            tracing::error!(error = %e, "cannot write the blob to disk; passing the rest through uncached");
            self.writer = None;
        }
    }
}

/// Sends a chunk on; once the client has gone, the fill goes on without it.
async fn forward(client: Option<BodySender>, chunk: Bytes) -> Option<BodySender> {
    let client = client?;
    client.send(chunk).await.then_some(client)
}

async fn abort(client: Option<BodySender>, error: io::Error) -> io::Result<()> {
    let message = error.to_string();
    if let Some(client) = client {
        client.abort(error).await;
    }
    Err(io::Error::other(message))
}

fn mismatch(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}
