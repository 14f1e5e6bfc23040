//! Upstream authentication the Docker Hub way: anonymous or Basic-authenticated bearer
//! tokens, cached per repository and refreshed when refused or expired, and Hub's 401 for
//! a missing repository turned into a plain 404 for the client.

use base64::Engine as _;
use http::Method;
use regmirror::config::Credentials;

use crate::support::fake_registry::{Kind, Request, Role, SERVICE};
use crate::support::{FakeRegistry, Fault, Format, Mirror, Target};

fn scoped_to(request: &Request, name: &str) -> bool {
    let wanted = format!("repository:{name}:pull");
    request
        .query_values("scope")
        .iter()
        .flat_map(|s| s.split(' '))
        .any(|scope| scope == wanted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_token_is_fetched_once_per_repository() {
    let fake = FakeRegistry::builder()
        .bearer_auth(None)
        .cdn_redirects(true)
        .build()
        .await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    let mirror = Mirror::start(&fake).await;

    mirror
        .get_manifest("/v2/library/alpine/manifests/latest")
        .await
        .assert_manifest(&image.manifest);
    for blob in image.blobs() {
        mirror
            .get(&format!("/v2/library/alpine/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
    }
    let tokens = fake.token_requests();
    assert_eq!(
        tokens.iter().filter(|t| scoped_to(t, "library/alpine")).count(),
        1,
        "{tokens:#?}"
    );
    for token in &tokens {
        assert_eq!(token.authorization, None, "no credentials configured: {token:#?}");
        assert_eq!(
            token.query_values("service"),
            [SERVICE],
            "service comes from the challenge"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_to_the_token_endpoint_only_as_basic() {
    let credentials = Credentials {
        username: "hubuser".to_owned(),
        password: "dckr_pat_s3cret".to_owned(),
    };
    let fake = FakeRegistry::builder()
        .bearer_auth(Some(credentials))
        .cdn_redirects(true)
        .build()
        .await;
    let image = fake.push_image("acme/app", "v1", Format::Oci);
    let mirror = Mirror::builder(&fake)
        .credentials("hubuser", "dckr_pat_s3cret")
        .start()
        .await;

    mirror
        .get_manifest("/v2/acme/app/manifests/v1")
        .await
        .assert_manifest(&image.manifest);
    mirror
        .get(&format!("/v2/acme/app/blobs/{}", image.layers[0].digest))
        .await
        .assert_blob(&image.layers[0]);

    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("hubuser:dckr_pat_s3cret")
    );
    let tokens = fake.token_requests();
    assert!(!tokens.is_empty());
    assert!(
        tokens
            .iter()
            .all(|t| t.authorization.as_deref() == Some(basic.as_str())),
        "{tokens:#?}"
    );
    let leaked = fake.count(|r| r.kind != Kind::Token && r.authorization.as_deref() == Some(basic.as_str()));
    assert_eq!(leaked, 0, "the password goes nowhere but the token endpoint");
    assert_eq!(fake.count(|r| r.role == Role::Cdn && r.authorization.is_some()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repository_is_a_plain_404() {
    let fake = FakeRegistry::builder().bearer_auth(None).build().await;
    fake.push_image("library/alpine", "latest", Format::Docker);
    let mirror = Mirror::start(&fake).await;
    let blob = format!("sha256:{}", "ab".repeat(32));

    let cases = [
        (
            "/v2/library/nosuch/manifests/latest".to_owned(),
            &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"][..],
        ),
        (
            "/v2/someone/private/manifests/latest".to_owned(),
            &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"],
        ),
        (
            format!("/v2/library/nosuch/blobs/{blob}"),
            &["NAME_UNKNOWN", "BLOB_UNKNOWN"],
        ),
    ];
    for (path, codes) in cases {
        let reply = mirror.get_manifest(&path).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        reply.assert_error_body(codes);
        assert_eq!(
            reply.header("www-authenticate"),
            None,
            "Hub's challenge must not leak: {reply:?}"
        );
        let head = mirror.send(Method::HEAD, &path, &[]).await;
        assert_eq!(head.status, 404, "{path}: {head:?}");
        assert_eq!(head.header("www-authenticate"), None);
    }
}

/// A token endpoint that fails is an upstream failure, not the client's auth problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_token_endpoint_is_an_upstream_error() {
    let fake = FakeRegistry::builder().bearer_auth(None).build().await;
    fake.push_image("library/alpine", "latest", Format::Docker);
    fake.fail_always(Target::Token, Fault::status(500));
    let mirror = Mirror::start(&fake).await;

    let reply = mirror.get_manifest("/v2/library/alpine/manifests/latest").await;
    assert!(matches!(reply.status.as_u16(), 502 | 503), "{reply:?}");
    reply.assert_error_body(&["UNAVAILABLE", "UNKNOWN"]);
    assert_eq!(reply.header("www-authenticate"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_is_refreshed_and_the_request_retried() {
    let fake = FakeRegistry::builder().bearer_auth(None).build().await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    let mirror = Mirror::start(&fake).await;
    mirror
        .get_manifest("/v2/library/alpine/manifests/latest")
        .await
        .assert_manifest(&image.manifest);
    let tokens = fake.token_requests().len();

    // The cached token is refused once, as after a revocation.
    fake.fail_next(Target::name("library/alpine"), 1, Fault::status(401));
    mirror
        .get(&format!("/v2/library/alpine/blobs/{}", image.config.digest))
        .await
        .assert_blob(&image.config);
    assert_eq!(fake.token_requests().len(), tokens + 1, "{:#?}", fake.requests());
}

/// An upstream may end a token before the `expires_in` it gave (a revocation, say), so the
/// mirror's own reckoning cannot be the only word: the request the dead token is refused on
/// gets a new token and is retried with it, and later requests carry the new token without
/// another fetch. Unlike a one-off 401, the old token stays dead, so a retry that resent it
/// would fail. (Expiry by the clock is tested next to the token cache, with paused time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_upstream_ends_early_is_replaced_after_its_401() {
    let fake = FakeRegistry::builder().bearer_auth(None).build().await;
    let image = fake.push_image("library/alpine", "latest", Format::Docker);
    let mirror = Mirror::start(&fake).await;
    mirror
        .get_manifest("/v2/library/alpine/manifests/latest")
        .await
        .assert_manifest(&image.manifest);
    assert_eq!(fake.token_requests().len(), 1, "{:#?}", fake.requests());
    let authorization_of = |digest: &str| -> Vec<Option<String>> {
        let gets = fake.requests().into_iter();
        gets.filter(|r| r.kind == Kind::Blob && r.reference.as_deref() == Some(digest))
            .map(|r| r.authorization)
            .collect()
    };
    let old = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.kind == Kind::Manifest)
        .and_then(|r| r.authorization)
        .expect("the manifest went out with a token");

    fake.expire_tokens();
    mirror
        .get(&format!("/v2/library/alpine/blobs/{}", image.config.digest))
        .await
        .assert_blob(&image.config);
    assert_eq!(fake.token_requests().len(), 2, "{:#?}", fake.requests());
    let sent = authorization_of(&image.config.digest);
    let [Some(refused), Some(new)] = &sent[..] else {
        panic!("the dead token, then a retry with another: {sent:#?}");
    };
    assert_eq!(refused, &old);
    assert_ne!(new, &old);

    let layer = &image.layers[0];
    mirror
        .get(&format!("/v2/library/alpine/blobs/{}", layer.digest))
        .await
        .assert_blob(layer);
    assert_eq!(authorization_of(&layer.digest), [Some(new.clone())]);
    assert_eq!(fake.token_requests().len(), 2, "{:#?}", fake.requests());
}
