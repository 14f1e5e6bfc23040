//! A private registry's content is served through a repository only once that repository is
//! known to hold it: its manifest listed it, or the upstream confirms it with a HEAD. The cache
//! is keyed by digest alone, so without this a client who knows a digest could read a private
//! repository's layers through any repository it may pull.

use std::time::Duration;

use http::Method;

use crate::support::client::CONTAINERD_ACCEPT;
use crate::support::content::Image;
use crate::support::credentials::{basic, htpasswd};
use crate::support::fake_registry::Kind;
use crate::support::{FakeRegistry, Fault, Format, Gate, Mirror, Reply, Target};

const LAN: &str = "registry.lan:5000";
const CREDENTIALS: (&str, &str) = ("mirror", "s3cret");

/// The private registry, with `org/secret` and `org/public-app` sharing no content.
async fn private_registry() -> (FakeRegistry, Image, Image) {
    let lan = FakeRegistry::builder()
        .basic_auth(CREDENTIALS.0, CREDENTIALS.1)
        .build()
        .await;
    let secret = lan.push_image("org/secret", "1", Format::Docker);
    let public = lan.push_image("org/public-app", "1", Format::Docker);
    (lan, secret, public)
}

/// Pulls an image as a client does: manifest by tag, then config and layers.
async fn pull(mirror: &Mirror, repo: &str, image: &Image, headers: &[(&str, &str)]) {
    let mut with_accept = headers.to_vec();
    with_accept.push(("accept", CONTAINERD_ACCEPT));
    let path = format!("/v2/{LAN}/{repo}/manifests/1");
    mirror
        .send(Method::GET, &path, &with_accept)
        .await
        .assert_manifest(&image.manifest);
    for blob in image.blobs() {
        let path = format!("/v2/{LAN}/{repo}/blobs/{}", blob.digest);
        mirror.send(Method::GET, &path, headers).await.assert_blob(blob);
    }
}

/// Asserts a 404 with `code` (its body, on GET) that carries none of `secret`'s bytes.
fn assert_not_served(reply: &Reply, method: &Method, code: &str, secret: &[u8]) {
    assert_eq!(reply.status, 404, "{method}: {reply:?}");
    if *method == Method::GET {
        reply.assert_error(404, code);
    }
    let probe = &secret[..secret.len().min(64)];
    assert!(
        !reply.bytes().windows(probe.len()).any(|w| w == probe),
        "no secret bytes in the answer: {reply:?}"
    );
}

/// Through `org/public-app`, by path prefix and by `ns=`: every way to secret's content is
/// a 404 the upstream answered, and none is served from the cache.
async fn assert_sealed_off(mirror: &Mirror, lan: &FakeRegistry, secret: &Image) {
    let layer = &secret.layers[0];
    let gets_before = lan.blob_gets(&layer.digest) + lan.manifest_gets_of(&secret.manifest.digest);
    let routes = [
        (
            format!("/v2/{LAN}/org/public-app/blobs/{}", layer.digest),
            "BLOB_UNKNOWN",
        ),
        (
            format!("/v2/org/public-app/blobs/{}?ns={LAN}", secret.config.digest),
            "BLOB_UNKNOWN",
        ),
        (
            format!("/v2/{LAN}/org/public-app/manifests/{}", secret.manifest.digest),
            "MANIFEST_UNKNOWN",
        ),
    ];
    for (path, code) in &routes {
        for method in [Method::GET, Method::HEAD] {
            let reply = mirror
                .send(method.clone(), path, &[("accept", CONTAINERD_ACCEPT)])
                .await;
            assert_not_served(&reply, &method, code, &layer.bytes);
        }
    }
    let asked = lan.count(|r| r.name.as_deref() == Some("org/public-app") && r.authorization.is_some());
    assert!(
        asked >= routes.len(),
        "the upstream was asked, and said no: {:?}",
        lan.requests()
    );
    let public_gets = lan.count(|r| {
        r.name.as_deref() == Some("org/public-app")
            && r.method == Method::GET
            && r.reference
                .as_deref()
                .is_some_and(|d| secret.blobs().any(|b| b.digest == d))
    });
    assert_eq!(
        public_gets, 0,
        "only HEADs ask for the secret digests through public-app"
    );
    let gets_after = lan.blob_gets(&layer.digest) + lan.manifest_gets_of(&secret.manifest.digest);
    assert_eq!(gets_after, gets_before, "nothing fetched again");
}

