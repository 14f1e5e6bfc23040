//! Unit tests for the token service's grants and the challenge's scope.

use super::*;
use crate::access::AccessConfig;

/// A policy where bob may pull `site.lan/*` and push `site.lan/gallery/*`, and ci may do
/// anything to `site.lan/*`; anyone may pull `docker.io/library/*`.
fn policy() -> (Access, tempfile::TempDir) {
    let config: AccessConfig = toml::from_str(
        r#"
        client_certificates = "optional"
        anonymous = ["docker.io/library/*"]
        [[rules]]
        users = ["bob"]
        repos = ["site.lan/*"]
        [[rules]]
        users = ["bob"]
        repos = ["site.lan/gallery/*"]
        actions = ["push"]
        [[rules]]
        users = ["ci"]
        repos = ["site.lan/*"]
        actions = ["pull", "push", "delete"]
        "#,
    )
    .expect("config");
    let dir = tempfile::tempdir().expect("tempdir");
    let access = Access::new(&config, &dir.path().join("token.key"))
        .expect("valid")
        .expect("on");
    (access, dir)
}

/// What `user` is granted for the scopes `asked` (space-separated, as a `scope` parameter).
fn check(access: &Access, user: &Identity, asked: &str, expected: &[(&str, &[&str])]) {
    let params = Params::parse(format!("scope={}", asked.replace(' ', "+")).as_bytes());
    let ghcr: Registry = "ghcr.io".parse().expect("registry");
    let granted = grant(access, user, &params.scopes(), &[&ghcr]);
    let granted: Vec<(&str, Vec<&str>)> = (granted.iter())
        .map(|g| (g.name.as_str(), g.actions.iter().map(String::as_str).collect()))
        .collect();
    let expected: Vec<(&str, Vec<&str>)> = expected.iter().map(|(n, a)| (*n, a.to_vec())).collect();
    assert_eq!(granted, expected, "{user:?} asking for {asked}");
}

#[test]
fn a_token_grants_what_was_asked_and_the_rules_allow() {
    let (access, _key) = policy();
    let bob = Identity::User("bob".into());
    let ci = Identity::User("ci".into());
    check(
        &access,
        &bob,
        "repository:site.lan/gallery/ui:pull,push",
        &[("site.lan/gallery/ui", &["pull", "push"])],
    );
    check(
        &access,
        &bob,
        "repository:site.lan/other:pull,push",
        &[("site.lan/other", &["pull"])],
    );
    check(&access, &bob, "repository:site.lan/gallery/ui:delete", &[]);
    check(
        &access,
        &bob,
        "repository:site.lan/gallery/ui:*",
        &[("site.lan/gallery/ui", &["pull", "push"])],
    );
    check(
        &access,
        &ci,
        "repository:site.lan/gallery/ui:*",
        &[("site.lan/gallery/ui", &["pull", "push", "delete"])],
    );
    check(
        &access,
        &ci,
        "repository:site.lan/x:delete",
        &[("site.lan/x", &["delete"])],
    );
    check(&access, &ci, "repository:ghcr.io/x:*", &[]);
}

#[test]
fn scopes_for_one_name_merge_and_unasked_actions_are_never_granted() {
    let (access, _key) = policy();
    let ci = Identity::User("ci".into());
    check(
        &access,
        &ci,
        "repository:site.lan/app:push repository:site.lan/app:pull repository:site.lan/app:push",
        &[("site.lan/app", &["pull", "push"])],
    );
    check(
        &access,
        &ci,
        "repository:site.lan/app:pull repository:ghcr.io/team/secret:pull repository:site.lan/b:delete",
        &[("site.lan/app", &["pull"]), ("site.lan/b", &["delete"])],
    );
}

#[test]
fn anonymous_clients_are_granted_pull_at_most() {
    let (access, _key) = policy();
    check(
        &access,
        &Identity::Anonymous,
        "repository:library/alpine:*",
        &[("library/alpine", &["pull"])],
    );
    check(&access, &Identity::Anonymous, "repository:library/alpine:push", &[]);
    check(
        &access,
        &Identity::Anonymous,
        "repository:site.lan/gallery/ui:pull,push",
        &[],
    );
}

/// The scope a 401 on `path` asks for under `method`.
fn scope(method: Method, path: &str, expected: Option<&str>) {
    assert_eq!(challenge_scope(&method, path).as_deref(), expected, "{method} {path}");
}

/// The same, on `rest` under the repository `site.lan/gallery/ui`, asking for `actions` there.
fn scope_on_ui(method: Method, rest: &str, actions: &str) {
    let expected = format!("repository:site.lan/gallery/ui:{actions}");
    scope(method, &format!("/v2/site.lan/gallery/ui/{rest}"), Some(&expected));
}

#[test]
fn the_challenge_asks_for_what_the_method_needs_on_any_route_under_a_repository() {
    scope_on_ui(Method::GET, "manifests/v1", "pull");
    scope_on_ui(Method::HEAD, "blobs/sha256:ab", "pull");
    scope_on_ui(Method::GET, "tags/list", "pull");
    scope_on_ui(Method::GET, "referrers/sha256:ab", "pull");
    scope_on_ui(Method::GET, "blobs/uploads/u1", "pull");
    scope_on_ui(Method::POST, "blobs/uploads/", "pull,push");
    scope_on_ui(Method::PATCH, "blobs/uploads/u1", "pull,push");
    scope_on_ui(Method::PUT, "blobs/uploads/u1", "pull,push");
    scope_on_ui(Method::PUT, "manifests/v1", "pull,push");
    scope_on_ui(Method::DELETE, "manifests/sha256:ab", "delete");
    scope_on_ui(Method::DELETE, "blobs/sha256:ab", "delete");
    scope_on_ui(Method::DELETE, "blobs/uploads/u1", "delete");
    scope(
        Method::HEAD,
        "/v2/library/alpine/blobs/sha256:ab",
        Some("repository:library/alpine:pull"),
    );
    // A repository may itself hold `blobs` and `uploads` components.
    let odd = "/v2/site.lan/blobs/uploads/manifests/v1";
    scope(Method::GET, odd, Some("repository:site.lan/blobs/uploads:pull"));
    scope(Method::GET, "/v2/_catalog", None);
    scope(Method::GET, "/v2/a\"b/manifests/v1", None);
}

#[test]
fn methods_map_to_actions() {
    assert_eq!(action_for(&Method::GET), Action::Pull);
    assert_eq!(action_for(&Method::HEAD), Action::Pull);
    assert_eq!(action_for(&Method::POST), Action::Push);
    assert_eq!(action_for(&Method::PUT), Action::Push);
    assert_eq!(action_for(&Method::PATCH), Action::Push);
    assert_eq!(action_for(&Method::DELETE), Action::Delete);
}
