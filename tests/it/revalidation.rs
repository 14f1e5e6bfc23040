//! Tags are mutable: after `tag_ttl` the mirror asks the upstream again (with a HEAD,
//! which Docker Hub does not count), serves a moved tag's new manifest, keeps serving old
//! digests, and falls back to its stale copy with a `Warning` when the upstream fails.

use std::time::Duration;

use crate::support::{FakeRegistry, Fault, Format, Mirror, Reply, Target};

fn assert_stale(reply: &Reply) {
    let warning = reply
        .header("warning")
        .unwrap_or_else(|| panic!("stale answer carries a Warning: {reply:?}"));
    assert!(warning.starts_with("299 "), "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_tag_is_seen_after_ttl_and_old_digest_still_serves() {
    let fake = FakeRegistry::start().await;
    let old = fake.push_image("library/node", "lts", Format::Docker);
    let mirror = Mirror::builder(&fake).tag_ttl(Duration::from_secs(1)).start().await;
    let path = "/v2/library/node/manifests/lts";
    mirror.get_manifest(path).await.assert_manifest(&old.manifest);

    let new = fake.push_image("library/node", "lts", Format::Docker);
    // Gone upstream, so the old digest can only come from the cache.
    fake.remove_manifest("library/node", &old.manifest.digest);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    mirror.get_manifest(path).await.assert_manifest(&new.manifest);
    mirror.head_manifest(path).await.assert_manifest_head(&new.manifest);
    let old_path = format!("/v2/library/node/manifests/{}", old.manifest.digest);
    mirror.get_manifest(&old_path).await.assert_manifest(&old.manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_ttl_revalidates_every_request() {
    let fake = FakeRegistry::start().await;
    let old = fake.push_image("library/node", "lts", Format::Oci);
    let mirror = Mirror::builder(&fake).tag_ttl(Duration::ZERO).start().await;
    let path = "/v2/library/node/manifests/lts";

    mirror.get_manifest(path).await.assert_manifest(&old.manifest);
    let new = fake.push_image("library/node", "lts", Format::Oci);
    mirror.get_manifest(path).await.assert_manifest(&new.manifest);
    fake.set_tag("library/node", "lts", &old.manifest.digest);
    mirror.head_manifest(path).await.assert_manifest_head(&old.manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_tag_revalidates_with_head_only() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/node", "lts", Format::Docker);
    let mirror = Mirror::builder(&fake).tag_ttl(Duration::ZERO).start().await;
    let path = "/v2/library/node/manifests/lts";

    mirror.get_manifest(path).await.assert_manifest(&image.manifest);
    let (gets, heads) = (fake.manifest_gets("library/node"), fake.manifest_heads("library/node"));
    mirror.get_manifest(path).await.assert_manifest(&image.manifest);
    assert_eq!(
        fake.manifest_gets("library/node"),
        gets,
        "a cached digest costs no counted pull: {:#?}",
        fake.requests()
    );
    assert!(
        fake.manifest_heads("library/node") > heads,
        "the tag was revalidated upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tag_is_served_with_warning_when_upstream_fails() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/node", "lts", Format::Docker);
    let mirror = Mirror::builder(&fake).tag_ttl(Duration::ZERO).start().await;
    let path = "/v2/library/node/manifests/lts";
    mirror.get_manifest(path).await.assert_manifest(&image.manifest);

    for fault in [Fault::status(503), Fault::status(500), Fault::too_many_requests(30)] {
        fake.fail_always(Target::Any, fault.clone());
        let reply = mirror.get_manifest(path).await;
        reply.assert_manifest(&image.manifest);
        assert_stale(&reply);
        fake.clear_faults();
    }
    fake.stop().await;
    let reply = mirror.get_manifest(path).await;
    reply.assert_manifest(&image.manifest);
    assert_stale(&reply);
}

/// A 404 after successful auth means the tag is gone; the default is to say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_deleted_upstream_is_not_found() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/node", "lts", Format::Docker);
    let mirror = Mirror::builder(&fake).tag_ttl(Duration::ZERO).start().await;
    mirror
        .get_manifest("/v2/library/node/manifests/lts")
        .await
        .assert_manifest(&image.manifest);

    fake.remove_tag("library/node", "lts");
    mirror
        .get_manifest("/v2/library/node/manifests/lts")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    let by_digest = format!("/v2/library/node/manifests/{}", image.manifest.digest);
    mirror.get_manifest(&by_digest).await.assert_manifest(&image.manifest);
}
