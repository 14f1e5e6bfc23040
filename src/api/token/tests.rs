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

#[test]
fn the_challenge_asks_for_what_the_method_needs_on_any_route_under_a_repository() {
    let cases = [
        (
            Method::GET,
            "/v2/site.lan/gallery/ui/manifests/v1",
            Some("repository:site.lan/gallery/ui:pull"),
        ),
        (
            Method::HEAD,
            "/v2/library/alpine/blobs/sha256:ab",
            Some("repository:library/alpine:pull"),
        ),
        (
            Method::GET,
            "/v2/site.lan/gallery/ui/tags/list",
            Some("repository:site.lan/gallery/ui:pull"),
        ),
        (
            Method::GET,
            "/v2/site.lan/ui/referrers/sha256:ab",
            Some("repository:site.lan/ui:pull"),
        ),
        (
            Method::POST,
            "/v2/site.lan/gallery/ui/blobs/uploads/",
            Some("repository:site.lan/gallery/ui:pull,push"),
        ),
        (
            Method::PATCH,
            "/v2/site.lan/gallery/ui/blobs/uploads/u1",
            Some("repository:site.lan/gallery/ui:pull,push"),
        ),
        (
            Method::PUT,
            "/v2/site.lan/gallery/ui/blobs/uploads/u1",
            Some("repository:site.lan/gallery/ui:pull,push"),
        ),
        (
            Method::GET,
            "/v2/site.lan/gallery/ui/blobs/uploads/u1",
            Some("repository:site.lan/gallery/ui:pull"),
        ),
        (
            Method::PUT,
            "/v2/site.lan/gallery/ui/manifests/v1",
            Some("repository:site.lan/gallery/ui:pull,push"),
        ),
        (
            Method::DELETE,
            "/v2/site.lan/gallery/ui/manifests/sha256:ab",
            Some("repository:site.lan/gallery/ui:delete"),
        ),
        (
            Method::DELETE,
            "/v2/site.lan/gallery/ui/blobs/uploads/u1",
            Some("repository:site.lan/gallery/ui:delete"),
        ),
        // A repository may itself hold `blobs` and `uploads` components.
        (
            Method::GET,
            "/v2/site.lan/blobs/uploads/manifests/v1",
            Some("repository:site.lan/blobs/uploads:pull"),
        ),
        (Method::GET, "/v2/_catalog", None),
        (Method::GET, "/v2/a\"b/manifests/v1", None),
    ];
    for (method, path, expected) in cases {
        assert_eq!(challenge_scope(&method, path).as_deref(), expected, "{method} {path}");
    }
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
