//! Who may make a request, decided before anything is looked up: the address, the identity,
//! then the rules for the repository the route names and what it does there. Health checks
//! and the CA certificate stay open; the status page and metrics need what `/v2/` needs.

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Method, Response};

use super::error::Error;
use super::route::{self, Mount, Route, RouteKind};
use super::{token, App, Peer};
use crate::access::{Action, Client};
use crate::body::Body;
use crate::reference::{Registry, RepoName};
use crate::upstream::MEMBER_KEY;

/// Who the client is when access control is on (`None` when it is off, or the route is open).
/// Another member of the fleet may pull anything: it asks for content one of its own clients
/// was admitted to.
pub(super) async fn admit(app: &App, route: &Route, peer: &Peer, request: &Parts) -> Result<Option<Client>, Error> {
    let Some(access) = &app.access else { return Ok(None) };
    if matches!(route, Route::Health | Route::Ready | Route::CaCert | Route::Token) {
        return Ok(None);
    }
    if from_member(app, request) && matches!(route, Route::Base | Route::Blob { .. } | Route::Manifest { .. }) {
        return Ok(None);
    }
    let authorization = request.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let client = access
        .identify(peer.ip, peer.certificate_user.as_deref(), authorization)
        .await?;
    match (route, route.repository()) {
        (Route::Base | Route::Catalog, _) => access.check_login(&client)?,
        (Route::Status | Route::Metrics, _) => access.check_viewer(&client)?,
        (_, Some((registry, repo))) => {
            let name = route::repository_name(request.uri.path());
            access.admit(&client, registry, repo, &name, token::action_for(&request.method))?;
        }
        (_, None) => {}
    }
    Ok(Some(client))
}

/// Whether the request carries the fleet's key. Only pulls are made with it.
pub(super) fn from_member(app: &App, request: &Parts) -> bool {
    let offered = request.headers.get(MEMBER_KEY);
    let fleet = app.registries.fleet();
    matches!((fleet, offered), (Some(fleet), Some(key)) if fleet.is_key(key.as_bytes())) && is_pull(&request.method)
}

fn is_pull(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Whether `client` may pull `registry`/`repo`: what the status page and the catalog may
/// name to it, so private repository names do not leak.
pub(super) fn may_pull(app: &App, client: Option<&Client>, registry: &Registry, repo: &RepoName) -> bool {
    let (Some(access), Some(client)) = (&app.access, client) else {
        return true;
    };
    access.authorize(&client.identity, registry, repo, Action::Pull).is_ok()
}

/// Whether `client` may read the repository a mount would take a blob from: a mount it may
/// not make becomes an ordinary upload, and says nothing of what that repository holds.
pub(super) fn may_mount_from(app: &App, client: Option<&Client>, from: &Mount) -> bool {
    let (Some(access), Some(client)) = (&app.access, client) else {
        return true;
    };
    access
        .admit(client, &from.registry, &from.repo, &from.name, Action::Pull)
        .is_ok()
}

/// Where the mirror issues tokens, a 401 points there instead of asking for Basic
/// credentials: real clients log in only through the challenge `/v2/` gives them.
pub(super) fn bearer_challenge(app: &App, request: &Parts, kind: RouteKind, response: &mut Response<Body>) {
    if app.access.as_ref().is_none_or(|a| a.tokens().is_none()) {
        return;
    }
    if let Some(value) = token::challenge(app, request, kind) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
}
