//! `regmirror export`: cached images → one tar holding a standard OCI image layout
//! (`oci-layout`, `index.json` naming each image by its full reference, `blobs/sha256/…`), which
//! `skopeo copy oci-archive:FILE:REF` reads and `regmirror import` takes in.
//!
//! Blob files are streamed from the cache into the tar, never held whole in memory. The tar is
//! written beside its destination and renamed into place once complete, so an interrupted export
//! leaves nothing that looks like a bundle. `--since` leaves out every blob an earlier bundle
//! holds: the site that imported that one has them.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use super::layout::{self, Index};
use super::progress;
use crate::cache::store::{Scanned, Store, StoredTag};
use crate::digest::Digest;
use crate::image::{self, Descriptor, Node};
use crate::reference::{ImageRef, Reference};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}: not in the cache (prefetch it first)")]
    NotCached(ImageRef),
    #[error("{image}: {digest} is not in the cache (prefetch the image again)")]
    Incomplete { image: ImageRef, digest: Digest },
    #[error("{0}: none of the index's platforms is in the cache")]
    NoPlatform(ImageRef),
    #[error("{image}: manifest {digest}: {source}")]
    Manifest {
        // Boxed: the rare error is not to make every `Result` of this module as large.
        image: Box<ImageRef>,
        digest: Digest,
        source: image::Error,
    },
    #[error("the cache holds no tagged images")]
    Empty,
    #[error("reading the earlier bundle {path}: {source}")]
    Since { path: PathBuf, source: io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Which images go into the bundle.
pub enum Selection {
    /// Every tag the cache knows.
    All,
    Images(Vec<ImageRef>),
}

pub struct Request {
    pub selection: Selection,
    /// Earlier bundles whose blobs are left out.
    pub since: Vec<PathBuf>,
    pub output: PathBuf,
}

pub struct Summary {
    pub images: Vec<(ImageRef, Digest)>,
    pub blobs: usize,
    pub bytes: u64,
    /// Blobs left out because an earlier bundle has them.
    pub skipped: usize,
}

/// What the cache holds, by digest.
type Content = HashMap<Digest, Scanned>;

pub fn export(data_dir: &Path, request: &Request) -> Result<Summary, Error> {
    let store = Store::at(data_dir)?;
    let content: Content = store.scan()?.into_iter().map(|c| (c.digest.clone(), c)).collect();
    let mut entries = Vec::new();
    let mut blobs = Vec::new();
    for (image, digest) in select(&store, &request.selection)? {
        let descriptor = top(&content, &image, &digest)?;
        walk(&store, &content, &image, &descriptor, &mut blobs)?;
        entries.push((image, descriptor));
    }
    let earlier = earlier_blobs(&request.since)?;
    let before = blobs.len();
    blobs.retain(|(digest, _)| !earlier.contains(digest));
    let summary = Summary {
        images: entries.iter().map(|(i, d)| (i.clone(), d.digest.clone())).collect(),
        blobs: blobs.len(),
        bytes: blobs.iter().map(|(_, size)| size).sum(),
        skipped: before - blobs.len(),
    };
    write(&store, &request.output, &Index::of(&entries), &blobs, summary.bytes)?;
    Ok(summary)
}

/// The images asked for, each with its manifest digest.
fn select(store: &Store, selection: &Selection) -> Result<Vec<(ImageRef, Digest)>, Error> {
    let mut tagged = HashMap::new();
    for StoredTag {
        registry,
        repo,
        tag,
        record,
    } in store.tags()?
    {
        let image = ImageRef {
            registry,
            repo,
            reference: Reference::Tag(tag),
        };
        tagged.insert(image, record.digest);
    }
    match selection {
        Selection::All if tagged.is_empty() => Err(Error::Empty),
        Selection::All => {
            let mut all: Vec<_> = tagged.into_iter().collect();
            all.sort();
            Ok(all)
        }
        Selection::Images(images) => images
            .iter()
            .map(|image| match &image.reference {
                Reference::Digest(digest) => Ok((image.clone(), digest.clone())),
                Reference::Tag(_) => match tagged.get(image) {
                    Some(digest) => Ok((image.clone(), digest.clone())),
                    None => Err(Error::NotCached(image.clone())),
                },
            })
            .collect(),
    }
}

/// The `index.json` entry of an image: its top manifest as cached.
fn top(content: &Content, image: &ImageRef, digest: &Digest) -> Result<Descriptor, Error> {
    let cached = content.get(digest).ok_or_else(|| Error::NotCached(image.clone()))?;
    let media_type = cached
        .media_type
        .as_deref()
        .ok_or_else(|| Error::NotCached(image.clone()))?;
    Ok(Descriptor::new(media_type, digest.clone(), cached.size))
}

/// Adds a manifest and everything it names that the cache has to `blobs` (in order, once
/// each). An index's children that were never fetched are other platforms and are left out; an
/// image missing a config or layer is an error.
fn walk(
    store: &Store,
    content: &Content,
    image: &ImageRef,
    manifest: &Descriptor,
    blobs: &mut Vec<(Digest, u64)>,
) -> Result<(), Error> {
    let incomplete = |digest: &Digest| Error::Incomplete {
        image: image.clone(),
        digest: digest.clone(),
    };
    let bytes = match store.read_manifest_blocking(&manifest.digest) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(incomplete(&manifest.digest)),
        Err(e) => return Err(Error::Io(e.into())),
    };
    let node = Node::parse(&manifest.media_type, &bytes).map_err(|source| Error::Manifest {
        image: Box::new(image.clone()),
        digest: manifest.digest.clone(),
        source,
    })?;
    add(blobs, &manifest.digest, bytes.len() as u64);
    match node {
        Node::Index(children) => {
            let cached: Vec<&Descriptor> = children.iter().filter(|c| content.contains_key(&c.digest)).collect();
            if cached.is_empty() {
                return Err(Error::NoPlatform(image.clone()));
            }
            for child in cached {
                walk(store, content, image, child, blobs)?;
            }
        }
        Node::Image { config, layers } => {
            for blob in std::iter::once(&config).chain(&layers) {
                match content.get(&blob.digest) {
                    Some(cached) => add(blobs, &blob.digest, cached.size),
                    None if blob.is_foreign() => {}
                    None => return Err(incomplete(&blob.digest)),
                }
            }
        }
    }
    Ok(())
}

