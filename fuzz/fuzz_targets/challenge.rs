//! The upstream's `WWW-Authenticate` challenge, and the token URL its realm, service and scope
//! make. A challenge written out as registries write it reads back to the same parameters,
//! and the URL carries the scope and service the mirror asks for, whatever the realm's own
//! query holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::fuzzing::upstream_token_url;
use regmirror::upstream::auth::{parse_challenge, Challenge};

fuzz_target!(|header: &str| {
    let Some(Challenge::Bearer { realm, service, scope }) = parse_challenge(header) else {
        return;
    };
    let scope = scope.unwrap_or_else(|| "repository:library/alpine:pull".to_owned());
    check_url(&realm, service.as_deref(), &scope);

    let quotable = |s: &str| !s.contains('"');
    if !(quotable(&realm) && service.as_deref().is_none_or(quotable) && quotable(&scope)) {
        return;
    }
    let mut written = format!(r#"Bearer realm="{realm}""#);
    if let Some(service) = &service {
        written.push_str(&format!(r#",service="{service}""#));
    }
    written.push_str(&format!(r#",scope="{scope}""#));
    let want = Challenge::Bearer {
        realm,
        service,
        scope: Some(scope),
    };
    assert_eq!(
        parse_challenge(&written),
        Some(want),
        "{header:?} written as {written:?}"
    );
});

fn check_url(realm: &str, service: Option<&str>, scope: &str) {
    let Some(url) = upstream_token_url(realm, service, scope) else {
        return;
    };
    assert!(url.scheme().is_some(), "{realm:?} made {url}");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(url.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let mut want = vec![("scope".to_owned(), scope.to_owned())];
    want.extend(service.map(|s| ("service".to_owned(), s.to_owned())));
    assert!(pairs.ends_with(&want), "{realm:?} {service:?} {scope:?} made {url}");
}
