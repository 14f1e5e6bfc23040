//! A blob miss, fetched once however many clients want it.
//!
//! The first request for a digest starts a fill: a task that streams the upstream body into a
//! spool file while hashing it. Every client, the first included, follows the fill: it is
//! sent the received frames themselves until they are written, and reads the spool behind
//! them, so late joiners and range requests never cause another upstream fetch, and a client
//! that goes away does not stop the fill. The last byte stays unreleased until digest and size
//! check out; a bad transfer fails every reader, so no client sees a clean end of wrong bytes.
//! Readers then finish while the blob is synced and committed into the store, and requests
//! that arrive meanwhile wait those few milliseconds for the commit and find the blob cached.
//! A transfer that breaks off is resumed with a range request, or restarted, a bounded number
//! of times.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE};
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::store::TempFile;
use super::{Cache, Entry};
use crate::body::{self, Body};
use crate::digest::{Digest, Hasher};
use crate::upstream;

/// A silent upstream is given up on (and the transfer resumed) after this long.
const UPSTREAM_IDLE: Duration = Duration::from_secs(60);
const MAX_RESUMES: u32 = 3;
const READ_CHUNK: usize = 256 * 1024;
/// Upstream frames waiting for the spool writer; with hyper's frames of up to ~400 KiB this
/// bounds a fill's memory to a few MiB.
const QUEUED_FRAMES: usize = 2;

/// Opens the upstream body from a byte offset (0: the whole blob).
pub type Opener = Box<dyn Fn(u64) -> BoxFuture<'static, Result<upstream::Response, upstream::Error>> + Send + Sync>;

/// Where a fill stands; readers watch it.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Waiting for the upstream's answer.
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
    /// Committed into the store (or, if that failed, served but not cached).
    Done {
        size: u64,
    },
    Failed(Failure),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The upstream refused before sending any of the blob.
    #[error(transparent)]
    Upstream(upstream::Error),
    /// The transfer went wrong after it started: bad bytes, a short body, a dead upstream.
    #[error("blob transfer aborted: {0}")]
    Aborted(String),
    /// The disk cannot take the blob; nothing was sent, so it can still be passed through.
    #[error("no room in the cache for {0} bytes")]
    NoSpace(u64),
}

pub struct Fill {
    spool: Arc<std::fs::File>,
    progress: watch::Sender<Progress>,
    /// Bytes of the spool written so far; reads of the spool never go past them.
    written: AtomicU64,
    /// Frames received but not yet written, by offset: readers that keep up are sent these
    /// very bytes, without waiting for the writer or copying them back out of the spool.
    unwritten: Mutex<VecDeque<(u64, Bytes)>>,
}

/// Fills in progress by digest.
#[derive(Default)]
pub(super) struct Fills {
    by_digest: Mutex<HashMap<Digest, Arc<Fill>>>,
}

impl Fills {
    /// Held only for a map lookup or update, never across an `.await`.
    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Arc<Fill>>> {
        self.by_digest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, digest: &Digest) {
        self.lock().remove(digest);
    }
}

/// What a request for an uncached blob finds.
pub enum Joined {
    Filling(Arc<Fill>),
    /// A fill committed the blob while the request was on its way to join it.
    Cached,
}

/// Joins the fill of `digest`, or starts one with `open`. Fails only when no spool file can be
/// made (a full or read-only disk): the caller then passes the blob through uncached.
pub(super) async fn join_or_start(cache: &Arc<Cache>, digest: &Digest, open: Opener) -> io::Result<Joined> {
    {
        let fills = cache.fills.lock();
        if let Some(fill) = join(cache, digest, &fills) {
            return Ok(Joined::Filling(fill));
        }
        // A fill enters the index before it leaves the map, so this cannot miss one that just
        // finished: no second upstream fetch for a blob committed a moment ago.
        if cache.index.get(digest).is_some() {
            return Ok(Joined::Cached);
        }
    }
    let temp = cache.store.temp().await?;
    let fill = Arc::new(Fill {
        spool: Arc::new(temp.reader()?),
        progress: watch::Sender::new(Progress::Connecting),
        written: AtomicU64::new(0),
        unwritten: Mutex::default(),
    });
    {
        let mut fills = cache.fills.lock();
        // Another request may have started the same fill while the spool was being created.
        if let Some(existing) = join(cache, digest, &fills) {
            return Ok(Joined::Filling(existing));
        }
        fills.insert(digest.clone(), fill.clone());
    }
    let task = Task {
        cache: cache.clone(),
        digest: digest.clone(),
        fill: fill.clone(),
    };
    tokio::spawn(task.run(open, temp));
    Ok(Joined::Filling(fill))
}