fn add(blobs: &mut Vec<(Digest, u64)>, digest: &Digest, size: u64) {
    if !blobs.iter().any(|(d, _)| d == digest) {
        blobs.push((digest.clone(), size));
    }
}

/// Every blob the earlier bundles hold, from their tar headers alone.
fn earlier_blobs(bundles: &[PathBuf]) -> Result<HashSet<Digest>, Error> {
    let mut found = HashSet::new();
    for path in bundles {
        let since = |source| Error::Since {
            path: path.clone(),
            source,
        };
        let mut archive = tar::Archive::new(File::open(path).map_err(since)?);
        for entry in archive.entries_with_seek().map_err(since)? {
            let entry = entry.map_err(since)?;
            let name = entry.path().map_err(since)?.to_string_lossy().into_owned();
            found.extend(layout::digest_of_path(name.trim_start_matches("./")));
        }
    }
    Ok(found)
}

/// Writes the tar to `<output>.partial`, then renames it into place; removes it on failure.
fn write(store: &Store, output: &Path, index: &Index, blobs: &[(Digest, u64)], bytes: u64) -> Result<(), Error> {
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let written = write_tar(store, &partial, index, blobs, bytes).and_then(|()| std::fs::rename(&partial, output));
    written.map_err(|source| {
        let _ = std::fs::remove_file(&partial);
        Error::Write {
            path: output.to_owned(),
            source,
        }
    })
}

fn write_tar(store: &Store, path: &Path, index: &Index, blobs: &[(Digest, u64)], bytes: u64) -> io::Result<()> {
    let mut tar = tar::Builder::new(BufWriter::new(File::create(path)?));
    append(&mut tar, layout::OCI_LAYOUT, layout::layout_marker())?;
    append(&mut tar, layout::INDEX, &serde_json::to_vec_pretty(index)?)?;
    let mut directories: Vec<String> = blobs
        .iter()
        .map(|(d, _)| format!("blobs/{}/", d.algorithm().name()))
        .collect();
    directories.sort();
    directories.dedup();
    for directory in std::iter::once("blobs/".to_owned()).chain(directories) {
        let mut header = header(tar::EntryType::Directory, 0);
        tar.append_data(&mut header, directory, io::empty())?;
    }
    let bar = progress::single("export", bytes);
    for (digest, _) in blobs {
        let file = File::open(store.blob_path(digest))?;
        // The file's own length: cached files never change, so this is what gets read.
        let mut header = header(tar::EntryType::Regular, file.metadata()?.len());
        tar.append_data(&mut header, layout::blob_path(digest), bar.wrap_read(file))?;
    }
    bar.finish_and_clear();
    let file = tar.into_inner()?.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()
}

fn append(tar: &mut tar::Builder<impl io::Write>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut header = header(tar::EntryType::Regular, bytes.len() as u64);
    tar.append_data(&mut header, path, bytes)
}

/// Entries carry no owner and a fixed time, so the same content makes the same bundle.
fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    header.set_mtime(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_reproducible() {
        let h = header(tar::EntryType::Regular, 5);
        assert_eq!(
            (h.mtime().ok(), h.size().ok(), h.mode().ok()),
            (Some(0), Some(5), Some(0o644))
        );
        assert_eq!(header(tar::EntryType::Directory, 0).mode().ok(), Some(0o755));
    }
}
