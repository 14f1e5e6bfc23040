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

const MAX_RESUMES: u32 = 3;
/// The most a blob's size adds to a fill's time limit. One second per MiB (1 MiB/s at the
/// least) lets big layers through slow links; without a ceiling, an upstream announcing a
/// huge size would keep a transfer's place for days. An hour covers 3.5 GiB at that rate; a
/// site pulling bigger layers through slower links raises `--fill-timeout`.
const MAX_STRETCH: Duration = Duration::from_secs(3600);

pub(super) struct Task {
    cache: Arc<Cache>,
    digest: Digest,
    /// The size the manifest descriptor that led to the blob gives, when known.
    described: Option<u64>,
    fill: Arc<Fill>,
}

/// The transfer's running state, kept across resumes.
struct Transfer {
    size: Option<u64>,
    /// The most bytes taken: the size when known, else the largest blob the cache takes.
    bound: u64,
    /// Bytes taken from the source and queued for the spool writer.
    received: u64,
    writer: SpoolWriter,
}

enum Pumped {
    Complete,
    BrokeOff(String),
}

impl Task {
    pub(super) fn new(cache: Arc<Cache>, digest: Digest, described: Option<u64>, fill: Arc<Fill>) -> Task {
        Task {
            cache,
            digest,
            described,
            fill,
        }
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
                if let Failure::Aborted(reason) | Failure::BadSize(reason) = &failure {
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
        let size = (self.cache.limits)
            .admit_size(opened.size, self.described)
            .map_err(Failure::BadSize)?;
        let temp = match self.spool(size).await {
            Ok(temp) => temp,
            Err(failure) => {
                *self.fill.unused.locked() = Some(opened);
                return Err(failure);
            }
        };
        let file = temp.writer().map_err(|e| spool_error(&e))?;
        // A spool of unknown length claimed no space up front: it watches the disk as it grows.
        let keep_free = size.is_none().then_some(self.cache.limits.min_free_disk);
        let hasher = Hasher::new(self.digest.algorithm());
        let writer = SpoolWriter::start(file, hasher, keep_free, self.fill.clone()).map_err(|e| spool_error(&e))?;
        self.fill
            .progress
            .send_replace(Progress::Streaming { size, releasable: 0 });
        let mut transfer = Transfer {
            size,
            bound: size.unwrap_or(self.cache.limits.max_blob_size),
            received: 0,
            writer,
        };
        let limit = time_limit(self.cache.limits.fill_timeout, size);
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
            source.rejected();
            return Err(Failure::Aborted(format!("the source's bytes hash to {actual}")));
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
            let idle = self.cache.limits.source_idle;
            let data = match tokio::time::timeout(idle, opened.bytes.next()).await {
                Ok(Some(Ok(data))) => data,
                Ok(None) if t.size.is_none_or(|size| t.received == size) => return Ok(Pumped::Complete),
                Ok(None) => return Ok(Pumped::BrokeOff("body ended early".into())),
                Ok(Some(Err(e))) => return Ok(Pumped::BrokeOff(e.to_string())),
                Err(_) => return Ok(Pumped::BrokeOff("upstream went silent".into())),
            };
            if t.received + data.len() as u64 > t.bound {
                return Err(Failure::Aborted(match t.size {
                    Some(_) => "upstream sent more bytes than announced".into(),
                    None => format!("upstream sent more than the {} bytes a blob may have", t.bound),
                }));
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
                let entry = Entry::new(size, None);
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

/// A fill's time limit: `fill_timeout`, plus a second per MiB of a blob of known size, up to
/// `MAX_STRETCH`.
fn time_limit(fill_timeout: Duration, size: Option<u64>) -> Duration {
    fill_timeout + Duration::from_secs(size.unwrap_or(0) >> 20).min(MAX_STRETCH)
}

fn spool_error(e: &std::io::Error) -> Failure {
    Failure::Aborted(format!("cannot write the spool file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_size_stretches_the_time_limit_an_hour_at_most() {
        let base = Duration::from_secs(300);
        assert_eq!(time_limit(base, None), base);
        assert_eq!(time_limit(base, Some(100 << 20)), base + Duration::from_secs(100));
        assert_eq!(time_limit(base, Some(1 << 40)), base + MAX_STRETCH);
    }
}
