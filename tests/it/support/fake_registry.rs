//! An in-process fake upstream registry that behaves like Docker Hub where it matters.
//!
//! Two listeners on 127.0.0.1:0: the registry (pings, manifests, blobs, tags/list and a
//! bearer token endpoint) and a separate "CDN" that blob GETs are redirected to and that
//! refuses any request carrying `Authorization`, like an S3 presigned URL. Auth is off, Hub-style
//! bearer tokens, or Basic with fixed credentials (a private registry's htpasswd). Every request
//! is recorded so tests can assert what did, and did not, reach the upstream, and faults
//! can be scripted per repository, reference or endpoint. Both listeners can speak TLS
//! instead, with a certificate from a test's own CA, as Docker Hub and its CDN do.

mod answer;
mod auth;
mod faults;
mod gate;
mod records;
mod serve;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use regmirror::config::Credentials;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::content::{Blob, Format, Image, Index};
use super::tls::TestCa;
pub use faults::{Fault, Target};
pub use gate::Gate;
pub use records::{Kind, Request, Role};

/// The `service` the fake's challenges name and its token endpoint expects back.
pub const SERVICE: &str = "fake.registry";

/// The `expires_in` of issued tokens, which the fake also enforces; `expire_tokens` ends
/// them sooner.
const TOKEN_TTL: Duration = Duration::from_secs(60);

pub struct FakeRegistry {
    shared: Arc<Shared>,
    registry_addr: SocketAddr,
    cdn_addr: SocketAddr,
    scheme: &'static str,
}

#[derive(Default)]
pub struct Builder {
    auth: Option<Option<Credentials>>,
    basic: Option<Credentials>,
    cdn_redirects: bool,
    ranges_ignored: bool,
    tls: Option<TlsAcceptor>,
}

impl Builder {
    /// Turns on Hub-style bearer auth. With credentials, the token endpoint insists on
    /// them as `Basic`; without, it hands out anonymous tokens.
    pub fn bearer_auth(mut self, credentials: Option<Credentials>) -> Builder {
        self.auth = Some(credentials);
        self
    }

    /// Turns on Basic auth, as the reference registry does with an htpasswd file: every
    /// registry endpoint wants exactly these credentials and challenges with
    /// `WWW-Authenticate: Basic realm=…` otherwise. Not combined with `bearer_auth`.
    pub fn basic_auth(mut self, username: &str, password: &str) -> Builder {
        self.basic = Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        });
        self
    }

    /// Blob GETs and HEADs answer 307 to the CDN listener instead of serving bytes.
    pub fn cdn_redirects(mut self, on: bool) -> Builder {
        self.cdn_redirects = on;
        self
    }

    /// With `false`, blob GETs ignore `Range` and answer 200 with the whole blob, as some
    /// registries and proxies do (default: ranges are honoured with a 206).
    pub fn range_requests(mut self, on: bool) -> Builder {
        self.ranges_ignored = !on;
        self
    }

    /// Serves both listeners over TLS only, with a certificate `ca` issues for 127.0.0.1 and
    /// localhost, offering HTTP/2 and HTTP/1.1 as Docker Hub does; every URL the fake hands
    /// out (token realm, CDN redirects) is then `https`.
    pub fn tls(mut self, ca: &TestCa) -> Builder {
        self.tls = Some(tls::acceptor(ca));
        self
    }

    pub async fn build(self) -> FakeRegistry {
        let registry = TcpListener::bind("127.0.0.1:0").await.expect("bind fake registry");
        let cdn = TcpListener::bind("127.0.0.1:0").await.expect("bind fake CDN");
        let registry_addr = registry.local_addr().expect("registry address");
        let cdn_addr = cdn.local_addr().expect("CDN address");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            auth: self.auth.map(|credentials| Auth {
                credentials,
                token_ttl: TOKEN_TTL,
            }),
            basic: self.basic,
            cdn_redirects: self.cdn_redirects,
            ranges_ignored: self.ranges_ignored,
            registry_url: format!("{scheme}://{registry_addr}"),
            cdn_url: format!("{scheme}://{cdn_addr}"),
            inner: Mutex::default(),
        });
        let tasks = vec![
            tokio::spawn(serve::accept_loop(
                registry,
                Arc::clone(&shared),
                Role::Registry,
                self.tls.clone(),
            )),
            tokio::spawn(serve::accept_loop(cdn, Arc::clone(&shared), Role::Cdn, self.tls)),
        ];
        shared.lock().tasks.extend(tasks);
        FakeRegistry {
            shared,
            registry_addr,
            cdn_addr,
            scheme,
        }
    }
}

