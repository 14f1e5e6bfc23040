//! The fake's answers from stored content: manifests with Accept checks, blobs directly
//! or through the CDN, byte ranges, tags/list pages, and bodies spoiled on request.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt as _};
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LINK, LOCATION};
use http::{Method, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use serde_json::json;

use super::serve::parse_query;
use super::{Fault, Gate, Inner, Request, Shared};

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(super) type Body = BoxBody<Bytes, BoxError>;

/// Bodies go out in pieces so that a corrupt or truncated body is not one lucky write.
const CHUNK: usize = 16 * 1024;

pub(super) fn manifest(inner: &Inner, request: &Request, fault: Option<&Fault>) -> Response<Body> {
    let (Some(name), Some(reference)) = (request.name.as_deref(), request.reference.as_deref()) else {
        return plain(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    let Some(repo) = inner.repos.get(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        );
    };
    let by_tag = !reference.contains(':');
    let digest = if by_tag {
        repo.tags.get(reference).map(String::as_str)
    } else {
        Some(reference)
    };
    let Some((media_type, bytes)) = digest.and_then(|d| repo.manifests.get(d)) else {
        return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "manifest unknown");
    };
    // distribution's rule: a tag whose type the client did not accept is not found.
    if by_tag && !accepts(&request.accept, media_type) {
        return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", "manifest type not in Accept");
    }
    let digest = digest.expect("digest found above");
    let body = if request.method == Method::HEAD {
        empty()
    } else {
        faulty_body(bytes.clone(), fault)
    };
    Response::builder()
        .header(CONTENT_TYPE, media_type.as_str())
        .header(CONTENT_LENGTH, bytes.len())
        .header("docker-content-digest", digest)
        .header(ETAG, format!("\"{digest}\""))
        .body(body)
        .expect("valid response")
}

fn accepts(accept: &[String], media_type: &str) -> bool {
    accept.iter().any(|a| {
        let a = a.split(';').next().unwrap_or_default().trim();
        a == media_type || a == "*/*"
    })
}

pub(super) fn blob(shared: &Shared, inner: &mut Inner, request: &Request, fault: Option<&Fault>) -> Response<Body> {
    let (Some(name), Some(digest)) = (request.name.as_deref(), request.reference.as_deref()) else {
        return plain(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    let Some(repo) = inner.repos.get(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        );
    };
    let Some(bytes) = repo.blobs.get(digest).cloned() else {
        return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown to registry");
    };
    if !shared.cdn_redirects {
        return serve_bytes(shared, &bytes, request, Some(digest), fault);
    }
    // A fresh signature per redirect, as a real CDN would issue, so a mirror that
    // caches a Location is visible in the request log.
    inner.issued += 1;
    let location = format!("{}/cdn/{digest}?repo={name}&sig={}", shared.cdn_url, inner.issued);
    Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(LOCATION, location)
        .header("docker-content-digest", digest)
        .header(CONTENT_LENGTH, 0)
        .body(empty())
        .expect("valid response")
}

pub(super) fn cdn_blob(shared: &Shared, inner: &Inner, request: &Request, fault: Option<&Fault>) -> Response<Body> {
    if request.authorization.is_some() {
        return xml(StatusCode::FORBIDDEN, "AccessDenied", "Only one auth mechanism allowed");
    }
    let digest = request.reference.as_deref().unwrap_or_default();
    let found = match request.name.as_deref().and_then(|name| inner.repos.get(name)) {
        Some(repo) => repo.blobs.get(digest),
        None => None,
    };
    match found {
        Some(bytes) => serve_bytes(shared, bytes, request, None, fault),
        None => xml(StatusCode::NOT_FOUND, "NoSuchKey", "The specified key does not exist."),
    }
}

fn serve_bytes(
    shared: &Shared,
    bytes: &Bytes,
    request: &Request,
    digest: Option<&str>,
    fault: Option<&Fault>,
) -> Response<Body> {
    let size = bytes.len();
    let mut builder = Response::builder().header(CONTENT_TYPE, "application/octet-stream");
    if !shared.ranges_ignored {
        builder = builder.header(ACCEPT_RANGES, "bytes");
    }
    if let Some(digest) = digest {
        builder = builder
            .header("docker-content-digest", digest)
            .header(ETAG, format!("\"{digest}\""));
    }
    let range = request.range.as_deref().filter(|_| !shared.ranges_ignored);
    let slice = match range.map(|r| parse_range(r, size)) {
        None | Some(Range::Whole) => bytes.clone(),
        Some(Range::Part(start, end)) => {
            let start = match fault {
                Some(Fault::MisalignedRange) => start.saturating_sub(CHUNK),
                _ => start,
            };
            builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            bytes.slice(start..=end)
        }
        Some(Range::Unsatisfiable) => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(CONTENT_RANGE, format!("bytes */{size}"))
                .header(CONTENT_LENGTH, 0)
                .body(empty())
                .expect("valid response");
        }
    };
    let length = match fault {
        Some(Fault::AnnounceLength(length)) => Some(*length),
        Some(Fault::Unsized) => None,
        _ => Some(slice.len() as u64),
    };
    if let Some(length) = length {
        builder = builder.header(CONTENT_LENGTH, length);
    }
    let body = if request.method == Method::HEAD {
        empty()
    } else {
        faulty_body(slice, fault)
    };
    builder.body(body).expect("valid response")
}

enum Range {
    Whole,
    Part(usize, usize),
    Unsatisfiable,
}

/// One `bytes=` range, as RFC 9110 reads it; anything fancier is answered in full.
fn parse_range(header: &str, size: usize) -> Range {
    let Some(spec) = header.strip_prefix("bytes=") else {
        return Range::Whole;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.parse::<usize>().ok(), last.parse::<usize>().ok()) {
        (Some(start), None) if last.is_empty() => Some((start, size.saturating_sub(1))),
        (Some(start), Some(end)) if start <= end => Some((start, end.min(size.saturating_sub(1)))),
        (None, Some(suffix)) if first.is_empty() && suffix > 0 => {
            Some((size.saturating_sub(suffix), size.saturating_sub(1)))
        }
        _ => return Range::Whole,
    };
    match parsed {
        Some((start, end)) if start < size => Range::Part(start, end),
        _ => Range::Unsatisfiable,
    }
}

fn faulty_body(bytes: Bytes, fault: Option<&Fault>) -> Body {
    match fault {
        Some(Fault::CorruptByte) if !bytes.is_empty() => {
            let mut corrupt = bytes.to_vec();
            let middle = corrupt.len() / 2;
            corrupt[middle] ^= 0xff;
            chunked(Bytes::from(corrupt), false, |_| Wait::Nothing)
        }
        Some(Fault::Truncate) => chunked(bytes.slice(..bytes.len() / 2), true, |_| Wait::Nothing),
        // Shorter than it said, so it ends as a broken connection does.
        Some(Fault::AnnounceLength(_)) => chunked(bytes, true, |_| Wait::Nothing),
        Some(Fault::Throttle(pause)) => {
            let pause = *pause;
            chunked(bytes, false, move |_| Wait::Sleep(pause))
        }
        Some(Fault::PauseMidBody(pause)) => {
            let (pause, middle) = (*pause, bytes.len().div_ceil(CHUNK) / 2);
            chunked(bytes, false, move |chunk| {
                if chunk == middle {
                    Wait::Sleep(pause)
                } else {
                    Wait::Nothing
                }
            })
        }
        Some(Fault::HoldMidBody(gate)) => {
            let (gate, middle) = (gate.clone(), bytes.len().div_ceil(CHUNK) / 2);
            chunked(bytes, false, move |chunk| {
                if chunk == middle {
                    Wait::Gate(gate.clone())
                } else {
                    Wait::Nothing
                }
            })
        }
        _ => chunked(bytes, false, |_| Wait::Nothing),
    }
}

/// What a body waits for before one of its chunks.
enum Wait {
    Nothing,
    Sleep(Duration),
    Gate(Gate),
}

/// A streamed body; `fail` ends it with an error, which makes hyper drop the connection
/// short of the declared `Content-Length`. `wait(n)` is what comes before chunk `n`.
fn chunked(bytes: Bytes, fail: bool, wait: impl Fn(usize) -> Wait + Send + Sync + 'static) -> Body {
    let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + CHUNK).min(bytes.len());
        frames.push(Ok(Frame::data(bytes.slice(start..end))));
        start = end;
    }
    if fail {
        frames.push(Err("body truncated by fault injection".into()));
    }
    let frames = stream::iter(frames.into_iter().enumerate()).then(move |(n, frame)| {
        let wait = if frame.is_err() {
            // Pending once, so hyper flushes the head and the bytes so far before the
            // error makes it drop the connection; otherwise nothing at all goes out.
            Wait::Sleep(Duration::from_millis(20))
        } else {
            wait(n)
        };
        async move {
            match wait {
                Wait::Nothing => {}
                Wait::Sleep(pause) => tokio::time::sleep(pause).await,
                Wait::Gate(gate) => gate.pass().await,
            }
            frame
        }
    });
    BodyExt::boxed(StreamBody::new(frames))
}

