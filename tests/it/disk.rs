//! The cache's hold on the disk (docs/protocol.md §10): `max_cache_size` evicts
//! content and deletes its files, without cutting off a client still reading one, and
//! too little free space (`min_free_disk`) makes blobs pass through uncached, still
//! verified.

use std::time::Duration;

use http::{Method, StatusCode};
use tokio::time::Instant;

use crate::support::client::assert_not_delivered;
use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::{poll_until, DataDir, FakeRegistry, Fault, Mirror, Target};

const REPO: &str = "library/debian";
const CAP: u64 = 3 * MIB as u64;
/// Bound on waiting for the store to settle; generous for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

fn blob_path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

/// `count` blobs of `size` bytes stored upstream.
fn blobs_of(fake: &FakeRegistry, count: usize, size: usize) -> Vec<Blob> {
    (0..count)
        .map(|_| {
            let blob = Blob::new(random_bytes(size));
            fake.add_blob(REPO, blob.bytes.clone());
            blob
        })
        .collect()
}

fn bytes_on_disk(mirror: &Mirror) -> u64 {
    bytes_in(&mirror.data_dir())
}

fn bytes_in(data_dir: &DataDir) -> u64 {
    data_dir.blobs().iter().map(|(_, size)| size).sum()
}

/// Waits, up to `WAIT`, until the store shows `settled`, for the tests that are about *what*
/// is evicted (`cap_holds_once_a_fill_has_committed` is about *when*). Each round starts with
/// a HEAD of `last`, the blob fetched last: it waits for that blob's commit and the eviction
/// the commit causes, and, reading the index without starting a fill, gives moka a chance to
/// apply anything it deferred.
async fn settle(mirror: &Mirror, last: &Blob, settled: impl Fn(&DataDir) -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        mirror.head(&blob_path(last)).await;
        if settled(&mirror.data_dir()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Some of `blobs` has gone from the store.
fn any_evicted(blobs: &[Blob]) -> impl Fn(&DataDir) -> bool + '_ {
    |data_dir| blobs.iter().any(|b| !data_dir.has_blob(&b.digest))
}

/// A request for a blob whose commit is under way waits for it (and the eviction it causes),
/// so from the answer to a HEAD after its GET the store must be within its cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_holds_once_a_fill_has_committed() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blobs = blobs_of(&fake, 5, MIB);
    let mirror = Mirror::builder(&fake).max_cache_size(CAP).start().await;

    for (n, blob) in blobs.iter().enumerate() {
        mirror.get(&blob_path(blob)).await.assert_blob(blob);
        mirror.head(&blob_path(blob)).await;
        assert!(
            bytes_on_disk(&mirror) <= CAP,
            "after blob {}: {} bytes in blobs/ with a cap of {CAP}: {:?}",
            n + 1,
            bytes_on_disk(&mirror),
            mirror.data_dir().blobs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_blobs_are_deleted_and_fetched_again() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blobs = blobs_of(&fake, 5, MIB);
    let mirror = Mirror::builder(&fake).max_cache_size(CAP).start().await;
    for blob in &blobs {
        mirror.get(&blob_path(blob)).await.assert_blob(blob);
    }
    settle(&mirror, &blobs[4], |d| bytes_in(d) <= CAP && any_evicted(&blobs)(d)).await;

    let data_dir = mirror.data_dir();
    assert!(bytes_on_disk(&mirror) <= CAP, "{:?}", data_dir.blobs());
    let (kept, evicted): (Vec<&Blob>, Vec<&Blob>) = blobs.iter().partition(|b| data_dir.has_blob(&b.digest));
    assert!(
        !evicted.is_empty(),
        "five 1 MiB blobs in a 3 MiB cache: {:?}",
        data_dir.blobs()
    );

    let before = fake.total();
    for blob in &kept {
        mirror.get(&blob_path(blob)).await.assert_blob(blob);
    }
    assert_eq!(
        fake.total(),
        before,
        "what is on disk is served from it: {:#?}",
        fake.requests()
    );
    for blob in &evicted {
        let fetches = fake.cdn_gets(&blob.digest);
        mirror.get(&blob_path(blob)).await.assert_blob(blob);
        assert_eq!(
            fake.cdn_gets(&blob.digest),
            fetches + 1,
            "an evicted blob is fetched again: {:#?}",
            fake.requests()
        );
    }
}

/// Clients read cached blobs slowly while newer, more popular blobs push them out of the
/// cache: the files are deleted under the readers, who still get every byte. The blobs
/// are larger than what the socket buffers can take off the mirror's hands, so it is
/// still reading the files when they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_evicted_while_being_read_still_reaches_its_reader() {
    const SIZE: usize = 4 * MIB;
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blobs = blobs_of(&fake, 3, SIZE);
    let newcomers = blobs_of(&fake, 2, SIZE);
    let mirror = Mirror::builder(&fake).max_cache_size(3 * SIZE as u64).start().await;
    for blob in &blobs {
        mirror.get(&blob_path(blob)).await.assert_blob(blob);
    }
    // A HEAD of a blob whose commit is under way waits for it.
    for blob in &blobs {
        assert_eq!(mirror.head(&blob_path(blob)).await.status, StatusCode::OK);
    }
    assert_eq!(mirror.data_dir().blobs().len(), 3, "the cap holds three blobs");

    let mut readers = Vec::new();
    for blob in &blobs {
        let mut reader = mirror.open(&blob_path(blob), &[]).await;
        assert_eq!(reader.status, StatusCode::OK);
        reader.read_at_least(16 * 1024).await;
        readers.push(reader);
    }
    // More recent than the blobs being read and asked for more often (a HEAD reads the
    // index like a GET), so whatever the cache's policy, they win the space.
    for blob in &newcomers {
        for _ in 0..10 {
            assert_eq!(mirror.head(&blob_path(blob)).await.status, StatusCode::OK);
        }
        mirror.get(&blob_path(blob)).await.assert_blob(blob);
    }
    settle(&mirror, &newcomers[1], any_evicted(&blobs)).await;

    let data_dir = mirror.data_dir();
    let evicted: Vec<&Blob> = blobs.iter().filter(|b| !data_dir.has_blob(&b.digest)).collect();
    assert!(
        !evicted.is_empty(),
        "no blob being read was evicted, so this test proves nothing: {:?}",
        data_dir.blobs()
    );
    assert!(
        evicted.iter().any(|b| data_dir.blob_open_after_delete(&b.digest)),
        "the mirror no longer had an evicted file open, so this test proves nothing"
    );
    for (reader, blob) in readers.into_iter().zip(&blobs) {
        let bytes = reader.finish().await.unwrap_or_else(|e| panic!("{}: {e}", blob.digest));
        assert!(bytes[..] == blob.bytes[..], "{}: wrong bytes", blob.digest);
    }
}

/// More free space demanded than any disk has: every blob passes through, verified,
/// and nothing lands in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_passes_through_uncached_when_the_disk_is_short() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(MIB + 4321));
    fake.add_blob(REPO, blob.bytes.clone());
    let mirror = Mirror::builder(&fake).min_free_disk(u64::MAX / 4).start().await;

    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    let fetches = fake.cdn_gets(&blob.digest);
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    assert!(fake.cdn_gets(&blob.digest) > fetches, "not cached, so fetched again");

    let data_dir = mirror.data_dir();
    assert!(data_dir.blobs().is_empty(), "{:?}", data_dir.blobs());
    assert!(
        poll_until(WAIT, || data_dir.tmp_files().is_empty()).await,
        "{:?}",
        data_dir.tmp_files()
    );
}

