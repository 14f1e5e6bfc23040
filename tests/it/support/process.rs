//! The real `regmirror` binary in a child process, for what an in-process server cannot
//! show: a SIGKILL in the middle of a fill, signals (SIGTERM, SIGINT, SIGHUP), systemd's
//! notify socket, the log format, and a listener bound before the index loads.
//!
//! It listens on 127.0.0.1:0 unless told otherwise, and its addresses are read from its
//! "regmirror ready" log line (text or JSON); the rest of its log is kept for assertions and
//! failure messages. The environment is cleared so that no `REGMIRROR_*` variable of the
//! machine running the tests changes its configuration. Signals go to its pid through
//! `kill(1)`; dropping a `MirrorProcess` SIGKILLs and reaps it.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use http::Method;
use tokio::sync::oneshot;

use super::client::{self, Reply};
use super::fake_registry::FakeRegistry;
use super::streaming::Streaming;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MirrorProcess {
    child: Child,
    ready: Option<Ready>,
    announced: Option<oneshot::Receiver<Ready>>,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    tls: bool,
}

/// What the "regmirror ready" line says.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
}

pub struct Builder {
    upstream: String,
    data_dir: PathBuf,
    listen: SocketAddr,
    transport: Transport,
    json_logs: bool,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

enum Transport {
    Plain,
    /// The mirror's own CA and server certificate under `<data-dir>/certs`.
    OwnCa,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

impl Builder {
    /// A fixed address instead of 127.0.0.1:0, for a test that must know it before the
    /// ready line.
    pub fn listen(mut self, addr: SocketAddr) -> Builder {
        self.listen = addr;
        self
    }

    /// TLS with the mirror's own CA, created in the data directory on first start.
    pub fn own_ca(mut self) -> Builder {
        self.transport = Transport::OwnCa;
        self
    }

    /// TLS with these PEM files (`--tls-cert`, `--tls-key`).
    pub fn tls_files(mut self, cert: &Path, key: &Path) -> Builder {
        self.transport = Transport::Files {
            cert: cert.to_owned(),
            key: key.to_owned(),
        };
        self
    }

    /// `--log-format json`.
    pub fn json_logs(mut self) -> Builder {
        self.json_logs = true;
        self
    }

    /// More `serve` flags, e.g. `["--shutdown-grace", "1s"]`.
    pub fn args<I, S>(mut self, args: I) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Builder {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts the process and waits for its ready line.
    pub async fn spawn(self) -> MirrorProcess {
        let mut process = self.launch();
        process.wait_ready().await;
        process
    }

    /// Starts the process without waiting for anything.
    pub fn launch(self) -> MirrorProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_regmirror"));
        if self.json_logs {
            command.args(["--log-format", "json"]);
        }
        command
            .arg("serve")
            .arg("--listen")
            .arg(self.listen.to_string())
            .arg("--upstream")
            .arg(&self.upstream)
            .arg("--data-dir")
            .arg(&self.data_dir)
            // The tests are not about the free space of the machine they run on.
            .args(["--min-free-disk", "0"]);
        match &self.transport {
            Transport::Plain => {
                command.arg("--insecure-http");
            }
            Transport::OwnCa => {}
            Transport::Files { cert, key } => {
                command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
            }
        }
        command
            .args(&self.args)
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the regmirror binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (ready, announced) = oneshot::channel();
        let thread_log = Arc::clone(&log);
        // Drained to the end, so the child never blocks on a full pipe.
        let reader = std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(parsed) = parse_ready(&line) {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(parsed);
                    }
                }
                let mut log = thread_log.lock().unwrap_or_else(PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });
        MirrorProcess {
            child,
            ready: None,
            announced: Some(announced),
            log,
            reader: Some(reader),
            tls: !matches!(self.transport, Transport::Plain),
        }
    }
}

impl MirrorProcess {
    /// `regmirror serve` over plain HTTP against `upstream`, with `data_dir` as its cache.
    pub fn builder(upstream: &FakeRegistry, data_dir: &Path) -> Builder {
        Builder {
            upstream: upstream.url(),
            data_dir: data_dir.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            transport: Transport::Plain,
            json_logs: false,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Plain HTTP, default settings; waits until it is ready.
    pub async fn spawn(upstream: &FakeRegistry, data_dir: &Path) -> MirrorProcess {
        MirrorProcess::builder(upstream, data_dir).spawn().await
    }

    /// Waits for the "regmirror ready" line; panics with the log if it does not come.
    pub async fn wait_ready(&mut self) -> Ready {
        if let Some(ready) = self.ready {
            return ready;
        }
        let announced = self.announced.take().expect("waiting for readiness once");
        match tokio::time::timeout(STARTUP_TIMEOUT, announced).await {
            Ok(Ok(ready)) => {
                self.ready = Some(ready);
                ready
            }
            _ => panic!(
                "regmirror did not report ready within {STARTUP_TIMEOUT:?}:\n{}",
                self.log()
            ),
        }
    }

    fn ready(&self) -> Ready {
        self.ready.expect("the mirror has reported ready (wait_ready)")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The main listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.ready().listen
    }

    /// The `--admin-listen` address, as bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.ready()
            .admin
            .unwrap_or_else(|| panic!("no admin listener in the ready line:\n{}", self.log()))
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr())
    }

    pub async fn get(&self, path: &str) -> Reply {
        client::send(&self.url(path), Method::GET, &[]).await
    }

    pub async fn open(&self, path: &str) -> Streaming {
        Streaming::open(&self.url(path), Method::GET, &[]).await
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until `needle` has appeared on at least `times` log lines.
    pub async fn wait_for_log(&self, needle: &str, times: usize, within: Duration) {
        let seen = super::poll_until(within, || {
            self.log().lines().filter(|line| line.contains(needle)).count() >= times
        })
        .await;
        assert!(
            seen,
            "no {times}× '{needle}' in the log within {within:?}:\n{}",
            self.log()
        );
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) to this process, and only to it.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -s {name} {} failed: {status}", self.pid());
    }

    /// Waits for the process to exit and its log to be read to the end; `None` if it is
    /// still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the mirror process") {
                let drained = super::poll_until(Duration::from_secs(2), || {
                    self.reader.as_ref().is_none_or(JoinHandle::is_finished)
                })
                .await;
                assert!(drained, "stderr still open after exit");
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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

/// The addresses on a "regmirror ready" line: `listen=ADDR admin=Some(ADDR)` in text, the
/// same as `fields` in JSON.
fn parse_ready(line: &str) -> Option<Ready> {
    if !line.contains("regmirror ready") {
        return None;
    }
    let json: Option<serde_json::Value> = serde_json::from_str(line).ok();
    let field = |name: &str| -> Option<String> {
        match &json {
            Some(json) => json["fields"][name].as_str().map(str::to_owned),
            None => line
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned),
        }
    };
    let listen = field("listen")?.parse().ok()?;
    let admin = field("admin").and_then(|a| a.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok());
    Some(Ready { listen, admin })
}

/// Runs `command` to its end with stdout and stderr captured; kills it (by pid) and fails
/// if it takes longer than `within`.
pub async fn output_within(command: &mut Command, within: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = tokio::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The pipes close when the last process holding them (a browser's helpers, say) exits.
    let closed = super::poll_until(Duration::from_secs(5), || stdout.is_finished() && stderr.is_finished()).await;
    assert!(closed, "{command:?} exited but its output pipes stayed open");
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
