//! A blob miss, fetched once however many clients want it.
//!
//! The first request for a digest claims the fill (see `fills`) before anything reaches the
//! upstream; its `Claim::start` hands the fill a `Source` to read the blob from. A task then
//! streams that source into a spool file while hashing it (`task`, `spool`). Every client, the
//! first included, follows the fill: it is sent the received frames themselves until they are
//! written, and reads the spool behind them, so late joiners and range requests never cause
//! another upstream fetch, and a client that goes away does not stop the fill. The last byte
//! stays unreleased until digest and size check out; a bad transfer fails every reader, so no
//! client sees a clean end of wrong bytes. Readers then finish while the blob is synced and
//! committed into the store; requests that arrive meanwhile wait those few milliseconds for
//! the commit and find the blob cached.

mod spool;
mod task;

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::watch;

use super::Cache;
use crate::body::{self, Body};
use crate::digest::Digest;
use crate::sync::LockExt;

const READ_CHUNK: usize = 256 * 1024;

/// Where a blob's bytes come from: opened whole, and again from an offset to resume.
pub trait Source: Send + Sync + 'static {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened, SourceError>>;

    /// The bytes given hashed to another digest. A source holding a copy of its own (the
    /// bucket) drops it here, so the next fill does not read it again.
    fn rejected(&self) {}
}

/// A source chosen at run time (the upstream, or a member of the fleet).
impl Source for Box<dyn Source> {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened, SourceError>> {
        (**self).open(offset)
    }

    fn rejected(&self) {
        (**self).rejected();
    }
}

/// Why a source could not be opened; the caller of `Claim::start` knows its concrete type.
pub type SourceError = Arc<dyn std::error::Error + Send + Sync>;

/// A source's bytes from the offset it was opened at.
pub struct Opened {
    /// The whole blob's size, when known.
    pub size: Option<u64>,
    pub bytes: BoxStream<'static, io::Result<Bytes>>,
}

/// Where a fill stands; readers watch it.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Waiting for the source to open.
    Connecting,
    /// `releasable` bytes of the spool may go to clients; the rest is held back until verified.
    Streaming {
        size: Option<u64>,
        releasable: u64,
    },
    /// Every byte is spooled and checked: readers may finish. The commit is under way.
    Verified {
        size: u64,
    },
    /// Over: committed into the store, or (`cached: false`) served but not cached.
    Done {
        size: u64,
        cached: bool,
    },
    Failed(Failure),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The source refused before sending any of the blob.
    #[error("{0}")]
    Refused(SourceError),
    /// The transfer went wrong after it started: bad bytes, a short body, a dead upstream.
    #[error("blob transfer aborted: {0}")]
    Aborted(String),
    /// The source announced a size the cache will not take: more than the largest blob it
    /// takes, or not what the blob's descriptor says. Nothing was reserved or sent, and it
    /// must not be passed through either.
    #[error("{0}")]
    BadSize(String),
    /// The cache cannot take the blob (no spool file, or not enough free disk); nothing was
    /// sent, so it can still be passed through.
    #[error("the cache cannot take the blob: {0}")]
    Uncacheable(String),
}

pub struct Fill {
    /// Set once the task has made the spool, before any byte is releasable.
    spool: OnceLock<Arc<std::fs::File>>,
    progress: watch::Sender<Progress>,
    /// Bytes of the spool written so far; reads of the spool never go past them.
    written: AtomicU64,
    /// Frames received but not yet written, by offset: readers that keep up are sent these
    /// very bytes, without waiting for the writer or copying them back out of the spool.
    unwritten: Mutex<VecDeque<(u64, Bytes)>>,
    /// The opened source of a fill the cache could not take, for one follower to pass through
    /// rather than open the blob again.
    unused: Mutex<Option<Opened>>,
}

/// The right to fill an uncached blob, taken in the same locked lookup that found it absent.
/// Dropped without `start`, it withdraws the fill and fails anyone who joined it.
pub struct Claim {
    cache: Arc<Cache>,
    digest: Digest,
    fill: Arc<Fill>,
    started: bool,
}

impl Claim {
    pub(super) fn new(cache: Arc<Cache>, digest: Digest, fill: Arc<Fill>) -> Claim {
        Claim {
            cache,
            digest,
            fill,
            started: false,
        }
    }

    /// Starts the transfer from `source`; the fill to follow. `described` is the size the
    /// manifest descriptor that led to the blob gives, when known: the source must agree,
    /// and it bounds the transfer.
    pub fn start(mut self, source: impl Source, described: Option<u64>) -> Arc<Fill> {
        self.started = true;
        let (cache, digest) = (self.cache.clone(), self.digest.clone());
        let task = task::Task::new(cache, digest, described, self.fill.clone());
        tokio::spawn(task.run(source));
        self.fill.clone()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.started {
            self.cache.fills.remove(&self.digest);
            let withdrawn = Failure::Aborted("the fill was withdrawn".into());
            self.fill.progress.send_replace(Progress::Failed(withdrawn));
        }
    }
}

impl Fill {
    pub(super) fn new() -> Fill {
        Fill {
            spool: OnceLock::new(),
            progress: watch::Sender::new(Progress::Connecting),
            written: AtomicU64::new(0),
            unwritten: Mutex::default(),
            unused: Mutex::default(),
        }
    }

