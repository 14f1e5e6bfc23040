//! The shared store: an S3 bucket (Garage, MinIO, AWS) that every instance of a site reads
//! before its fleet or its upstream, and fills with what it fetched from the upstream.
//!
//! Only verified content goes in, and it goes in whole or not at all: a blob is uploaded from
//! the spool its fill checked against the digest, with one PutObject
//! or, past `multipart::PART_SIZE`, a multipart upload that S3 makes visible only when it is
//! completed. An upload cut short leaves no object; readers check the digest again anyway.
//!
//! Requests are signed by `rusty-s3`, which only builds presigned URLs: they are sent with
//! hyper like every other request here, so bodies stream both ways and nothing is buffered
//! beyond a manifest or a tag record.

mod inventory;
mod keys;
mod leftovers;
mod multipart;
mod request;

use std::time::Duration;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rusty_s3::{Credentials, UrlStyle};

use crate::body::Body;
use crate::config::BucketConfig;
pub use inventory::{Inventory, Listed, Verified};
pub use keys::Key;
pub use leftovers::{sweep, ABANDONED};
use request::{Endpoints, Payload};

/// How long a signed URL stays valid: long enough for the slowest part upload.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// The bucket's nodes are on the site: one that takes longer to accept a connection is as
/// good as down, and the next endpoint is asked instead.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("the bucket is unreachable: {0}")]
    Unreachable(String),
    #[error("the bucket answered {status} to {action} {key}")]
    Status {
        status: StatusCode,
        action: &'static str,
        key: String,
    },
    #[error("the bucket's answer to {action} {key}: {reason}")]
    Answer {
        action: &'static str,
        key: String,
        reason: String,
    },
    #[error("bucket: {0}")]
    Config(String),
    /// The local file being uploaded could not be read.
    #[error("the file to upload: {0}")]
    File(String),
}

pub struct Bucket {
    endpoints: Endpoints,
    credentials: Credentials,
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

/// An object's bytes as the bucket streams them.
pub struct Object {
    /// Bytes from the offset asked for to the end.
    pub len: Option<u64>,
    pub content_type: Option<String>,
    pub body: Incoming,
}

impl Bucket {
    pub fn new(config: &BucketConfig) -> Result<Bucket, Error> {
        let style = match config.virtual_host {
            true => UrlStyle::VirtualHost,
            false => UrlStyle::Path,
        };
        let endpoint = |url: &url::Url| {
            rusty_s3::Bucket::new(url.clone(), style, config.name.clone(), config.region.clone())
                .map_err(|e| Error::Config(format!("{url}: {e}")))
        };
        let all = std::iter::once(&config.endpoint).chain(&config.fallbacks);
        let creds = &config.credentials;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_WITHIN));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Bucket {
            endpoints: Endpoints::new(all.map(endpoint).collect::<Result<_, _>>()?),
            credentials: Credentials::new(creds.access_key_id.clone(), creds.secret_access_key.clone()),
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// The object's size; `None` when there is no such object.
    pub async fn size(&self, key: &Key) -> Result<Option<u64>, Error> {
        let head = |b, c| rusty_s3::actions::HeadObject::new(b, Some(c), key.as_str());
        let response = self.act(head, &[], Payload::Empty).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => Ok(Some(length(&response).unwrap_or_default())),
            status => Err(status_error(status, "HEAD", key)),
        }
    }

    /// The object from byte `offset`; `None` when there is no such object.
    pub async fn get(&self, key: &Key, offset: u64) -> Result<Option<Object>, Error> {
        let get = |b, c| rusty_s3::actions::GetObject::new(b, Some(c), key.as_str());
        let range = format!("bytes={offset}-");
        let headers: &[(header::HeaderName, &str)] = match offset {
            0 => &[],
            _ => &[(header::RANGE, &range)],
        };
        let response = self.act(get, headers, Payload::Empty).await?;
        match (response.status(), offset) {
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (StatusCode::OK, 0) | (StatusCode::PARTIAL_CONTENT, 1..) => {
                let content_type = response.headers().get(header::CONTENT_TYPE);
                let content_type = content_type.and_then(|v| v.to_str().ok()).map(str::to_owned);
                Ok(Some(Object {
                    len: length(&response),
                    content_type,
                    body: response.into_body(),
                }))
            }
            (status, _) => Err(status_error(status, "GET", key)),
        }
    }

