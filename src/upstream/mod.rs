//! The HTTP client towards the upstream registry: authentication, redirects by hand, and the
//! mapping of upstream answers to a small set of typed outcomes.
//!
//! Redirects are followed here rather than by the HTTP client because Docker Hub sends blobs
//! to CDN hosts that reject a request carrying `Authorization`, and because a credential must
//! never follow a request to another host. Every connection resolves its host through
//! `dns::Guard`, so a redirect cannot lead inward by a name either.

pub mod auth;
mod blob;
mod connect;
pub(crate) mod dns;
mod manifest;
mod member;
pub(crate) mod redirect;
pub(crate) mod token;

use redirect::{check_redirect, resolve, same_origin};

pub use blob::{pass_through, BlobStream, Expect};
pub(crate) use connect::error_chain;
pub use dns::Dns;
pub use manifest::{FetchedManifest, ManifestHead};
use member::Membership;
pub use member::MEMBER_KEY;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;

use crate::config::Credentials;
use crate::metrics::Metrics;
use crate::reference::RepoName;
use crate::sync::LockExt;
use auth::Tokens;
use connect::HttpClient;
use dns::Guard;

pub type Response = http::Response<Incoming>;

/// containerd gives a mirror 30 s to answer; the upstream gets less so the mirror can still
/// say what went wrong.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(25);
const MAX_REDIRECTS: usize = 5;
/// Below this many pulls left in Docker Hub's window, every drop is logged.
const LOW_RATE_LIMIT: i64 = 10;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the upstream: {0}")]
    Unreachable(String),
    /// Mostly a certificate the configured roots do not vouch for: a wrong `ca`, or a
    /// private CA with none configured. Named apart so no one reads it as a network fault.
    #[error("the TLS handshake with the upstream failed: {reason} (trusting {trust})")]
    Tls { reason: String, trust: String },
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("not found upstream")]
    NotFound,
    #[error("the upstream denied access")]
    Denied,
    #[error("the upstream's rate limit is reached")]
    RateLimited { retry_after: Option<HeaderValue> },
    #[error("the upstream answered {0}")]
    Status(StatusCode),
    #[error("the upstream sent a bad response: {0}")]
    Protocol(String),
    #[error("the upstream's token service failed: {0}")]
    Token(String),
    /// A fleet member answered from its cache because its own upstream failed: no check.
    #[error("the fleet member's upstream is unavailable (it answered from its cache)")]
    Stale,
}

impl Error {
    /// Failures that say nothing about the content itself, so cached content may stand in.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            Error::Unreachable(_)
                | Error::Tls { .. }
                | Error::Timeout(_)
                | Error::RateLimited { .. }
                | Error::Status(_)
                | Error::Token(_)
                | Error::Stale
        )
    }
}

pub struct Upstream {
    client: HttpClient,
    /// The client's resolver, which also says whether the upstream is inward.
    guard: Guard,
    base: Uri,
    /// Which roots certificates are checked against, as a TLS failure reports it.
    trust: String,
    credentials: Option<Credentials>,
    /// Hosts besides the upstream's own whose token realms it may use.
    realm_hosts: Vec<String>,
    tokens: Tokens,
    /// Docker Hub's `ratelimit-remaining` from the latest answer that carried it.
    rate_limit_remaining: AtomicI64,
    metrics: Arc<Metrics>,
    health: Mutex<Health>,
    /// Set when the "upstream" is another member of this instance's fleet.
    membership: Option<Membership>,
}

/// When the upstream last answered, and when and how it last failed.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub last_ok: Option<SystemTime>,
    pub last_error: Option<(SystemTime, String)>,
}

impl Upstream {
    /// A client for the registry at `base`, trusting the public web roots or, when given, only
    /// the CA certificates in the PEM file `ca` (a private registry's own CA), and resolving
    /// host names with `dns`.
    pub fn new(
        base: Uri,
        credentials: Option<Credentials>,
        ca: Option<&Path>,
        realm_hosts: &[String],
        dns: Dns,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let realm_hosts = realm_hosts_of(&base, realm_hosts);
        let guard = Guard::new(dns, &base, &realm_hosts);
        let (client, trust) = connect::client(guard.clone(), ca)?;
        Ok(Upstream {
            client,
            guard,
            realm_hosts,
            base,
            trust,
            credentials,
            tokens: Tokens::default(),
            rate_limit_remaining: AtomicI64::new(-1),
            metrics,
            health: Mutex::default(),
            membership: None,
        })
    }

    /// `tags/list`, with the client's `n`/`last` query passed on.
    pub async fn tags(&self, repo: &RepoName, query: Option<&str>) -> Result<Response, Error> {
        let tail = match query {
            Some(q) => format!("tags/list?{q}"),
            None => "tags/list".to_owned(),
        };
        self.send(Method::GET, repo, &tail, HeaderMap::new()).await
    }

