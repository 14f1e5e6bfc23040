//! The real `regmirror` binary in a child process, for what an in-process server cannot
//! show: a SIGKILL in the middle of a fill, and the next start on the same data directory.
//!
//! It listens on 127.0.0.1:0 and the address is read from its "regmirror ready" log line;
//! the rest of its log is kept for failure messages. The environment is cleared so that no
//! `REGMIRROR_*` variable of the machine running the tests changes its configuration.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use tokio::sync::oneshot;

use super::fake_registry::FakeRegistry;
use super::mirror::{self, Reply};
use super::streaming::Streaming;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MirrorProcess {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl MirrorProcess {
    /// `regmirror serve` over plain HTTP against `upstream`, with `data_dir` as its cache.
    pub async fn spawn(upstream: &FakeRegistry, data_dir: &Path) -> MirrorProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_regmirror"))
            .args(["serve", "--listen", "127.0.0.1:0", "--insecure-http", "--upstream"])
            .arg(upstream.url())
            .arg("--data-dir")
            .arg(data_dir)
            // The test is about crashes, not about the free space of the machine it runs on.
            .args(["--min-free-disk", "0"])
            .env_clear()
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the regmirror binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (ready, listening) = oneshot::channel();
        let thread_log = Arc::clone(&log);
        // Drained to the end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("regmirror ready") {
                    let addr = line.split_whitespace().find_map(|word| word.strip_prefix("listen="));
                    if let (Some(ready), Some(addr)) = (ready.take(), addr.and_then(|a| a.parse().ok())) {
                        let _ = ready.send(addr);
                    }
                }
                let mut log = thread_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr: Option<SocketAddr> = tokio::time::timeout(STARTUP_TIMEOUT, listening)
            .await
            .ok()
            .and_then(Result::ok);
        let mut process = MirrorProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        match addr {
            Some(addr) => process.addr = addr,
            None => panic!(
                "regmirror did not report ready within {STARTUP_TIMEOUT:?}:\n{}",
                process.log()
            ),
        }
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> Reply {
        mirror::send(&self.url(path), Method::GET, &[]).await
    }

    pub async fn open(&self, path: &str) -> Streaming {
        Streaming::open(&self.url(path), Method::GET, &[]).await
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// SIGKILL: no shutdown hook, no flush, no cleanup; then reaps the process.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the mirror");
        self.child.wait().expect("reap the mirror");
    }
}

impl Drop for MirrorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
