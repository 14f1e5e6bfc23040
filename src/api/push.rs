//! The push side of the registry API over HTTP, for hosted repositories: uploads (started,
//! chunked, finished, cancelled, mounted), manifest pushes and deletes, with the `Location`,
//! `Range` and `Docker-Upload-UUID` headers clients follow. Mirrored registries are read-only.

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use http::request::Parts;
use http::{HeaderName, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Limited};

use super::admission;
use super::error::Error;
use super::handler::DIGEST_HEADER;
use super::route::{self, Route, UploadStep};
use super::App;
use crate::access::Client;
use crate::body::{self, Body};
use crate::hosted::{Hosted, Progress};
use crate::manifest;

const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");

pub(super) async fn respond<B>(
    app: &App,
    route: Route,
    client: Option<&Client>,
    request: &Parts,
    body: B,
) -> Result<Response<Body>, Error>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (registry, _) = route.repository().ok_or(Error::NoRoute)?;
    let hosted = app.registries.hosted(registry).ok_or(Error::Unsupported)?;
    let at = Place::of(request);
    match route {
        Route::StartUpload {
            repo, digest, mount, ..
        } => {
            if let Some(from) = mount.filter(|from| admission::may_mount_from(app, client, from)) {
                if hosted.mount(&repo, &from.digest, (&from.registry, &from.repo)).await? {
                    return created(&at.blob(&from.digest), &from.digest);
                }
            }
            match digest {
                Some(digest) => {
                    hosted.put_blob(&repo, &digest, stream(body)).await?;
                    created(&at.blob(&digest), &digest)
                }
                None => uploading(StatusCode::ACCEPTED, &at, hosted.start_upload(&repo).await?),
            }
        }
        Route::Upload { repo, id, step, .. } => match (id.ok_or(Error::UploadUnknown)?, step) {
            (id, UploadStep::Status) => uploading(StatusCode::NO_CONTENT, &at, hosted.upload_status(&repo, &id).await?),
            (id, UploadStep::Append) => {
                let start = chunk_start(request)?;
                let progress = hosted.append(&repo, &id, start, stream(body)).await?;
                uploading(StatusCode::ACCEPTED, &at, progress)
            }
            (id, UploadStep::Finish(digest)) => {
                let digest = digest.ok_or_else(|| Error::BadDigest("the upload's PUT names no ?digest=".into()))?;
                hosted.finish_upload(&repo, &id, &digest, stream(body)).await?;
                created(&at.blob(&digest), &digest)
            }
            (id, UploadStep::Cancel) => {
                hosted.cancel_upload(&repo, &id).await?;
                empty(StatusCode::NO_CONTENT)
            }
        },
        route => change(hosted, route, request, body, &at).await,
    }
}

/// Manifest pushes and deletes.
async fn change<B>(hosted: &Hosted, route: Route, request: &Parts, body: B, at: &Place) -> Result<Response<Body>, Error>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match route {
        Route::PutManifest { repo, reference, .. } => {
            let bytes = Limited::new(body, manifest::MAX_SIZE)
                .collect()
                .await
                .map_err(|_| Error::ManifestTooLarge)?
                .to_bytes();
            let content_type = request.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
            let pushed = hosted.put_manifest(&repo, &reference, content_type, bytes).await?;
            let location = format!("{}/manifests/{}", at.repository, pushed.digest);
            let mut response = Response::builder()
                .status(StatusCode::CREATED)
                .header(LOCATION, at.with_query(location))
                .header(DIGEST_HEADER, pushed.digest.to_string())
                .header(CONTENT_LENGTH, 0);
            if let Some(subject) = pushed.subject {
                response = response.header(OCI_SUBJECT, subject.to_string());
            }
            response.body(body::empty()).map_err(|e| Error::Internal(e.to_string()))
        }
        Route::DeleteManifest { repo, reference, .. } => {
            hosted.delete_manifest(&repo, &reference).await?;
            empty(StatusCode::ACCEPTED)
        }
        Route::DeleteBlob { repo, digest, .. } => {
            hosted.delete_blob(&repo, &digest).await?;
            empty(StatusCode::ACCEPTED)
        }
        _ => Err(Error::NoRoute),
    }
}

/// Where the client reached the repository: the name as its path spells it and the
/// `ns` it gave, so the URLs handed back lead to the same repository.
struct Place {
    repository: String,
    ns: Option<String>,
}

impl Place {
    fn of(request: &Parts) -> Place {
        let ns = route::namespace(request.uri.query()).ok().flatten();
        Place {
            repository: format!("/v2/{}", route::repository_name(request.uri.path())),
            ns: ns.map(|ns| ns.to_string()),
        }
    }

    fn blob(&self, digest: &crate::digest::Digest) -> String {
        self.with_query(format!("{}/blobs/{digest}", self.repository))
    }

    fn with_query(&self, path: String) -> String {
        match &self.ns {
            Some(ns) => format!("{path}?ns={ns}"),
            None => path,
        }
    }
}

/// An upload in progress: where to send the next chunk and how much is held.
fn uploading(status: StatusCode, at: &Place, progress: Progress) -> Result<Response<Body>, Error> {
    let location = at.with_query(format!("{}/blobs/uploads/{}", at.repository, progress.id));
    Response::builder()
        .status(status)
        .header(LOCATION, location)
        .header(RANGE, format!("0-{}", progress.size.saturating_sub(1)))
        .header(UPLOAD_UUID, progress.id.to_string())
        .header(CONTENT_LENGTH, 0)
        .body(body::empty())
        .map_err(|e| Error::Internal(e.to_string()))
}

fn created(location: &str, digest: &crate::digest::Digest) -> Result<Response<Body>, Error> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(LOCATION, location)
        .header(DIGEST_HEADER, digest.to_string())
        .header(CONTENT_LENGTH, 0)
        .body(body::empty())
        .map_err(|e| Error::Internal(e.to_string()))
}

fn empty(status: StatusCode) -> Result<Response<Body>, Error> {
    Response::builder()
        .status(status)
        .header(CONTENT_LENGTH, 0)
        .body(body::empty())
        .map_err(|e| Error::Internal(e.to_string()))
}

/// Where a chunk starts, from `Content-Range: <start>-<end>` (some clients write it as a
/// response's `bytes <start>-<end>/<total>`); none for a streamed chunk.
fn chunk_start(request: &Parts) -> Result<Option<u64>, Error> {
    let Some(value) = request.headers.get(CONTENT_RANGE) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    let text = text.strip_prefix("bytes ").unwrap_or(text);
    let range = text.split('/').next().unwrap_or(text);
    let parsed = range
        .split_once('-')
        .and_then(|(start, end)| Some((start.trim().parse::<u64>().ok()?, end.trim().parse::<u64>().ok()?)));
    match parsed {
        Some((start, end)) if end >= start => Ok(Some(start)),
        _ => Err(Error::BadRange(format!("Content-Range '{text}' is not <start>-<end>"))),
    }
}

/// The request body as the byte stream the hosted repositories take.
fn stream<B>(body: B) -> impl Stream<Item = std::io::Result<Bytes>> + Unpin
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let frames = TryStreamExt::map_err(BodyStream::new(body), |e| std::io::Error::other(e.into()));
    Box::pin(frames.filter_map(|frame| async move {
        match frame {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(e) => Some(Err(e)),
        }
    }))
}
