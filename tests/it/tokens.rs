//! The mirror's own token service, driven as dockerd, containerd, podman and skopeo drive it:
//! a client sends nothing until `/v2/` or the resource challenges, then fetches a token from
//! the realm the challenge names, for the scope it names, with credentials only if it has
//! them, and retries with `Authorization: Bearer`. Nothing here sends credentials unasked.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use regmirror::access::token::{Grant, Tokens, ACCESS_TTL, SERVICE};
use regmirror::access::Action;
use tempfile::TempDir;

use crate::support::client::{send, CONTAINERD_ACCEPT};
use crate::support::content::Image;
use crate::support::credentials::{basic, htpasswd};
use crate::support::{FakeRegistry, Format, Mirror, Reply};

/// Docker Hub with an official image and a user's image; a mirror where anonymous clients
/// may pull `library/*`, alice also `someuser/*`, and bob is a user with no rule.
async fn setup() -> (FakeRegistry, Image, Image, Mirror, TempDir) {
    let hub = FakeRegistry::start().await;
    let alpine = hub.push_image("library/alpine", "latest", Format::Docker);
    let tool = hub.push_image("someuser/tool", "latest", Format::Docker);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = htpasswd(dir.path(), &[("alice", "wonderland"), ("bob", "builder")]);
    let access = format!(
        "htpasswd = {file:?}\nanonymous = [\"docker.io/library/*\"]\n\
         [[rules]]\nusers = [\"alice\"]\nrepos = [\"docker.io/someuser/*\"]\n"
    );
    let mirror = Mirror::builder(&hub).access(&access).start().await;
    (hub, alpine, tool, mirror, dir)
}

/// `key="value"` parameters of a Bearer challenge.
fn challenge_param(challenge: &str, key: &str) -> Option<String> {
    let start = challenge.find(&format!("{key}=\""))? + key.len() + 2;
    let end = challenge[start..].find('"')? + start;
    Some(challenge[start..end].to_owned())
}

/// What a real client does with a challenged request: fetch a token from the realm for the
/// challenge's scope (with Basic credentials when it has some), then send the request again.
async fn pull_as(mirror: &Mirror, path: &str, credentials: Option<(&str, &str)>) -> Reply {
    let accept = ("accept", CONTAINERD_ACCEPT);
    let first = mirror.send(Method::GET, path, &[accept]).await;
    if first.status != 401 {
        return first;
    }
    let token = token_for(&first, credentials).await;
    let bearer = format!("Bearer {token}");
    mirror
        .send(Method::GET, path, &[accept, ("authorization", &bearer)])
        .await
}

async fn token_for(challenged: &Reply, credentials: Option<(&str, &str)>) -> String {
    let reply = token_reply(challenged, credentials).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()["token"].as_str().expect("a token").to_owned()
}

async fn token_reply(challenged: &Reply, credentials: Option<(&str, &str)>) -> Reply {
    let challenge = challenged.header("www-authenticate").expect("a challenge");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let realm = challenge_param(challenge, "realm").expect("realm");
    let service = challenge_param(challenge, "service").expect("service");
    let mut url = format!("{realm}?service={service}");
    if let Some(scope) = challenge_param(challenge, "scope") {
        url.push_str(&format!("&scope={scope}"));
    }
    let authorization = credentials.map(|(user, password)| basic(user, password));
    let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", a.as_str())).collect();
    send(&url, Method::GET, &headers).await
}

/// POSTs an OAuth2 form to the mirror's `/token`, as containerd and newer dockerd do.
async fn post_form(mirror: &Mirror, form: &[(&str, &str)]) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    post_body(mirror, body.into()).await
}

