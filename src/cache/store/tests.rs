use super::*;
use crate::reference::{Registry, RepoName, Tag};

#[tokio::test]
async fn commit_then_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::init(dir.path()).expect("open");
    let digest = Digest::sha256_of(b"hello");
    store.put(&digest, b"hello").await.expect("put");
    store.put_media_type(&digest, "application/x").await.expect("type");
    let scanned = store.scan().expect("scan");
    assert_eq!(scanned.len(), 1);
    assert_eq!(
        (scanned[0].size, scanned[0].media_type.as_deref()),
        (5, Some("application/x"))
    );
    assert_eq!(
        store.read_manifest(&digest).await.expect("read"),
        Some(b"hello".to_vec())
    );
}

#[tokio::test]
async fn dropped_temp_files_vanish_and_leftovers_are_cleared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::init(dir.path()).expect("open");
    let temp = store.temp().await.expect("temp");
    let path = temp.path.clone();
    drop(temp);
    assert!(!path.exists());
    std::fs::write(dir.path().join("tmp/stale"), b"partial").expect("write");
    std::fs::write(dir.path().join(format!("tmp/{}-7", std::process::id())), b"ours").expect("write");
    // pid 1 always runs: its spool is another process's fill in progress.
    std::fs::write(dir.path().join("tmp/1-0"), b"live").expect("write");
    Store::init(dir.path()).expect("reopen");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
        .expect("tmp")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["1-0"]);
}

#[tokio::test]
async fn tags_round_trip() {
    let hub = Registry::docker_hub();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::init(dir.path()).expect("open");
    let repo: RepoName = "a/b".parse().expect("repo");
    let nested: RepoName = "a/b/c".parse().expect("repo");
    let tag: Tag = "c".parse().expect("tag");
    let digest = Digest::sha256_of(b"x");
    store
        .put_tag(&hub, &repo, &tag, &TagRecord::new(&digest))
        .await
        .expect("put");
    store
        .put_tag(&hub, &nested, &tag, &TagRecord::new(&digest))
        .await
        .expect("nested repo beside a tag");
    let record = store.tag(&hub, &repo, &tag).await.expect("read").expect("present");
    assert_eq!(record.digest, digest);
    assert!(store
        .tag(&hub, &repo, &"other".parse().expect("tag"))
        .await
        .expect("read")
        .is_none());
}
