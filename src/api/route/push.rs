//! The routes that change a repository: uploads, manifest pushes and deletes. Routed for any
//! registry; the handler refuses them for mirrored ones.

use std::borrow::Cow;

use http::Method;

use super::{locate, locate_name, namespace, pairs, reference, Error, Mount, Route, UploadStep};
use crate::digest::Digest;

pub(super) fn route(method: &Method, segments: &[Cow<'_, str>], query: Option<&str>) -> Result<Route, Error> {
    match segments {
        // `POST …/blobs/uploads/` (the trailing `/` as the spec writes it) or without it.
        [name @ .., blobs, uploads, last] if is_uploads(blobs, uploads) && last.is_empty() => {
            start(method, name, query)
        }
        [name @ .., blobs, uploads] if is_uploads(blobs, uploads) => start(method, name, query),
        [name @ .., blobs, uploads, id] if is_uploads(blobs, uploads) && !name.is_empty() => {
            let (registry, repo) = locate(name, query)?;
            let id = id.parse().ok();
            let step = match *method {
                Method::PATCH => UploadStep::Append,
                Method::PUT => UploadStep::Finish(digest(query)?),
                Method::DELETE => UploadStep::Cancel,
                _ => return Err(Error::Unsupported),
            };
            Ok(Route::Upload {
                registry,
                repo,
                id,
                step,
            })
        }
        [name @ .., kind, target] if !name.is_empty() && kind == "manifests" => {
            let (registry, repo) = locate(name, query)?;
            let reference = reference(target)?;
            match *method {
                Method::PUT => Ok(Route::PutManifest {
                    registry,
                    repo,
                    reference,
                }),
                Method::DELETE => Ok(Route::DeleteManifest {
                    registry,
                    repo,
                    reference,
                }),
                _ => Err(Error::Unsupported),
            }
        }
        [name @ .., kind, target] if !name.is_empty() && kind == "blobs" && *method == Method::DELETE => {
            let (registry, repo) = locate(name, query)?;
            Ok(Route::DeleteBlob {
                registry,
                repo,
                digest: target.parse()?,
            })
        }
        _ => Err(Error::Unsupported),
    }
}

fn is_uploads(blobs: &str, uploads: &str) -> bool {
    blobs == "blobs" && uploads == "uploads"
}

fn start(method: &Method, name: &[Cow<'_, str>], query: Option<&str>) -> Result<Route, Error> {
    if *method != Method::POST || name.is_empty() {
        return Err(Error::Unsupported);
    }
    let (registry, repo) = locate(name, query)?;
    Ok(Route::StartUpload {
        registry,
        repo,
        digest: digest(query)?,
        mount: mount(query)?,
    })
}

/// `?digest=`, checked; absent is `None`.
fn digest(query: Option<&str>) -> Result<Option<Digest>, Error> {
    let given = pairs(query).find(|(k, _)| k == "digest");
    given.map(|(_, d)| d.parse().map_err(Error::DigestInvalid)).transpose()
}

/// `?mount=<digest>&from=<name>`. A `from` that names no repository leaves no mount to try:
/// the client then uploads, as the spec has it for any mount that cannot be made.
fn mount(query: Option<&str>) -> Result<Option<Mount>, Error> {
    let Some((_, digest)) = pairs(query).find(|(k, _)| k == "mount") else {
        return Ok(None);
    };
    let digest: Digest = digest.parse()?;
    let Some((_, name)) = pairs(query).find(|(k, _)| k == "from") else {
        return Ok(None);
    };
    let ns = namespace(query)?;
    Ok(locate_name(&name, ns.as_ref()).map(|(registry, repo)| Mount {
        digest,
        registry,
        repo,
        name: name.into_owned(),
    }))
}
