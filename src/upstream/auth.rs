//! Upstream authentication: `WWW-Authenticate` challenges and a token cache keyed by scope.
//!
//! Docker Hub hands out short-lived bearer tokens per repository scope; fetching one per
//! request would double the request count and run into the token endpoint's own limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use http::HeaderValue;
// tokio's clock rather than std's: it is the monotonic clock, except in a test that pauses
// time, where it moves only when the test advances it, so expiry is tested without sleeping.
use tokio::time::Instant;

use crate::config::Credentials;
use crate::sync::LockExt;

/// Tokens are dropped this long before the upstream says they expire, since a token is
/// checked when a request starts and a long blob transfer must not start on a dying one.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The longest a token is kept, whatever the upstream says: a token endpoint may answer any
/// number, and the clock's arithmetic overflows on the largest.
const LONGEST_TOKEN_LIFE: Duration = Duration::from_secs(86_400);
/// The margin never shortens a token's use below this, or a token barely longer than the
/// margin would be fetched again for every request.
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

/// How long to keep a token the upstream says lives `expires_in` seconds (60 when absent, a
/// day at most): the margin less, but at least `SHORTEST_TOKEN_LIFE`, and never past
/// `expires_in`, since a token sent after it is refused and costs a round trip to find that out.
pub fn token_life(expires_in: Option<u64>) -> Duration {
    let life = Duration::from_secs(expires_in.unwrap_or(60)).min(LONGEST_TOKEN_LIFE);
    life.saturating_sub(EXPIRY_MARGIN).max(SHORTEST_TOKEN_LIFE.min(life))
}

/// Memory for kept tokens, scopes included: a thousand or so of Docker Hub's (a few KiB each).
/// When full, the tokens that expire soonest make room.
const MAX_TOKEN_BYTES: usize = 4 * 1024 * 1024;

/// `Authorization` values by scope. A std mutex: the critical sections are map operations and
/// never span an `.await`.
#[derive(Default)]
pub struct Tokens {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_scope: HashMap<String, (HeaderValue, Instant)>,
    /// Bytes of the scopes and values in `by_scope`.
    bytes: usize,
}

fn weight(scope: &str, value: &HeaderValue) -> usize {
    scope.len() + value.len()
}

impl Kept {
    fn remove(&mut self, scope: &str) {
        if let Some((value, _)) = self.by_scope.remove(scope) {
            self.bytes -= weight(scope, &value);
        }
    }

    /// A scope asked for once (a client naming repository after repository) must not keep
    /// its entry forever.
    fn drop_expired(&mut self, now: Instant) {
        self.by_scope.retain(|_, (_, expires)| *expires > now);
        self.bytes = (self.by_scope.iter())
            .map(|(scope, (value, _))| weight(scope, value))
            .sum();
    }

    /// Drops the tokens that expire soonest until `needed` more bytes fit.
    fn make_room(&mut self, needed: usize) {
        while self.bytes + needed > MAX_TOKEN_BYTES {
            let soonest = (self.by_scope.iter())
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(scope, _)| scope.clone());
            match soonest {
                Some(scope) => self.remove(&scope),
                None => return,
            }
        }
    }
}

