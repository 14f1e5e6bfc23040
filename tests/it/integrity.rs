//! Bad bytes from upstream: a corrupt blob, or a truncated one that cannot be resumed,
//! must reach the client as an aborted body (never a clean end), must not be cached, and
//! must be fetched afresh next time; a manifest whose bytes do not match its digest is
//! refused and not cached.

use http::Method;

use crate::support::client::assert_not_delivered;
use crate::support::content::{random_bytes, Blob};
use crate::support::fake_registry::Role;
use crate::support::{FakeRegistry, Fault, Format, Mirror, Target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_blob_is_aborted_and_not_cached() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    // Several chunks, so a mirror cannot get away with buffering one read.
    let blob = Blob::new(random_bytes(300 * 1024));
    fake.add_blob("library/alpine", blob.bytes.clone());
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::CorruptByte);
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/alpine/blobs/{}", blob.digest);

    assert_not_delivered(&mirror.try_send(Method::GET, &path, &[]).await);
    assert_eq!(fake.cdn_gets(&blob.digest), 1, "{:#?}", fake.requests());

    // Nothing was kept, so this is a second upstream fetch (through the registry again:
    // a Location is never reused), which now succeeds.
    mirror.get(&path).await.assert_blob(&blob);
    assert_eq!(fake.cdn_gets(&blob.digest), 2, "{:#?}", fake.requests());
    assert_eq!(fake.blob_gets(&blob.digest), 2, "{:#?}", fake.requests());

    let before = fake.total();
    mirror.get(&path).await.assert_blob(&blob);
    assert_eq!(fake.total(), before, "the good copy is cached");
}

/// A body that breaks off may be resumed upstream (docs/protocol.md §9.9) or aborted towards
/// the client; either way the client gets the exact bytes or a failed read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_blob_is_resumed_exactly_or_aborted() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(300 * 1024));
    fake.add_blob("library/alpine", blob.bytes.clone());
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::Truncate);
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/alpine/blobs/{}", blob.digest);

    let outcome = mirror.try_send(Method::GET, &path, &[]).await;
    match &outcome {
        Ok(reply) if reply.status.is_success() && reply.body.is_ok() => {
            reply.assert_blob(&blob);
            let offset = fake
                .requests()
                .into_iter()
                .filter(|r| r.role == Role::Cdn)
                .filter_map(|r| r.range)
                .find_map(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("a resume asks for `bytes=N-`: {:#?}", fake.requests()));
            assert!(offset > 0 && offset <= blob.bytes.len() / 2, "resumed at {offset}");
            let gets = fake.blob_gets(&blob.digest);
            assert_eq!(gets, 2, "a resume asks the registry again: {:#?}", fake.requests());
        }
        _ => {
            assert_not_delivered(&outcome);
            let fetches = fake.cdn_gets(&blob.digest);
            mirror.get(&path).await.assert_blob(&blob);
            assert!(
                fake.cdn_gets(&blob.digest) > fetches,
                "nothing was cached: {:#?}",
                fake.requests()
            );
        }
    }
    let before = fake.total();
    mirror.get(&path).await.assert_blob(&blob);
    assert_eq!(fake.total(), before, "the good copy is cached");
}

/// When the upstream breaks off and then fails, the client's read must fail too, and
/// the partial bytes must not be cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_blob_that_cannot_be_resumed_is_aborted_and_not_cached() {
    // Bodies straight from the registry, so the 503 can only hit a request after the first.
    let fake = FakeRegistry::start().await;
    let blob = Blob::new(random_bytes(300 * 1024));
    fake.add_blob("library/alpine", blob.bytes.clone());
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::Truncate);
    fake.fail_always(Target::reference(&blob.digest), Fault::status(503));
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/alpine/blobs/{}", blob.digest);

    assert_not_delivered(&mirror.try_send(Method::GET, &path, &[]).await);
    fake.clear_faults();
    let fetches = fake.blob_gets(&blob.digest);
    mirror.get(&path).await.assert_blob(&blob);
    assert!(
        fake.blob_gets(&blob.digest) > fetches,
        "nothing was cached: {:#?}",
        fake.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_not_matching_requested_digest_is_refused_and_not_cached() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "3", Format::Oci);
    let digest = &image.manifest.digest;
    fake.fail_next(Target::reference(digest), 1, Fault::CorruptByte);
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/alpine/manifests/{digest}");

    let refused = mirror.get_manifest(&path).await;
    assert!(refused.status.is_server_error(), "{refused:?}");
    mirror.get_manifest(&path).await.assert_manifest(&image.manifest);
    assert_eq!(fake.manifest_gets_of(digest), 2, "{:#?}", fake.requests());
}

/// By tag, the upstream's `Docker-Content-Digest` is what the bytes must match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_not_matching_upstream_digest_header_is_refused() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "3", Format::Docker);
    fake.fail_always(Target::name("library/alpine"), Fault::CorruptByte);
    let mirror = Mirror::start(&fake).await;
    let path = "/v2/library/alpine/manifests/3";

    let refused = mirror.get_manifest(path).await;
    assert!(refused.status.is_server_error(), "{refused:?}");
    let gets = fake.manifest_gets("library/alpine");
    assert!(gets >= 1);

    fake.clear_faults();
    mirror.get_manifest(path).await.assert_manifest(&image.manifest);
    assert!(
        fake.manifest_gets("library/alpine") > gets,
        "the corrupt copy was not cached"
    );
}
