//! `regmirror cache …`: look at the cache, shrink it and check it, from the command line and
//! safely beside a running server (which treats a file that vanished as a miss).

use std::fmt::Write as _;
use std::io::{self, BufReader};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::store::{Scanned, Store};
use crate::digest::Hasher;

pub struct Stats {
    pub blobs: u64,
    pub manifests: u64,
    pub bytes: u64,
    pub tags: u64,
}

pub fn stats(dir: &Path) -> io::Result<Stats> {
    let store = Store::at(dir)?;
    let content = store.scan()?;
    Ok(Stats {
        blobs: content.iter().filter(|c| c.media_type.is_none()).count() as u64,
        manifests: content.iter().filter(|c| c.media_type.is_some()).count() as u64,
        bytes: content.iter().map(|c| c.size).sum(),
        tags: store.tags()?.len() as u64,
    })
}

/// Tags, then content, most recently used first.
pub fn list(dir: &Path) -> io::Result<String> {
    let store = Store::at(dir)?;
    let mut tags = store.tags()?;
    tags.sort_by(|a, b| (&a.registry, &a.repo, &a.tag).cmp(&(&b.registry, &b.repo, &b.tag)));
    let mut out = String::new();
    let _ = writeln!(out, "{:<48} {:<72} checked", "image", "digest");
    for t in &tags {
        let image = format!("{}/{}:{}", t.registry, t.repo, t.tag);
        let _ = writeln!(out, "{image:<48} {:<72} {} ago", t.record.digest, age(t.record.age()));
    }
    let mut content = store.scan()?;
    content.sort_by_key(|c| std::cmp::Reverse(c.accessed));
    let _ = writeln!(out, "\n{:<72} {:>12} {:<9} last access", "content", "bytes", "kind");
    for c in &content {
        let kind = if c.media_type.is_some() { "manifest" } else { "blob" };
        let accessed = c
            .accessed
            .and_then(|t| t.elapsed().ok())
            .map_or("-".to_owned(), |d| format!("{} ago", age(d)));
        let _ = writeln!(
            out,
            "{:<72} {:>12} {:<9} {accessed}",
            c.digest.to_string(),
            c.size,
            kind
        );
    }
    Ok(out)
}

/// What to prune: content unused for longer than `older_than`, then the least recently used
/// until the cache fits in `max_bytes`.
pub struct Prune {
    pub max_bytes: Option<u64>,
    pub older_than: Option<Duration>,
}

/// Deletes content as `Prune` says; returns how many files and bytes went.
pub fn prune(dir: &Path, rule: &Prune) -> io::Result<(u64, u64)> {
    let store = Store::at(dir)?;
    // Hosted content is the only copy there is: never pruned, and not counted against the cap.
    let mut content: Vec<_> = store.scan()?.into_iter().filter(|c| !store.pinned(&c.digest)).collect();
    content.sort_by_key(|c| c.accessed);
    let mut total: u64 = content.iter().map(|c| c.size).sum();
    let (mut files, mut bytes) = (0, 0);
    for c in content {
        let too_old = rule.older_than.is_some_and(|limit| idle(&c) >= limit);
        let too_big = rule.max_bytes.is_some_and(|max| total > max);
        if !too_old && !too_big {
            continue;
        }
        store.remove(&c.digest)?;
        total -= c.size;
        files += 1;
        bytes += c.size;
    }
    Ok((files, bytes))
}

fn idle(c: &Scanned) -> Duration {
    c.accessed
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::MAX)
}

/// Re-hashes every file; mismatches are moved to `quarantine/`. Returns a line per bad file.
pub fn verify(dir: &Path) -> io::Result<Vec<String>> {
    let store = Store::at(dir)?;
    let mut bad = Vec::new();
    for c in store.scan()? {
        let file = std::fs::File::open(store.blob_path(&c.digest))?;
        let mut hasher = Hasher::new(c.digest.algorithm());
        // io::copy reads straight into a BufReader's buffer: 1 MiB reads, not 8 KiB ones.
        io::copy(&mut BufReader::with_capacity(1 << 20, file), &mut hasher)?;
        let actual = hasher.finish();
        if actual != c.digest {
            let moved = store.quarantine(&c.digest)?;
            bad.push(format!(
                "{}: content hashes to {actual}; moved to {}",
                c.digest,
                moved.display()
            ));
        }
    }
    Ok(bad)
}

fn age(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn store_with(dir: &Path, contents: &[&[u8]]) -> Vec<Digest> {
        let store = Store::init(dir).expect("init");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        contents
            .iter()
            .map(|bytes| {
                let digest = Digest::sha256_of(bytes);
                rt.block_on(store.put(&digest, bytes)).expect("put");
                digest
            })
            .collect()
    }

    #[test]
    fn verify_quarantines_only_bad_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let digests = store_with(tmp.path(), &[b"good", b"bad"]);
        let store = Store::at(tmp.path()).expect("at");
        std::fs::write(store.blob_path(&digests[1]), b"rot").expect("corrupt");
        let bad = verify(tmp.path()).expect("verify");
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].starts_with(&digests[1].to_string()));
        assert!(store.blob_path(&digests[0]).exists());
        assert!(!store.blob_path(&digests[1]).exists());
        assert!(tmp.path().join("quarantine").read_dir().expect("dir").count() == 1);
        assert!(verify(tmp.path()).expect("verify").is_empty());
    }

    #[test]
    fn prune_to_size_and_stats() {
        let tmp = tempfile::tempdir().expect("tempdir");
        store_with(tmp.path(), &[&[1; 100], &[2; 100], &[3; 100]]);
        assert_eq!(stats(tmp.path()).expect("stats").bytes, 300);
        let (files, bytes) = prune(
            tmp.path(),
            &Prune {
                max_bytes: Some(150),
                older_than: None,
            },
        )
        .expect("prune");
        assert_eq!((files, bytes), (2, 200));
        let after = stats(tmp.path()).expect("stats");
        assert_eq!((after.blobs, after.bytes), (1, 100));
        let (files, _) = prune(
            tmp.path(),
            &Prune {
                max_bytes: None,
                older_than: Some(Duration::ZERO),
            },
        )
        .expect("prune");
        assert_eq!(files, 1);
    }

    #[test]
    fn refuses_a_directory_without_a_cache() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert!(stats(tmp.path()).is_err());
    }
}
