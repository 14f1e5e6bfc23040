//! The accept loop: one for TLS and plain HTTP alike, HTTP/1.1 and HTTP/2, with a request log
//! line and metrics per request, a certificate reload on request (SIGHUP), and a graceful
//! shutdown that lets transfers in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::header::CONTENT_LENGTH;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use crate::access::{self, Access};
use crate::api::route::RouteKind;
use crate::api::{self, App, Peer, Role};
use crate::body::Body;
use crate::certs;
use crate::config::{Config, Tls};
use crate::metrics::{Metrics, Origin, RequestLabels};
use crate::mirror::Source;
use crate::registries::Registries;
use crate::sync::RwLockExt;
use crate::{notify, tls};

/// A client gets this long to send its request headers, so an idle or silent connection
/// cannot hold a task forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");

/// A request's number in the log, in hex, written straight into the span without a `String`.
struct RequestId(u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error(transparent)]
    Access(#[from] access::Error),
    #[error("cannot set up the mirror: {0}")]
    Setup(#[from] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// With upstream credentials, what the cache holds may be some account's private content:
/// the data directory is then closed to other local users, whatever umask made it.
fn keep_private(config: &Config) -> std::io::Result<()> {
    if config.all_registries().iter().any(|r| r.credentials.is_some()) {
        std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Serves until `shutdown` completes, then waits (up to the grace period) for open connections.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (_never, reload) = mpsc::channel(1);
    run_with_reload(listener, config, shutdown, reload).await
}

/// As `run`; each message on `reload` re-reads the TLS certificate and key, which new
/// connections then use while open ones keep theirs.
pub async fn run_with_reload(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reload: mpsc::Receiver<()>,
) -> Result<(), Error> {
    let setup = tls::setup(&config.tls, config.client_auth().as_ref())?;
    let access = Access::new(&config.access, &config.data_dir.join("certs").join("token.key"))?;
    let acceptor = Arc::new(RwLock::new(setup.acceptor));
    let loading = Instant::now();
    let registries = Registries::new(&config)?;
    keep_private(&config)?;
    let index_ms = loading.elapsed().as_millis() as u64;
    let host = certs::machine_hostname().unwrap_or_else(|| "localhost".into());
    let address = format!("{host}:{}", listener.local_addr()?.port());
    let app = Arc::new(App {
        registries,
        access,
        ca: setup.ca,
        address,
        tls: !matches!(config.tls, Tls::Off),
    });
    let admin = bind_admin(config.admin_listen).await?;
    announce(&config, &listener, admin.as_ref(), &app, index_ms)?;
    notify::ready();

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let main_role = if admin.is_some() { Role::Pull } else { Role::All };
    let mut reloads_open = true;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let tls = acceptor.read_locked().clone();
                let connection = Connection { app: app.clone(), builder: builder.clone(), watcher: graceful.watcher(), role: main_role };
                connection.spawn(accepted, tls).await;
            }
            accepted = accept_admin(admin.as_ref()) => {
                let connection = Connection { app: app.clone(), builder: builder.clone(), watcher: graceful.watcher(), role: Role::Admin };
                connection.spawn(accepted, None).await;
            }
            message = reload.recv(), if reloads_open => match message {
                Some(()) => reload_tls(&config, &acceptor),
                None => reloads_open = false,
            },
            () = &mut shutdown => break,
        }
    }
    notify::stopping();
    drop(listener);
    drop(admin);
    drain(&config, graceful, &app).await;
    Ok(())
}

/// Lets the connections and blob commits in flight finish, each within the grace period.
async fn drain(config: &Config, graceful: GracefulShutdown, app: &App) {
    tracing::info!(
        open = graceful.count(),
        "shutting down; letting transfers in flight finish"
    );
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?config.shutdown_grace, "grace period over; closing the remaining connections");
    }
    if tokio::time::timeout(config.shutdown_grace, app.registries.settle())
        .await
        .is_err()
    {
        tracing::warn!("blob commits still under way at exit; those blobs are not cached");
    }
}

async fn bind_admin(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, Error> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr).await;
    listener.map(Some).map_err(|source| Error::Listen { addr, source })
}

