//! Redirects judged by where their target's name resolves, not only by an address written in
//! the URL: the upstream is reached by a name, and names resolve through a fixed table in the
//! mirror's config (`Dns::Fixed`), so no test depends on the machine's DNS or `/etc/hosts`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::LOCATION;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use regmirror::upstream::Dns;
use regmirror::Config;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::content::{random_bytes, Blob};
use crate::support::{FakeRegistry, Mirror};

/// An upstream that answers every request with a 307 to the same path on `target`, as a
/// registry sends blob requests to its storage; it counts what it was asked.
struct Redirector {
    port: u16,
    asked: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Redirector {
    async fn start(target: String) -> Redirector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (target, counter) = (target.clone(), Arc::clone(&counter));
                let service = service_fn(move |request: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let location = format!("{target}{}", request.uri().path());
                    let answer = Response::builder()
                        .status(StatusCode::TEMPORARY_REDIRECT)
                        .header(LOCATION, location)
                        .body(Empty::<Bytes>::new());
                    async move { answer }
                });
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new();
                    let _ = connection.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Redirector { port, asked, task }
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A mirror of the upstream at `registry.test` on `port`, with names resolving as `names` says.
async fn mirror_by_name(port: u16, names: &[(&str, &str)]) -> Mirror {
    let data_dir = tempfile::tempdir().unwrap();
    let upstream = format!("http://registry.test:{port}").parse().unwrap();
    let mut config = Config::new(upstream, data_dir.path().to_owned());
    let table = names
        .iter()
        .map(|(name, ip)| ((*name).to_owned(), ip.parse::<IpAddr>().unwrap()));
    config.dns = Dns::Fixed(table.collect());
    Mirror::from_config(config, data_dir).start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_name_that_resolves_link_local_is_refused_before_connecting() {
    let upstream = Redirector::start("http://metadata.test".to_owned()).await;
    let names = [("registry.test", "127.0.0.1"), ("metadata.test", "169.254.169.254")];
    let mirror = mirror_by_name(upstream.port, &names).await;
    let digest = Blob::new(random_bytes(1000)).digest;

    let reply = mirror.get(&format!("/v2/library/app/blobs/{digest}")).await;
    reply.assert_error(502, "UNAVAILABLE");
    let message = reply.json()["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("refused a redirect to metadata.test: it resolves only to 169.254.169.254 (link-local)"),
        "{message}"
    );
    assert!(upstream.asked() >= 1, "the upstream was reached by its name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_name_that_resolves_inward_is_followed_where_the_upstream_is_inward() {
    let storage = FakeRegistry::start().await;
    let blob = Blob::new(random_bytes(70_000));
    storage.add_blob("library/app", blob.bytes.clone());
    let storage_port = storage.uri().port_u16().unwrap();
    let upstream = Redirector::start(format!("http://storage.test:{storage_port}")).await;
    let names = [("registry.test", "127.0.0.1"), ("storage.test", "127.0.0.1")];
    let mirror = mirror_by_name(upstream.port, &names).await;

    mirror
        .get(&format!("/v2/library/app/blobs/{}", blob.digest))
        .await
        .assert_blob(&blob);
    assert!(upstream.asked() >= 1);
    assert_eq!(storage.blob_gets(&blob.digest), 1, "{:#?}", storage.requests());
}
