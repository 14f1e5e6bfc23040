//! Pushing to the mirror's hosted repositories as docker, containerd and oras do: requests
//! with bodies (whole, or streamed without a length), upload sessions, manifests (including
//! OCI artifacts with a `subject`), and a client that hangs up in the middle of a body.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::client::{Reply, REQUEST_TIMEOUT};
use super::content::{sha256, Blob, Image, Index, Manifest, OCI_MANIFEST};
use super::fake_registry::FakeRegistry;
use super::mirror::Mirror;

/// The hosted namespace the push tests configure.
pub const NAMESPACE: &str = "site.lan";

/// The media type of an empty config, for artifacts that have none (OCI image spec 1.1).
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

type Body = BoxBody<Bytes, Infallible>;

/// A fake Docker Hub, and a mirror of it that hosts `site.lan`.
pub async fn hosted_mirror() -> (FakeRegistry, Mirror) {
    let hub = FakeRegistry::start().await;
    let mirror = Mirror::builder(&hub).hosted(NAMESPACE).start().await;
    (hub, mirror)
}

/// Asserts the upstream was never asked about a hosted repository, under any spelling.
pub fn assert_never_asked_upstream(hub: &FakeRegistry, repos: &[&str]) {
    let asked: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(NAMESPACE) || repos.iter().any(|repo| r.path.contains(repo)))
        .collect();
    assert!(asked.is_empty(), "hosted repositories went upstream: {asked:#?}");
}

/// Sends `body` whole, with its `Content-Length`.
pub async fn send_body(mirror: &Mirror, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Reply {
    exchange(mirror, method, path, headers, Full::new(body).boxed()).await
}

/// Sends `chunks` as a body of unknown length (chunked transfer coding), as docker streams a
/// layer into a PATCH.
pub async fn send_streamed(mirror: &Mirror, method: Method, path: &str, chunks: Vec<Bytes>) -> Reply {
    let frames = futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, Infallible>(Frame::data(c))));
    exchange(mirror, method, path, &[], StreamBody::new(frames).boxed()).await
}

async fn exchange(mirror: &Mirror, method: Method, path: &str, headers: &[(&str, &str)], body: Body) -> Reply {
    let mut request = hyper::Request::builder().method(method.clone()).uri(mirror.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body).expect("test request is well-formed");
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| format!("{e:?}"));
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no complete reply within {REQUEST_TIMEOUT:?}: {path}"))
}

/// The path (and query) of a `Location`, absolute or not.
pub fn location_path(reply: &Reply) -> String {
    let location = reply
        .header("location")
        .unwrap_or_else(|| panic!("no Location: {reply:?}"));
    match location.split_once("://") {
        Some((_, rest)) => rest[rest.find('/').expect("path in absolute Location")..].to_owned(),
        None => location.to_owned(),
    }
}

/// `url` with one more query parameter.
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{key}={value}")
}

/// The byte count a `Range: 0-<last>` reports (`0-0` when nothing is held yet is ambiguous
/// by design of the protocol, so callers that care send more than one byte).
pub fn range_end(reply: &Reply) -> u64 {
    let range = reply.header("range").unwrap_or_else(|| panic!("no Range: {reply:?}"));
    let (start, end) = range
        .split_once('-')
        .unwrap_or_else(|| panic!("Range is <start>-<end>: {reply:?}"));
    assert_eq!(start, "0", "{reply:?}");
    end.parse()
        .unwrap_or_else(|_| panic!("Range end is a number: {reply:?}"))
}

/// An upload session the mirror opened.
pub struct Upload {
    /// Where the session lives: the `Location` of the POST, as a path.
    pub url: String,
    pub uuid: String,
}

impl Upload {
    /// `POST /v2/<name>/blobs/uploads/`, asserting the 202 and its headers.
    pub async fn start(mirror: &Mirror, name: &str) -> Upload {
        let reply = send_body(
            mirror,
            Method::POST,
            &format!("/v2/{name}/blobs/uploads/"),
            &[],
            Bytes::new(),
        )
        .await;
        Upload::from_reply(&reply, name)
    }

    /// The session a 202 opened; asserts its headers.
    pub fn from_reply(reply: &Reply, name: &str) -> Upload {
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        let url = location_path(reply);
        assert!(url.starts_with(&format!("/v2/{name}/blobs/uploads/")), "{reply:?}");
        let uuid = reply
            .header("docker-upload-uuid")
            .unwrap_or_else(|| panic!("no Docker-Upload-UUID: {reply:?}"))
            .to_owned();
        assert!(!uuid.is_empty(), "{reply:?}");
        assert_eq!(reply.header("range"), Some("0-0"), "{reply:?}");
        assert_eq!(reply.header("content-length"), Some("0"), "{reply:?}");
        Upload { url, uuid }
    }

    pub async fn patch(&self, mirror: &Mirror, start: u64, chunk: &Bytes) -> Reply {
        let range = format!("{start}-{}", start + chunk.len() as u64 - 1);
        let headers = [("content-type", "application/octet-stream"), ("content-range", &range)];
        send_body(mirror, Method::PATCH, &self.url, &headers, chunk.clone()).await
    }

