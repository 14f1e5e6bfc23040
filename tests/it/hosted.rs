//! Where hosted repositories live and what they never do: pushes anywhere else are refused
//! (405 UNSUPPORTED), a hosted name is never asked of the upstream, pulls work `--offline`
//! and through containerd's `ns=`, and the content outlives a restart.

use http::Method;
use serde_json::json;

use crate::support::content::{random_bytes, sha256, Blob, Image, Index};
use crate::support::push::{
    artifact, assert_never_asked_upstream, hosted_mirror, push_blob, push_image, push_index, put_manifest, send_body,
};
use crate::support::{FakeRegistry, Format, Mirror};

const REPO: &str = "site.lan/gallery/ui";

/// Asserts that every push and delete on `name` is refused with 405 UNSUPPORTED.
async fn assert_pushes_refused(mirror: &Mirror, name: &str) {
    let blob = random_bytes(100);
    let digest = sha256(&blob);
    let image = Image::build(Format::Oci, "amd64");
    let posts = [
        format!("/v2/{name}/blobs/uploads/"),
        format!("/v2/{name}/blobs/uploads/?digest={digest}"),
        format!("/v2/{name}/blobs/uploads/?mount={digest}&from=library/alpine"),
    ];
    for path in &posts {
        let reply = send_body(mirror, Method::POST, path, &[], blob.clone()).await;
        reply.assert_error(405, "UNSUPPORTED");
    }
    let reply = put_manifest(mirror, name, "v1", &image.manifest).await;
    reply.assert_error(405, "UNSUPPORTED");
    let session = format!("/v2/{name}/blobs/uploads/8d3c1f2a-0000-4000-8000-000000000000");
    let reply = send_body(mirror, Method::PATCH, &session, &[], blob.clone()).await;
    reply.assert_error(405, "UNSUPPORTED");
    let reply = send_body(
        mirror,
        Method::PUT,
        &format!("{session}?digest={digest}"),
        &[],
        blob.clone(),
    )
    .await;
    reply.assert_error(405, "UNSUPPORTED");
    for path in [
        format!("/v2/{name}/manifests/v1"),
        format!("/v2/{name}/manifests/{}", image.manifest.digest),
        format!("/v2/{name}/blobs/{digest}"),
    ] {
        let reply = mirror.send(Method::DELETE, &path, &[]).await;
        reply.assert_error(405, "UNSUPPORTED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_a_mirrored_registry_are_405_unsupported() {
    let (hub, mirror) = hosted_mirror().await;
    hub.push_image("library/alpine", "v1", Format::Oci);
    for name in ["library/alpine", "docker.io/library/alpine", "alpine"] {
        assert_pushes_refused(&mirror, name).await;
    }
    assert_eq!(
        hub.total(),
        0,
        "a refused push asks nothing upstream: {:#?}",
        hub.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_hosted_namespace_every_push_is_405_unsupported() {
    let hub = FakeRegistry::start().await;
    let mirror = Mirror::start(&hub).await;
    for name in [REPO, "library/alpine"] {
        assert_pushes_refused(&mirror, name).await;
    }
}

/// Asserts everything a client pulls of REPO's `v1` (pushed as `image`) is served, and that
/// unknown names are plain 404s.
async fn assert_pulls(mirror: &Mirror, image: &Image) {
    let by_tag = format!("/v2/{REPO}/manifests/v1");
    let by_digest = format!("/v2/{REPO}/manifests/{}", image.manifest.digest);
    for path in [&by_tag, &by_digest] {
        mirror.get_manifest(path).await.assert_manifest(&image.manifest);
        mirror.head_manifest(path).await.assert_manifest_head(&image.manifest);
    }
    for blob in image.blobs() {
        let path = format!("/v2/{REPO}/blobs/{}", blob.digest);
        mirror.get(&path).await.assert_blob(blob);
    }
    let unknown = format!("/v2/{REPO}/manifests/v2");
    mirror
        .get_manifest(&unknown)
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    let missing = format!("/v2/site.lan/gallery/nothing/blobs/{}", image.config.digest);
    mirror.get(&missing).await.assert_error(404, "BLOB_UNKNOWN");
    let tags = mirror.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(tags.json(), json!({ "name": REPO, "tags": ["v1"] }), "{tags:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_repositories_are_never_asked_of_the_upstream_and_pull_offline() {
    let (hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Docker, "amd64");
    push_image(&mirror, REPO, "v1", &image).await;
    assert_pulls(&mirror, &image).await;
    assert_never_asked_upstream(&hub, &["gallery"]);

    let mirror = mirror.restart_with(|config| config.offline = true).await;
    assert_pulls(&mirror, &image).await;
    // Pushing needs no upstream either.
    let next = Image::build(Format::Oci, "arm64");
    push_image(&mirror, REPO, "v2", &next).await;
    let path = format!("/v2/{REPO}/manifests/v2");
    mirror.get_manifest(&path).await.assert_manifest(&next.manifest);
    assert_never_asked_upstream(&hub, &["gallery"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_names_hosted_repositories_with_ns() {
    let (hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    push_image(&mirror, REPO, "v1", &image).await;

    let by_ns = mirror.get_manifest("/v2/gallery/ui/manifests/v1?ns=site.lan").await;
    by_ns.assert_manifest(&image.manifest);
    for blob in image.blobs() {
        let path = format!("/v2/gallery/ui/blobs/{}?ns=site.lan", blob.digest);
        mirror.get(&path).await.assert_blob(blob);
    }
    assert_never_asked_upstream(&hub, &["gallery"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_content_survives_a_restart_on_the_same_data_dir() {
    let (hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    push_image(&mirror, REPO, "v1", &image).await;
    let index = Index::build(&["amd64", "arm64"]);
    push_index(&mirror, "site.lan/gallery/api", "multi", &index).await;
    let (signature, config, payload) = artifact(&image.manifest, "application/vnd.example.sig", false);
    push_blob(&mirror, REPO, &config).await;
    push_blob(&mirror, REPO, &payload).await;
    let reply = put_manifest(&mirror, REPO, &signature.digest, &signature).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let loose = Blob::new(random_bytes(777));
    push_blob(&mirror, REPO, &loose).await;

    let mirror = mirror.restart().await;
    hub.stop().await;
    mirror
        .get_manifest(&format!("/v2/{REPO}/manifests/v1"))
        .await
        .assert_manifest(&image.manifest);
    mirror
        .get_manifest("/v2/site.lan/gallery/api/manifests/multi")
        .await
        .assert_manifest(&index.manifest);
    for (_, child) in &index.children {
        let path = format!("/v2/site.lan/gallery/api/manifests/{}", child.manifest.digest);
        mirror.get_manifest(&path).await.assert_manifest(&child.manifest);
        for blob in child.blobs() {
            let path = format!("/v2/site.lan/gallery/api/blobs/{}", blob.digest);
            mirror.get(&path).await.assert_blob(blob);
        }
    }
    for blob in image.blobs().chain([&loose]) {
        mirror
            .get(&format!("/v2/{REPO}/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
    }
    let referrers = mirror
        .get(&format!("/v2/{REPO}/referrers/{}", image.manifest.digest))
        .await;
    assert_eq!(
        referrers.json()["manifests"][0]["digest"],
        signature.digest.as_str(),
        "{referrers:?}"
    );
    let tags = mirror.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(tags.json(), json!({ "name": REPO, "tags": ["v1"] }), "{tags:?}");
    let catalog = mirror.get("/v2/_catalog").await;
    assert_eq!(
        catalog.json()["repositories"],
        json!(["site.lan/gallery/api", REPO]),
        "{catalog:?}"
    );
}
