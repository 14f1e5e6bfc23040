//! Garbage collection of the hosted repositories' part of a shared bucket, as `gc` collects a
//! data directory: marks from every hosted tag (the manifest, what it names, the manifests
//! filed as referring to any of those), removes each repository's links to anything unmarked
//! and the referrer entries of what it no longer holds, then deletes the content that no link
//! holds. Everything written within the grace period stays: a push under way puts its blobs
//! before the manifest that names them, perhaps through another instance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use super::gc::named_by;
use super::Error;
use crate::bucket::{Bucket, Key, Listed};
use crate::cache::store::TagRecord;
use crate::digest::Digest;
use crate::manifest;

/// What a collection of the bucket did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BucketReport {
    /// Hosted repositories' links removed.
    pub unlinked: u64,
    /// Content objects deleted, and their bytes.
    pub objects: u64,
    pub bytes: u64,
}

/// One hosted repository's record, as listed.
#[derive(Default)]
struct Repository {
    tags: Vec<Listed>,
    links: Vec<(Digest, Listed)>,
    /// Referrer entries: (subject, referrer, the entry).
    referrers: Vec<(Digest, Digest, Listed)>,
}

/// Collects the bucket's hosted part; what was written less than `grace` ago stays.
pub async fn collect(bucket: &Bucket, grace: Duration) -> Result<BucketReport, Error> {
    let started = SystemTime::now();
    let old = |l: &Listed| {
        l.modified
            .is_some_and(|at| started.duration_since(at).is_ok_and(|age| age >= grace))
    };
    let mut report = BucketReport::default();
    let mut held = HashSet::new();
    let record_prefix = Key::HOSTED.to_owned() + Key::REPOSITORIES;
    for repository in repositories(bucket.list(&record_prefix).await?).into_values() {
        let marked = mark(bucket, &repository).await?;
        for (digest, link) in repository.links {
            if marked.contains(&digest) || !old(&link) {
                held.insert(digest);
                continue;
            }
            bucket.delete(&Key::listed(link.key)).await?;
            report.unlinked += 1;
        }
        for (_, referrer, entry) in repository.referrers {
            if !marked.contains(&referrer) && old(&entry) {
                bucket.delete(&Key::listed(entry.key)).await?;
            }
        }
    }
    for prefix in [Key::BLOBS, Key::MANIFESTS] {
        for object in bucket.list(&format!("{}{prefix}", Key::HOSTED)).await? {
            let (stale, size) = (old(&object), object.size);
            let key = Key::listed(object.key);
            if !stale || key.digest().is_some_and(|d| held.contains(&d)) {
                continue;
            }
            bucket.delete(&key).await?;
            report.objects += 1;
            report.bytes += size;
        }
    }
    Ok(report)
}

/// Everything the repository holds for its tags: the tagged manifests, all they name, and
/// the manifests filed as referring to any of it.
async fn mark(bucket: &Bucket, repository: &Repository) -> Result<HashSet<Digest>, Error> {
    let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for (subject, referrer, _) in &repository.referrers {
        referrers.entry(subject).or_default().push(referrer);
    }
    let mut pending = Vec::new();
    for tag in &repository.tags {
        let key = Key::listed(tag.key.clone());
        let Some((bytes, _)) = bucket.read(&key, manifest::MAX_SIZE).await? else {
            continue;
        };
        pending.extend(serde_json::from_slice::<TagRecord>(&bytes).ok().map(|r| r.digest));
    }
    let mut marked = HashSet::new();
    while let Some(digest) = pending.pop() {
        if !marked.insert(digest.clone()) {
            continue;
        }
        pending.extend(referrers.get(&digest).into_iter().flatten().map(|&d| d.clone()));
        let key = Key::manifest(&digest).hosted();
        if let Some((bytes, Some(_))) = bucket.read(&key, manifest::MAX_SIZE).await? {
            pending.extend(named_by(&bytes));
        }
    }
    Ok(marked)
}

/// The listing of `hosted/tags/` sorted into repositories (keyed `registry/repo`).
fn repositories(listed: Vec<Listed>) -> BTreeMap<String, Repository> {
    let mut found: BTreeMap<String, Repository> = BTreeMap::new();
    for object in listed {
        let Some(named) = object
            .key
            .strip_prefix(Key::HOSTED)
            .and_then(|k| k.strip_prefix(Key::REPOSITORIES))
        else {
            continue;
        };
        if let Some((repo, _)) = named.split_once("/_tags/") {
            let repo = repo.to_owned();
            found.entry(repo).or_default().tags.push(object);
        } else if let Some((repo, digest)) = named.split_once("/_links/") {
            let (repo, digest) = (repo.to_owned(), Key::digest_at(digest));
            if let Some(digest) = digest {
                found.entry(repo).or_default().links.push((digest, object));
            }
        } else if let Some((repo, entry)) = named.split_once("/_referrers/") {
            let (repo, digests) = (repo.to_owned(), referrer_path(entry));
            if let Some((subject, referrer)) = digests {
                found
                    .entry(repo)
                    .or_default()
                    .referrers
                    .push((subject, referrer, object));
            }
        }
    }
    found
}

/// `<subject alg>/<subject hex>/<alg>/<hex>` as (subject, referrer).
fn referrer_path(path: &str) -> Option<(Digest, Digest)> {
    let mut parts = path.splitn(3, '/');
    let subject = Key::digest_at(&format!("{}/{}", parts.next()?, parts.next()?))?;
    Some((subject, Key::digest_at(parts.next()?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(key: &str) -> Listed {
        Listed {
            key: key.to_owned(),
            size: 1,
            modified: None,
        }
    }

    #[test]
    fn the_record_is_sorted_into_repositories() {
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let path = |d: &Digest| format!("{}/{}", d.algorithm().name(), d.hex());
        let keys = [
            "hosted/tags/site.lan/team/app/_tags/v1".to_owned(),
            format!("hosted/tags/site.lan/team/app/_links/{}", path(&a)),
            format!("hosted/tags/site.lan/other/_referrers/{}/{}", path(&a), path(&b)),
            "hosted/tags/site.lan/team/app/_links/sha256/not-hex".to_owned(),
        ];
        let found = repositories(keys.iter().map(|k| listed(k)).collect());
        let app = &found["site.lan/team/app"];
        assert_eq!((app.tags.len(), app.links.len()), (1, 1));
        assert_eq!(app.links[0].0, a);
        let other = &found["site.lan/other"];
        assert_eq!(
            (other.referrers[0].0.clone(), other.referrers[0].1.clone()),
            (a.clone(), b)
        );
    }
}
