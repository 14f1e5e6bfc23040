//! A bucket shared as the store (`--bucket`), against a real one-node Garage: what one
//! instance fetched from the upstream another reads from the bucket, costing the upstream
//! nothing; only verified content goes in, whole (a multipart upload cut short leaves no
//! object); a bucket object that does not match its digest is never served, and is replaced; the data
//! directory, bounded (to nothing, even), is a read-through tier in front of the bucket; and `prefetch` has put
//! what it fetched in the bucket by the time it returns.
//!
//! Run by `.ci/run` with `REGMIRROR_GARAGE` naming a garage binary:
//! `cargo test --test it bucket:: -- --ignored`.

mod commands;
mod endpoints;
mod hosted;
mod inventory;
mod leftovers;
mod links;

use std::io::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use regmirror::airgap::prefetch;
use regmirror::bucket::{Bucket, Key};
use regmirror::digest::Digest;
use regmirror::image::Platforms;

use crate::support::client::assert_not_delivered;
use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::garage::Garage;
use crate::support::{poll_until, FakeRegistry, Fault, Format, Mirror, Target};

const REPO: &str = "library/redis";
const WAIT: Duration = Duration::from_secs(30);

fn key(digest: &str) -> Key {
    Key::blob(&digest.parse::<Digest>().expect("digest"))
}

