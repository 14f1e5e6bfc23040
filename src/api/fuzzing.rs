//! The fuzz targets' way in (`fuzz/`, README "Fuzzing"): parsers of hostile input that the
//! library keeps to itself, reached here without widening their own modules' API. Nothing in
//! regmirror calls into this module.

use std::time::Duration;

use http::{HeaderValue, Uri};

use crate::access::token::Scope;

pub use crate::api::range::ByteRange;

/// `access`: the user and password of a Basic `Authorization` value (what follows `Basic `).
pub fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    crate::access::basic_credentials(encoded)
}

/// `api::token`: the scopes a token request asks for, from its query or form body.
pub fn token_request_scopes(form: &[u8]) -> Vec<Scope> {
    crate::api::token::Params::parse(form).scopes()
}

/// `api::token`: one parameter of a token request, as the service reads it.
pub fn token_request_param(form: &[u8], key: &str) -> Option<String> {
    crate::api::token::Params::parse(form).get(key).map(str::to_owned)
}

/// `upstream::token`: the URL a challenge's realm, service and scope make.
pub fn upstream_token_url(realm: &str, service: Option<&str>, scope: &str) -> Option<Uri> {
    crate::upstream::token::token_url(realm, service, scope).ok()
}

/// `upstream::token`: a token endpoint's JSON answer, as the header to send and how long
/// to keep it.
pub fn upstream_token_answer(body: &[u8]) -> Option<(HeaderValue, Duration)> {
    crate::upstream::token::token_answer(body).ok()
}

/// `upstream::redirect`: where a redirect's `Location`, answering a request to `from` made
/// for the upstream at `base`, leads; `None` when it is malformed or refused.
pub fn upstream_redirect(base: &Uri, from: &Uri, location: &str) -> Option<Uri> {
    let to = crate::upstream::redirect::resolve(from, location).ok()?;
    // A table that knows no name: only addresses as written are judged, and the check
    // completes without waiting on anything.
    let guard = crate::upstream::dns::Guard::new(crate::upstream::Dns::Fixed(Vec::new()), base, &[]);
    let checked = crate::upstream::redirect::check_redirect(&guard, from, &to);
    futures_util::FutureExt::now_or_never(checked)?.ok()?;
    Some(to)
}

/// `airgap::staging`: a bundle entry's path in the one form files are looked up by.
pub fn bundle_path(path: &str) -> String {
    crate::airgap::staging::clean(path)
}

/// `access::passwords`: an htpasswd file's users and hashes, or the number of its first bad line.
pub fn htpasswd(text: &str) -> Result<Vec<(String, String)>, usize> {
    crate::access::passwords::parse_htpasswd(text).map(|users| users.into_iter().collect())
}

/// `config::file`: a config file's text, read as `serve` reads it; the one-line error if not.
pub fn config_file(text: &str) -> Result<(), String> {
    crate::config::file::parse(text).map(drop)
}
