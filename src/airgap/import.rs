//! `regmirror import`: a bundle into the cache, either an OCI image layout (as `export` writes
//! it; a tar or a directory) or a `docker save` tarball.
//!
//! `staging` reads the bundle: every file hashed and checked against its name, new content
//! staged in `tmp/`. Here each image is walked to check it is whole and consistent (descriptor
//! sizes; `docker save` layers against their config's diff_ids). Nothing is committed until the whole bundle has been read and every image in it
//! checks out (descriptor sizes included, and for an incremental bundle the content it leaves
//! out found in the cache), so a corrupt or truncated bundle adds nothing at all. Content the
//! cache already has is not written again: importing twice changes nothing.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use super::docker_save::{self, Hashed};
use super::layout;
use super::staging::{self, Staging};
use crate::cache::store::{Link, Store, TagRecord};
use crate::cache::vouched;
use crate::digest::Digest;
use crate::image::{self, Descriptor, Node};
use crate::manifest;
use crate::reference::{ImageRef, Reference, Registry};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Staging(#[from] staging::Error),
    #[error("{digest}: {size} bytes, but its descriptor says {expected}")]
    Size { digest: Digest, size: u64, expected: u64 },
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
    #[error(
        "{digest}: a manifest of {size} bytes; the mirror reads and serves manifests of at most {}",
        manifest::MAX_SIZE
    )]
    ManifestTooLarge { digest: Digest, size: u64 },
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
    import_hosting(data_dir, source, None).await
}

/// An import where `namespace` (besides those the data directory has already hosted) names
/// hosted repositories: their images become hosted content, pinned, the only copy there is.
pub async fn import_hosting(data_dir: &Path, source: &Path, namespace: Option<&Registry>) -> Result<Summary, Error> {
    let store = Store::init(data_dir)?;
    if let Some(namespace) = namespace {
        store.record_hosted(namespace)?;
    }
    let bundle = Staging::read(&store, source).await?;
    let plan = if let Some(index) = bundle.metadata(layout::INDEX) {
        plan_layout(&bundle, index).await?
    } else if let Some(saved) = bundle.metadata(docker_save::MANIFEST) {
        plan_docker_save(&bundle, saved).await?
    } else {
        return Err(Error::NotABundle(source.to_owned()));
    };
    commit(&store, bundle, plan).await
}

/// An OCI layout: every `index.json` entry walked to its blobs, all sizes checked.
async fn plan_layout(bundle: &Staging<'_>, index: &[u8]) -> Result<Plan, Error> {
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
        walk(bundle, &label, entry, &mut plan).await?;
        match name {
            Some(image) => plan.tags.push((image, entry.digest.clone())),
            None => plan.unnamed.push(label),
        }
    }
    Ok(plan)
}

/// Adds an image's manifests and blobs to the plan. Of an index, the children present are
/// taken (the bundle may hold only some platforms); an image must be complete.
async fn walk(bundle: &Staging<'_>, image: &str, top: &Descriptor, plan: &mut Plan) -> Result<(), Error> {
    let mut pending = vec![top.clone()];
    // Each manifest once: a crafted bundle of indexes that list each other's children over
    // and over would otherwise be walked an exponential number of times.
    let mut seen = HashSet::new();
    while let Some(descriptor) = pending.pop() {
        if !seen.insert(descriptor.digest.clone()) {
            continue;
        }
        let digest = &descriptor.digest;
        let size = bundle.size_of(digest).ok_or_else(|| Error::Missing {
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
        if size > manifest::MAX_SIZE as u64 {
            return Err(Error::ManifestTooLarge {
                digest: digest.clone(),
                size,
            });
        }
        let bytes = bundle.bytes(digest).await?;
        let node = Node::parse(&descriptor.media_type, &bytes).map_err(|source| Error::Manifest {
            entry: layout::blob_path(digest),
            source,
        })?;
        plan.manifests.push((digest.clone(), descriptor.media_type.clone()));
        match node {
            Node::Index(children) => {
                let present: Vec<Descriptor> = children
                    .into_iter()
                    .filter(|c| bundle.size_of(&c.digest).is_some())
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
                pending.extend(blobs.filter(|b| !b.is_foreign() || bundle.size_of(&b.digest).is_some()));
            }
        }
    }
    Ok(())
}

/// A `docker save` tarball: a manifest made per image over its checked files.
async fn plan_docker_save(bundle: &Staging<'_>, manifest_json: &[u8]) -> Result<Plan, Error> {
    let mut plan = Plan::default();
    for saved in docker_save::parse(manifest_json)? {
        let config = saved_file(bundle, &saved.config)?;
        let layers = saved
            .layers
            .iter()
            .map(|layer| saved_file(bundle, layer))
            .collect::<Result<Vec<_>, _>>()?;
        let config_bytes = bundle.bytes(&config.digest).await?;
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

fn saved_file(bundle: &Staging<'_>, entry: &str) -> Result<Hashed, Error> {
    let found = bundle.resolve(entry).cloned();
    found.ok_or_else(|| Error::Absent {
        entry: entry.to_owned(),
    })
}

/// Records the image's manifests and all they vouch for as held by its repository, so that it
/// is served under that name (offline too) and no other. A hosted image's content is pinned
/// first, as a push pins it: nothing may evict it once its tag can be seen.
async fn link_image(store: &Store, image: &ImageRef, top: &Digest, manifests: &[(Digest, String)]) -> io::Result<()> {
    let hosted = store.hosted_namespaces()?.contains(&image.registry);
    let mut pending = vec![(top.clone(), None)];
    let mut seen = HashSet::new();
    while let Some((digest, size)) = pending.pop() {
        if !seen.insert(digest.clone()) {
            continue;
        }
        if hosted {
            store.pin(&digest)?;
        }
        store.link(&image.registry, &image.repo, &digest, Link { size }).await?;
        if let Some((_, media_type)) = manifests.iter().find(|(d, _)| *d == digest) {
            let bytes = store.read_manifest(&digest).await.map_err(io::Error::from)?;
            let bytes = bytes.unwrap_or_default();
            pending.extend(
                vouched(media_type, &bytes)
                    .into_iter()
                    .map(|d| (d.digest, Some(d.size))),
            );
        }
    }
    Ok(())
}

/// Commits the plan: content, then media types, then tags, so a server beside the import
/// never sees a tag whose content is not there yet.
async fn commit(store: &Store, mut bundle: Staging<'_>, plan: Plan) -> Result<Summary, Error> {
    let mut summary = Summary {
        images: plan.tags.clone(),
        unnamed: plan.unnamed,
        added: 0,
        bytes: 0,
        present: 0,
    };
    for digest in &plan.keep {
        match bundle.take(digest) {
            Some((staged, size)) => {
                store.commit_staged(staged, digest).await?;
                summary.added += 1;
                summary.bytes += size;
            }
            None => summary.present += 1,
        }
    }
    for (digest, bytes) in &plan.made {
        if bundle.cached_size(digest).is_none() {
            store.put(digest, bytes).await?;
            summary.added += 1;
            summary.bytes += bytes.len() as u64;
        }
    }
    for (digest, media_type) in &plan.manifests {
        store.put_media_type(digest, media_type).await?;
    }
    for (image, digest) in &plan.tags {
        link_image(store, image, digest, &plan.manifests).await?;
        if let Reference::Tag(tag) = &image.reference {
            store
                .put_tag(&image.registry, &image.repo, tag, &TagRecord::new(digest))
                .await?;
        }
    }
    Ok(summary)
}
