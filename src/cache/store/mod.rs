//! The disk store: content-addressed files, written to a temp file and renamed into place
//! only once verified, plus the small records beside them (manifest media types, tags).
//!
//! Layout under the data directory:
//! - `blobs/<alg>/<hex>`: content, blobs and manifests alike, exactly as served;
//! - `manifests/<alg>/<hex>`: the media type of content that was fetched as a manifest;
//! - `tags/<registry>/<repo>/_tags/<tag>`: the tag's digest and when it was checked (`_tags`
//!   cannot be a repository path component, so no repository's directory collides with it);
//! - `tmp/`: fills in progress; emptied at startup, since what is there was never verified;
//! - `uploads/<id>/`: pushes in progress, kept across restarts for clients to resume;
//! - `pins/<alg>/<hex>`: content a hosted repository holds, which eviction never removes;
//! - `tags/<registry>/<repo>/_referrers/<alg>/<subject hex>/<alg>-<hex>`: a hosted manifest's
//!   descriptor, filed under the manifest its `subject` names.
//!
//! This is the only module that touches the file system, and its narrow surface (open, temp
//! + commit, remove, scan) is what another backend would implement.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::fs::{self, File};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::digest::{Algorithm, Digest};

mod links;
mod pins;
mod referrers;
mod tags;
mod uploads;
mod whole;
pub use links::Link;
pub use referrers::Referrer;
pub use tags::{StoredTag, TagRecord};
pub use uploads::UploadId;
pub use whole::{ReadError, TooLarge};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct Store {
    root: PathBuf,
}

/// What the store knows of one piece of content at startup.
pub struct Scanned {
    pub digest: Digest,
    pub size: u64,
    pub media_type: Option<String>,
    /// The file's access time: when it was last served, as closely as the mount's atime
    /// policy (relatime, typically) records it.
    pub accessed: Option<SystemTime>,
}

/// A fill in progress. Dropping it without `Store::commit` removes the file, so an abandoned
/// or failed fill leaves nothing behind.
pub struct TempFile {
    path: PathBuf,
    pub file: File,
    committed: bool,
}

impl TempFile {
    /// A second handle for readers that follow the fill. It stays valid after the file is
    /// renamed into the store or removed.
    pub fn reader(&self) -> io::Result<std::fs::File> {
        std::fs::File::open(&self.path)
    }

    /// A handle for positioned writes from a blocking thread: a fill's spool writer.
    pub fn writer(&self) -> io::Result<std::fs::File> {
        std::fs::OpenOptions::new().write(true).open(&self.path)
    }
}

