//! Push uploads in progress: `uploads/<id>/data` holds the bytes received so far and
//! `uploads/<id>/repo` the repository (`registry/repo`) the upload was started for. They are
//! kept across restarts, so a client resumes where its last chunk ended; only a verified
//! upload reaches `blobs/`, by rename, and what is abandoned is removed after an age.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use tokio::fs;

use super::{optional, sync_parent, Store};
use crate::digest::Digest;

/// An upload's name in URLs and on disk: a random UUID, so one client cannot guess another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    pub fn random() -> UploadId {
        UploadId(uuid::Uuid::new_v4())
    }
}

impl FromStr for UploadId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<UploadId, uuid::Error> {
        uuid::Uuid::try_parse(text).map(UploadId)
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl Store {
    fn upload_dir(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.to_string())
    }

    /// The file an upload's bytes are appended to.
    pub fn upload_data(&self, id: &UploadId) -> PathBuf {
        self.upload_dir(id).join("data")
    }

    /// Starts an empty upload for `owner` (`registry/repo`).
    pub async fn create_upload(&self, id: &UploadId, owner: &str) -> io::Result<()> {
        let dir = self.upload_dir(id);
        fs::create_dir_all(&dir).await?;
        fs::write(dir.join("data"), b"").await?;
        fs::write(dir.join("repo"), owner).await
    }

    /// The repository an upload was started for; `None` when there is no such upload.
    pub async fn upload_owner(&self, id: &UploadId) -> io::Result<Option<String>> {
        optional(fs::read_to_string(self.upload_dir(id).join("repo")).await)
    }

    pub async fn remove_upload(&self, id: &UploadId) -> io::Result<()> {
        match fs::remove_dir_all(self.upload_dir(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Makes a verified upload content under `digest`: synced, renamed into `blobs/`, the
    /// directory synced. Content already stored stays as it is; the upload goes either way.
    pub async fn commit_upload(&self, id: &UploadId, digest: &Digest) -> io::Result<()> {
        let data = self.upload_data(id);
        let target = self.blob_path(digest);
        let moved = tokio::task::spawn_blocking(move || -> io::Result<bool> {
            if target.exists() {
                return Ok(false);
            }
            std::fs::File::open(&data)?.sync_all()?;
            std::fs::rename(&data, &target)?;
            Ok(true)
        })
        .await
        .map_err(io::Error::other)??;
        if moved {
            sync_parent(self.blob_path(digest)).await?;
        }
        self.remove_upload(id).await
    }

    /// Uploads not written to for `max_age`: abandoned by their clients.
    pub fn stale_uploads(&self, max_age: Duration) -> io::Result<Vec<UploadId>> {
        let now = SystemTime::now();
        let mut stale = Vec::new();
        let Some(entries) = optional(std::fs::read_dir(self.root.join("uploads")))? else {
            return Ok(stale);
        };
        for entry in entries {
            let entry = entry?;
            let Ok(id) = entry.file_name().to_string_lossy().parse::<UploadId>() else {
                continue;
            };
            let written = std::fs::metadata(entry.path().join("data")).and_then(|m| m.modified());
            let age = written.ok().and_then(|at| now.duration_since(at).ok());
            if age.is_none_or(|age| age >= max_age) {
                stale.push(id);
            }
        }
        Ok(stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_commits_under_its_digest_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path()).expect("init");
        let id = UploadId::random();
        store.create_upload(&id, "site.lan/a").await.expect("create");
        assert_eq!(
            store.upload_owner(&id).await.expect("owner").as_deref(),
            Some("site.lan/a")
        );
        std::fs::write(store.upload_data(&id), b"layer").expect("write");
        let digest = Digest::sha256_of(b"layer");
        store.commit_upload(&id, &digest).await.expect("commit");
        assert_eq!(std::fs::read(store.blob_path(&digest)).expect("blob"), b"layer");
        assert!(store.upload_owner(&id).await.expect("owner").is_none());
    }

    #[tokio::test]
    async fn only_uploads_older_than_the_age_are_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path()).expect("init");
        let id = UploadId::random();
        store.create_upload(&id, "site.lan/a").await.expect("create");
        assert!(store.stale_uploads(Duration::from_secs(60)).expect("scan").is_empty());
        assert_eq!(store.stale_uploads(Duration::ZERO).expect("scan"), [id]);
        assert!("../etc".parse::<UploadId>().is_err());
    }
}
