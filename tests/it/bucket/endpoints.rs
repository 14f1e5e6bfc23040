//! Several endpoints of one bucket (`--bucket-fallback`): an instance whose first endpoint
//! cannot be reached (its machine's Garage node is down) reads and fills the bucket through
//! the next, and costs the upstream nothing more than with the first.

use std::net::TcpListener;

use super::{in_bucket, key, path, REPO};
use crate::support::garage::Garage;
use crate::support::{FakeRegistry, Format, Mirror};

/// An endpoint where nothing listens: a port taken and let go.
fn nobody_there() -> url::Url {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}").parse().expect("url")
}

/// A mirror whose bucket's first endpoint is down and whose fallback is Garage.
async fn behind_a_dead_node(upstream: &FakeRegistry, garage: &Garage) -> Mirror {
    let mut bucket = garage.config();
    bucket.fallbacks = vec![bucket.endpoint.clone()];
    bucket.endpoint = nobody_there();
    Mirror::builder(upstream)
        .configure(|c| c.bucket = Some(bucket))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn a_node_that_cannot_be_reached_is_passed_for_the_next() {
    let garage = Garage::start();
    let upstream = FakeRegistry::start().await;
    let image = upstream.push_image(REPO, "7", Format::Oci);
    let by_tag = format!("/v2/{REPO}/manifests/7");

    let first = behind_a_dead_node(&upstream, &garage).await;
    first.get_manifest(&by_tag).await.assert_manifest(&image.manifest);
    for blob in image.blobs() {
        first.get(&path(blob)).await.assert_blob(blob);
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
    first.stop().await;
    let asked = upstream.total();

    let second = behind_a_dead_node(&upstream, &garage).await;
    second.get_manifest(&by_tag).await.assert_manifest(&image.manifest);
    for blob in image.blobs() {
        second.get(&path(blob)).await.assert_blob(blob);
    }
    assert_eq!(
        upstream.total(),
        asked,
        "the second instance read the tag, manifest and blobs through the fallback"
    );
}