/// Waits while the fill of `digest`, if any, is committing bytes it already verified: the blob
/// is moments from the index, where a request should find it rather than in the spool.
/// Whether there was such a commit.
pub(super) async fn settle(cache: &Cache, digest: &Digest) -> bool {
    let fill = cache.fills.lock().get(digest).cloned();
    match fill {
        Some(fill) => fill.settled().await,
        None => false,
    }
}

/// Waits for every commit under way; at shutdown, so no verified blob is lost to the exit.
pub(super) async fn settle_all(cache: &Cache) {
    let fills: Vec<_> = cache.fills.lock().values().cloned().collect();
    for fill in fills {
        fill.settled().await;
    }
}

fn join(cache: &Cache, digest: &Digest, fills: &HashMap<Digest, Arc<Fill>>) -> Option<Arc<Fill>> {
    let fill = fills.get(digest)?.clone();
    cache.metrics.coalesced_waiters.inc();
    Some(fill)
}

impl Fill {
    /// Waits for the upstream's answer: the blob's size if it said, or why there is no blob.
    pub async fn ready(&self) -> Result<Option<u64>, Failure> {
        let mut rx = self.progress.subscribe();
        let progress = rx.wait_for(|p| !matches!(p, Progress::Connecting)).await;
        match progress.as_deref() {
            Ok(Progress::Streaming { size, .. }) => Ok(*size),
            Ok(Progress::Verified { size } | Progress::Done { size }) => Ok(Some(*size)),
            Ok(Progress::Failed(failure)) => Err(failure.clone()),
            Ok(Progress::Connecting) | Err(_) => Err(Failure::Aborted("the fill ended unexpectedly".into())),
        }
    }

    /// The bytes from `pos` (up to `limit`) of the unwritten frame holding them, if any.
    fn unwritten_at(&self, pos: u64, limit: u64) -> Option<Bytes> {
        let frames = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        let (start, data) = frames
            .iter()
            .find(|(start, data)| *start <= pos && pos < start + data.len() as u64)?;
        let end = (start + data.len() as u64).min(limit);
        Some(data.slice((pos - start) as usize..(end - start) as usize))
    }

    fn received(&self, start: u64, data: Bytes) {
        self.unwritten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((start, data));
    }

    fn wrote(&self, written: u64) {
        self.written.store(written, Ordering::Release);
        let mut frames = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        while frames
            .front()
            .is_some_and(|(start, data)| start + data.len() as u64 <= written)
        {
            frames.pop_front();
        }
    }

    /// Waits out a commit under way; whether there was one.
    async fn settled(&self) -> bool {
        let mut rx = self.progress.subscribe();
        let committing = matches!(*rx.borrow_and_update(), Progress::Verified { .. });
        if committing {
            let _ = rx.wait_for(|p| !matches!(p, Progress::Verified { .. })).await;
        }
        committing
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
                Progress::Verified { size } | Progress::Done { size } => (*size, true),
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
        if len == 0 {
            return Err(io::Error::other("the fill lost track of its unwritten bytes"));
        }
        body::read_at(self.fill.spool.clone(), self.pos, len).await
    }
}

/// The task that drives one fill to its end.
struct Task {
    cache: Arc<Cache>,
    digest: Digest,
    fill: Arc<Fill>,
}

/// The transfer's running state, kept across resumes.
struct Transfer {
    size: Option<u64>,
    /// Bytes taken from the upstream and queued for the spool writer.
    received: u64,
    writer: SpoolWriter,
}

impl Task {
    async fn run(self, open: Opener, temp: TempFile) {
        self.cache.metrics.fills_in_flight.inc();
        let outcome = self.transfer(&open, temp).await;
        self.cache.metrics.fills_in_flight.dec();
        let progress = match outcome {
            Ok((temp, size)) => {
                // Clients need not wait for the disk to sync: the bytes they got are checked.
                self.fill.progress.send_replace(Progress::Verified { size });
                self.commit(temp, size).await;
                Progress::Done { size }
            }
            Err(failure) => {
                if let Failure::Aborted(reason) = &failure {
                    tracing::warn!(digest = %self.digest, reason, "blob fill failed; nothing cached");
                }
                Progress::Failed(failure)
            }
        };
        // Out of the map first: a request that sees this fill's end (a client retrying after
        // an abort, say) must start a new fill, not join the finished one.
        self.cache.fills.remove(&self.digest);
        self.fill.progress.send_replace(progress);
    }

