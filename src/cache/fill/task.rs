//! The task that drives one fill to its end: open the source, claim the disk space, stream
//! into the spool (resuming a bounded number of times when the source breaks off), check the
//! digest, and commit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;

use super::spool::SpoolWriter;
use super::{Failure, Fill, Opened, Progress, Source};
use crate::cache::store::TempFile;
use crate::cache::{Cache, Entry};
use crate::digest::{Digest, Hasher};
use crate::sync::LockExt;

/// A silent source is given up on (and the transfer resumed) after this long.
const SOURCE_IDLE: Duration = Duration::from_secs(60);
const MAX_RESUMES: u32 = 3;

pub(super) struct Task {
    cache: Arc<Cache>,
    digest: Digest,
    fill: Arc<Fill>,
}

/// The transfer's running state, kept across resumes.
struct Transfer {
    size: Option<u64>,
    /// Bytes taken from the source and queued for the spool writer.
    received: u64,
    writer: SpoolWriter,
}

enum Pumped {
    Complete,
    BrokeOff(String),
}

impl Task {
    pub(super) fn new(cache: Arc<Cache>, digest: Digest, fill: Arc<Fill>) -> Task {
        Task { cache, digest, fill }
    }

    pub(super) async fn run(self, source: impl Source) {
        self.cache.metrics.fills_in_flight.inc();
        let outcome = self.transfer(&source).await;
        self.cache.metrics.fills_in_flight.dec();
        let progress = match outcome {
            Ok((temp, size)) => {
                // Clients need not wait for the disk to sync: the bytes they got are checked.
                self.fill.progress.send_replace(Progress::Verified { size });
                let cached = self.commit(temp, size).await;
                Progress::Done { size, cached }
            }
            Err(failure) => {
                if let Failure::Aborted(reason) = &failure {
                    tracing::warn!(digest = %self.digest, reason, "blob fill failed; nothing cached");
                }
                Progress::Failed(failure)
            }
        };
        // Out of the map first: a request that sees this fill's end (a client retrying after
        // an abort, say) must start a new fill, not join the finished one. A committed blob
        // entered the index before, so no request finds it in neither.
        self.cache.fills.remove(&self.digest);
        self.fill.progress.send_replace(progress);
    }

