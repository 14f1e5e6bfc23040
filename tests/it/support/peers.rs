//! Clients at other addresses than 127.0.0.1: the whole of 127.0.0.0/8 is loopback on Linux,
//! so a client bound to 127.0.0.2 reaches the mirror as a second machine would, for what the
//! mirror counts per client address.

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::client::{Reply, REQUEST_TIMEOUT};
use super::Mirror;

/// 127.0.0.`n`.
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// GETs `path` from a client bound to `from`; the whole reply, as `Mirror::get` gives it.
pub async fn get_from(mirror: &Mirror, from: IpAddr, path: &str) -> Reply {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(from));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let request = hyper::Request::builder()
        .method(Method::GET)
        .uri(mirror.url(path))
        .body(Empty::new())
        .expect("test request is well-formed");
    let exchange = async {
        let response = client.request(request).await.expect("a response head");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map(|c| c.to_bytes()).map_err(|e| format!("{e:?}"));
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no complete reply within {REQUEST_TIMEOUT:?}: {path} from {from}"))
}
