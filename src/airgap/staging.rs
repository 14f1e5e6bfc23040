//! A bundle's files as `import` reads them, from a tar or from a directory: each one hashed
//! while it streams into `tmp/`, checked against the digest its name says (`blobs/<alg>/<hex>`)
//! and staged unless the cache has it already; `index.json` and `manifest.json` kept whole;
//! links noted, since `docker save` writes a repeated layer as a link to the first.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt as _;

use super::docker_save::{self, Hashed};
use super::layout;
use crate::cache::store::{Staged, Store};
use crate::digest::{Algorithm, Digest, Hasher};

/// `index.json` and `manifest.json` are read whole; no real one comes near this.
const MAX_METADATA: u64 = 16 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;
/// Links are followed this deep at most (a loop is a bad bundle, not a hang).
const MAX_LINKS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{entry}: content hashes to {actual}, not the digest its name says")]
    Corrupt { entry: String, actual: Digest },
    #[error("{entry}: truncated, {got} of {size} bytes")]
    Truncated { entry: String, got: u64, size: u64 },
    #[error("reading {path} ({at}): {source}")]
    Read {
        path: PathBuf,
        at: String,
        source: io::Error,
    },
    #[error("{entry}: {source}")]
    Entry { entry: String, source: io::Error },
    #[error("{entry}: {size} bytes is too large for a layout's metadata")]
    Metadata { entry: String, size: u64 },
    #[error("{entry}: not a regular file or directory (symbolic links and devices are refused)")]
    NotRegular { entry: String },
    #[error("cache: {0}")]
    Cache(#[from] io::Error),
}

/// A bundle as read: every file hashed, new content staged.
pub struct Staging<'s> {
    store: &'s Store,
    /// Every content file by its path in the bundle.
    files: HashMap<String, Hashed>,
    /// Verified content the cache lacks, with its size.
    staged: HashMap<Digest, (Staged, u64)>,
    /// Symbolic and hard links: path → the path they point at.
    links: HashMap<String, String>,
    /// `index.json` and `manifest.json`, whole.
    metadata: HashMap<String, Vec<u8>>,
}

impl<'s> Staging<'s> {
    /// Reads a bundle: a tar file, or a directory it was unpacked into.
    pub async fn read(store: &'s Store, source: &Path) -> Result<Staging<'s>, Error> {
        let mut staging = Staging {
            store,
            files: HashMap::new(),
            staged: HashMap::new(),
            links: HashMap::new(),
            metadata: HashMap::new(),
        };
        if source.is_dir() {
            read_dir(source, source, &mut staging).await?;
        } else {
            read_tar(source, &mut staging).await?;
        }
        Ok(staging)
    }

    /// `index.json` or `manifest.json`, if the bundle has it.
    pub fn metadata(&self, name: &str) -> Option<&[u8]> {
        self.metadata.get(name).map(Vec::as_slice)
    }

    /// Takes one file: metadata into memory, content through the hasher (and, if the cache
    /// lacks it, into a staged temp file), other files of the formats skipped.
    async fn file(&mut self, name: &str, size: u64, reader: &mut dyn Read) -> Result<(), Error> {
        if name == layout::INDEX || name == docker_save::MANIFEST {
            return self.keep_metadata(name, size, reader);
        }
        let named = layout::digest_of_path(name);
        if named.is_none() && !name.ends_with(".tar") && !name.ends_with(".json") {
            return Ok(()); // oci-layout, repositories, <id>/VERSION, <id>/json
        }
        let known = named.as_ref().is_some_and(|d| self.cached_size(d).is_some());
        // What the cache already has is hashed (the bundle must still be sound) but not written.
        let mut temp = if known { None } else { Some(self.store.temp().await?) };
        let mut hasher = Hasher::new(named.as_ref().map_or(Algorithm::Sha256, Digest::algorithm));
        let mut buf = vec![0; CHUNK];
        let mut got = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|source| read_error(name, source))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if let Some(temp) = &mut temp {
                temp.write_all(&buf[..n]).await?;
            }
            got += n as u64;
        }
        if got != size {
            return Err(Error::Truncated {
                entry: name.to_owned(),
                got,
                size,
            });
        }
        let digest = hasher.finish();
        if named.as_ref().is_some_and(|n| *n != digest) {
            return Err(Error::Corrupt {
                entry: name.to_owned(),
                actual: digest,
            });
        }
        if let Some(temp) = temp.filter(|_| self.cached_size(&digest).is_none() && !self.staged.contains_key(&digest)) {
            self.staged
                .insert(digest.clone(), (self.store.stage(temp).await?, size));
        }
        self.files.insert(name.to_owned(), Hashed { digest, size });
        Ok(())
    }

    fn keep_metadata(&mut self, name: &str, size: u64, reader: &mut dyn Read) -> Result<(), Error> {
        if size > MAX_METADATA {
            return Err(Error::Metadata {
                entry: name.to_owned(),
                size,
            });
        }
        let mut bytes = Vec::new();
        reader
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|source| read_error(name, source))?;
        if bytes.len() as u64 != size {
            return Err(Error::Truncated {
                entry: name.to_owned(),
                got: bytes.len() as u64,
                size,
            });
        }
        self.metadata.insert(name.to_owned(), bytes);
        Ok(())
    }

    pub fn cached_size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.store.blob_path(digest)).ok().map(|m| m.len())
    }

    /// Where the content is, bundle or cache: its size; `None` if neither has it.
    pub fn size_of(&self, digest: &Digest) -> Option<u64> {
        self.staged
            .get(digest)
            .map(|(_, size)| *size)
            .or_else(|| self.cached_size(digest))
    }

    /// A manifest's (or config's) bytes, from the bundle or the cache.
    pub async fn bytes(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let read = match self.staged.get(digest) {
            Some((staged, _)) => self.store.read_staged(staged, digest).await,
            None => self.store.read_manifest(digest).await.map(Option::unwrap_or_default),
        };
        Ok(read.map_err(io::Error::from)?)
    }

    /// The file at `path`, following links.
    pub fn resolve(&self, path: &str) -> Option<&Hashed> {
        let mut path = path.trim_start_matches("./");
        for _ in 0..MAX_LINKS {
            if let Some(found) = self.files.get(path) {
                return Some(found);
            }
            path = self.links.get(path)?;
        }
        None
    }

    /// Takes staged content out to commit it; `None` when the cache had it already.
    pub fn take(&mut self, digest: &Digest) -> Option<(Staged, u64)> {
        self.staged.remove(digest)
    }
}

