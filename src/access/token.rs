//! The mirror's own bearer tokens, as Docker Hub's and Harbor's token services issue them: a
//! JWT naming the client (`sub`, empty for anonymous) and the repositories it may act on, with
//! the actions for each (`access`), signed with HMAC-SHA256 under a key kept in the data directory. A token is
//! verified by its signature and expiry alone, so no request looks anything up. Refresh
//! tokens (what `docker login` keeps) are long-lived JWTs under the same key that name the
//! user only; they are refused where an access token is expected, and the other way round.

use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};

use super::Action;

/// Access tokens are short-lived: rules and passwords changed in the config take effect
/// within this long, and a leaked token is worth little.
pub const ACCESS_TTL: Duration = Duration::from_secs(300);
/// What `docker login` stores instead of the password; a user removed from htpasswd loses
/// it at the next refresh, which checks the user again.
pub const REFRESH_TTL: Duration = Duration::from_secs(7 * 86_400);
const ISSUER: &str = "regmirror";
/// The `service` of challenges and tokens: one name, whatever host a client used.
pub const SERVICE: &str = "regmirror";
const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read or create the token signing key {path}: {source}")]
    Key { path: PathBuf, source: io::Error },
    #[error("the token signing key {0} is not {KEY_BYTES} hex-encoded bytes; delete it to make a new one")]
    BadKey(PathBuf),
    #[error("cannot sign a token: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `None`: an anonymous token.
    pub user: Option<String>,
    /// Repository names (as the client names them in paths), each with the actions the token
    /// grants there (never none).
    pub grants: Vec<(String, Vec<Action>)>,
}

/// One `access` entry of a token, in the Docker token format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Grant {
    pub fn repository(name: &str, actions: &[Action]) -> Grant {
        Grant {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    access: Vec<Grant>,
    /// Set on refresh tokens only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    refresh: bool,
}

/// Issues and verifies tokens for one service (the mirror's name in challenges).
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Tokens {
    /// The key at `path`, created (0600) with fresh random bytes on first use.
    pub fn load_or_create(path: &Path) -> Result<Tokens, Error> {
        let key_error = |source| Error::Key {
            path: path.to_owned(),
            source,
        };
        let hex_key = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_key(path).map_err(key_error)?,
            Err(e) => return Err(key_error(e)),
        };
        let key = hex::decode(hex_key.trim()).map_err(|_| Error::BadKey(path.to_owned()))?;
        if key.len() != KEY_BYTES {
            return Err(Error::BadKey(path.to_owned()));
        }
        Ok(Tokens::from_secret(&key))
    }

    pub fn from_secret(secret: &[u8]) -> Tokens {
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// An access token for `user` (`None`: anonymous) granting `access`, valid from `now`.
    pub fn access(
        &self,
        service: &str,
        user: Option<&str>,
        access: Vec<Grant>,
        now: SystemTime,
    ) -> Result<String, Error> {
        self.sign(service, user.unwrap_or(""), access, false, now, ACCESS_TTL)
    }

    pub fn refresh(&self, service: &str, user: &str, now: SystemTime) -> Result<String, Error> {
        self.sign(service, user, Vec::new(), true, now, REFRESH_TTL)
    }

    /// The access token's holder and grants; `None` when the signature, service, kind or
    /// time window is wrong.
    pub fn verify_access(&self, token: &str, service: &str) -> Option<Verified> {
        let claims = self.verify(token, service).filter(|c| !c.refresh)?;
        let grants = (claims.access.into_iter())
            .filter_map(|g| {
                let actions = named(&g.actions);
                (g.kind == "repository" && !actions.is_empty()).then_some((g.name, actions))
            })
            .collect();
        Some(Verified {
            user: (!claims.sub.is_empty()).then_some(claims.sub),
            grants,
        })
    }

    /// The user a refresh token was issued to.
    pub fn verify_refresh(&self, token: &str, service: &str) -> Option<String> {
        self.verify(token, service)
            .filter(|c| c.refresh && !c.sub.is_empty())
            .map(|c| c.sub)
    }

    fn verify(&self, token: &str, service: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[service]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }

    fn sign(
        &self,
        service: &str,
        sub: &str,
        access: Vec<Grant>,
        refresh: bool,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<String, Error> {
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: ISSUER.into(),
            sub: sub.into(),
            aud: service.into(),
            iat,
            nbf: iat,
            exp: iat + ttl.as_secs(),
            access,
            refresh,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::Sign)
    }
}

/// Writes a fresh key readable by the owner only; `create_new` so that two processes
/// starting at once cannot each write a key and sign with different ones.
fn create_key(path: &Path) -> io::Result<String> {
    let mut key = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| io::Error::other("the system's random source failed"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = hex::encode(key);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut file) => {
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            Ok(text)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => std::fs::read_to_string(path),
        Err(e) => Err(e),
    }
}

/// The actions `words` name, in `Action::ALL`'s order, each once; words naming none (another
/// service's actions) are left out.
fn named<S: AsRef<str>>(words: &[S]) -> Vec<Action> {
    (Action::ALL.into_iter())
        .filter(|action| words.iter().any(|w| w.as_ref() == action.as_str()))
        .collect()
}

/// A requested scope, `repository:<name>:<actions>`; the name may hold a `:` (a registry
/// with a port), so the type ends at the first `:` and the actions start after the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub name: String,
    /// What is asked for, `*` read as every action.
    pub actions: Vec<Action>,
}

impl Scope {
    /// Repository scopes only; anything else (`registry:catalog:*`), or a scope naming no action
    /// regmirror knows, is `None` and granted nothing.
    pub fn parse(text: &str) -> Option<Scope> {
        let rest = text.strip_prefix("repository:")?;
        let (name, actions) = rest.rsplit_once(':')?;
        if name.is_empty() {
            return None;
        }
        let words: Vec<&str> = actions.split(',').collect();
        let actions = if words.contains(&"*") {
            Action::ALL.to_vec()
        } else {
            named(&words)
        };
        if actions.is_empty() {
            return None;
        }
        Some(Scope {
            name: name.into(),
            actions,
        })
    }
}

#[cfg(test)]
mod tests;