    /// Asserts a PATCH's 202: the session's id, the range now held (`0-<held-1>`); and moves
    /// on to the `Location` it gives, as clients must.
    pub fn follow(&mut self, reply: &Reply, held: u64) {
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        assert_eq!(
            reply.header("docker-upload-uuid"),
            Some(self.uuid.as_str()),
            "{reply:?}"
        );
        assert_eq!(
            reply.header("range"),
            Some(format!("0-{}", held - 1).as_str()),
            "{reply:?}"
        );
        let url = location_path(reply);
        assert!(url.contains(&self.uuid), "the session keeps its id: {reply:?}");
        self.url = url;
    }

    pub async fn status(&self, mirror: &Mirror) -> Reply {
        mirror.get(&self.url).await
    }

    /// `PUT <session>?digest=<digest>` with `last` as the final chunk (may be empty).
    pub async fn finish(&self, mirror: &Mirror, digest: &str, last: Bytes) -> Reply {
        let headers = [("content-type", "application/octet-stream")];
        let url = with_query(&self.url, "digest", digest);
        send_body(mirror, Method::PUT, &url, &headers, last).await
    }
}

/// Asserts a 201 for a blob now stored in `name`.
pub fn assert_blob_created(reply: &Reply, name: &str, digest: &str) {
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    assert_eq!(location_path(reply), format!("/v2/{name}/blobs/{digest}"), "{reply:?}");
    assert_eq!(reply.header("docker-content-digest"), Some(digest), "{reply:?}");
}

/// Pushes `blob` as docker does when it has it whole: POST, then PUT with the bytes.
pub async fn push_blob(mirror: &Mirror, name: &str, blob: &Blob) {
    let upload = Upload::start(mirror, name).await;
    let reply = upload.finish(mirror, &blob.digest, blob.bytes.clone()).await;
    assert_blob_created(&reply, name, &blob.digest);
}

/// `PUT /v2/<name>/manifests/<reference>` with the manifest's media type.
pub async fn put_manifest(mirror: &Mirror, name: &str, reference: &str, manifest: &Manifest) -> Reply {
    let path = format!("/v2/{name}/manifests/{reference}");
    let headers = [("content-type", manifest.media_type)];
    send_body(mirror, Method::PUT, &path, &headers, manifest.bytes.clone()).await
}

/// Asserts a 201 for a manifest now stored in `name`.
pub fn assert_manifest_created(reply: &Reply, name: &str, manifest: &Manifest) {
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let digest = manifest.digest.as_str();
    assert_eq!(
        location_path(reply),
        format!("/v2/{name}/manifests/{digest}"),
        "{reply:?}"
    );
    assert_eq!(reply.header("docker-content-digest"), Some(digest), "{reply:?}");
}

/// Pushes an image's blobs, then its manifest as `reference`.
pub async fn push_image(mirror: &Mirror, name: &str, reference: &str, image: &Image) {
    for blob in image.blobs() {
        push_blob(mirror, name, blob).await;
    }
    let reply = put_manifest(mirror, name, reference, &image.manifest).await;
    assert_manifest_created(&reply, name, &image.manifest);
}

/// Pushes an index's children (untagged, by digest), then the index as `reference`.
pub async fn push_index(mirror: &Mirror, name: &str, reference: &str, index: &Index) {
    for (_, child) in &index.children {
        push_image(mirror, name, &child.manifest.digest, child).await;
    }
    let reply = put_manifest(mirror, name, reference, &index.manifest).await;
    assert_manifest_created(&reply, name, &index.manifest);
}

/// A manifest of any shape, with these exact bytes.
pub fn manifest(media_type: &'static str, value: &serde_json::Value) -> Manifest {
    let bytes = Bytes::from(serde_json::to_vec_pretty(value).expect("manifest JSON serialises"));
    Manifest {
        digest: sha256(&bytes),
        media_type,
        bytes,
    }
}

/// An OCI artifact (a signature, an SBOM) about `subject`: its manifest and its one blob.
/// `artifact_type` goes in `artifactType`, or, when `in_config`, only in the config's media
/// type, which the referrers API then reports instead.
pub fn artifact(subject: &Manifest, artifact_type: &str, in_config: bool) -> (Manifest, Blob, Blob) {
    let payload = Blob::new(super::content::random_bytes(300));
    let (config, config_type) = if in_config {
        (Blob::new(Bytes::from_static(b"{\"kind\":\"artifact\"}")), artifact_type)
    } else {
        (Blob::new(Bytes::from_static(b"{}")), EMPTY_CONFIG)
    };
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": config_type, "digest": config.digest, "size": config.bytes.len() },
        "layers": [{ "mediaType": "application/octet-stream", "digest": payload.digest, "size": payload.bytes.len() }],
        "subject": { "mediaType": subject.media_type, "digest": subject.digest, "size": subject.bytes.len() },
        "annotations": { "org.opencontainers.image.created": "2024-05-01T00:00:00Z" },
    });
    if !in_config {
        value["artifactType"] = json!(artifact_type);
    }
    (manifest(OCI_MANIFEST, &value), config, payload)
}

/// Sends a PATCH head announcing `declared` bytes, then only `sent`, then hangs up: a push
/// interrupted by a dropped connection.
pub async fn patch_and_hang_up(mirror: &Mirror, url: &str, declared: u64, sent: &[u8]) {
    let mut stream = TcpStream::connect(mirror.addr()).await.expect("connect to the mirror");
    let head = format!(
        "PATCH {url} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {declared}\r\n\r\n",
        mirror.addr()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(sent).await.expect("write part of the body");
    stream.flush().await.expect("flush");
    // Long enough for the server to have read what was sent before the connection goes.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drop(stream);
}
