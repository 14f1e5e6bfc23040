//! The lists hosted repositories answer: tags, the catalog (only what the caller may pull)
//! and referrers (OCI 1.1), each as JSON with the distribution spec's paging or filter headers.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LINK};
use http::request::Parts;
use http::{HeaderName, Response};
use serde_json::json;

use super::admission;
use super::error::Error;
use super::route::{self, Route};
use super::App;
use crate::access::Client;
use crate::body::{self, Body};
use crate::manifest;
use crate::reference::{Registry, RepoName};
use crate::registries::Registries;
use crate::tag_page;

const FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// A hosted repository's tags, as the client names the repository (namespace first).
pub(super) async fn tags(
    registries: &Registries,
    registry: &Registry,
    repo: &RepoName,
    request: &Parts,
    head: bool,
) -> Result<Response<Body>, Error> {
    let hosted = registries.hosted(registry).ok_or(Error::RegistryUnknown)?;
    let tags = hosted.tags(repo).await?;
    let name = route::repository_name(request.uri.path());
    let (body, link) = tag_page::named_page(&name, &tags, request.uri.query());
    paged(body, link, head)
}

/// `/v2/_catalog`: the hosted repositories this client may pull; empty when nothing is hosted.
pub(super) async fn catalog(
    app: &App,
    client: Option<&Client>,
    request: &Parts,
    head: bool,
) -> Result<Response<Body>, Error> {
    let mut names = Vec::new();
    if let Some(hosted) = app.registries.any_hosted() {
        let namespace = hosted.namespace();
        for repo in hosted.repositories().await? {
            if admission::may_pull(app, client, namespace, &repo) {
                names.push(format!("{namespace}/{repo}"));
            }
        }
    }
    let (body, link) = tag_page::catalog_page(&names, request.uri.query());
    paged(body, link, head)
}

/// The referrers of a hosted manifest as an OCI image index; mirrored registries have none
/// to list here.
pub(super) async fn referrers(registries: &Registries, route: Route, head: bool) -> Result<Response<Body>, Error> {
    let Route::Referrers {
        registry,
        repo,
        digest,
        artifact_type,
    } = route
    else {
        return Err(Error::NoRoute);
    };
    let hosted = registries.hosted(&registry).ok_or(Error::NoRoute)?;
    let found = hosted.referrers(&repo, &digest, artifact_type.as_deref()).await?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_INDEX,
        "manifests": found,
    })
    .to_string();
    let mut response = Response::builder()
        .header(CONTENT_TYPE, manifest::OCI_INDEX)
        .header(CONTENT_LENGTH, index.len());
    if artifact_type.is_some() {
        response = response.header(FILTERS_APPLIED, "artifactType");
    }
    let body = if head { body::empty() } else { body::full(index) };
    response.body(body).map_err(|e| Error::Internal(e.to_string()))
}

fn paged(body: String, link: Option<String>, head: bool) -> Result<Response<Body>, Error> {
    let mut response = Response::builder()
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, body.len());
    if let Some(link) = link {
        response = response.header(LINK, link);
    }
    let body = if head { body::empty() } else { body::full(body) };
    response.body(body).map_err(|e| Error::Internal(e.to_string()))
}
