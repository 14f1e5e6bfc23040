//! `/healthz` and `/readyz` (issue 6): alive, and ready while the cache can take fills;
//! with `--admin-listen`, health and metrics move to that listener; and, with the real
//! binary, readiness as systemd and a load balancer see it: the port may accept before the
//! index has loaded (requests wait in the backlog and get a real answer), `READY=1` reaches
//! `$NOTIFY_SOCKET` only once the listener is bound, and `STOPPING=1` on SIGTERM.

use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::net::UnixDatagram;

use crate::support::client::{self, Reply};
use crate::support::metrics::Scrape;
use crate::support::process::MirrorProcess;
use crate::support::{FakeRegistry, Format, Mirror};

fn assert_status_json(reply: &Reply, status: StatusCode, json_status: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.json()["status"], json_status, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_ok() {
    let fake = FakeRegistry::start().await;
    let mirror = Mirror::start(&fake).await;
    assert_status_json(&mirror.get("/healthz").await, StatusCode::OK, "ok");
    assert_status_json(&mirror.get("/readyz").await, StatusCode::OK, "ready");
    let head = mirror.head("/readyz").await;
    assert_eq!(head.status, StatusCode::OK, "{head:?}");
}

/// Without `tmp/` no fill can spool, so the mirror is not ready; it is again once `tmp/` is
/// back. (Removing the directory works as root too, where a `chmod` would not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_tmp_is_gone() {
    let fake = FakeRegistry::start().await;
    let mirror = Mirror::start(&fake).await;
    // Up and ready first: the store creates tmp/ as the server starts.
    assert_status_json(&mirror.get("/readyz").await, StatusCode::OK, "ready");
    let tmp = mirror.data_dir().tmp();

    std::fs::remove_dir_all(&tmp).expect("remove tmp/");
    assert_status_json(
        &mirror.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "cache not writable",
    );
    assert_status_json(&mirror.get("/healthz").await, StatusCode::OK, "ok");

    std::fs::create_dir(&tmp).expect("recreate tmp/");
    assert_status_json(&mirror.get("/readyz").await, StatusCode::OK, "ready");
}

/// A regular file where `tmp/` should be: nothing can be created "in" it, whoever asks, so
/// fills cannot spool and the mirror is not ready. Unlike a `chmod`, this holds for root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_tmp_is_a_file() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "3.20", Format::Oci);
    let mirror = Mirror::start(&fake).await;
    assert_status_json(&mirror.get("/readyz").await, StatusCode::OK, "ready");
    let tmp = mirror.data_dir().tmp();
    std::fs::remove_dir_all(&tmp).expect("remove tmp/");
    std::fs::write(&tmp, b"not a directory").expect("put a file in tmp/'s place");

    // The mirror still serves (a blob it cannot spool passes through uncached), and nothing
    // lands in the cache: the data directory is not writable where it matters.
    let layer = &image.layers[0];
    let path = format!("/v2/library/alpine/blobs/{}", layer.digest);
    mirror.get(&path).await.assert_blob(layer);
    assert!(!mirror.data_dir().has_blob(&layer.digest), "a fill spooled somewhere");

    assert_status_json(
        &mirror.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "cache not writable",
    );
}

/// With `--admin-listen`, `/metrics`, `/healthz` and `/readyz` answer there (plain HTTP) and
/// 404 on the main listener; the pull API and the status page stay on the main listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_takes_health_and_metrics_off_the_main_listener() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "3.20", Format::Oci);
    let dir = tempfile::tempdir().expect("data dir");
    let mirror = MirrorProcess::builder(&fake, dir.path())
        .args(["--admin-listen", "127.0.0.1:0"])
        .spawn()
        .await;
    assert_ne!(mirror.admin_addr(), mirror.addr());
    let admin = |path: &str| {
        let url = mirror.admin_url(path);
        async move { client::send(&url, Method::GET, &[]).await }
    };

    let manifest = "/v2/library/alpine/manifests/3.20";
    let reply = client::send(
        &mirror.url(manifest),
        Method::GET,
        &[("accept", client::CONTAINERD_ACCEPT)],
    )
    .await;
    reply.assert_manifest(&image.manifest);

    let scrape = Scrape::from_reply(&admin("/metrics").await);
    assert_eq!(scrape.value("regmirror_cache_misses_total"), 1.0, "{scrape:?}");
    assert_status_json(&admin("/healthz").await, StatusCode::OK, "ok");
    assert_status_json(&admin("/readyz").await, StatusCode::OK, "ready");

    for path in ["/metrics", "/healthz", "/readyz"] {
        let reply = mirror.get(path).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path} on the main listener: {reply:?}"
        );
    }
    assert_eq!(mirror.get("/v2/").await.status, StatusCode::OK);
    assert_eq!(mirror.get("/").await.status, StatusCode::OK);
    for path in ["/v2/", manifest, "/"] {
        let reply = admin(path).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path} on the admin listener: {reply:?}"
        );
    }
}

/// The binary binds its listener, then loads the index, then notifies systemd. A client that
/// connects as soon as the port accepts gets a real `/readyz` answer (200: the request waits
/// for the accept loop); `READY=1` is sent only once the port accepts; SIGTERM sends
/// `STOPPING=1` and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_as_soon_as_the_port_accepts_and_notify_after_the_bind() {
    let fake = FakeRegistry::start().await;
    let dir = tempfile::tempdir().expect("data dir");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    // The test must know the port before the mirror says it is ready, so it picks a free
    // one; another process taking it in between would fail the start, not pass the test.
    let addr = free_port();
    let mut mirror = MirrorProcess::builder(&fake, &dir.path().join("data"))
        .listen(addr)
        .env("NOTIFY_SOCKET", &notify_path)
        .launch();

    let mut readyz_checked = false;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let first = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no READY=1 within 10 s:\n{}",
            mirror.log()
        );
        // The datagram first, then the port: a READY=1 already sent means bound by now.
        let message = match notify.try_recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("notify socket: {e}"),
        };
        let accepts = StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        if let Some(message) = message {
            assert!(accepts, "{message} came while the port refused connections");
            break message;
        }
        if accepts && !readyz_checked {
            let url = format!("http://{addr}/readyz");
            let reply = client::send(&url, Method::GET, &[]).await;
            assert_status_json(&reply, StatusCode::OK, "ready");
            readyz_checked = true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // One newline-terminated assignment per line, as sd_notify(3) allows.
    assert_eq!(first.lines().collect::<Vec<_>>(), ["READY=1"], "{}", mirror.log());
    let ready = mirror.wait_ready().await;
    assert_eq!(ready.listen, addr);
    if !readyz_checked {
        // READY=1 came before the first probe saw the port: the port accepts now anyway.
        let reply = mirror.get("/readyz").await;
        assert_status_json(&reply, StatusCode::OK, "ready");
    }

    mirror.signal("TERM");
    let received = tokio::time::timeout(Duration::from_secs(5), notify.recv(&mut buf))
        .await
        .expect("STOPPING=1 within 5 s of SIGTERM")
        .expect("notify socket");
    assert_eq!(
        String::from_utf8_lossy(&buf[..received]).lines().collect::<Vec<_>>(),
        ["STOPPING=1"]
    );
    let status = mirror.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 after SIGTERM, got {status:?}:\n{}",
        mirror.log()
    );
}

fn free_port() -> SocketAddr {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    listener.local_addr().expect("probe address")
}
