//! The accept loop: one for TLS and plain HTTP alike, HTTP/1.1 and HTTP/2, with caps on open
//! connections, a request log line and metrics per request, a certificate reload on request
//! (SIGHUP), and a graceful shutdown that lets transfers in flight finish.

mod activity;
mod connection;
mod limits;
mod request;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use self::connection::{Connection, Phase};
use self::limits::Connections;
use crate::access::{self, Access};
use crate::api::{App, Role};
use crate::certs;
use crate::config::{Config, Tls};
use crate::registries::Registries;
use crate::sync::RwLockExt;
use crate::{notify, tls};

/// A client that has begun a request's headers gets this long to finish them.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// An HTTP/2 connection is pinged this often, and closed when a ping goes unanswered this
/// long: a client gone without a word does not keep its streams open.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// File descriptors beyond the connection cap: cache files, the upstream's sockets, logs.
const SPARE_FILES: u64 = 256;

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
    reload: mpsc::Receiver<()>,
) -> Result<(), Error> {
    let setup = tls::setup(&config.tls, config.client_auth().as_ref())?;
    let access = Access::new(&config.access, &config.data_dir.join("certs").join("token.key"))?;
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
    raise_file_limit(&config);
    let server = Server::new(&config, app, setup.acceptor, admin.is_some());
    notify::ready();
    server.accept(listener, admin, shutdown, reload).await;
    notify::stopping();
    server.drain().await;
    Ok(())
}

/// What every connection is served with.
struct Server {
    config: Config,
    app: Arc<App>,
    acceptor: RwLock<Option<TlsAcceptor>>,
    builder: auto::Builder<TokioExecutor>,
    /// Set when the mirror stops: open connections then close once their requests are done.
    stopping: watch::Sender<Phase>,
    main: Arc<Connections>,
    /// The admin listener's own caps, so a flood on the main one cannot blind monitoring.
    admin: Arc<Connections>,
    main_role: Role,
}

impl Server {
    fn new(config: &Config, app: Arc<App>, acceptor: Option<TlsAcceptor>, split_admin: bool) -> Server {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT);
        let metrics = app.registries.metrics().clone();
        Server {
            config: config.clone(),
            acceptor: RwLock::new(acceptor),
            builder,
            stopping: watch::Sender::new(Phase::Serving),
            main: Connections::new(config.connections, metrics.clone()),
            admin: Connections::new(config.connections, metrics),
            main_role: if split_admin { Role::Pull } else { Role::All },
            app,
        }
    }

    async fn accept(
        &self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
        mut reload: mpsc::Receiver<()>,
    ) {
        let mut reloads_open = true;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let tls = self.acceptor.read_locked().clone();
                    self.spawn(accepted, &self.main, self.main_role, tls).await;
                }
                accepted = accept_admin(admin.as_ref()) => self.spawn(accepted, &self.admin, Role::Admin, None).await,
                message = reload.recv(), if reloads_open => match message {
                    Some(()) => reload_tls(&self.config, &self.acceptor),
                    None => reloads_open = false,
                },
                () = &mut shutdown => break,
            }
        }
    }

    async fn spawn(
        &self,
        accepted: std::io::Result<(TcpStream, SocketAddr)>,
        connections: &Arc<Connections>,
        role: Role,
        tls: Option<TlsAcceptor>,
    ) {
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // Out of file descriptors, typically: back off instead of spinning.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        };
        let slot = match connections.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::debug!(%peer, cap = refusal.label(), "connection refused: too many open");
                self.app.registries.metrics().connection_refused(refusal.label());
                return;
            }
        };
        let connection = Connection {
            app: self.app.clone(),
            builder: self.builder.clone(),
            stopping: self.stopping.subscribe(),
            role,
            limits: self.config.connections,
            _slot: slot,
        };
        tokio::spawn(connection.serve(stream, peer, tls));
    }

    /// Lets the connections and blob commits in flight finish, each within the grace period.
    async fn drain(&self) {
        let grace = self.config.shutdown_grace;
        let open = self.main.open() + self.admin.open();
        tracing::info!(open, "shutting down; letting transfers in flight finish");
        self.stopping.send_replace(Phase::Draining);
        let closed = async { tokio::join!(self.main.all_closed(), self.admin.all_closed()) };
        if tokio::time::timeout(grace, closed).await.is_err() {
            tracing::warn!(?grace, "grace period over; closing the remaining connections");
            self.stopping.send_replace(Phase::Closed);
        }
        if tokio::time::timeout(grace, self.app.registries.settle()).await.is_err() {
            tracing::warn!("blob commits still under way at exit; those blobs are not cached");
        }
    }
}

/// Lifts the soft limit on open files to the hard one, so the connection cap is what turns
/// clients away rather than failing accepts; warns when even that is too low for the cap.
fn raise_file_limit(config: &Config) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
        }
    }
    let files = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let wanted = 2 * config.connections.max_open as u64 + SPARE_FILES;
    if files < wanted {
        tracing::warn!(
            open_files = files,
            max_connections = config.connections.max_open,
            "the open-file limit is below what the connection cap needs; accepts may fail before the cap is reached"
        );
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
