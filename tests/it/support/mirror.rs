//! Runs the real regmirror server in-process on 127.0.0.1:0 and talks to it over HTTP (a
//! mirror with `own_ca` speaks TLS; `support::mtls` talks to that one).
//!
//! `Mirror` owns the data directory and the shutdown sender, so dropping it stops the
//! server, and `restart` brings up a new server on the same directory. The client side
//! returns a `Reply` whose body is either the bytes or the read error, because several
//! tests are about a body that must *not* end cleanly.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use regmirror::certs::{self, CertDir, NamePolicy, Names};
use regmirror::config::{ConnectionLimits, Credentials, RegistryConfig};
use regmirror::{Config, Tls};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::content::{Blob, Manifest};
use super::data_dir::DataDir;
use super::fake_registry::FakeRegistry;
use super::streaming::Streaming;

/// containerd's resolver Accept line (docs/protocol.md §8.2): every manifest type, then `*/*`.
pub const CONTAINERD_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, */*";

/// Upper bound on one request, headers and body, so a wedged server fails the test
/// instead of hanging it; seconds more than any transfer here needs on a loaded machine.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

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

/// A response as the client saw it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Result<Bytes, String>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is visible ASCII"))
    }

    pub fn bytes(&self) -> &Bytes {
        match &self.body {
            Ok(bytes) => bytes,
            Err(error) => panic!("body read failed: {error}; reply: {self:?}"),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.bytes()).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts an OCI error reply: the status, a JSON body whose first error has `code`
    /// and a string message.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        self.assert_error_body(&[code]);
    }

    /// Asserts `{"errors":[{"code":…,"message":…}]}` with a code from `codes`.
    pub fn assert_error_body(&self, codes: &[&str]) {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error content type: {self:?}"
        );
        let json = self.json();
        let first = &json["errors"][0];
        let code = first["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0].code: {self:?}"));
        assert!(
            codes.contains(&code),
            "code {code}, expected one of {codes:?}: {self:?}"
        );
        assert!(first["message"].is_string(), "errors[0].message is a string: {self:?}");
    }

    /// Asserts a 200 carrying exactly this manifest, with its digest, type and length.
    pub fn assert_manifest(&self, manifest: &Manifest) {
        self.assert_bytes(&manifest.bytes);
        self.assert_manifest_headers(manifest);
    }

    /// Asserts a HEAD reply for this manifest: the GET's headers, including its real
    /// `Content-Length` (hyper and axum have been known to send 0), and no body.
    pub fn assert_manifest_head(&self, manifest: &Manifest) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert!(self.bytes().is_empty(), "HEAD has no body: {self:?}");
        self.assert_manifest_headers(manifest);
    }

    fn assert_manifest_headers(&self, manifest: &Manifest) {
        assert_eq!(
            self.header("docker-content-digest"),
            Some(manifest.digest.as_str()),
            "{self:?}"
        );
        assert_eq!(self.header("content-type"), Some(manifest.media_type), "{self:?}");
        assert_eq!(
            self.header("content-length"),
            Some(manifest.bytes.len().to_string().as_str()),
            "{self:?}"
        );
    }

    /// Asserts a 200 carrying exactly this blob, with its digest and length.
    pub fn assert_blob(&self, blob: &Blob) {
        self.assert_bytes(&blob.bytes);
        assert_eq!(
            self.header("docker-content-digest"),
            Some(blob.digest.as_str()),
            "{self:?}"
        );
        assert_eq!(
            self.header("content-length"),
            Some(blob.bytes.len().to_string().as_str()),
            "{self:?}"
        );
    }

    /// Asserts a 200 with exactly `expected` as the body.
    pub fn assert_bytes(&self, expected: &[u8]) {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        assert!(
            self.bytes()[..] == expected[..],
            "body differs ({} bytes, expected {})",
            self.bytes().len(),
            expected.len()
        );
    }
}

/// Bad bytes must not pass for good ones. The client must be able to tell: a body that
/// fails to read, a connection closed before any response, or an error status. A 2xx whose
/// body ends cleanly is a lie, whatever its bytes.
pub fn assert_not_delivered(outcome: &Result<Reply, String>) {
    if let Ok(reply) = outcome {
        let clean_success = reply.status.is_success() && reply.body.is_ok();
        assert!(
            !clean_success,
            "bad upstream bytes were delivered as a clean reply: {reply:?}"
        );
        assert!(reply.body.is_err() || reply.status.is_server_error(), "{reply:?}");
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match &self.body {
            Ok(bytes) if bytes.len() > 400 => format!("<{} bytes>", bytes.len()),
            Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Err(error) => format!("<read error: {error}>"),
        };
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .finish()
    }
}

pub async fn send(url: &str, method: Method, headers: &[(&str, &str)]) -> Reply {
    try_send(url, method.clone(), headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

pub async fn try_send(url: &str, method: Method, headers: &[(&str, &str)]) -> Result<Reply, String> {
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::new()).expect("test request is well-formed");
    let exchange = async {
        let response = client()
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| format!("{e:?}"));
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    // A hang is a failure in its own right, never an acceptable "not a clean body".
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no complete reply within {REQUEST_TIMEOUT:?}: {url}"))
}

// No pooling: every request gets its own connection, so one test's aborted body cannot
// leak into its next request, and dropping a response really closes the connection.
fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
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
