//! `regmirror prefetch`: fill the cache with whole images ahead of need, through the same
//! `Mirror` path `serve` uses, so every byte is verified before it is cached and whatever is
//! already cached is skipped (a rerun after an interruption resumes).
//!
//! An image is resolved to its manifest (by tag with an upstream HEAD, or by digest); from an
//! index only the wanted platforms' manifests are taken. Then configs and layers are fetched,
//! at most `jobs` upstream transfers at a time across all images.

use std::fmt::Write as _;
use std::sync::Arc;

use http_body_util::BodyExt as _;
use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::progress::Bars;
use crate::digest::Digest;
use crate::image::{self, Descriptor, Node, Platforms};
use crate::mirror::{self, BlobAnswer, Mirror, Requester, Want};
use crate::reference::{self, ImageRef, Reference, Registry, RepoName};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Mirror(#[from] mirror::Error),
    #[error("{digest}: {source}")]
    Manifest { digest: Digest, source: image::Error },
    #[error("no wanted platform in the index (it has {available})")]
    NoPlatform { available: String },
    #[error("blob {0} was fetched but not cached (short of disk space? see the log)")]
    NotCached(Digest),
    #[error("blob {digest}: {message}")]
    Transfer { digest: Digest, message: String },
    #[error("a prefetch task failed: {0}")]
    Task(String),
    #[error("{0}: {1} is this mirror's hosted namespace; its images are pushed to the mirror, not prefetched")]
    Hosted(ImageRef, Registry),
    #[error("{0}: '{registry}' is not Docker Hub, the registry this command works with", registry = .0.registry)]
    NotDockerHub(ImageRef),
    #[error("line {line}: '{text}': {source}")]
    List {
        line: usize,
        text: String,
        source: reference::Error,
    },
}

pub struct Request {
    pub images: Vec<ImageRef>,
    pub platforms: Platforms,
    /// Upstream transfers at a time, manifests and blobs alike.
    pub jobs: usize,
}

/// How one image went.
pub struct Outcome {
    pub image: ImageRef,
    pub result: Result<Fetched, Error>,
}

pub struct Fetched {
    pub digest: Digest,
    /// The platforms taken from an index; empty for a single-platform image.
    pub platforms: Vec<String>,
    /// Configs and layers in the image (chosen platforms only).
    pub blobs: usize,
    /// How many of those were fetched now rather than found cached.
    pub fetched: usize,
    pub bytes: u64,
}

/// What to fetch for one image, once its manifests are in.
struct Plan {
    digest: Digest,
    platforms: Vec<String>,
    blobs: Vec<Descriptor>,
}

/// Reads an image list: one reference per line; blank lines and `#` comments are skipped.
pub fn parse_list(text: &str) -> Result<Vec<ImageRef>, Error> {
    let lines = text.lines().enumerate();
    let wanted = lines.map(|(n, line)| (n + 1, line.split('#').next().unwrap_or("").trim()));
    wanted
        .filter(|(_, text)| !text.is_empty())
        .map(|(line, text)| {
            text.parse().map_err(|source| Error::List {
                line,
                text: text.to_owned(),
                source,
            })
        })
        .collect()
}

/// Prefetch fills the cache from Docker Hub's upstream only. An image of another registry is
/// refused before anything is asked, and one of a `hosted` namespace by name: it exists only
/// on this mirror, and no upstream may be asked for it.
pub fn check_registries(images: &[ImageRef], hosted: &[Registry]) -> Result<(), Error> {
    for image in images {
        if hosted.contains(&image.registry) {
            return Err(Error::Hosted(image.clone(), image.registry.clone()));
        }
        if !image.registry.is_docker_hub() {
            return Err(Error::NotDockerHub(image.clone()));
        }
    }
    Ok(())
}

/// Fetches every image of `request`; one outcome per image, in the order asked.
pub async fn run(mirror: Arc<Mirror>, request: Request) -> Vec<Outcome> {
    let permits = Arc::new(Semaphore::new(request.jobs.max(1)));
    let bars = Arc::new(Bars::new("total"));
    let mut tasks = JoinSet::new();
    for (n, image) in request.images.iter().enumerate() {
        let job = Job {
            mirror: mirror.clone(),
            permits: permits.clone(),
            bars: bars.clone(),
        };
        let (image, platforms) = (image.clone(), request.platforms.clone());
        tasks.spawn(async move { (n, job.image(&image, &platforms).await) });
    }
    let mut results: Vec<Option<Result<Fetched, Error>>> = request.images.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((n, result)) = joined {
            results[n] = Some(result);
        }
    }
    bars.total.finish_and_clear();
    let outcomes = request.images.into_iter().zip(results);
    outcomes
        .map(|(image, result)| Outcome {
            image,
            result: result.unwrap_or_else(|| Err(Error::Task("it panicked".into()))),
        })
        .collect()
}

