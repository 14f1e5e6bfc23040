//! `regmirror cache`: the data directory's content counted, listed, pruned and verified.

use regmirror::cache::maintenance::{self, Prune};
use regmirror::cli::CacheCommand;

use super::data_dir;

pub fn cache(command: CacheCommand) -> anyhow::Result<()> {
    match command {
        CacheCommand::Stats(dir) => {
            let stats = maintenance::stats(&data_dir(dir))?;
            println!("blobs      {}", stats.blobs);
            println!("manifests  {}", stats.manifests);
            println!("bytes      {}", stats.bytes);
            println!("tags       {}", stats.tags);
            println!("hosted     {} files, {} bytes", stats.hosted_files, stats.hosted_bytes);
        }
        CacheCommand::Ls(dir) => print!("{}", maintenance::list(&data_dir(dir))?),
        CacheCommand::Prune(args) => {
            let rule = Prune {
                max_bytes: args.max_size,
                older_than: args.older_than,
            };
            anyhow::ensure!(
                rule.max_bytes.is_some() || rule.older_than.is_some(),
                "say what to prune: --max-size and/or --older-than"
            );
            let (files, bytes) = maintenance::prune(&data_dir(args.data_dir), &rule)?;
            println!("pruned {files} files, {bytes} bytes");
        }
        CacheCommand::Verify(dir) => {
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
        }
    }
    Ok(())
}
