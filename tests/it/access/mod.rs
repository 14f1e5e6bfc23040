//! Client access control, decided before the cache or the upstream is consulted: Basic auth
//! against a bcrypt htpasswd file with the mirror's own challenge, anonymous globs,
//! per-repository rules (403 naming the rule), a client address allow-list, client
//! certificates from the mirror's own CA (`certificates`), and the whole `[[registries]]` +
//! `[access]` setup read from a TOML config file.

use std::path::PathBuf;

use regmirror::certs::{self, CertDir, NamePolicy, Names};
use regmirror::config::ServeOptions;
use regmirror::Config;
use tempfile::TempDir;

use crate::support::client::CONTAINERD_ACCEPT;
use crate::support::content::Image;
use crate::support::credentials::{basic, htpasswd};
use crate::support::{mtls, FakeRegistry, Format, Mirror, Reply};

mod certificates;

/// Docker Hub with an official image and a user's image.
async fn hub() -> (FakeRegistry, Image, Image) {
    let hub = FakeRegistry::start().await;
    let alpine = hub.push_image("library/alpine", "latest", Format::Docker);
    let tool = hub.push_image("someuser/tool", "latest", Format::Docker);
    (hub, alpine, tool)
}

/// A GET with `Authorization: authorization` and the Accept line containerd sends.
async fn get_as(mirror: &Mirror, path: &str, authorization: &str) -> Reply {
    let headers = [("authorization", authorization), ("accept", CONTAINERD_ACCEPT)];
    mirror.send(http::Method::GET, path, &headers).await
}

/// Asserts the mirror's own 401 on the registry API: UNAUTHORIZED with a Bearer challenge
/// naming the mirror's token service, which `docker login` and the other clients answer.
fn assert_challenged(reply: &Reply) {
    reply.assert_error(401, "UNAUTHORIZED");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer realm=\""), "{reply:?}");
    assert!(challenge.contains("/token\",service=\"regmirror\""), "{reply:?}");
}

/// Asserts a 401 with a Basic challenge, as the status page and metrics give a browser.
fn assert_basic_challenged(reply: &Reply) {
    reply.assert_error(401, "UNAUTHORIZED");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Basic realm="), "{reply:?}");
}

/// Asserts a 403 DENIED whose message contains every one of `words`.
fn assert_denied(reply: &Reply, words: &[&str]) {
    reply.assert_error(403, "DENIED");
    let message = reply.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for word in words {
        assert!(message.contains(word), "message names {word}: {message}");
    }
}