    /// A small object read whole (a manifest, a tag record), refused past `limit` bytes.
    pub async fn read(&self, key: &Key, limit: usize) -> Result<Option<(Bytes, Option<String>)>, Error> {
        let Some(object) = self.get(key, 0).await? else {
            return Ok(None);
        };
        let answer = |reason: String| Error::Answer {
            action: "GET",
            key: key.to_string(),
            reason,
        };
        let collected = Limited::new(object.body, limit).collect().await;
        let bytes = collected.map_err(|e| answer(e.to_string()))?.to_bytes();
        if object.len.is_some_and(|len| len != bytes.len() as u64) {
            return Err(answer("the object ended short".into()));
        }
        Ok(Some((bytes, object.content_type)))
    }

    /// Stores small bytes whole under `key`.
    pub async fn put(&self, key: &Key, bytes: Bytes, content_type: Option<&str>) -> Result<(), Error> {
        let put = |b, c| rusty_s3::actions::PutObject::new(b, Some(c), key.as_str());
        let len = bytes.len().to_string();
        let mut headers = vec![(header::CONTENT_LENGTH, len.as_str())];
        headers.extend(content_type.map(|t| (header::CONTENT_TYPE, t)));
        let response = self.act(put, &headers, Payload::Bytes(bytes)).await?;
        expect_ok(&response, "PUT", key)
    }

    /// Uploads a verified file unless the object is there already (another instance put it);
    /// whether it uploaded.
    pub async fn upload_unless_there(&self, key: &Key, file: &std::fs::File, size: u64) -> Result<bool, Error> {
        if self.size(key).await?.is_some() {
            return Ok(false);
        }
        self.upload(key, file, size).await?;
        Ok(true)
    }

    /// Removes the object; gone already is fine.
    pub async fn delete(&self, key: &Key) -> Result<(), Error> {
        let delete = |b, c| rusty_s3::actions::DeleteObject::new(b, Some(c), key.as_str());
        let response = self.act(delete, &[], Payload::Empty).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(()),
            _ => expect_ok(&response, "DELETE", key),
        }
    }
}

/// Pauses before each new try of a failed write of content: a bucket node restarting, or a
/// cluster regaining its quorum, is back within the minute they span.
const RETRY_PAUSES_S: [u64; 6] = [1, 2, 4, 8, 16, 32];

/// `write` until it succeeds, tried again after each of `RETRY_PAUSES_S`: what it answered
/// last. Only for content (keys are digests): a retried write never puts back something older.
pub async fn retried<T, F, Fut>(write: F) -> Result<T, Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut result = write().await;
    for pause in RETRY_PAUSES_S {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(pause)).await;
        result = write().await;
    }
    result
}

/// The answer's `Content-Length`.
fn length(response: &Response<Incoming>) -> Option<u64> {
    let value = response.headers().get(header::CONTENT_LENGTH)?;
    value.to_str().ok()?.parse().ok()
}

/// An XML answer (a listing, a multipart step) as text, refused past `limit` bytes.
async fn answer_text(body: Incoming, action: &'static str, key: &Key, limit: usize) -> Result<String, Error> {
    let answer = |reason: String| Error::Answer {
        action,
        key: key.to_string(),
        reason,
    };
    let collected = Limited::new(body, limit).collect().await;
    let bytes = collected.map_err(|e| answer(e.to_string()))?.to_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|e| answer(e.to_string()))
}

/// A page of a listing: a thousand entries of a few hundred bytes each, with room to spare.
const LISTING_LIMIT: usize = 4 << 20;

fn expect_ok(response: &Response<Incoming>, action: &'static str, key: &Key) -> Result<(), Error> {
    match response.status() {
        status if status.is_success() => Ok(()),
        status => Err(status_error(status, action, key)),
    }
}

fn status_error(status: StatusCode, action: &'static str, key: &Key) -> Error {
    Error::Status {
        status,
        action,
        key: key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn refused() -> Error {
        Error::Unreachable("connection refused".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_is_tried_again_for_about_a_minute_then_given_up() {
        let tries = AtomicUsize::new(0);
        let third_time_lucky = || async {
            match tries.fetch_add(1, Ordering::Relaxed) {
                0 | 1 => Err(refused()),
                _ => Ok(()),
            }
        };
        assert!(retried(third_time_lucky).await.is_ok());
        assert_eq!(tries.load(Ordering::Relaxed), 3);

        let tries = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let never = || async {
            tries.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>(refused())
        };
        assert!(retried(never).await.is_err());
        assert_eq!(tries.load(Ordering::Relaxed), 1 + RETRY_PAUSES_S.len());
        assert_eq!(started.elapsed(), Duration::from_secs(63));
    }
}
