//! Manifests by tag and by digest: exact bytes and headers, what a hit costs upstream,
//! indexes and their children, and how repository names reach the upstream.

use http::Method;

use crate::support::fake_registry::Kind;
use crate::support::{FakeRegistry, Format, Mirror, OCI_INDEX};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_miss_then_hit_within_ttl() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "3.20", Format::Docker);
    let mirror = Mirror::start(&fake).await;
    let path = "/v2/library/alpine/manifests/3.20";

    mirror.get_manifest(path).await.assert_manifest(&image.manifest);
    let after_miss = fake.total();
    assert!(after_miss > 0, "a miss goes upstream");

    mirror.get_manifest(path).await.assert_manifest(&image.manifest);
    mirror.head_manifest(path).await.assert_manifest_head(&image.manifest);
    assert_eq!(
        fake.total(),
        after_miss,
        "hits within the 60 s tag TTL stay local: {:#?}",
        fake.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_by_tag_has_real_length_and_costs_no_upstream_get() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "latest", Format::Oci);
    let mirror = Mirror::start(&fake).await;

    mirror
        .head_manifest("/v2/library/alpine/manifests/latest")
        .await
        .assert_manifest_head(&image.manifest);
    // Docker Hub counts GETs against the pull rate limit, not HEADs (docs/protocol.md §7.4).
    assert_eq!(fake.manifest_gets("library/alpine"), 0, "{:#?}", fake.requests());
    assert!(fake.manifest_heads("library/alpine") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_digest_miss_then_hit() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/nginx", "1", Format::Oci);
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/nginx/manifests/{}", image.manifest.digest);

    mirror.get_manifest(&path).await.assert_manifest(&image.manifest);
    let after_miss = fake.total();
    mirror.get_manifest(&path).await.assert_manifest(&image.manifest);
    mirror.head_manifest(&path).await.assert_manifest_head(&image.manifest);
    assert_eq!(
        fake.total(),
        after_miss,
        "digests are immutable, so hits never revalidate"
    );
    assert_eq!(fake.manifest_gets_of(&image.manifest.digest), 1);
}

/// dockerd resolves a tag with HEAD and then GETs the digest (docs/protocol.md §8.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_tag_then_get_digest_costs_one_upstream_get() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/redis", "7", Format::Docker);
    let mirror = Mirror::start(&fake).await;

    let head = mirror.head_manifest("/v2/library/redis/manifests/7").await;
    head.assert_manifest_head(&image.manifest);
    let by_digest = format!(
        "/v2/library/redis/manifests/{}",
        head.header("docker-content-digest").unwrap()
    );
    mirror.get_manifest(&by_digest).await.assert_manifest(&image.manifest);
    mirror
        .get_manifest("/v2/library/redis/manifests/7")
        .await
        .assert_manifest(&image.manifest);
    assert_eq!(fake.manifest_gets("library/redis"), 1, "{:#?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_then_child_by_digest_without_prefetching_siblings() {
    let fake = FakeRegistry::start().await;
    let index = fake.push_index("library/debian", "12");
    let mirror = Mirror::start(&fake).await;

    let reply = mirror.get_manifest("/v2/library/debian/manifests/12").await;
    reply.assert_manifest(&index.manifest);
    assert_eq!(reply.header("content-type"), Some(OCI_INDEX));
    let amd64 = index.child("amd64");
    let child_path = format!("/v2/library/debian/manifests/{}", amd64.manifest.digest);
    mirror.get_manifest(&child_path).await.assert_manifest(&amd64.manifest);

    // Each child fetched upstream is a counted pull; a client asks only for its own.
    let arm64 = &index.child("arm64").manifest.digest;
    assert_eq!(
        fake.count(|r| r.reference.as_deref() == Some(arm64.as_str())),
        0,
        "{:#?}",
        fake.requests()
    );
    assert_eq!(fake.manifest_gets_of(&amd64.manifest.digest), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_component_names_mean_library() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "1", Format::Docker);
    let mirror = Mirror::start(&fake).await;

    mirror
        .get_manifest("/v2/alpine/manifests/1")
        .await
        .assert_manifest(&image.manifest);
    mirror
        .get(&format!("/v2/alpine/blobs/{}", image.config.digest))
        .await
        .assert_blob(&image.config);
    assert_eq!(
        fake.count(|r| r.path.starts_with("/v2/alpine/")),
        0,
        "Hub denies /v2/alpine: {:#?}",
        fake.requests()
    );
    assert!(fake.count(|r| r.name.as_deref() == Some("library/alpine")) > 0);

    // One cache for both spellings.
    let before = fake.total();
    mirror
        .get_manifest("/v2/library/alpine/manifests/1")
        .await
        .assert_manifest(&image.manifest);
    mirror
        .get(&format!("/v2/library/alpine/blobs/{}", image.config.digest))
        .await
        .assert_blob(&image.config);
    assert_eq!(fake.total(), before, "{:#?}", fake.requests());
}

/// The route regex anchors on the end, so `manifests` and `blobs` are fine as name components.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_components_may_be_route_words() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("foo/manifests/blobs", "latest", Format::Oci);
    let mirror = Mirror::start(&fake).await;

    mirror
        .get_manifest("/v2/foo/manifests/blobs/manifests/latest")
        .await
        .assert_manifest(&image.manifest);
    let layer = &image.layers[0];
    mirror
        .get(&format!("/v2/foo/manifests/blobs/blobs/{}", layer.digest))
        .await
        .assert_blob(layer);
    let other_names = fake.count(|r| r.name.is_some() && r.name.as_deref() != Some("foo/manifests/blobs"));
    assert_eq!(other_names, 0, "{:#?}", fake.requests());
    assert_eq!(fake.count(|r| r.method == Method::GET && r.kind == Kind::Manifest), 1);
}

/// An upstream answering a manifest request with something that is no manifest (an HTML
/// page) gets a 502; the page is neither served from the mirror's origin nor cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answer_that_is_no_manifest_is_refused_not_served() {
    let fake = FakeRegistry::start().await;
    let page = &b"<html><script>alert(document.cookie)</script></html>"[..];
    // By digest: a tag of a type the client did not accept would be a 404 at the fake.
    let digest = fake.add_manifest("library/page", "1", "text/html", page);
    let mirror = Mirror::start(&fake).await;
    for _ in 0..2 {
        let reply = mirror.get(&format!("/v2/library/page/manifests/{digest}")).await;
        reply.assert_error(502, "UNAVAILABLE");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(
            !String::from_utf8_lossy(reply.bytes()).contains("<script>"),
            "{reply:?}"
        );
    }
    assert_eq!(fake.manifest_gets("library/page"), 2, "nothing was cached");
}
