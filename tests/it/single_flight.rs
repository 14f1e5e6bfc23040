//! One upstream fetch per cold blob, however its clients arrive (docs/protocol.md §9.10,
//! §9.11): many at once, one joining halfway, ranges on bytes still arriving, the only
//! client hanging up, and a corrupt body failing every client waiting on it. Bodies are
//! throttled by the fake so that the clients really overlap the fill.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::{poll_until, FakeRegistry, Fault, Mirror, Target};

const REPO: &str = "library/postgres";

fn blob_path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

/// A fake that redirects blobs to its CDN and holds `blob`, whose first upstream body
/// goes out one 16 KiB chunk every `pause`.
async fn slow_upstream(blob: &Blob, pause: Duration) -> FakeRegistry {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    fake.add_blob(REPO, blob.bytes.clone());
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::Throttle(pause));
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_on_one_cold_blob_make_one_upstream_fetch() {
    let blob = Blob::new(random_bytes(3 * MIB));
    // 192 chunks, 3 ms apart: every client arrives while the body is still coming.
    let fake = slow_upstream(&blob, Duration::from_millis(3)).await;
    let mirror = Arc::new(Mirror::start(&fake).await);

    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (mirror, path) = (Arc::clone(&mirror), blob_path(&blob));
            tokio::spawn(async move { mirror.get(&path).await })
        })
        .collect();
    for client in clients {
        client.await.expect("client task").assert_blob(&blob);
    }
    assert_eq!(fake.blob_gets(&blob.digest), 1, "{:#?}", fake.requests());
    assert_eq!(fake.cdn_gets(&blob.digest), 1, "{:#?}", fake.requests());
}

/// A client that joins a fill halfway is served from the spool at once, not after the
/// upstream is done: its first bytes arrive while the fake is still sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_bytes_before_the_upstream_is_done() {
    let blob = Blob::new(random_bytes(2 * MIB));
    // 128 chunks, 10 ms apart: well over a second of upstream body.
    let fake = slow_upstream(&blob, Duration::from_millis(10)).await;
    let mirror = Mirror::start(&fake).await;

    let mut first = mirror.open(&blob_path(&blob), &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    first.read_at_least(64 * 1024).await;

    let mut late = mirror.open(&blob_path(&blob), &[]).await;
    assert_eq!(late.status, StatusCode::OK);
    assert_eq!(
        late.header("content-length"),
        Some(blob.bytes.len().to_string().as_str())
    );
    late.read_at_least(1).await;
    assert_eq!(
        fake.bodies_completed(&blob.digest),
        0,
        "the late joiner's first bytes came only after the upstream body had gone out in full"
    );

    assert!(late.finish().await.expect("late joiner's body")[..] == blob.bytes[..]);
    assert!(first.finish().await.expect("first client's body")[..] == blob.bytes[..]);
    assert_eq!(fake.cdn_gets(&blob.digest), 1, "{:#?}", fake.requests());
    assert_eq!(fake.blob_gets(&blob.digest), 1);
}

/// Ranges on a blob still being fetched are answered from the growing spool as exact
/// 206s (a tail range waits for verification like any last chunk), never with a second
/// upstream fetch and never as upstream range requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_on_a_blob_being_fetched_are_exact_and_cost_no_fetch() {
    let size = 2 * MIB + 12_345;
    let blob = Blob::new(random_bytes(size));
    let fake = slow_upstream(&blob, Duration::from_millis(10)).await;
    let mirror = Mirror::start(&fake).await;
    let path = blob_path(&blob);

    let mut whole = mirror.open(&path, &[]).await;
    whole.read_at_least(16 * 1024).await;

    // (Range header, expected first and last byte)
    let cases = [
        ("bytes=100000-".to_owned(), 100_000, size - 1),
        ("bytes=1000-50999".to_owned(), 1000, 50_999),
        ("bytes=1500000-1600000".to_owned(), 1_500_000, 1_600_000),
        ("bytes=-1000".to_owned(), size - 1000, size - 1),
        (format!("bytes={}-", size - 1), size - 1, size - 1),
    ];
    let mut ranged = Vec::new();
    for (range, first, last) in &cases {
        let reply = mirror.open(&path, &[("range", range)]).await;
        assert_eq!(
            reply.status,
            StatusCode::PARTIAL_CONTENT,
            "{range}: {:?}",
            reply.headers
        );
        let expected = format!("bytes {first}-{last}/{size}");
        assert_eq!(reply.header("content-range"), Some(expected.as_str()), "{range}");
        let length = (last - first + 1).to_string();
        assert_eq!(reply.header("content-length"), Some(length.as_str()), "{range}");
        ranged.push(reply);
    }
    let unsatisfiable = mirror
        .send(Method::GET, &path, &[("range", &format!("bytes={size}-"))])
        .await;
    assert_eq!(
        unsatisfiable.status,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "{unsatisfiable:?}"
    );
    let expected = format!("bytes */{size}");
    assert_eq!(unsatisfiable.header("content-range"), Some(expected.as_str()));
    assert_eq!(
        fake.bodies_completed(&blob.digest),
        0,
        "the ranges were not asked while the fill was running; slow the fake down"
    );

    for (reply, (range, first, last)) in ranged.into_iter().zip(&cases) {
        let bytes = reply.finish().await.unwrap_or_else(|e| panic!("{range}: {e}"));
        assert!(bytes[..] == blob.bytes[*first..=*last], "{range}: wrong bytes");
    }
    assert!(whole.finish().await.expect("whole body")[..] == blob.bytes[..]);
    assert_eq!(fake.cdn_gets(&blob.digest), 1, "{:#?}", fake.requests());
    assert_eq!(fake.blob_gets(&blob.digest), 1);
    assert_eq!(fake.count(|r| r.range.is_some()), 0, "{:#?}", fake.requests());
}

