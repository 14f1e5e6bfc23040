//! The mirror's `/token` request, a query or an OAuth2 form any client can send: the scopes it
//! asks for, and the repositories those name as the grant reads them. A scope reads back as
//! written, and every repository a grant could name is valid and canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::access::token::Scope;
use regmirror::api::route;
use regmirror::fuzzing::{token_request_param, token_request_scopes};
use regmirror::reference::Registry;
use regmirror_fuzz::check_located;

fuzz_target!(|form: &[u8]| {
    for key in [
        "grant_type",
        "username",
        "password",
        "refresh_token",
        "offline_token",
        "service",
    ] {
        let _ = token_request_param(form, key);
    }
    let ghcr: Registry = "ghcr.io".parse().expect("registry");
    for scope in token_request_scopes(form) {
        assert!(!scope.name.is_empty() && !scope.actions.is_empty(), "{scope:?}");
        let actions: Vec<String> = scope.actions.iter().map(ToString::to_string).collect();
        let written = format!("repository:{}:{}", scope.name, actions.join(","));
        assert_eq!(Scope::parse(&written).as_ref(), Some(&scope), "{written:?}");
        for ns in [None, Some(&ghcr), Some(&Registry::docker_hub())] {
            if let Some((registry, repo)) = route::locate_name(&scope.name, ns) {
                check_located(&registry, &repo);
            }
        }
    }
});
