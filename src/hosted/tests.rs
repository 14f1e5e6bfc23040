//! The hosted repositories' domain, without HTTP: uploads, manifests, deletes, gc.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;

use super::*;
use std::io;

use crate::cache::Limits;
use crate::manifest;
use crate::metrics::Metrics;

fn hosted(dir: &Path) -> Hosted {
    let limits = Limits {
        max_bytes: None,
        min_free_disk: 0,
        fill_timeout: Duration::from_secs(5),
        manifest_memory: 1 << 20,
        max_blob_size: 1 << 20,
        source_idle: Duration::from_secs(60),
    };
    let cache = Arc::new(Cache::load(dir, limits, Arc::new(Metrics::default())).expect("load"));
    let limits = super::Limits {
        upload_max_age: Duration::from_secs(60),
        max_size: 1 << 20,
    };
    Hosted::new("site.lan".parse().expect("namespace"), cache, None, limits)
}

fn body(chunks: &[&'static [u8]]) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Unpin {
    stream::iter(chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect::<Vec<_>>())
}

fn repo(name: &str) -> RepoName {
    name.parse().expect("repo")
}

#[tokio::test]
async fn an_upload_resumes_from_its_bytes_after_a_restart_and_verifies_at_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ui = repo("gallery/ui");
    let id = {
        let first = hosted(dir.path());
        let progress = first.start_upload(&ui).await.expect("start");
        first
            .append(&ui, &progress.id, Some(0), body(&[b"lay"]))
            .await
            .expect("chunk");
        progress.id
    };
    let again = hosted(dir.path());
    assert_eq!(again.upload_status(&ui, &id).await.expect("status").size, 3);
    let out_of_order = again.append(&ui, &id, Some(1), body(&[b"x"])).await;
    assert!(matches!(out_of_order, Err(Error::OutOfOrder { start: 1, held: 3 })));
    let digest = Digest::sha256_of(b"layer");
    again
        .finish_upload(&ui, &id, &digest, body(&[b"er"]))
        .await
        .expect("finish");
    assert!(matches!(
        again.blob(&ui, &digest).await,
        Ok(BlobAnswer::Cached { size: 5, .. })
    ));
    assert!(matches!(again.upload_status(&ui, &id).await, Err(Error::UploadUnknown)));
}

#[tokio::test]
async fn a_wrong_digest_stores_nothing_and_an_upload_belongs_to_its_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hosted = hosted(dir.path());
    let (ui, other) = (repo("gallery/ui"), repo("other"));
    let progress = hosted.start_upload(&ui).await.expect("start");
    assert!(matches!(
        hosted.upload_status(&other, &progress.id).await,
        Err(Error::UploadUnknown)
    ));
    let claimed = Digest::sha256_of(b"something else");
    let finished = hosted
        .finish_upload(&ui, &progress.id, &claimed, body(&[b"layer"]))
        .await;
    assert!(matches!(finished, Err(Error::DigestMismatch { .. })));
    assert!(matches!(hosted.blob(&ui, &claimed).await, Err(Error::BlobUnknown)));
    let actual = Digest::sha256_of(b"layer");
    assert!(matches!(hosted.blob(&ui, &actual).await, Err(Error::BlobUnknown)));
    assert!(matches!(
        hosted.upload_status(&ui, &progress.id).await,
        Err(Error::UploadUnknown)
    ));
}

#[tokio::test]
async fn an_upload_stops_at_the_size_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hosted = hosted(dir.path());
    let ui = repo("gallery/ui");
    let big: &'static [u8] = Box::leak(vec![0u8; (1 << 20) + 1].into_boxed_slice());
    let pushed = hosted.put_blob(&ui, &Digest::sha256_of(big), body(&[big])).await;
    assert!(matches!(pushed, Err(Error::TooLarge { .. })), "{pushed:?}");
}

/// Pushes `config` and `layer` to `repo`, then a manifest naming them as `tag`.
async fn push_image(hosted: &Hosted, repo: &RepoName, tag: &str, layer: &'static [u8]) -> Digest {
    let config: &'static [u8] = b"{}";
    for blob in [config, layer] {
        hosted
            .put_blob(repo, &Digest::sha256_of(blob), body(&[blob]))
            .await
            .expect("blob");
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256_of(config), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": Digest::sha256_of(layer), "size": layer.len()}],
    });
    let bytes = Bytes::from(manifest.to_string());
    let reference = Reference::Tag(tag.parse().expect("tag"));
    let pushed = hosted
        .put_manifest(repo, &reference, Some(manifest::OCI_MANIFEST), bytes)
        .await;
    pushed.expect("manifest").digest
}

#[tokio::test]
async fn a_manifest_naming_a_blob_its_repository_lacks_is_refused_and_nothing_is_tagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hosted = hosted(dir.path());
    let (ui, other) = (repo("gallery/ui"), repo("other"));
    push_image(&hosted, &ui, "v1", b"layer one").await;
    // The blobs are in the store, but `other` never got them: no pushing by digest alone.
    let manifest = hosted
        .manifest(&ui, &Reference::Tag("v1".parse().expect("tag")), Want::Body)
        .await;
    let bytes = manifest.expect("pushed").bytes.expect("bytes");
    let refused = (hosted.put_manifest(&other, &Reference::Tag("v1".parse().expect("tag")), None, bytes)).await;
    assert!(matches!(refused, Err(Error::ManifestBlobUnknown(_))), "{refused:?}");
    assert!(hosted.tags(&other).await.is_err());
}

#[tokio::test]
async fn gc_frees_what_no_tag_reaches_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hosted = hosted(dir.path());
    let ui = repo("gallery/ui");
    let kept = push_image(&hosted, &ui, "v1", b"kept layer").await;
    let gone = push_image(&hosted, &ui, "v2", b"gone layer").await;
    hosted
        .delete_manifest(&ui, &Reference::Digest(gone.clone()))
        .await
        .expect("delete");
    let in_flight = hosted.start_upload(&ui).await.expect("start");
    hosted
        .append(&ui, &in_flight.id, None, body(&[b"half"]))
        .await
        .expect("chunk");

    let young = gc::collect(dir.path(), Duration::from_secs(3600), Duration::from_secs(3600)).await;
    assert_eq!(young.expect("gc").files, 0, "everything is within the grace period");
    let report = gc::collect(dir.path(), Duration::ZERO, Duration::from_secs(3600))
        .await
        .expect("gc");
    // The deleted manifest and its layer; the config is shared with v1.
    assert_eq!((report.files, report.uploads), (2, 0));
    let store = crate::cache::store::Store::at(dir.path()).expect("store");
    assert!(!store.blob_path(&gone).exists());
    assert!(!store.blob_path(&Digest::sha256_of(b"gone layer")).exists());
    assert!(store.blob_path(&kept).exists() && store.blob_path(&Digest::sha256_of(b"kept layer")).exists());
    assert_eq!(hosted.upload_status(&ui, &in_flight.id).await.expect("upload").size, 4);
}
