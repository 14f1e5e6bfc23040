//! The cache is on disk: a mirror restarted on the same data directory serves what the
//! previous one fetched, with the upstream gone.

use crate::support::{FakeRegistry, Format, Mirror};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_mirror_serves_cached_content_with_upstream_stopped() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    let index = fake.push_index("library/debian", "12");
    let mirror = Mirror::start(&fake).await;

    let image_path = format!("/v2/library/alpine/manifests/{}", image.manifest.digest);
    let index_path = format!("/v2/library/debian/manifests/{}", index.manifest.digest);
    mirror
        .get_manifest("/v2/library/alpine/manifests/latest")
        .await
        .assert_manifest(&image.manifest);
    mirror.get_manifest(&index_path).await.assert_manifest(&index.manifest);
    for blob in image.blobs() {
        mirror
            .get(&format!("/v2/library/alpine/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
    }

    let mirror = mirror.restart().await;
    fake.stop().await;
    mirror.get_manifest(&image_path).await.assert_manifest(&image.manifest);
    mirror
        .head_manifest(&image_path)
        .await
        .assert_manifest_head(&image.manifest);
    mirror.get_manifest(&index_path).await.assert_manifest(&index.manifest);
    for blob in image.blobs() {
        mirror
            .get(&format!("/v2/library/alpine/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
    }
}
