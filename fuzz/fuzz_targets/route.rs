//! The request router: method, raw path and query, as a client sends them. A route that names
//! a repository (a pull, a push, an upload, a delete) names a valid one in canonical form, and
//! a pull route written back out as a path routes to itself.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use regmirror::api::route::{self, Route};
use regmirror::reference::{Registry, RepoName};
use regmirror_fuzz::check_located;

fuzz_target!(|request: &str| {
    // A request line: `GET /v2/alpine/manifests/3.20?ns=docker.io`.
    let Some((method, uri)) = request.split_once(' ') else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));

    let _ = route::repository_name(path);
    if let Some(kept) = route::upstream_query(query) {
        let keys: Vec<_> = form_urlencoded::parse(kept.as_bytes()).map(|(k, _)| k).collect();
        assert!(!keys.iter().any(|k| k == "ns"), "ns is passed upstream: {kept}");
    }
    if let Ok(Some(registry)) = route::namespace(query) {
        assert_eq!(registry.as_str().parse::<Registry>().as_ref(), Ok(&registry));
    }

    let Ok(parsed) = Route::parse(&method, path, query) else {
        return;
    };
    // Every route under a repository, pushes included, names a valid one.
    if let Some((registry, repo)) = parsed.repository() {
        check_located(registry, repo);
    }
    let located = match &parsed {
        Route::Manifest { registry, repo, .. }
        | Route::Blob { registry, repo, .. }
        | Route::Tags { registry, repo } => (registry, repo),
        _ => return,
    };
    assert!(
        method == Method::GET || method == Method::HEAD,
        "{method} routed to {parsed:?}"
    );
    let (again_path, again_query) = rendered(&parsed, located.0, located.1);
    assert_eq!(
        Route::parse(&Method::GET, &again_path, again_query.as_deref())
            .ok()
            .as_ref(),
        Some(&parsed),
        "{path:?} {query:?} written back as {again_path:?} {again_query:?}"
    );
});

/// The route as a client would ask for it: the registry as the name's first component when it
/// reads as a host, else as containerd's `ns`.
fn rendered(parsed: &Route, registry: &Registry, repo: &RepoName) -> (String, Option<String>) {
    let tail = match parsed {
        Route::Manifest { reference, .. } => format!("manifests/{reference}"),
        Route::Blob { digest, .. } => format!("blobs/{digest}"),
        _ => "tags/list".to_owned(),
    };
    if Registry::looks_like_host(registry.as_str()) {
        (format!("/v2/{registry}/{repo}/{tail}"), None)
    } else {
        (format!("/v2/{repo}/{tail}"), Some(format!("ns={registry}")))
    }
}
