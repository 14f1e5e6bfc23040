//! Manifest pushes into hosted repositories: by tag and by digest, served back byte for byte;
//! and the refusals that leave nothing behind (a missing layer or child, a digest the body
//! does not hash to, a body too large, a body that is no manifest).

use bytes::Bytes;
use serde_json::json;

use crate::support::content::{sha256, Image, Index, Manifest};
use crate::support::push::{
    assert_manifest_created, hosted_mirror, manifest, push_blob, push_image, push_index, put_manifest,
};
use crate::support::{Format, Mirror, OCI_INDEX, OCI_MANIFEST};

const REPO: &str = "site.lan/gallery/ui";

fn manifest_path(reference: &str) -> String {
    format!("/v2/{REPO}/manifests/{reference}")
}

/// Asserts `reference` names no manifest in REPO, by GET and by HEAD.
async fn assert_unknown(mirror: &Mirror, reference: &str) {
    let get = mirror.get_manifest(&manifest_path(reference)).await;
    get.assert_error(404, "MANIFEST_UNKNOWN");
    let head = mirror.head_manifest(&manifest_path(reference)).await;
    assert_eq!(head.status, 404, "{head:?}");
}

/// Asserts GET and HEAD by tag and by digest all give these bytes, type and digest.
async fn assert_pulls(mirror: &Mirror, tag: &str, manifest: &Manifest) {
    for reference in [tag, manifest.digest.as_str()] {
        let path = manifest_path(reference);
        mirror.get_manifest(&path).await.assert_manifest(manifest);
        mirror.head_manifest(&path).await.assert_manifest_head(manifest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_put_by_tag_pull_back_identical_by_tag_and_by_digest() {
    let (_hub, mirror) = hosted_mirror().await;
    for (tag, format) in [("v1", Format::Docker), ("v1-oci", Format::Oci)] {
        let image = Image::build(format, "amd64");
        push_image(&mirror, REPO, tag, &image).await;
        assert_pulls(&mirror, tag, &image.manifest).await;
        for blob in image.blobs() {
            mirror
                .get(&format!("/v2/{REPO}/blobs/{}", blob.digest))
                .await
                .assert_blob(blob);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_put_by_digest_is_served_by_digest_and_a_later_tag_points_at_it() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "arm64");
    push_image(&mirror, REPO, &image.manifest.digest, &image).await;
    let path = manifest_path(&image.manifest.digest);
    mirror.get_manifest(&path).await.assert_manifest(&image.manifest);
    mirror.head_manifest(&path).await.assert_manifest_head(&image.manifest);
    assert_unknown(&mirror, "latest").await;

    let reply = put_manifest(&mirror, REPO, "latest", &image.manifest).await;
    assert_manifest_created(&reply, REPO, &image.manifest);
    assert_pulls(&mirror, "latest", &image.manifest).await;

    // A tag moves when a new manifest is pushed to it.
    let next = Image::build(Format::Oci, "arm64");
    push_image(&mirror, REPO, "latest", &next).await;
    assert_pulls(&mirror, "latest", &next.manifest).await;
    mirror.get_manifest(&path).await.assert_manifest(&image.manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_pushed_after_its_children_pulls_back_with_them() {
    let (_hub, mirror) = hosted_mirror().await;
    let index = Index::build(&["amd64", "arm64"]);
    push_index(&mirror, REPO, "multi", &index).await;
    assert_pulls(&mirror, "multi", &index.manifest).await;
    for (_, child) in &index.children {
        let path = manifest_path(&child.manifest.digest);
        mirror.get_manifest(&path).await.assert_manifest(&child.manifest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_naming_a_blob_the_repository_lacks_is_manifest_blob_unknown_and_tags_nothing() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    // Every blob, but in another hosted repository: a manifest may only name its own.
    for blob in image.blobs() {
        push_blob(&mirror, "site.lan/gallery/other", blob).await;
    }
    push_blob(&mirror, REPO, &image.config).await;
    push_blob(&mirror, REPO, &image.layers[0]).await;

    let reply = put_manifest(&mirror, REPO, "v1", &image.manifest).await;
    reply.assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_unknown(&mirror, "v1").await;
    assert_unknown(&mirror, &image.manifest.digest).await;

    // Without its config, the same.
    let other = Image::build(Format::Docker, "amd64");
    for layer in &other.layers {
        push_blob(&mirror, REPO, layer).await;
    }
    let reply = put_manifest(&mirror, REPO, "v2", &other.manifest).await;
    reply.assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_unknown(&mirror, "v2").await;

    // Once the blob is there, the same PUT succeeds.
    push_blob(&mirror, REPO, &image.layers[1]).await;
    let reply = put_manifest(&mirror, REPO, "v1", &image.manifest).await;
    assert_manifest_created(&reply, REPO, &image.manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_naming_a_child_the_repository_lacks_is_manifest_blob_unknown() {
    let (_hub, mirror) = hosted_mirror().await;
    let index = Index::build(&["amd64", "arm64"]);
    let amd64 = index.child("amd64");
    push_image(&mirror, REPO, &amd64.manifest.digest, amd64).await;
    // arm64's blobs are there, its manifest is not.
    for blob in index.child("arm64").blobs() {
        push_blob(&mirror, REPO, blob).await;
    }

    let reply = put_manifest(&mirror, REPO, "multi", &index.manifest).await;
    reply.assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_unknown(&mirror, "multi").await;
    assert_unknown(&mirror, &index.manifest.digest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_put_under_a_digest_it_does_not_hash_to_is_digest_invalid() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    let other = Image::build(Format::Oci, "amd64");
    for blob in image.blobs() {
        push_blob(&mirror, REPO, blob).await;
    }

    let reply = put_manifest(&mirror, REPO, &other.manifest.digest, &image.manifest).await;
    reply.assert_error(400, "DIGEST_INVALID");
    assert_unknown(&mirror, &other.manifest.digest).await;
    assert_unknown(&mirror, &image.manifest.digest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_body_over_4_mib_is_413_size_invalid() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    for blob in image.blobs() {
        push_blob(&mirror, REPO, blob).await;
    }
    let mut value: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    value["annotations"] = json!({ "padding": "x".repeat(4 * 1024 * 1024) });
    let large = manifest(OCI_MANIFEST, &value);
    assert!(large.bytes.len() > 4 * 1024 * 1024);

    let reply = put_manifest(&mirror, REPO, "big", &large).await;
    reply.assert_error(413, "SIZE_INVALID");
    assert_unknown(&mirror, "big").await;
    assert_unknown(&mirror, &large.digest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_no_manifest_is_manifest_invalid() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    for blob in image.blobs() {
        push_blob(&mirror, REPO, blob).await;
    }
    let not_json = Manifest {
        digest: sha256(b"\x00\x01 not json {"),
        media_type: OCI_MANIFEST,
        bytes: Bytes::from_static(b"\x00\x01 not json {"),
    };
    let shapes = [
        not_json,
        manifest(OCI_MANIFEST, &json!([1, 2, 3])),
        manifest(OCI_MANIFEST, &json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST })),
        manifest(
            OCI_MANIFEST,
            &json!({ "schemaVersion": 2, "config": "sha256:abc", "layers": {} }),
        ),
        manifest(
            OCI_INDEX,
            &json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": "none" }),
        ),
    ];
    for (n, garbage) in shapes.iter().enumerate() {
        let tag = format!("bad{n}");
        let reply = put_manifest(&mirror, REPO, &tag, garbage).await;
        reply.assert_error(400, "MANIFEST_INVALID");
        assert_unknown(&mirror, &tag).await;
    }
}
