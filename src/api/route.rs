//! Request routing as a pure function: method, raw path and query in, a typed `Route` out,
//! with every name, tag and digest already validated.

use std::borrow::Cow;

use http::Method;
use percent_encoding::percent_decode_str;

use super::error::Error;
use crate::cache::UploadId;
use crate::digest::Digest;
use crate::reference::{self, Reference, Registry, RepoName};

mod push;

/// A request the mirror answers, as `Route::parse` makes it from the method, path and query.
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
    /// `/token`: the token service (GET, or POST with an OAuth2 form).
    Token,
    /// `/v2/<name>/manifests/<reference>`: a manifest by tag or digest.
    Manifest {
        registry: Registry,
        repo: RepoName,
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`: a layer or config.
    Blob {
        registry: Registry,
        repo: RepoName,
        digest: Digest,
    },
    /// `/v2/<name>/tags/list`: the repository's tags, paged by `n` and `last`.
    Tags { registry: Registry, repo: RepoName },
    /// `PUT /v2/<name>/manifests/<reference>`: a manifest pushed.
    PutManifest {
        registry: Registry,
        repo: RepoName,
        reference: Reference,
    },
    /// `DELETE /v2/<name>/manifests/<reference>`: a manifest (by digest) or a tag deleted.
    DeleteManifest {
        registry: Registry,
        repo: RepoName,
        reference: Reference,
    },
    /// `DELETE /v2/<name>/blobs/<digest>`.
    DeleteBlob {
        registry: Registry,
        repo: RepoName,
        digest: Digest,
    },
    /// `POST /v2/<name>/blobs/uploads/`: an upload started, or a whole blob pushed
    /// (`?digest=`), or one mounted from another repository (`?mount=&from=`).
    StartUpload {
        registry: Registry,
        repo: RepoName,
        digest: Option<Digest>,
        mount: Option<Mount>,
    },
    /// `/v2/<name>/blobs/uploads/<id>`: an upload's status, a chunk, its end, its cancel;
    /// `id` is `None` when it is no upload id this mirror makes (so no upload it knows).
    Upload {
        registry: Registry,
        repo: RepoName,
        id: Option<UploadId>,
        step: UploadStep,
    },
    /// `GET /v2/_catalog`: the hosted repositories, paged by `n` and `last`.
    Catalog,
    /// `GET /v2/<name>/referrers/<digest>`: manifests whose `subject` is the digest.
    Referrers {
        registry: Registry,
        repo: RepoName,
        digest: Digest,
        artifact_type: Option<String>,
    },
}

/// A cross-repository mount's source, as `?mount=<digest>&from=<name>` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub digest: Digest,
    pub registry: Registry,
    pub repo: RepoName,
    /// `from` as the client spelled it: what its token's scope names.
    pub name: String,
}

/// What a request on an upload's URL does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStep {
    /// `GET`: how much is held.
    Status,
    /// `PATCH`: a chunk appended.
    Append,
    /// `PUT ?digest=`: the last chunk, if any, and the check; `None` when no digest was given.
    Finish(Option<Digest>),
    /// `DELETE`.
    Cancel,
}

/// Which kind of route answered a request, without its parameters; `Invalid` when none did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Base,
    CaCert,
    Health,
    Ready,
    Metrics,
    Status,
    Token,
    Manifest,
    Blob,
    Tags,
    Upload,
    PutManifest,
    Delete,
    Catalog,
    Referrers,
    Invalid,
}

impl RouteKind {
    /// The low-cardinality name metrics label requests with.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Base => "base",
            RouteKind::CaCert => "ca",
            RouteKind::Health => "health",
            RouteKind::Ready => "ready",
            RouteKind::Metrics => "metrics",
            RouteKind::Status => "status",
            RouteKind::Token => "token",
            RouteKind::Manifest => "manifest",
            RouteKind::Blob => "blob",
            RouteKind::Tags => "tags",
            RouteKind::Upload => "upload",
            RouteKind::PutManifest => "manifest_put",
            RouteKind::Delete => "delete",
            RouteKind::Catalog => "catalog",
            RouteKind::Referrers => "referrers",
            RouteKind::Invalid => "invalid",
        }
    }

    /// Routes below a repository (`/v2/<name>/…`), which a token's scope names.
    pub fn is_registry_api(self) -> bool {
        matches!(
            self,
            RouteKind::Manifest
                | RouteKind::Blob
                | RouteKind::Tags
                | RouteKind::Upload
                | RouteKind::PutManifest
                | RouteKind::Delete
                | RouteKind::Referrers
        )
    }

    /// Routes that serve content, the only ones a cache hit or miss is counted for.
    pub fn is_content(self) -> bool {
        matches!(self, RouteKind::Manifest | RouteKind::Blob)
    }
}

impl Route {
    /// The route without its parameters.
    pub fn kind(&self) -> RouteKind {
        match self {
            Route::Base => RouteKind::Base,
            Route::CaCert => RouteKind::CaCert,
            Route::Health => RouteKind::Health,
            Route::Ready => RouteKind::Ready,
            Route::Metrics => RouteKind::Metrics,
            Route::Status => RouteKind::Status,
            Route::Token => RouteKind::Token,
            Route::Manifest { .. } => RouteKind::Manifest,
            Route::Blob { .. } => RouteKind::Blob,
            Route::Tags { .. } => RouteKind::Tags,
            Route::StartUpload { .. } | Route::Upload { .. } => RouteKind::Upload,
            Route::PutManifest { .. } => RouteKind::PutManifest,
            Route::DeleteManifest { .. } | Route::DeleteBlob { .. } => RouteKind::Delete,
            Route::Catalog => RouteKind::Catalog,
            Route::Referrers { .. } => RouteKind::Referrers,
        }
    }

    /// The repository a route names, located; `None` for the mirror's own routes.
    pub fn repository(&self) -> Option<(&Registry, &RepoName)> {
        match self {
            Route::Manifest { registry, repo, .. }
            | Route::Blob { registry, repo, .. }
            | Route::Tags { registry, repo }
            | Route::PutManifest { registry, repo, .. }
            | Route::DeleteManifest { registry, repo, .. }
            | Route::DeleteBlob { registry, repo, .. }
            | Route::StartUpload { registry, repo, .. }
            | Route::Upload { registry, repo, .. }
            | Route::Referrers { registry, repo, .. } => Some((registry, repo)),
            _ => None,
        }
    }

    /// The routes an admin listener serves; the main listener leaves them to it when there is one.
    pub fn is_admin(&self) -> bool {
        matches!(self, Route::Health | Route::Ready | Route::Metrics)
    }

    /// Routes on the raw path: it is split on `/` first and each segment percent-decoded after,
    /// so an encoded `/` (`%2F`) can never add a segment; such a segment is refused. The name is
    /// every segment before the last two, so a repository may itself contain `manifests` or
    /// `blobs` components: tags hold no `/` and digests hold a `:`, which keeps the split
    /// unambiguous. The registry comes from a host as the name's first component
    /// (`/v2/ghcr.io/org/tool/...`), else from containerd's `ns` query parameter, else it is
    /// Docker Hub.
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Result<Route, Error> {
        let read = *method == Method::GET || *method == Method::HEAD;
        if path == "/token" && (*method == Method::GET || *method == Method::POST) {
            return Ok(Route::Token);
        }
        if let (true, Some(page)) = (read, page(path)) {
            return Ok(page);
        }
        let Some(rest) = path.strip_prefix("/v2") else {
            return Err(Error::NoRoute);
        };
        if rest.is_empty() || rest == "/" {
            return if read { Ok(Route::Base) } else { Err(Error::Unsupported) };
        }
        let rest = rest.strip_prefix('/').ok_or(Error::NoRoute)?;
        let segments = segments(rest)?;
        match (read, segments.as_slice()) {
            (true, [catalog]) if catalog == "_catalog" => Ok(Route::Catalog),
            (true, _) => content(&segments, query),
            (false, _) => push::route(method, &segments, query),
        }
    }
}

/// The mirror's own pages, outside the registry API.
fn page(path: &str) -> Option<Route> {
    match path {
        "/ca.crt" => Some(Route::CaCert),
        "/healthz" => Some(Route::Health),
        "/readyz" => Some(Route::Ready),
        "/metrics" => Some(Route::Metrics),
        "/" => Some(Route::Status),
        _ => None,
    }
}

/// The raw path's segments, each percent-decoded. One that decodes to a `/` or to bytes that
/// are not UTF-8 is refused; empty (`//`) and dot segments are left to the name grammar, which
/// admits neither.
fn segments(path: &str) -> Result<Vec<Cow<'_, str>>, Error> {
    path.split('/')
        .map(|raw| match percent_decode_str(raw).decode_utf8() {
            Ok(segment) if !segment.contains('/') => Ok(segment),
            _ => Err(Error::NameInvalid),
        })
        .collect()
}