async fn read_tar(path: &Path, bundle: &mut Staging<'_>) -> Result<(), Error> {
    let read = |at: &str, source| Error::Read {
        path: path.to_owned(),
        at: at.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|e| read("opening it", e))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(CHUNK, file));
    let mut at = "its start".to_owned();
    for entry in archive.entries().map_err(|e| read(&at, e))? {
        let mut entry = entry.map_err(|e| read(&format!("after {at}"), e))?;
        let name = clean(
            &entry
                .path()
                .map_err(|e| read(&format!("after {at}"), e))?
                .to_string_lossy(),
        );
        let kind = entry.header().entry_type();
        let target = entry
            .link_name()
            .ok()
            .flatten()
            .map(|t| t.to_string_lossy().into_owned());
        match (kind, target) {
            (kind, _) if kind.is_file() => {
                let size = entry.size();
                bundle.file(&name, size, &mut entry).await?;
            }
            (kind, Some(target)) if kind.is_symlink() => {
                let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                bundle.links.insert(name.clone(), clean(&format!("{dir}/{target}")));
            }
            (kind, Some(target)) if kind.is_hard_link() => {
                bundle.links.insert(name.clone(), clean(&target));
            }
            _ => {}
        }
        at = name;
    }
    Ok(())
}

/// Reads a layout unpacked into a directory. Only directories and regular files are taken: a
/// symbolic link (to `/dev/zero`, or out of the bundle) or a device is refused, never followed.
async fn read_dir(root: &Path, dir: &Path, bundle: &mut Staging<'_>) -> Result<(), Error> {
    let read = |source| Error::Read {
        path: dir.to_owned(),
        at: "listing it".to_owned(),
        source,
    };
    let listing = std::fs::read_dir(dir).map_err(read)?;
    let mut entries: Vec<PathBuf> = listing
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read)?;
    entries.sort();
    for path in entries {
        let name = clean(&path.strip_prefix(root).unwrap_or(&path).to_string_lossy());
        let kind = std::fs::symlink_metadata(&path)
            .map_err(|source| read_error(&name, source))?
            .file_type();
        if kind.is_dir() {
            Box::pin(read_dir(root, &path, bundle)).await?;
            continue;
        }
        if !kind.is_file() {
            return Err(Error::NotRegular { entry: name });
        }
        // O_NOFOLLOW: a file swapped for a link since it was looked at is still not followed.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|source| read_error(&name, source))?;
        let size = file.metadata().map_err(|source| read_error(&name, source))?.len();
        bundle.file(&name, size, &mut file).await?;
    }
    Ok(())
}

/// A bundle path in one form: no `./`, no `..` steps, no trailing `/`.
pub(crate) fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

fn read_error(entry: &str, source: io::Error) -> Error {
    Error::Entry {
        entry: entry.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean("./blobs/sha256/ab"), "blobs/sha256/ab");
        assert_eq!(clean("a/../b/layer.tar"), "b/layer.tar");
        assert_eq!(clean("blobs/"), "blobs");
    }

    /// A directory bundle whose blob is a link to `/dev/zero`, or to a file outside it, is
    /// refused naming the entry, before anything is read through the link.
    #[tokio::test]
    async fn links_in_a_directory_bundle_are_refused_not_followed() {
        let data = tempfile::tempdir().expect("data dir");
        let store = Store::init(data.path()).expect("store");
        for target in ["/dev/zero", "/etc/hostname"] {
            let bundle = tempfile::tempdir().expect("bundle");
            std::fs::write(bundle.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
            let blobs = bundle.path().join("blobs/sha256");
            std::fs::create_dir_all(&blobs).expect("mkdir");
            let name = "a".repeat(64);
            std::os::unix::fs::symlink(target, blobs.join(&name)).expect("symlink");
            let refused = Staging::read(&store, bundle.path()).await.err().expect("refused");
            assert!(
                matches!(&refused, Error::NotRegular { entry } if *entry == format!("blobs/sha256/{name}")),
                "{refused}"
            );
        }
        let leftovers = std::fs::read_dir(data.path().join("tmp")).expect("tmp").count();
        assert_eq!(leftovers, 0, "nothing was staged");
    }
}
