//! `/token`, the mirror's token service, and the `Bearer` challenge that points clients at it.
//! Both request forms clients use: the Docker token spec's GET (`service`, `scope`s,
//! `account`, `offline_token`; Basic credentials, a client certificate or none) and the
//! OAuth2 POST form (`grant_type=password` or `refresh_token`) of containerd and newer
//! dockerd. A token grants, of the actions each requested repository scope asks for, those the
//! rules allow the client; anonymous clients get what `anonymous` allows (pull only).

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use serde::Serialize;

use super::error::Error;
use super::route::{self, RouteKind};
use super::{App, Peer};
use crate::access::token::{Grant, Scope, ACCESS_TTL, SERVICE};
use crate::access::{Access, Action, Identity, Refusal};
use crate::body::{self, Body};
use crate::reference::Registry;

/// A token request is a few hundred bytes; anything much larger is not one.
const MAX_FORM: usize = 16 * 1024;

/// The parameters of a token request, from the query (GET) or the form body (POST).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Both forms are `application/x-www-form-urlencoded`.
    pub(crate) fn parse(form: &[u8]) -> Params {
        Params(form_urlencoded::parse(form).into_owned().collect())
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every scope asked for: `scope` may repeat, and each may hold several, space-separated.
    pub(crate) fn scopes(&self) -> Vec<Scope> {
        (self.0.iter())
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').filter_map(Scope::parse).collect::<Vec<_>>())
            .collect()
    }
}

#[derive(Serialize)]
struct Answer {
    token: String,
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    scope: String,
}

pub async fn answer<B>(app: &App, peer: &Peer, request: &Parts, body: B) -> Result<Response<Body>, Error>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let access = app
        .access
        .as_ref()
        .filter(|a| a.tokens().is_some())
        .ok_or(Error::NoRoute)?;
    access.check_address(peer.ip)?;
    let params = params(request, body).await?;
    let (user, refreshable) = authenticate(access, peer, request, &params).await?;
    // containerd names a repository without its registry and says which one in `ns`; the
    // hosted namespace is one it may say as well.
    let hosted = app.registries.any_hosted().map(|h| h.namespace());
    let mirrored: Vec<&Registry> = app.registries.names().chain(hosted).collect();
    let granted = grant(access, &user, &params.scopes(), &mirrored);
    let tokens = access.tokens().ok_or(Error::NoRoute)?;
    let now = SystemTime::now();
    let name = match &user {
        Identity::User(name) => Some(name.as_str()),
        Identity::Anonymous => None,
    };
    let scope = (granted.iter())
        .map(|g| format!("repository:{}:{}", g.name, g.actions.join(",")))
        .collect::<Vec<_>>();
    let token = tokens.access(SERVICE, name, granted, now).map_err(token_failed)?;
    let refresh_token = match (name, refreshable) {
        (Some(name), true) => Some(tokens.refresh(SERVICE, name, now).map_err(token_failed)?),
        _ => None,
    };
    let answer = Answer {
        access_token: token.clone(),
        token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL.as_secs(),
        issued_at: humantime::format_rfc3339_seconds(now).to_string(),
        refresh_token,
        scope: scope.join(" "),
    };
    let json = serde_json::to_vec(&answer).map_err(|e| Error::Internal(e.to_string()))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, json.len())
        .header("cache-control", "no-store")
        .body(body::full(json))
        .map_err(|e| Error::Internal(e.to_string()))
}

fn token_failed(e: crate::access::token::Error) -> Error {
    Error::Internal(e.to_string())
}

async fn params<B>(request: &Parts, body: B) -> Result<Params, Error>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = if request.method == Method::POST {
        let form = Limited::new(body, MAX_FORM).collect().await;
        form.map_err(|_| Error::BadRequest("the token request's form is unreadable or too large".into()))?
            .to_bytes()
    } else {
        Bytes::copy_from_slice(request.uri.query().unwrap_or("").as_bytes())
    };
    Ok(Params::parse(&bytes))
}

