//! Hosted repositories on a shared bucket: the bucket holds their content and record, so a
//! push to any instance is pulled from every instance (one with an empty data directory
//! included), a manifest may go to another instance than its blobs, a delete on one instance
//! is seen by the others at once, and content stays inside the repository it was pushed to.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use regmirror::airgap::{import, share};
use regmirror::cache::store::Store;
use regmirror::hosted::bucket_gc::{self, BucketReport};
use regmirror::reference::Registry;

use super::{in_bucket, key};
use crate::support::content::Image;
use crate::support::garage::Garage;
use crate::support::push::{artifact, assert_manifest_created, push_blob, push_image, put_manifest, send_body};
use crate::support::{poll_until, FakeRegistry, Format, Mirror};

const REPO: &str = "site.lan/team/app";
const OTHER: &str = "site.lan/team/other";
const SIGNATURE: &str = "application/vnd.example.signature.v1+json";

async fn hosted_on(hub: &FakeRegistry, garage: &Garage) -> Mirror {
    let bucket = garage.config();
    Mirror::builder(hub)
        .hosted("site.lan")
        .configure(|c| c.bucket = Some(bucket))
        .start()
        .await
}

fn manifest_path(repo: &str, reference: &str) -> String {
    format!("/v2/{repo}/manifests/{reference}")
}

