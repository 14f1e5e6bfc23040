//! Answers one parsed request: one `match` over the route, then the response headers the
//! registry clients rely on (digest, exact length on HEAD too, media type, ranges).

use bytes::Bytes;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE, WARNING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use super::error::Error;
use super::range::ByteRange;
use super::route::{self, Route, RouteKind};
use super::token::{self, client_host};
use super::{admission, listing, push, status_page, App, Peer, Role};
use crate::access::Client;
use crate::body::{self, Body};
use crate::digest::Digest;
use crate::manifest;
use crate::mirror::{BlobAnswer, ManifestAnswer, Mirror, Requester, Source, TagList, Want};
use crate::reference::{Reference, Registry, RepoName};
use crate::registries::Registries;

pub(super) const DIGEST_HEADER: HeaderName = HeaderName::from_static("docker-content-digest");
const STALE_WARNING: &str = r#"299 - "served from the mirror's cache: the upstream is unavailable""#;

pub async fn handle<B>(app: &App, role: Role, peer: &Peer, request: &Parts, body: B) -> Response<Body>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let query = request.uri.query();
    let route = Route::parse(&request.method, request.uri.path(), query).and_then(|route| match role {
        Role::All => Ok(route),
        Role::Pull if !route.is_admin() => Ok(route),
        Role::Admin if route.is_admin() => Ok(route),
        _ => Err(Error::NoRoute),
    });
    let kind = route.as_ref().map_or(RouteKind::Invalid, Route::kind);
    let response = match route {
        Ok(Route::Token) => token::answer(app, peer, request, body).await,
        Ok(route) => match admission::admit(app, &route, peer, request).await {
            Ok(client) => respond(app, route, client.as_ref(), peer, request, body).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let mut response = response.unwrap_or_else(Error::into_response);
    if response.status() == StatusCode::UNAUTHORIZED && (kind == RouteKind::Base || kind.is_registry_api()) {
        admission::bearer_challenge(app, request, kind, &mut response);
    }
    response.extensions_mut().insert(kind);
    // The proxying part of the distribution spec asks for `ns` to be echoed back.
    if let Ok(Some(registry)) = route::namespace(query) {
        if let Ok(value) = HeaderValue::from_str(registry.as_str()) {
            response.headers_mut().insert("oci-namespace", value);
        }
    }
    response
}

async fn respond<B>(
    app: &App,
    route: Route,
    client: Option<&Client>,
    peer: &Peer,
    request: &Parts,
    body: B,
) -> Result<Response<Body>, Error>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let registries = &app.registries;
    let head = request.method == Method::HEAD;
    let want = if head { Want::Size } else { Want::Body };
    match route {
        Route::Manifest {
            registry,
            repo,
            reference,
        } => {
            let answer = match registries.hosted(&registry) {
                Some(hosted) => hosted.manifest(&repo, &reference, want).await?,
                None => mirror(registries, &registry)?.manifest(&repo, &reference, want).await?,
            };
            let by_tag = matches!(reference, Reference::Tag(_));
            if by_tag && !manifest::accepts(&request.headers, &answer.media_type) {
                return Err(Error::NotAcceptable);
            }
            manifest_response(answer, head)
        }
        Route::Blob { registry, repo, digest } => {
            let answer = blob(app, &registry, &repo, &digest, want, peer, request).await?;
            blob_response(answer, &digest, &request.headers, head)
        }
        Route::Tags { registry, repo } if registries.hosted(&registry).is_some() => {
            listing::tags(registries, &registry, &repo, request, head).await
        }
        Route::Catalog => listing::catalog(app, client, request, head).await,
        Route::Referrers { .. } => listing::referrers(registries, route, head).await,
        Route::PutManifest { .. }
        | Route::DeleteManifest { .. }
        | Route::DeleteBlob { .. }
        | Route::StartUpload { .. }
        | Route::Upload { .. } => push::respond(app, route, client, request, body).await,
        Route::Tags { registry, repo } => {
            let query = route::upstream_query(request.uri.query());
            let list = mirror(registries, &registry)?.tags(&repo, query.as_deref()).await?;
            tags_response(list, head)
        }
        page => mirror_page(app, page, client, request, head).await,
    }
}

/// A blob from the hosted repositories or the mirror.
async fn blob(
    app: &App,
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    want: Want,
    peer: &Peer,
    request: &Parts,
) -> Result<BlobAnswer, Error> {
    if let Some(hosted) = app.registries.hosted(registry) {
        return Ok(hosted.blob(repo, digest).await?);
    }
    let mirror = mirror(&app.registries, registry)?;
    Ok(mirror.blob(repo, digest, want, requester(app, peer, request)).await?)
}

/// Who the mirror fetches for: a client, or another member of the fleet, whose transfers count
/// against the overall cap only.
fn requester(app: &App, peer: &Peer, request: &Parts) -> Requester {
    match admission::from_member(app, request) {
        true => Requester::member(peer.ip),
        false => Requester::client(peer.ip),
    }
}

