//! Links in the bucket: what one instance learned a repository holds, every instance on the
//! bucket knows. A blob HEAD is answered from the bucket without the upstream, and an offline
//! instance with an empty data directory serves what the fleet put in the bucket, through the
//! repository that holds it and through no other.

use super::{mirror_on, offline_on, path, REPO};
use crate::support::garage::Garage;
use crate::support::{FakeRegistry, Format};

/// A repository on the same upstream that holds none of `REPO`'s content.
const OTHER: &str = "someone/else";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn what_one_instance_learned_a_repository_holds_every_instance_knows() {
    let garage = Garage::start();
    let upstream = FakeRegistry::start().await;
    let image = upstream.push_image(REPO, "7", Format::Oci);
    upstream.push_image(OTHER, "1", Format::Oci);
    let by_tag = format!("/v2/{REPO}/manifests/7");
    let by_digest = |repo: &str| format!("/v2/{repo}/manifests/{}", image.manifest.digest);
    let blob_in = |repo: &str, digest: &str| format!("/v2/{repo}/blobs/{digest}");

    let first = mirror_on(&upstream, &garage).await;
    first.get_manifest(&by_tag).await.assert_manifest(&image.manifest);
    for blob in image.blobs() {
        first.get(&path(blob)).await.assert_blob(blob);
    }
    // Shutting down waits for what is being put in the bucket, links included.
    first.stop().await;

    let online = mirror_on(&upstream, &garage).await;
    let asked = upstream.total();
    for blob in image.blobs() {
        let head = online.head(&path(blob)).await;
        assert_eq!(head.status, http::StatusCode::OK, "{head:?}");
        assert_eq!(
            head.header("content-length"),
            Some(blob.bytes.len().to_string().as_str())
        );
    }
    assert_eq!(upstream.total(), asked, "the HEADs were answered from the bucket");
    for blob in image.blobs() {
        let head = online.head(&blob_in(OTHER, &blob.digest)).await;
        assert_eq!(head.status, http::StatusCode::NOT_FOUND, "{head:?}");
    }
    online.stop().await;

    let offline = offline_on(&upstream, &garage).await;
    let asked = upstream.total();
    offline.get_manifest(&by_tag).await.assert_manifest(&image.manifest);
    offline
        .get_manifest(&by_digest(REPO))
        .await
        .assert_manifest(&image.manifest);
    for blob in image.blobs() {
        offline.get(&path(blob)).await.assert_blob(blob);
    }
    offline
        .get_manifest(&by_digest(OTHER))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    for blob in image.blobs() {
        offline
            .get(&blob_in(OTHER, &blob.digest))
            .await
            .assert_error(404, "BLOB_UNKNOWN");
    }
    assert_eq!(upstream.total(), asked, "offline, nothing reached the upstream");
}
