//! The caps on upstream transfers (README, `--max-transfers`, `--max-transfers-per-address`;
//! docs/protocol.md §4): new fills and pass-throughs count, per client address and in all;
//! following a fill already under way never does. Beyond a cap a request waits a bounded
//! time, then gets 429 (its address's cap) or 503 (the mirror's), with `Retry-After`. The
//! upstream answers are held at gates, so the transfers really are under way meanwhile.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::content::{random_bytes, Blob};
use crate::support::metrics::{series, Scrape};
use crate::support::peers::{get_from, loopback};
use crate::support::{FakeRegistry, Fault, Gate, Mirror, Reply, Target};

const REPO: &str = "library/busybox";
const COALESCED: &str = "regmirror_coalesced_waiters_total";
const WAITS: &str = "regmirror_transfer_waits_total";
/// Bound on waiting for state the mirror or the fake reports; generous for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);
/// How long the mirror lets a request wait for a place, shortened for the tests.
const TRANSFER_WAIT: Duration = Duration::from_millis(300);

fn refusals(cap: &str) -> String {
    series("regmirror_transfer_refusals_total", &[("cap", cap)])
}

fn blob_path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

/// `count` blobs upstream, the first `held` of them with their upstream answer held at a gate.
fn blobs(fake: &FakeRegistry, count: usize, held: usize) -> (Vec<Blob>, Vec<Gate>) {
    let blobs: Vec<Blob> = (0..count).map(|_| Blob::new(random_bytes(64 * 1024))).collect();
    let mut gates = Vec::new();
    for blob in &blobs {
        fake.add_blob(REPO, blob.bytes.clone());
    }
    for blob in &blobs[..held] {
        let gate = Gate::new();
        fake.fail_next(Target::reference(&blob.digest), 1, Fault::Hold(gate.clone()));
        gates.push(gate);
    }
    (blobs, gates)
}

async fn capped(fake: &FakeRegistry, overall: usize, per_address: usize) -> Arc<Mirror> {
    let mirror = Mirror::builder(fake).configure(|config| {
        config.max_transfers = overall;
        config.max_transfers_per_address = per_address;
        config.transfer_wait = TRANSFER_WAIT;
    });
    Arc::new(mirror.start().await)
}

/// GETs `blob` from `from` in a task of its own: a client waiting on a held transfer.
fn spawn_get(mirror: &Arc<Mirror>, from: IpAddr, blob: &Blob) -> tokio::task::JoinHandle<Reply> {
    let (mirror, path) = (Arc::clone(mirror), blob_path(blob));
    tokio::spawn(async move { get_from(&mirror, from, &path).await })
}

async fn all_reached(gates: &[Gate]) {
    for gate in gates {
        assert!(gate.reached(WAIT).await, "every held transfer reached the upstream");
    }
}

/// Asserts the refusal: its status and code, a `Retry-After`, and that it came only after
/// the request had waited for a place.
fn assert_refused(reply: &Reply, waited: Duration, status: u16, code: &str) {
    reply.assert_error(status, code);
    assert_eq!(reply.header("retry-after"), Some("10"), "{reply:?}");
    assert!(waited >= TRANSFER_WAIT, "refused after {waited:?}, without waiting");
}

/// One address holds its two transfers: its third distinct cold blob waits, then gets 429;
/// asking again for a blob being fetched joins that fill instead, and another address is
/// not held back by the first one's cap. Once the transfers end, all of them complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_cold_blob_from_an_address_at_its_cap_of_two_waits_then_gets_429_but_joining_is_free() {
    let fake = FakeRegistry::start().await;
    let (blobs, gates) = blobs(&fake, 3, 2);
    let mirror = capped(&fake, 10, 2).await;
    let before = Scrape::of(&mirror).await;
    let here = loopback(1);
    let held: Vec<_> = blobs[..2].iter().map(|blob| spawn_get(&mirror, here, blob)).collect();
    all_reached(&gates).await;

    let started = Instant::now();
    let refused = get_from(&mirror, here, &blob_path(&blobs[2])).await;
    assert_refused(&refused, started.elapsed(), 429, "TOOMANYREQUESTS");
    assert_eq!(
        fake.blob_gets(&blobs[2].digest),
        0,
        "the refused blob was never asked for"
    );

    let joiner = spawn_get(&mirror, here, &blobs[0]);
    Scrape::until(&mirror, COALESCED, before.value(COALESCED) + 1.0, WAIT).await;
    get_from(&mirror, loopback(2), &blob_path(&blobs[2]))
        .await
        .assert_blob(&blobs[2]);
    for gate in &gates {
        gate.open();
    }
    for (client, blob) in held.into_iter().chain([joiner]).zip([&blobs[0], &blobs[1], &blobs[0]]) {
        client.await.expect("client task").assert_blob(blob);
    }
    assert_eq!(fake.blob_gets(&blobs[0].digest), 1, "{:#?}", fake.requests());

    let after = Scrape::of(&mirror).await;
    assert_eq!(after.delta(&before, &refusals("address")), 1.0, "{after:?}");
    assert_eq!(after.delta(&before, &refusals("overall")), 0.0, "{after:?}");
    assert_eq!(after.delta(&before, WAITS), 1.0, "{after:?}");
}

