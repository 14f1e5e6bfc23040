//! Accept negotiation for manifests (docs/protocol.md §5): a tag's stored type must be
//! acceptable to the client, a digest is served regardless, and the upstream is always
//! asked for every type so its tag-to-digest answer does not depend on the client.

use http::{Method, StatusCode};

use crate::support::content::ALL_MANIFEST_TYPES;
use crate::support::fake_registry::Kind;
use crate::support::{FakeRegistry, Format, Mirror, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaccepted_type_by_tag_is_manifest_unknown() {
    let fake = FakeRegistry::start().await;
    let index = fake.push_index("library/ubuntu", "24.04");
    let mirror = Mirror::start(&fake).await;
    let path = "/v2/library/ubuntu/manifests/24.04";
    let docker_only = [("accept", DOCKER_MANIFEST)];

    mirror
        .send(Method::GET, path, &docker_only)
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    // Also once the index is cached: the check is on the stored type, not upstream's answer.
    mirror.get_manifest(path).await.assert_manifest(&index.manifest);
    mirror
        .send(Method::GET, path, &docker_only)
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    let head = mirror.send(Method::HEAD, path, &docker_only).await;
    assert_eq!(head.status, StatusCode::NOT_FOUND, "{head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_digest_ignores_accept() {
    let fake = FakeRegistry::start().await;
    let index = fake.push_index("library/ubuntu", "24.04");
    let mirror = Mirror::start(&fake).await;
    let path = format!("/v2/library/ubuntu/manifests/{}", index.manifest.digest);

    // Cold, then cached.
    for _ in 0..2 {
        let reply = mirror.send(Method::GET, &path, &[("accept", DOCKER_MANIFEST)]).await;
        reply.assert_manifest(&index.manifest);
        assert_eq!(reply.header("content-type"), Some(OCI_INDEX));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_lines_comma_lists_and_wildcards() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/golang", "1.23", Format::Oci);
    let mirror = Mirror::start(&fake).await;
    let path = "/v2/library/golang/manifests/1.23";

    let separate_lines = [("accept", DOCKER_MANIFEST), ("accept", OCI_MANIFEST)];
    mirror
        .send(Method::GET, path, &separate_lines)
        .await
        .assert_manifest(&image.manifest);
    let comma_list = format!("{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5");
    mirror
        .send(Method::GET, path, &[("accept", comma_list.as_str())])
        .await
        .assert_manifest(&image.manifest);
    let wildcard = format!("{DOCKER_MANIFEST}, */*");
    mirror
        .send(Method::GET, path, &[("accept", wildcard.as_str())])
        .await
        .assert_manifest(&image.manifest);
    mirror
        .send(Method::GET, path, &[("accept", DOCKER_MANIFEST)])
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_is_asked_for_every_manifest_type() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image("library/golang", "1.23", Format::Oci);
    let mirror = Mirror::start(&fake).await;

    let reply = mirror
        .send(
            Method::GET,
            "/v2/library/golang/manifests/1.23",
            &[("accept", OCI_MANIFEST)],
        )
        .await;
    reply.assert_manifest(&image.manifest);
    let requests: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.kind == Kind::Manifest)
        .collect();
    assert!(!requests.is_empty());
    for request in &requests {
        for media_type in ALL_MANIFEST_TYPES {
            let listed = request
                .accept
                .iter()
                .any(|a| a.split(';').next().map(str::trim) == Some(media_type));
            assert!(listed, "{media_type} missing from {request:#?}");
        }
    }
}
