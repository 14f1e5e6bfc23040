//! Cold blobs under load: parallel clients share one upstream fetch, and a client that
//! hangs up does not cancel the fill (docs/protocol.md §9.10).

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::support::content::{random_bytes, Blob};
use crate::support::metrics::Scrape;
use crate::support::{poll_until, FakeRegistry, Fault, Gate, Mirror, Target};

const COALESCED: &str = "regmirror_coalesced_waiters_total";
/// Bound on waiting for state the mirror or the fake reports; generous for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

/// The upstream's first answer is held until the mirror reports the nine clients after the
/// first waiting on its fill, so none of them can arrive after it as a cache hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_upstream_fetch() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(512 * 1024));
    fake.add_blob("library/postgres", blob.bytes.clone());
    let gate = Gate::new();
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::Hold(gate.clone()));
    let mirror = Arc::new(Mirror::start(&fake).await);
    let path = format!("/v2/library/postgres/blobs/{}", blob.digest);
    let before = Scrape::of(&mirror).await;

    let clients: Vec<_> = (0..10)
        .map(|_| {
            let (mirror, path) = (Arc::clone(&mirror), path.clone());
            tokio::spawn(async move { mirror.get(&path).await })
        })
        .collect();
    Scrape::until(&mirror, COALESCED, before.value(COALESCED) + 9.0, WAIT).await;
    assert!(
        gate.reached(WAIT).await,
        "the upstream answer is held: {:#?}",
        fake.requests()
    );
    gate.open();

    for client in clients {
        client.await.expect("client task").assert_blob(&blob);
    }
    assert_eq!(fake.blob_gets(&blob.digest), 1, "{:#?}", fake.requests());
    assert_eq!(fake.cdn_gets(&blob.digest), 1);
    let after = Scrape::of(&mirror).await;
    assert_eq!(after.delta(&before, COALESCED), 9.0, "{after:?}");
}

/// The client hangs up while the upstream body is held halfway, so the fill has a body
/// still to read and no client; it must read it, verify and commit the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_survives_a_client_hanging_up() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(1024 * 1024));
    fake.add_blob("library/postgres", blob.bytes.clone());
    let gate = Gate::new();
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::HoldMidBody(gate.clone()));
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/postgres/blobs/{}", blob.digest);

    assert_eq!(mirror.abandon_after_head(&path).await, StatusCode::OK);
    assert!(
        gate.reached(WAIT).await,
        "the upstream body never reached its hold: {:#?}",
        fake.requests()
    );
    gate.open();
    // The upstream body never goes out in full if the mirror dropped the upstream
    // connection with its client.
    assert!(
        fake.body_completed_within(&blob.digest, WAIT).await,
        "the mirror stopped reading the upstream body when its client left"
    );
    let data_dir = mirror.data_dir();
    assert!(
        poll_until(WAIT, || data_dir.has_blob(&blob.digest)).await,
        "the verified blob was not committed without a client"
    );
    let before = fake.total();
    mirror.get(&path).await.assert_blob(&blob);
    assert_eq!(fake.total(), before, "a hit: {:#?}", fake.requests());
    assert_eq!(
        fake.cdn_gets(&blob.digest),
        1,
        "the fill must outlive its first client: {:#?}",
        fake.requests()
    );
    assert_eq!(fake.blob_gets(&blob.digest), 1);
}