/// GETs of secret's content through `org/secret` since `mark` (a request count).
fn secret_requests_since(lan: &FakeRegistry, mark: usize, method: &Method) -> usize {
    lan.requests()[mark..]
        .iter()
        .filter(|r| r.name.as_deref() == Some("org/secret") && r.method == *method && r.kind == Kind::Blob)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_private_content_is_served_only_through_its_own_repository() {
    let hub = FakeRegistry::start().await;
    let (lan, secret, public) = private_registry().await;
    let mut mirror = Mirror::builder(&hub)
        .registry(LAN, &lan, Some(CREDENTIALS))
        .start()
        .await;

    pull(&mirror, "org/secret", &secret, &[]).await;
    assert!(mirror.data_dir().committed(&secret.layers[0].digest).await, "cached");
    assert_sealed_off(&mirror, &lan, &secret).await;

    // Through its own repository it comes from the cache: the manifest listed it.
    let mark = lan.total();
    pull(&mirror, "org/secret", &secret, &[]).await;
    assert_eq!(
        secret_requests_since(&lan, mark, &Method::GET),
        0,
        "{:?}",
        &lan.requests()[mark..]
    );
    assert_eq!(secret_requests_since(&lan, mark, &Method::HEAD), 0);
    pull(&mirror, "org/public-app", &public, &[]).await;

    // A restart forgets which repository holds what; the upstream is asked again.
    mirror = mirror.restart().await;
    assert_sealed_off(&mirror, &lan, &secret).await;
    let mark = lan.total();
    let layer = &secret.layers[0];
    mirror
        .get(&format!("/v2/{LAN}/org/secret/blobs/{}", layer.digest))
        .await
        .assert_blob(layer);
    assert_eq!(
        secret_requests_since(&lan, mark, &Method::GET),
        0,
        "served from the cache"
    );
    assert!(
        secret_requests_since(&lan, mark, &Method::HEAD) <= 2,
        "at most a HEAD (and its challenge)"
    );
    assert_eq!(hub.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_in_flight_for_one_repository_is_not_joined_through_another() {
    let hub = FakeRegistry::start().await;
    let (lan, secret, _) = private_registry().await;
    let mirror = Mirror::builder(&hub)
        .registry(LAN, &lan, Some(CREDENTIALS))
        .start()
        .await;
    let layer = &secret.layers[0];
    // Held halfway until the other repository has been refused, so the fill is in flight.
    let gate = Gate::new();
    // Twice: the fill's first GET goes without credentials and is refused before any body.
    lan.fail_next(Target::reference(&layer.digest), 2, Fault::HoldMidBody(gate.clone()));
    let own = format!("/v2/{LAN}/org/secret/blobs/{}", layer.digest);
    let mut filling = mirror.open(&own, &[]).await;
    assert_eq!(filling.status, 200);
    filling.read_at_least(1).await;

    let through_public = format!("/v2/{LAN}/org/public-app/blobs/{}", layer.digest);
    let reply = mirror.get(&through_public).await;
    assert_not_served(&reply, &Method::GET, "BLOB_UNKNOWN", &layer.bytes);
    assert!(
        gate.reached(Duration::from_secs(20)).await,
        "the fill's upstream body is held halfway"
    );
    gate.open();
    assert_eq!(
        filling.finish_within(Duration::from_secs(5)).await.as_deref(),
        Ok(&layer.bytes[..])
    );
    // One transfer: the GET refused for want of credentials carried no body.
    let transfers = lan.count(|r| r.method == Method::GET && r.kind == Kind::Blob && r.authorization.is_some());
    assert_eq!(transfers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_allowed_only_the_public_repository_never_gets_secret_bytes() {
    let hub = FakeRegistry::start().await;
    let (lan, secret, public) = private_registry().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = htpasswd(dir.path(), &[("alice", "wonderland"), ("bob", "builder")]);
    let mirror = Mirror::builder(&hub)
        .registry(LAN, &lan, Some(CREDENTIALS))
        .access(&format!(
            r#"
            htpasswd = {htpasswd:?}
            [[rules]]
            users = ["alice"]
            repos = ["{LAN}/org/*"]
            [[rules]]
            users = ["bob"]
            repos = ["{LAN}/org/public-app"]
            "#
        ))
        .start()
        .await;
    let alice = basic("alice", "wonderland");
    let bob = basic("bob", "builder");

    pull(&mirror, "org/secret", &secret, &[("authorization", &alice)]).await;
    pull(&mirror, "org/public-app", &public, &[("authorization", &bob)]).await;
    let upstream_before = lan.total();

    let layer = &secret.layers[0];
    let own = format!("/v2/{LAN}/org/secret/blobs/{}", layer.digest);
    let reply = mirror.send(Method::GET, &own, &[("authorization", &bob)]).await;
    reply.assert_error(403, "DENIED");
    assert_eq!(
        lan.total(),
        upstream_before,
        "refused before the cache and the upstream"
    );

    let through_public = format!("/v2/{LAN}/org/public-app/blobs/{}", layer.digest);
    let reply = mirror
        .send(Method::GET, &through_public, &[("authorization", &bob)])
        .await;
    assert_not_served(&reply, &Method::GET, "BLOB_UNKNOWN", &layer.bytes);
    let manifest = format!("/v2/{LAN}/org/public-app/manifests/{}", secret.manifest.digest);
    let reply = mirror.send(Method::GET, &manifest, &[("authorization", &bob)]).await;
    assert_not_served(&reply, &Method::GET, "MANIFEST_UNKNOWN", &secret.manifest.bytes);
    assert_eq!(lan.blob_gets(&layer.digest), 1, "alice's pull was the only GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_upstream_credentials_the_data_directory_is_closed_to_other_users() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |mirror: &Mirror| {
        let metadata = std::fs::metadata(mirror.data_dir().root()).expect("data dir");
        metadata.permissions().mode() & 0o777
    };
    let hub = FakeRegistry::start().await;
    let (lan, _, _) = private_registry().await;
    let open = Mirror::start(&hub).await;
    std::fs::set_permissions(open.data_dir().root(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let open = open.restart().await;
    // Answered once, the server is past its setup.
    assert_eq!(open.get("/v2/").await.status, 200);
    assert_eq!(mode(&open), 0o755, "without credentials the mode is left alone");
    let private = Mirror::builder(&hub)
        .registry(LAN, &lan, Some(CREDENTIALS))
        .start()
        .await;
    // Made as the umask says (tempfile's own would already be 0700), then restarted.
    std::fs::set_permissions(private.data_dir().root(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let private = private.restart().await;
    assert_eq!(private.get("/v2/").await.status, 200);
    assert_eq!(mode(&private), 0o700);
}
