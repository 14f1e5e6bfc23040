//! The one response body type the server sends, and the ways to make one: whole bytes,
//! a slice of a file read in chunks, or a channel fed by a cache fill.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Large enough that the blocking-pool hand-off per chunk stays cheap, small enough to keep
/// memory flat per reader.
const FILE_CHUNK: usize = 512 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Streams `len` bytes of `file` from byte `start`.
pub fn file(file: std::fs::File, start: u64, len: u64) -> Body {
    let file = Arc::new(file);
    let end = start + len;
    let chunks = stream::try_unfold(start, move |pos| {
        let file = file.clone();
        async move {
            if pos >= end {
                return Ok(None);
            }
            let chunk = read_at(file, pos, (end - pos).min(FILE_CHUNK as u64) as usize).await?;
            let next = pos + chunk.len() as u64;
            Ok(Some((Frame::data(chunk), next)))
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(chunks))
}

/// Reads up to `len` bytes at `pos` (fewer only when fewer are in memory), positioned, so
/// any number of readers share one open file. A hot cache hit is pages already in memory:
/// those are copied right here (`RWF_NOWAIT`), sparing the round trip through the blocking
/// pool that dominated small GETs. Only a read that would wait for the disk goes there.
pub async fn read_at(file: Arc<std::fs::File>, pos: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len);
    let cached = read_cached(&file, &mut buf, pos);
    if cached > 0 {
        buf.truncate(cached);
        return Ok(buf.freeze());
    }
    tokio::task::spawn_blocking(move || {
        file.read_exact_at(&mut buf, pos)?;
        Ok(buf.freeze())
    })
    .await
    .map_err(io::Error::other)?
}

/// How many bytes at `pos` could be read without waiting for the disk; 0 when none could,
/// or when the kernel or file system cannot tell (the caller then reads the slow way).
fn read_cached(file: &std::fs::File, buf: &mut [u8], pos: u64) -> usize {
    let flags = rustix::io::ReadWriteFlags::NOWAIT;
    rustix::io::preadv2(file, &mut [io::IoSliceMut::new(buf)], pos, flags).unwrap_or(0)
}

/// A body fed chunk by chunk. It ends cleanly only after `BodySender::finish`; an abort, or a
/// sender dropped without finishing, fails the response so the client never mistakes a
/// partial or unverified transfer for a complete one.
pub fn channel(capacity: usize) -> (BodySender, Body) {
    let (tx, rx) = mpsc::channel(capacity);
    let chunks = stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Message::Data(bytes)) => Some((Ok(Frame::data(bytes)), Some(rx))),
            Some(Message::End) => None,
            Some(Message::Abort(e)) => Some((Err(e), None)),
            None => Some((
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "transfer ended early")),
                None,
            )),
        }
    });
    (BodySender(tx), BodyExt::boxed_unsync(StreamBody::new(chunks)))
}

enum Message {
    Data(Bytes),
    End,
    Abort(io::Error),
}

pub struct BodySender(mpsc::Sender<Message>);

impl BodySender {
    /// Returns false once the client has gone away; the caller may keep working without it.
    pub async fn send(&self, bytes: Bytes) -> bool {
        self.0.send(Message::Data(bytes)).await.is_ok()
    }

    pub async fn finish(self) {
        let _ = self.0.send(Message::End).await;
    }

    pub async fn abort(self, error: io::Error) {
        let _ = self.0.send(Message::Abort(error)).await;
    }
}
