//! Repository names and references (tag or digest), validated against the distribution
//! spec grammar so no handler has to look at a raw string again.

use std::fmt;
use std::str::FromStr;

use crate::digest::{self, Digest};

/// Many clients cap host + `/` + name at 255; the name alone can be no longer.
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Registry host names that mean Docker Hub in an image name.
const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid repository name")]
    Name,
    #[error("invalid tag")]
    Tag,
    #[error(transparent)]
    Digest(#[from] digest::Error),
    #[error("invalid registry name '{0}'")]
    Registry(String),
}

/// A registry as clients name it: `docker.io`, `ghcr.io`, `registry.example.internal:5000`.
/// Docker Hub's aliases all become `docker.io`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Registry(String);

impl Registry {
    pub fn docker_hub() -> Registry {
        Registry(DOCKER_HUB_HOSTS[0].to_owned())
    }

    pub fn is_docker_hub(&self) -> bool {
        self.0 == DOCKER_HUB_HOSTS[0]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Docker's rule for the first component of an image name: a host has a dot or a port,
    /// or is `localhost`; anything else is a repository path.
    pub fn looks_like_host(component: &str) -> bool {
        component.contains(['.', ':']) || component == "localhost"
    }
}

impl FromStr for Registry {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let lower = s.to_ascii_lowercase();
        if DOCKER_HUB_HOSTS.contains(&lower.as_str()) {
            return Ok(Registry::docker_hub());
        }
        let (host, port) = match lower.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (lower.as_str(), None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        // Digits only: `u16::from_str` would also take a sign, so `host:+5` would name a
        // registry apart from `host:5`.
        let port_ok =
            port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p > 0));
        if host_ok && port_ok && lower.len() <= MAX_NAME_LEN {
            Ok(Registry(lower))
        } else {
            Err(Error::Registry(s.to_owned()))
        }
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A repository name in canonical Docker Hub form: single-component names get `library/`,
/// so `alpine` and `library/alpine` share cache entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name within `registry`: Docker Hub's are canonicalised (`library/`), others' kept.
    pub fn on(registry: &Registry, s: &str) -> Result<RepoName, Error> {
        if registry.is_docker_hub() {
            return s.parse();
        }
        if s.len() > MAX_NAME_LEN || !s.split('/').all(is_path_component) {
            return Err(Error::Name);
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl FromStr for RepoName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() > MAX_NAME_LEN || !s.split('/').all(is_path_component) {
            return Err(Error::Name);
        }
        let name = if s.contains('/') {
            s.to_owned()
        } else {
            format!("library/{s}")
        };
        // The cap holds for the name as kept and sent upstream, `library/` included, or a name
        // accepted once would be refused when read back from its own display.
        if name.len() > MAX_NAME_LEN {
            return Err(Error::Name);
        }
        Ok(RepoName(name))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if alnum(b) {
            if i > run_start && !is_separator(&bytes[run_start..i]) {
                return false;
            }
            run_start = i + 1;
        } else if !matches!(b, b'.' | b'_' | b'-') {
            return false;
        }
    }
    true
}

/// One of `.`, `_`, `__`, or a run of `-`.
fn is_separator(sep: &[u8]) -> bool {
    matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|&b| b == b'-')
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let first_ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let rest_ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if first_ok && rest_ok && s.len() <= MAX_TAG_LEN {
            Ok(Tag(s.to_owned()))
        } else {
            Err(Error::Tag)
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a mutable tag or an immutable digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = Error;

    /// Digests contain `:` and tags cannot, which is what tells them apart.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// An image as people name it: `alpine:3.20`, `library/nginx@sha256:…`, `someuser/tool` (tag
/// `latest`), optionally behind a registry host (`docker.io/`, `site.lan/gallery/ui:v1`); no
/// host means Docker Hub. With both a tag and a digest, the digest wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    pub registry: Registry,
    pub repo: RepoName,
    pub reference: Reference,
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (registry, name) = match s.split_once('/') {
            Some((host, rest)) if Registry::looks_like_host(host) => (host.parse()?, rest),
            _ => (Registry::docker_hub(), s),
        };
        let (name, digest) = match name.split_once('@') {
            Some((name, digest)) => (name, Some(digest.parse::<Digest>()?)),
            None => (name, None),
        };
        let (name, tag) = match name.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag.parse::<Tag>()?)),
            _ => (name, None),
        };
        let reference = match (digest, tag) {
            (Some(digest), _) => Reference::Digest(digest),
            (None, Some(tag)) => Reference::Tag(tag),
            (None, None) => Reference::Tag(Tag("latest".to_owned())),
        };
        Ok(ImageRef {
            repo: RepoName::on(&registry, name)?,
            registry,
            reference,
        })
    }
}

/// The full form, `docker.io/library/alpine:3.20` or `site.lan/gallery/ui@sha256:…`.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let separator = match self.reference {
            Reference::Tag(_) => ':',
            Reference::Digest(_) => '@',
        };
        write!(f, "{}/{}{separator}{}", self.registry, self.repo, self.reference)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