/// Asserts that `mirror` serves `image` from `repo` by `reference`, blobs included.
async fn assert_serves(mirror: &Mirror, repo: &str, reference: &str, image: &Image) {
    let path = manifest_path(repo, reference);
    mirror.get_manifest(&path).await.assert_manifest(&image.manifest);
    for blob in image.blobs() {
        let path = format!("/v2/{repo}/blobs/{}", blob.digest);
        mirror.get(&path).await.assert_blob(blob);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn a_push_to_one_instance_is_pulled_from_all_and_a_delete_is_seen_by_all() {
    let garage = Garage::start();
    let hub = FakeRegistry::start().await;
    let (one, two) = (hosted_on(&hub, &garage).await, hosted_on(&hub, &garage).await);
    let image = Image::build(Format::Oci, "amd64");
    push_image(&one, REPO, "v1", &image).await;
    let bucket = garage.client();
    for blob in image.blobs() {
        let stored = in_bucket(&bucket, &key(&blob.digest).hosted()).await;
        assert_eq!(stored, blob.bytes, "{} in the bucket's hosted part", blob.digest);
    }

    assert_serves(&two, REPO, "v1", &image).await;
    let tags = two.get(&format!("/v2/{REPO}/tags/list")).await.json();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]), "{tags}");
    let catalog = two.get("/v2/_catalog").await.json();
    assert_eq!(catalog["repositories"], serde_json::json!([REPO]), "{catalog}");
    // Inside its repository only, on every instance.
    for blob in image.blobs() {
        let path = format!("/v2/{OTHER}/blobs/{}", blob.digest);
        two.get(&path).await.assert_error(404, "BLOB_UNKNOWN");
    }
    (two.get_manifest(&manifest_path(OTHER, &image.manifest.digest)).await).assert_error(404, "MANIFEST_UNKNOWN");

    // A mount on the other instance, from the repository the push went to.
    let config = &image.config.digest;
    let mount = format!("/v2/{OTHER}/blobs/uploads/?mount={config}&from={REPO}");
    let reply = send_body(&two, Method::POST, &mount, &[], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    one.get(&format!("/v2/{OTHER}/blobs/{config}"))
        .await
        .assert_blob(&image.config);

    // Blobs to one instance, the manifest naming them to the other.
    let second = Image::build(Format::Oci, "arm64");
    for blob in second.blobs() {
        push_blob(&one, REPO, blob).await;
    }
    let reply = put_manifest(&two, REPO, "v2", &second.manifest).await;
    assert_manifest_created(&reply, REPO, &second.manifest);
    assert_serves(&one, REPO, "v2", &second).await;

    // A tag deleted on one is gone on the other; so is a manifest deleted by digest.
    let deleted = two.send(Method::DELETE, &manifest_path(REPO, "v1"), &[]).await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{deleted:?}");
    (one.get_manifest(&manifest_path(REPO, "v1")).await).assert_error(404, "MANIFEST_UNKNOWN");
    let by_digest = manifest_path(REPO, &second.manifest.digest);
    let deleted = one.send(Method::DELETE, &by_digest, &[]).await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{deleted:?}");
    two.get_manifest(&by_digest).await.assert_error(404, "MANIFEST_UNKNOWN");
    (two.get_manifest(&manifest_path(REPO, "v2")).await).assert_error(404, "MANIFEST_UNKNOWN");
    one.stop().await;
    two.stop().await;

    // After a restart, on an empty data directory: what was not deleted is all there.
    let three = hosted_on(&hub, &garage).await;
    assert_serves(&three, REPO, &image.manifest.digest, &image).await;
    three
        .get_manifest(&by_digest)
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    assert!(
        hub.requests().iter().all(|r| !r.path.contains("team/")),
        "the upstream was asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn gc_frees_from_the_bucket_what_no_hosted_tag_reaches() {
    let garage = Garage::start();
    let hub = FakeRegistry::start().await;
    let mirror = hosted_on(&hub, &garage).await;
    let (kept, deleted) = (Image::build(Format::Oci, "amd64"), Image::build(Format::Oci, "arm64"));
    push_image(&mirror, REPO, "v1", &kept).await;
    push_image(&mirror, REPO, "v2", &deleted).await;
    let by_digest = manifest_path(REPO, &deleted.manifest.digest);
    assert_eq!(mirror.send(Method::DELETE, &by_digest, &[]).await.status, 202);
    let bucket = garage.client();

    let young = bucket_gc::collect(&bucket, Duration::from_secs(3600))
        .await
        .expect("gc");
    assert_eq!(young, BucketReport::default(), "within the grace period nothing goes");
    let report = bucket_gc::collect(&bucket, Duration::ZERO).await.expect("gc");
    let freed: u64 = deleted.blobs().map(|b| b.bytes.len() as u64).sum::<u64>() + deleted.manifest.bytes.len() as u64;
    let objects = deleted.blobs().count() as u64 + 1;
    assert_eq!((report.objects, report.bytes), (objects, freed), "{report:?}");
    assert_eq!(report.unlinked, deleted.blobs().count() as u64, "{report:?}");
    for blob in deleted.blobs() {
        let gone = bucket.size(&key(&blob.digest).hosted()).await.expect("HEAD");
        assert_eq!(gone, None, "{} survived", blob.digest);
    }
    mirror.stop().await;

    let fresh = hosted_on(&hub, &garage).await;
    assert_serves(&fresh, REPO, "v1", &kept).await;
    for blob in deleted.blobs() {
        let path = format!("/v2/{REPO}/blobs/{}", blob.digest);
        fresh.get(&path).await.assert_error(404, "BLOB_UNKNOWN");
    }
    let again = bucket_gc::collect(&bucket, Duration::ZERO).await.expect("gc");
    assert_eq!(again, BucketReport::default(), "what a tag reaches stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn an_imported_hosted_image_goes_in_the_bucket_for_every_instance() {
    let garage = Garage::start();
    let work = tempfile::tempdir().expect("dir");
    let (bundle, image, hub) = crate::hosted_airgap::hosted_bundle(work.path()).await;
    let site = tempfile::tempdir().expect("dir");
    let namespace: Registry = "site.lan".parse().expect("namespace");
    let imported = import::import_hosting(site.path(), &bundle, Some(&namespace))
        .await
        .expect("import");
    let store = Store::at(site.path()).expect("store");
    let shared = share::share(&store, &garage.client(), &imported.images, &[namespace])
        .await
        .expect("share");
    assert_eq!(shared.uploaded, image.blobs().count() + 1, "{shared:?}");

    let mirror = hosted_on(&hub, &garage).await;
    assert_serves(&mirror, "site.lan/gallery/ui", "v1", &image).await;
    // In the hosted part only: no mirrored repository's key names it.
    let cached = garage.client().size(&key(&image.config.digest)).await.expect("HEAD");
    assert_eq!(cached, None, "a hosted blob in the cache's part");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn referrers_pushed_to_one_instance_are_listed_by_all() {
    let garage = Garage::start();
    let hub = FakeRegistry::start().await;
    let (one, two) = (hosted_on(&hub, &garage).await, hosted_on(&hub, &garage).await);
    let image = Image::build(Format::Oci, "amd64");
    push_image(&one, REPO, "v1", &image).await;
    let (signature, config, payload) = artifact(&image.manifest, SIGNATURE, false);
    push_blob(&one, REPO, &config).await;
    push_blob(&one, REPO, &payload).await;
    let reply = put_manifest(&one, REPO, &signature.digest, &signature).await;
    assert_manifest_created(&reply, REPO, &signature);

    let listing = format!("/v2/{REPO}/referrers/{}", image.manifest.digest);
    let listed = two.get(&listing).await.json();
    let digests: Vec<&str> = (listed["manifests"].as_array().into_iter().flatten())
        .filter_map(|m| m["digest"].as_str())
        .collect();
    assert_eq!(digests, [signature.digest.as_str()], "{listed}");
    // gc keeps a referrer of a tagged manifest, with what it names.
    let bucket = garage.client();
    let report = bucket_gc::collect(&bucket, Duration::ZERO).await.expect("gc");
    assert_eq!(report, BucketReport::default(), "a referrer of a tagged image went");

    let deleted = two
        .send(Method::DELETE, &manifest_path(REPO, &signature.digest), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{deleted:?}");
    let listed = one.get(&listing).await.json();
    assert_eq!(listed["manifests"], serde_json::json!([]), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn pushed_content_is_only_cached_here_once_the_bucket_has_it() {
    let garage = Garage::start();
    let hub = FakeRegistry::start().await;
    let bucket = garage.config();
    let mirror = Mirror::builder(&hub)
        .hosted("site.lan")
        .max_cache_size(0)
        .configure(|c| c.bucket = Some(bucket))
        .start()
        .await;
    let image = Image::build(Format::Oci, "amd64");
    push_image(&mirror, REPO, "v1", &image).await;
    let dir = mirror.data_dir();
    for blob in image.blobs() {
        let gone = poll_until(Duration::from_secs(5), || !dir.has_blob(&blob.digest)).await;
        assert!(
            gone,
            "{} stayed pinned in a data directory kept to nothing",
            blob.digest
        );
    }
    assert_serves(&mirror, REPO, "v1", &image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn a_bucket_that_cannot_be_read_answers_503_not_a_stale_record() {
    let garage = Garage::start();
    let hub = FakeRegistry::start().await;
    let mut bucket = garage.config();
    bucket.endpoint = super::endpoints::nobody_there();
    let mirror = Mirror::builder(&hub)
        .hosted("site.lan")
        .configure(|c| c.bucket = Some(bucket))
        .start()
        .await;
    let image = Image::build(Format::Oci, "amd64");
    let reply = mirror.get(&manifest_path(REPO, "v1")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    let blob = mirror.get(&format!("/v2/{REPO}/blobs/{}", image.config.digest)).await;
    blob.assert_error(503, "UNAVAILABLE");
}
