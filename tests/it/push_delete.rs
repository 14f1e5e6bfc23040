//! Deleting from hosted repositories (a tag, a manifest with its tags, a blob) and listing
//! them: `tags/list` with `n`, `last` and `Link`, and `_catalog`, which names hosted
//! repositories and nothing mirrored.

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::content::{random_bytes, Blob, Image};
use crate::support::push::{hosted_mirror, push_blob, push_image, put_manifest};
use crate::support::{Format, Mirror, Reply};

const REPO: &str = "site.lan/gallery/ui";

fn manifest_path(reference: &str) -> String {
    format!("/v2/{REPO}/manifests/{reference}")
}

async fn delete(mirror: &Mirror, path: &str) -> Reply {
    mirror.send(Method::DELETE, path, &[]).await
}

/// The path of a `Link: <…>; rel="next"` header, absolute or not.
fn next_page(reply: &Reply) -> Option<String> {
    let link = reply.header("link")?;
    assert!(link.contains("rel=\"next\""), "{link}");
    let target = link
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(t, _)| t)
        .expect("<target>");
    let path = match target.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/').expect("path in absolute Link")..],
        None => target,
    };
    Some(path.to_owned())
}

/// An image pushed to REPO under each of `tags`.
async fn tagged(mirror: &Mirror, tags: &[&str]) -> Image {
    let image = Image::build(Format::Oci, "amd64");
    push_image(mirror, REPO, tags[0], &image).await;
    for tag in &tags[1..] {
        assert_eq!(put_manifest(mirror, REPO, tag, &image.manifest).await.status, 201);
    }
    image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tag_removes_only_that_tag() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = tagged(&mirror, &["v1", "stable"]).await;

    let reply = delete(&mirror, &manifest_path("v1")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    mirror
        .get_manifest(&manifest_path("v1"))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    for reference in ["stable", image.manifest.digest.as_str()] {
        mirror
            .get_manifest(&manifest_path(reference))
            .await
            .assert_manifest(&image.manifest);
    }
    let tags = mirror.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(tags.json(), json!({ "name": REPO, "tags": ["stable"] }), "{tags:?}");
    delete(&mirror, &manifest_path("v1"))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_manifest_by_digest_removes_it_and_every_tag_on_it() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = tagged(&mirror, &["v1", "stable"]).await;
    let kept = Image::build(Format::Oci, "arm64");
    push_image(&mirror, REPO, "other", &kept).await;

    let reply = delete(&mirror, &manifest_path(&image.manifest.digest)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    for reference in ["v1", "stable", image.manifest.digest.as_str()] {
        let path = manifest_path(reference);
        mirror.get_manifest(&path).await.assert_error(404, "MANIFEST_UNKNOWN");
        assert_eq!(mirror.head_manifest(&path).await.status, 404, "{reference}");
    }
    mirror
        .get_manifest(&manifest_path("other"))
        .await
        .assert_manifest(&kept.manifest);
    let tags = mirror.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(tags.json(), json!({ "name": REPO, "tags": ["other"] }), "{tags:?}");
    delete(&mirror, &manifest_path(&image.manifest.digest))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_blob_makes_it_unknown_in_that_repository_only() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(9000));
    push_blob(&mirror, REPO, &blob).await;
    push_blob(&mirror, "site.lan/gallery/api", &blob).await;
    let path = format!("/v2/{REPO}/blobs/{}", blob.digest);

    let reply = delete(&mirror, &path).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    mirror.get(&path).await.assert_error(404, "BLOB_UNKNOWN");
    assert_eq!(mirror.head(&path).await.status, 404);
    delete(&mirror, &path).await.assert_error(404, "BLOB_UNKNOWN");
    mirror
        .get(&format!("/v2/site.lan/gallery/api/blobs/{}", blob.digest))
        .await
        .assert_blob(&blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_list_pages_with_n_last_and_link() {
    let (_hub, mirror) = hosted_mirror().await;
    tagged(&mirror, &["v1.0", "latest", "edge", "v1.1", "beta"]).await;

    let all = mirror.get(&format!("/v2/{REPO}/tags/list")).await;
    assert_eq!(all.status, 200, "{all:?}");
    let expected = json!({ "name": REPO, "tags": ["beta", "edge", "latest", "v1.0", "v1.1"] });
    assert_eq!(all.json(), expected);

    let mut pages = Vec::new();
    let mut path = Some(format!("/v2/{REPO}/tags/list?n=2"));
    while let Some(current) = path {
        assert!(pages.len() < 5, "Link loops: {pages:?}");
        let reply = mirror.get(&current).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.json()["name"], REPO);
        pages.push(reply.json()["tags"].clone());
        path = next_page(&reply);
    }
    assert_eq!(
        pages,
        [json!(["beta", "edge"]), json!(["latest", "v1.0"]), json!(["v1.1"])]
    );
    let after = mirror.get(&format!("/v2/{REPO}/tags/list?last=latest")).await;
    assert_eq!(after.json()["tags"], json!(["v1.0", "v1.1"]), "{after:?}");

    mirror
        .get("/v2/site.lan/gallery/nothing/tags/list")
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_hosted_repositories_and_nothing_mirrored() {
    let (hub, mirror) = hosted_mirror().await;
    let alpine = hub.push_image("library/alpine", "latest", Format::Docker);
    mirror
        .get_manifest("/v2/library/alpine/manifests/latest")
        .await
        .assert_manifest(&alpine.manifest);
    for repo in ["site.lan/tools", REPO, "site.lan/gallery/api"] {
        push_image(&mirror, repo, "v1", &Image::build(Format::Oci, "amd64")).await;
    }

    let catalog = mirror.get("/v2/_catalog").await;
    assert_eq!(catalog.status, 200, "{catalog:?}");
    let expected = json!(["site.lan/gallery/api", "site.lan/gallery/ui", "site.lan/tools"]);
    assert_eq!(catalog.json()["repositories"], expected, "{catalog:?}");

    let first = mirror.get("/v2/_catalog?n=2").await;
    assert_eq!(
        first.json()["repositories"],
        json!(["site.lan/gallery/api", "site.lan/gallery/ui"])
    );
    let rest = mirror.get("/v2/_catalog?n=2&last=site.lan/gallery/ui").await;
    assert_eq!(rest.json()["repositories"], json!(["site.lan/tools"]), "{rest:?}");
}
