//! The HTTP client towards the upstream registry: authentication, redirects by hand, and the
//! mapping of upstream answers to a small set of typed outcomes.
//!
//! Redirects are followed here rather than by the HTTP client because Docker Hub sends blobs
//! to CDN hosts that reject a request carrying `Authorization`, and because a credential must
//! never follow a request to another host.

pub mod auth;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, LOCATION, RANGE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::config::Credentials;
use crate::digest::Digest;
use crate::manifest;
use crate::metrics::Metrics;
use crate::reference::{Reference, RepoName};
use auth::{Challenge, Tokens};

pub type Response = http::Response<Incoming>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// containerd gives a mirror 30 s to answer; the upstream gets less so the mirror can still
/// say what went wrong.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(25);
const MAX_REDIRECTS: usize = 5;
/// Below this many pulls left in Docker Hub's window, every drop is logged.
const LOW_RATE_LIMIT: i64 = 10;
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the upstream: {0}")]
    Unreachable(String),
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
}

impl Error {
    /// Failures that say nothing about the content itself, so cached content may stand in.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            Error::Unreachable(_) | Error::Timeout(_) | Error::RateLimited { .. } | Error::Status(_) | Error::Token(_)
        )
    }
}

pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: Uri,
    credentials: Option<Credentials>,
    tokens: Tokens,
    /// Docker Hub's `ratelimit-remaining` from the latest answer that carried it.
    rate_limit_remaining: AtomicI64,
    metrics: Arc<Metrics>,
    health: Mutex<Health>,
}

/// When the upstream last answered, and when and how it last failed.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub last_ok: Option<SystemTime>,
    pub last_error: Option<(SystemTime, String)>,
}

