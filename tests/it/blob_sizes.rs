//! Upstream sizes are not taken on trust (README, `--max-blob-size`; docs/protocol.md §10): a
//! blob announced larger than the largest the mirror takes is refused before any disk space is
//! claimed, a body of unknown length is cut off past it, and a pass-through whose upstream
//! goes silent is given up on instead of holding its transfer's place for ever. A blob's size
//! in the manifest that lists it bounds it too: an upstream that says otherwise is refused.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::client::assert_not_delivered;
use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::{poll_until, FakeRegistry, Fault, Gate, Mirror, Target, OCI_MANIFEST};

const REPO: &str = "library/postgres";
const MAX_BLOB: u64 = MIB as u64;
/// Bound on waiting for state the mirror reports; generous for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

fn blob_path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

/// A blob of `size` bytes upstream, answered with `fault` every time.
fn blob_with(fake: &FakeRegistry, size: usize, fault: Fault) -> Blob {
    let blob = Blob::new(random_bytes(size));
    fake.add_blob(REPO, blob.bytes.clone());
    fake.fail_always(Target::reference(&blob.digest), fault);
    blob
}

async fn mirror_taking_at_most(fake: &FakeRegistry, max: u64) -> Mirror {
    Mirror::builder(fake)
        .configure(|config| config.max_blob_size = max)
        .start()
        .await
}

/// An upstream announcing a terabyte for a small blob, and one honestly announcing a blob
/// over the limit: both are a 502 naming the size, with no spool made and nothing passed
/// through or cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_announced_over_the_max_blob_size_is_a_502_before_any_space_is_claimed() {
    let fake = FakeRegistry::start().await;
    let lying = blob_with(&fake, 64 * 1024, Fault::AnnounceLength(1 << 40));
    let honest = Blob::new(random_bytes(2 * MIB));
    fake.add_blob(REPO, honest.bytes.clone());
    let mirror = mirror_taking_at_most(&fake, MAX_BLOB).await;

    for blob in [&lying, &honest] {
        let reply = mirror.get(&blob_path(blob)).await;
        reply.assert_error(502, "UNAVAILABLE");
        let message = reply.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(&format!("more than the {MAX_BLOB}")), "{message}");
        assert!(mirror.data_dir().tmp_files().is_empty(), "a spool was made");
        assert!(!mirror.data_dir().has_blob(&blob.digest));
        assert_eq!(
            fake.blob_gets(&blob.digest),
            1,
            "nothing passed through: {:#?}",
            fake.requests()
        );
    }
}

/// A body without `Content-Length` is taken up to the max blob size: a smaller one is cached,
/// one that runs past the limit fails its client and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_unknown_length_past_the_max_blob_size_is_cut_off_and_not_cached() {
    let fake = FakeRegistry::start().await;
    let small = blob_with(&fake, 512 * 1024, Fault::Unsized);
    let endless = blob_with(&fake, 2 * MIB, Fault::Unsized);
    let mirror = mirror_taking_at_most(&fake, MAX_BLOB).await;

    let reply = mirror.get(&blob_path(&small)).await;
    assert_eq!(
        reply.header("content-length"),
        None,
        "chunked, as the upstream: {reply:?}"
    );
    assert_eq!(reply.bytes(), &small.bytes);
    assert!(mirror.data_dir().committed(&small.digest).await);

    let outcome = mirror.try_send(Method::GET, &blob_path(&endless), &[]).await;
    assert_not_delivered(&outcome);
    let data_dir = mirror.data_dir();
    assert!(!data_dir.has_blob(&endless.digest));
    assert!(
        poll_until(WAIT, || data_dir.tmp_files().is_empty()).await,
        "the spool was left behind: {:?}",
        data_dir.tmp_files()
    );
    assert_eq!(
        fake.blob_gets(&endless.digest),
        1,
        "cut off, not resumed: {:#?}",
        fake.requests()
    );
}

/// With no disk to spare every blob passes through. Its upstream sends half the body and
/// goes silent: the client's body fails once the idle timeout is up, and the transfer's place
/// (the only one this address has) is free again for the next blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_pass_through_upstream_is_cut_off_after_the_idle_timeout() {
    let fake = FakeRegistry::start().await;
    let gate = Gate::new();
    let silent = blob_with(&fake, 512 * 1024, Fault::HoldMidBody(gate.clone()));
    let next = Blob::new(random_bytes(64 * 1024));
    fake.add_blob(REPO, next.bytes.clone());
    let mirror = Mirror::builder(&fake).min_free_disk(u64::MAX).configure(|config| {
        config.source_idle = Duration::from_millis(500);
        config.max_transfers_per_address = 1;
        config.transfer_wait = Duration::from_millis(200);
    });
    let mirror = mirror.start().await;

    let started = Instant::now();
    let reply = mirror.try_send(Method::GET, &blob_path(&silent), &[]).await;
    let reply = reply.expect("a response head: the body started");
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.body.is_err(), "a silent upstream's body ended cleanly: {reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cut off after {:?}",
        started.elapsed()
    );

    mirror.get(&blob_path(&next)).await.assert_blob(&next);
    assert!(!mirror.data_dir().has_blob(&next.digest), "passed through, not cached");
    gate.open();
}

/// An image whose manifest gives its second layer one byte more than the blob has.
fn image_with_a_missized_layer(fake: &FakeRegistry) -> [Blob; 3] {
    let blobs = [64 * 1024, 32 * 1024, 16 * 1024].map(|size| Blob::new(random_bytes(size)));
    let descriptor = |blob: &Blob, size: usize| json!({ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob.digest, "size": size });
    let [config, wrong, chunked] = &blobs;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, config.bytes.len()),
        "layers": [descriptor(wrong, wrong.bytes.len() + 1), descriptor(chunked, chunked.bytes.len())],
    });
    for blob in &blobs {
        fake.add_blob(REPO, blob.bytes.clone());
    }
    fake.fail_always(Target::reference(&chunked.digest), Fault::Unsized);
    fake.add_manifest(REPO, "1", OCI_MANIFEST, serde_json::to_vec(&manifest).expect("JSON"));
    blobs
}

/// Once the mirror has the manifest, a layer the upstream sizes otherwise than the manifest
/// does is a 502, never cached, though its bytes match its digest; one the upstream sends
/// without a length is served with the manifest's; the rest is served and cached as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_upstream_size_differs_from_its_descriptor_is_a_502_and_not_cached() {
    let fake = FakeRegistry::start().await;
    let [config, wrong, chunked] = image_with_a_missized_layer(&fake);
    let mirror = Mirror::start(&fake).await;
    assert_eq!(
        mirror.get_manifest(&format!("/v2/{REPO}/manifests/1")).await.status,
        StatusCode::OK
    );

    let reply = mirror.get(&blob_path(&wrong)).await;
    reply.assert_error(502, "UNAVAILABLE");
    let message = reply.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let expected = format!(
        "{} bytes for a blob its manifest says has {}",
        wrong.bytes.len(),
        wrong.bytes.len() + 1
    );
    assert!(message.contains(&expected), "{message}");
    assert!(mirror.data_dir().tmp_files().is_empty(), "a spool was made");
    assert!(!mirror.data_dir().has_blob(&wrong.digest));

    let reply = mirror.get(&blob_path(&chunked)).await;
    assert_eq!(
        reply.header("content-length"),
        Some(chunked.bytes.len().to_string().as_str())
    );
    reply.assert_blob(&chunked);
    mirror.get(&blob_path(&config)).await.assert_blob(&config);
    for blob in [&chunked, &config] {
        assert!(mirror.data_dir().committed(&blob.digest).await, "{}", blob.digest);
    }
}
