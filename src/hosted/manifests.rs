//! Pushed manifests: verified (size, digest, JSON shape, every blob and child manifest held
//! by the repository) before anything is stored, then stored, pinned, linked, tagged, and
//! filed under their `subject` for the referrers API. Deletes undo the links and tags; the
//! bytes stay for `gc`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use super::{Error, Hosted};
use crate::cache::store::Link;
use crate::cache::{Lookup, Manifest, Referrer};
use crate::digest::Digest;
use crate::image::Descriptor;
use crate::manifest;
use crate::reference::{Reference, RepoName};

/// What a manifest push made.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: Digest,
    /// The manifest this one refers to, for the `OCI-Subject` answer.
    pub subject: Option<Digest>,
}

/// The parts of a manifest or index a registry checks.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl Hosted {
    /// Stores a manifest pushed as `reference` with the `content_type` the client sent.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<Pushed, Error> {
        let shape: Shape = serde_json::from_slice(&bytes).map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let media_type = media_type(content_type, shape.media_type.as_deref())?;
        let digest = digest_of(reference, &bytes)?;
        self.check_references(repo, media_type, &shape).await?;
        let size = bytes.len() as u64;
        let stored = Manifest {
            bytes,
            media_type: media_type.into(),
        };
        self.cache.put_manifest(&digest, &stored).await?;
        self.cache.pin(&digest)?;
        self.share_manifest(&digest, &stored).await?;
        self.record.link(repo, &digest, size).await?;
        let subject = shape.subject.as_ref().map(|s| s.digest.clone());
        if let Some(subject) = &subject {
            let referrer = Referrer {
                media_type: media_type.to_owned(),
                digest: digest.clone(),
                size,
                artifact_type: shape.artifact_type.or(shape.config.map(|c| c.media_type)),
                annotations: shape.annotations,
            };
            self.record.put_referrer(repo, subject, &referrer).await?;
        }
        // The tag last: whoever pulls by it finds everything it names.
        if let Reference::Tag(tag) = reference {
            self.record.set_tag(repo, tag, &digest).await?;
        }
        Ok(Pushed { digest, subject })
    }

    /// Every blob an image names, or every child an index names, must be in this repository
    /// (and of the size named) before the manifest may be: nothing half-pushed is pullable.
    async fn check_references(&self, repo: &RepoName, media_type: &str, shape: &Shape) -> Result<(), Error> {
        let index = matches!(media_type, manifest::OCI_INDEX | manifest::DOCKER_LIST);
        let named: Vec<&Descriptor> = match (index, &shape.config) {
            (true, _) => shape.manifests.iter().collect(),
            (false, Some(config)) => std::iter::once(config).chain(&shape.layers).collect(),
            (false, None) => return Err(Error::ManifestInvalid("an image manifest needs a config".into())),
        };
        for descriptor in named.into_iter().filter(|d| !d.is_foreign()) {
            let held = self.record.linked(repo, &descriptor.digest).await?;
            let size = match held {
                // A link made by a push has its size; one older than sizes, the file's.
                Some(Link { size: Some(size) }) => Some(size),
                Some(_) => match self.cache.find(&descriptor.digest).await? {
                    Lookup::Cached { size, .. } => Some(size),
                    _ => None,
                },
                None => None,
            };
            match size {
                Some(size) if size == descriptor.size => {}
                Some(size) => {
                    return Err(Error::ManifestInvalid(format!(
                        "{} has {size} bytes, not the {} its descriptor says",
                        descriptor.digest, descriptor.size
                    )))
                }
                None => return Err(Error::ManifestBlobUnknown(descriptor.digest.clone())),
            }
        }
        Ok(())
    }

    /// Deletes by digest (the manifest leaves the repository, with every tag naming it and
    /// its entry under its subject) or by tag (only the tag).
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<(), Error> {
        let digest = match reference {
            Reference::Tag(tag) => {
                if self.record.tag(repo, tag).await?.is_none() {
                    return Err(Error::ManifestUnknown);
                }
                return self.record.remove_tag(repo, tag).await;
            }
            Reference::Digest(digest) => digest,
        };
        if self.record.linked(repo, digest).await?.is_none() {
            return Err(Error::ManifestUnknown);
        }
        for tag in self.record.tags(repo).await? {
            let Ok(tag) = tag.parse() else { continue };
            if self.record.tag(repo, &tag).await?.as_ref() == Some(digest) {
                self.record.remove_tag(repo, &tag).await?;
            }
        }
        if let Some(stored) = self.manifest_content(digest).await? {
            let subject = serde_json::from_slice::<Shape>(&stored.bytes)
                .ok()
                .and_then(|s| s.subject);
            if let Some(subject) = subject {
                self.record.remove_referrer(repo, &subject.digest, digest).await?;
            }
        }
        self.record.unlink(repo, digest).await
    }
}

/// The manifest's media type: the `Content-Type` it was pushed with, else its own
/// `mediaType`; the two must agree, and it must be a manifest or index.
fn media_type<'a>(content_type: Option<&'a str>, declared: Option<&'a str>) -> Result<&'a str, Error> {
    let content_type = content_type.map(|c| c.split(';').next().unwrap_or(c).trim());
    let chosen = content_type.filter(|c| manifest::is_manifest(c)).or(declared);
    match (chosen, declared) {
        (Some(chosen), Some(declared)) if chosen != declared => Err(Error::ManifestInvalid(format!(
            "sent as {chosen}, but its mediaType says {declared}"
        ))),
        (Some(chosen), _) if crate::image::is_manifest(chosen) => Ok(chosen),
        (Some(other), _) => Err(Error::ManifestInvalid(format!("{other} is not a manifest media type"))),
        (None, _) => Err(Error::ManifestInvalid(
            "no media type: neither Content-Type nor mediaType".into(),
        )),
    }
}

/// The manifest's digest: checked against the reference when pushed by digest (in its
/// algorithm), else SHA-256.
fn digest_of(reference: &Reference, bytes: &[u8]) -> Result<Digest, Error> {
    let Reference::Digest(expected) = reference else {
        return Ok(Digest::sha256_of(bytes));
    };
    let actual = Digest::of(expected.algorithm(), bytes);
    if actual != *expected {
        return Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_media_type_comes_from_the_header_or_the_body_and_both_must_agree() {
        let oci = manifest::OCI_MANIFEST;
        assert_eq!(media_type(Some(oci), None).ok(), Some(oci));
        assert_eq!(media_type(Some("application/json"), Some(oci)).ok(), Some(oci));
        assert_eq!(media_type(None, Some(oci)).ok(), Some(oci));
        assert!(media_type(Some(oci), Some(manifest::DOCKER_V2)).is_err());
        assert!(media_type(None, None).is_err());
        assert!(media_type(None, Some("text/plain")).is_err());
    }

    #[test]
    fn a_manifest_pushed_by_digest_must_hash_to_it() {
        let bytes = b"{}";
        let right = Reference::Digest(Digest::sha256_of(bytes));
        assert!(digest_of(&right, bytes).is_ok());
        let wrong = Reference::Digest(Digest::sha256_of(b"other"));
        assert!(matches!(digest_of(&wrong, bytes), Err(Error::DigestMismatch { .. })));
    }
}