/// The mirror's own answers, outside any repository.
async fn mirror_page(
    app: &App,
    route: Route,
    client: Option<&Client>,
    request: &Parts,
    head: bool,
) -> Result<Response<Body>, Error> {
    let registries = &app.registries;
    match route {
        Route::Metrics => {
            // A blob whose transfer has ended is counted as cached, as a scraper would expect,
            // though its commit trails the body's end by a few milliseconds.
            registries.settle().await;
            Ok(text(
                head,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                registries.encode_metrics(),
            ))
        }
        Route::Status => Ok(status(app, client, request, head).await),
        Route::CaCert => {
            let pem = app.ca.as_ref().map(|ca| ca.pem.clone()).ok_or(Error::NoRoute)?;
            Ok(text(head, "application/x-pem-file", pem))
        }
        Route::Base => Ok(json(StatusCode::OK, "{}")),
        // `handle` gives it to the token service, which needs the request's body.
        Route::Token => Err(Error::NoRoute),
        Route::Health => Ok(json(StatusCode::OK, r#"{"status":"ok"}"#)),
        Route::Ready if registries.cache_writable() => Ok(json(StatusCode::OK, r#"{"status":"ready"}"#)),
        Route::Ready => Ok(json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"cache not writable"}"#,
        )),
        _ => Err(Error::NoRoute),
    }
}

/// A registry the gateway does not mirror is unknown here; it never falls back to Docker Hub.
fn mirror<'a>(registries: &'a Registries, registry: &Registry) -> Result<&'a Mirror, Error> {
    registries.get(registry).ok_or(Error::RegistryUnknown)
}

/// The status page, naming the mirror as the client addressed it.
async fn status(app: &App, client: Option<&Client>, request: &Parts, head: bool) -> Response<Body> {
    let host = client_host(request);
    let visible = |registry: &Registry, repo: &RepoName| admission::may_pull(app, client, registry, repo);
    let page = status_page::render(app, host, &visible).await;
    let mut response = text(head, "text/html; charset=utf-8", page);
    // The page is one document with its style inline: nothing to load, run or frame it.
    response.headers_mut().insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

fn tags_response(list: TagList, head: bool) -> Result<Response<Body>, Error> {
    let mut response = Response::builder().status(list.status);
    for (name, value) in &list.headers {
        response = response.header(name, value);
    }
    if list.source == Source::Stale {
        response = response.header(WARNING, STALE_WARNING);
    }
    let response = response.header(CONTENT_LENGTH, list.body.len());
    let body = if head { body::empty() } else { body::full(list.body) };
    finish(response, body, list.source)
}

fn manifest_response(answer: ManifestAnswer, head: bool) -> Result<Response<Body>, Error> {
    let (digest, etag) = digest_headers(&answer.digest)?;
    let mut response = Response::builder()
        .header(CONTENT_TYPE, &*answer.media_type)
        .header(CONTENT_LENGTH, answer.size)
        .header(DIGEST_HEADER, digest)
        .header(ETAG, etag);
    if answer.source == Source::Stale {
        response = response.header(WARNING, STALE_WARNING);
    }
    let body = match (head, answer.bytes) {
        (false, Some(bytes)) => body::full(bytes),
        _ => body::empty(),
    };
    finish(response, body, answer.source)
}

fn blob_response(
    answer: BlobAnswer,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response<Body>, Error> {
    let (digest_value, etag) = digest_headers(digest)?;
    let response = Response::builder()
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(DIGEST_HEADER, digest_value)
        .header(ETAG, etag);
    let range = headers.get(RANGE);
    match answer {
        BlobAnswer::Size { size } => finish(response.header(CONTENT_LENGTH, size), body::empty(), Source::Upstream),
        BlobAnswer::Cached { file, size } => ranged(response, size, range, head, Source::Cache, |start, len| {
            body::file(file, start, len)
        }),
        BlobAnswer::Filling { fill, size: Some(size) } => {
            ranged(response, size, range, head, Source::Upstream, |start, len| {
                fill.reader(start, Some(start + len))
            })
        }
        // Without a known size there is no range to answer: the whole blob, chunked.
        BlobAnswer::Filling { fill, size: None } => finish(response, fill.reader(0, None), Source::Upstream),
        BlobAnswer::Streaming { body, size } => {
            let response = match size {
                Some(size) => response.header(CONTENT_LENGTH, size),
                None => response,
            };
            finish(response, body, Source::Upstream)
        }
    }
}

/// `Docker-Content-Digest` and the `ETag` quoting it, sharing one formatted string.
fn digest_headers(digest: &Digest) -> Result<(HeaderValue, HeaderValue), Error> {
    let quoted = Bytes::from(format!("\"{digest}\""));
    let bare = quoted.slice(1..quoted.len() - 1);
    let value = |bytes| HeaderValue::from_maybe_shared(bytes).map_err(|e| Error::Internal(e.to_string()));
    Ok((value(bare)?, value(quoted)?))
}

/// A blob of known size, whole or the one range asked for; `body(start, len)` makes the bytes.
fn ranged(
    response: http::response::Builder,
    size: u64,
    range: Option<&HeaderValue>,
    head: bool,
    source: Source,
    body: impl FnOnce(u64, u64) -> Body,
) -> Result<Response<Body>, Error> {
    let response = response.header(ACCEPT_RANGES, "bytes");
    let (response, start, len) = match ByteRange::parse(range, size) {
        ByteRange::Unsatisfiable => return Err(Error::RangeNotSatisfiable { size }),
        ByteRange::Full => (response, 0, size),
        ByteRange::Partial { start, end } => {
            let response = response
                .status(StatusCode::PARTIAL_CONTENT)
                .header(CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (response, start, end - start + 1)
        }
    };
    let body = if head { body::empty() } else { body(start, len) };
    finish(response.header(CONTENT_LENGTH, len), body, source)
}

/// A page of the mirror's own, not content: no cache source to record.
fn text(head: bool, content_type: &'static str, text: String) -> Response<Body> {
    let len = text.len();
    let mut response = Response::new(if head { body::empty() } else { body::full(text) });
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(len));
    response
}

fn json(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
    response
}

/// Attaches the body and records where the answer came from, for the request log.
fn finish(response: http::response::Builder, body: Body, source: Source) -> Result<Response<Body>, Error> {
    let mut response = response.body(body).map_err(|e| Error::Internal(e.to_string()))?;
    response.extensions_mut().insert(source);
    Ok(response)
}
