//! The one response body type the server sends, and the ways to make one: whole bytes,
//! a slice of a file read in chunks, or a channel fed by a cache fill.

use std::io::{self, SeekFrom};

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Large enough to keep per-chunk overhead low, small enough to keep memory flat per reader.
const FILE_CHUNK: usize = 256 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Streams `len` bytes of `file` from byte `start`.
pub fn file(file: File, start: u64, len: u64) -> Body {
    let chunks = stream::try_unfold((file, start, len), |(mut file, seek, remaining)| async move {
        if remaining == 0 {
            return Ok(None);
        }
        if seek > 0 {
            file.seek(SeekFrom::Start(seek)).await?;
        }
        let want = remaining.min(FILE_CHUNK as u64) as usize;
        let mut buf = BytesMut::with_capacity(want);
        while buf.len() < want {
            if file.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "cached file shorter than its index entry",
                ));
            }
        }
        let got = buf.len() as u64;
        Ok(Some((Frame::data(buf.freeze()), (file, 0, remaining - got))))
    });
    BodyExt::boxed_unsync(StreamBody::new(chunks))
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