    /// Fetches the blob into the spool: the verified spool and its size, ready to commit.
    async fn transfer(&self, open: &Opener, temp: TempFile) -> Result<(TempFile, u64), Failure> {
        let response = open(0).await.map_err(Failure::Upstream)?;
        if response.status() != StatusCode::OK {
            return Err(Failure::Upstream(upstream::Error::Status(response.status())));
        }
        let size = content_length(&response);
        let temp = self.reserve(temp, size)?;
        let file = temp.writer().map_err(|e| spool_error(&e))?;
        self.fill
            .progress
            .send_replace(Progress::Streaming { size, releasable: 0 });
        let mut transfer = Transfer {
            size,
            received: 0,
            writer: SpoolWriter::start(file, Hasher::new(self.digest.algorithm()), self.fill.clone()),
        };
        let limit = self.time_limit(size);
        let receive = self.receive(open, &mut transfer, response.into_body());
        let received = match tokio::time::timeout(limit, receive).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Aborted(format!("not done within {limit:?}"))),
        };
        // The writer is stopped before anything is published, whatever happened, so it cannot
        // report progress over a failure; its own error explains a stop better than ours.
        let (hasher, written) = transfer.writer.finish().await.map_err(|e| spool_error(&e))?;
        received?;
        let actual = hasher.finish();
        if actual != self.digest {
            self.cache.metrics.digest_mismatches.inc();
            return Err(Failure::Aborted(format!("upstream bytes hash to {actual}")));
        }
        Ok((temp, written))
    }

    /// Streams the body into the spool, resuming a bounded number of times when the upstream
    /// breaks off.
    async fn receive(&self, open: &Opener, transfer: &mut Transfer, body: Incoming) -> Result<(), Failure> {
        let (mut body, mut skip) = (body, 0);
        let mut resumes = 0;
        loop {
            match self.pump(transfer, body, skip).await? {
                Pumped::Complete => return Ok(()),
                Pumped::BrokeOff(reason) if resumes < MAX_RESUMES => {
                    resumes += 1;
                    tracing::info!(digest = %self.digest, at = transfer.received, reason, "upstream broke off; resuming");
                    (body, skip) = self.resume(open, transfer.received).await?;
                }
                Pumped::BrokeOff(reason) => return Err(Failure::Aborted(reason)),
            }
        }
    }

    /// Claims the disk space for a blob of known size up front, so a full disk shows before
    /// any byte is sent (and the blob can still pass through) rather than halfway.
    fn reserve(&self, temp: TempFile, size: Option<u64>) -> Result<TempFile, Failure> {
        let Some(size) = size else { return Ok(temp) };
        let stats = rustix::fs::fstatvfs(&temp.file).map_err(|e| Failure::Aborted(format!("statvfs: {e}")))?;
        let free = stats.f_bavail.saturating_mul(stats.f_frsize);
        if free < size.saturating_add(self.cache.limits.min_free_disk) {
            return Err(Failure::NoSpace(size));
        }
        if size > 0 {
            rustix::fs::fallocate(&temp.file, rustix::fs::FallocateFlags::empty(), 0, size)
                .map_err(|_| Failure::NoSpace(size))?;
        }
        Ok(temp)
    }

    fn time_limit(&self, size: Option<u64>) -> Duration {
        self.cache.limits.fill_timeout + Duration::from_secs(size.unwrap_or(0) >> 20)
    }

    /// Copies body frames into the spool until the body ends or breaks off. `skip` bytes at the
    /// start are dropped: an upstream that ignored the range request resent them.
    async fn pump(&self, t: &mut Transfer, mut body: Incoming, mut skip: u64) -> Result<Pumped, Failure> {
        loop {
            let frame = match tokio::time::timeout(UPSTREAM_IDLE, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) if t.size.is_none_or(|size| t.received == size) => return Ok(Pumped::Complete),
                Ok(None) => return Ok(Pumped::BrokeOff("body ended early".into())),
                Ok(Some(Err(e))) => return Ok(Pumped::BrokeOff(e.to_string())),
                Err(_) => return Ok(Pumped::BrokeOff("upstream went silent".into())),
            };
            let Ok(mut data) = frame.into_data() else { continue };
            let dropped = skip.min(data.len() as u64);
            skip -= dropped;
            let data = data.split_off(dropped as usize);
            if data.is_empty() {
                continue;
            }
            if t.size.is_some_and(|size| t.received + data.len() as u64 > size) {
                return Err(Failure::Aborted("upstream sent more bytes than announced".into()));
            }
            self.fill.received(t.received, data.clone());
            t.received += data.len() as u64;
            // All but the last byte may go out; that one waits for the digest check.
            self.fill.progress.send_replace(Progress::Streaming {
                size: t.size,
                releasable: t.received - 1,
            });
            if !t.writer.write(data).await {
                return Err(Failure::Aborted("the spool writer stopped".into()));
            }
        }
    }

    /// Asks the upstream for the rest from `offset`. A 206 must start exactly there; a 200
    /// resends the whole blob, and the part already spooled is skipped.
    async fn resume(&self, open: &Opener, offset: u64) -> Result<(Incoming, u64), Failure> {
        let response = open(offset)
            .await
            .map_err(|e| Failure::Aborted(format!("resuming: {e}")))?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT if range_start(&response) == Some(offset) => Ok((response.into_body(), 0)),
            StatusCode::OK => Ok((response.into_body(), offset)),
            status => Err(Failure::Aborted(format!("resuming: upstream answered {status}"))),
        }
    }

    /// Renames the verified spool into the store. Readers hold their own handle, so they
    /// finish even when the commit itself fails (the blob is then just not cached).
    async fn commit(&self, temp: TempFile, size: u64) {
        match self.cache.store.commit(temp, &self.digest).await {
            Ok(()) => self
                .cache
                .index
                .insert(self.digest.clone(), Entry { size, media_type: None }),
            Err(e) => {
                tracing::error!(digest = %self.digest, error = %e, "cannot commit the blob; served but not cached")
            }
        }
    }
}