/// The only client reads part of the body and hangs up; the fill goes on without any
/// reader, commits, and the next request is a hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_completes_after_its_only_client_hangs_up_mid_body() {
    let blob = Blob::new(random_bytes(MIB));
    let fake = slow_upstream(&blob, Duration::from_millis(10)).await;
    let mirror = Mirror::start(&fake).await;
    let path = blob_path(&blob);

    let mut client = mirror.open(&path, &[]).await;
    client.read_at_least(64 * 1024).await;
    assert_eq!(fake.bodies_completed(&blob.digest), 0, "the client left mid-fill");
    drop(client);

    assert!(
        fake.body_completed_within(&blob.digest, Duration::from_secs(5)).await,
        "the mirror stopped reading the upstream body when its client left: {:#?}",
        fake.requests()
    );
    let data_dir = mirror.data_dir();
    assert!(
        poll_until(Duration::from_secs(5), || data_dir.has_blob(&blob.digest)).await,
        "the verified blob was not committed without a client"
    );
    let before = fake.total();
    mirror.get(&path).await.assert_blob(&blob);
    assert_eq!(fake.total(), before, "a hit: {:#?}", fake.requests());
    assert_eq!(fake.cdn_gets(&blob.digest), 1);
}

/// Five clients wait on one fill whose bytes turn out corrupt: each of them gets an
/// aborted body, never a clean end; nothing is kept, and the next request fetches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_fill_fails_every_waiting_client_and_is_not_cached() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(600 * 1024));
    fake.add_blob(REPO, blob.bytes.clone());
    // The registry's redirect is held back so that all five join the fill before any byte,
    // then the CDN's body has one byte flipped.
    fake.fail_next(
        Target::reference(&blob.digest),
        1,
        Fault::Stall(Duration::from_millis(300)),
    );
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::CorruptByte);
    let mirror = Arc::new(Mirror::start(&fake).await);
    let path = blob_path(&blob);

    let clients: Vec<_> = (0..5)
        .map(|_| {
            let (mirror, path) = (Arc::clone(&mirror), path.clone());
            tokio::spawn(async move { mirror.try_send(Method::GET, &path, &[]).await })
        })
        .collect();
    for client in clients {
        let reply = client
            .await
            .expect("client task")
            .expect("a response head: the fill had started");
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert!(reply.body.is_err(), "a corrupt body ended cleanly: {reply:?}");
    }
    assert_eq!(fake.cdn_gets(&blob.digest), 1, "{:#?}", fake.requests());
    assert_eq!(fake.blob_gets(&blob.digest), 1);

    let data_dir = mirror.data_dir();
    assert!(!data_dir.has_blob(&blob.digest));
    assert!(
        poll_until(Duration::from_secs(2), || data_dir.tmp_files().is_empty()).await,
        "the failed spool was left behind: {:?}",
        data_dir.tmp_files()
    );
    mirror.get(&path).await.assert_blob(&blob);
    assert_eq!(fake.cdn_gets(&blob.digest), 2, "{:#?}", fake.requests());
}
