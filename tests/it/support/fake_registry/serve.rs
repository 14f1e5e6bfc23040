//! The fake's HTTP side: classify a request, record it, apply a scripted fault and have
//! `auth` check its credentials; `answer` then replies from stored content.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::stream::StreamExt as _;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, RANGE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::answer::{self, error, json_response, plain, Body};
use super::auth::{challenge_value, refusal, token};
use super::{Fault, Inner, Kind, Request, Role, Shared, Target};

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, role: Role, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let connection_shared = Arc::clone(&shared);
        let service = service_fn(move |req| {
            let shared = Arc::clone(&connection_shared);
            async move { Ok::<_, Infallible>(handle(&shared, role, req).await) }
        });
        let tls = tls.clone();
        let task = tokio::spawn(async move {
            match tls {
                Some(acceptor) => super::tls::serve(acceptor, stream, service).await,
                None => {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
        shared.lock().tasks.push(task);
    }
}

async fn handle(shared: &Arc<Shared>, role: Role, req: hyper::Request<Incoming>) -> Response<Body> {
    let request = classify(role, &req);
    let fault = {
        let mut inner = shared.lock();
        inner.requests.push(request.clone());
        take_fault(&mut inner, shared.cdn_redirects, &request)
    };
    let body_fault = match fault {
        Some(Fault::Status { status, retry_after }) => return status_fault(shared, &request, status, retry_after),
        Some(Fault::CdnStatus(status)) => return status_fault(shared, &request, status, None),
        other => wait_out(other).await,
    };
    let mut response = if request.method != Method::GET && request.method != Method::HEAD {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the fake upstream is read-only",
        )
    } else {
        let mut inner = shared.lock();
        match (role, request.kind) {
            (Role::Cdn, Kind::Blob) => answer::cdn_blob(shared, &inner, &request, body_fault.as_ref()),
            (Role::Registry, Kind::Token) => token(shared, &mut inner, &request),
            (Role::Registry, Kind::Ping | Kind::Manifest | Kind::Blob | Kind::TagsList) => {
                match refusal(shared, &inner, &request) {
                    Some(challenge) => challenge,
                    None => match request.kind {
                        Kind::Ping => json_response(StatusCode::OK, &json!({})),
                        Kind::Manifest => answer::manifest(&inner, &request, body_fault.as_ref()),
                        Kind::Blob => answer::blob(shared, &mut inner, &request, body_fault.as_ref()),
                        _ => answer::tags_list(&inner, &request),
                    },
                }
            }
            _ => plain(StatusCode::NOT_FOUND, "404 page not found\n"),
        }
    };
    if role == Role::Registry {
        response.headers_mut().insert(
            "docker-distribution-api-version",
            "registry/2.0".parse().expect("valid header"),
        );
    }
    let content = matches!(request.kind, Kind::Manifest | Kind::Blob) && request.method == Method::GET;
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    match (&request.reference, length, content && response.status().is_success()) {
        (Some(reference), Some(length), true) => {
            let (shared, reference) = (Arc::clone(shared), reference.clone());
            response.map(|body| on_complete(body, length, move || shared.lock().completed.push(reference)))
        }
        _ => response,
    }
}

/// Waits as a stall or a hold says, before the answer; the fault left for the body, if any.
async fn wait_out(fault: Option<Fault>) -> Option<Fault> {
    match fault {
        Some(Fault::Stall(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Hold(gate)) => gate.pass().await,
        other => return other,
    }
    None
}

/// Runs `done` when the body's last declared byte is handed to hyper; never if it fails
/// or the client goes away first. (hyper stops polling at `Content-Length`, so the end of
/// the stream itself is not a usable signal.)
fn on_complete(body: Body, length: usize, done: impl FnOnce() + Send + Sync + 'static) -> Body {
    let mut done = Some(done);
    let mut sent = 0;
    let frames = BodyStream::new(body).map(move |frame| {
        if let Some(data) = frame.as_ref().ok().and_then(Frame::data_ref) {
            sent += data.len();
        }
        if sent >= length {
            if let Some(done) = done.take() {
                done();
            }
        }
        frame
    });
    BodyExt::boxed(StreamBody::new(frames))
}

fn classify(role: Role, req: &hyper::Request<Incoming>) -> Request {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let accept = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let (kind, name, reference) = match role {
        Role::Cdn => match path.strip_prefix("/cdn/") {
            Some(digest) => (
                Kind::Blob,
                query_param(query.as_deref(), "repo"),
                Some(digest.to_owned()),
            ),
            None => (Kind::Other, None, None),
        },
        Role::Registry => route(&path),
    };
    Request {
        role,
        method: req.method().clone(),
        version: req.version(),
        kind,
        path,
        query,
        name,
        reference,
        authorization: header(AUTHORIZATION),
        accept,
        range: header(RANGE),
    }
}

/// Splits from the right, so repository components may be `manifests` or `blobs`.
fn route(path: &str) -> (Kind, Option<String>, Option<String>) {
    match path {
        "/token" => return (Kind::Token, None, None),
        "/v2/" | "/v2" => return (Kind::Ping, None, None),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return (Kind::Other, None, None);
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return (Kind::TagsList, Some(name.to_owned()), None);
    }
    if let Some((head, reference)) = rest.rsplit_once('/') {
        if let Some((name, what)) = head.rsplit_once('/') {
            let kind = match what {
                "manifests" => Kind::Manifest,
                "blobs" => Kind::Blob,
                _ => Kind::Other,
            };
            return (kind, Some(name.to_owned()), Some(reference.to_owned()));
        }
    }
    (Kind::Other, None, None)
}

fn take_fault(inner: &mut Inner, cdn_redirects: bool, request: &Request) -> Option<Fault> {
    let serves_body = request.method == Method::GET
        && match (request.role, request.kind) {
            (Role::Cdn, Kind::Blob) | (Role::Registry, Kind::Manifest) => true,
            (Role::Registry, Kind::Blob) => !cdn_redirects,
            _ => false,
        };
    let rule = inner.faults.iter_mut().find(|rule| {
        let targeted = match &rule.target {
            Target::Any => true,
            Target::Name(name) => request.name.as_deref() == Some(name),
            Target::Reference(reference) => request.reference.as_deref() == Some(reference),
            Target::Token => request.kind == Kind::Token,
        };
        let applies = match rule.fault {
            Fault::Status { .. } => request.role == Role::Registry,
            Fault::CdnStatus(_) => request.role == Role::Cdn,
            Fault::CorruptByte
            | Fault::Truncate
            | Fault::Throttle(_)
            | Fault::PauseMidBody(_)
            | Fault::HoldMidBody(_)
            | Fault::MisalignedRange
            | Fault::AnnounceLength(_)
            | Fault::Unsized => serves_body,
            Fault::Stall(_) | Fault::Hold(_) => true,
        };
        rule.remaining != Some(0) && targeted && applies
    })?;
    if let Some(remaining) = rule.remaining.as_mut() {
        *remaining -= 1;
    }
    Some(rule.fault.clone())
}

fn status_fault(shared: &Shared, request: &Request, status: u16, retry_after: Option<u32>) -> Response<Body> {
    let (code, message) = match (status, request.kind) {
        (401, _) => ("UNAUTHORIZED", "authentication required"),
        (403, _) => ("DENIED", "requested access to the resource is denied"),
        (404, Kind::Manifest) => ("MANIFEST_UNKNOWN", "manifest unknown"),
        (404, Kind::Blob) => ("BLOB_UNKNOWN", "blob unknown to registry"),
        (404, _) => ("NAME_UNKNOWN", "repository name not known to registry"),
        (429, _) => ("TOOMANYREQUESTS", "You have reached your pull rate limit."),
        (503, _) => ("UNAVAILABLE", "service unavailable"),
        _ => ("UNKNOWN", "unknown error"),
    };
    let status = StatusCode::from_u16(status).expect("fault status is a valid HTTP status");
    let mut response = error(status, code, message);
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        let value = challenge_value(shared, request.name.as_deref(), Some("invalid_token"));
        headers.insert(WWW_AUTHENTICATE, value.parse().expect("valid header"));
    }
    if let Some(seconds) = retry_after {
        headers.insert(RETRY_AFTER, seconds.into());
    }
    headers.insert(
        "docker-distribution-api-version",
        "registry/2.0".parse().expect("valid header"),
    );
    response
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    parse_query(query).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

pub(super) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' => text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, other) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
