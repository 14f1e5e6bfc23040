//! Where log lines go: stderr, through one buffer that every thread appends whole lines to,
//! written out when it fills and by a flusher thread a few milliseconds after a line went in.
//!
//! A request logs one line. Writing each with its own `write(2)`, or handing each to a writer
//! thread that must be woken for it, costs as much as answering a warm HEAD; gathering them
//! costs a lock and a copy. No line is dropped, and `Flush` writes out the rest at exit.

use std::io::{self, BufWriter, Stderr, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    fn flush_periodically(&self) {
        while !self.stopped.load(Ordering::Relaxed) {
            thread::sleep(FLUSH_EVERY);
            let _ = self.buffer.locked().flush();
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.0.shared.stopped.store(true, Ordering::Relaxed);
        let _ = self.0.shared.buffer.locked().flush();
    }
}

/// One event's line, appended whole under the lock.
pub struct Line<'a>(MutexGuard<'a, BufWriter<Stderr>>);

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(self.shared.buffer.locked())
    }
}
