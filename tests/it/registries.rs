//! Several upstreams behind one mirror: a registry chosen by containerd's `ns=` (echoed as
//! `OCI-Namespace`) or by a host as the path's first component, per-registry credentials
//! (Basic for an htpasswd registry, Bearer tokens for a Hub-like one), `library/` only for
//! Docker Hub, content stored once across registries, tags kept per registry, and an
//! unmirrored registry answered 404 without a word to Docker Hub.

use http::Method;
use regmirror::config::Credentials;

use crate::support::credentials::basic;
use crate::support::fake_registry::{Kind, Role};
use crate::support::{FakeRegistry, Format, Mirror};

/// The private registry on the LAN, reached with Basic credentials.
const LAN: &str = "registry.lan:5000";
const LAN_USER: (&str, &str) = ("lan-user", "lan-secret");
/// A Hub-like registry with bearer tokens, whose token endpoint wants its own credentials.
const GHCR: &str = "ghcr.io";
const GHCR_USER: (&str, &str) = ("gh-user", "gh-secret");

struct Upstreams {
    hub: FakeRegistry,
    lan: FakeRegistry,
    ghcr: FakeRegistry,
}

impl Upstreams {
    async fn start() -> Upstreams {
        let (user, password) = GHCR_USER;
        let ghcr_credentials = Credentials {
            username: user.to_owned(),
            password: password.to_owned(),
        };
        Upstreams {
            hub: FakeRegistry::start().await,
            lan: FakeRegistry::builder().basic_auth(LAN_USER.0, LAN_USER.1).build().await,
            ghcr: FakeRegistry::builder()
                .bearer_auth(Some(ghcr_credentials))
                .build()
                .await,
        }
    }

