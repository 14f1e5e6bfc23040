//! Hosted content beside the cache: never evicted by the cache's cap, and freed by `gc`
//! (beside the serving mirror) only when no hosted tag reaches it, sparing uploads in flight
//! and content a mirrored repository still links.

use std::time::Duration;

use bytes::Bytes;

use crate::support::content::{random_bytes, Blob, Image};
use crate::support::push::{push_image, send_body, Upload, NAMESPACE};
use crate::support::{FakeRegistry, Format, Mirror};
use http::Method;
use regmirror::hosted::gc;

const REPO: &str = "site.lan/gallery/ui";

#[tokio::test]
async fn gc_beside_a_serving_mirror_frees_a_deleted_image_and_keeps_uploads_in_flight() {
    let hub = FakeRegistry::start().await;
    let mirror = Mirror::builder(&hub).hosted(NAMESPACE).start().await;
    let kept = Image::build(Format::Oci, "amd64");
    let deleted = Image::build(Format::Oci, "arm64");
    push_image(&mirror, REPO, "v1", &kept).await;
    push_image(&mirror, REPO, "v2", &deleted).await;
    let path = format!("/v2/{REPO}/manifests/{}", deleted.manifest.digest);
    assert_eq!(mirror.send(Method::DELETE, &path, &[]).await.status, 202);
    let in_flight = Blob::new(random_bytes(4096));
    let upload = Upload::start(&mirror, REPO).await;
    let half = in_flight.bytes.slice(..2048);
    assert_eq!(upload.patch(&mirror, 0, &half).await.status, 202);

    let data = mirror.data_dir();
    let young = gc::collect(data.root(), Duration::from_secs(3600), Duration::from_secs(3600)).await;
    assert_eq!(young.expect("gc").files, 0, "within the grace period nothing goes");
    let report = gc::collect(data.root(), Duration::ZERO, Duration::from_secs(3600))
        .await
        .expect("gc");
    let freed: u64 = deleted.blobs().map(|b| b.bytes.len() as u64).sum::<u64>() + deleted.manifest.bytes.len() as u64;
    let files = deleted.blobs().count() as u64 + 1;
    assert_eq!((report.files, report.bytes), (files, freed), "{report:?}");
    for blob in deleted.blobs() {
        assert!(!data.has_blob(&blob.digest), "{} survived", blob.digest);
        mirror
            .get(&format!("/v2/{REPO}/blobs/{}", blob.digest))
            .await
            .assert_error(404, "BLOB_UNKNOWN");
    }
    mirror
        .get_manifest(&format!("/v2/{REPO}/manifests/v1"))
        .await
        .assert_manifest(&kept.manifest);
    for blob in kept.blobs() {
        mirror
            .get(&format!("/v2/{REPO}/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
    }
    let reply = upload
        .finish(&mirror, &in_flight.digest, in_flight.bytes.slice(2048..))
        .await;
    assert_eq!(reply.status, 201, "the upload in flight outlived gc: {reply:?}");
}

/// A layer a hosted image shares with a mirrored one is left to the cache when the hosted
/// image goes, and still served through the mirrored repository.
#[tokio::test]
async fn gc_leaves_content_a_mirrored_repository_links_to_the_cache() {
    let hub = FakeRegistry::start().await;
    let upstream = hub.push_image("library/base", "1", Format::Oci);
    let mirror = Mirror::builder(&hub).hosted(NAMESPACE).start().await;
    let layer = upstream.layers[0].clone();
    let path = format!("/v2/library/base/blobs/{}", layer.digest);
    mirror.get_manifest("/v2/library/base/manifests/1").await;
    mirror.get(&path).await.assert_blob(&layer);
    let mount = format!("/v2/{REPO}/blobs/uploads/?mount={}&from=library/base", layer.digest);
    let reply = send_body(&mirror, Method::POST, &mount, &[], Bytes::new()).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let blob = format!("/v2/{REPO}/blobs/{}", layer.digest);
    assert_eq!(mirror.send(Method::DELETE, &blob, &[]).await.status, 202);

    let report = gc::collect(mirror.data_dir().root(), Duration::ZERO, Duration::from_secs(3600)).await;
    let report = report.expect("gc");
    assert_eq!(
        (report.files, report.unpinned, report.unlinked),
        (0, 1, 0),
        "{report:?}"
    );
    mirror.get(&path).await.assert_blob(&layer);
}

/// Pushed images are the only copy there is: a cache cap far below them evicts mirrored
/// content but never hosted content.
#[tokio::test]
async fn hosted_content_is_never_evicted_by_the_cache_cap() {
    let hub = FakeRegistry::start().await;
    let cached: Vec<Image> = (0..4)
        .map(|i| hub.push_image(&format!("library/c{i}"), "1", Format::Oci))
        .collect();
    let mirror = Mirror::builder(&hub)
        .hosted(NAMESPACE)
        .max_cache_size(64 << 10)
        .start()
        .await;
    let hosted = Image::build(Format::Oci, "amd64");
    push_image(&mirror, REPO, "v1", &hosted).await;
    for (i, image) in cached.iter().enumerate() {
        mirror.get_manifest(&format!("/v2/library/c{i}/manifests/1")).await;
        for blob in image.blobs() {
            mirror
                .get(&format!("/v2/library/c{i}/blobs/{}", blob.digest))
                .await
                .assert_blob(blob);
        }
    }
    let data = mirror.data_dir();
    let on_disk: u64 = data.blobs().iter().map(|(_, size)| size).sum();
    let hosted_bytes: u64 = hosted.blobs().map(|b| b.bytes.len() as u64).sum();
    assert!(
        on_disk < hosted_bytes + (64 << 10) + (64 << 10),
        "the cap evicted nothing"
    );
    hub.stop().await;
    for blob in hosted.blobs() {
        assert!(data.has_blob(&blob.digest), "hosted {} was evicted", blob.digest);
        mirror
            .get(&format!("/v2/{REPO}/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
    }
    mirror
        .get_manifest(&format!("/v2/{REPO}/manifests/v1"))
        .await
        .assert_manifest(&hosted.manifest);
}
