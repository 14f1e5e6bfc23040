//! What the fake records of each request, so tests can assert what did, and did not, reach
//! the upstream.

use http::Method;

use super::serve;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Registry,
    Cdn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ping,
    Token,
    Manifest,
    Blob,
    TagsList,
    Other,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub role: Role,
    pub method: Method,
    /// HTTP/2 only over TLS, when the client offered it.
    pub version: http::Version,
    pub kind: Kind,
    pub path: String,
    pub query: Option<String>,
    /// Repository name; for the CDN, the one the redirect was issued for.
    pub name: Option<String>,
    /// Tag or digest.
    pub reference: Option<String>,
    pub authorization: Option<String>,
    /// Every `Accept` line, split on commas and trimmed.
    pub accept: Vec<String>,
    pub range: Option<String>,
}

impl Request {
    /// Every value of a query parameter, percent-decoded.
    pub fn query_values(&self, key: &str) -> Vec<String> {
        serve::parse_query(self.query.as_deref())
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    }

    pub fn is(&self, role: Role, method: &Method, kind: Kind) -> bool {
        self.role == role && self.method == method && self.kind == kind
    }
}