    async fn send(&self, method: Method, repo: &RepoName, tail: &str, headers: HeaderMap) -> Result<Response, Error> {
        let uri = self.url(&self.path(repo, tail))?;
        let scope = format!("repository:{repo}:pull");
        let mut authorization = self.tokens.get(&scope);
        let mut retried = false;
        loop {
            let (response, answered_by) = self
                .follow(&method, uri.clone(), authorization.clone(), &headers)
                .await?;
            self.note_rate_limit(&response);
            // A challenge from a host a redirect led to is not the upstream's to make.
            let foreign = !same_origin(&answered_by, &self.base);
            if response.status() != StatusCode::UNAUTHORIZED || retried || foreign {
                return classify(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(auth::parse_challenge);
            let Some(challenge) = challenge else {
                return Err(Error::Denied);
            };
            let (value, life) = self.authorize(challenge, &scope).await?;
            self.tokens.put(&scope, value.clone(), life);
            authorization = Some(value);
            retried = true;
        }
    }

    /// Pulls left in Docker Hub's current window, when it has said so; no header means no limit.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        u64::try_from(self.rate_limit_remaining.load(Ordering::Relaxed)).ok()
    }

    fn note_rate_limit(&self, response: &Response) {
        let value = response
            .headers()
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok());
        if let Some(remaining) = value.and_then(|v| v.split(';').next()?.trim().parse::<i64>().ok()) {
            let before = self.rate_limit_remaining.swap(remaining, Ordering::Relaxed);
            if remaining < LOW_RATE_LIMIT && remaining != before {
                tracing::warn!(remaining, "the upstream's pull rate limit is nearly used up");
            }
        }
    }

    fn url(&self, path_and_query: &str) -> Result<Uri, Error> {
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(
            path_and_query
                .parse()
                .map_err(|_| Error::Protocol(format!("bad path {path_and_query}")))?,
        );
        Uri::from_parts(parts).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Sends the request and follows redirects; the answer, and the URL that gave it.
    /// `Authorization` goes only to the upstream's own origin, and once a hop leaves it
    /// nothing later in the chain gets it back.
    async fn follow(
        &self,
        method: &Method,
        mut uri: Uri,
        mut authorization: Option<HeaderValue>,
        headers: &HeaderMap,
    ) -> Result<(Response, Uri), Error> {
        for _ in 0..=MAX_REDIRECTS {
            let home = same_origin(&uri, &self.base);
            if !home {
                authorization = None;
            }
            let mut request = Request::builder().method(method.clone()).uri(uri.clone());
            if let Some(map) = request.headers_mut() {
                map.extend(headers.clone());
                if let Some(value) = &authorization {
                    map.insert(AUTHORIZATION, value.clone());
                }
                if let (true, Some(membership)) = (home, &self.membership) {
                    map.insert(MEMBER_KEY, membership.key.clone());
                }
            }
            let request = request.body(Empty::new()).map_err(|e| Error::Protocol(e.to_string()))?;
            let response = self.execute(request).await?;
            if !response.status().is_redirection() {
                return Ok((response, uri));
            }
            let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok());
            let location = location.ok_or_else(|| Error::Protocol("redirect without Location".into()))?;
            let next = resolve(&uri, location)?;
            check_redirect(&self.guard, &uri, &next).await?;
            uri = next;
        }
        Err(Error::Protocol(format!("more than {MAX_REDIRECTS} redirects")))
    }

    async fn execute(&self, request: Request<Empty<Bytes>>) -> Result<Response, Error> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(request)).await;
        self.metrics.observe_upstream(started.elapsed());
        let result = match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(connect::failure(&e, &self.trust)),
            Err(_) => Err(Error::Timeout(RESPONSE_TIMEOUT)),
        };
        self.note_health(&result);
        result
    }

    fn note_health(&self, result: &Result<Response, Error>) {
        let mut health = self.health.locked();
        match result {
            Ok(r) if !r.status().is_server_error() => health.last_ok = Some(SystemTime::now()),
            Ok(r) => health.last_error = Some((SystemTime::now(), format!("answered {}", r.status()))),
            Err(e) => health.last_error = Some((SystemTime::now(), e.to_string())),
        }
    }

    pub fn health(&self) -> Health {
        self.health.locked().clone()
    }

    pub fn base(&self) -> &Uri {
        &self.base
    }
}

/// Turns non-success answers into errors; Docker Hub answers 401 for repositories that do not
/// exist or are private, so after authentication a 401 or 403 means "no such content here".
fn classify(response: Response) -> Result<Response, Error> {
    let status = response.status();
    match status {
        s if s.is_success() => Ok(response),
        StatusCode::NOT_FOUND => Err(Error::NotFound),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::Denied),
        StatusCode::TOO_MANY_REQUESTS => Err(rate_limited(&response)),
        _ => Err(Error::Status(status)),
    }
}

fn rate_limited(response: &Response) -> Error {
    Error::RateLimited {
        retry_after: response.headers().get(RETRY_AFTER).cloned(),
    }
}

/// Registries whose token service is known to live on a host of its own.
const KNOWN_REALM_HOSTS: &[(&str, &str)] = &[("registry-1.docker.io", "auth.docker.io")];

fn realm_hosts_of(base: &Uri, configured: &[String]) -> Vec<String> {
    let known = (KNOWN_REALM_HOSTS.iter())
        .filter(|(registry, _)| base.host() == Some(*registry))
        .map(|(_, realm)| (*realm).to_owned());
    configured.iter().cloned().chain(known).collect()
}