/// Waits, bounded, until the bucket holds `key`; its bytes.
async fn in_bucket(bucket: &Bucket, key: &Key) -> Bytes {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(object) = bucket.get(key, 0).await.expect("bucket GET") {
            return object.body.collect().await.expect("object body").to_bytes();
        }
        assert!(Instant::now() < deadline, "{key} never reached the bucket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

/// An upstream holding `count` random blobs of 1 MiB in `REPO`.
async fn upstream_with(count: usize) -> (FakeRegistry, Vec<Blob>) {
    let upstream = FakeRegistry::start().await;
    let blobs: Vec<Blob> = (0..count).map(|_| Blob::new(random_bytes(MIB))).collect();
    for blob in &blobs {
        upstream.add_blob(REPO, blob.bytes.clone());
    }
    (upstream, blobs)
}

async fn mirror_on(upstream: &FakeRegistry, garage: &Garage) -> Mirror {
    let bucket = garage.config();
    Mirror::builder(upstream)
        .configure(|c| c.bucket = Some(bucket))
        .start()
        .await
}

/// An `--offline` mirror on the bucket, with an empty data directory of its own.
async fn offline_on(upstream: &FakeRegistry, garage: &Garage) -> Mirror {
    let bucket = garage.config();
    Mirror::builder(upstream)
        .configure(|c| {
            c.bucket = Some(bucket);
            c.offline = true;
        })
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn what_one_instance_fetched_the_next_reads_from_the_bucket() {
    let garage = Garage::start();
    let upstream = FakeRegistry::start().await;
    let image = upstream.push_image(REPO, "7", Format::Oci);
    // Over the part size: it goes in as a multipart upload.
    let big = Blob::new(random_bytes(20 * MIB));
    upstream.add_blob(REPO, big.bytes.clone());

    let first = mirror_on(&upstream, &garage).await;
    first
        .get_manifest(&format!("/v2/{REPO}/manifests/7"))
        .await
        .assert_manifest(&image.manifest);
    for blob in image.layers.iter().chain([&image.config, &big]) {
        first.get(&path(blob)).await.assert_blob(blob);
    }
    let bucket = garage.client();
    for blob in image.layers.iter().chain([&image.config, &big]) {
        assert_eq!(
            in_bucket(&bucket, &key(&blob.digest)).await,
            blob.bytes,
            "{}",
            blob.digest
        );
    }
    let manifest = Key::manifest(&image.manifest.digest.parse().expect("digest"));
    assert_eq!(in_bucket(&bucket, &manifest).await, image.manifest.bytes);
    let asked_before = upstream.total();

    let second = mirror_on(&upstream, &garage).await;
    second
        .get_manifest(&format!("/v2/{REPO}/manifests/7"))
        .await
        .assert_manifest(&image.manifest);
    for blob in image.layers.iter().chain([&image.config]) {
        second.get(&path(blob)).await.assert_blob(blob);
    }
    assert_eq!(
        upstream.total(),
        asked_before,
        "the second instance read the tag, manifest and blobs from the bucket"
    );
    second.get(&path(&big)).await.assert_blob(&big);
    assert_eq!(upstream.blob_gets(&big.digest), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn only_verified_blobs_reach_the_bucket() {
    let garage = Garage::start();
    let (upstream, blobs) = upstream_with(1).await;
    let blob = &blobs[0];
    upstream.fail_next(Target::reference(&blob.digest), 1, Fault::CorruptByte);
    let mirror = mirror_on(&upstream, &garage).await;
    let path = path(blob);

    assert_not_delivered(&mirror.try_send(http::Method::GET, &path, &[]).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bucket = garage.client();
    assert_eq!(
        bucket.size(&key(&blob.digest)).await.expect("HEAD"),
        None,
        "bad bytes stay out"
    );

    mirror.get(&path).await.assert_blob(blob);
    assert_eq!(in_bucket(&bucket, &key(&blob.digest)).await, blob.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn an_upload_cut_short_leaves_nothing_visible() {
    let garage = Garage::start();
    let bucket = garage.client();
    let bytes = random_bytes(40 * MIB);
    let mut file = tempfile::tempfile().expect("temp file");
    file.write_all(&bytes[..20 * MIB]).expect("write");
    let digest = Digest::sha256_of(&bytes);

    // The file ends in the second part: the upload fails there, and is aborted.
    let cut = bucket.upload(&Key::blob(&digest), &file, bytes.len() as u64).await;
    assert!(cut.is_err(), "an upload past the file's end fails");
    assert_eq!(bucket.size(&Key::blob(&digest)).await.expect("HEAD"), None);

    file.write_all(&bytes[20 * MIB..]).expect("write the rest");
    bucket
        .upload(&Key::blob(&digest), &file, bytes.len() as u64)
        .await
        .expect("upload");
    assert_eq!(in_bucket(&bucket, &Key::blob(&digest)).await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn a_corrupt_object_in_the_bucket_is_never_served_and_is_replaced() {
    let garage = Garage::start();
    let (upstream, blobs) = upstream_with(1).await;
    let blob = &blobs[0];
    let mut lie = blob.bytes.to_vec();
    lie[MIB / 2] ^= 1;
    let bucket = garage.client();
    bucket
        .put(&key(&blob.digest), Bytes::from(lie), None)
        .await
        .expect("PUT");
    let mirror = mirror_on(&upstream, &garage).await;

    let outcome = mirror.try_send(http::Method::GET, &path(blob), &[]).await;
    assert_not_delivered(&outcome);
    assert!(!mirror.data_dir().has_blob(&blob.digest), "nothing cached from the lie");
    assert_eq!(upstream.blob_gets(&blob.digest), 0, "the lie came from the bucket");

    // The lie is deleted, so the next pull fetches the blob afresh and puts it right.
    let deadline = Instant::now() + WAIT;
    while bucket.size(&key(&blob.digest)).await.expect("HEAD").is_some() {
        assert!(Instant::now() < deadline, "the corrupt object was never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mirror.get(&path(blob)).await.assert_blob(blob);
    assert_eq!(in_bucket(&bucket, &key(&blob.digest)).await, blob.bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn the_data_directory_is_a_bounded_tier_in_front_of_the_bucket() {
    let garage = Garage::start();
    let (upstream, blobs) = upstream_with(6).await;
    let bucket = garage.config();
    let mirror = Mirror::builder(&upstream)
        .max_cache_size(3 * MIB as u64)
        .configure(|c| c.bucket = Some(bucket))
        .start()
        .await;
    let client = garage.client();
    for blob in &blobs {
        mirror.get(&path(blob)).await.assert_blob(blob);
        in_bucket(&client, &key(&blob.digest)).await;
    }
    for blob in &blobs {
        mirror.get(&path(blob)).await.assert_blob(blob);
    }
    for blob in &blobs {
        assert_eq!(
            upstream.blob_gets(&blob.digest),
            1,
            "{} came back from the bucket",
            blob.digest
        );
    }
    let kept: u64 = mirror.data_dir().blobs().iter().map(|(_, size)| size).sum();
    assert!(
        kept <= 4 * MIB as u64,
        "the data directory stays near its bound: {kept} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn prefetch_fills_the_bucket_before_it_returns() {
    let garage = Garage::start();
    let upstream = FakeRegistry::start().await;
    let image = upstream.push_image(REPO, "7", Format::Oci);
    let dir = tempfile::tempdir().expect("data dir");
    let mut config = regmirror::config::Config::new(upstream.uri(), dir.path().to_owned());
    config.min_free_disk = 0;
    config.tag_ttl = Duration::ZERO;
    config.bucket = Some(garage.config());
    let mirror = std::sync::Arc::new(regmirror::mirror::Mirror::new(&config).expect("open the cache"));
    let request = prefetch::Request {
        images: vec![format!("{REPO}:7").parse().expect("image reference")],
        platforms: Platforms::All,
        jobs: 2,
    };
    let outcomes = prefetch::run(mirror.clone(), request).await;
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "prefetch failed");
    mirror.settle().await;

    // Settled: everything is there now, without waiting further.
    let bucket = garage.client();
    for blob in image.layers.iter().chain([&image.config]) {
        let object = bucket
            .get(&key(&blob.digest), 0)
            .await
            .expect("GET")
            .expect("in the bucket");
        assert_eq!(object.body.collect().await.expect("body").to_bytes(), blob.bytes);
    }
    let manifest = Key::manifest(&image.manifest.digest.parse().expect("digest"));
    assert!(bucket.size(&manifest).await.expect("HEAD").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn with_no_local_tier_every_read_comes_from_the_bucket() {
    let garage = Garage::start();
    let upstream = FakeRegistry::start().await;
    let image = upstream.push_image(REPO, "7", Format::Oci);
    let bucket = garage.config();
    let mirror = Mirror::builder(&upstream)
        .max_cache_size(0)
        .configure(|c| c.bucket = Some(bucket))
        .start()
        .await;
    let client = garage.client();
    for round in 0..2 {
        let by_tag = format!("/v2/{REPO}/manifests/7");
        mirror.get_manifest(&by_tag).await.assert_manifest(&image.manifest);
        for blob in image.blobs() {
            mirror.get(&path(blob)).await.assert_blob(blob);
            if round == 0 {
                in_bucket(&client, &key(&blob.digest)).await;
            }
        }
    }
    for blob in image.blobs() {
        assert_eq!(
            upstream.blob_gets(&blob.digest),
            1,
            "{} came back from the bucket",
            blob.digest
        );
        // The fill's commit, and so its at-once eviction, trails the body the client got.
        let dir = mirror.data_dir();
        let gone = poll_until(Duration::from_secs(5), || !dir.has_blob(&blob.digest)).await;
        assert!(gone, "{} ({} bytes) is not kept", blob.digest, blob.bytes.len());
    }
}