    /// Waits for the source to open: the blob's size if it said, or why there is no blob.
    pub async fn ready(&self) -> Result<Option<u64>, Failure> {
        let mut rx = self.progress.subscribe();
        let progress = rx.wait_for(|p| !matches!(p, Progress::Connecting)).await;
        match progress.as_deref() {
            Ok(Progress::Streaming { size, .. }) => Ok(*size),
            Ok(Progress::Verified { size } | Progress::Done { size, .. }) => Ok(Some(*size)),
            Ok(Progress::Failed(failure)) => Err(failure.clone()),
            Ok(Progress::Connecting) | Err(_) => Err(Failure::Aborted("the fill ended unexpectedly".into())),
        }
    }

    /// The source's opened bytes, when the fill could not take them (`Failure::Uncacheable`)
    /// and no other follower has taken them yet.
    pub fn take_unused(&self) -> Option<Opened> {
        self.unused.locked().take()
    }

    /// Waits for the fill's end: whether the blob is now in the cache.
    pub async fn cached(&self) -> bool {
        matches!(self.ended().await, Some(Progress::Done { cached: true, .. }))
    }

    /// Once the fill is over, its verified bytes: the spool and their length. The handle
    /// stays readable whatever becomes of the file (committed, or evicted right after); `None`
    /// when the fill failed.
    pub async fn verified(&self) -> Option<(Arc<std::fs::File>, u64)> {
        let Some(Progress::Done { size, .. }) = self.ended().await else {
            return None;
        };
        Some((self.spool.get()?.clone(), size))
    }

    /// Waits for the fill's end: `Done` or `Failed` (`None` if the fill vanished first).
    async fn ended(&self) -> Option<Progress> {
        let mut rx = self.progress.subscribe();
        let end = rx.wait_for(|p| matches!(p, Progress::Done { .. } | Progress::Failed(_)));
        end.await.ok().map(|p| p.clone())
    }

    /// Whether the fill has verified its bytes and is committing them.
    pub(super) fn committing(&self) -> bool {
        matches!(*self.progress.borrow(), Progress::Verified { .. })
    }

    /// Waits out a commit under way.
    pub(super) async fn settled(&self) {
        let mut rx = self.progress.subscribe();
        let _ = rx.wait_for(|p| !matches!(p, Progress::Verified { .. })).await;
    }

    /// The bytes from `pos` (up to `limit`) of the unwritten frame holding them, if any.
    fn unwritten_at(&self, pos: u64, limit: u64) -> Option<Bytes> {
        let frames = self.unwritten.locked();
        let (start, data) = frames
            .iter()
            .find(|(start, data)| *start <= pos && pos < start + data.len() as u64)?;
        let end = (start + data.len() as u64).min(limit);
        Some(data.slice((pos - start) as usize..(end - start) as usize))
    }

    fn received(&self, start: u64, data: Bytes) {
        self.unwritten.locked().push_back((start, data));
    }

    fn wrote(&self, written: u64) {
        self.written.store(written, Ordering::Release);
        let mut frames = self.unwritten.locked();
        while frames
            .front()
            .is_some_and(|(start, data)| start + data.len() as u64 <= written)
        {
            frames.pop_front();
        }
    }

    /// Bytes `start..end` (`end` exclusive; `None`: to the end) as they become releasable.
    pub fn reader(self: &Arc<Self>, start: u64, end: Option<u64>) -> Body {
        let state = Reader {
            fill: self.clone(),
            rx: self.progress.subscribe(),
            pos: start,
            end,
        };
        BodyExt::boxed_unsync(StreamBody::new(stream::try_unfold(state, Reader::next)))
    }
}

struct Reader {
    fill: Arc<Fill>,
    rx: watch::Receiver<Progress>,
    pos: u64,
    end: Option<u64>,
}

impl Reader {
    async fn next(mut self) -> io::Result<Option<(Frame<Bytes>, Reader)>> {
        loop {
            let (available, complete) = match &*self.rx.borrow_and_update() {
                Progress::Connecting => (0, false),
                Progress::Streaming { releasable, .. } => (*releasable, false),
                Progress::Verified { size } | Progress::Done { size, .. } => (*size, true),
                Progress::Failed(failure) => return Err(io::Error::other(failure.to_string())),
            };
            let limit = self.end.map_or(available, |end| end.min(available));
            if self.pos < limit {
                let chunk = self.read(limit).await?;
                self.pos += chunk.len() as u64;
                return Ok(Some((Frame::data(chunk), self)));
            }
            if complete || self.end.is_some_and(|end| self.pos >= end) {
                return Ok(None);
            }
            if self.rx.changed().await.is_err() {
                return Err(io::Error::other("the fill ended unexpectedly"));
            }
        }
    }

    async fn read(&self, limit: u64) -> io::Result<Bytes> {
        if let Some(chunk) = self.fill.unwritten_at(self.pos, limit) {
            return Ok(chunk);
        }
        // Not among the unwritten frames, so written: the writer records its progress before
        // it lets go of a frame.
        let written = self.fill.written.load(Ordering::Acquire).min(limit);
        let len = written.saturating_sub(self.pos).min(READ_CHUNK as u64) as usize;
        let spool = self.fill.spool.get().filter(|_| len > 0);
        let spool = spool.ok_or_else(|| io::Error::other("the fill lost track of its unwritten bytes"))?;
        body::read_at(spool.clone(), self.pos, len).await
    }
}
