//! Answering the upstream's challenge: the configured credentials for a Basic one, a bearer
//! token from the realm for a Bearer one (anonymous, or with the credentials as Basic).

use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use serde::Deserialize;

use super::auth::{self, Challenge};
use super::{rate_limited, Error, Upstream};

const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

impl Upstream {
    /// Answers a challenge: a bearer token from the realm (anonymous, or with the configured
    /// credentials as Basic), or the credentials themselves for a Basic challenge.
    pub(super) async fn authorize(&self, challenge: Challenge, scope: &str) -> Result<(HeaderValue, Duration), Error> {
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
        let uri = token_url(realm, service, scope)?;
        self.check_realm(&uri)?;
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
        token_answer(&body)
    }

    /// The upstream's credentials go only where the upstream itself lives: a realm on its own
    /// host, or on one its config names (`realm_hosts`), and over HTTPS unless the upstream
    /// itself is plain HTTP on that same host.
    fn check_realm(&self, realm: &Uri) -> Result<(), Error> {
        let host = realm.host().unwrap_or("");
        let same_host = self.base.host().is_some_and(|own| own.eq_ignore_ascii_case(host));
        let named = self.realm_hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
        let secure = realm.scheme_str() == Some("https") || (same_host && self.base.scheme_str() == Some("http"));
        match (same_host || named, secure) {
            (true, true) => Ok(()),
            (false, _) => Err(Error::Token(format!(
                "the token realm {realm} is on another host than the upstream; name {host} in the registry's realm_hosts to use it"
            ))),
            (true, false) => Err(Error::Token(format!("the token realm {realm} is not HTTPS"))),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// The `Authorization` value a token endpoint's JSON answer carries, and how long to keep it.
pub(crate) fn token_answer(body: &[u8]) -> Result<(HeaderValue, Duration), Error> {
    let token: TokenResponse =
        serde_json::from_slice(body).map_err(|e| Error::Token(format!("bad token response: {e}")))?;
    let value = token.token.or(token.access_token).and_then(|t| auth::bearer(&t));
    let value = value.ok_or_else(|| Error::Token("token response carries no usable token".into()))?;
    Ok((value, auth::token_life(token.expires_in)))
}

/// The realm with `scope` and `service` added to whatever query it has.
pub(crate) fn token_url(realm: &str, service: Option<&str>, scope: &str) -> Result<Uri, Error> {
    let bad = || Error::Token(format!("bad realm {realm}"));
    let mut url = url::Url::parse(realm).map_err(|_| bad())?;
    url.query_pairs_mut().append_pair("scope", scope);
    if let Some(service) = service {
        url.query_pairs_mut().append_pair("service", service);
    }
    url.as_str().parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls_keep_the_realm_query_and_escape_values() {
        let uri = token_url(
            "https://auth.example/token?x=1",
            Some("reg istry"),
            "repository:a/b:pull,push",
        )
        .expect("url");
        assert_eq!(
            uri.to_string(),
            "https://auth.example/token?x=1&scope=repository%3Aa%2Fb%3Apull%2Cpush&service=reg+istry"
        );
        assert!(token_url("not a url", None, "s").is_err());
    }

    fn upstream(base: &'static str, realm_hosts: &[&str]) -> Upstream {
        let hosts: Vec<String> = realm_hosts.iter().map(|h| (*h).to_owned()).collect();
        let dns = crate::upstream::Dns::System;
        Upstream::new(Uri::from_static(base), None, None, &hosts, dns, Default::default()).expect("upstream")
    }

    fn allowed(upstream: &Upstream, realm: &'static str) -> bool {
        upstream.check_realm(&Uri::from_static(realm)).is_ok()
    }

    #[test]
    fn credentials_go_only_to_realms_on_the_upstreams_host_or_named_ones_over_https() {
        let tls = upstream("https://registry.lan", &["auth.lan"]);
        assert!(allowed(&tls, "https://registry.lan/token"));
        assert!(allowed(&tls, "https://auth.lan/token"), "named in realm_hosts");
        assert!(!allowed(&tls, "http://registry.lan/token"), "never down to plain HTTP");
        assert!(!allowed(&tls, "http://auth.lan/token"));
        assert!(!allowed(&tls, "https://attacker.example/token"));
        assert!(!allowed(&tls, "https://169.254.169.254/token"));
        let plain = upstream("http://registry.lan:5000", &["auth.lan"]);
        assert!(
            allowed(&plain, "http://registry.lan:5000/token"),
            "a plain upstream's own host"
        );
        assert!(!allowed(&plain, "http://auth.lan/token"), "another host must be HTTPS");
        let hub = upstream("https://registry-1.docker.io", &[]);
        assert!(
            allowed(&hub, "https://auth.docker.io/token"),
            "Docker Hub's own token service"
        );
        let other = upstream("https://registry.lan", &[]);
        assert!(!allowed(&other, "https://auth.docker.io/token"));
    }
}
