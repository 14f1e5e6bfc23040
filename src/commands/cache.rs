//! `regmirror cache`: the data directory's content counted, listed, pruned and verified; with
//! `--bucket`, the cache part of the fleet's bucket instead.

use regmirror::bucket::Bucket;
use regmirror::cache::maintenance::{self, Prune};
use regmirror::cli::{BucketArgs, CacheArgs, CacheCommand, DataDirArg, PruneArgs};

use super::{data_dir, one_thread};

pub fn cache(command: CacheCommand) -> anyhow::Result<()> {
    match command {
        CacheCommand::Stats(CacheArgs { data_dir, bucket }) => match on_bucket(bucket)? {
            Some(on) => bucket_stats(&on),
            None => stats(data_dir),
        },
        CacheCommand::Ls(CacheArgs { data_dir, bucket }) => match on_bucket(bucket)? {
            Some(on) => bucket_tags(&on),
            None => list(data_dir),
        },
        CacheCommand::Prune(args) => prune(args),
        CacheCommand::Verify(CacheArgs { data_dir, bucket }) => match on_bucket(bucket)? {
            Some(on) => bucket_verify(&on),
            None => verify(data_dir),
        },
    }
}

fn stats(dir: DataDirArg) -> anyhow::Result<()> {
    let stats = maintenance::stats(&data_dir(dir))?;
    println!("blobs      {}", stats.blobs);
    println!("manifests  {}", stats.manifests);
    println!("bytes      {}", stats.bytes);
    println!("tags       {}", stats.tags);
    println!("hosted     {} files, {} bytes", stats.hosted_files, stats.hosted_bytes);
    Ok(())
}

fn list(dir: DataDirArg) -> anyhow::Result<()> {
    print!("{}", maintenance::list(&data_dir(dir))?);
    Ok(())
}

fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let rule = Prune {
        max_bytes: args.max_size,
        older_than: args.older_than,
    };
    anyhow::ensure!(
        rule.max_bytes.is_some() || rule.older_than.is_some(),
        "say what to prune: --max-size and/or --older-than"
    );
    if let Some(on) = on_bucket(args.bucket)? {
        let pruned = on.bucket.prune(rule.older_than, rule.max_bytes);
        let (objects, bytes) = on.runtime.block_on(pruned)?;
        println!("pruned {objects} objects, {bytes} bytes from the bucket");
        return Ok(());
    }
    let (files, bytes) = maintenance::prune(&data_dir(args.data_dir), &rule)?;
    println!("pruned {files} files, {bytes} bytes");
    Ok(())
}

fn verify(dir: DataDirArg) -> anyhow::Result<()> {
    let bad = maintenance::verify(&data_dir(dir))?;
    for line in &bad {
        println!("{line}");
    }
    anyhow::ensure!(
        bad.is_empty(),
        "{} cached files failed verification and were quarantined",
        bad.len()
    );
    println!("all cached content matches its digest");
    Ok(())
}

/// The bucket `--bucket` names, with a runtime to reach it.
struct OnBucket {
    bucket: Bucket,
    runtime: tokio::runtime::Runtime,
}

fn on_bucket(args: BucketArgs) -> anyhow::Result<Option<OnBucket>> {
    let Some(config) = args.config()? else {
        return Ok(None);
    };
    let runtime = one_thread()?;
    let bucket = Bucket::new(&config)?;
    Ok(Some(OnBucket { bucket, runtime }))
}

fn bucket_stats(on: &OnBucket) -> anyhow::Result<()> {
    let inventory = on.runtime.block_on(on.bucket.inventory())?;
    println!("blobs      {}", inventory.blobs);
    println!("manifests  {}", inventory.manifests);
    println!("bytes      {}", inventory.blob_bytes);
    println!("tags       {}", inventory.tags);
    println!("links      {}", inventory.links);
    Ok(())
}

fn bucket_tags(on: &OnBucket) -> anyhow::Result<()> {
    for tag in on.runtime.block_on(on.bucket.tags())? {
        println!("{tag}");
    }
    Ok(())
}

fn bucket_verify(on: &OnBucket) -> anyhow::Result<()> {
    let verified = on.runtime.block_on(on.bucket.verify())?;
    for key in &verified.deleted {
        println!("{key}: does not match its digest; deleted");
    }
    anyhow::ensure!(
        verified.deleted.is_empty(),
        "{} of {} objects in the bucket failed verification and were deleted",
        verified.deleted.len(),
        verified.checked
    );
    println!("all {} objects in the bucket match their digests", verified.checked);
    Ok(())
}