/// Pass-through is no excuse for unverified bytes: a corrupt body is aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_blob_passed_through_is_aborted() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(MIB));
    fake.add_blob(REPO, blob.bytes.clone());
    fake.fail_always(Target::reference(&blob.digest), Fault::CorruptByte);
    let mirror = Mirror::builder(&fake).min_free_disk(u64::MAX / 4).start().await;

    assert_not_delivered(&mirror.try_send(Method::GET, &blob_path(&blob), &[]).await);
    assert!(
        fake.bodies_completed(&blob.digest) > 0,
        "the corrupt body went out in full"
    );
    assert!(mirror.data_dir().blobs().is_empty());

    fake.clear_faults();
    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    assert!(mirror.data_dir().blobs().is_empty());
}

/// When the disk cannot take a blob, the upstream answer the fill already opened is passed
/// through to the client: the blob is not fetched a second time for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_the_disk_cannot_take_is_fetched_once_for_the_client_that_asked() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(MIB + 17));
    fake.add_blob(REPO, blob.bytes.clone());
    let mirror = Mirror::builder(&fake).min_free_disk(u64::MAX / 4).start().await;

    mirror.get(&blob_path(&blob)).await.assert_blob(&blob);
    assert_eq!(fake.cdn_gets(&blob.digest), 1);
    assert!(mirror.data_dir().blobs().is_empty());
}
