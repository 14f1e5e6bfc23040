//! Runs the real regmirror server in-process on 127.0.0.1:0 and talks to it over HTTP (a
//! mirror with `own_ca` speaks TLS; `support::mtls` talks to that one).
//!
//! `Mirror` owns the data directory and the shutdown sender, so dropping it stops the
//! server, and `restart` brings up a new server on the same directory. Requests go through
//! `support::client`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::Empty;
use regmirror::certs::{self, CertDir, NamePolicy, Names};
use regmirror::config::{ConnectionLimits, Credentials, RegistryConfig};
use regmirror::{Config, Tls};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::client::{client, send, try_send, Reply, CONTAINERD_ACCEPT, REQUEST_TIMEOUT};
use super::data_dir::DataDir;
use super::fake_registry::FakeRegistry;
use super::streaming::Streaming;

pub struct Mirror {
    addr: SocketAddr,
    config: Config,
    // Shared so that `restart` can hand the same directory to the next server.
    data_dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), regmirror::server::Error>>>,
}

pub struct Builder {
    config: Config,
    data_dir: TempDir,
}

impl Builder {
    pub fn tag_ttl(mut self, ttl: Duration) -> Builder {
        self.config.tag_ttl = ttl;
        self
    }

    /// Byte cap on the cache; evicted content is deleted from disk.
    pub fn max_cache_size(mut self, bytes: u64) -> Builder {
        self.config.max_cache_size = Some(bytes);
        self
    }

    /// Free space a fill must leave; more than the disk has makes every blob pass through.
    pub fn min_free_disk(mut self, bytes: u64) -> Builder {
        self.config.min_free_disk = bytes;
        self
    }

    /// How long after its last upstream confirmation a tag may be served stale.
    pub fn max_stale(mut self, max: Duration) -> Builder {
        self.config.max_stale = Some(max);
        self
    }

    /// Any other setting, for the few tests that need one: limits, waits, timeouts.
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Builder {
        change(&mut self.config);
        self
    }

    /// A fill's time limit before its per-MiB allowance.
    pub fn fill_timeout(mut self, timeout: Duration) -> Builder {
        self.config.fill_timeout = timeout;
        self
    }

    /// The connection caps and deadlines, from the defaults.
    pub fn connections(mut self, change: impl FnOnce(&mut ConnectionLimits)) -> Builder {
        change(&mut self.config.connections);
        self
    }

    pub fn credentials(mut self, username: &str, password: &str) -> Builder {
        self.config.credentials = Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        });
        self
    }

    /// Mirrors one more registry: clients name it `name` (path prefix or `ns=`), the mirror
    /// fetches it from `upstream`, with these credentials if given (which make its content
    /// private: served through a repository only once that repository is known to hold it).
    pub fn registry(mut self, name: &str, upstream: &FakeRegistry, credentials: Option<(&str, &str)>) -> Builder {
        self.config.registries.push(RegistryConfig {
            registry: name.parse().expect("a valid registry name"),
            url: upstream.uri(),
            credentials: credentials.map(|(username, password)| Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            }),
            ca: None,
            tag_ttl: None,
            realm_hosts: Vec::new(),
        });
        self
    }

    /// Hosts the site's own repositories under `namespace` (`site.lan`), so pushes are taken.
    pub fn hosted(mut self, namespace: &str) -> Builder {
        self.config.hosted = Some(namespace.parse().expect("a valid hosted namespace"));
        self
    }

    /// Client access control, written as the config file's `[access]` table.
    pub fn access(mut self, table: &str) -> Builder {
        self.config.access = toml::from_str(table).unwrap_or_else(|e| panic!("invalid [access] table: {e}"));
        self
    }

    /// TLS with the mirror's own CA and server certificate (localhost, 127.0.0.1, …), made
    /// now under `<data dir>/certs` as `cert init` would, so that a test can issue client
    /// certificates from the CA before the server starts.
    pub fn own_ca(mut self) -> Builder {
        let dir = self.data_dir.path().join("certs");
        certs::ensure(&CertDir::new(&dir), &Names::local(&[], &[]), NamePolicy::KeepExisting)
            .expect("create the mirror's CA");
        self.config.tls = Tls::SelfIssued { dir };
        self
    }

    pub async fn start(self) -> Mirror {
        Mirror::spawn(self.config, Arc::new(self.data_dir)).await
    }

    /// As `start`, on a listener bound before: for servers that must know each other's
    /// addresses before any of them starts (a fleet).
    pub fn start_on(self, listener: TcpListener) -> Mirror {
        Mirror::spawn_on(listener, self.config, Arc::new(self.data_dir))
    }
}