/// Hashes the upstream body and writes it into the spool on a blocking-pool thread of its own,
/// so neither holds up the runtime nor the readers, which are sent the frames themselves until
/// they are written.
struct SpoolWriter {
    queue: mpsc::Sender<Bytes>,
    thread: JoinHandle<io::Result<(Hasher, u64)>>,
}

impl SpoolWriter {
    fn start(file: std::fs::File, hasher: Hasher, fill: Arc<Fill>) -> Self {
        let (queue, frames) = mpsc::channel(QUEUED_FRAMES);
        let thread = tokio::task::spawn_blocking(move || write_spool(&file, hasher, frames, &fill));
        SpoolWriter { queue, thread }
    }

    /// False once the writer has stopped on an error, which `finish` returns.
    async fn write(&self, data: Bytes) -> bool {
        self.queue.send(data).await.is_ok()
    }

    /// Waits until everything queued is written: the hash and the length of it all.
    async fn finish(self) -> io::Result<(Hasher, u64)> {
        drop(self.queue);
        self.thread.await.map_err(io::Error::other)?
    }
}

fn write_spool(
    file: &std::fs::File,
    mut hasher: Hasher,
    mut frames: mpsc::Receiver<Bytes>,
    fill: &Fill,
) -> io::Result<(Hasher, u64)> {
    let mut written = 0;
    while let Some(data) = frames.blocking_recv() {
        hasher.update(&data);
        file.write_all_at(&data, written)?;
        written += data.len() as u64;
        fill.wrote(written);
    }
    Ok((hasher, written))
}

fn spool_error(e: &io::Error) -> Failure {
    Failure::Aborted(format!("cannot write the spool file: {e}"))
}

enum Pumped {
    Complete,
    BrokeOff(String),
}

fn content_length(response: &upstream::Response) -> Option<u64> {
    response.headers().get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The first byte of a `Content-Range: bytes N-M/size` answer.
fn range_start(response: &upstream::Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    value.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    /// A request that missed the index just before a fill committed must not fetch again.
    #[tokio::test]
    async fn a_blob_committed_meanwhile_is_found_not_fetched_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = super::super::Limits {
            max_bytes: None,
            min_free_disk: 0,
            fill_timeout: Duration::from_secs(5),
        };
        let bytes = b"layer".to_vec();
        let digest = Digest::sha256_of(&bytes);
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).expect("mkdir");
        let hex = digest.to_string().trim_start_matches("sha256:").to_owned();
        std::fs::write(dir.path().join("blobs/sha256").join(hex), &bytes).expect("write");
        let cache = Arc::new(Cache::load(dir.path(), limits, Arc::new(Metrics::default())).expect("load"));
        let never: Opener = Box::new(|_| panic!("the upstream was asked for a cached blob"));
        let joined = join_or_start(&cache, &digest, never).await.expect("join");
        assert!(matches!(joined, Joined::Cached));
    }
}