/// htpasswd with one user, alice, and nothing for anonymous clients.
async fn only_alice(hub: &FakeRegistry) -> (Mirror, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = htpasswd(dir.path(), &[("alice", "wonderland")]);
    let mirror = Mirror::builder(hub)
        .access(&format!("htpasswd = {file:?}"))
        .start()
        .await;
    (mirror, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_users_get_in_and_wrong_passwords_are_challenged() {
    let (hub, alpine, _) = hub().await;
    let (mirror, _dir) = only_alice(&hub).await;
    let manifest = "/v2/library/alpine/manifests/latest";
    let alice = basic("alice", "wonderland");

    // Nobody may pull anonymously, so /v2/ challenges: that is what `docker login` answers.
    assert_challenged(&mirror.get("/v2/").await);
    assert_challenged(&mirror.get_manifest(manifest).await);
    for wrong in [
        basic("alice", "looking-glass"),
        basic("mallory", "wonderland"),
        "Basic !!".into(),
    ] {
        assert_challenged(
            &mirror
                .send(http::Method::GET, "/v2/", &[("authorization", &wrong)])
                .await,
        );
        let reply = mirror
            .send(http::Method::GET, manifest, &[("authorization", &wrong)])
            .await;
        assert_challenged(&reply);
    }
    assert_eq!(hub.total(), 0, "refused clients cause no upstream request");
    assert_eq!(mirror.get("/healthz").await.status, 200, "health checks stay open");

    let login = mirror
        .send(http::Method::GET, "/v2/", &[("authorization", &alice)])
        .await;
    assert_eq!(login.status, 200, "{login:?}");
    let accept = CONTAINERD_ACCEPT;
    let pulled = mirror
        .send(
            http::Method::GET,
            manifest,
            &[("authorization", &alice), ("accept", accept)],
        )
        .await;
    pulled.assert_manifest(&alpine.manifest);
    assert!(
        hub.requests().iter().all(|r| r.authorization.is_none()),
        "the client's credentials are the mirror's, never passed upstream"
    );
}

/// Anyone may pull official images; alice (of alice and bob) may also pull `someuser/*`.
async fn alice_may_pull_someuser(hub: &FakeRegistry) -> (Mirror, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = htpasswd(dir.path(), &[("alice", "wonderland"), ("bob", "builder")]);
    let mirror = Mirror::builder(hub)
        .access(&format!(
            r#"
            htpasswd = {file:?}
            anonymous = ["docker.io/library/*"]
            [[rules]]
            users = ["alice"]
            repos = ["docker.io/someuser/*"]
            "#
        ))
        .start()
        .await;
    (mirror, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_anonymous_globs_decide_who_pulls_what_even_when_cached() {
    let (hub, alpine, tool) = hub().await;
    let (mirror, _dir) = alice_may_pull_someuser(&hub).await;
    let (alice, bob) = (basic("alice", "wonderland"), basic("bob", "builder"));

    // Clients decide from /v2/ whether to log in; anonymous ones then fetch an anonymous
    // token. A request that sends nothing may still pull what anonymous clients may.
    assert_challenged(&mirror.get("/v2/").await);
    mirror
        .get_manifest("/v2/library/alpine/manifests/latest")
        .await
        .assert_manifest(&alpine.manifest);
    let layer = &alpine.layers[0];
    mirror
        .get(&format!("/v2/alpine/blobs/{}", layer.digest))
        .await
        .assert_blob(layer);

    let tool_layer = &tool.layers[0];
    let tool_blob = format!("/v2/someuser/tool/blobs/{}", tool_layer.digest);
    assert_challenged(&mirror.get(&tool_blob).await);
    get_as(&mirror, &tool_blob, &alice).await.assert_blob(tool_layer);
    let upstream_before = hub.total();

    // Cached now, and still refused to those the rules leave out.
    assert_challenged(&mirror.get(&tool_blob).await);
    let denied = get_as(&mirror, &tool_blob, &bob).await;
    assert_denied(&denied, &["access.rules", "bob", "docker.io/someuser/tool"]);
    for path in ["/v2/someuser/tool/manifests/latest", "/v2/someuser/tool/tags/list"] {
        assert_denied(&get_as(&mirror, path, &bob).await, &["access.rules", "bob"]);
    }
    assert_eq!(hub.total(), upstream_before, "a refusal asks nothing upstream");
    // bob is known, so /v2/ lets him in; what he may pull is the rules' business.
    assert_eq!(get_as(&mirror, "/v2/", &bob).await.status, 200);
    get_as(&mirror, &format!("/v2/alpine/blobs/{}", layer.digest), &bob)
        .await
        .assert_blob(layer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_outside_allow_cidrs_is_refused() {
    let (hub, alpine, _) = hub().await;
    let mirror = Mirror::builder(&hub)
        .access(r#"allow_cidrs = ["10.0.0.0/8"]"#)
        .start()
        .await;
    assert_denied(&mirror.get("/v2/").await, &["127.0.0.1", "allow_cidrs"]);
    let reply = mirror.get_manifest("/v2/library/alpine/manifests/latest").await;
    assert_denied(&reply, &["allow_cidrs"]);
    assert_eq!(mirror.get("/healthz").await.status, 200);
    assert_eq!(hub.total(), 0);

    let mirror = Mirror::builder(&hub)
        .access(r#"allow_cidrs = ["10.0.0.0/8", "127.0.0.0/8"]"#)
        .start()
        .await;
    mirror
        .get_manifest("/v2/library/alpine/manifests/latest")
        .await
        .assert_manifest(&alpine.manifest);
}

/// The config a gateway would use, read as the binary reads it (`--config`), then served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registries_and_access_from_a_config_file() {
    let (hub, alpine, _) = hub().await;
    let lan = FakeRegistry::builder().basic_auth("mirror", "s3cret").build().await;
    let app = lan.push_image("team/app", "2", Format::Oci);
    let data_dir = TempDir::new().expect("data dir");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = htpasswd(dir.path(), &[("alice", "wonderland"), ("bob", "builder")]);
    let toml = format!(
        r#"
        data_dir = {data:?}
        insecure_http = true
        upstream = "{hub}"
        tag_ttl = "2m"

        [[registries]]
        name = "registry.lan:5000"
        url = "{lan}"
        username = "mirror"
        password = "s3cret"
        tag_ttl = "30s"

        [access]
        htpasswd = {file:?}
        anonymous = ["docker.io/library/*"]

        [[access.rules]]
        users = ["alice"]
        repos = ["registry.lan:5000/team/*"]
        "#,
        data = data_dir.path(),
        hub = hub.url(),
        lan = lan.url(),
    );
    let path = dir.path().join("regmirror.toml");
    std::fs::write(&path, toml).expect("write config");
    let args = ServeOptions {
        config: Some(path),
        ..Default::default()
    };
    let config = Config::from_options(args, None, None).expect("the config file is valid");
    let mirror = Mirror::from_config(config, data_dir).start().await;
    let accept = ("accept", CONTAINERD_ACCEPT);

    mirror
        .get_manifest("/v2/alpine/manifests/latest")
        .await
        .assert_manifest(&alpine.manifest);
    let app_path = "/v2/registry.lan:5000/team/app/manifests/2";
    assert_challenged(&mirror.get_manifest(app_path).await);
    let bob = basic("bob", "builder");
    let reply = mirror
        .send(http::Method::GET, app_path, &[("authorization", &bob), accept])
        .await;
    assert_denied(&reply, &["bob", "registry.lan:5000/team/app"]);
    let alice = basic("alice", "wonderland");
    let reply = mirror
        .send(
            http::Method::GET,
            "/v2/team/app/manifests/2?ns=registry.lan:5000",
            &[("authorization", &alice), accept],
        )
        .await;
    reply.assert_manifest(&app.manifest);
    assert!(lan
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some(&basic("mirror", "s3cret"))));
}

/// The status page and metrics need what `/v2/` needs, and the top list names only what the
/// viewer may pull: private repository names do not leak to other clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_names_only_what_the_viewer_may_pull() {
    let (hub, alpine, tool) = hub().await;
    let (mirror, _dir) = alice_may_pull_someuser(&hub).await;
    let alice = basic("alice", "wonderland");
    get_as(&mirror, "/v2/library/alpine/manifests/latest", &alice)
        .await
        .assert_manifest(&alpine.manifest);
    get_as(&mirror, "/v2/someuser/tool/manifests/latest", &alice)
        .await
        .assert_manifest(&tool.manifest);

    let page = |reply: &Reply| String::from_utf8_lossy(reply.bytes()).into_owned();
    let anonymous = mirror.get("/").await;
    assert_eq!(anonymous.status, 200, "{anonymous:?}");
    assert!(page(&anonymous).contains("docker.io/library/alpine:latest"));
    assert!(
        !page(&anonymous).contains("someuser/tool"),
        "a repository anonymous clients may not pull is not named"
    );
    let as_alice = mirror.send(http::Method::GET, "/", &[("authorization", &alice)]).await;
    assert!(
        page(&as_alice).contains("docker.io/someuser/tool:latest"),
        "alice sees what she may pull"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_anonymous_access_the_status_page_and_metrics_need_credentials() {
    let (hub, _, _) = hub().await;
    let (mirror, _dir) = only_alice(&hub).await;
    assert_basic_challenged(&mirror.get("/").await);
    assert_basic_challenged(&mirror.get("/metrics").await);
    let alice = basic("alice", "wonderland");
    assert_eq!(
        mirror
            .send(http::Method::GET, "/metrics", &[("authorization", &alice)])
            .await
            .status,
        200
    );
}