/// Who asks, and whether it may have a refresh token (a user who proved a password and
/// asked for one: `offline_token=true` or `access_type=offline`).
async fn authenticate(
    access: &Access,
    peer: &Peer,
    request: &Parts,
    params: &Params,
) -> Result<(Identity, bool), Error> {
    let offline = params.get("offline_token") == Some("true") || params.get("access_type") == Some("offline");
    match params.get("grant_type") {
        Some("password") => {
            let (user, password) = (params.get("username"), params.get("password"));
            let (Some(user), Some(password)) = (user, password) else {
                return Err(Error::BadRequest(
                    "grant_type=password needs username and password".into(),
                ));
            };
            Ok((access.check_password(peer.ip, user, password).await?, offline))
        }
        Some("refresh_token") => {
            let token = params.get("refresh_token").unwrap_or("");
            let user = (access.tokens())
                .and_then(|t| t.verify_refresh(token, SERVICE))
                .filter(|user| access.has_user(user))
                .ok_or_else(|| Refusal::Unauthenticated("the refresh token is invalid or expired".into()))?;
            Ok((Identity::User(user), false))
        }
        Some(other) => Err(Error::BadRequest(format!("unsupported grant_type {other}"))),
        None => {
            let authorization = request.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
            let client = access
                .identify(peer.ip, peer.certificate_user.as_deref(), authorization)
                .await?;
            let password = authorization.is_some_and(|a| a.starts_with("Basic "));
            Ok((client.identity, offline && password))
        }
    }
}

/// Of each requested scope, the actions the rules let `user` take. A name may be read as a
/// path (`ghcr.io/org/app`, or Docker Hub's `library/alpine`) or, for containerd's `ns=`, as a
/// repository of any `mirrored` registry; each request checks the rules again for the registry
/// it actually names, so granting an action on the name when any reading allows it gives
/// nothing more. A scope with nothing allowed is left out.
fn grant(access: &Access, user: &Identity, scopes: &[Scope], mirrored: &[&Registry]) -> Vec<Grant> {
    let allowed = |name: &str, action: Action| {
        let by_path = route::locate_name(name, None).into_iter();
        let by_ns = (mirrored.iter()).filter_map(|registry| route::locate_name(name, Some(registry)));
        by_path
            .chain(by_ns)
            .any(|(registry, repo)| access.authorize(user, &registry, &repo, action).is_ok())
    };
    let mut granted: Vec<(&str, Vec<Action>)> = Vec::new();
    for scope in scopes {
        let actions = (scope.actions.iter().copied()).filter(|action| allowed(&scope.name, *action));
        match granted.iter_mut().find(|(name, _)| *name == scope.name) {
            Some((_, held)) => held.extend(actions),
            None => granted.push((&scope.name, actions.collect())),
        }
    }
    (granted.into_iter())
        .filter(|(_, actions)| !actions.is_empty())
        .map(|(name, actions)| {
            // Scopes asked for one name twice are one grant, listed as scopes list actions.
            let actions: Vec<Action> = Action::ALL.into_iter().filter(|a| actions.contains(a)).collect();
            Grant::repository(name, &actions)
        })
        .collect()
}

/// The `Bearer` challenge of a 401: the realm is this mirror's `/token` under the name and
/// scheme the client used, so it is reachable whatever name the client knows the mirror by.
pub fn challenge(app: &App, request: &Parts, kind: RouteKind) -> Option<HeaderValue> {
    let scheme = if app.tls { "https" } else { "http" };
    let host = client_host(request).filter(|h| plain_host(h)).unwrap_or(&app.address);
    let mut value = format!(r#"Bearer realm="{scheme}://{host}/token",service="{SERVICE}""#);
    if kind.is_registry_api() {
        if let Some(scope) = challenge_scope(&request.method, request.uri.path()) {
            value.push_str(&format!(r#",scope="{scope}""#));
        }
    }
    HeaderValue::from_str(&value).ok()
}

/// What a request on the registry API does to its repository, by its method alone, so any
/// route under a repository is judged alike.
pub fn action_for(method: &Method) -> Action {
    if [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        Action::Push
    } else if method == Method::DELETE {
        Action::Delete
    } else {
        Action::Pull
    }
}

/// The scope a 401 on `path` asks for: the actions `method` needs on the repository the path
/// names. A push asks for pull as well, as docker and containerd do, since it first checks
/// what the repository holds; `None` when the path names no repository.
fn challenge_scope(method: &Method, path: &str) -> Option<String> {
    let name = route::repository_name(path);
    if !plain_name(&name) {
        return None;
    }
    let actions = match action_for(method) {
        Action::Pull => "pull",
        Action::Push => "pull,push",
        Action::Delete => "delete",
    };
    Some(format!("repository:{name}:{actions}"))
}

/// The mirror as the client addressed it: HTTP/2 carries that in the URI, HTTP/1.1 in `Host`.
pub fn client_host(request: &Parts) -> Option<&str> {
    (request.uri.authority().map(|a| a.as_str())).or_else(|| request.headers.get(HOST)?.to_str().ok())
}

/// Only characters a host name, an IP address and a port need, so a hostile `Host` cannot
/// shape the challenge.
fn plain_host(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
}

#[cfg(test)]
mod tests;
