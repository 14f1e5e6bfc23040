//! Who may do what to which repository: client address allow-list, identity (a client
//! certificate's common name, or Basic auth against an htpasswd file) and per-repository rules
//! naming the actions (pull, push, delete) they allow. Off unless configured; when on, it is
//! decided before the cache is consulted, so cached bytes of a repository are never served to a
//! client who may not pull it.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use ipnet::IpNet;
use serde::Deserialize;

use crate::reference::{Registry, RepoName};

pub(crate) mod passwords;
pub mod token;

use passwords::Passwords;
use token::Tokens;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Token(#[from] token::Error),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: only bcrypt htpasswd entries (htpasswd -B) are supported")]
    NotBcrypt { path: PathBuf, line: usize },
    #[error("invalid address range '{0}' in access.allow_cidrs")]
    Cidr(String),
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Credentials are needed, or the ones sent were wrong: a 401 with a challenge (Bearer on
    /// the registry API, Basic on the status page and metrics).
    Unauthenticated(String),
    /// The client is known but not allowed; the message names the rule.
    Denied(String),
    /// Too many wrong passwords from this address lately.
    TooManyFailures { retry_after: Duration },
}

/// The `[access]` table of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    pub htpasswd: Option<PathBuf>,
    /// Client certificates: `required` or `optional` (then the rules decide); absent: not asked.
    pub client_certificates: Option<ClientCertificates>,
    /// CA for client certificates; the mirror's own CA when absent.
    pub client_ca: Option<PathBuf>,
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    /// Repositories anyone may pull, as `registry/repo` globs (`docker.io/library/*`); never
    /// more than pull.
    pub anonymous: Option<Vec<String>>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertificates {
    Required,
    Optional,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// User names (htpasswd users or certificate common names); `*` is any known client.
    pub users: Vec<String>,
    /// `registry/repo` globs.
    pub repos: Vec<String>,
    /// What the users may do there; pull only when absent, the meaning rules had before they
    /// named actions.
    #[serde(default = "pull_only")]
    pub actions: Vec<Action>,
}

fn pull_only() -> Vec<Action> {
    vec![Action::Pull]
}

/// What a request does to a repository, as the Docker token spec names it in scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    /// Every action, in the order scopes list them.
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

/// A client as its request proves it: who, and, when it sent a bearer token, the repository
/// names (as its paths spell them) that token is for, each with the actions it grants there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub identity: Identity,
    pub token_scope: Option<Vec<(String, Vec<Action>)>>,
}

impl Client {
    fn proven(identity: Identity) -> Client {
        Client {
            identity,
            token_scope: None,
        }
    }
}

/// The validated policy.
pub struct Access {
    passwords: Passwords,
    cidrs: Vec<IpNet>,
    anonymous: Vec<String>,
    rules: Vec<RuleConfig>,
    /// Present when clients can prove who they are, and so have something to log in with.
    tokens: Option<Tokens>,
}

impl Access {
    /// `None` when the config turns nothing on: then everyone may do anything. Tokens are
    /// signed with the key at `token_key`, made there on first use.
    pub fn new(config: &AccessConfig, token_key: &Path) -> Result<Option<Access>, Error> {
        let identities = config.htpasswd.is_some() || config.client_certificates.is_some();
        if !identities && config.allow_cidrs.is_empty() && config.rules.is_empty() && config.anonymous.is_none() {
            return Ok(None);
        }
        let passwords = Passwords::read(config.htpasswd.as_deref())?;
        let cidrs = config
            .allow_cidrs
            .iter()
            .map(|c| parse_cidr(c))
            .collect::<Result<_, _>>()?;
        // With identities configured, anonymous clients get nothing unless listed; without,
        // everyone is anonymous, so the default must let them pull.
        let default_anonymous = if identities { Vec::new() } else { vec!["*".to_owned()] };
        Ok(Some(Access {
            passwords,
            cidrs,
            anonymous: config.anonymous.clone().unwrap_or(default_anonymous),
            rules: config.rules.clone(),
            tokens: identities.then(|| Tokens::load_or_create(token_key)).transpose()?,
        }))
    }

