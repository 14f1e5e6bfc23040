//! One request's way through the server: the handler, then the metrics and the log line.

use std::sync::Arc;
use std::time::Instant;

use http::header::CONTENT_LENGTH;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::api::route::RouteKind;
use crate::api::{self, App, Peer, Role};
use crate::body::Body;
use crate::metrics::{Metrics, Origin, RequestLabels};
use crate::mirror::Source;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");

/// A request's number in the log, in hex, written straight into the span without a `String`.
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

pub async fn serve_request(app: &App, role: Role, peer: &Peer, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let (request, body) = request.into_parts();
    let response = api::handle(app, role, peer, &request, body).await;
    let response = account(app.registries.metrics(), response);
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    tracing::info!(
        method = %request.method,
        path = %request.uri.path_and_query().map_or("/", |p| p.as_str()),
        status = response.status().as_u16(),
        bytes = length.unwrap_or(0),
        cache = response.extensions().get::<Source>().map_or("-", |s| s.label()),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// Counts the request, its hit or miss, and the body bytes as they actually go out.
fn account(metrics: &Arc<Metrics>, response: Response<Body>) -> Response<Body> {
    let route = response.extensions().get::<RouteKind>().copied();
    let route = route.unwrap_or(RouteKind::Invalid);
    let status = response.status().as_u16();
    let labels = RequestLabels {
        route: route.as_str(),
        status,
    };
    metrics.requests.get_or_create(&labels).inc();
    let source = response.extensions().get::<Source>().copied();
    let content = route.is_content();
    let origin = match source {
        Some(Source::Cache | Source::Stale) if content => Some(Origin::Cache),
        Some(Source::Upstream) if content => Some(Origin::Upstream),
        _ => None,
    };
    match origin {
        Some(Origin::Cache) => metrics.cache_hits.inc(),
        Some(Origin::Upstream) => metrics.cache_misses.inc(),
        None => 0,
    };
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    // Whatever a body is, a browser takes the declared type for it, never a guess: an upstream
    // blob or manifest must not turn into a page of the mirror's origin.
    parts
        .headers
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let Some(origin) = origin else {
        return Response::from_parts(parts, body);
    };
    let metrics = metrics.clone();
    let body = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            metrics.served(origin, data.len() as u64);
        }
        frame
    });
    Response::from_parts(parts, BodyExt::boxed_unsync(body))
}