/// Writes go straight to the file; the wrapper exists only to clean up after a failed fill.
impl AsyncWrite for TempFile {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

/// Verified content, synced and closed, waiting in `tmp/` for `Store::commit_staged`. Dropping
/// it uncommitted removes the file.
pub struct Staged {
    path: PathBuf,
    committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Store {
    /// Opens an existing store without touching it, for maintenance beside a running server.
    pub fn at(root: &Path) -> io::Result<Store> {
        if !root.join("blobs").is_dir() {
            let message = format!("{} holds no regmirror cache", root.display());
            return Err(io::Error::new(io::ErrorKind::NotFound, message));
        }
        Ok(Store { root: root.to_owned() })
    }

    /// Creates the layout if needed and removes unverified leftovers of an earlier run.
    pub fn init(root: &Path) -> io::Result<Store> {
        let store = Store { root: root.to_owned() };
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            std::fs::create_dir_all(store.root.join("blobs").join(alg.name()))?;
            std::fs::create_dir_all(store.root.join("manifests").join(alg.name()))?;
            std::fs::create_dir_all(store.root.join("pins").join(alg.name()))?;
        }
        std::fs::create_dir_all(store.root.join("tags"))?;
        std::fs::create_dir_all(store.root.join("uploads"))?;
        let tmp = store.root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else if !written_by_another_live_process(&path) {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(store)
    }

    /// Whether fills can create files here (the data directory may be read-only or gone).
    pub fn writable(&self) -> bool {
        // access(2) says yes to root for anything on a writable file system, even a `tmp`
        // that is not a directory: only creating a file there proves a fill could.
        let probe = self.root.join("tmp").join(format!("ready-{}", std::process::id()));
        let created = std::fs::File::create(&probe).is_ok();
        let _ = std::fs::remove_file(&probe);
        created
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    fn media_type_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("manifests")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// Opens cached content; `None` when it is not on disk.
    pub async fn open(&self, digest: &Digest) -> io::Result<Option<std::fs::File>> {
        let path = self.blob_path(digest);
        let opened = tokio::task::spawn_blocking(move || std::fs::File::open(path))
            .await
            .map_err(io::Error::other)?;
        match opened {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn temp(&self) -> io::Result<TempFile> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join("tmp").join(format!("{}-{n}", std::process::id()));
        let file = File::create(&path).await?;
        Ok(TempFile {
            path,
            file,
            committed: false,
        })
    }

    /// Makes verified content durable under its digest: data synced before the rename, the
    /// directory after it, so a crash leaves either nothing or the whole file.
    pub async fn commit(&self, temp: TempFile, digest: &Digest) -> io::Result<()> {
        let staged = self.stage(temp).await?;
        self.commit_staged(staged, digest).await
    }

    /// Syncs and closes a temp file whose content is verified but must wait for others before
    /// it goes in (an import commits a bundle's blobs together, or none of them).
    pub async fn stage(&self, mut temp: TempFile) -> io::Result<Staged> {
        temp.file.flush().await?;
        temp.file.sync_all().await?;
        temp.committed = true;
        Ok(Staged {
            path: temp.path.clone(),
            committed: false,
        })
    }

    pub async fn commit_staged(&self, mut staged: Staged, digest: &Digest) -> io::Result<()> {
        let target = self.blob_path(digest);
        fs::rename(&staged.path, &target).await?;
        staged.committed = true;
        sync_parent(target).await
    }

    pub async fn put(&self, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        let mut temp = self.temp().await?;
        temp.file.write_all(bytes).await?;
        self.commit(temp, digest).await
    }

    /// The media type of content stored as a manifest; `None` for plain blobs and absent content.
    pub async fn media_type(&self, digest: &Digest) -> io::Result<Option<String>> {
        optional(fs::read_to_string(self.media_type_path(digest)).await)
    }

    pub async fn put_media_type(&self, digest: &Digest, media_type: &str) -> io::Result<()> {
        write_atomically(self, &self.media_type_path(digest), media_type.as_bytes()).await
    }

    /// Moves content that failed verification aside, out of the store but kept for a look.
    pub fn quarantine(&self, digest: &Digest) -> io::Result<PathBuf> {
        let dir = self.root.join("quarantine");
        std::fs::create_dir_all(&dir)?;
        let target = dir.join(format!("{}-{}", digest.algorithm().name(), digest.hex()));
        std::fs::rename(self.blob_path(digest), &target)?;
        let _ = std::fs::remove_file(self.media_type_path(digest));
        Ok(target)
    }

    /// Removes content and its media type; used by eviction, so it is synchronous.
    pub fn remove(&self, digest: &Digest) -> io::Result<()> {
        let _ = std::fs::remove_file(self.media_type_path(digest));
        match std::fs::remove_file(self.blob_path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Lists all committed content; run once at startup to rebuild the index.
    pub fn scan(&self) -> io::Result<Vec<Scanned>> {
        let mut found = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            // Few files are manifests: read their types up front instead of probing per blob.
            let mut media_types = HashMap::new();
            for entry in std::fs::read_dir(self.root.join("manifests").join(alg.name()))? {
                let entry = entry?;
                if let Ok(media_type) = std::fs::read_to_string(entry.path()) {
                    media_types.insert(entry.file_name(), media_type);
                }
            }
            for entry in std::fs::read_dir(self.root.join("blobs").join(alg.name()))? {
                let entry = entry?;
                let name = entry.file_name();
                let Ok(digest) = format!("{}:{}", alg.name(), name.to_string_lossy()).parse::<Digest>() else {
                    continue;
                };
                let metadata = entry.metadata()?;
                let (size, accessed) = (metadata.len(), metadata.accessed().ok());
                found.push(Scanned {
                    digest,
                    size,
                    media_type: media_types.remove(&name),
                    accessed,
                });
            }
        }
        Ok(found)
    }
}

/// Whether a `tmp/` file is a live spool of another process on the same data directory (a
/// server beside `prefetch` or `import`, or the other way round): temp files are named
/// `<pid>-<n>`, and that process still runs. Anything else is an unverified leftover.
fn written_by_another_live_process(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let pid = name
        .as_deref()
        .and_then(|n| n.split_once('-'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok());
    pid.is_some_and(|pid| pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists())
}

async fn write_atomically(store: &Store, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = store.temp().await?;
    temp.file.write_all(bytes).await?;
    temp.file.sync_all().await?;
    fs::rename(&temp.path, path).await?;
    temp.committed = true;
    Ok(())
}

async fn sync_parent(path: PathBuf) -> io::Result<()> {
    tokio::task::spawn_blocking(move || match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    })
    .await
    .map_err(io::Error::other)?
}

fn optional<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
