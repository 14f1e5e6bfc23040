//! The fake's credentials check: the bearer token the way Docker Hub does (or Basic
//! credentials, as an htpasswd registry does), and the token endpoint that issues them.

use base64::Engine as _;
use http::header::WWW_AUTHENTICATE;
use http::{Response, StatusCode};
use regmirror::config::Credentials;
use serde_json::json;

use super::answer::{error, json_response, plain, Body};
use super::serve::parse_query;
use super::{Inner, Request, Shared, Token, SERVICE};

/// The 401 challenge for a request that may not proceed, if any. Hub semantics: no
/// token, an expired one, or one for another scope gets a challenge; so does a repository
/// that does not exist, even with a good token.
pub(super) fn refusal(shared: &Shared, inner: &Inner, request: &Request) -> Option<Response<Body>> {
    if let Some(credentials) = &shared.basic {
        return basic_refusal(credentials, request);
    }
    shared.auth.as_ref()?;
    let name = request.name.as_deref();
    let bearer = request.authorization.as_deref().and_then(|a| a.strip_prefix("Bearer "));
    let problem = match bearer.map(|token| inner.tokens.get(token)) {
        None => None,
        Some(None) => Some("invalid_token"),
        Some(Some(token)) if token.issued.elapsed() >= token.ttl => Some("invalid_token"),
        Some(Some(token)) => match name {
            None => return None,
            Some(name) if grants(token, name) && inner.repos.contains_key(name) => return None,
            Some(_) => Some("insufficient_scope"),
        },
    };
    let mut response = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required");
    let value = challenge_value(shared, name, problem);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, value.parse().expect("valid header"));
    Some(response)
}

/// The reference registry's htpasswd check: the right `Basic` credentials, or a challenge.
/// Unknown repositories are then a plain 404, as there.
fn basic_refusal(credentials: &Credentials, request: &Request) -> Option<Response<Body>> {
    if request.authorization.as_deref() == Some(basic_value(credentials).as_str()) {
        return None;
    }
    let mut response = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required");
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        "Basic realm=\"fake registry\"".parse().expect("valid header"),
    );
    Some(response)
}

fn basic_value(credentials: &Credentials) -> String {
    let user_pass = format!("{}:{}", credentials.username, credentials.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pass))
}

fn grants(token: &Token, name: &str) -> bool {
    token.scopes.iter().any(|scope| {
        let mut parts = scope.splitn(3, ':');
        parts.next() == Some("repository")
            && parts.next() == Some(name)
            && parts
                .next()
                .is_some_and(|actions| actions.split(',').any(|a| a == "pull"))
    })
}

pub(super) fn challenge_value(shared: &Shared, name: Option<&str>, problem: Option<&str>) -> String {
    let mut value = format!("Bearer realm=\"{}/token\",service=\"{SERVICE}\"", shared.registry_url);
    if let Some(name) = name {
        value.push_str(&format!(",scope=\"repository:{name}:pull\""));
    }
    if let Some(problem) = problem {
        value.push_str(&format!(",error=\"{problem}\""));
    }
    value
}

pub(super) fn token(shared: &Shared, inner: &mut Inner, request: &Request) -> Response<Body> {
    let Some(auth) = &shared.auth else {
        return plain(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    let params = parse_query(request.query.as_deref());
    if !params.iter().any(|(k, v)| k == "service" && v == SERVICE) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "details": "unknown or missing service" }),
        );
    }
    if let Some(credentials) = &auth.credentials {
        if request.authorization.as_deref() != Some(basic_value(credentials).as_str()) {
            return json_response(
                StatusCode::UNAUTHORIZED,
                &json!({ "details": "incorrect username or password" }),
            );
        }
    }
    let scopes = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    inner.issued += 1;
    let token = format!("fake-token-{}", inner.issued);
    inner.tokens.insert(
        token.clone(),
        Token {
            scopes,
            issued: std::time::Instant::now(),
            ttl: auth.token_ttl,
        },
    );
    json_response(
        StatusCode::OK,
        &json!({ "token": token, "access_token": token, "expires_in": auth.token_ttl.as_secs() }),
    )
}
