//! Request routing as a pure function: method and raw path in, a typed `Route` out, with every
//! name, tag and digest already validated.

use http::Method;

use super::error::Error;
use crate::digest::Digest;
use crate::reference::{self, Reference, RepoName};

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    Base,
    /// `/ca.crt`: the mirror's own CA certificate, for clients to install.
    CaCert,
    /// `/healthz`: the process answers.
    Health,
    /// `/readyz`: the index is loaded and the cache writable.
    Ready,
    /// `/metrics`: Prometheus text format.
    Metrics,
    /// `/`: the status page for a person at the gateway.
    Status,
    Manifest {
        repo: RepoName,
        reference: Reference,
    },
    Blob {
        repo: RepoName,
        digest: Digest,
    },
    Tags {
        repo: RepoName,
    },
}

impl Route {
    /// A low-cardinality name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::CaCert => "ca",
            Route::Health => "health",
            Route::Ready => "ready",
            Route::Metrics => "metrics",
            Route::Status => "status",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::Tags { .. } => "tags",
        }
    }

    /// The routes an admin listener serves; the main listener leaves them to it when there is one.
    pub fn is_admin(&self) -> bool {
        matches!(self, Route::Health | Route::Ready | Route::Metrics)
    }

    /// Routes on the raw path. The name is everything before the last two segments, so a
    /// repository may itself contain `manifests` or `blobs` components: tags hold no `/` and
    /// digests hold a `:`, which keeps the split unambiguous.
    pub fn parse(method: &Method, path: &str) -> Result<Route, Error> {
        let read = *method == Method::GET || *method == Method::HEAD;
        match path {
            "/ca.crt" if read => return Ok(Route::CaCert),
            "/healthz" if read => return Ok(Route::Health),
            "/readyz" if read => return Ok(Route::Ready),
            "/metrics" if read => return Ok(Route::Metrics),
            "/" if read => return Ok(Route::Status),
            _ => {}
        }
        let Some(rest) = path.strip_prefix("/v2") else {
            return Err(Error::NoRoute);
        };
        if *method != Method::GET && *method != Method::HEAD {
            return Err(Error::Unsupported);
        }
        if rest.is_empty() || rest == "/" {
            return Ok(Route::Base);
        }
        let rest = rest.strip_prefix('/').ok_or(Error::NoRoute)?;
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Ok(Route::Tags { repo: repo(name)? });
        }
        let mut parts = rest.rsplitn(3, '/');
        let (Some(target), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::NoRoute);
        };
        match kind {
            "manifests" => Ok(Route::Manifest {
                repo: repo(name)?,
                reference: reference(target)?,
            }),
            "blobs" => Ok(Route::Blob {
                repo: repo(name)?,
                digest: target.parse()?,
            }),
            _ => Err(Error::NoRoute),
        }
    }
}

/// Percent-encoding, `//` and dot segments all fail the name grammar, which admits none of
/// `%`, empty components or components starting with `.`.
fn repo(name: &str) -> Result<RepoName, Error> {
    name.parse().map_err(|_| Error::NameInvalid)
}

fn reference(target: &str) -> Result<Reference, Error> {
    target.parse().map_err(|e| match e {
        reference::Error::Digest(d) => Error::DigestInvalid(d),
        _ => Error::TagInvalid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn check(method: Method, path: &str, want: Result<&str, &str>) {
        let got = Route::parse(&method, path);
        match (got, want) {
            (Ok(route), Ok(summary)) => assert_eq!(summarize(&route), summary, "{path}"),
            (Err(e), Err(variant)) => assert!(format!("{e:?}").starts_with(variant), "{path}: {e:?}"),
            (got, want) => panic!("{path}: got {got:?}, want {want:?}"),
        }
    }

    fn summarize(route: &Route) -> String {
        match route {
            Route::Base => "base".into(),
            Route::CaCert => "ca".into(),
            Route::Health | Route::Ready | Route::Metrics | Route::Status => route.label().into(),
            Route::Manifest { repo, reference } => format!("manifest {repo} {reference}"),
            Route::Blob { repo, digest } => format!("blob {repo} {digest}"),
            Route::Tags { repo } => format!("tags {repo}"),
        }
    }

    #[test]
    fn routes() {
        check(Method::GET, "/v2/", Ok("base"));
        check(Method::GET, "/v2", Ok("base"));
        check(Method::GET, "/ca.crt", Ok("ca"));
        check(Method::GET, "/healthz", Ok("health"));
        check(Method::HEAD, "/readyz", Ok("ready"));
        check(Method::GET, "/metrics", Ok("metrics"));
        check(Method::GET, "/", Ok("status"));
        check(
            Method::HEAD,
            "/v2/alpine/manifests/3.20",
            Ok("manifest library/alpine 3.20"),
        );
        check(
            Method::GET,
            "/v2/someuser/tool/manifests/latest",
            Ok("manifest someuser/tool latest"),
        );
        check(
            Method::GET,
            &format!("/v2/a/blobs/{DIGEST}"),
            Ok(&format!("blob library/a {DIGEST}")),
        );
        check(
            Method::GET,
            "/v2/foo/manifests/bar/manifests/latest",
            Ok("manifest foo/manifests/bar latest"),
        );
        check(Method::GET, "/v2/foo/blobs/tags/list", Ok("tags foo/blobs"));
        check(
            Method::GET,
            &format!("/v2/a/manifests/{DIGEST}"),
            Ok(&format!("manifest library/a {DIGEST}")),
        );
    }

    #[test]
    fn rejects() {
        check(Method::PUT, "/v2/a/manifests/latest", Err("Unsupported"));
        check(Method::POST, "/v2/a/blobs/uploads/", Err("Unsupported"));
        check(Method::DELETE, &format!("/v2/a/blobs/{DIGEST}"), Err("Unsupported"));
        check(Method::GET, "/v2/UPPER/manifests/latest", Err("NameInvalid"));
        check(Method::GET, "/v2/a//b/manifests/latest", Err("NameInvalid"));
        check(Method::GET, "/v2/a/../b/manifests/latest", Err("NameInvalid"));
        check(Method::GET, "/v2/a%2Fb/manifests/latest", Err("NameInvalid"));
        check(Method::GET, "/v2/a/manifests/sha256:ABC", Err("DigestInvalid"));
        check(
            Method::GET,
            &format!("/v2/a/blobs/{}", DIGEST.to_uppercase()),
            Err("DigestInvalid"),
        );
        check(Method::GET, "/v2/a/blobs/latest", Err("DigestInvalid"));
        check(Method::GET, "/v2/a/manifests/-bad", Err("TagInvalid"));
        check(Method::GET, "/v2/a/other/x", Err("NoRoute"));
        check(Method::GET, "/v2/a", Err("NoRoute"));
        check(Method::GET, "/elsewhere", Err("NoRoute"));
    }
}
