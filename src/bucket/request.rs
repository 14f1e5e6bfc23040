//! How a request reaches the bucket: signed for one of its endpoints (the nodes of its
//! cluster, `--bucket` first, then `--bucket-fallback` in order) and sent there. A node that
//! cannot be reached is passed over for the next one at once, and for the requests after it;
//! the first endpoint is tried again after `PREFERRED_AGAIN`, since it is normally the node on
//! the same machine.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use rusty_s3::{Credentials, S3Action};
use url::Url;

use super::{Bucket, Error, SIGNED_FOR};
use crate::body::{self, Body};
use crate::sync::LockExt as _;
use crate::upstream::error_chain;

/// How long requests skip the first endpoint after it could not be reached.
const PREFERRED_AGAIN: Duration = Duration::from_secs(30);
/// How long a node may take to answer a request without a file to upload: a node that
/// accepts connections and answers nothing (overloaded, partitioned from its cluster) is
/// passed over like one that is down, rather than holding up the client behind the request.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// What a request carries, kept so that it can be sent again to the next endpoint.
pub(super) enum Payload<'f> {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of a local file from `start`.
    File {
        file: &'f std::fs::File,
        start: u64,
        len: u64,
    },
}

impl Payload<'_> {
    fn body(&self) -> Result<Body, Error> {
        Ok(match self {
            Payload::Empty => body::empty(),
            Payload::Bytes(bytes) => body::full(bytes.clone()),
            Payload::File { file, start, len } => {
                let reader = file.try_clone().map_err(|e| Error::File(e.to_string()))?;
                body::file(reader, *start, *len)
            }
        })
    }
}

/// The bucket as each node of its cluster addresses it, and which one requests go to first.
pub(super) struct Endpoints {
    all: Vec<rusty_s3::Bucket>,
    /// The endpoint requests start at, and since when it has been that one.
    current: Mutex<(usize, Instant)>,
}

impl Endpoints {
    /// `all` holds at least one endpoint (`Bucket::new` checks).
    pub fn new(all: Vec<rusty_s3::Bucket>) -> Endpoints {
        Endpoints {
            all,
            current: Mutex::new((0, Instant::now())),
        }
    }

    /// The first endpoint, the one the bucket is named by.
    pub fn first(&self) -> &rusty_s3::Bucket {
        &self.all[0]
    }

    /// Every endpoint, each with its index, from the one requests start at now.
    fn in_order(&self) -> impl Iterator<Item = (usize, &rusty_s3::Bucket)> {
        let mut current = self.current.locked();
        if current.0 != 0 && current.1.elapsed() >= PREFERRED_AGAIN {
            *current = (0, Instant::now());
        }
        let start = current.0;
        let n = self.all.len();
        (0..n).map(move |i| ((start + i) % n, &self.all[(start + i) % n]))
    }

    /// Requests start past `index` from now on, unless another request moved on already.
    fn unreachable(&self, index: usize) {
        let mut current = self.current.locked();
        if current.0 == index {
            *current = ((index + 1) % self.all.len(), Instant::now());
        }
    }
}

impl Bucket {
    /// Sends the action `make` builds for an endpoint, signed now, with the method it names.
    pub(super) async fn act<'a, A: S3Action<'a>>(
        &'a self,
        make: impl Fn(&'a rusty_s3::Bucket, &'a Credentials) -> A,
        headers: &[(header::HeaderName, &str)],
        payload: Payload<'_>,
    ) -> Result<Response<Incoming>, Error> {
        let sign = |endpoint| {
            let action = make(endpoint, &self.credentials);
            (action_method(&action), action.sign(SIGNED_FOR))
        };
        self.signed(sign, headers, payload).await
    }

    /// Sends what `sign` signed for an endpoint to it; to the next when it cannot be reached.
    pub(super) async fn signed<'a>(
        &'a self,
        sign: impl Fn(&'a rusty_s3::Bucket) -> (rusty_s3::Method, Url),
        headers: &[(header::HeaderName, &str)],
        payload: Payload<'_>,
    ) -> Result<Response<Incoming>, Error> {
        let mut answer = Err(Error::Unreachable("no endpoint".into()));
        for (index, endpoint) in self.endpoints.in_order() {
            let (method, url) = sign(endpoint);
            let sent = self.send(method, url, headers, payload.body()?);
            answer = match payload {
                // An upload's answer comes once its body is in, however long that takes.
                Payload::File { .. } => sent.await,
                _ => tokio::time::timeout(ANSWER_WITHIN, sent)
                    .await
                    .unwrap_or_else(|_| Err(Error::Unreachable(format!("no answer within {ANSWER_WITHIN:?}")))),
            };
            match &answer {
                Err(Error::Unreachable(reason)) => {
                    tracing::warn!(endpoint = %endpoint.base_url(), reason, "bucket endpoint unreachable");
                    self.endpoints.unreachable(index);
                }
                _ => break,
            }
        }
        answer
    }

    async fn send(
        &self,
        method: rusty_s3::Method,
        url: Url,
        headers: &[(header::HeaderName, &str)],
        body: Body,
    ) -> Result<Response<Incoming>, Error> {
        let mut request = Request::builder().method(method.to_str()).uri(url.as_str());
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|e| Error::Config(e.to_string()))?;
            request = request.header(name, value);
        }
        let request = request.body(body).map_err(|e| Error::Config(e.to_string()))?;
        let response = self.client.request(request).await;
        response.map_err(|e| Error::Unreachable(error_chain(&e)))
    }
}

/// The method an action is signed for (`S3Action::METHOD`, named through a value so that
/// `impl Trait` arguments need no type name).
pub(super) fn action_method<'a, A: S3Action<'a>>(_: &A) -> rusty_s3::Method {
    A::METHOD
}

#[cfg(test)]
mod tests {
    use rusty_s3::UrlStyle;

    use super::*;

    fn endpoints(n: u16) -> Endpoints {
        let bucket = |port| {
            let url = format!("http://127.0.0.1:{port}").parse().expect("url");
            rusty_s3::Bucket::new(url, UrlStyle::Path, "b", "garage").expect("bucket")
        };
        Endpoints::new((1..=n).map(bucket).collect())
    }

    fn order(endpoints: &Endpoints) -> Vec<usize> {
        endpoints.in_order().map(|(index, _)| index).collect()
    }

    #[test]
    fn requests_move_past_an_unreachable_endpoint_once() {
        let endpoints = endpoints(3);
        assert_eq!(order(&endpoints), [0, 1, 2]);
        endpoints.unreachable(0);
        assert_eq!(order(&endpoints), [1, 2, 0]);
        // A request that started before the move found the same node down: no second move.
        endpoints.unreachable(0);
        assert_eq!(order(&endpoints), [1, 2, 0]);
        endpoints.unreachable(1);
        endpoints.unreachable(2);
        assert_eq!(order(&endpoints), [0, 1, 2]);
    }
}