impl FakeRegistry {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// No auth, blobs served directly.
    pub async fn start() -> FakeRegistry {
        Builder::default().build().await
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.registry_addr)
    }

    pub fn uri(&self) -> http::Uri {
        self.url().parse().expect("fake registry URL is a URI")
    }

    pub fn cdn_url(&self) -> String {
        format!("{}://{}", self.scheme, self.cdn_addr)
    }

    /// Closes both listeners and every open connection, so the upstream looks down
    /// (connection refused) even to a client holding pooled connections.
    pub async fn stop(&self) {
        let tasks = std::mem::take(&mut self.shared.lock().tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    // ---- content ----

    pub fn add_blob(&self, repo: &str, bytes: impl Into<Bytes>) -> String {
        let blob = Blob::new(bytes.into());
        self.shared
            .lock()
            .repo(repo)
            .blobs
            .insert(blob.digest.clone(), blob.bytes);
        blob.digest
    }

    pub fn add_manifest(&self, repo: &str, tag: &str, media_type: &str, bytes: impl Into<Bytes>) -> String {
        let digest = self.add_untagged_manifest(repo, media_type, bytes);
        self.set_tag(repo, tag, &digest);
        digest
    }

    pub fn add_untagged_manifest(&self, repo: &str, media_type: &str, bytes: impl Into<Bytes>) -> String {
        let blob = Blob::new(bytes.into());
        self.shared
            .lock()
            .repo(repo)
            .manifests
            .insert(blob.digest.clone(), (media_type.to_owned(), blob.bytes));
        blob.digest
    }

    /// Points (or moves) a tag at a manifest digest.
    pub fn set_tag(&self, repo: &str, tag: &str, digest: &str) {
        self.shared
            .lock()
            .repo(repo)
            .tags
            .insert(tag.to_owned(), digest.to_owned());
    }

    pub fn remove_tag(&self, repo: &str, tag: &str) {
        self.shared.lock().repo(repo).tags.remove(tag);
    }

    pub fn remove_manifest(&self, repo: &str, digest: &str) {
        self.shared.lock().repo(repo).manifests.remove(digest);
    }

    /// Stores a fresh single-platform image (config, layers, manifest) under `tag`.
    pub fn push_image(&self, repo: &str, tag: &str, format: Format) -> Image {
        let image = self.push_untagged_image(repo, format, "amd64");
        self.set_tag(repo, tag, &image.manifest.digest);
        image
    }

    /// Stores an OCI index of an amd64 and an arm64 image under `tag`.
    pub fn push_index(&self, repo: &str, tag: &str) -> Index {
        let index = Index::build(&["amd64", "arm64"]);
        for (_, image) in &index.children {
            self.store_image(repo, image);
        }
        let manifest = &index.manifest;
        self.add_manifest(repo, tag, manifest.media_type, manifest.bytes.clone());
        index
    }

    fn push_untagged_image(&self, repo: &str, format: Format, architecture: &str) -> Image {
        let image = Image::build(format, architecture);
        self.store_image(repo, &image);
        image
    }

    fn store_image(&self, repo: &str, image: &Image) {
        for blob in image.blobs() {
            self.add_blob(repo, blob.bytes.clone());
        }
        self.add_untagged_manifest(repo, image.manifest.media_type, image.manifest.bytes.clone());
    }

    // ---- request log ----

    /// Every request either listener has received, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.lock().requests.clone()
    }

    pub fn count(&self, matches: impl Fn(&Request) -> bool) -> usize {
        self.shared.lock().requests.iter().filter(|r| matches(r)).count()
    }

    /// All requests to the registry and the CDN; unchanged across a cache hit.
    pub fn total(&self) -> usize {
        self.shared.lock().requests.len()
    }

    pub fn manifest_gets(&self, name: &str) -> usize {
        self.count(|r| r.is(Role::Registry, &Method::GET, Kind::Manifest) && r.name.as_deref() == Some(name))
    }

    pub fn manifest_heads(&self, name: &str) -> usize {
        self.count(|r| r.is(Role::Registry, &Method::HEAD, Kind::Manifest) && r.name.as_deref() == Some(name))
    }

    /// Upstream GETs of one manifest, by digest or by any tag pointing at it now.
    pub fn manifest_gets_of(&self, reference: &str) -> usize {
        self.count(|r| r.is(Role::Registry, &Method::GET, Kind::Manifest) && r.reference.as_deref() == Some(reference))
    }

    pub fn blob_gets(&self, digest: &str) -> usize {
        self.count(|r| r.is(Role::Registry, &Method::GET, Kind::Blob) && r.reference.as_deref() == Some(digest))
    }

    pub fn cdn_gets(&self, digest: &str) -> usize {
        self.count(|r| r.is(Role::Cdn, &Method::GET, Kind::Blob) && r.reference.as_deref() == Some(digest))
    }

    /// Manifest or blob bodies for `reference` that went out in full, from either listener.
    pub fn bodies_completed(&self, reference: &str) -> usize {
        self.shared.lock().completed.iter().filter(|r| *r == reference).count()
    }

    /// Waits up to `within` for a body of `reference` to go out in full; false if none did.
    pub async fn body_completed_within(&self, reference: &str, within: Duration) -> bool {
        super::poll_until(within, || self.bodies_completed(reference) > 0).await
    }

    pub fn token_requests(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.kind == Kind::Token).collect()
    }

    /// Ends every token issued so far, as an upstream that revokes tokens before the
    /// `expires_in` it gave would; later ones live their full time.
    pub fn expire_tokens(&self) {
        for token in self.shared.lock().tokens.values_mut() {
            token.ttl = Duration::ZERO;
        }
    }

    // ---- faults ----

    /// Applies `fault` to the next `times` matching requests.
    pub fn fail_next(&self, target: Target, times: usize, fault: Fault) {
        self.shared.lock().faults.push(Rule {
            target,
            fault,
            remaining: Some(times),
        });
    }

    pub fn fail_always(&self, target: Target, fault: Fault) {
        self.shared.lock().faults.push(Rule {
            target,
            fault,
            remaining: None,
        });
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        for task in self.shared.lock().tasks.drain(..) {
            task.abort();
        }
    }
}

