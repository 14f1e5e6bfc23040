//! Blob uploads (the push side of the distribution spec): a session per upload, appended to
//! chunk by chunk and hashed as it grows, verified against the digest the client names at
//! the end and only then made content. A session's bytes live in the store, so an upload
//! survives a restart; its running hash lives here and is rebuilt from the bytes when lost.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{Error, Hosted};
use crate::cache::{Cache, UploadId};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::reference::RepoName;
use crate::sync::LockExt;

/// How many bytes an upload takes between checks of the free disk: a statvfs per 64 MiB
/// costs nothing beside writing them.
const FREE_DISK_EVERY: u64 = 64 << 20;

/// How often starting an upload also clears abandoned ones.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub id: UploadId,
    /// Bytes received so far.
    pub size: u64,
}

/// An upload's running state: the bytes held and their SHA-256 so far.
struct Session {
    size: u64,
    hasher: Hasher,
}

pub(super) struct Uploads {
    sessions: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<Session>>>>,
    max_age: Duration,
    max_size: u64,
    last_sweep: Mutex<Option<Instant>>,
}

impl Uploads {
    pub(super) fn new(max_age: Duration, max_size: u64) -> Uploads {
        Uploads {
            sessions: Mutex::default(),
            max_age,
            max_size,
            last_sweep: Mutex::new(None),
        }
    }
}

impl Hosted {
    fn owner(&self, repo: &RepoName) -> String {
        format!("{}/{repo}", self.namespace)
    }

    /// A new, empty upload for `repo`.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<Progress, Error> {
        self.sweep_uploads().await;
        let id = UploadId::random();
        self.cache.create_upload(&id, &self.owner(repo)).await?;
        Ok(Progress { id, size: 0 })
    }

    /// How much of the upload is held.
    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<Progress, Error> {
        let session = self.session(repo, id).await?;
        let size = session.lock().await.size;
        Ok(Progress { id: *id, size })
    }

    /// Appends a chunk; `start`, when the client gave one, must be where the upload ends.
    /// What arrives before a broken body is kept, for the client to resume after.
    pub async fn append<S>(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        body: S,
    ) -> Result<Progress, Error>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        let session = self.session(repo, id).await?;
        let mut session = session.lock().await;
        if let Some(start) = start.filter(|&start| start != session.size) {
            return Err(Error::OutOfOrder {
                start,
                held: session.size,
            });
        }
        let written = write_chunks(&self.cache, id, &mut session, body, self.uploads.max_size).await;
        if matches!(written, Err(Error::Io(_))) {
            // What reached the disk is uncertain: the next request rebuilds from the file.
            self.uploads.sessions.locked().remove(id);
        }
        written.map(|()| Progress {
            id: *id,
            size: session.size,
        })
    }

    /// Appends a last chunk, checks the whole against `digest` and makes it this
    /// repository's content. A mismatch discards the upload; nothing is stored.
    pub async fn finish_upload<S>(&self, repo: &RepoName, id: &UploadId, digest: &Digest, body: S) -> Result<(), Error>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        self.append(repo, id, None, body).await?;
        let session = self.session(repo, id).await?;
        let session = session.lock().await;
        let actual = match digest.algorithm() {
            Algorithm::Sha256 => session.hasher.clone().finish(),
            other => hash_file(&self.cache, id, other).await?.1.finish(),
        };
        self.uploads.sessions.locked().remove(id);
        if actual != *digest {
            self.cache.remove_upload(id).await?;
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        self.cache.commit_upload(id, digest, session.size).await?;
        self.share_blob(digest).await?;
        self.record.link(repo, digest, session.size).await
    }

    /// A whole blob in one request: an upload started and finished at once.
    pub async fn put_blob<S>(&self, repo: &RepoName, digest: &Digest, body: S) -> Result<(), Error>
    where
        S: Stream<Item = io::Result<Bytes>> + Unpin,
    {
        let progress = self.start_upload(repo).await?;
        let finished = self.finish_upload(repo, &progress.id, digest, body).await;
        if finished.is_err() {
            self.cache.remove_upload(&progress.id).await?;
        }
        finished
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<(), Error> {
        let session = self.session(repo, id).await?;
        let _writing = session.lock().await;
        self.uploads.sessions.locked().remove(id);
        self.cache.remove_upload(id).await?;
        Ok(())
    }

    /// The upload's session, from memory or rebuilt from its bytes; unknown unless it was
    /// started for this repository.
    async fn session(&self, repo: &RepoName, id: &UploadId) -> Result<Arc<tokio::sync::Mutex<Session>>, Error> {
        if self.cache.upload_owner(id).await?.as_deref() != Some(self.owner(repo).as_str()) {
            return Err(Error::UploadUnknown);
        }
        if let Some(session) = self.uploads.sessions.locked().get(id) {
            return Ok(session.clone());
        }
        let (size, hasher) = hash_file(&self.cache, id, Algorithm::Sha256).await?;
        let session = Arc::new(tokio::sync::Mutex::new(Session { size, hasher }));
        let mut sessions = self.uploads.sessions.locked();
        Ok(sessions.entry(*id).or_insert(session).clone())
    }

    /// Removes uploads abandoned for longer than the age, at most every ten minutes.
    async fn sweep_uploads(&self) {
        {
            let mut last = self.uploads.last_sweep.locked();
            if last.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        match self.cache.remove_stale_uploads(self.uploads.max_age).await {
            Ok(removed) => {
                let mut sessions = self.uploads.sessions.locked();
                for id in &removed {
                    sessions.remove(id);
                }
                if !removed.is_empty() {
                    tracing::info!(count = removed.len(), "removed abandoned uploads");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot clear abandoned uploads"),
        }
    }
}

async fn write_chunks<S>(
    cache: &Cache,
    id: &UploadId,
    session: &mut Session,
    mut body: S,
    max: u64,
) -> Result<(), Error>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(cache.upload_data(id))
        .await?;
    let keep = cache.limits().min_free_disk;
    let mut unchecked = FREE_DISK_EVERY;
    while let Some(chunk) = body.next().await {
        if unchecked >= FREE_DISK_EVERY {
            ensure_free(&file, keep)?;
            unchecked = 0;
        }
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                file.flush().await?;
                return Err(Error::Interrupted(e));
            }
        };
        if session.size + chunk.len() as u64 > max {
            file.flush().await?;
            return Err(Error::TooLarge { limit: max });
        }
        file.write_all(&chunk).await?;
        unchecked += chunk.len() as u64;
        session.hasher.update(&chunk);
        session.size += chunk.len() as u64;
    }
    file.flush().await?;
    Ok(())
}

/// Refuses to grow an upload into the free disk the cache keeps (`--min-free-disk`).
fn ensure_free(file: &tokio::fs::File, keep: u64) -> Result<(), Error> {
    let stats = rustix::fs::fstatvfs(file).map_err(io::Error::from)?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    if free < keep {
        return Err(Error::DiskFull { free, keep });
    }
    Ok(())
}

/// The upload's size and a hasher over its bytes, read from the store.
async fn hash_file(cache: &Cache, id: &UploadId, algorithm: Algorithm) -> Result<(u64, Hasher), Error> {
    let path = cache.upload_data(id);
    let hashed = tokio::task::spawn_blocking(move || -> io::Result<(u64, Hasher)> {
        let mut hasher = Hasher::new(algorithm);
        let size = io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
        Ok((size, hasher))
    })
    .await
    .map_err(io::Error::other)?;
    match hashed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::UploadUnknown),
        other => Ok(other?),
    }
}
