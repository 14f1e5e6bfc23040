//! The air-gap commands, `prefetch`, `export` and `import`: on the data directory and, with
//! `--bucket`, on the fleet's bucket too.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use regmirror::airgap::export::{self, Selection};
use regmirror::airgap::{import, prefetch, share};
use regmirror::bucket::Bucket;
use regmirror::cache::store::Store;
use regmirror::cli::{ExportArgs, ImportArgs, PrefetchArgs};
use regmirror::config::{self, BucketConfig, Config};
use regmirror::digest::Digest;
use regmirror::image::{Platform, Platforms};
use regmirror::mirror::Mirror;
use regmirror::reference::ImageRef;

use super::{data_dir, env, one_thread};

pub fn prefetch(args: PrefetchArgs) -> anyhow::Result<()> {
    let mut images = parse_images(&args.images)?;
    if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        images.extend(prefetch::parse_list(&text).with_context(|| file.display().to_string())?);
    }
    anyhow::ensure!(!images.is_empty(), "name the images to prefetch (IMAGE... or -f FILE)");
    let data_dir = data_dir(args.data_dir);
    // A data directory not made yet has hosted nothing.
    let hosted = Store::at(&data_dir)
        .and_then(|s| s.hosted_namespaces())
        .unwrap_or_default();
    prefetch::check_registries(&images, &hosted)?;
    let platforms = if args.all_platforms {
        Platforms::All
    } else if args.platform.is_empty() {
        Platforms::Only(vec![Platform::host()])
    } else {
        Platforms::Only(args.platform.iter().map(|p| p.parse()).collect::<Result<_, _>>()?)
    };
    let upstream = args.upstream.unwrap_or_else(config::default_upstream);
    let mut config = Config::new(upstream, data_dir);
    config.upstream_ca = args.upstream_ca;
    config.credentials =
        config::env_credentials(env("REGMIRROR_UPSTREAM_USERNAME"), env("REGMIRROR_UPSTREAM_PASSWORD"))?;
    // A prefetch asks the upstream what each tag points at now, however recently it was cached.
    config.tag_ttl = Duration::ZERO;
    config.bucket = args.bucket.config()?;
    let request = prefetch::Request {
        images,
        platforms,
        jobs: args.jobs,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcomes = runtime.block_on(async {
        let mirror = Mirror::new(&config).context("cannot open the cache in the data directory")?;
        let mirror = Arc::new(mirror);
        let outcomes = prefetch::run(mirror.clone(), request).await;
        mirror.settle().await;
        anyhow::Ok(outcomes)
    })?;
    print!("{}", prefetch::table(&outcomes));
    all_fetched(&outcomes)
}

fn all_fetched(outcomes: &[prefetch::Outcome]) -> anyhow::Result<()> {
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.image)))
        .collect();
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} images failed (run again to resume):\n  {}",
        failures.len(),
        outcomes.len(),
        failures.join("\n  ")
    );
    Ok(())
}

/// Reads the images, every platform of them the bucket holds, from the bucket into the data
/// directory, asking no upstream: `prefetch` through an offline mirror on the bucket.
fn read_from_bucket(dir: &Path, bucket: BucketConfig, images: &[ImageRef]) -> anyhow::Result<()> {
    prefetch::check_registries(images, &[])?;
    let mut config = Config::new(config::default_upstream(), dir.to_owned());
    config.offline = true;
    config.bucket = Some(bucket);
    let request = prefetch::Request {
        images: images.to_vec(),
        platforms: Platforms::All,
        jobs: 4,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcomes = runtime.block_on(async {
        let mirror = Mirror::new(&config).context("cannot open the cache in the data directory")?;
        anyhow::Ok(prefetch::run(Arc::new(mirror), request).await)
    })?;
    all_fetched(&outcomes).context("reading the images from the bucket")
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let selection = if args.all {
        Selection::All
    } else {
        Selection::Images(parse_images(&args.images)?)
    };
    let dir = data_dir(args.data_dir);
    if let Some(bucket) = args.bucket.config()? {
        let images = match &selection {
            Selection::Images(images) => images.clone(),
            Selection::All => docker_hub_tags_in(&bucket)?,
        };
        read_from_bucket(&dir, bucket, &images)?;
    }
    let request = export::Request {
        selection,
        since: args.since,
        output: args.output,
    };
    let summary = export::export(&dir, &request)?;
    for (image, digest) in &summary.images {
        println!("{image}  {digest}");
    }
    let left_out = match summary.skipped {
        0 => String::new(),
        n => format!(", {n} left out as the earlier bundle has them"),
    };
    println!(
        "wrote {}: {} images, {} blobs of {} bytes{left_out}",
        request.output.display(),
        summary.images.len(),
        summary.blobs,
        summary.bytes,
    );
    Ok(())
}

/// Every Docker Hub tag the bucket holds a record of: what `export --all --bucket` reads. The
/// bucket's other registries' tags are left out, and said so: the reader asks Docker Hub's
/// mirror, as `prefetch` does.
fn docker_hub_tags_in(bucket: &BucketConfig) -> anyhow::Result<Vec<ImageRef>> {
    let runtime = one_thread()?;
    let tags = runtime.block_on(Bucket::new(bucket)?.tags())?;
    let parsed: Vec<ImageRef> = parse_images(&tags)?;
    let (hub, others): (Vec<_>, Vec<_>) = parsed.into_iter().partition(|i| i.registry.is_docker_hub());
    if !others.is_empty() {
        println!("left out {} tags of registries other than Docker Hub", others.len());
    }
    Ok(hub)
}

pub fn import(args: ImportArgs) -> anyhow::Result<()> {
    let runtime = one_thread()?;
    let bundle = args.bundle.display().to_string();
    let bucket = args.bucket.config()?;
    let dir = data_dir(args.data_dir);
    let summary = runtime
        .block_on(import::import_hosting(
            &dir,
            &args.bundle,
            args.hosted_namespace.as_ref(),
        ))
        .map_err(|e| match e {
            import::Error::Cache(_) => anyhow::Error::new(e).context(format!("importing {bundle}")),
            e => anyhow::Error::new(e).context(format!("{bundle} refused, nothing added")),
        })?;
    for (image, digest) in &summary.images {
        println!("{image}  {digest}");
    }
    for name in &summary.unnamed {
        println!("(no tag) {name}");
    }
    println!(
        "imported {bundle}: {} added ({} bytes), {} already cached",
        summary.added, summary.bytes, summary.present
    );
    match bucket {
        Some(bucket) => share_imported(&runtime, &dir, &bucket, &summary.images),
        None => Ok(()),
    }
}

/// Puts what an import added in the bucket, hosted repositories' images in its hosted part.
fn share_imported(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    bucket: &BucketConfig,
    images: &[(ImageRef, Digest)],
) -> anyhow::Result<()> {
    let store = Store::at(dir).context("cannot open the data directory")?;
    let hosted = store.hosted_namespaces().unwrap_or_default();
    let bucket = Bucket::new(bucket)?;
    let shared = runtime
        .block_on(share::share(&store, &bucket, images, &hosted))
        .context("putting the imported images in the bucket (run the import again to resume)")?;
    println!(
        "put {} images in the bucket: {} uploaded ({} bytes), {} already there",
        images.len(),
        shared.uploaded,
        shared.bytes,
        shared.present
    );
    Ok(())
}

fn parse_images(images: &[String]) -> anyhow::Result<Vec<ImageRef>> {
    let parse = |image: &String| image.parse().with_context(|| format!("invalid image '{image}'"));
    images.iter().map(parse).collect()
}
