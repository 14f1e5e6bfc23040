//! Error replies: push methods, malformed names and digests, unknown content, and an
//! upstream that is down, rate limiting or failing while nothing is cached. Every error
//! is an OCI JSON body; malformed requests never reach the upstream.

use http::{Method, StatusCode};

use crate::support::content::sha256;
use crate::support::{FakeRegistry, Fault, Format, Mirror, Reply, Target};

fn assert_api_version(reply: &Reply) {
    assert_eq!(
        reply.header("docker-distribution-api-version"),
        Some("registry/2.0"),
        "{reply:?}"
    );
}

fn assert_upstream_failure(reply: &Reply) {
    assert!(matches!(reply.status.as_u16(), 502 | 503), "{reply:?}");
    reply.assert_error_body(&["UNAVAILABLE", "UNKNOWN", "TOOMANYREQUESTS", "DENIED"]);
    assert_api_version(reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_methods_are_unsupported() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    let mirror = Mirror::start(&fake).await;
    let digest = &image.manifest.digest;
    let cases = [
        (Method::PUT, "/v2/library/alpine/manifests/latest".to_owned()),
        (Method::POST, "/v2/library/alpine/blobs/uploads/".to_owned()),
        (
            Method::PATCH,
            "/v2/library/alpine/blobs/uploads/8d3c1f2a-0000-4000-8000-000000000000".to_owned(),
        ),
        (
            Method::PUT,
            format!(
                "/v2/library/alpine/blobs/uploads/8d3c1f2a?digest={}",
                image.config.digest
            ),
        ),
        (Method::DELETE, format!("/v2/library/alpine/manifests/{digest}")),
        (
            Method::DELETE,
            format!("/v2/library/alpine/blobs/{}", image.config.digest),
        ),
    ];
    for (method, path) in cases {
        let reply = mirror.send(method.clone(), &path, &[]).await;
        reply.assert_error(405, "UNSUPPORTED");
        assert_api_version(&reply);
    }
    assert_eq!(fake.count(|r| r.method != Method::GET && r.method != Method::HEAD), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_names_are_name_invalid() {
    let fake = FakeRegistry::start().await;
    let mirror = Mirror::start(&fake).await;
    let blob = format!("sha256:{}", "0".repeat(64));
    let names = [
        "UPPER",
        "library/Alpine",
        "a//b",
        "a/../b",
        "a/./b",
        "a%2Fb",
        "a%2fb",
        "-a/b",
        "a/b-",
        "a___b",
        "a/.b",
    ];
    for name in names {
        for path in [
            format!("/v2/{name}/manifests/latest"),
            format!("/v2/{name}/blobs/{blob}"),
        ] {
            let reply = mirror.get_manifest(&path).await;
            reply.assert_error(400, "NAME_INVALID");
        }
    }
    assert_eq!(fake.count(|r| r.name.is_some()), 0, "{:#?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_digests_are_digest_invalid() {
    let fake = FakeRegistry::start().await;
    let mirror = Mirror::start(&fake).await;
    let hex = &sha256(b"x")["sha256:".len()..];
    let digests = [
        format!("sha256:{}", hex.to_uppercase()),
        "sha256:abc".to_owned(),
        format!("sha256:{hex}0"),
        format!("sha256:{}", &hex[1..]),
        format!("sha256:{}g", &hex[1..]),
        format!("md5:{}", &hex[..32]),
    ];
    for digest in &digests {
        for kind in ["blobs", "manifests"] {
            let reply = mirror
                .get_manifest(&format!("/v2/library/alpine/{kind}/{digest}"))
                .await;
            reply.assert_error(400, "DIGEST_INVALID");
        }
    }
    assert_eq!(fake.count(|r| r.name.is_some()), 0, "{:#?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tag_and_blob_are_not_found() {
    let fake = FakeRegistry::start().await;
    fake.push_image("library/alpine", "latest", Format::Docker);
    let mirror = Mirror::start(&fake).await;

    let tag = mirror.get_manifest("/v2/library/alpine/manifests/no-such-tag").await;
    tag.assert_error(404, "MANIFEST_UNKNOWN");
    assert_api_version(&tag);
    let digest = sha256(b"not upstream");
    mirror
        .get_manifest(&format!("/v2/library/alpine/manifests/{digest}"))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    let path = format!("/v2/library/alpine/blobs/{digest}");
    mirror.get(&path).await.assert_error(404, "BLOB_UNKNOWN");
    assert_eq!(mirror.head(&path).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_with_nothing_cached() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    let mirror = Mirror::start(&fake).await;
    fake.stop().await;

    assert_upstream_failure(&mirror.get_manifest("/v2/library/alpine/manifests/latest").await);
    assert_upstream_failure(
        &mirror
            .get_manifest(&format!("/v2/library/alpine/manifests/{}", image.manifest.digest))
            .await,
    );
    assert_upstream_failure(
        &mirror
            .get(&format!("/v2/library/alpine/blobs/{}", image.config.digest))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_rate_limit_with_nothing_cached() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    fake.fail_always(Target::Any, Fault::too_many_requests(30));
    let mirror = Mirror::start(&fake).await;

    let paths = [
        "/v2/library/alpine/manifests/latest".to_owned(),
        format!("/v2/library/alpine/blobs/{}", image.config.digest),
    ];
    for path in paths {
        let reply = mirror.get_manifest(&path).await;
        reply.assert_error(429, "TOOMANYREQUESTS");
        let retry_after = reply
            .header("retry-after")
            .unwrap_or_else(|| panic!("Retry-After: {reply:?}"));
        assert!(retry_after.parse::<u64>().is_ok_and(|s| s > 0), "{retry_after}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_server_errors_with_nothing_cached() {
    for status in [500, 503] {
        let fake = FakeRegistry::start().await;
        let image = fake.push_image("library/alpine", "latest", Format::Docker);
        fake.fail_always(Target::Any, Fault::status(status));
        let mirror = Mirror::start(&fake).await;

        assert_upstream_failure(&mirror.get_manifest("/v2/library/alpine/manifests/latest").await);
        assert_upstream_failure(
            &mirror
                .get(&format!("/v2/library/alpine/blobs/{}", image.config.digest))
                .await,
        );
    }
}
