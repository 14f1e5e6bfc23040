//! Table-driven tests of the router: what each path and query becomes, or why it is refused.

use super::*;

const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn check(method: Method, uri: &str, want: Result<&str, &str>) {
    let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));
    match (Route::parse(&method, path, query), want) {
        (Ok(route), Ok(summary)) => assert_eq!(summarize(&route), summary, "{uri}"),
        (Err(e), Err(variant)) => assert!(format!("{e:?}").starts_with(variant), "{uri}: {e:?}"),
        (got, want) => panic!("{uri}: got {got:?}, want {want:?}"),
    }
}

fn summarize(route: &Route) -> String {
    match route {
        Route::Manifest {
            registry,
            repo,
            reference,
        } => format!("manifest {registry}/{repo} {reference}"),
        Route::Blob { registry, repo, digest } => format!("blob {registry}/{repo} {digest}"),
        Route::Tags { registry, repo } => format!("tags {registry}/{repo}"),
        other => other.kind().as_str().into(),
    }
}

#[test]
fn routes() {
    check(Method::GET, "/v2/", Ok("base"));
    check(Method::GET, "/v2", Ok("base"));
    check(Method::GET, "/ca.crt", Ok("ca"));
    check(Method::GET, "/healthz", Ok("health"));
    check(Method::HEAD, "/readyz", Ok("ready"));
    check(Method::GET, "/metrics", Ok("metrics"));
    check(Method::GET, "/", Ok("status"));
    check(
        Method::HEAD,
        "/v2/alpine/manifests/3.20",
        Ok("manifest docker.io/library/alpine 3.20"),
    );
    check(
        Method::GET,
        "/v2/someuser/tool/manifests/latest",
        Ok("manifest docker.io/someuser/tool latest"),
    );
    check(
        Method::GET,
        &format!("/v2/a/blobs/{DIGEST}"),
        Ok(&format!("blob docker.io/library/a {DIGEST}")),
    );
    check(
        Method::GET,
        "/v2/foo/manifests/bar/manifests/latest",
        Ok("manifest docker.io/foo/manifests/bar latest"),
    );
    check(Method::GET, "/v2/foo/blobs/tags/list", Ok("tags docker.io/foo/blobs"));
    check(
        Method::GET,
        &format!("/v2/a/manifests/{DIGEST}"),
        Ok(&format!("manifest docker.io/library/a {DIGEST}")),
    );
}

#[test]
fn registries_by_prefix_and_namespace() {
    check(
        Method::GET,
        "/v2/ghcr.io/org/tool/manifests/1",
        Ok("manifest ghcr.io/org/tool 1"),
    );
    check(
        Method::GET,
        "/v2/tool/manifests/1?ns=ghcr.io",
        Ok("manifest ghcr.io/tool 1"),
    );
    check(
        Method::GET,
        "/v2/library/alpine/manifests/1?ns=docker.io",
        Ok("manifest docker.io/library/alpine 1"),
    );
    check(
        Method::GET,
        "/v2/alpine/manifests/1?ns=index.docker.io",
        Ok("manifest docker.io/library/alpine 1"),
    );
    check(
        Method::GET,
        "/v2/registry.lan:5000/app/tags/list",
        Ok("tags registry.lan:5000/app"),
    );
    check(
        Method::GET,
        "/v2/app/tags/list?n=5&ns=registry.lan%3A5000",
        Ok("tags registry.lan:5000/app"),
    );
    check(
        Method::GET,
        "/v2/docker.io/alpine/manifests/1",
        Ok("manifest docker.io/library/alpine 1"),
    );
    check(
        Method::GET,
        "/v2/localhost/app/manifests/1",
        Ok("manifest localhost/app 1"),
    );
    check(Method::GET, "/v2/a/manifests/1?ns=bad_host", Err("RegistryUnknown"));
    check(Method::GET, "/v2/bad_host.io/a/manifests/1", Err("NameInvalid"));
}

#[test]
fn percent_encoding() {
    check(
        Method::GET,
        "/v2/%61lpine/manifests/3%2E20",
        Ok("manifest docker.io/library/alpine 3.20"),
    );
    check(
        Method::GET,
        &format!("/v2/a/manifests/{}", DIGEST.replace(':', "%3A")),
        Ok(&format!("manifest docker.io/library/a {DIGEST}")),
    );
    check(
        Method::GET,
        "/v2/registry.lan%3A5000/app/tags/list",
        Ok("tags registry.lan:5000/app"),
    );
    check(
        Method::GET,
        "/v2/app/tags/list?ns=registry.lan%3a5000",
        Ok("tags registry.lan:5000/app"),
    );
    check(
        Method::GET,
        "/v2/tool/manifests/1?ns=ghcr%2Eio",
        Ok("manifest ghcr.io/tool 1"),
    );
    // An encoded `/` never makes a segment, in the name, the route or the reference.
    check(Method::GET, "/v2/a%2Fb/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a%2fb/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a/manifests%2Flatest", Err("NameInvalid"));
    check(Method::GET, "/v2/a/manifests/x%2Fy", Err("NameInvalid"));
    check(Method::GET, "/v2/a/%2e%2e/b/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a/%2E/b/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a%00/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a/manifests/%FF", Err("NameInvalid"));
    check(Method::GET, "/v2/a%25/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a/manifests/la%20test", Err("TagInvalid"));
    check(Method::GET, "/v2/a/manifests/1?ns=bad%20host", Err("RegistryUnknown"));
}