impl Mirror {
    pub fn builder(upstream: &FakeRegistry) -> Builder {
        let data_dir = tempfile::tempdir().expect("create data dir");
        let config = Config::new(upstream.uri(), data_dir.path().to_owned());
        Builder { config, data_dir }
    }

    /// Default settings (60 s tag TTL, anonymous upstream access).
    pub async fn start(upstream: &FakeRegistry) -> Mirror {
        Mirror::builder(upstream).start().await
    }

    /// A mirror with `config` as it stands (the listen address is replaced), over
    /// `data_dir`, which must be `config.data_dir`: for a config read from a TOML file.
    pub fn from_config(config: Config, data_dir: TempDir) -> Builder {
        assert_eq!(
            config.data_dir,
            data_dir.path(),
            "the config names the data dir it is given"
        );
        Builder { config, data_dir }
    }

    async fn spawn(config: Config, data_dir: Arc<TempDir>) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mirror");
        Mirror::spawn_on(listener, config, data_dir)
    }

    fn spawn_on(listener: TcpListener, mut config: Config, data_dir: Arc<TempDir>) -> Mirror {
        init_tracing();
        let addr = listener.local_addr().expect("mirror address");
        config.listen = addr;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(regmirror::server::run(listener, config.clone(), async move {
            let _ = stopped.await;
        }));
        Mirror {
            addr,
            config,
            data_dir,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Shuts this server down, waits for it to exit cleanly, and starts a new one on the
    /// same data directory and settings (on a new port).
    pub async fn restart(self) -> Mirror {
        self.restart_with(|_| {}).await
    }

    /// As `restart`, with the settings changed first (`--offline`, say).
    pub async fn restart_with(mut self, change: impl FnOnce(&mut Config)) -> Mirror {
        self.shut_down().await;
        let mut config = self.config.clone();
        change(&mut config);
        Mirror::spawn(config, Arc::clone(&self.data_dir)).await
    }

    /// Shuts the server down and waits until it has exited cleanly.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let task = self.task.take().expect("mirror task present until shut down");
        let result = tokio::time::timeout(REQUEST_TIMEOUT, task)
            .await
            .expect("mirror shut down in time")
            .expect("mirror task did not panic");
        if let Err(error) = result {
            panic!("mirror exited with an error: {error}");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mirror's own CA and certificates (see `Builder::own_ca`).
    pub fn certs(&self) -> CertDir {
        CertDir::new(self.data_dir.path().join("certs"))
    }

    /// Where the mirror keeps the key its tokens are signed with.
    pub fn token_key(&self) -> PathBuf {
        self.data_dir.path().join("certs").join("token.key")
    }

    pub fn data_dir(&self) -> DataDir {
        DataDir::new(self.data_dir.path())
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[]).await
    }

    pub async fn head(&self, path: &str) -> Reply {
        self.send(Method::HEAD, path, &[]).await
    }

    /// A manifest GET with the Accept header containerd sends when resolving a tag.
    pub async fn get_manifest(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[("accept", CONTAINERD_ACCEPT)]).await
    }

    pub async fn head_manifest(&self, path: &str) -> Reply {
        self.send(Method::HEAD, path, &[("accept", CONTAINERD_ACCEPT)]).await
    }

    /// Repeated header names go out as separate lines, as dockerd sends `Accept`.
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        send(&self.url(path), method, headers).await
    }

    /// GETs `path`, waits for the response head, then hangs up without reading the body,
    /// as a client does when it is cancelled mid-pull.
    pub async fn abandon_after_head(&self, path: &str) -> StatusCode {
        let request = hyper::Request::get(self.url(path))
            .body(Empty::new())
            .expect("test request is well-formed");
        let response = tokio::time::timeout(REQUEST_TIMEOUT, client().request(request))
            .await
            .expect("response head in time")
            .expect("response head");
        response.status()
    }

    /// Sends a GET and returns once the response head is in, to read the body piecemeal.
    pub async fn open(&self, path: &str, headers: &[(&str, &str)]) -> Streaming {
        Streaming::open(&self.url(path), Method::GET, headers).await
    }

    /// Like `send`, but a transport failure before the response head is returned rather
    /// than a panic; a timeout still panics.
    pub async fn try_send(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        try_send(&self.url(path), method, headers).await
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// `RUST_LOG=regmirror=debug cargo test --test it -- --nocapture` shows the server's logs.
fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    });
}
