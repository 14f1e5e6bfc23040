//! The spool writer: hashes the source's bytes and writes them into the spool on a thread of
//! its own, so neither holds up the runtime nor the readers, which are sent the frames
//! themselves until they are written.
//!
//! The thread is the writer's own, not one of tokio's blocking pool: a writer lives as long as
//! its transfer (minutes, for a big layer on a slow link), and cache hits open and read their
//! files on that pool. Writers there would hold a pool thread per fill, so a warm pull's
//! latency would come to depend on how many fills run. Fills are capped
//! (`mirror::transfers`), so their threads are too.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::Fill;
use crate::digest::Hasher;

/// Frames waiting for the writer; with hyper's frames of up to ~400 KiB this bounds a fill's
/// memory to a few MiB.
const QUEUED_FRAMES: usize = 2;
/// How often a spool of unknown length, which claimed no space up front, checks the free disk
/// as it grows: a statvfs per 64 MiB costs nothing beside writing them.
const FREE_DISK_CHECK: u64 = 64 << 20;

pub(super) struct SpoolWriter {
    queue: mpsc::Sender<Bytes>,
    done: oneshot::Receiver<io::Result<(Hasher, u64)>>,
}

impl SpoolWriter {
    /// Starts the writer. With `keep_free`, it stops with an error rather than leave less free
    /// disk than that.
    pub(super) fn start(
        file: std::fs::File,
        hasher: Hasher,
        keep_free: Option<u64>,
        fill: Arc<Fill>,
    ) -> io::Result<Self> {
        let (queue, frames) = mpsc::channel(QUEUED_FRAMES);
        let (report, done) = oneshot::channel();
        let spool = Spool { file, keep_free, fill };
        std::thread::Builder::new()
            .name("regmirror-spool".into())
            .spawn(move || {
                // The fill may have given up waiting; then nobody needs the outcome.
                let _ = report.send(spool.write(hasher, frames));
            })?;
        Ok(SpoolWriter { queue, done })
    }

    /// False once the writer has stopped on an error, which `finish` returns.
    pub(super) async fn write(&self, data: Bytes) -> bool {
        self.queue.send(data).await.is_ok()
    }

    /// Waits until everything queued is written: the hash and the length of it all.
    pub(super) async fn finish(self) -> io::Result<(Hasher, u64)> {
        drop(self.queue);
        match self.done.await {
            Ok(outcome) => outcome,
            Err(_) => Err(io::Error::other("the spool writer thread died")),
        }
    }
}

/// What the writer thread writes into.
struct Spool {
    file: std::fs::File,
    keep_free: Option<u64>,
    fill: Arc<Fill>,
}

impl Spool {
    fn write(&self, mut hasher: Hasher, mut frames: mpsc::Receiver<Bytes>) -> io::Result<(Hasher, u64)> {
        let mut written = 0;
        let mut checked = 0;
        while let Some(data) = frames.blocking_recv() {
            if let Some(keep) = self.keep_free.filter(|_| written - checked >= FREE_DISK_CHECK) {
                ensure_free(&self.file, keep)?;
                checked = written;
            }
            hasher.update(&data);
            self.file.write_all_at(&data, written)?;
            written += data.len() as u64;
            self.fill.wrote(written);
        }
        Ok((hasher, written))
    }
}

/// Fails when the file system holding `file` has less than `keep` bytes free.
fn ensure_free(file: &std::fs::File, keep: u64) -> io::Result<()> {
    let stats = rustix::fs::fstatvfs(file)?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    if free < keep {
        let message = format!("the disk is down to {free} bytes free, under the {keep} kept");
        return Err(io::Error::other(message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_spool_stops_short_of_the_free_disk_kept() {
        let file = tempfile::tempfile().expect("a temp file");
        assert!(ensure_free(&file, 0).is_ok());
        let error = ensure_free(&file, u64::MAX).expect_err("no disk is that large");
        assert!(error.to_string().contains("under the"), "{error}");
    }
}