fn content(segments: &[Cow<'_, str>], query: Option<&str>) -> Result<Route, Error> {
    if let [name @ .., kind, target] = segments {
        if !name.is_empty() && kind == "referrers" {
            let (registry, repo) = locate(name, query)?;
            let artifact_type = pairs(query)
                .find(|(k, _)| k == "artifactType")
                .map(|(_, v)| v.into_owned());
            return Ok(Route::Referrers {
                registry,
                repo,
                digest: target.parse()?,
                artifact_type,
            });
        }
    }
    match segments {
        [name @ .., blobs, uploads, id] if !name.is_empty() && blobs == "blobs" && uploads == "uploads" => {
            let (registry, repo) = locate(name, query)?;
            Ok(Route::Upload {
                registry,
                repo,
                id: id.parse().ok(),
                step: UploadStep::Status,
            })
        }
        [name @ .., tags, list] if !name.is_empty() && tags == "tags" && list == "list" => {
            let (registry, repo) = locate(name, query)?;
            Ok(Route::Tags { registry, repo })
        }
        [name @ .., kind, target] if !name.is_empty() && kind == "manifests" => {
            let (registry, repo) = locate(name, query)?;
            Ok(Route::Manifest {
                registry,
                repo,
                reference: reference(target)?,
            })
        }
        [name @ .., kind, target] if !name.is_empty() && kind == "blobs" => {
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

/// Which registry a name belongs to, and the name within it.
pub(super) fn locate(name: &[Cow<'_, str>], query: Option<&str>) -> Result<(Registry, RepoName), Error> {
    let (registry, name) = match name {
        [host, rest @ ..] if !rest.is_empty() && Registry::looks_like_host(host) => {
            (host.parse().map_err(|_| Error::NameInvalid)?, rest)
        }
        _ => (namespace(query)?.unwrap_or_else(Registry::docker_hub), name),
    };
    let repo = RepoName::on(&registry, &name.join("/")).map_err(|_| Error::NameInvalid)?;
    Ok((registry, repo))
}

/// A repository name as a path or a token scope spells it, located as `locate` does, with
/// `ns` standing for containerd's parameter; `None` when it is no valid name.
pub fn locate_name(name: &str, ns: Option<&Registry>) -> Option<(Registry, RepoName)> {
    let segments: Vec<Cow<'_, str>> = name.split('/').map(Cow::Borrowed).collect();
    match ns {
        None => locate(&segments, None).ok(),
        Some(registry) => Some((registry.clone(), RepoName::on(registry, name).ok()?)),
    }
}

/// The repository name as a content path spells it (what precedes `/manifests/…`,
/// `/blobs/…`, `/tags/list`, `/referrers/…` or `/blobs/uploads/…`): what a bearer token's
/// scope names. An upload's path ends in three segments (`blobs/uploads/<id>`, where the id
/// is never a digest), or two when it starts one (`blobs/uploads`, with or without `/`).
pub fn repository_name(path: &str) -> String {
    let name = path.strip_prefix("/v2/").unwrap_or(path);
    let start = name
        .strip_suffix("/blobs/uploads/")
        .or_else(|| name.strip_suffix("/blobs/uploads"));
    let name = match (start, name.rsplitn(4, '/').collect::<Vec<_>>().as_slice()) {
        (Some(start), _) => start,
        (None, [id, "uploads", "blobs", name]) if !id.contains(':') => name,
        _ => name.rsplitn(3, '/').nth(2).unwrap_or(""),
    };
    percent_decode_str(name).decode_utf8_lossy().into_owned()
}

/// containerd's `ns=<registry>` (distribution-spec "Registry Proxying").
pub fn namespace(query: Option<&str>) -> Result<Option<Registry>, Error> {
    let Some((_, value)) = pairs(query).find(|(key, _)| key == "ns") else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| Error::RegistryUnknown)
}

/// The client's query without `ns`, which is for this mirror, not the upstream.
pub fn upstream_query(query: Option<&str>) -> Option<String> {
    let mut kept = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in pairs(query).filter(|(key, _)| key != "ns") {
        kept.append_pair(&key, &value);
        any = true;
    }
    any.then(|| kept.finish())
}

pub(super) fn pairs(query: Option<&str>) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
}

pub(super) fn reference(target: &str) -> Result<Reference, Error> {
    target.parse().map_err(|e| match e {
        reference::Error::Digest(d) => Error::DigestInvalid(d),
        _ => Error::TagInvalid,
    })
}

#[cfg(test)]
mod tests;
