//! `regmirror import`: a bundle into the cache, either an OCI image layout (as `export` writes
//! it; a tar or a directory) or a `docker save` tarball.
//!
//! Every file is streamed through a hasher into `tmp/` and staged only if it hashes to the
//! digest its name says (`blobs/<alg>/<hex>`); `docker save` layers must hash to their config's
//! diff_ids. Nothing is committed until the whole bundle has been read and every image in it
//! checks out (descriptor sizes included, and for an incremental bundle the content it leaves
//! out found in the cache), so a corrupt or truncated bundle adds nothing at all. Content the
//! cache already has is not written again: importing twice changes nothing.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt as _;

use super::docker_save::{self, Hashed};
use super::image::{self, Descriptor, Node};
use super::layout;
use crate::cache::store::{Staged, Store, TagRecord};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::manifest;
use crate::reference::{ImageRef, Reference};

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
    #[error("{digest}: {size} bytes, but its descriptor says {expected}")]
    Size { digest: Digest, size: u64, expected: u64 },
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
    #[error("{0}: neither an OCI image layout (no index.json) nor a docker save tarball (no manifest.json)")]
    NotABundle(PathBuf),
    #[error(
        "{image}: needs {digest}, which neither the bundle nor the cache has \
         (import the bundle this one was exported --since first)"
    )]
    Missing { image: String, digest: Digest },
    #[error("{image}: none of the index's platforms is in the bundle or the cache")]
    NoPlatform { image: String },
    #[error("{entry}: listed in manifest.json but not in the bundle")]
    Absent { entry: String },
    #[error("{entry}: {source}")]
    Manifest { entry: String, source: image::Error },
    #[error("{entry}: {source}")]
    Json { entry: String, source: serde_json::Error },
    #[error(transparent)]
    DockerSave(#[from] docker_save::Error),
    #[error("cache: {0}")]
    Cache(#[from] io::Error),
}

pub struct Summary {
    /// Tags set, with the manifest each now points at.
    pub images: Vec<(ImageRef, Digest)>,
    /// Images that came without a usable name (their content is imported all the same).
    pub unnamed: Vec<String>,
    /// Blobs and manifests added to the cache, and their bytes.
    pub added: usize,
    pub bytes: u64,
    /// Of the bundle's content, what the cache had already.
    pub present: usize,
}

/// What a bundle adds, decided before anything is committed.
#[derive(Default)]
struct Plan {
    /// Content to have in the cache: committed if staged, else already there.
    keep: HashSet<Digest>,
    /// Manifests and the media type to serve each with.
    manifests: Vec<(Digest, String)>,
    /// Manifests made for `docker save` images.
    made: Vec<(Digest, Vec<u8>)>,
    tags: Vec<(ImageRef, Digest)>,
    unnamed: Vec<String>,
}

pub async fn import(data_dir: &Path, source: &Path) -> Result<Summary, Error> {
    let store = Store::init(data_dir)?;
    let mut bundle = Bundle {
        store: &store,
        files: HashMap::new(),
        staged: HashMap::new(),
        links: HashMap::new(),
        metadata: HashMap::new(),
    };
    if source.is_dir() {
        read_dir(source, source, &mut bundle).await?;
    } else {
        read_tar(source, &mut bundle).await?;
    }
    let plan = if let Some(index) = bundle.metadata.get(layout::INDEX) {
        bundle.plan_layout(index).await?
    } else if let Some(saved) = bundle.metadata.get(docker_save::MANIFEST) {
        bundle.plan_docker_save(saved).await?
    } else {
        return Err(Error::NotABundle(source.to_owned()));
    };
    bundle.commit(plan).await
}

/// A bundle as it is read: every file hashed, new content staged.
struct Bundle<'s> {
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

impl Bundle<'_> {
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

    fn cached_size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.store.blob_path(digest)).ok().map(|m| m.len())
    }

    /// Where the content is, bundle or cache: its size; `None` if neither has it.
    fn size_of(&self, digest: &Digest) -> Option<u64> {
        self.staged
            .get(digest)
            .map(|(_, size)| *size)
            .or_else(|| self.cached_size(digest))
    }

    async fn bytes(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        match self.staged.get(digest) {
            Some((staged, _)) => Ok(self.store.read_staged(staged).await?),
            None => Ok(self.store.read(digest).await?.unwrap_or_default()),
        }
    }

    /// The file at `path`, following links.
    fn resolve(&self, path: &str) -> Option<&Hashed> {
        let mut path = path.trim_start_matches("./");
        for _ in 0..MAX_LINKS {
            if let Some(found) = self.files.get(path) {
                return Some(found);
            }
            path = self.links.get(path)?;
        }
        None
    }

    /// An OCI layout: every `index.json` entry walked to its blobs, all sizes checked.
    async fn plan_layout(&self, index: &[u8]) -> Result<Plan, Error> {
        let index: layout::Index = serde_json::from_slice(index).map_err(|source| Error::Json {
            entry: layout::INDEX.to_owned(),
            source,
        })?;
        let mut plan = Plan::default();
        for entry in &index.manifests {
            let name = layout::image_name(entry);
            let label = name
                .as_ref()
                .map_or_else(|| entry.digest.to_string(), ToString::to_string);
            self.walk(&label, entry, &mut plan).await?;
            match name {
                Some(image) => plan.tags.push((image, entry.digest.clone())),
                None => plan.unnamed.push(label),
            }
        }
        Ok(plan)
    }

    /// Adds an image's manifests and blobs to the plan. Of an index, the children present are
    /// taken (the bundle may hold only some platforms); an image must be complete.
    async fn walk(&self, image: &str, top: &Descriptor, plan: &mut Plan) -> Result<(), Error> {
        let mut pending = vec![top.clone()];
        while let Some(descriptor) = pending.pop() {
            let digest = &descriptor.digest;
            let size = self.size_of(digest).ok_or_else(|| Error::Missing {
                image: image.to_owned(),
                digest: digest.clone(),
            })?;
            if size != descriptor.size {
                return Err(Error::Size {
                    digest: digest.clone(),
                    size,
                    expected: descriptor.size,
                });
            }
            plan.keep.insert(digest.clone());
            if !image::is_manifest(&descriptor.media_type) {
                continue;
            }
            let bytes = self.bytes(digest).await?;
            let node = Node::parse(&descriptor.media_type, &bytes).map_err(|source| Error::Manifest {
                entry: layout::blob_path(digest),
                source,
            })?;
            plan.manifests.push((digest.clone(), descriptor.media_type.clone()));
            match node {
                Node::Index(children) => {
                    let present: Vec<Descriptor> = children
                        .into_iter()
                        .filter(|c| self.size_of(&c.digest).is_some())
                        .collect();
                    if present.is_empty() {
                        return Err(Error::NoPlatform {
                            image: image.to_owned(),
                        });
                    }
                    pending.extend(present);
                }
                Node::Image { config, layers } => {
                    let blobs = std::iter::once(config).chain(layers);
                    pending.extend(blobs.filter(|b| !b.is_foreign() || self.size_of(&b.digest).is_some()));
                }
            }
        }
        Ok(())
    }

    /// A `docker save` tarball: a manifest made per image over its checked files.
    async fn plan_docker_save(&self, manifest_json: &[u8]) -> Result<Plan, Error> {
        let mut plan = Plan::default();
        for saved in docker_save::parse(manifest_json)? {
            let config = self.saved_file(&saved.config)?;
            let layers = saved
                .layers
                .iter()
                .map(|layer| self.saved_file(layer))
                .collect::<Result<Vec<_>, _>>()?;
            let config_bytes = self.bytes(&config.digest).await?;
            let manifest = docker_save::manifest(&saved, &config_bytes, &config, &layers)?;
            let digest = Digest::sha256_of(&manifest);
            plan.keep
                .extend(std::iter::once(&config).chain(&layers).map(|f| f.digest.clone()));
            plan.manifests.push((digest.clone(), manifest::DOCKER_V2.to_owned()));
            plan.made.push((digest.clone(), manifest));
            for tag in saved.repo_tags.iter().flatten() {
                match tag.parse::<ImageRef>() {
                    Ok(image) => plan.tags.push((image, digest.clone())),
                    Err(e) => plan.unnamed.push(format!("{tag} ({e})")),
                }
            }
            if saved.repo_tags.as_ref().is_none_or(Vec::is_empty) {
                plan.unnamed.push(digest.to_string());
            }
        }
        Ok(plan)
    }

    fn saved_file(&self, entry: &str) -> Result<Hashed, Error> {
        let found = self.resolve(entry).cloned();
        found.ok_or_else(|| Error::Absent {
            entry: entry.to_owned(),
        })
    }

    /// Commits the plan: content, then media types, then tags, so a server beside the import
    /// never sees a tag whose content is not there yet.
    async fn commit(mut self, plan: Plan) -> Result<Summary, Error> {
        let mut summary = Summary {
            images: plan.tags.clone(),
            unnamed: plan.unnamed,
            added: 0,
            bytes: 0,
            present: 0,
        };
        for digest in &plan.keep {
            match self.staged.remove(digest) {
                Some((staged, size)) => {
                    self.store.commit_staged(staged, digest).await?;
                    summary.added += 1;
                    summary.bytes += size;
                }
                None => summary.present += 1,
            }
        }
        for (digest, bytes) in &plan.made {
            if self.cached_size(digest).is_none() {
                self.store.put(digest, bytes).await?;
                summary.added += 1;
                summary.bytes += bytes.len() as u64;
            }
        }
        for (digest, media_type) in &plan.manifests {
            self.store.put_media_type(digest, media_type).await?;
        }
        for (image, digest) in &plan.tags {
            if let Reference::Tag(tag) = &image.reference {
                self.store.put_tag(&image.repo, tag, &TagRecord::new(digest)).await?;
            }
        }
        Ok(summary)
    }
}

async fn read_tar(path: &Path, bundle: &mut Bundle<'_>) -> Result<(), Error> {
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

/// Reads a layout unpacked into a directory; symbolic links are followed by the file system.
async fn read_dir(root: &Path, dir: &Path, bundle: &mut Bundle<'_>) -> Result<(), Error> {
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
        if path.is_dir() {
            Box::pin(read_dir(root, &path, bundle)).await?;
            continue;
        }
        let name = clean(&path.strip_prefix(root).unwrap_or(&path).to_string_lossy());
        let mut file = File::open(&path).map_err(|source| read_error(&name, source))?;
        let size = file.metadata().map_err(|source| read_error(&name, source))?.len();
        bundle.file(&name, size, &mut file).await?;
    }
    Ok(())
}

/// A bundle path in one form: no `./`, no `..` steps, no trailing `/`.
fn clean(path: &str) -> String {
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
}