impl Upstream {
    /// A client for the registry at `base`, trusting the public web roots or, when given, only
    /// the CA certificates in the PEM file `ca` (a private registry's own CA).
    pub fn new(
        base: Uri,
        credentials: Option<Credentials>,
        ca: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let roots = match ca {
            Some(path) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(private_roots(path)?),
            None => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
        };
        let https = roots.https_or_http().enable_http1().enable_http2().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Upstream {
            client,
            base,
            credentials,
            tokens: Tokens::default(),
            rate_limit_remaining: AtomicI64::new(-1),
            metrics,
            health: Mutex::default(),
        })
    }

    /// HEAD or GET of a manifest, always with the full Accept set.
    pub async fn manifest(&self, method: Method, repo: &RepoName, reference: &Reference) -> Result<Response, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(manifest::UPSTREAM_ACCEPT));
        self.send(method, repo, &format!("manifests/{reference}"), headers)
            .await
    }

    /// HEAD or GET of a blob; the body is the raw bytes, never decompressed.
    pub async fn blob(&self, method: Method, repo: &RepoName, digest: &Digest) -> Result<Response, Error> {
        self.send(method, repo, &format!("blobs/{digest}"), HeaderMap::new())
            .await
    }

    /// GET of a blob from byte `offset` on, to resume a transfer that broke off. The caller
    /// checks whether the answer is the asked-for 206 or a whole 200.
    pub async fn blob_from(&self, repo: &RepoName, digest: &Digest, offset: u64) -> Result<Response, Error> {
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range =
                HeaderValue::from_str(&format!("bytes={offset}-")).map_err(|e| Error::Protocol(e.to_string()))?;
            headers.insert(RANGE, range);
        }
        self.send(Method::GET, repo, &format!("blobs/{digest}"), headers).await
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
        let uri = self.url(&format!("/v2/{repo}/{tail}"))?;
        let scope = format!("repository:{repo}:pull");
        let mut authorization = self.tokens.get(&scope);
        let mut retried = false;
        loop {
            let response = self
                .follow(&method, uri.clone(), authorization.clone(), &headers)
                .await?;
            self.note_rate_limit(&response);
            if response.status() != StatusCode::UNAUTHORIZED || retried {
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

    /// Sends the request and follows redirects. `Authorization` goes only to the upstream's
    /// own origin, and once a hop leaves it nothing later in the chain gets it back.
    async fn follow(
        &self,
        method: &Method,
        mut uri: Uri,
        mut authorization: Option<HeaderValue>,
        headers: &HeaderMap,
    ) -> Result<Response, Error> {
        for _ in 0..=MAX_REDIRECTS {
            if !same_origin(&uri, &self.base) {
                authorization = None;
            }
            let mut request = Request::builder().method(method.clone()).uri(uri.clone());
            if let Some(map) = request.headers_mut() {
                map.extend(headers.clone());
                if let Some(value) = &authorization {
                    map.insert(AUTHORIZATION, value.clone());
                }
            }
            let request = request.body(Empty::new()).map_err(|e| Error::Protocol(e.to_string()))?;
            let response = self.execute(request).await?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok());
            let location = location.ok_or_else(|| Error::Protocol("redirect without Location".into()))?;
            uri = resolve(&uri, location)?;
        }
        Err(Error::Protocol(format!("more than {MAX_REDIRECTS} redirects")))
    }

    async fn execute(&self, request: Request<Empty<Bytes>>) -> Result<Response, Error> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(request)).await;
        self.metrics.observe_upstream(started.elapsed());
        let result = match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(Error::Unreachable(error_chain(&e))),
            Err(_) => Err(Error::Timeout(RESPONSE_TIMEOUT)),
        };
        self.note_health(&result);
        result
    }

    fn note_health(&self, result: &Result<Response, Error>) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(r) if !r.status().is_server_error() => health.last_ok = Some(SystemTime::now()),
            Ok(r) => health.last_error = Some((SystemTime::now(), format!("answered {}", r.status()))),
            Err(e) => health.last_error = Some((SystemTime::now(), e.to_string())),
        }
    }

    pub fn health(&self) -> Health {
        self.health.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn base(&self) -> &Uri {
        &self.base
    }

    /// Answers a challenge: a bearer token from the realm (anonymous, or with the configured
    /// credentials as Basic), or the credentials themselves for a Basic challenge.
    async fn authorize(&self, challenge: Challenge, scope: &str) -> Result<(HeaderValue, Duration), Error> {
        match challenge {
            Challenge::Basic => match &self.credentials {
                Some(credentials) => Ok((auth::basic(credentials), Duration::from_secs(3600))),
                None => Err(Error::Denied),
            },
            Challenge::Bearer {
                realm,
                service,
                scope: challenge_scope,
            } => {
                let scope = challenge_scope.as_deref().unwrap_or(scope);
                self.fetch_token(&realm, service.as_deref(), scope).await
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(HeaderValue, Duration), Error> {
        let mut url = format!(
            "{realm}{}scope={}",
            if realm.contains('?') { '&' } else { '?' },
            query_escape(scope)
        );
        if let Some(service) = service {
            url.push_str(&format!("&service={}", query_escape(service)));
        }
        let uri: Uri = url.parse().map_err(|_| Error::Token(format!("bad realm {realm}")))?;
        let mut request = Request::get(uri);
        if let Some(credentials) = &self.credentials {
            request = request.header(AUTHORIZATION, auth::basic(credentials));
        }
        let request = request.body(Empty::new()).map_err(|e| Error::Token(e.to_string()))?;
        let response = self.execute(request).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(Error::Denied),
            StatusCode::TOO_MANY_REQUESTS => return Err(rate_limited(&response)),
            status => return Err(Error::Token(format!("token endpoint answered {status}"))),
        }
        let body = Limited::new(response.into_body(), MAX_TOKEN_RESPONSE).collect().await;
        let body = body
            .map_err(|e| Error::Token(format!("reading the token: {e}")))?
            .to_bytes();
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| Error::Token(format!("bad token response: {e}")))?;
        let value = token.token.or(token.access_token).and_then(|t| auth::bearer(&t));
        let value = value.ok_or_else(|| Error::Token("token response carries no usable token".into()))?;
        Ok((value, auth::token_life(token.expires_in)))
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

fn private_roots(path: &Path) -> Result<rustls::ClientConfig, Error> {
    let bad = |why: String| Error::Protocol(format!("CA file {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificates in it".into()));
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
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

fn same_origin(a: &Uri, b: &Uri) -> bool {
    a.scheme() == b.scheme() && a.host() == b.host() && a.port_u16() == b.port_u16()
}

/// Resolves a `Location` header, absolute or relative to the request it answers.
fn resolve(base: &Uri, location: &str) -> Result<Uri, Error> {
    let bad = || Error::Protocol(format!("bad redirect location {location}"));
    let target: Uri = location.parse().map_err(|_| bad())?;
    if target.scheme().is_some() {
        return Ok(target);
    }
    if !location.starts_with('/') {
        return Err(bad());
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = target.path_and_query().cloned();
    Uri::from_parts(parts).map_err(|_| bad())
}

fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// hyper's client errors say "client error (Connect)"; the cause is further down the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve() {
        let base: Uri = "https://registry-1.docker.io/v2/library/a/blobs/sha256:00"
            .parse()
            .expect("uri");
        let abs = resolve(&base, "https://cdn.example/x?sig=1").expect("absolute");
        assert_eq!(abs.host(), Some("cdn.example"));
        assert!(!same_origin(&abs, &base));
        let rel = resolve(&base, "/other?x=1").expect("relative");
        assert_eq!(rel.to_string(), "https://registry-1.docker.io/other?x=1");
        assert!(same_origin(&rel, &base));
        assert!(resolve(&base, "relative/path").is_err());
    }

    #[test]
    fn escapes_queries() {
        assert_eq!(
            query_escape("repository:library/a:pull,push"),
            "repository:library/a:pull%2Cpush"
        );
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
    }
}
