//! Cross-repository blob mounts into hosted repositories: 201 when the source holds the blob
//! and the pusher may pull it, otherwise a plain upload session (202) that gives nothing away;
//! and pushing under `[access]`, where rules grant `pull`, `push` and `delete`.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use tempfile::TempDir;

use crate::support::content::{random_bytes, sha256, Blob, Image};
use crate::support::credentials::{basic, htpasswd};
use crate::support::push::{
    assert_blob_created, assert_manifest_created, hosted_mirror, push_blob, push_image, put_manifest, send_body,
    with_query, Upload,
};
use crate::support::{FakeRegistry, Format, Mirror, Reply};

const REPO: &str = "site.lan/gallery/ui";

fn mount_url(name: &str, digest: &str, from: &str) -> String {
    let url = with_query(&format!("/v2/{name}/blobs/uploads/"), "mount", digest);
    with_query(&url, "from", from)
}

async fn mount(mirror: &Mirror, name: &str, digest: &str, from: &str, headers: &[(&str, &str)]) -> Reply {
    send_body(
        mirror,
        Method::POST,
        &mount_url(name, digest, from),
        headers,
        Bytes::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_from_another_hosted_repository_that_holds_the_blob_is_201() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    push_image(&mirror, "site.lan/gallery/api", "v1", &image).await;

    for blob in image.blobs() {
        let reply = mount(&mirror, REPO, &blob.digest, "site.lan/gallery/api", &[]).await;
        assert_blob_created(&reply, REPO, &blob.digest);
        mirror
            .get(&format!("/v2/{REPO}/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
    }
    // The mounted blobs belong to REPO now: a manifest naming them is accepted there.
    let reply = put_manifest(&mirror, REPO, "v1", &image.manifest).await;
    assert_manifest_created(&reply, REPO, &image.manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_from_a_repository_without_the_blob_falls_back_to_an_upload() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(4096));
    push_blob(&mirror, "site.lan/third", &blob).await;
    push_blob(&mirror, "site.lan/gallery/api", &Blob::new(random_bytes(10))).await;

    let nobody = sha256(&random_bytes(16));
    let attempts = [
        (blob.digest.as_str(), "site.lan/gallery/api"),
        (blob.digest.as_str(), "site.lan/gallery/never"),
        (nobody.as_str(), "site.lan/third"),
    ];
    for (digest, from) in attempts {
        let reply = mount(&mirror, REPO, digest, from, &[]).await;
        Upload::from_reply(&reply, REPO);
        assert_eq!(reply.header("docker-content-digest"), None, "{reply:?}");
    }
    let path = format!("/v2/{REPO}/blobs/{}", blob.digest);
    mirror.get(&path).await.assert_error(404, "BLOB_UNKNOWN");

    // The session it opened is a real one.
    let reply = mount(&mirror, REPO, &blob.digest, "site.lan/gallery/api", &[]).await;
    let upload = Upload::from_reply(&reply, REPO);
    let reply = upload.finish(&mirror, &blob.digest, blob.bytes.clone()).await;
    assert_blob_created(&reply, REPO, &blob.digest);
    mirror.get(&path).await.assert_blob(&blob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_from_a_mirrored_repository_uses_its_cached_content() {
    let (hub, mirror) = hosted_mirror().await;
    let alpine = hub.push_image("library/alpine", "latest", Format::Oci);
    let cached = &alpine.layers[0];
    let not_pulled = &alpine.layers[1];
    mirror
        .get(&format!("/v2/library/alpine/blobs/{}", cached.digest))
        .await
        .assert_blob(cached);

    let reply = mount(&mirror, REPO, &cached.digest, "library/alpine", &[]).await;
    assert_blob_created(&reply, REPO, &cached.digest);
    mirror
        .get(&format!("/v2/{REPO}/blobs/{}", cached.digest))
        .await
        .assert_blob(cached);

    let reply = mount(&mirror, REPO, &not_pulled.digest, "library/alpine", &[]).await;
    Upload::from_reply(&reply, REPO);
}

/// alice may pull and push `site.lan/secret/*`; bob may pull, push and delete `site.lan/bob/*`;
/// carol may only pull `site.lan/secret/*`; anonymous clients nothing.
async fn guarded(hub: &FakeRegistry) -> (Mirror, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = [("alice", "wonderland"), ("bob", "builder"), ("carol", "singer")];
    let file = htpasswd(dir.path(), &users);
    let mirror = Mirror::builder(hub)
        .hosted("site.lan")
        .access(&format!(
            r#"
            htpasswd = {file:?}
            [[rules]]
            users = ["alice"]
            repos = ["site.lan/secret/*"]
            actions = ["pull", "push"]
            [[rules]]
            users = ["bob"]
            repos = ["site.lan/bob/*"]
            actions = ["pull", "push", "delete"]
            [[rules]]
            users = ["carol"]
            repos = ["site.lan/secret/*"]
            "#
        ))
        .start()
        .await;
    (mirror, dir)
}

/// A monolithic push as `user`: POST, then PUT with the bytes; the PUT's reply.
async fn push_as(mirror: &Mirror, user: &str, name: &str, blob: &Blob) -> Reply {
    let headers = [("authorization", user)];
    let reply = send_body(
        mirror,
        Method::POST,
        &format!("/v2/{name}/blobs/uploads/"),
        &headers,
        Bytes::new(),
    )
    .await;
    if reply.status != StatusCode::ACCEPTED {
        return reply;
    }
    let upload = Upload::from_reply(&reply, name);
    let url = with_query(&upload.url, "digest", &blob.digest);
    send_body(mirror, Method::PUT, &url, &headers, blob.bytes.clone()).await
}

/// Pushes `image` as `user` under the tag `v1`, asserting every step succeeds.
async fn push_image_as(mirror: &Mirror, user: &str, name: &str, image: &Image) {
    for blob in image.blobs() {
        assert_blob_created(&push_as(mirror, user, name, blob).await, name, &blob.digest);
    }
    let headers = [("authorization", user), ("content-type", image.manifest.media_type)];
    let path = format!("/v2/{name}/manifests/v1");
    let reply = send_body(mirror, Method::PUT, &path, &headers, image.manifest.bytes.clone()).await;
    assert_manifest_created(&reply, name, &image.manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_from_a_repository_the_pusher_may_not_pull_is_an_upload_not_a_mount() {
    let hub = FakeRegistry::start().await;
    let (mirror, _dir) = guarded(&hub).await;
    let (alice, bob) = (basic("alice", "wonderland"), basic("bob", "builder"));
    let blob = Blob::new(random_bytes(5000));
    assert_blob_created(
        &push_as(&mirror, &alice, "site.lan/secret/a", &blob).await,
        "site.lan/secret/a",
        &blob.digest,
    );

    let headers = [("authorization", bob.as_str())];
    let reply = mount(&mirror, "site.lan/bob/b", &blob.digest, "site.lan/secret/a", &headers).await;
    Upload::from_reply(&reply, "site.lan/bob/b");
    let path = format!("/v2/site.lan/bob/b/blobs/{}", blob.digest);
    let get = mirror.send(Method::GET, &path, &headers).await;
    get.assert_error(404, "BLOB_UNKNOWN");

    let headers = [("authorization", alice.as_str())];
    let reply = mount(
        &mirror,
        "site.lan/secret/b",
        &blob.digest,
        "site.lan/secret/a",
        &headers,
    )
    .await;
    assert_blob_created(&reply, "site.lan/secret/b", &blob.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_delete_need_their_actions_and_challenges_name_them() {
    let hub = FakeRegistry::start().await;
    let (mirror, _dir) = guarded(&hub).await;
    let (alice, bob, carol) = (
        basic("alice", "wonderland"),
        basic("bob", "builder"),
        basic("carol", "singer"),
    );
    let blob = Blob::new(random_bytes(3000));

    let anonymous = send_body(
        &mirror,
        Method::POST,
        "/v2/site.lan/secret/a/blobs/uploads/",
        &[],
        Bytes::new(),
    )
    .await;
    anonymous.assert_error(401, "UNAUTHORIZED");
    let challenge = anonymous.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("scope=\"repository:site.lan/secret/a:pull,push\""),
        "{anonymous:?}"
    );
    let path = format!("/v2/site.lan/bob/b/blobs/{}", blob.digest);
    let anonymous = mirror.send(Method::DELETE, &path, &[]).await;
    anonymous.assert_error(401, "UNAUTHORIZED");
    let challenge = anonymous.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("scope=\"repository:site.lan/bob/b:delete\""),
        "{anonymous:?}"
    );

    push_as(&mirror, &carol, "site.lan/secret/a", &blob)
        .await
        .assert_error(403, "DENIED");
    push_as(&mirror, &bob, "site.lan/secret/a", &blob)
        .await
        .assert_error(403, "DENIED");
    let pushed = push_as(&mirror, &alice, "site.lan/secret/a", &blob).await;
    assert_blob_created(&pushed, "site.lan/secret/a", &blob.digest);
    let secret = format!("/v2/site.lan/secret/a/blobs/{}", blob.digest);
    let pulled = mirror.send(Method::GET, &secret, &[("authorization", &carol)]).await;
    pulled.assert_blob(&blob);
    let refused = mirror.send(Method::DELETE, &secret, &[("authorization", &alice)]).await;
    refused.assert_error(403, "DENIED");

    push_image_as(
        &mirror,
        &alice,
        "site.lan/secret/a",
        &Image::build(Format::Oci, "amd64"),
    )
    .await;
    push_image_as(&mirror, &bob, "site.lan/bob/b", &Image::build(Format::Oci, "amd64")).await;
    assert_blob_created(
        &push_as(&mirror, &bob, "site.lan/bob/b", &blob).await,
        "site.lan/bob/b",
        &blob.digest,
    );
    let deleted = mirror.send(Method::DELETE, &path, &[("authorization", &bob)]).await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{deleted:?}");

    // The catalog names only what the caller may pull.
    let catalog = mirror
        .send(Method::GET, "/v2/_catalog", &[("authorization", &carol)])
        .await;
    assert_eq!(
        catalog.json()["repositories"],
        json!(["site.lan/secret/a"]),
        "{catalog:?}"
    );
    let catalog = mirror
        .send(Method::GET, "/v2/_catalog", &[("authorization", &bob)])
        .await;
    assert_eq!(catalog.json()["repositories"], json!(["site.lan/bob/b"]), "{catalog:?}");
    assert_eq!(hub.total(), 0, "{:#?}", hub.requests());
}
