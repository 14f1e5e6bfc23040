//! Several endpoints of one bucket (`--bucket-fallback`): an instance whose first endpoint
//! cannot be reached (its machine's Garage node is down, or accepts and never answers) reads
//! and fills the bucket through the next, and costs the upstream nothing more than with the
//! first.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use super::{in_bucket, key, path, REPO};
use crate::support::garage::Garage;
use crate::support::{FakeRegistry, Format, Mirror};

/// An endpoint where nothing listens: a port taken and let go.
pub(super) fn nobody_there() -> url::Url {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}").parse().expect("url")
}

/// An endpoint that accepts connections and never answers, for as long as the test runs.
fn silent() -> url::Url {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    format!("http://127.0.0.1:{port}").parse().expect("url")
}

/// A mirror whose bucket's first endpoint is `first` and whose fallback is Garage.
async fn behind(first: &url::Url, upstream: &FakeRegistry, garage: &Garage) -> Mirror {
    let mut bucket = garage.config();
    bucket.fallbacks = vec![bucket.endpoint.clone()];
    bucket.endpoint = first.clone();
    Mirror::builder(upstream)
        .configure(|c| c.bucket = Some(bucket))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn a_node_that_is_down_is_passed_for_the_next() {
    let elapsed = pulls_behind(&nobody_there()).await;
    assert!(
        elapsed < Duration::from_secs(10),
        "refused connections cost {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn a_node_that_never_answers_is_passed_for_the_next() {
    let elapsed = pulls_behind(&silent()).await;
    // Each instance waits out one unanswered request (10 s), then asks the fallback.
    assert!(elapsed < Duration::from_secs(40), "a silent node cost {elapsed:?}");
}

/// Two instances, one after the other, whose first endpoint is `first`: the first fetches an
/// image and fills the bucket through the fallback, the second reads it all from there.
/// How long it all took.
async fn pulls_behind(first: &url::Url) -> Duration {
    let garage = Garage::start();
    let upstream = FakeRegistry::start().await;
    let image = upstream.push_image(REPO, "7", Format::Oci);
    let by_tag = format!("/v2/{REPO}/manifests/7");
    let started = Instant::now();

    let one = behind(first, &upstream, &garage).await;
    one.get_manifest(&by_tag).await.assert_manifest(&image.manifest);
    for blob in image.blobs() {
        one.get(&path(blob)).await.assert_blob(blob);
    }
    let bucket = garage.client();
    for blob in image.blobs() {
        assert_eq!(
            in_bucket(&bucket, &key(&blob.digest)).await,
            blob.bytes,
            "{}",
            blob.digest
        );
    }
    one.stop().await;
    let asked = upstream.total();

    let two = behind(first, &upstream, &garage).await;
    two.get_manifest(&by_tag).await.assert_manifest(&image.manifest);
    for blob in image.blobs() {
        two.get(&path(blob)).await.assert_blob(blob);
    }
    assert_eq!(
        upstream.total(),
        asked,
        "the second instance read the tag, manifest and blobs through the fallback"
    );
    started.elapsed()
}
