//! The accept loop: one for TLS and plain HTTP alike, HTTP/1.1 and HTTP/2, with a request log
//! line per request and a graceful shutdown that lets transfers in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::api::{self, App};
use crate::body::Body;
use crate::certs;
use crate::config::Config;
use crate::mirror::{Mirror, Source};
use crate::{notify, tls};

/// A client gets this long to send its request headers, so an idle or silent connection
/// cannot hold a task forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("cannot open the cache in the data directory: {0}")]
    Cache(#[from] std::io::Error),
}

/// Serves until `shutdown` completes, then waits (up to a grace period) for open connections.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let tls = tls::setup(&config.tls)?;
    let acceptor = tls.acceptor;
    let loading = Instant::now();
    let mirror = Mirror::new(&config)?;
    let index_ms = loading.elapsed().as_millis() as u64;
    let app = Arc::new(App {
        mirror,
        ca_cert: tls.ca.as_ref().map(|ca| Bytes::from(ca.pem.clone())),
    });
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        upstream = %config.upstream,
        data_dir = %config.data_dir.display(),
        cached = app.mirror.cached_entries(),
        index_ms,
        tls = acceptor.is_some(),
        "regmirror ready"
    );
    if let Some(ca) = &tls.ca {
        let host = certs::machine_hostname().unwrap_or_else(|| "localhost".into());
        tracing::info!(
            mirror = %format!("https://{host}:{}", local.port()),
            ca = %ca.path.display(),
            fingerprint = %ca.fingerprint,
            "clients trust the mirror by installing its CA (also served at /ca.crt)"
        );
    }
    notify::ready();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let connection = Connection { app: app.clone(), builder: builder.clone(), watcher: graceful.watcher(), peer };
                    tokio::spawn(connection.serve(stream, acceptor.clone()));
                }
                // Out of file descriptors, typically: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    notify::stopping();
    drop(listener);
    tracing::info!(
        open = graceful.count(),
        "shutting down; letting transfers in flight finish"
    );
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over; closing the remaining connections");
    }
    Ok(())
}

struct Connection {
    app: Arc<App>,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    peer: SocketAddr,
}

impl Connection {
    async fn serve(self, stream: TcpStream, acceptor: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        match acceptor {
            None => self.serve_io(stream).await,
            Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => self.serve_io(stream).await,
                Ok(Err(e)) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
            },
        }
    }

    async fn serve_io<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app;
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(serve_request(&app, request).await) }
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service).into_owned();
        if let Err(e) = self.watcher.watch(connection).await {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}

async fn serve_request(app: &App, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let mut response = api::handle(app, &request).await;
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    tracing::info!(
        method = %request.method(),
        path = %request.uri().path_and_query().map_or("/", |p| p.as_str()),
        status = response.status().as_u16(),
        bytes = length.unwrap_or(0),
        cache = response.extensions().get::<Source>().map_or("-", |s| s.label()),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