pub(super) fn tags_list(inner: &Inner, request: &Request) -> Response<Body> {
    let name = request.name.as_deref().unwrap_or_default();
    let Some(repo) = inner.repos.get(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        );
    };
    let params = parse_query(request.query.as_deref());
    let param = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let n = match param("n").map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "invalid number of results requested",
            )
        }
    };
    let last = param("last");
    let after: Vec<&String> = repo
        .tags
        .keys()
        .filter(|tag| last.is_none_or(|last| tag.as_str() > last))
        .collect();
    let page = &after[..n.unwrap_or(after.len()).min(after.len())];
    let mut response = json_response(StatusCode::OK, &json!({ "name": name, "tags": page }));
    if let (Some(n), Some(last)) = (n, page.last()) {
        if after.len() > page.len() {
            let link = format!("</v2/{name}/tags/list?last={last}&n={n}>; rel=\"next\"");
            response.headers_mut().insert(LINK, link.parse().expect("valid header"));
        }
    }
    response
}

pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({ "errors": [{ "code": code, "message": message, "detail": null }] }),
    )
}

pub(super) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(value).expect("JSON serialises"));
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, bytes.len())
        .body(full(bytes))
        .expect("valid response")
}

fn xml(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/xml")
        .body(full(Bytes::from(body)))
        .expect("valid response")
}

pub(super) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain")
        .body(full(Bytes::from(text)))
        .expect("valid response")
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}
