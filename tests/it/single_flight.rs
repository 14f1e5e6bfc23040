//! One upstream fetch per cold blob, however its clients arrive (docs/protocol.md §9.10,
//! §9.11): many at once, one joining halfway, ranges on bytes still arriving, the only
//! client hanging up, and a corrupt body failing every client waiting on it. The fake holds
//! the upstream answer or body at a gate until the test has seen the clients it wants
//! waiting on the fill (the mirror's count of coalesced waiters), so they really overlap it.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::metrics::Scrape;
use crate::support::{poll_until, FakeRegistry, Fault, Gate, Mirror, Target};

const REPO: &str = "library/postgres";
const COALESCED: &str = "regmirror_coalesced_waiters_total";
const MISSES: &str = "regmirror_cache_misses_total";
const HITS: &str = "regmirror_cache_hits_total";
/// Bound on waiting for state the mirror reports; generous for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

fn blob_path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

/// A fake that redirects blobs to its CDN and holds `blob`, whose first upstream body
/// stops halfway until the returned gate is opened.
async fn held_upstream(blob: &Blob) -> (FakeRegistry, Gate) {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    fake.add_blob(REPO, blob.bytes.clone());
    let gate = Gate::new();
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::HoldMidBody(gate.clone()));
    (fake, gate)
}

/// The 31 clients after the first are seen joining the fill while the upstream body is held
/// halfway, so none of them can be a late cache hit; then the body goes on, and every client
/// gets the exact bytes from the one upstream fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_on_one_cold_blob_make_one_upstream_fetch() {
    let blob = Blob::new(random_bytes(3 * MIB));
    let (fake, gate) = held_upstream(&blob).await;
    let mirror = Arc::new(Mirror::start(&fake).await);
    let before = Scrape::of(&mirror).await;

    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (mirror, path) = (Arc::clone(&mirror), blob_path(&blob));
            tokio::spawn(async move { mirror.get(&path).await })
        })
        .collect();
    // The fill is under way, its upstream body held halfway; then every other client joins it.
    assert!(
        gate.reached(WAIT).await,
        "the upstream body is held: {:#?}",
        fake.requests()
    );
    let joined = before.value(COALESCED) + 31.0;
    let waiting = Scrape::until(&mirror, COALESCED, joined, WAIT).await;
    assert_eq!(gate.held(), 1);
    assert_eq!(fake.bodies_completed(&blob.digest), 0);
    assert_eq!(waiting.value("regmirror_fills_in_flight"), 1.0, "{waiting:?}");
    gate.open();

    for client in clients {
        client.await.expect("client task").assert_blob(&blob);
    }
    assert_eq!(fake.blob_gets(&blob.digest), 1, "{:#?}", fake.requests());
    assert_eq!(fake.cdn_gets(&blob.digest), 1, "{:#?}", fake.requests());
    let after = Scrape::of(&mirror).await;
    assert_eq!(after.delta(&before, COALESCED), 31.0, "{after:?}");
    assert_eq!(after.delta(&before, MISSES), 32.0, "{after:?}");
    assert_eq!(after.delta(&before, HITS), 0.0, "{after:?}");
}

/// A client that joins a fill halfway is served from the spool at once, not after the
/// upstream is done: its first bytes arrive while the fake is still sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_bytes_before_the_upstream_is_done() {
    let blob = Blob::new(random_bytes(2 * MIB));
    let (fake, gate) = held_upstream(&blob).await;
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
    assert!(gate.reached(WAIT).await, "the upstream body is held halfway");
    assert_eq!(
        fake.bodies_completed(&blob.digest),
        0,
        "the late joiner's first bytes came only after the upstream body had gone out in full"
    );
    gate.open();

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
    let (fake, gate) = held_upstream(&blob).await;
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
    assert!(gate.reached(WAIT).await, "the upstream body is held halfway");
    assert_eq!(
        fake.bodies_completed(&blob.digest),
        0,
        "the ranges were not asked while the fill was running"
    );
    gate.open();

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
    let (fake, gate) = held_upstream(&blob).await;
    let mirror = Mirror::start(&fake).await;
    let path = blob_path(&blob);

    let mut client = mirror.open(&path, &[]).await;
    client.read_at_least(64 * 1024).await;
    assert_eq!(fake.bodies_completed(&blob.digest), 0, "the client left mid-fill");
    drop(client);
    gate.open();

    assert!(
        fake.body_completed_within(&blob.digest, WAIT).await,
        "the mirror stopped reading the upstream body when its client left: {:#?}",
        fake.requests()
    );
    let data_dir = mirror.data_dir();
    assert!(
        poll_until(WAIT, || data_dir.has_blob(&blob.digest)).await,
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
    // The registry's redirect is held back until all five have joined the fill, then the
    // CDN's body has one byte flipped.
    let gate = Gate::new();
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::Hold(gate.clone()));
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::CorruptByte);
    let mirror = Arc::new(Mirror::start(&fake).await);
    let path = blob_path(&blob);
    let before = Scrape::of(&mirror).await;

    let clients: Vec<_> = (0..5)
        .map(|_| {
            let (mirror, path) = (Arc::clone(&mirror), path.clone());
            tokio::spawn(async move { mirror.try_send(Method::GET, &path, &[]).await })
        })
        .collect();
    Scrape::until(&mirror, COALESCED, before.value(COALESCED) + 4.0, WAIT).await;
    assert!(gate.reached(WAIT).await, "the redirect is held: {:#?}", fake.requests());
    gate.open();
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
        poll_until(WAIT, || data_dir.tmp_files().is_empty()).await,
        "the failed spool was left behind: {:?}",
        data_dir.tmp_files()
    );
    mirror.get(&path).await.assert_blob(&blob);
    assert_eq!(fake.cdn_gets(&blob.digest), 2, "{:#?}", fake.requests());
}
