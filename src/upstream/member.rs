//! Another member of this instance's fleet as an upstream: asked over the registry API like
//! any registry, with the fleet's key on every request to it (never on one a redirect took
//! elsewhere), and with `ns` naming the registry, since every member mirrors several.

use http::{HeaderName, HeaderValue, Method};

use super::{Error, Upstream};
use crate::reference::{Registry, RepoName};

/// The header a member proves itself with.
pub const MEMBER_KEY: HeaderName = HeaderName::from_static("regmirror-fleet-key");

pub(super) struct Membership {
    pub(super) key: HeaderValue,
    ns: Registry,
}

impl Upstream {
    /// This client, for asking a member of the fleet for `registry`'s content with `key`.
    pub fn as_member(mut self, key: &str, registry: &Registry) -> Result<Upstream, Error> {
        let mut key =
            HeaderValue::from_str(key).map_err(|_| Error::Protocol("the fleet key is not a header value".into()))?;
        key.set_sensitive(true);
        self.membership = Some(Membership {
            key,
            ns: registry.clone(),
        });
        Ok(self)
    }

    pub(super) fn is_member(&self) -> bool {
        self.membership.is_some()
    }

    /// The request path for `tail` in `repo`, with the registry named for a member.
    pub(super) fn path(&self, repo: &RepoName, tail: &str) -> String {
        match &self.membership {
            None => format!("/v2/{repo}/{tail}"),
            Some(m) => {
                let separator = if tail.contains('?') { '&' } else { '?' };
                format!("/v2/{repo}/{tail}{separator}ns={}", m.ns)
            }
        }
    }

    /// Whether the registry answers at all: any answer below 500 to `/v2/`, a challenge
    /// included, means it is up.
    pub async fn ping(&self) -> Result<(), Error> {
        let uri = self.url("/v2/")?;
        let (response, _) = self.follow(&Method::GET, uri, None, &http::HeaderMap::new()).await?;
        match response.status() {
            status if status.is_server_error() => Err(Error::Status(status)),
            _ => Ok(()),
        }
    }
}
