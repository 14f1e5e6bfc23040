//! Signals to the real binary (issue 6). SIGTERM stops accepting and lets transfers in flight
//! finish, from the cache or from a fill, then exits 0 within `--shutdown-grace` with the
//! cache consistent; a client that stalls is cut off when the grace period ends (SIGINT
//! here, which must behave the same). SIGHUP re-reads the TLS certificate and key: new
//! connections get the new certificate, open ones keep working, and a broken replacement
//! leaves the current one serving.

use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::process::MirrorProcess;
use crate::support::tls::{ServerCert, TestCa, TlsClient};
use crate::support::{poll_until, DataDir, FakeRegistry, Fault, Gate, Target};

const REPO: &str = "library/postgres";
/// Bound on waiting for what the process does or reports (the port closing, a log line, its
/// exit), generous for a loaded machine: a process that never does it fails all the same.
const WAIT: Duration = Duration::from_secs(10);

fn blob_path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

/// Waits until the port refuses connections: the listener is closed.
async fn refuses_connections(addr: SocketAddr, within: Duration) -> bool {
    poll_until(within, || {
        StdTcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err()
    })
    .await
}

/// A cached 8 MiB blob, read by a client much slower than the mirror: SIGTERM lands in the
/// middle, the port closes at once, the body still arrives whole, and the process exits 0
/// soon after it, well within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_slow_download_finish_then_exits_zero() {
    let fake = FakeRegistry::start().await;
    let blob = Blob::new(random_bytes(8 * MIB));
    fake.add_blob(REPO, blob.bytes.clone());
    let dir = tempfile::tempdir().expect("data dir");
    let grace = Duration::from_secs(20);
    let mut mirror = MirrorProcess::builder(&fake, dir.path())
        .args(["--shutdown-grace", "20s"])
        .spawn()
        .await;
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);

    let mut client = mirror.open(&blob_path(&blob)).await;
    assert_eq!(client.status, StatusCode::OK);
    client.read_at_least(512 * 1024).await;
    let signalled = Instant::now();
    mirror.signal("TERM");
    assert!(
        refuses_connections(mirror.addr(), WAIT).await,
        "the mirror still accepts connections after SIGTERM:\n{}",
        mirror.log()
    );
    assert!(
        mirror.wait_exit(Duration::ZERO).await.is_none(),
        "the mirror exited with a transfer in flight:\n{}",
        mirror.log()
    );

    // ~16 KiB frames, 2 ms apart: about a second for the rest.
    let body = client
        .finish_slowly(Duration::from_millis(2), Duration::from_secs(15))
        .await;
    let body = body.unwrap_or_else(|e| panic!("the transfer was cut: {e}\n{}", mirror.log()));
    assert_eq!(body.len(), blob.bytes.len());
    assert!(body[..] == blob.bytes[..], "body bytes differ");

    let status = mirror.wait_exit(WAIT).await;
    let elapsed = signalled.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 after the transfer, got {status:?}:\n{}",
        mirror.log()
    );
    assert!(elapsed < grace, "took {elapsed:?}, grace {grace:?}");
}

/// A miss being filled when SIGTERM comes, its upstream body held halfway until the mirror
/// has closed its port: the fill and the client's body complete, the blob is committed
/// (exact bytes in `blobs/`, nothing left in `tmp/`), and the process exits 0; the next start
/// serves it without the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_fill_finishes_it_and_leaves_the_cache_consistent() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(4 * MIB));
    fake.add_blob(REPO, blob.bytes.clone());
    let gate = Gate::new();
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::HoldMidBody(gate.clone()));
    let dir = tempfile::tempdir().expect("data dir");
    let data_dir = DataDir::new(dir.path());
    let mut mirror = MirrorProcess::builder(&fake, dir.path())
        .args(["--shutdown-grace", "20s"])
        .spawn()
        .await;

    let mut client = mirror.open(&blob_path(&blob)).await;
    assert_eq!(client.status, StatusCode::OK);
    client.read_at_least(256 * 1024).await;
    mirror.signal("TERM");
    assert!(
        refuses_connections(mirror.addr(), WAIT).await,
        "the mirror still accepts connections after SIGTERM:\n{}",
        mirror.log()
    );
    assert!(gate.reached(WAIT).await, "the upstream body is held halfway");
    assert_eq!(fake.bodies_completed(&blob.digest), 0);
    gate.open();
    let body = client.finish_within(Duration::from_secs(15)).await;
    let body = body.unwrap_or_else(|e| panic!("the transfer was cut: {e}\n{}", mirror.log()));
    assert!(body[..] == blob.bytes[..], "body bytes differ");

    let status = mirror.wait_exit(WAIT).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 after the transfer, got {status:?}:\n{}",
        mirror.log()
    );
    let stored = std::fs::read(data_dir.blob_path(&blob.digest)).unwrap_or_default();
    assert!(
        stored == blob.bytes[..],
        "the blob was not committed whole:\n{}",
        mirror.log()
    );
    assert!(data_dir.tmp_files().is_empty(), "{:?}", data_dir.tmp_files());

    fake.stop().await;
    let mirror = MirrorProcess::spawn(&fake, dir.path()).await;
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
}

