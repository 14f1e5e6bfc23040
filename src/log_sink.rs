//! Where log lines go: stderr, through one buffer that every thread appends whole lines to,
//! written out when it fills and by a flusher thread a few milliseconds after a line went in
//! (the thread sleeps while nothing waits, so an idle server is not woken).
//!
//! A request logs one line. Writing each with its own `write(2)`, or handing each to a writer
//! thread that must be woken for it, costs as much as answering a warm HEAD; gathering them
//! costs a lock and a copy. No line is dropped, and `Flush` writes out the rest at exit.

use std::io::{self, BufWriter, Stderr, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use crate::sync::LockExt;

/// How long a line may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(10);
const BUFFER: usize = 64 * 1024;

#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

struct Shared {
    buffer: Mutex<BufWriter<Stderr>>,
    /// Signalled when a line goes into an empty buffer.
    pending: Condvar,
    stopped: AtomicBool,
}

/// Flushes the sink when dropped: keep it alive for as long as the program logs.
pub struct Flush(LogSink);

impl LogSink {
    /// The sink and its guard; starts the flusher thread.
    pub fn start() -> (LogSink, Flush) {
        let sink = LogSink {
            shared: Arc::new(Shared {
                buffer: Mutex::new(BufWriter::with_capacity(BUFFER, io::stderr())),
                pending: Condvar::new(),
                stopped: AtomicBool::new(false),
            }),
        };
        let shared = sink.shared.clone();
        // Without a flusher thread lines would still be written once the buffer fills.
        let _ = thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || shared.flush_periodically());
        (sink.clone(), Flush(sink))
    }
}

impl Shared {
    /// Waits for a line, lets others gather behind it for `FLUSH_EVERY`, writes them all out.
    fn flush_periodically(&self) {
        while !self.stopped.load(Ordering::Relaxed) {
            let mut buffer = self.buffer.locked();
            while buffer.buffer().is_empty() && !self.stopped.load(Ordering::Relaxed) {
                buffer = self.pending.wait(buffer).unwrap_or_else(|p| p.into_inner());
            }
            drop(buffer);
            thread::sleep(FLUSH_EVERY);
            let _ = self.buffer.locked().flush();
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        let shared = &self.0.shared;
        shared.stopped.store(true, Ordering::Relaxed);
        let _ = shared.buffer.locked().flush();
        shared.pending.notify_one();
    }
}

/// One event's line, appended whole under the lock.
pub struct Line<'a> {
    buffer: MutexGuard<'a, BufWriter<Stderr>>,
    pending: &'a Condvar,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.buffer().is_empty() {
            self.pending.notify_one();
        }
        self.buffer.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            buffer: self.shared.buffer.locked(),
            pending: &self.shared.pending,
        }
    }
}