    /// Checks the address and establishes who the client is: its certificate's name when it
    /// presented one, else a bearer token of this mirror's, else Basic credentials, else
    /// anonymous.
    pub async fn identify(
        &self,
        peer: IpAddr,
        certificate_user: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Client, Refusal> {
        self.check_address(peer)?;
        if let Some(user) = certificate_user {
            return Ok(Client::proven(Identity::User(user.to_owned())));
        }
        let Some((scheme, value)) = authorization.and_then(|v| v.split_once(' ')) else {
            return Ok(Client::proven(Identity::Anonymous));
        };
        match (scheme, &self.tokens) {
            ("Bearer", Some(tokens)) => {
                let verified = (tokens.verify_access(value.trim(), token::SERVICE))
                    .ok_or_else(|| Refusal::Unauthenticated("the token is invalid or expired".into()))?;
                Ok(Client {
                    identity: verified.user.map_or(Identity::Anonymous, Identity::User),
                    token_scope: Some(verified.grants),
                })
            }
            ("Basic", _) => self.check_basic(peer, value.trim()).await.map(Client::proven),
            _ => Ok(Client::proven(Identity::Anonymous)),
        }
    }

    pub fn check_address(&self, peer: IpAddr) -> Result<(), Refusal> {
        let peer = canonical(peer);
        if !self.cidrs.is_empty() && !self.cidrs.iter().any(|net| net.contains(&peer)) {
            return Err(Refusal::Denied(format!(
                "client address {peer} is not in access.allow_cidrs"
            )));
        }
        Ok(())
    }

    /// The token service, when clients have identities to log in with.
    pub fn tokens(&self) -> Option<&Tokens> {
        self.tokens.as_ref()
    }

    /// Whether `user` is still one of the htpasswd file's users (a refresh token outlives
    /// neither the user nor a restart that removed it).
    pub fn has_user(&self, user: &str) -> bool {
        self.passwords.has_user(user)
    }

    async fn check_basic(&self, peer: IpAddr, encoded: &str) -> Result<Identity, Refusal> {
        let Some((user, password)) = basic_credentials(encoded) else {
            return Err(Refusal::Unauthenticated("wrong user name or password".into()));
        };
        self.passwords.check(canonical(peer), &user, &password).await
    }

    /// The token service's password grant, against the htpasswd file.
    pub async fn check_password(&self, peer: IpAddr, user: &str, password: &str) -> Result<Identity, Refusal> {
        self.passwords.check(canonical(peer), user, password).await
    }

    /// `/v2/` answers 401 to a client that proved nothing when there is something to log in
    /// with: dockerd, containerd, podman and skopeo send credentials only after that
    /// challenge, and fetch a token (an anonymous one when they have no credentials) from the
    /// realm it names. Without identities, only clients that could pull nothing are refused.
    pub fn check_login(&self, client: &Client) -> Result<(), Refusal> {
        let proved_nothing = client.identity == Identity::Anonymous && client.token_scope.is_none();
        let challenge = if self.tokens.is_some() {
            proved_nothing
        } else {
            proved_nothing && self.anonymous.is_empty()
        };
        if challenge {
            return Err(Refusal::Unauthenticated(
                "this mirror needs credentials or a token".into(),
            ));
        }
        Ok(())
    }

    /// The status page and metrics, which people open in a browser: a client that proved
    /// nothing is refused (with a Basic challenge a browser can answer) only when anonymous
    /// clients could pull nothing.
    pub fn check_viewer(&self, client: &Client) -> Result<(), Refusal> {
        if client.identity == Identity::Anonymous && self.anonymous.is_empty() {
            return Err(Refusal::Unauthenticated("this mirror needs credentials".into()));
        }
        Ok(())
    }

    /// Whether `client` may do `action` to the repository its path names `name`
    /// (`registry`/`repo` once located): the rules must let its identity do it (a 403 naming
    /// the rule when not), and its token, if it sent one, must grant that action on that name
    /// (a 401 when not, so the client fetches one that does).
    pub fn admit(
        &self,
        client: &Client,
        registry: &Registry,
        repo: &RepoName,
        name: &str,
        action: Action,
    ) -> Result<(), Refusal> {
        self.authorize(&client.identity, registry, repo, action)?;
        match &client.token_scope {
            Some(scope)
                if !scope
                    .iter()
                    .any(|(granted, actions)| granted == name && actions.contains(&action)) =>
            {
                Err(Refusal::Unauthenticated(format!(
                    "the token does not grant {action} on {name}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Whether the rules let `identity` do `action` to `registry/repo`. `anonymous` globs
    /// grant pull to anyone; with no rules at all, every known user may do anything.
    pub fn authorize(
        &self,
        identity: &Identity,
        registry: &Registry,
        repo: &RepoName,
        action: Action,
    ) -> Result<(), Refusal> {
        let name = format!("{registry}/{repo}");
        if action == Action::Pull && self.anonymous.iter().any(|glob| matches(glob, &name)) {
            return Ok(());
        }
        let Identity::User(user) = identity else {
            return Err(Refusal::Unauthenticated(format!(
                "credentials are needed to {action} {name}"
            )));
        };
        let default_rule = self.rules.is_empty();
        let allowed = default_rule
            || self.rules.iter().any(|rule| {
                rule.actions.contains(&action)
                    && rule.users.iter().any(|u| u == "*" || u == user)
                    && rule.repos.iter().any(|glob| matches(glob, &name))
            });
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Denied(format!(
                "no access.rules entry lets {user} {action} {name}"
            )))
        }
    }
}

/// The user name and password of a Basic `Authorization` value (RFC 7617): base64 of
/// `user:password`, split at the first `:`, since a user name cannot hold one and a password can.
pub(crate) fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// IPv4 clients of a dual-stack listener arrive as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_cidr(text: &str) -> Result<IpNet, Error> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| Error::Cidr(text.to_owned()))
}

/// `*` matches any run of characters, `/` included.
fn matches(glob: &str, name: &str) -> bool {
    let mut parts = glob.split('*');
    let Some(first) = parts.next() else { return false };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests;