impl Tokens {
    pub fn get(&self, scope: &str) -> Option<HeaderValue> {
        let mut kept = self.kept.locked();
        match kept.by_scope.get(scope) {
            Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                kept.remove(scope);
                None
            }
            None => None,
        }
    }

    /// Stores a token, dropping every expired one, and the soonest to expire when full.
    pub fn put(&self, scope: &str, value: HeaderValue, life: Duration) {
        let now = Instant::now();
        let needed = weight(scope, &value);
        let mut kept = self.kept.locked();
        kept.drop_expired(now);
        kept.remove(scope);
        if needed > MAX_TOKEN_BYTES {
            return;
        }
        kept.make_room(needed);
        kept.bytes += needed;
        kept.by_scope.insert(scope.to_owned(), (value, now + life));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.locked().by_scope.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expired_tokens_of_scopes_never_asked_again_are_dropped() {
        let tokens = Tokens::default();
        let value = HeaderValue::from_static("Bearer t");
        for n in 0..100 {
            tokens.put(&format!("repository:r{n}:pull"), value.clone(), Duration::from_secs(60));
        }
        assert_eq!(tokens.len(), 100);
        tokio::time::advance(Duration::from_secs(61)).await;
        tokens.put("repository:other:pull", value, Duration::from_secs(60));
        assert_eq!(tokens.len(), 1, "only the live token is kept");
    }

    #[tokio::test(start_paused = true)]
    async fn kept_tokens_stay_within_their_memory_and_the_soonest_to_expire_make_room() {
        let tokens = Tokens::default();
        let value = bearer(&"t".repeat(4000)).expect("header");
        let scope = |n: usize| format!("repository:r{n}:pull");
        let count = MAX_TOKEN_BYTES / 4000 + 10;
        for n in 0..count {
            let life = Duration::from_secs(60 + n as u64);
            tokens.put(&scope(n), value.clone(), life);
        }
        let kept = tokens.kept.locked().bytes;
        assert!(kept <= MAX_TOKEN_BYTES, "{kept} bytes kept");
        let summed: usize = (tokens.kept.locked().by_scope.iter())
            .map(|(s, (v, _))| weight(s, v))
            .sum();
        assert_eq!(kept, summed, "the running count is right");
        assert!(tokens.len() < count);
        assert_eq!(tokens.get(&scope(0)), None, "the soonest to expire made room");
        assert_eq!(tokens.get(&scope(count - 1)), Some(value), "the latest is kept");
    }

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

    /// Stores a token the upstream says lives `expires_in`, and checks with the clock paused
    /// that it is reused up to the last millisecond of `kept` and not at `kept`, which must
    /// never be later than the upstream's own expiry.
    async fn check_kept(expires_in: Option<u64>, kept: Duration) {
        let upstream_life = Duration::from_secs(expires_in.unwrap_or(60));
        assert!(kept <= upstream_life, "{expires_in:?}: kept past the upstream's expiry");
        let tokens = Tokens::default();
        let value = bearer("t").expect("header");
        tokens.put("s", value.clone(), token_life(expires_in));
        if let Some(before) = kept.checked_sub(Duration::from_millis(1)) {
            tokio::time::advance(before).await;
            assert_eq!(tokens.get("s"), Some(value), "{expires_in:?}: reused before {kept:?}");
            assert_eq!(tokens.get("other"), None, "tokens are per scope");
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(tokens.get("s"), None, "{expires_in:?}: not reused at {kept:?}");
        tokio::time::advance(upstream_life).await;
        assert_eq!(tokens.get("s"), None, "{expires_in:?}: an expired token stays gone");
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_reused_until_the_margin_before_expiry_and_never_after_it() {
        // Docker Hub's five minutes, and the spec's 60 s default when `expires_in` is absent.
        check_kept(Some(300), Duration::from_secs(290)).await;
        check_kept(None, Duration::from_secs(50)).await;
        check_kept(Some(16), Duration::from_secs(6)).await;
        // The minimum: the margin would leave 2 s, a token per request.
        check_kept(Some(12), Duration::from_secs(5)).await;
        check_kept(Some(5), Duration::from_secs(5)).await;
        // Shorter than the minimum: kept only as long as the upstream honours it.
        check_kept(Some(3), Duration::from_secs(3)).await;
        check_kept(Some(1), Duration::from_secs(1)).await;
        check_kept(Some(0), Duration::ZERO).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_said_to_live_longer_than_the_clock_counts_is_kept_a_day() {
        let tokens = Tokens::default();
        let value = bearer("t").expect("header");
        tokens.put("s", value.clone(), token_life(Some(u64::MAX)));
        tokio::time::advance(LONGEST_TOKEN_LIFE - EXPIRY_MARGIN - Duration::from_millis(1)).await;
        assert_eq!(tokens.get("s"), Some(value));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(tokens.get("s"), None);
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