    /// Fetches the blob into the spool: the verified spool and its size, ready to commit.
    async fn transfer(&self, source: &impl Source) -> Result<(TempFile, u64), Failure> {
        let opened = source.open(0).await.map_err(Failure::Refused)?;
        let temp = match self.spool(opened.size).await {
            Ok(temp) => temp,
            Err(failure) => {
                *self.fill.unused.locked() = Some(opened);
                return Err(failure);
            }
        };
        let file = temp.writer().map_err(|e| spool_error(&e))?;
        let hasher = Hasher::new(self.digest.algorithm());
        let writer = SpoolWriter::start(file, hasher, self.fill.clone()).map_err(|e| spool_error(&e))?;
        let size = opened.size;
        self.fill
            .progress
            .send_replace(Progress::Streaming { size, releasable: 0 });
        let mut transfer = Transfer {
            size,
            received: 0,
            writer,
        };
        let limit = self.time_limit(size);
        let receive = self.receive(source, &mut transfer, opened);
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

    /// Makes the spool and claims the disk space for a blob of known size up front, so a full
    /// disk shows before any byte is sent (and the blob can still pass through) rather than
    /// halfway.
    async fn spool(&self, size: Option<u64>) -> Result<TempFile, Failure> {
        let uncacheable = |why: String| Failure::Uncacheable(why);
        let temp = self
            .cache
            .store
            .temp()
            .await
            .map_err(|e| uncacheable(format!("no spool file: {e}")))?;
        let reader = temp.reader().map_err(|e| uncacheable(format!("no spool file: {e}")))?;
        let stats = rustix::fs::fstatvfs(&temp.file).map_err(|e| uncacheable(format!("statvfs: {e}")))?;
        let free = stats.f_bavail.saturating_mul(stats.f_frsize);
        let size = size.unwrap_or(0);
        if free < size.saturating_add(self.cache.limits.min_free_disk) {
            return Err(uncacheable(format!("{size} bytes would eat into the free disk kept")));
        }
        if size > 0 {
            rustix::fs::fallocate(&temp.file, rustix::fs::FallocateFlags::empty(), 0, size)
                .map_err(|e| uncacheable(format!("cannot claim {size} bytes: {e}")))?;
        }
        let _ = self.fill.spool.set(Arc::new(reader));
        Ok(temp)
    }

    fn time_limit(&self, size: Option<u64>) -> Duration {
        self.cache.limits.fill_timeout + Duration::from_secs(size.unwrap_or(0) >> 20)
    }

    /// Streams the source into the spool, reopening it from where it broke off a bounded number
    /// of times.
    async fn receive(&self, source: &impl Source, transfer: &mut Transfer, opened: Opened) -> Result<(), Failure> {
        let mut opened = opened;
        let mut resumes = 0;
        loop {
            match self.pump(transfer, opened).await? {
                Pumped::Complete => return Ok(()),
                Pumped::BrokeOff(reason) if resumes < MAX_RESUMES => {
                    resumes += 1;
                    tracing::info!(digest = %self.digest, at = transfer.received, reason, "upstream broke off; resuming");
                    opened = source
                        .open(transfer.received)
                        .await
                        .map_err(|e| Failure::Aborted(format!("resuming: {e}")))?;
                }
                Pumped::BrokeOff(reason) => return Err(Failure::Aborted(reason)),
            }
        }
    }

    /// Copies the source's bytes into the spool until they end or break off.
    async fn pump(&self, t: &mut Transfer, mut opened: Opened) -> Result<Pumped, Failure> {
        loop {
            let data = match tokio::time::timeout(SOURCE_IDLE, opened.bytes.next()).await {
                Ok(Some(Ok(data))) => data,
                Ok(None) if t.size.is_none_or(|size| t.received == size) => return Ok(Pumped::Complete),
                Ok(None) => return Ok(Pumped::BrokeOff("body ended early".into())),
                Ok(Some(Err(e))) => return Ok(Pumped::BrokeOff(e.to_string())),
                Err(_) => return Ok(Pumped::BrokeOff("upstream went silent".into())),
            };
            if t.size.is_some_and(|size| t.received + data.len() as u64 > size) {
                return Err(Failure::Aborted("upstream sent more bytes than announced".into()));
            }
            self.release(t, data).await?;
        }
    }

    /// Queues `data` for the spool and lets readers have all but the very last byte received,
    /// which waits for the digest check.
    async fn release(&self, t: &mut Transfer, data: Bytes) -> Result<(), Failure> {
        if data.is_empty() {
            return Ok(());
        }
        self.fill.received(t.received, data.clone());
        t.received += data.len() as u64;
        self.fill.progress.send_replace(Progress::Streaming {
            size: t.size,
            releasable: t.received - 1,
        });
        if !t.writer.write(data).await {
            return Err(Failure::Aborted("the spool writer stopped".into()));
        }
        Ok(())
    }

    /// Renames the verified spool into the store, then indexes it; whether that worked.
    /// Readers hold their own handle, so they finish even when the commit fails.
    async fn commit(&self, temp: TempFile, size: u64) -> bool {
        match self.cache.store.commit(temp, &self.digest).await {
            Ok(()) => {
                let entry = Entry { size, media_type: None };
                self.cache.index.insert(self.digest.clone(), entry);
                true
            }
            Err(e) => {
                tracing::error!(digest = %self.digest, error = %e, "cannot commit the blob; served but not cached");
                false
            }
        }
    }
}

fn spool_error(e: &std::io::Error) -> Failure {
    Failure::Aborted(format!("cannot write the spool file: {e}"))
}
