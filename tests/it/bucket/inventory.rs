//! `cache … --bucket`: what the bucket holds counted by kind, its tags listed (past the
//! thousand keys of one listing page), every blob and manifest hashed again, a copy that
//! does not match its key deleted, and the cached content pruned, never the hosted part.

use std::time::Duration;

use bytes::Bytes;
use regmirror::bucket::Key;
use regmirror::digest::Digest;
use regmirror::reference::{Registry, RepoName, Tag};

use super::{key, mirror_on, path, REPO};
use crate::support::garage::Garage;
use crate::support::{FakeRegistry, Format};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn the_bucket_is_counted_listed_and_verified() {
    let garage = Garage::start();
    let upstream = FakeRegistry::start().await;
    let image = upstream.push_image(REPO, "7", Format::Oci);
    let mirror = mirror_on(&upstream, &garage).await;
    mirror
        .get_manifest(&format!("/v2/{REPO}/manifests/7"))
        .await
        .assert_manifest(&image.manifest);
    for blob in image.blobs() {
        mirror.get(&path(blob)).await.assert_blob(blob);
    }
    mirror.stop().await;
    let bucket = garage.client();

    let inventory = bucket.inventory().await.expect("inventory");
    let blobs = image.blobs().count() as u64;
    assert_eq!(inventory.blobs, blobs, "{inventory:?}");
    assert_eq!(
        inventory.blob_bytes,
        image.blobs().map(|b| b.bytes.len() as u64).sum::<u64>()
    );
    assert_eq!((inventory.manifests, inventory.tags), (1, 1), "{inventory:?}");
    assert_eq!(inventory.links, blobs + 1, "the manifest's and each blob's");
    assert_eq!(bucket.tags().await.expect("tags"), [format!("docker.io/{REPO}:7")]);

    let verified = bucket.verify().await.expect("verify");
    assert_eq!((verified.checked, verified.deleted.len()), (blobs + 1, 0));

    let victim = image.layers[0].clone();
    let mut lie = victim.bytes.to_vec();
    let middle = lie.len() / 2;
    lie[middle] ^= 1;
    bucket
        .put(&key(&victim.digest), Bytes::from(lie), None)
        .await
        .expect("PUT");
    let verified = bucket.verify().await.expect("verify");
    assert_eq!(verified.deleted, [key(&victim.digest).to_string()]);
    assert_eq!(bucket.size(&key(&victim.digest)).await.expect("HEAD"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn a_listing_goes_on_past_a_page_of_a_thousand() {
    let garage = Garage::start();
    let bucket = garage.client();
    let registry: Registry = "docker.io".parse().expect("registry");
    let repo = RepoName::on(&registry, "library/many").expect("repo");
    let tags: Vec<Tag> = (0..1100).map(|n| format!("t{n:04}").parse().expect("tag")).collect();
    for chunk in tags.chunks(50) {
        let puts = chunk.iter().map(|tag| {
            let key = Key::tag(&registry, &repo, tag);
            let bucket = &bucket;
            async move { bucket.put(&key, Bytes::from_static(b"{}"), None).await.expect("PUT") }
        });
        futures_util::future::join_all(puts).await;
    }
    let listed = bucket.tags().await.expect("tags");
    assert_eq!(listed.len(), tags.len());
    assert_eq!(listed.last().map(String::as_str), Some("docker.io/library/many:t1099"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn pruning_the_bucket_deletes_cached_content_and_never_hosted() {
    let garage = Garage::start();
    let bucket = garage.client();
    let contents: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![i; 1000])).collect();
    let keys: Vec<Key> = contents.iter().map(|c| Key::blob(&Digest::sha256_of(c))).collect();
    for (key, content) in keys.iter().zip(&contents) {
        bucket.put(key, content.clone(), None).await.expect("put");
    }
    let hosted = keys[0].clone().hosted();
    bucket.put(&hosted, contents[0].clone(), None).await.expect("put");

    let young = bucket
        .prune(Some(Duration::from_secs(3600)), None)
        .await
        .expect("prune");
    assert_eq!(young, (0, 0), "nothing is an hour old");
    let capped = bucket.prune(None, Some(1000)).await.expect("prune");
    assert_eq!(capped, (2, 2000), "down to one blob's bytes");
    let left: Vec<_> = bucket
        .list(Key::BLOBS)
        .await
        .expect("list")
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    let all = bucket.prune(Some(Duration::ZERO), None).await.expect("prune");
    assert_eq!(all, (1, 1000));
    assert!(
        bucket.size(&hosted).await.expect("HEAD").is_some(),
        "the hosted copy went"
    );
}
