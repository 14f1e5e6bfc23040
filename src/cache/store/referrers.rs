//! Referrers (OCI 1.1): a hosted manifest with a `subject` is filed under that subject as
//! `tags/<registry>/<repo>/_referrers/<alg>/<subject hex>/<alg>-<hex>`, holding the
//! descriptor the referrers API lists it by, so listing reads one directory.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::fs;

use super::{optional, write_atomically, Store};
use crate::digest::Digest;
use crate::reference::{Registry, RepoName};

/// A referring manifest as the referrers API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Store {
    fn subject_dir(&self, registry: &Registry, repo: &RepoName, subject: &Digest) -> PathBuf {
        self.repo_dir(registry, repo)
            .join("_referrers")
            .join(subject.algorithm().name())
            .join(subject.hex())
    }

    pub async fn put_referrer(
        &self,
        registry: &Registry,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Referrer,
    ) -> io::Result<()> {
        let dir = self.subject_dir(registry, repo, subject);
        fs::create_dir_all(&dir).await?;
        let name = format!("{}-{}", referrer.digest.algorithm().name(), referrer.digest.hex());
        let bytes = serde_json::to_vec(referrer).map_err(io::Error::other)?;
        write_atomically(self, &dir.join(name), &bytes).await
    }

    pub async fn remove_referrer(
        &self,
        registry: &Registry,
        repo: &RepoName,
        subject: &Digest,
        digest: &Digest,
    ) -> io::Result<()> {
        let name = format!("{}-{}", digest.algorithm().name(), digest.hex());
        match fs::remove_file(self.subject_dir(registry, repo, subject).join(name)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The manifests filed under `subject`, in digest order; none when nothing refers to it.
    pub async fn referrers(&self, registry: &Registry, repo: &RepoName, subject: &Digest) -> io::Result<Vec<Referrer>> {
        let mut found = Vec::new();
        let Some(mut entries) = optional(fs::read_dir(self.subject_dir(registry, repo, subject)).await)? else {
            return Ok(found);
        };
        while let Some(entry) = entries.next_entry().await? {
            let bytes = fs::read(entry.path()).await?;
            found.extend(serde_json::from_slice::<Referrer>(&bytes).ok());
        }
        found.sort_by_key(|r| r.digest.to_string());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn referrers_are_listed_under_their_subject_until_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path()).expect("init");
        let (registry, repo): (Registry, RepoName) = ("site.lan".parse().expect("r"), "a".parse().expect("repo"));
        let subject = Digest::sha256_of(b"image");
        let referrer = Referrer {
            media_type: crate::manifest::OCI_MANIFEST.to_owned(),
            digest: Digest::sha256_of(b"signature"),
            size: 9,
            artifact_type: Some("application/example".to_owned()),
            annotations: BTreeMap::new(),
        };
        store
            .put_referrer(&registry, &repo, &subject, &referrer)
            .await
            .expect("put");
        let listed = store.referrers(&registry, &repo, &subject).await.expect("list");
        assert_eq!(listed, std::slice::from_ref(&referrer));
        store
            .remove_referrer(&registry, &repo, &subject, &referrer.digest)
            .await
            .expect("remove");
        assert!(store
            .referrers(&registry, &repo, &subject)
            .await
            .expect("list")
            .is_empty());
    }
}
