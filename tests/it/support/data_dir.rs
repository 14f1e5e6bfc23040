//! A mirror's data directory as the disk has it, read without the mirror's help: verified
//! content under `blobs/sha256/<hex>` and unverified spool files under `tmp/`.
//!
//! The layout is the one `cache::store` documents; tests look at it directly because "not
//! on disk" and "not in the index" are different claims, and a crash test has no mirror
//! left to ask.

use std::path::{Path, PathBuf};

pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir { root: root.to_owned() }
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the store keeps verified content for a `sha256:<hex>` digest.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.root.join("blobs").join("sha256").join(hex)
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).exists()
    }

    /// Whether the blob is committed within a few seconds: a fill's commit trails the end of
    /// the body its clients got by the time a sync takes.
    pub async fn committed(&self, digest: &str) -> bool {
        super::poll_until(std::time::Duration::from_secs(5), || self.has_blob(digest)).await
    }

    /// Every verified sha256 file, as (digest, size).
    pub fn blobs(&self) -> Vec<(String, u64)> {
        files(&self.root.join("blobs").join("sha256"))
            .into_iter()
            .map(|(path, size)| {
                let hex = path.file_name().expect("file name").to_string_lossy().into_owned();
                (format!("sha256:{hex}"), size)
            })
            .collect()
    }

    /// Where fills spool: `tmp/`.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Every file in `tmp/`, as (path, size).
    pub fn tmp_files(&self) -> Vec<(PathBuf, u64)> {
        files(&self.root.join("tmp"))
    }

    /// Whether this process holds the blob's file open although it has been deleted: an
    /// in-process mirror still streaming content that was evicted under it. Linux only
    /// (`/proc/self/fd`).
    pub fn blob_open_after_delete(&self, digest: &str) -> bool {
        let deleted = format!("{} (deleted)", self.blob_path(digest).display());
        let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
            return false;
        };
        fds.filter_map(Result::ok)
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| target.to_string_lossy() == deleted)
    }
}

/// Regular files directly in `dir` with their sizes; none if `dir` does not exist.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let metadata = entry.metadata().ok().filter(|m| m.is_file())?;
            Some((entry.path(), metadata.len()))
        })
        .collect()
}
