//! Crash safety of the store (ARCHITECTURE.md invariants): the real binary is SIGKILLed
//! in the middle of a fill. The partial spool stays in `tmp/`, never in `blobs/`; the
//! next start on the same data directory empties `tmp/`, fetches that blob afresh and
//! serves it exactly, and what was committed before the kill is still served with the
//! upstream gone.

use std::time::Duration;

use http::StatusCode;

use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::process::MirrorProcess;
use crate::support::{poll_until, DataDir, FakeRegistry, Fault, Gate, Target};

const REPO: &str = "library/redis";

fn blob_path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_fill_leaves_nothing_unverified_behind() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let committed = Blob::new(random_bytes(200 * 1024));
    let interrupted = Blob::new(random_bytes(4 * MIB));
    fake.add_blob(REPO, committed.bytes.clone());
    fake.add_blob(REPO, interrupted.bytes.clone());
    // Held halfway, never released: the kill lands inside the transfer.
    let gate = Gate::new();
    fake.fail_next(
        Target::reference(&interrupted.digest),
        1,
        Fault::HoldMidBody(gate.clone()),
    );
    let dir = tempfile::tempdir().expect("create data dir");
    let data_dir = DataDir::new(dir.path());

    let mirror = MirrorProcess::spawn(&fake, dir.path()).await;
    mirror.get(&blob_path(&committed)).await.assert_blob(&committed);
    assert!(data_dir.committed(&committed.digest).await, "{}", mirror.log());
    let mut client = mirror.open(&blob_path(&interrupted)).await;
    assert_eq!(client.status, StatusCode::OK);
    client.read_at_least(256 * 1024).await;
    // Clients are sent frames before the spool writer has them on disk: wait until it has.
    let prefix = &interrupted.bytes[..256 * 1024];
    let spooled_prefix = || {
        data_dir
            .tmp_files()
            .iter()
            .any(|(path, _)| std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(prefix)))
    };
    assert!(poll_until(Duration::from_secs(20), spooled_prefix).await);

    assert!(
        gate.reached(Duration::from_secs(20)).await,
        "the upstream body is held halfway"
    );
    mirror.kill();
    assert_eq!(fake.bodies_completed(&interrupted.digest), 0);
    assert!(
        client.finish().await.is_err(),
        "a killed mirror cannot have ended the body cleanly"
    );
    // The kill leaves the spool as it was, its first 256 KiB written (its length may already
    // be the blob's: the fill reserves the space up front).
    let spooled = data_dir.tmp_files();
    let partial = spooled
        .iter()
        .any(|(path, _)| std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(prefix)));
    assert!(partial, "the partial spool is in tmp/: {spooled:?}");
    assert!(!data_dir.has_blob(&interrupted.digest), "{:?}", data_dir.blobs());

    let mirror = MirrorProcess::spawn(&fake, dir.path()).await;
    assert!(
        data_dir.tmp_files().is_empty(),
        "tmp/ is emptied at startup: {:?}",
        data_dir.tmp_files()
    );
    let fetches = fake.cdn_gets(&interrupted.digest);
    mirror.get(&blob_path(&interrupted)).await.assert_blob(&interrupted);
    assert_eq!(
        fake.cdn_gets(&interrupted.digest),
        fetches + 1,
        "fetched afresh: {:#?}",
        fake.requests()
    );
    assert!(data_dir.committed(&interrupted.digest).await);

    fake.stop().await;
    mirror.get(&blob_path(&committed)).await.assert_blob(&committed);
    mirror.get(&blob_path(&interrupted)).await.assert_blob(&interrupted);
    assert_eq!(fake.cdn_gets(&committed.digest), 1, "{}", mirror.log());
}