async fn post_body(mirror: &Mirror, body: Bytes) -> Reply {
    let request = hyper::Request::post(mirror.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(body))
        .expect("request");
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.expect("POST /token");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).map_err(|e| e.to_string());
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_challenges_with_a_realm_under_the_name_the_client_used() {
    let (_hub, _, _, mirror, _dir) = setup().await;
    let reply = mirror.get("/v2/").await;
    reply.assert_error(401, "UNAUTHORIZED");
    let challenge = reply.header("www-authenticate").expect("challenge");
    let realm = format!("http://{}/token", mirror.addr());
    assert_eq!(challenge, format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\""));
    let named = mirror.send(Method::GET, "/v2/", &[("host", "mirror.lan:5000")]).await;
    let challenge = named.header("www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with("Bearer realm=\"http://mirror.lan:5000/token\""),
        "{challenge}"
    );
    let hostile = mirror.send(Method::GET, "/v2/", &[("host", "evil\",x=\"y")]).await;
    let challenge = hostile.header("www-authenticate").expect("challenge");
    assert!(
        !challenge.contains("evil"),
        "a hostile Host does not shape the challenge: {challenge}"
    );
    let manifest = mirror.get("/v2/someuser/tool/manifests/latest").await;
    let challenge = manifest.header("www-authenticate").expect("challenge");
    assert!(
        challenge.ends_with(",scope=\"repository:someuser/tool:pull\""),
        "{challenge}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_get_tokens_for_what_anonymous_may_pull_only() {
    let (hub, alpine, _, mirror, _dir) = setup().await;
    let v2 = mirror.get("/v2/").await;
    let token = token_for(&v2, None).await;
    let with_token = mirror
        .send(Method::GET, "/v2/", &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(with_token.status, 200, "an anonymous token passes /v2/: {with_token:?}");
    pull_as(&mirror, "/v2/library/alpine/manifests/latest", None)
        .await
        .assert_manifest(&alpine.manifest);
    let refused = pull_as(&mirror, "/v2/someuser/tool/manifests/latest", None).await;
    refused.assert_error(401, "UNAUTHORIZED");
    assert_eq!(
        hub.manifest_gets("someuser/tool"),
        0,
        "nothing was fetched for a refused client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_token_grants_the_scopes_the_rules_allow_and_no_more() {
    let (_hub, alpine, tool, mirror, _dir) = setup().await;
    let path = "/v2/someuser/tool/manifests/latest";
    pull_as(&mirror, path, Some(("alice", "wonderland")))
        .await
        .assert_manifest(&tool.manifest);
    pull_as(
        &mirror,
        "/v2/library/alpine/manifests/latest",
        Some(("alice", "wonderland")),
    )
    .await
    .assert_manifest(&alpine.manifest);
    // bob may log in but has no rule for someuser/*: his token leaves that scope out, and the
    // rules answer 403 naming him.
    let url =
        mirror.url("/token?service=regmirror&scope=repository:someuser/tool:pull&scope=repository:library/alpine:pull");
    let bob = send(&url, Method::GET, &[("authorization", &basic("bob", "builder"))]).await;
    assert_eq!(bob.status, 200, "{bob:?}");
    assert_eq!(bob.json()["scope"], "repository:library/alpine:pull");
    let token = bob.json()["token"].as_str().expect("token").to_owned();
    let reply = mirror
        .send(Method::GET, path, &[("authorization", &format!("Bearer {token}"))])
        .await;
    reply.assert_error(403, "DENIED");
    // alice asks for one scope, then uses the token elsewhere: it is good for what it names.
    let url = mirror.url("/token?service=regmirror&scope=repository:library/alpine:pull");
    let alice = send(&url, Method::GET, &[("authorization", &basic("alice", "wonderland"))]).await;
    let token = alice.json()["token"].as_str().expect("token").to_owned();
    let reply = mirror
        .send(Method::GET, path, &[("authorization", &format!("Bearer {token}"))])
        .await;
    reply.assert_error(401, "UNAUTHORIZED");
    assert!(reply
        .header("www-authenticate")
        .is_some_and(|c| c.contains("someuser/tool")));
}

/// Scopes asking for several actions: each is granted those the rules allow, and the answer's
/// `scope` says which; anonymous clients get pull at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_grants_of_each_scope_the_actions_the_rules_allow() {
    let hub = FakeRegistry::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = htpasswd(dir.path(), &[("alice", "wonderland")]);
    let access = format!(
        "htpasswd = {file:?}\nanonymous = [\"docker.io/library/*\"]\n\
         [[rules]]\nusers = [\"alice\"]\nrepos = [\"docker.io/someuser/*\"]\nactions = [\"pull\", \"push\"]\n"
    );
    let mirror = Mirror::builder(&hub).access(&access).start().await;
    let url = mirror
        .url("/token?service=regmirror&scope=repository:someuser/tool:*&scope=repository:library/alpine:pull,push");
    let alice = send(&url, Method::GET, &[("authorization", &basic("alice", "wonderland"))]).await;
    assert_eq!(alice.status, 200, "{alice:?}");
    assert_eq!(
        alice.json()["scope"],
        "repository:someuser/tool:pull,push repository:library/alpine:pull"
    );
    let anonymous = send(&url, Method::GET, &[]).await;
    assert_eq!(anonymous.status, 200, "{anonymous:?}");
    assert_eq!(anonymous.json()["scope"], "repository:library/alpine:pull");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_unknown_credentials_get_no_token() {
    let (_hub, _, _, mirror, _dir) = setup().await;
    let url = mirror.url("/token?service=regmirror&scope=repository:library/alpine:pull");
    for (user, password) in [("alice", "looking-glass"), ("mallory", "wonderland")] {
        let reply = send(&url, Method::GET, &[("authorization", &basic(user, password))]).await;
        reply.assert_error(401, "UNAUTHORIZED");
        assert!(reply.json().get("token").is_none());
        let form = [
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
            ("service", "regmirror"),
        ];
        post_form(&mirror, &form).await.assert_error(401, "UNAUTHORIZED");
    }
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "not-a-token"),
        ("service", "regmirror"),
    ];
    post_form(&mirror, &form).await.assert_error(401, "UNAUTHORIZED");
    let form = [("grant_type", "client_credentials"), ("service", "regmirror")];
    post_form(&mirror, &form).await.assert_error(400, "UNSUPPORTED");
    let oversized = Bytes::from(vec![b'a'; 64 * 1024]);
    post_body(&mirror, oversized).await.assert_error(400, "UNSUPPORTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_password_grant_gives_a_refresh_token_that_renews_access() {
    let (_hub, _, tool, mirror, _dir) = setup().await;
    let scope = "repository:someuser/tool:pull";
    let form = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "wonderland"),
        ("service", "regmirror"),
        ("client_id", "containerd"),
        ("access_type", "offline"),
        ("scope", scope),
    ];
    let reply = post_form(&mirror, &form).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["scope"], scope);
    assert_eq!(reply.json()["expires_in"], ACCESS_TTL.as_secs());
    let refresh = reply.json()["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let path = "/v2/someuser/tool/manifests/latest";
    let as_bearer = |token: &str| format!("Bearer {token}");
    let refused = mirror
        .send(Method::GET, path, &[("authorization", &as_bearer(&refresh))])
        .await;
    refused.assert_error(401, "UNAUTHORIZED");

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", "regmirror"),
        ("scope", scope),
    ];
    let renewed = post_form(&mirror, &form).await;
    assert_eq!(renewed.status, 200, "{renewed:?}");
    let access = renewed.json()["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let headers = [
        ("authorization", as_bearer(&access)),
        ("accept", CONTAINERD_ACCEPT.to_owned()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    mirror
        .send(Method::GET, path, &headers)
        .await
        .assert_manifest(&tool.manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_challenged_again_and_the_key_outlives_a_restart() {
    let (_hub, alpine, _, mirror, _dir) = setup().await;
    let key = Tokens::load_or_create(&mirror.token_key()).expect("the mirror's key");
    let path = "/v2/library/alpine/manifests/latest";
    let grant = || vec![Grant::repository("library/alpine", &[Action::Pull])];
    let expired = SystemTime::now() - ACCESS_TTL - Duration::from_secs(1);
    let old = key.access(SERVICE, Some("alice"), grant(), expired).expect("token");
    let reply = mirror
        .send(Method::GET, path, &[("authorization", &format!("Bearer {old}"))])
        .await;
    reply.assert_error(401, "UNAUTHORIZED");
    assert!(reply
        .header("www-authenticate")
        .is_some_and(|c| c.starts_with("Bearer realm=")));

    let fresh = key
        .access(SERVICE, Some("alice"), grant(), SystemTime::now())
        .expect("token");
    let mirror = mirror.restart().await;
    let headers = [
        ("authorization", format!("Bearer {fresh}")),
        ("accept", CONTAINERD_ACCEPT.to_owned()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    mirror
        .send(Method::GET, path, &headers)
        .await
        .assert_manifest(&alpine.manifest);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(mirror.token_key()).expect("key").permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_guessing_is_told_to_wait_and_known_logins_go_on() {
    let (_hub, _, _, mirror, _dir) = setup().await;
    let v2 = async |user: &str, password: &str| {
        let authorization = basic(user, password);
        mirror
            .send(Method::GET, "/v2/", &[("authorization", &authorization)])
            .await
    };
    assert_eq!(v2("alice", "wonderland").await.status, 200);
    for n in 0..10 {
        v2("alice", &format!("guess {n}"))
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    let waiting = v2("bob", "builder").await;
    waiting.assert_error(429, "TOOMANYREQUESTS");
    assert_eq!(waiting.header("retry-after"), Some("60"), "{waiting:?}");
    let url = mirror.url("/token?service=regmirror");
    let token = send(&url, Method::GET, &[("authorization", &basic("bob", "builder"))]).await;
    token.assert_error(429, "TOOMANYREQUESTS");
    assert_eq!(
        v2("alice", "wonderland").await.status,
        200,
        "a remembered login is not locked out"
    );
}
