//! Blobs: a miss through the upstream's 307 to a CDN that must not see credentials, then
//! hits that stay local; HEAD; and byte ranges as dockerd and containerd resume them.

use http::{Method, StatusCode};

use crate::support::content::{random_bytes, Blob};
use crate::support::fake_registry::{Kind, Role};
use crate::support::{FakeRegistry, Format, Mirror};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_follows_redirect_without_authorization_then_hits() {
    let fake = FakeRegistry::builder()
        .bearer_auth(None)
        .cdn_redirects(true)
        .build()
        .await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    let mirror = Mirror::start(&fake).await;

    for blob in image.blobs() {
        mirror
            .get(&format!("/v2/library/alpine/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
        // One authorised GET per blob; the first one may be preceded by its challenge.
        let authorised = fake.count(|r| {
            r.is(Role::Registry, &Method::GET, Kind::Blob)
                && r.reference.as_deref() == Some(blob.digest.as_str())
                && r.authorization.as_deref().is_some_and(|a| a.starts_with("Bearer "))
        });
        assert_eq!(authorised, 1, "{:#?}", fake.requests());
        assert_eq!(fake.cdn_gets(&blob.digest), 1, "{:#?}", fake.requests());
    }
    let cdn_with_auth = fake.count(|r| r.role == Role::Cdn && r.authorization.is_some());
    assert_eq!(cdn_with_auth, 0, "the registry token must not cross to the CDN host");

    let before = fake.total();
    for blob in image.blobs() {
        mirror
            .get(&format!("/v2/library/alpine/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
    }
    assert_eq!(
        fake.total(),
        before,
        "hits reach neither registry nor CDN: {:#?}",
        fake.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_reports_size_and_digest_cold_and_cached() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(70_000));
    fake.add_blob("library/busybox", blob.bytes.clone());
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/busybox/blobs/{}", blob.digest);

    let assert_head = |reply: crate::support::Reply| {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert!(reply.bytes().is_empty(), "{reply:?}");
        assert_eq!(reply.header("content-length"), Some("70000"), "{reply:?}");
        assert_eq!(
            reply.header("docker-content-digest"),
            Some(blob.digest.as_str()),
            "{reply:?}"
        );
    };
    assert_head(mirror.head(&path).await);
    mirror.get(&path).await.assert_blob(&blob);
    let before = fake.total();
    assert_head(mirror.head(&path).await);
    assert_eq!(fake.total(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_on_a_cached_blob() {
    let fake = FakeRegistry::start().await;
    let blob = Blob::new(random_bytes(100_000));
    fake.add_blob("library/busybox", blob.bytes.clone());
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/busybox/blobs/{}", blob.digest);
    mirror.get(&path).await.assert_blob(&blob);
    let before = fake.total();
    let cached = mirror.get(&path).await;
    cached.assert_blob(&blob);
    assert_eq!(cached.header("accept-ranges"), Some("bytes"), "{cached:?}");

    // (Range header, expected first and last byte)
    let satisfiable = [
        ("bytes=10-", 10, 99_999),
        ("bytes=10-19", 10, 19),
        ("bytes=-100", 99_900, 99_999),
        ("bytes=0-0", 0, 0),
        // A last byte past the end is clamped (RFC 9110 §14.1.2).
        ("bytes=99990-200000", 99_990, 99_999),
    ];
    for (range, first, last) in satisfiable {
        let reply = mirror.send(Method::GET, &path, &[("range", range)]).await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "{range}: {reply:?}");
        let expected_range = format!("bytes {first}-{last}/100000");
        assert_eq!(reply.header("content-range"), Some(expected_range.as_str()), "{range}");
        assert_eq!(
            reply.header("content-length"),
            Some((last - first + 1).to_string().as_str()),
            "{range}"
        );
        assert!(reply.bytes()[..] == blob.bytes[first..=last], "{range}: wrong bytes");
    }
    for range in ["bytes=100000-", "bytes=200000-300000"] {
        let reply = mirror.send(Method::GET, &path, &[("range", range)]).await;
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}: {reply:?}");
        assert_eq!(reply.header("content-range"), Some("bytes */100000"), "{range}");
    }
    assert_eq!(fake.total(), before, "ranges on a cached blob stay local");
}

/// A cold range may be answered in full (containerd discards up to the offset) or as an
/// exact 206, never as a 206 with the wrong bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_on_a_cold_blob_is_whole_or_exact() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(90_000));
    fake.add_blob("library/busybox", blob.bytes.clone());
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/busybox/blobs/{}", blob.digest);

    let reply = mirror.send(Method::GET, &path, &[("range", "bytes=1000-")]).await;
    match reply.status {
        StatusCode::OK => reply.assert_blob(&blob),
        StatusCode::PARTIAL_CONTENT => {
            assert_eq!(
                reply.header("content-range"),
                Some("bytes 1000-89999/90000"),
                "{reply:?}"
            );
            assert!(reply.bytes()[..] == blob.bytes[1000..], "wrong bytes");
        }
        _ => panic!("expected 200 or 206: {reply:?}"),
    }
    mirror.get(&path).await.assert_blob(&blob);
}