/// One image's work, sharing the mirror, the transfer bound and the bars with the others.
#[derive(Clone)]
struct Job {
    mirror: Arc<Mirror>,
    permits: Arc<Semaphore>,
    bars: Arc<Bars>,
}

impl Job {
    async fn image(&self, image: &ImageRef, platforms: &Platforms) -> Result<Fetched, Error> {
        let plan = self.plan(image, platforms).await?;
        let bytes = plan.blobs.iter().map(|b| b.size).sum();
        let bar = self.bars.image(&short_name(image), bytes);
        let mut blobs = JoinSet::new();
        for blob in &plan.blobs {
            let (job, repo, bar, blob) = (self.clone(), image.repo.clone(), bar.clone(), blob.clone());
            blobs.spawn(async move { job.blob(&repo, &blob, &bar).await });
        }
        let mut fetched = 0;
        let mut first_error = None;
        while let Some(joined) = blobs.join_next().await {
            match joined.map_err(|e| Error::Task(e.to_string())) {
                Ok(Ok(was_fetched)) => fetched += usize::from(was_fetched),
                Ok(Err(e)) | Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        bar.finish();
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(Fetched {
            digest: plan.digest,
            platforms: plan.platforms,
            blobs: plan.blobs.len(),
            fetched,
            bytes,
        })
    }

    /// The image's manifest, and for an index the wanted children's, into the cache; the
    /// blobs they name, deduplicated and without foreign layers.
    async fn plan(&self, image: &ImageRef, platforms: &Platforms) -> Result<Plan, Error> {
        let (digest, node) = self.manifest(&image.repo, &image.reference).await?;
        let mut plan = Plan {
            digest,
            platforms: Vec::new(),
            blobs: Vec::new(),
        };
        let images = match node {
            Node::Image { config, layers } => vec![(config, layers)],
            Node::Index(children) => {
                let mut images = Vec::new();
                let wanted = children.iter().filter(|child| platforms.admits(child));
                for child in wanted {
                    let reference = Reference::Digest(child.digest.clone());
                    match self.manifest(&image.repo, &reference).await {
                        Ok((_, Node::Image { config, layers })) => images.push((config, layers)),
                        // A nested index: rare, and not a platform's image.
                        Ok((_, Node::Index(_))) => continue,
                        // Offline, from the bucket: a platform nobody on the site pulled.
                        Err(Error::Mirror(mirror::Error::OfflineManifest)) => continue,
                        Err(e) => return Err(e),
                    }
                    plan.platforms
                        .push(child.platform.as_ref().map_or("?".into(), ToString::to_string));
                }
                if images.is_empty() {
                    return Err(Error::NoPlatform {
                        available: available(&children),
                    });
                }
                images
            }
        };
        for (config, layers) in images {
            for blob in std::iter::once(config).chain(layers) {
                if !blob.is_foreign() && !plan.blobs.iter().any(|b| b.digest == blob.digest) {
                    plan.blobs.push(blob);
                }
            }
        }
        Ok(plan)
    }

    async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<(Digest, Node), Error> {
        let _permit = self.permits.acquire().await;
        let answer = self.mirror.manifest(repo, reference, Want::Body).await?;
        let bytes = answer.bytes.unwrap_or_default();
        let node = Node::parse(&answer.media_type, &bytes).map_err(|source| Error::Manifest {
            digest: answer.digest.clone(),
            source,
        })?;
        Ok((answer.digest, node))
    }

    /// Fetches one blob unless it is cached; whether it was fetched now.
    async fn blob(&self, repo: &RepoName, blob: &Descriptor, bar: &ProgressBar) -> Result<bool, Error> {
        let _permit = self.permits.acquire().await;
        let asked = self
            .mirror
            .blob(repo, &blob.digest, Want::Body, Requester::this_process());
        let fill = match asked.await? {
            BlobAnswer::Cached { .. } => {
                self.advance(bar, blob.size);
                return Ok(false);
            }
            BlobAnswer::Filling { fill, .. } => fill,
            BlobAnswer::Streaming { .. } | BlobAnswer::Size { .. } => {
                return Err(Error::NotCached(blob.digest.clone()))
            }
        };
        // Reading the fill to its end is how its outcome shows: the last chunk comes only once
        // the digest checked out, and a bad transfer ends in an error instead.
        let mut body = fill.reader(0, None);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Error::Transfer {
                digest: blob.digest.clone(),
                message: e.to_string(),
            })?;
            if let Ok(data) = frame.into_data() {
                self.advance(bar, data.len() as u64);
            }
        }
        match fill.cached().await {
            true => Ok(true),
            false => Err(Error::NotCached(blob.digest.clone())),
        }
    }

