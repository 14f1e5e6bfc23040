//! Every way a request can fail, and the one place they become HTTP: a status, an OCI error
//! code and a JSON body `{"errors":[{"code","message"}]}`.
//!
//! Errors are classed as the client's (4xx), the upstream's (429/502/503, or an `*_UNKNOWN`
//! 404 when the upstream has no such content) or the mirror's own (500).

use http::header::{CONTENT_RANGE, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::access::Refusal;
use crate::body::{self, Body};
use crate::digest;
use crate::hosted;
use crate::mirror::{self, Busy, Cap};
use crate::upstream;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid repository name")]
    NameInvalid,
    #[error("invalid tag")]
    TagInvalid,
    #[error("invalid digest: {0}")]
    DigestInvalid(#[from] digest::Error),
    #[error("pushes and deletes go only to hosted repositories; mirrored ones are read-only")]
    Unsupported,
    #[error("upload unknown")]
    UploadUnknown,
    #[error(transparent)]
    Hosted(#[from] hosted::Error),
    #[error("a manifest is at most {} bytes", crate::manifest::MAX_SIZE)]
    ManifestTooLarge,
    #[error("{0}")]
    BadDigest(String),
    #[error("{0}")]
    BadRange(String),
    #[error("no such endpoint")]
    NoRoute,
    #[error("{0}")]
    Unauthorized(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("this gateway does not mirror that registry")]
    RegistryUnknown,
    #[error("manifest unknown: its media type is not in the request's Accept header")]
    NotAcceptable,
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error(transparent)]
    Mirror(#[from] mirror::Error),
    #[error("cannot build the response: {0}")]
    Internal(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("too many wrong passwords from this address; try again in {} s", retry_after.as_secs())]
    TooManyFailures { retry_after: std::time::Duration },
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        match refusal {
            Refusal::Unauthenticated(why) => Error::Unauthorized(why),
            Refusal::Denied(why) => Error::Denied(why),
            Refusal::TooManyFailures { retry_after } => Error::TooManyFailures { retry_after },
        }
    }
}

impl Error {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::NameInvalid => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            Error::TagInvalid => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            Error::DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            Error::Unsupported => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            Error::UploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            Error::Hosted(e) => hosted_status(e),
            Error::ManifestTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            Error::BadDigest(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            Error::BadRange(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
            Error::NoRoute => (StatusCode::NOT_FOUND, "UNSUPPORTED"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Error::Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
            Error::RegistryUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            Error::NotAcceptable => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            Error::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
            Error::Mirror(e) => mirror_status(e),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
            Error::TooManyFailures { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let body = json!({ "errors": [{ "code": code, "message": self.to_string() }] }).to_string();
        let mut response = Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_LENGTH, body.len());
        match &self {
            Error::Mirror(mirror::Error::Upstream(upstream::Error::RateLimited {
                retry_after: Some(value),
            })) => {
                response = response.header(RETRY_AFTER, value.clone());
            }
            Error::TooManyFailures { retry_after } | Error::Mirror(mirror::Error::Busy(Busy { retry_after, .. })) => {
                response = response.header(RETRY_AFTER, retry_after.as_secs());
            }
            Error::Unauthorized(_) => {
                response = response.header(WWW_AUTHENTICATE, r#"Basic realm="regmirror""#);
            }
            Error::RangeNotSatisfiable { size } => {
                response = response.header(CONTENT_RANGE, format!("bytes */{size}"));
            }
            // What the upload holds, so the client resumes from there.
            Error::Hosted(hosted::Error::OutOfOrder { held, .. }) => {
                response = response.header(http::header::RANGE, format!("0-{}", held.saturating_sub(1)));
            }
            _ => {}
        }
        response.body(body::full(body)).unwrap_or_else(|_| fallback())
    }
}

fn mirror_status(error: &mirror::Error) -> (StatusCode, &'static str) {
    match error {
        mirror::Error::NameUnknown | mirror::Error::OfflineTags => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        mirror::Error::ManifestUnknown | mirror::Error::OfflineManifest => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        mirror::Error::BlobUnknown | mirror::Error::OfflineBlob => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        mirror::Error::BadManifest(_) => (StatusCode::BAD_GATEWAY, "UNAVAILABLE"),
        // Content the mirror holds and will not read: neither the client's fault nor the upstream's.
        mirror::Error::ManifestTooLarge(_) => (StatusCode::INTERNAL_SERVER_ERROR, "MANIFEST_INVALID"),
        mirror::Error::Upstream(e) => upstream_status(e),
        mirror::Error::Cache(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        // One client asking for too much is that client's to slow down; a mirror busy with
        // everyone's transfers is unavailable for a while.
        mirror::Error::Busy(busy) => match busy.cap {
            Cap::Address => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
            Cap::Overall => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        },
    }
}

fn hosted_status(error: &hosted::Error) -> (StatusCode, &'static str) {
    use hosted::Error as E;
    match error {
        E::NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        E::ManifestUnknown => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        E::BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        E::UploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        E::DigestMismatch { .. } => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        E::OutOfOrder { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        E::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
        E::DiskFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN"),
        E::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        E::ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
        E::Interrupted(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        E::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        E::ManifestTooLarge(_) => (StatusCode::INTERNAL_SERVER_ERROR, "MANIFEST_INVALID"),
        E::Bucket(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
    }
}

fn upstream_status(error: &upstream::Error) -> (StatusCode, &'static str) {
    match error {
        upstream::Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        upstream::Error::Unreachable(_) | upstream::Error::Tls { .. } | upstream::Error::Timeout(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        }
        upstream::Error::NotFound | upstream::Error::Denied => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        upstream::Error::Status(_)
        | upstream::Error::Protocol(_)
        | upstream::Error::Token(_)
        | upstream::Error::Stale => (StatusCode::BAD_GATEWAY, "UNAVAILABLE"),
    }
}

/// Only reachable if a header built above were invalid, which the types rule out.
fn fallback() -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_error(e: upstream::Error) -> Error {
        Error::Mirror(mirror::Error::Upstream(e))
    }

    #[test]
    fn codes_and_statuses() {
        let check = |e: Error, status: u16, code: &str| {
            assert_eq!(
                e.status_and_code(),
                (StatusCode::from_u16(status).expect("status"), code)
            )
        };
        check(Error::NameInvalid, 400, "NAME_INVALID");
        check(Error::Unsupported, 405, "UNSUPPORTED");
        check(mirror::Error::OfflineManifest.into(), 404, "MANIFEST_UNKNOWN");
        check(mirror::Error::OfflineBlob.into(), 404, "BLOB_UNKNOWN");
        check(Error::RegistryUnknown, 404, "NAME_UNKNOWN");
        let too_large = crate::cache::store::TooLarge {
            digest: crate::digest::Digest::sha256_of(b"huge"),
            size: 5 << 20,
        };
        check(
            mirror::Error::ManifestTooLarge(too_large).into(),
            500,
            "MANIFEST_INVALID",
        );
        let from_upstream = |e, unknown| Error::from(mirror::Error::from_upstream(e, unknown));
        check(
            from_upstream(upstream::Error::Denied, mirror::Error::ManifestUnknown),
            404,
            "MANIFEST_UNKNOWN",
        );
        check(
            from_upstream(upstream::Error::NotFound, mirror::Error::BlobUnknown),
            404,
            "BLOB_UNKNOWN",
        );
        check(
            upstream_error(upstream::Error::Unreachable("refused".into())),
            503,
            "UNAVAILABLE",
        );
        check(
            upstream_error(upstream::Error::Tls {
                reason: "invalid peer certificate: UnknownIssuer".into(),
                trust: "the public web roots".into(),
            }),
            503,
            "UNAVAILABLE",
        );
        check(
            upstream_error(upstream::Error::RateLimited { retry_after: None }),
            429,
            "TOOMANYREQUESTS",
        );
        check(
            upstream_error(upstream::Error::Status(StatusCode::INTERNAL_SERVER_ERROR)),
            502,
            "UNAVAILABLE",
        );
    }

    #[test]
    fn transfer_caps_answer_429_for_the_address_and_503_for_the_mirror_with_retry_after() {
        for (cap, status, code) in [
            (Cap::Address, 429, "TOOMANYREQUESTS"),
            (Cap::Overall, 503, "UNAVAILABLE"),
        ] {
            let busy = Busy {
                cap,
                limit: 16,
                retry_after: std::time::Duration::from_secs(10),
            };
            let e = Error::from(mirror::Error::Busy(busy));
            assert_eq!(
                e.status_and_code(),
                (StatusCode::from_u16(status).expect("status"), code)
            );
            assert_eq!(e.into_response().headers()[RETRY_AFTER], "10");
        }
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let e = upstream_error(upstream::Error::RateLimited {
            retry_after: Some(HeaderValue::from_static("30")),
        });
        let response = e.into_response();
        assert_eq!(response.headers()[RETRY_AFTER], "30");
    }
}