#[test]
fn upstream_queries() {
    assert_eq!(upstream_query(None), None);
    assert_eq!(upstream_query(Some("ns=docker.io")), None);
    assert_eq!(upstream_query(Some("")), None);
    assert_eq!(
        upstream_query(Some("n=5&ns=registry.lan%3A5000&last=3.19")).as_deref(),
        Some("n=5&last=3.19")
    );
}

const UPLOAD: &str = "3f1c0c52-8c0e-4a6e-9d7b-2f0f5a1e9c11";

/// Pushes are routed for any registry; the handler refuses them for mirrored ones.
#[test]
fn push_routes() {
    check(Method::PUT, "/v2/site.lan/a/manifests/v1", Ok("manifest_put"));
    check(Method::DELETE, "/v2/site.lan/a/manifests/v1", Ok("delete"));
    check(Method::DELETE, &format!("/v2/a/blobs/{DIGEST}"), Ok("delete"));
    check(Method::POST, "/v2/site.lan/a/blobs/uploads/", Ok("upload"));
    check(Method::POST, "/v2/site.lan/a/blobs/uploads", Ok("upload"));
    for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
        check(method, &format!("/v2/site.lan/a/blobs/uploads/{UPLOAD}"), Ok("upload"));
    }
    check(Method::GET, "/v2/_catalog", Ok("catalog"));
    check(
        Method::GET,
        &format!("/v2/site.lan/a/referrers/{DIGEST}"),
        Ok("referrers"),
    );
    let mount = format!("/v2/site.lan/a/blobs/uploads/?mount={DIGEST}&from=site.lan/b");
    let (path, query) = mount.split_once('?').expect("query");
    let Ok(Route::StartUpload { mount: Some(from), .. }) = Route::parse(&Method::POST, path, Some(query)) else {
        panic!("{mount} is a mount");
    };
    assert_eq!((from.registry.as_str(), from.repo.as_str()), ("site.lan", "b"));
}

#[test]
fn repository_names_as_spelled() {
    for (path, name) in [
        ("/v2/site.lan/a/blobs/uploads/", "site.lan/a"),
        ("/v2/site.lan/a/blobs/uploads", "site.lan/a"),
        (&format!("/v2/site.lan/a/b/blobs/uploads/{UPLOAD}"), "site.lan/a/b"),
        (&format!("/v2/a/blobs/uploads/blobs/{DIGEST}"), "a/blobs/uploads"),
        (&format!("/v2/site.lan/a/referrers/{DIGEST}"), "site.lan/a"),
        ("/v2/alpine/manifests/3", "alpine"),
        ("/v2/x/tags/list", "x"),
    ] {
        assert_eq!(repository_name(path), name, "{path}");
    }
}

#[test]
fn rejects() {
    check(Method::PATCH, "/v2/a/manifests/latest", Err("Unsupported"));
    check(Method::POST, "/v2/a/manifests/latest", Err("Unsupported"));
    check(Method::PUT, "/v2/a/blobs/uploads/", Err("Unsupported"));
    check(Method::POST, "/v2/", Err("Unsupported"));
    check(Method::PATCH, "/v2/a/blobs/uploads/not-a-uuid", Ok("upload"));
    check(
        Method::POST,
        "/v2/a/blobs/uploads/?digest=sha256:bad",
        Err("DigestInvalid"),
    );
    check(Method::GET, "/v2/UPPER/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a//b/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a/../b/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a%2Fb/manifests/latest", Err("NameInvalid"));
    check(Method::GET, "/v2/a/manifests/sha256:ABC", Err("DigestInvalid"));
    check(
        Method::GET,
        &format!("/v2/a/blobs/{}", DIGEST.to_uppercase()),
        Err("DigestInvalid"),
    );
    check(Method::GET, "/v2/a/blobs/latest", Err("DigestInvalid"));
    check(Method::GET, "/v2/a/manifests/-bad", Err("TagInvalid"));
    check(Method::GET, "/v2/manifests/latest", Err("NoRoute"));
    check(Method::GET, "/v2/tags/list", Err("NoRoute"));
    check(Method::GET, "/v2/a/other/x", Err("NoRoute"));
    check(Method::GET, "/v2/a", Err("NoRoute"));
    check(Method::GET, "/elsewhere", Err("NoRoute"));
}