    fn advance(&self, bar: &ProgressBar, bytes: u64) {
        bar.inc(bytes);
        self.bars.total.inc(bytes);
    }
}

fn available(children: &[Descriptor]) -> String {
    let names: Vec<String> = children
        .iter()
        .map(|c| c.platform.as_ref().map_or("?".into(), ToString::to_string))
        .collect();
    names.join(", ")
}

/// `alpine:3.20` for `docker.io/library/alpine:3.20`, for bars and tables.
fn short_name(image: &ImageRef) -> String {
    let full = image.to_string();
    let name = full.strip_prefix("docker.io/").unwrap_or(&full);
    name.strip_prefix("library/").unwrap_or(name).to_owned()
}

/// The summary table: one line per image, failures last with their reason.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:<40} {:<19} {:<28} {:>5} {:>5} {:>12}\n",
        "image", "digest", "platforms", "blobs", "new", "bytes"
    );
    for outcome in outcomes {
        let name = short_name(&outcome.image);
        let _ = match &outcome.result {
            Ok(f) => writeln!(
                out,
                "{name:<40} {:<19} {:<28} {:>5} {:>5} {:>12}",
                &f.digest.to_string()[..19],
                if f.platforms.is_empty() {
                    "-".to_owned()
                } else {
                    f.platforms.join(",")
                },
                f.blobs,
                f.fetched,
                f.bytes
            ),
            Err(e) => writeln!(out, "{name:<40} FAILED: {e}"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_skip_comments_and_name_bad_lines() {
        let list = parse_list("# base images\nalpine:3.20\n\n  someuser/tool  # pinned later\n").expect("list");
        let names: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["docker.io/library/alpine:3.20", "docker.io/someuser/tool:latest"]
        );
        let err = parse_list("alpine\nBad Name\n").expect_err("error").to_string();
        assert!(err.starts_with("line 2: 'Bad Name'"), "{err}");
    }

    #[test]
    fn only_docker_hub_images_are_prefetched() {
        let hosted: Vec<Registry> = vec!["site.lan".parse().expect("registry")];
        let images = |names: &[&str]| names.iter().map(|n| n.parse().expect("ref")).collect::<Vec<ImageRef>>();
        assert!(check_registries(&images(&["alpine", "docker.io/a/b:1"]), &hosted).is_ok());
        let err = check_registries(&images(&["alpine", "site.lan/gallery/ui:v1"]), &hosted).expect_err("hosted");
        assert_eq!(
            err.to_string(),
            "site.lan/gallery/ui:v1: site.lan is this mirror's hosted namespace; \
             its images are pushed to the mirror, not prefetched"
        );
        let err = check_registries(&images(&["ghcr.io/a/b:1"]), &hosted).expect_err("elsewhere");
        assert_eq!(
            err.to_string(),
            "ghcr.io/a/b:1: 'ghcr.io' is not Docker Hub, the registry this command works with"
        );
    }

    #[test]
    fn table_lists_failures_with_their_reason() {
        let outcomes = [
            Outcome {
                image: "alpine:3.20".parse().expect("ref"),
                result: Ok(Fetched {
                    digest: Digest::sha256_of(b"m"),
                    platforms: vec!["linux/amd64".into()],
                    blobs: 2,
                    fetched: 1,
                    bytes: 1234,
                }),
            },
            Outcome {
                image: "someuser/tool".parse().expect("ref"),
                result: Err(Error::NoPlatform {
                    available: "linux/s390x".into(),
                }),
            },
        ];
        let table = table(&outcomes);
        assert!(table.contains("alpine:3.20"), "{table}");
        assert!(table.contains("linux/amd64"), "{table}");
        assert!(
            table.contains("FAILED: no wanted platform in the index (it has linux/s390x)"),
            "{table}"
        );
    }
}
