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

pub(super) struct SpoolWriter {
    queue: mpsc::Sender<Bytes>,
    done: oneshot::Receiver<io::Result<(Hasher, u64)>>,
}

impl SpoolWriter {
    pub(super) fn start(file: std::fs::File, hasher: Hasher, fill: Arc<Fill>) -> io::Result<Self> {
        let (queue, frames) = mpsc::channel(QUEUED_FRAMES);
        let (report, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("regmirror-spool".into())
            .spawn(move || {
                // The fill may have given up waiting; then nobody needs the outcome.
                let _ = report.send(write_spool(&file, hasher, frames, &fill));
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
