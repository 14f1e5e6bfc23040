//! Upstream authentication: `WWW-Authenticate` challenges and a token cache keyed by scope.
//!
//! Docker Hub hands out short-lived bearer tokens per repository scope; fetching one per
//! request would double the request count and run into the token endpoint's own limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::HeaderValue;

use crate::config::Credentials;
use crate::sync::LockExt;

/// Tokens are dropped this long before the upstream says they expire, since a token is
/// checked when a request starts and a long blob transfer must not start on a dying one.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
const SHORTEST_TOKEN_LIFE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. Values may be
/// quoted and quoted values may contain commas (`scope="repository:a:pull,push"`).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

fn parse_params(mut rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            return out;
        };
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.push((key.trim().to_owned(), value.to_owned()));
        rest = after;
    }
}

pub fn basic(credentials: &Credentials) -> HeaderValue {
    let raw = format!("{}:{}", credentials.username, credentials.password);
    sensitive(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

pub fn bearer(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn sensitive(value: &str) -> HeaderValue {
    let mut value = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

/// How long to keep a token the upstream says lives `expires_in` seconds (60 when absent).
pub fn token_life(expires_in: Option<u64>) -> Duration {
    let life = Duration::from_secs(expires_in.unwrap_or(60));
    life.saturating_sub(EXPIRY_MARGIN).max(SHORTEST_TOKEN_LIFE)
}

/// `Authorization` values by scope. A std mutex: the critical sections are a map lookup and
/// never span an `.await`.
#[derive(Default)]
pub struct Tokens {
    by_scope: Mutex<HashMap<String, (HeaderValue, Instant)>>,
}

impl Tokens {
    pub fn get(&self, scope: &str) -> Option<HeaderValue> {
        let mut map = self.by_scope.locked();
        match map.get(scope) {
            Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                map.remove(scope);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, scope: &str, value: HeaderValue, life: Duration) {
        let mut map = self.by_scope.locked();
        map.insert(scope.to_owned(), (value, Instant::now() + life));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="x""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn token_cache_expires() {
        let tokens = Tokens::default();
        let value = bearer("t").expect("header");
        tokens.put("s", value.clone(), Duration::from_secs(30));
        assert_eq!(tokens.get("s"), Some(value.clone()));
        assert_eq!(tokens.get("other"), None);
        tokens.put("s", value, Duration::ZERO);
        assert_eq!(tokens.get("s"), None);
    }

    #[test]
    fn lives() {
        assert_eq!(token_life(None), Duration::from_secs(50));
        assert_eq!(token_life(Some(300)), Duration::from_secs(290));
        assert_eq!(token_life(Some(1)), SHORTEST_TOKEN_LIFE);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        assert!(!format!("{:?}", basic(&creds)).contains("dTpw"));
    }
}