/// A client that stops reading holds its transfer open forever; with `--shutdown-grace 1s`
/// the process still exits (0) once the grace period is over (not before; within seconds
/// after, on a loaded machine), and the client's body ends in an error rather than cleanly.
/// SIGINT, as from a terminal, is a shutdown like SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_a_stalled_client_exits_when_the_grace_period_ends() {
    let fake = FakeRegistry::start().await;
    let blob = Blob::new(random_bytes(8 * MIB));
    fake.add_blob(REPO, blob.bytes.clone());
    let dir = tempfile::tempdir().expect("data dir");
    let grace = Duration::from_secs(1);
    let margin = WAIT;
    let mut mirror = MirrorProcess::builder(&fake, dir.path())
        .args(["--shutdown-grace", "1s"])
        .spawn()
        .await;
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);

    let mut client = mirror.open(&blob_path(&blob)).await;
    client.read_at_least(64 * 1024).await;
    // The client reads no more; its small receive buffer soon stops the mirror's writes.
    let signalled = Instant::now();
    mirror.signal("INT");
    let status = mirror.wait_exit(grace + margin).await;
    let elapsed = signalled.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 within {:?} of SIGINT, got {status:?} after {elapsed:?}:\n{}",
        grace + margin,
        mirror.log()
    );
    assert!(
        elapsed >= grace,
        "exited after {elapsed:?}, before the {grace:?} grace period was over"
    );
    assert!(
        mirror.log().contains("grace period over"),
        "the log says why the connection was closed:\n{}",
        mirror.log()
    );
    assert!(
        client.finish().await.is_err(),
        "a body cut off at the end of the grace period must not end cleanly"
    );
}

/// The certificate and key files the mirror is started with, replaced atomically.
struct CertFiles {
    dir: tempfile::TempDir,
}

impl CertFiles {
    fn new(first: &ServerCert) -> CertFiles {
        let files = CertFiles {
            dir: tempfile::tempdir().expect("cert dir"),
        };
        files.install(&first.cert_pem, &first.key_pem);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// Writes beside and renames over, so a reload never reads half a file.
    fn install(&self, cert_pem: &str, key_pem: &str) {
        replace(&self.cert(), cert_pem);
        replace(&self.key(), key_pem);
    }
}

fn replace(path: &Path, text: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, text).expect("write the replacement");
    std::fs::rename(&staged, path).expect("rename the replacement into place");
}

async fn tls_mirror(fake: &FakeRegistry, data_dir: &Path, files: &CertFiles) -> MirrorProcess {
    MirrorProcess::builder(fake, data_dir)
        .tls_files(&files.cert(), &files.key())
        .spawn()
        .await
}

async fn connect(mirror: &MirrorProcess, ca: &TestCa) -> TlsClient {
    let addr = mirror.addr();
    TlsClient::connect(addr, ca.client_config(), &format!("localhost:{}", addr.port()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", mirror.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_gives_new_connections_the_new_certificate() {
    let fake = FakeRegistry::start().await;
    let ca = TestCa::new();
    let (a, b) = (ca.issue("certificate A"), ca.issue("certificate B"));
    let files = CertFiles::new(&a);
    let dir = tempfile::tempdir().expect("data dir");
    let mirror = tls_mirror(&fake, dir.path(), &files).await;

    let mut open = connect(&mirror, &ca).await;
    assert!(open.peer == a.der, "the mirror serves certificate A");
    assert_eq!(open.get("/v2/", &[]).await.status, StatusCode::OK);

    files.install(&b.cert_pem, &b.key_pem);
    mirror.signal("HUP");
    mirror.wait_for_log("reloaded the TLS certificate", 1, WAIT).await;
    let mut fresh = connect(&mirror, &ca).await;
    assert!(fresh.peer == b.der, "a new connection gets certificate B");
    assert_eq!(fresh.get("/v2/", &[]).await.status, StatusCode::OK);

    // The connection opened before the reload is still up, and still on A.
    let reply = open.try_get("/v2/", &[]).await;
    let reply = reply.unwrap_or_else(|e| panic!("the open connection broke: {e}\n{}", mirror.log()));
    assert_eq!(reply.status, StatusCode::OK);
    assert!(open.peer == a.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_key_keeps_the_current_certificate() {
    let fake = FakeRegistry::start().await;
    let ca = TestCa::new();
    let (a, b) = (ca.issue("certificate A"), ca.issue("certificate B"));
    let files = CertFiles::new(&a);
    let dir = tempfile::tempdir().expect("data dir");
    let mut mirror = tls_mirror(&fake, dir.path(), &files).await;
    assert!(connect(&mirror, &ca).await.peer == a.der);

    // A renewal gone wrong: the new certificate with its key cut off halfway.
    let broken_key = &b.key_pem[..b.key_pem.len() / 2];
    files.install(&b.cert_pem, broken_key);
    mirror.signal("HUP");
    mirror.wait_for_log("cannot reload the TLS certificate", 1, WAIT).await;
    let mut client = connect(&mirror, &ca).await;
    assert!(client.peer == a.der, "the mirror keeps serving certificate A");
    assert_eq!(client.get("/v2/", &[]).await.status, StatusCode::OK);

    // Fixed, and signalled again: now B.
    files.install(&b.cert_pem, &b.key_pem);
    mirror.signal("HUP");
    mirror.wait_for_log("reloaded the TLS certificate", 1, WAIT).await;
    assert!(connect(&mirror, &ca).await.peer == b.der);

    mirror.signal("TERM");
    let status = mirror.wait_exit(WAIT).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}:\n{}", mirror.log());
}
