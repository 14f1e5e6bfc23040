//! A client that reads a response body at its own pace, for tests about what happens
//! *while* a transfer runs: the first bytes arriving before the upstream is done, a client
//! hanging up mid-body, a reader slower than an eviction.
//!
//! Its socket has a small receive buffer, so a client that stops reading soon stops the
//! server's writes too, instead of the kernel quietly taking the whole body off its hands.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::client::REQUEST_TIMEOUT;

const RECEIVE_BUFFER: usize = 16 * 1024;

pub struct Streaming {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    received: BytesMut,
}

impl Streaming {
    /// Sends the request and waits for the response head only.
    pub async fn open(url: &str, method: Method, headers: &[(&str, &str)]) -> Streaming {
        let mut request = hyper::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .expect("test request is well-formed");
        let mut connector = HttpConnector::new();
        connector.set_recv_buffer_size(Some(RECEIVE_BUFFER));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
            .await
            .unwrap_or_else(|_| panic!("no response head within {REQUEST_TIMEOUT:?}: {url}"))
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        let (parts, body) = response.into_parts();
        Streaming {
            status: parts.status,
            headers: parts.headers,
            body,
            received: BytesMut::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is visible ASCII"))
    }

    /// Reads until at least `len` body bytes have arrived in all; panics if the body ends,
    /// fails or stalls first.
    pub async fn read_at_least(&mut self, len: usize) {
        let read = async {
            while self.received.len() < len {
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.received.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => panic!("body failed after {} bytes: {e:?}", self.received.len()),
                    None => panic!("body ended after {} bytes, wanted {len}", self.received.len()),
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("fewer than {len} body bytes within {REQUEST_TIMEOUT:?}"));
    }

    /// Reads the rest: the whole body, or the read error that ended it. Panics if it takes
    /// longer than `within`.
    pub async fn finish_within(mut self, within: Duration) -> Result<Bytes, String> {
        let read = async {
            while let Some(frame) = self.body.frame().await {
                let frame = frame.map_err(|e| format!("{e:?}"))?;
                if let Ok(data) = frame.into_data() {
                    self.received.extend_from_slice(&data);
                }
            }
            Ok(std::mem::take(&mut self.received).freeze())
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("body neither ended nor failed within {within:?}"))
    }

    /// Like `finish_within`, but pausing `pause` after every frame: a client slower than the
    /// server, so a transfer is still under way whatever happens meanwhile.
    pub async fn finish_slowly(mut self, pause: Duration, within: Duration) -> Result<Bytes, String> {
        let read = async {
            while let Some(frame) = self.body.frame().await {
                let frame = frame.map_err(|e| format!("{e:?} after {} bytes", self.received.len()))?;
                if let Ok(data) = frame.into_data() {
                    self.received.extend_from_slice(&data);
                }
                tokio::time::sleep(pause).await;
            }
            Ok(std::mem::take(&mut self.received).freeze())
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("body neither ended nor failed within {within:?}"))
    }

    pub async fn finish(self) -> Result<Bytes, String> {
        self.finish_within(REQUEST_TIMEOUT).await
    }
}