struct Rule {
    target: Target,
    fault: Fault,
    remaining: Option<usize>,
}

struct Auth {
    credentials: Option<Credentials>,
    token_ttl: Duration,
}

struct Shared {
    auth: Option<Auth>,
    basic: Option<Credentials>,
    cdn_redirects: bool,
    ranges_ignored: bool,
    registry_url: String,
    cdn_url: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking handler must not hide the request log from the test that reads it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Inner {
    repos: BTreeMap<String, Repo>,
    requests: Vec<Request>,
    /// References (tag or digest) of manifest and blob bodies sent in full.
    completed: Vec<String>,
    faults: Vec<Rule>,
    tokens: HashMap<String, Token>,
    issued: u64,
    tasks: Vec<JoinHandle<()>>,
}

impl Inner {
    fn repo(&mut self, name: &str) -> &mut Repo {
        self.repos.entry(name.to_owned()).or_default()
    }
}

#[derive(Default)]
struct Repo {
    /// digest -> (media type, bytes)
    manifests: HashMap<String, (String, Bytes)>,
    /// Sorted, which is the order tags/list must use.
    tags: BTreeMap<String, String>,
    blobs: HashMap<String, Bytes>,
}

struct Token {
    scopes: Vec<String>,
    issued: Instant,
    ttl: Duration,
}