/// Two addresses hold the mirror's two transfers: a third address, far from its own cap,
/// waits, then gets 503 for the mirror as a whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_blob_beyond_the_mirrors_cap_waits_then_gets_503() {
    let fake = FakeRegistry::start().await;
    let (blobs, gates) = blobs(&fake, 3, 2);
    let mirror = capped(&fake, 2, 2).await;
    let before = Scrape::of(&mirror).await;
    let held = [
        spawn_get(&mirror, loopback(1), &blobs[0]),
        spawn_get(&mirror, loopback(2), &blobs[1]),
    ];
    all_reached(&gates).await;

    let started = Instant::now();
    let refused = get_from(&mirror, loopback(3), &blob_path(&blobs[2])).await;
    assert_refused(&refused, started.elapsed(), 503, "UNAVAILABLE");
    for gate in &gates {
        gate.open();
    }
    for (client, blob) in held.into_iter().zip(&blobs) {
        client.await.expect("client task").assert_blob(blob);
    }
    let after = Scrape::of(&mirror).await;
    assert_eq!(after.delta(&before, &refusals("overall")), 1.0, "{after:?}");
    assert_eq!(after.delta(&before, &refusals("address")), 0.0, "{after:?}");
    get_from(&mirror, loopback(3), &blob_path(&blobs[2]))
        .await
        .assert_blob(&blobs[2]);
}

/// A request waiting at the cap takes the place a finished transfer gives back, well
/// before its wait is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_takes_the_place_a_finished_transfer_gives_back() {
    let fake = FakeRegistry::start().await;
    let (blobs, gates) = blobs(&fake, 2, 1);
    let mirror = Mirror::builder(&fake).configure(|config| {
        config.max_transfers_per_address = 1;
        config.transfer_wait = WAIT;
    });
    let mirror = Arc::new(mirror.start().await);
    let before = Scrape::of(&mirror).await;
    let held = spawn_get(&mirror, loopback(1), &blobs[0]);
    all_reached(&gates).await;
    let waiting = spawn_get(&mirror, loopback(1), &blobs[1]);
    Scrape::until(&mirror, WAITS, before.value(WAITS) + 1.0, WAIT).await;
    gates[0].open();
    held.await.expect("client task").assert_blob(&blobs[0]);
    waiting.await.expect("client task").assert_blob(&blobs[1]);
}

/// Fills write on threads of their own. With the cap's worth of fills held halfway through
/// their bodies and tokio's blocking pool no larger than that cap, a cached blob (whose file
/// is opened on that pool) is still served at once.
#[test]
fn a_warm_blob_is_served_promptly_while_the_caps_worth_of_fills_are_held() {
    const CAP: usize = 4;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(CAP)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let fake = FakeRegistry::start().await;
        let warm = Blob::new(random_bytes(256 * 1024));
        fake.add_blob(REPO, warm.bytes.clone());
        let mirror = Mirror::builder(&fake).configure(|config| config.max_transfers = CAP);
        let mirror = mirror.start().await;
        mirror.get(&blob_path(&warm)).await.assert_blob(&warm);
        assert!(
            mirror.data_dir().committed(&warm.digest).await,
            "the warm blob is cached"
        );

        let mut gates = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..CAP {
            let blob = Blob::new(random_bytes(1024 * 1024));
            fake.add_blob(REPO, blob.bytes.clone());
            let gate = Gate::new();
            fake.fail_next(Target::reference(&blob.digest), 1, Fault::HoldMidBody(gate.clone()));
            let mut reader = mirror.open(&blob_path(&blob), &[]).await;
            reader.read_at_least(64 * 1024).await;
            readers.push((reader, blob));
            gates.push(gate);
        }
        all_reached(&gates).await;

        let hit = tokio::time::timeout(Duration::from_secs(3), mirror.get(&blob_path(&warm))).await;
        hit.expect("a warm hit within 3 s while every fill is held")
            .assert_blob(&warm);
        for gate in &gates {
            gate.open();
        }
        for (reader, blob) in readers {
            assert!(reader.finish().await.expect("the held fill's body")[..] == blob.bytes[..]);
        }
    });
}
