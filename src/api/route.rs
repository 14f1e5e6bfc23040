//! Request routing as a pure function: method and raw path in, a typed `Route` out, with every
//! name, tag and digest already validated.

use http::Method;

use super::error::Error;
use crate::digest::Digest;
use crate::reference::{self, Reference, Registry, RepoName};

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
        registry: Registry,
        repo: RepoName,
        reference: Reference,
    },
    Blob {
        registry: Registry,
        repo: RepoName,
        digest: Digest,
    },
    Tags {
        registry: Registry,
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
    /// digests hold a `:`, which keeps the split unambiguous. The registry comes from a host as
    /// the name's first component (`/v2/ghcr.io/org/tool/...`), else from containerd's `ns`
    /// query parameter, else it is Docker Hub.
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Route, Error> {
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
        if !read {
            return Err(Error::Unsupported);
        }
        if rest.is_empty() || rest == "/" {
            return Ok(Route::Base);
        }
        let rest = rest.strip_prefix('/').ok_or(Error::NoRoute)?;
        if let Some(name) = rest.strip_suffix("/tags/list") {
            let (registry, repo) = locate(name, query)?;
            return Ok(Route::Tags { registry, repo });
        }
        let mut parts = rest.rsplitn(3, '/');
        let (Some(target), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::NoRoute);
        };
        match kind {
            "manifests" => {
                let (registry, repo) = locate(name, query)?;
                Ok(Route::Manifest {
                    registry,
                    repo,
                    reference: reference(target)?,
                })
            }
            "blobs" => {
                let (registry, repo) = locate(name, query)?;
                Ok(Route::Blob {
                    registry,
                    repo,
                    digest: target.parse()?,
                })
            }
            _ => Err(Error::NoRoute),
        }
    }
}

/// Which registry a name belongs to, and the name within it. Percent-encoding, `//` and dot
/// segments all fail the name grammar, which admits none of `%`, empty components or
/// components starting with `.`.
fn locate(name: &str, query: Option<&str>) -> Result<(Registry, RepoName), Error> {
    let (registry, name) = match name.split_once('/') {
        Some((host, rest)) if Registry::looks_like_host(host) => (host.parse().map_err(|_| Error::NameInvalid)?, rest),
        _ => (namespace(query)?.unwrap_or_else(Registry::docker_hub), name),
    };
    let repo = RepoName::on(&registry, name).map_err(|_| Error::NameInvalid)?;
    Ok((registry, repo))
}

/// containerd's `ns=<registry>` (distribution-spec "Registry Proxying").
pub fn namespace(query: Option<&str>) -> Result<Option<Registry>, Error> {
    let Some(value) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("ns="))
    else {
        return Ok(None);
    };
    let value = value.replace("%3A", ":").replace("%3a", ":");
    value.parse().map(Some).map_err(|_| Error::RegistryUnknown)
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

    fn check(method: Method, uri: &str, want: Result<&str, &str>) {
        let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));
        match (Route::parse(&method, path, query), want) {
            (Ok(route), Ok(summary)) => assert_eq!(summarize(&route), summary, "{uri}"),
            (Err(e), Err(variant)) => assert!(format!("{e:?}").starts_with(variant), "{uri}: {e:?}"),
            (got, want) => panic!("{uri}: got {got:?}, want {want:?}"),
        }
    }

    fn summarize(route: &Route) -> String {
        match route {
            Route::Manifest {
                registry,
                repo,
                reference,
            } => format!("manifest {registry}/{repo} {reference}"),
            Route::Blob { registry, repo, digest } => format!("blob {registry}/{repo} {digest}"),
            Route::Tags { registry, repo } => format!("tags {registry}/{repo}"),
            other => other.label().into(),
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
            Ok("manifest docker.io/library/alpine 3.20"),
        );
        check(
            Method::GET,
            "/v2/someuser/tool/manifests/latest",
            Ok("manifest docker.io/someuser/tool latest"),
        );
        check(
            Method::GET,
            &format!("/v2/a/blobs/{DIGEST}"),
            Ok(&format!("blob docker.io/library/a {DIGEST}")),
        );
        check(
            Method::GET,
            "/v2/foo/manifests/bar/manifests/latest",
            Ok("manifest docker.io/foo/manifests/bar latest"),
        );
        check(Method::GET, "/v2/foo/blobs/tags/list", Ok("tags docker.io/foo/blobs"));
        check(
            Method::GET,
            &format!("/v2/a/manifests/{DIGEST}"),
            Ok(&format!("manifest docker.io/library/a {DIGEST}")),
        );
    }

    #[test]
    fn registries_by_prefix_and_namespace() {
        check(
            Method::GET,
            "/v2/ghcr.io/org/tool/manifests/1",
            Ok("manifest ghcr.io/org/tool 1"),
        );
        check(
            Method::GET,
            "/v2/tool/manifests/1?ns=ghcr.io",
            Ok("manifest ghcr.io/tool 1"),
        );
        check(
            Method::GET,
            "/v2/library/alpine/manifests/1?ns=docker.io",
            Ok("manifest docker.io/library/alpine 1"),
        );
        check(
            Method::GET,
            "/v2/alpine/manifests/1?ns=index.docker.io",
            Ok("manifest docker.io/library/alpine 1"),
        );
        check(
            Method::GET,
            "/v2/registry.lan:5000/app/tags/list",
            Ok("tags registry.lan:5000/app"),
        );
        check(
            Method::GET,
            "/v2/app/tags/list?n=5&ns=registry.lan%3A5000",
            Ok("tags registry.lan:5000/app"),
        );
        check(
            Method::GET,
            "/v2/docker.io/alpine/manifests/1",
            Ok("manifest docker.io/library/alpine 1"),
        );
        check(
            Method::GET,
            "/v2/localhost/app/manifests/1",
            Ok("manifest localhost/app 1"),
        );
        check(Method::GET, "/v2/a/manifests/1?ns=bad_host", Err("RegistryUnknown"));
        check(Method::GET, "/v2/bad_host.io/a/manifests/1", Err("NameInvalid"));
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
