//! Cold blobs under load: parallel clients share one upstream fetch, and a client that
//! hangs up does not cancel the fill (docs/protocol.md §9.10).

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::support::content::{random_bytes, Blob};
use crate::support::{FakeRegistry, Fault, Mirror, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_upstream_fetch() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(512 * 1024));
    fake.add_blob("library/postgres", blob.bytes.clone());
    // Hold the first upstream answer back so that every client arrives during the miss.
    fake.fail_next(
        Target::reference(&blob.digest),
        1,
        Fault::Stall(Duration::from_millis(500)),
    );
    let mirror = Arc::new(Mirror::start(&fake).await);
    let path = format!("/v2/library/postgres/blobs/{}", blob.digest);

    let clients: Vec<_> = (0..10)
        .map(|_| {
            let (mirror, path) = (Arc::clone(&mirror), path.clone());
            tokio::spawn(async move { mirror.get(&path).await })
        })
        .collect();
    for client in clients {
        client.await.expect("client task").assert_blob(&blob);
    }
    assert_eq!(fake.blob_gets(&blob.digest), 1, "{:#?}", fake.requests());
    assert_eq!(fake.cdn_gets(&blob.digest), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_survives_a_client_hanging_up() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(1024 * 1024));
    fake.add_blob("library/postgres", blob.bytes.clone());
    // 64 chunks, 10 ms apart: the upstream body is still arriving when the client leaves.
    fake.fail_next(
        Target::reference(&blob.digest),
        1,
        Fault::Throttle(Duration::from_millis(10)),
    );
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/postgres/blobs/{}", blob.digest);

    assert_eq!(mirror.abandon_after_head(&path).await, StatusCode::OK);
    // Wait for the upstream body to go out in full: it never does if the mirror dropped
    // the upstream connection with its client. Waiting also keeps this test about
    // cancellation, not about joining a fill in flight.
    let sent = async {
        while fake.bodies_completed(&blob.digest) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let sent = tokio::time::timeout(Duration::from_secs(5), sent).await;
    assert!(
        sent.is_ok(),
        "the mirror stopped reading the upstream body when its client left"
    );
    // Margin for the verify-and-rename that follows the last byte.
    tokio::time::sleep(Duration::from_millis(500)).await;
    mirror.get(&path).await.assert_blob(&blob);
    assert_eq!(
        fake.cdn_gets(&blob.digest),
        1,
        "the fill must outlive its first client: {:#?}",
        fake.requests()
    );
    assert_eq!(fake.blob_gets(&blob.digest), 1);
}