async fn accept_admin(admin: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match admin {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

fn announce(
    config: &Config,
    listener: &TcpListener,
    admin: Option<&TcpListener>,
    app: &App,
    index_ms: u64,
) -> Result<(), Error> {
    let local = listener.local_addr()?;
    let admin = admin.map(TcpListener::local_addr).transpose()?;
    tracing::info!(
        listen = %local,
        admin = ?admin,
        upstream = %config.upstream,
        data_dir = %config.data_dir.display(),
        cached = app.registries.cached_entries(),
        index_ms,
        tls = !matches!(config.tls, crate::config::Tls::Off),
        "regmirror ready"
    );
    if let Some(ca) = &app.ca {
        let host = certs::machine_hostname().unwrap_or_else(|| "localhost".into());
        tracing::info!(
            mirror = %format!("https://{host}:{}", local.port()),
            ca = %ca.path.display(),
            fingerprint = %ca.fingerprint,
            "clients trust the mirror by installing its CA (also served at /ca.crt)"
        );
    }
    Ok(())
}

/// A failed reload keeps the certificate in use: a typo in a renewed key must not take the
/// mirror down.
fn reload_tls(config: &Config, acceptor: &RwLock<Option<TlsAcceptor>>) {
    match tls::setup(&config.tls, config.client_auth().as_ref()) {
        Ok(setup) => {
            *acceptor.write_locked() = setup.acceptor;
            tracing::info!("reloaded the TLS certificate; new connections use it");
        }
        Err(e) => tracing::error!(error = %e, "cannot reload the TLS certificate; keeping the current one"),
    }
}

struct Connection {
    app: Arc<App>,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    role: Role,
}

impl Connection {
    async fn spawn(self, accepted: std::io::Result<(TcpStream, SocketAddr)>, tls: Option<TlsAcceptor>) {
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(self.serve(stream, peer, tls));
            }
            // Out of file descriptors, typically: back off instead of spinning.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn serve(self, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        match tls {
            None => {
                self.serve_io(
                    stream,
                    Peer {
                        ip: peer.ip(),
                        certificate_user: None,
                    },
                )
                .await
            }
            Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let certificate_user = tls::client_name(stream.get_ref().1.peer_certificates());
                    self.serve_io(
                        stream,
                        Peer {
                            ip: peer.ip(),
                            certificate_user,
                        },
                    )
                    .await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            },
        }
    }

    async fn serve_io<I>(self, io: I, peer: Peer)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, role, client) = (self.app, self.role, peer.clone());
        let service = service_fn(move |request| {
            let (app, peer) = (app.clone(), client.clone());
            let span = tracing::info_span!("request", id = %RequestId(REQUEST_IDS.fetch_add(1, Ordering::Relaxed)));
            async move { Ok::<_, Infallible>(serve_request(&app, role, &peer, request).await) }.instrument(span)
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service).into_owned();
        if let Err(e) = self.watcher.watch(connection).await {
            tracing::debug!(peer = %peer.ip, error = %e, "connection ended with an error");
        }
    }
}

async fn serve_request(app: &App, role: Role, peer: &Peer, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let (request, body) = request.into_parts();
    let response = api::handle(app, role, peer, &request, body).await;
    let response = account(app.registries.metrics(), response);
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    tracing::info!(
        method = %request.method,
        path = %request.uri.path_and_query().map_or("/", |p| p.as_str()),
        status = response.status().as_u16(),
        bytes = length.unwrap_or(0),
        cache = response.extensions().get::<Source>().map_or("-", |s| s.label()),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// Counts the request, its hit or miss, and the body bytes as they actually go out.
fn account(metrics: &Arc<Metrics>, response: Response<Body>) -> Response<Body> {
    let route = response.extensions().get::<RouteKind>().copied();
    let route = route.unwrap_or(RouteKind::Invalid);
    let status = response.status().as_u16();
    let labels = RequestLabels {
        route: route.as_str(),
        status,
    };
    metrics.requests.get_or_create(&labels).inc();
    let source = response.extensions().get::<Source>().copied();
    let content = route.is_content();
    let origin = match source {
        Some(Source::Cache | Source::Stale) if content => Some(Origin::Cache),
        Some(Source::Upstream) if content => Some(Origin::Upstream),
        _ => None,
    };
    match origin {
        Some(Origin::Cache) => metrics.cache_hits.inc(),
        Some(Origin::Upstream) => metrics.cache_misses.inc(),
        None => 0,
    };
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    // Whatever a body is, a browser takes the declared type for it, never a guess: an upstream
    // blob or manifest must not turn into a page of the mirror's origin.
    parts
        .headers
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let Some(origin) = origin else {
        return Response::from_parts(parts, body);
    };
    let metrics = metrics.clone();
    let body = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            metrics.served(origin, data.len() as u64);
        }
        frame
    });
    Response::from_parts(parts, BodyExt::boxed_unsync(body))
}
