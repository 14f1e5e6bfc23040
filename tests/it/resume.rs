//! An upstream body that breaks off or stalls (docs/protocol.md §9.9, §10): the fill
//! resumes with `Range: bytes=N-` from exactly what it has, accepts a 200 instead by
//! skipping what it already spooled, gives up after a bounded number of resumes, and gives
//! up on a stalled body after its time limit. Whatever happens, the client gets the exact
//! bytes or an aborted body, and only verified bytes are cached.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::support::client::assert_not_delivered;
use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::fake_registry::Role;
use crate::support::{FakeRegistry, Fault, Mirror, Target};

const REPO: &str = "library/alpine";

fn blob_path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

/// The `Range` header of every CDN request for `digest`, oldest first.
fn cdn_ranges(fake: &FakeRegistry, digest: &str) -> Vec<Option<String>> {
    fake.requests()
        .into_iter()
        .filter(|r| r.role == Role::Cdn && r.reference.as_deref() == Some(digest))
        .map(|r| r.range)
        .collect()
}

/// Where each of `breaks` successive truncated bodies leaves a fill: the fake's `Truncate`
/// sends half of what it was asked for, from the offset asked for.
fn break_offsets(size: usize, breaks: usize) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    for _ in 0..breaks {
        at += (size - at) / 2;
        offsets.push(at);
    }
    offsets
}

async fn upstream_with(blob: &Blob, ranges: bool) -> FakeRegistry {
    let fake = FakeRegistry::builder()
        .cdn_redirects(true)
        .range_requests(ranges)
        .build()
        .await;
    fake.add_blob(REPO, blob.bytes.clone());
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_body_is_resumed_from_the_byte_it_broke_at() {
    let blob = Blob::new(random_bytes(MIB));
    let fake = upstream_with(&blob, true).await;
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::Truncate);
    let mirror = Mirror::start(&fake).await;

    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    let resume = format!("bytes={}-", blob.bytes.len() / 2);
    assert_eq!(
        cdn_ranges(&fake, &blob.digest),
        [None, Some(resume)],
        "{:#?}",
        fake.requests()
    );
    assert_eq!(
        fake.blob_gets(&blob.digest),
        2,
        "a resume goes through the registry again, not to a cached Location"
    );
    let before = fake.total();
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    assert_eq!(fake.total(), before, "the resumed blob is cached");
}

/// An upstream that answers a resume with 200 and the whole blob: the fill must drop the
/// prefix it already has rather than append it again (goharbor/harbor#23600).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_ignoring_range_restarts_without_duplicating_the_prefix() {
    let blob = Blob::new(random_bytes(MIB));
    let fake = upstream_with(&blob, false).await;
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::Truncate);
    let mirror = Mirror::start(&fake).await;

    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    let resume = format!("bytes={}-", blob.bytes.len() / 2);
    assert_eq!(
        cdn_ranges(&fake, &blob.digest),
        [None, Some(resume)],
        "{:#?}",
        fake.requests()
    );
    let before = fake.total();
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    assert_eq!(fake.total(), before, "the restarted blob is cached");
}

/// A 206 that starts before the asked-for byte must not be appended as if it started
/// there; the client gets the exact bytes or an aborted body, and nothing wrong is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misaligned_resume_is_not_spliced_on() {
    let blob = Blob::new(random_bytes(MIB));
    let fake = upstream_with(&blob, true).await;
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::Truncate);
    fake.fail_always(Target::reference(&blob.digest), Fault::MisalignedRange);
    let mirror = Mirror::start(&fake).await;

    let outcome = mirror.try_send(Method::GET, &blob_path(&blob), &[]).await;
    match &outcome {
        Ok(reply) if reply.body.is_ok() => reply.assert_blob(&blob),
        _ => assert_not_delivered(&outcome),
    }
    assert!(cdn_ranges(&fake, &blob.digest).len() >= 2, "{:#?}", fake.requests());
    fake.clear_faults();
    let data_dir = mirror.data_dir();
    let fetches = fake.cdn_gets(&blob.digest);
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    if outcome.is_ok_and(|reply| reply.body.is_ok()) {
        assert_eq!(fake.cdn_gets(&blob.digest), fetches, "the exact blob is cached");
    } else {
        assert!(fake.cdn_gets(&blob.digest) > fetches, "nothing was cached");
    }
    assert!(data_dir.committed(&blob.digest).await);
}

/// A body that keeps breaking off is resumed three times, each from where the last one
/// broke, then the client's body is aborted and nothing is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_are_bounded_and_then_the_client_is_aborted() {
    let blob = Blob::new(random_bytes(MIB));
    let fake = upstream_with(&blob, true).await;
    fake.fail_always(Target::reference(&blob.digest), Fault::Truncate);
    let mirror = Mirror::start(&fake).await;

    let reply = mirror
        .try_send(Method::GET, &blob_path(&blob), &[])
        .await
        .expect("a response head: the first bytes came");
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.body.is_err(), "a broken body ended cleanly: {reply:?}");
    let expected: Vec<Option<String>> = std::iter::once(None)
        .chain(
            break_offsets(blob.bytes.len(), 3)
                .into_iter()
                .map(|n| Some(format!("bytes={n}-"))),
        )
        .collect();
    assert_eq!(cdn_ranges(&fake, &blob.digest), expected, "{:#?}", fake.requests());

    fake.clear_faults();
    assert!(!mirror.data_dir().has_blob(&blob.digest));
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    assert_eq!(
        fake.cdn_gets(&blob.digest),
        5,
        "nothing was cached: {:#?}",
        fake.requests()
    );
}

/// With a 1 s fill timeout (a blob under 1 MiB gets no per-MiB allowance), a body that
/// stops halfway with its connection open for 30 s is given up after about a second: the
/// client's body fails instead of hanging, and nothing is cached. The upper bound leaves a
/// loaded machine seconds of slack and is still far short of the stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_body_is_given_up_after_the_fill_timeout() {
    let blob = Blob::new(random_bytes(512 * 1024));
    let fake = upstream_with(&blob, true).await;
    fake.fail_next(
        Target::reference(&blob.digest),
        1,
        Fault::PauseMidBody(Duration::from_secs(30)),
    );
    let mirror = Mirror::builder(&fake)
        .fill_timeout(Duration::from_secs(1))
        .start()
        .await;

    let started = Instant::now();
    let client = mirror.open(&blob_path(&blob), &[]).await;
    assert_eq!(client.status, StatusCode::OK, "{:?}", client.headers);
    let body = client.finish_within(Duration::from_secs(20)).await;
    let elapsed = started.elapsed();
    assert!(body.is_err(), "a stalled body ended cleanly");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(10),
        "gave up after {elapsed:?}, with a 1 s fill timeout"
    );
    assert_eq!(fake.bodies_completed(&blob.digest), 0);

    assert!(!mirror.data_dir().has_blob(&blob.digest));
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    assert_eq!(
        fake.cdn_gets(&blob.digest),
        2,
        "nothing was cached: {:#?}",
        fake.requests()
    );
}