    async fn mirror(&self) -> Mirror {
        Mirror::builder(&self.hub)
            .registry(LAN, &self.lan, Some(LAN_USER))
            .registry(GHCR, &self.ghcr, Some(GHCR_USER))
            .start()
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ns_and_path_prefix_pick_the_registry_with_its_credentials() {
    let up = Upstreams::start().await;
    // A single-component name: Docker Hub would make it library/tool, this registry must not.
    let lan_image = up.lan.push_image("tool", "1", Format::Docker);
    let ghcr_image = up.ghcr.push_image("org/tool", "1", Format::Oci);
    let mirror = up.mirror().await;

    let by_prefix = mirror.get_manifest(&format!("/v2/{LAN}/tool/manifests/1")).await;
    by_prefix.assert_manifest(&lan_image.manifest);
    let by_ns = mirror.get_manifest("/v2/tool/manifests/1?ns=registry.lan%3A5000").await;
    by_ns.assert_manifest(&lan_image.manifest);
    assert_eq!(by_ns.header("oci-namespace"), Some(LAN), "{by_ns:?}");
    let layer = &lan_image.layers[0];
    mirror
        .get(&format!("/v2/tool/blobs/{}?ns={LAN}", layer.digest))
        .await
        .assert_blob(layer);

    let lan_names: Vec<_> = up.lan.requests().into_iter().filter_map(|r| r.name).collect();
    assert!(
        !lan_names.is_empty() && lan_names.iter().all(|n| n == "tool"),
        "the LAN registry is asked for `tool`, never `library/tool`: {lan_names:?}"
    );
    let lan_gets = up.lan.count(|r| r.method == Method::GET && r.kind != Kind::Ping);
    let lan_gets_with_credentials = up.lan.count(|r| {
        r.method == Method::GET
            && r.kind != Kind::Ping
            && r.authorization.as_deref() == Some(&basic(LAN_USER.0, LAN_USER.1))
    });
    assert!(lan_gets > 0 && lan_gets_with_credentials > 0, "{:?}", up.lan.requests());

    let by_ns = mirror.get_manifest("/v2/org/tool/manifests/1?ns=ghcr.io").await;
    by_ns.assert_manifest(&ghcr_image.manifest);
    assert_eq!(by_ns.header("oci-namespace"), Some(GHCR), "{by_ns:?}");
    mirror
        .get_manifest(&format!("/v2/{GHCR}/org/tool/manifests/1"))
        .await
        .assert_manifest(&ghcr_image.manifest);
    mirror
        .get(&format!("/v2/{GHCR}/org/tool/blobs/{}", ghcr_image.config.digest))
        .await
        .assert_blob(&ghcr_image.config);
    mirror
        .get(&format!("/v2/org/tool/blobs/{}?ns={GHCR}", ghcr_image.layers[1].digest))
        .await
        .assert_blob(&ghcr_image.layers[1]);
    let tokens = up.ghcr.token_requests();
    assert!(
        !tokens.is_empty()
            && tokens
                .iter()
                .all(|t| t.authorization.as_deref() == Some(&basic(GHCR_USER.0, GHCR_USER.1))),
        "ghcr.io's token endpoint gets ghcr.io's credentials, and only those: {tokens:?}"
    );
    assert!(
        up.lan.requests().iter().all(|r| r.name.as_deref() != Some("org/tool")),
        "ghcr.io's requests stay away from the LAN registry"
    );
    assert_eq!(up.hub.total(), 0, "Docker Hub is not asked: {:?}", up.hub.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_both_registries_serve_is_fetched_and_stored_once() {
    let up = Upstreams::start().await;
    let shared = up.ghcr.add_blob("org/app", &b"a layer both registries serve"[..]);
    assert_eq!(
        up.lan.add_blob("org/app", &b"a layer both registries serve"[..]),
        shared
    );
    let mirror = up.mirror().await;

    let first = mirror.get(&format!("/v2/{GHCR}/org/app/blobs/{shared}")).await;
    first.assert_bytes(b"a layer both registries serve");
    let second = mirror.get(&format!("/v2/org/app/blobs/{shared}?ns={LAN}")).await;
    second.assert_bytes(b"a layer both registries serve");

    // Transfers: GETs that carried credentials (a first one without is refused bodiless).
    let transfers = |fake: &FakeRegistry| {
        fake.count(|r| r.method == Method::GET && r.kind == Kind::Blob && r.authorization.is_some())
    };
    assert_eq!(transfers(&up.ghcr) + transfers(&up.lan), 1, "one upstream transfer");
    assert_eq!(transfers(&up.ghcr), 1);
    // The LAN registry is private (credentials), so it is asked whether its org/app holds
    // the blob, with a HEAD, and nothing more.
    let lan_blob_requests: Vec<_> = up.lan.requests().into_iter().filter(|r| r.kind == Kind::Blob).collect();
    assert!(
        lan_blob_requests.iter().all(|r| r.method == Method::HEAD) && lan_blob_requests.len() <= 2,
        "at most a HEAD (and its challenge) reaches the second registry: {lan_blob_requests:?}"
    );
    let stored: Vec<_> = mirror
        .data_dir()
        .blobs()
        .into_iter()
        .filter(|(d, _)| *d == shared)
        .collect();
    assert_eq!(stored.len(), 1, "stored once: {stored:?}");
    assert_eq!(mirror.data_dir().blobs().len(), 1, "{:?}", mirror.data_dir().blobs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_tag_on_two_registries_keeps_its_own_digest() {
    let up = Upstreams::start().await;
    let on_lan = up.lan.push_image("org/app", "1.0", Format::Docker);
    let on_ghcr = up.ghcr.push_image("org/app", "1.0", Format::Docker);
    assert_ne!(on_lan.manifest.digest, on_ghcr.manifest.digest);
    // Docker Hub has a library/app:1.0 too: neither registry may get its answer.
    let on_hub = up.hub.push_image("library/app", "1.0", Format::Docker);
    let mut mirror = up.mirror().await;

    for round in ["cold", "cached", "after a restart"] {
        let lan = mirror.get_manifest(&format!("/v2/{LAN}/org/app/manifests/1.0")).await;
        assert_eq!(
            lan.header("docker-content-digest"),
            Some(on_lan.manifest.digest.as_str()),
            "{round}"
        );
        lan.assert_manifest(&on_lan.manifest);
        let ghcr = mirror.get_manifest("/v2/org/app/manifests/1.0?ns=ghcr.io").await;
        assert_eq!(
            ghcr.header("docker-content-digest"),
            Some(on_ghcr.manifest.digest.as_str()),
            "{round}"
        );
        ghcr.assert_manifest(&on_ghcr.manifest);
        let hub = mirror.head_manifest("/v2/app/manifests/1.0").await;
        assert_eq!(
            hub.header("docker-content-digest"),
            Some(on_hub.manifest.digest.as_str()),
            "{round}"
        );
        if round == "cached" {
            mirror = mirror.restart().await;
        }
    }
    // Within the tag TTL the later rounds came from the mirror's per-registry tag records:
    // each registry answered for its tag once (not counting the challenged first try).
    for (upstream, authenticated) in [(&up.lan, true), (&up.ghcr, true), (&up.hub, false)] {
        let asked = upstream.count(|r| {
            r.kind == Kind::Manifest
                && r.reference.as_deref() == Some("1.0")
                && (r.authorization.is_some() || !authenticated)
        });
        assert_eq!(asked, 1, "{:?}", upstream.requests());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmirrored_registry_is_name_unknown_and_never_docker_hub() {
    let hub = FakeRegistry::start().await;
    let alpine = hub.push_image("library/alpine", "latest", Format::Docker);
    let mirror = Mirror::start(&hub).await;

    let layer = &alpine.layers[0].digest;
    let paths = [
        "/v2/library/alpine/manifests/latest?ns=quay.io".to_owned(),
        format!("/v2/library/alpine/manifests/{}?ns=quay.io", alpine.manifest.digest),
        format!("/v2/library/alpine/blobs/{layer}?ns=quay.io"),
        "/v2/library/alpine/tags/list?ns=quay.io".to_owned(),
        "/v2/quay.io/library/alpine/manifests/latest".to_owned(),
        format!("/v2/quay.io/library/alpine/blobs/{layer}"),
    ];
    for path in &paths {
        for method in [Method::GET, Method::HEAD] {
            let reply = mirror.send(method.clone(), path, &[]).await;
            assert_eq!(reply.status, 404, "{method} {path}: {reply:?}");
            if method == Method::GET {
                reply.assert_error(404, "NAME_UNKNOWN");
            }
            if path.contains("ns=") {
                assert_eq!(reply.header("oci-namespace"), Some("quay.io"), "{path}: {reply:?}");
            }
        }
    }
    assert_eq!(hub.total(), 0, "Docker Hub saw nothing: {:?}", hub.requests());

    // The control: docker.io by name, and without ns, is Docker Hub.
    let reply = mirror
        .get_manifest("/v2/library/alpine/manifests/latest?ns=docker.io")
        .await;
    reply.assert_manifest(&alpine.manifest);
    assert_eq!(reply.header("oci-namespace"), Some("docker.io"));
    mirror
        .get_manifest("/v2/alpine/manifests/latest")
        .await
        .assert_manifest(&alpine.manifest);
    assert!(hub.count(|r| r.role == Role::Registry && r.kind == Kind::Manifest) > 0);
}
