//! The client side of the tests: one request to a server, answered as a `Reply` whose body
//! is either the bytes or the read error, because several tests are about a body that must
//! *not* end cleanly. No pooling, and every request bounded by `REQUEST_TIMEOUT`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::content::{Blob, Manifest};

/// containerd's resolver Accept line (docs/protocol.md §8.2): every manifest type, then `*/*`.
pub const CONTAINERD_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, */*";

/// Upper bound on one request, headers and body, so a wedged server fails the test
/// instead of hanging it; seconds more than any transfer here needs on a loaded machine.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A response as the client saw it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Result<Bytes, String>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is visible ASCII"))
    }

    pub fn bytes(&self) -> &Bytes {
        match &self.body {
            Ok(bytes) => bytes,
            Err(error) => panic!("body read failed: {error}; reply: {self:?}"),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.bytes()).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts an OCI error reply: the status, a JSON body whose first error has `code`
    /// and a string message.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self.assert_error_body(&[code]);
    }

    /// Asserts `{"errors":[{"code":…,"message":…}]}` with a code from `codes`.
    pub fn assert_error_body(&self, codes: &[&str]) {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error content type: {self:?}"
        );
        let json = self.json();
        let first = &json["errors"][0];
        let code = first["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0].code: {self:?}"));
        assert!(
            codes.contains(&code),
            "code {code}, expected one of {codes:?}: {self:?}"
        );
        assert!(first["message"].is_string(), "errors[0].message is a string: {self:?}");
    }

    /// Asserts a 200 carrying exactly this manifest, with its digest, type and length.
    pub fn assert_manifest(&self, manifest: &Manifest) {
        self.assert_bytes(&manifest.bytes);
        self.assert_manifest_headers(manifest);
    }

    /// Asserts a HEAD reply for this manifest: the GET's headers, including its real
    /// `Content-Length` (hyper and axum have been known to send 0), and no body.
    pub fn assert_manifest_head(&self, manifest: &Manifest) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert!(self.bytes().is_empty(), "HEAD has no body: {self:?}");
        self.assert_manifest_headers(manifest);
    }

    fn assert_manifest_headers(&self, manifest: &Manifest) {
        assert_eq!(
            self.header("docker-content-digest"),
            Some(manifest.digest.as_str()),
            "{self:?}"
        );
        assert_eq!(self.header("content-type"), Some(manifest.media_type), "{self:?}");
        assert_eq!(
            self.header("content-length"),
            Some(manifest.bytes.len().to_string().as_str()),
            "{self:?}"
        );
    }

    /// Asserts a 200 carrying exactly this blob, with its digest and length.
    pub fn assert_blob(&self, blob: &Blob) {
        self.assert_bytes(&blob.bytes);
        assert_eq!(
            self.header("docker-content-digest"),
            Some(blob.digest.as_str()),
            "{self:?}"
        );
        assert_eq!(
            self.header("content-length"),
            Some(blob.bytes.len().to_string().as_str()),
            "{self:?}"
        );
    }

    /// Asserts a 200 with exactly `expected` as the body.
    pub fn assert_bytes(&self, expected: &[u8]) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert!(
            self.bytes()[..] == expected[..],
            "body differs ({} bytes, expected {})",
            self.bytes().len(),
            expected.len()
        );
    }
}

/// Bad bytes must not pass for good ones. The client must be able to tell: a body that
/// fails to read, a connection closed before any response, or an error status. A 2xx whose
/// body ends cleanly is a lie, whatever its bytes.
pub fn assert_not_delivered(outcome: &Result<Reply, String>) {
    if let Ok(reply) = outcome {
        let clean_success = reply.status.is_success() && reply.body.is_ok();
        assert!(
            !clean_success,
            "bad upstream bytes were delivered as a clean reply: {reply:?}"
        );
        assert!(reply.body.is_err() || reply.status.is_server_error(), "{reply:?}");
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match &self.body {
            Ok(bytes) if bytes.len() > 400 => format!("<{} bytes>", bytes.len()),
            Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Err(error) => format!("<read error: {error}>"),
        };
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .finish()
    }
}

pub async fn send(url: &str, method: Method, headers: &[(&str, &str)]) -> Reply {
    try_send(url, method.clone(), headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

pub async fn try_send(url: &str, method: Method, headers: &[(&str, &str)]) -> Result<Reply, String> {
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::new()).expect("test request is well-formed");
    let exchange = async {
        let response = client()
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| format!("{e:?}"));
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    // A hang is a failure in its own right, never an acceptable "not a clean body".
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no complete reply within {REQUEST_TIMEOUT:?}: {url}"))
}

// No pooling: every request gets its own connection, so one test's aborted body cannot
// leak into its next request, and dropping a response really closes the connection.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}
