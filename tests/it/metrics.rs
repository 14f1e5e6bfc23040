//! `/metrics` (issue 6): the numbers move as the mirror works. Each test scrapes before and
//! after, and compares the deltas: a miss then a hit of a manifest and a blob (hits, misses,
//! served bytes by source, requests by route and status, fills back to 0), a corrupt blob
//! and manifest (digest mismatches), a stale tag (stale serves), concurrent clients on one
//! cold blob (coalesced waiters); and every family is named `regmirror_…`. A series a scrape
//! lacks fails the test, so a misspelled name cannot pass a zero-delta check.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::client::assert_not_delivered;
use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::metrics::{series, Scrape};
use crate::support::{FakeRegistry, Fault, Format, Gate, Mirror, Target};

const REPO: &str = "library/alpine";
const TAG_PATH: &str = "/v2/library/alpine/manifests/3.20";

fn blob_path(digest: &str) -> String {
    format!("/v2/{REPO}/blobs/{digest}")
}

fn requests(route: &str, status: u16) -> String {
    series(
        "regmirror_requests_total",
        &[("route", route), ("status", &status.to_string())],
    )
}

fn served(source: &str) -> String {
    series("regmirror_served_bytes_total", &[("source", source)])
}

const HITS: &str = "regmirror_cache_hits_total";
const MISSES: &str = "regmirror_cache_misses_total";
const FILLS: &str = "regmirror_fills_in_flight";
const UPSTREAM_REQUESTS: &str = "regmirror_upstream_request_seconds_count";
const COALESCED: &str = "regmirror_coalesced_waiters_total";
/// Bound on waiting for state the mirror reports; generous for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

/// Asserts `after - before == expected` for each series, showing both scrapes otherwise.
fn assert_deltas(before: &Scrape, after: &Scrape, expected: &[(&str, f64)]) {
    for (series, delta) in expected {
        assert_eq!(
            after.delta(before, series),
            *delta,
            "{series}\nbefore:\n{before:?}\nafter:\n{after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_then_a_hit_move_the_counters_by_source() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let image = fake.push_image(REPO, "3.20", Format::Oci);
    let blob = Blob::new(random_bytes(MIB));
    fake.add_blob(REPO, blob.bytes.clone());
    // Held halfway until a scrape has seen the fill under way.
    let gate = Gate::new();
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::HoldMidBody(gate.clone()));
    let mirror = Mirror::start(&fake).await;
    let content = (image.manifest.bytes.len() + blob.bytes.len()) as f64;

    let before = Scrape::of(&mirror).await;
    assert_eq!(before.value(FILLS), 0.0, "{before:?}");
    mirror.get_manifest(TAG_PATH).await.assert_manifest(&image.manifest);
    let mut client = mirror.open(&blob_path(&blob.digest), &[]).await;
    assert_eq!(client.status, StatusCode::OK);
    client.read_at_least(64 * 1024).await;
    let during = Scrape::of(&mirror).await;
    assert_eq!(during.value(FILLS), 1.0, "one fill under way:\n{during:?}");
    gate.open();
    let body = client.finish().await.expect("blob body");
    assert!(body[..] == blob.bytes[..], "blob bytes differ");

    let miss = Scrape::of(&mirror).await;
    assert_deltas(
        &before,
        &miss,
        &[
            (MISSES, 2.0),
            (HITS, 0.0),
            (&served("upstream"), content),
            (&served("cache"), 0.0),
            (&requests("manifest", 200), 1.0),
            (&requests("blob", 200), 1.0),
            // `before` and `during`: a scrape is counted once it has been answered.
            (&requests("metrics", 200), 2.0),
            ("regmirror_cache_entries", 2.0),
        ],
    );
    assert_eq!(miss.value(FILLS), 0.0, "the fill is over:\n{miss:?}");
    assert!(
        miss.delta(&before, UPSTREAM_REQUESTS) >= 2.0,
        "the manifest and the blob were fetched upstream:\n{miss:?}"
    );
    assert!(
        miss.delta(&before, "regmirror_cache_bytes") >= content,
        "the cache grew by what was fetched:\n{miss:?}"
    );

    mirror.get_manifest(TAG_PATH).await.assert_manifest(&image.manifest);
    mirror.get(&blob_path(&blob.digest)).await.assert_blob(&blob);
    let hit = Scrape::of(&mirror).await;
    assert_deltas(
        &miss,
        &hit,
        &[
            (HITS, 2.0),
            (MISSES, 0.0),
            (&served("cache"), content),
            (&served("upstream"), 0.0),
            (&requests("manifest", 200), 1.0),
            (&requests("blob", 200), 1.0),
            (UPSTREAM_REQUESTS, 0.0),
            ("regmirror_cache_entries", 0.0),
            ("regmirror_cache_bytes", 0.0),
            (FILLS, 0.0),
        ],
    );
}

/// A 404 is a request like any other: counted under its route and status, and neither a
/// hit nor a miss of anything cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_route_and_status() {
    let fake = FakeRegistry::start().await;
    fake.push_image(REPO, "3.20", Format::Oci);
    let mirror = Mirror::start(&fake).await;

    let before = Scrape::of(&mirror).await;
    let absent = mirror.get_manifest("/v2/library/alpine/manifests/nope").await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND, "{absent:?}");
    assert_eq!(mirror.get("/nowhere").await.status, StatusCode::NOT_FOUND);
    let after = Scrape::of(&mirror).await;
    assert_deltas(
        &before,
        &after,
        &[
            (&requests("manifest", 404), 1.0),
            (&requests("invalid", 404), 1.0),
            (HITS, 0.0),
            (&served("upstream"), 0.0),
            (&served("cache"), 0.0),
        ],
    );
    // No manifest has been answered with a 200 on this mirror, so that series may not exist.
    assert_eq!(
        after.delta_or_zero(&before, &requests("manifest", 200)),
        0.0,
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_content_counts_digest_mismatches() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let image = fake.push_image(REPO, "3.20", Format::Oci);
    let blob = Blob::new(random_bytes(300 * 1024));
    fake.add_blob(REPO, blob.bytes.clone());
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::CorruptByte);
    fake.fail_next(Target::reference(&image.manifest.digest), 1, Fault::CorruptByte);
    let mirror = Mirror::start(&fake).await;
    const MISMATCHES: &str = "regmirror_digest_mismatches_total";

    let before = Scrape::of(&mirror).await;
    assert_not_delivered(&mirror.try_send(Method::GET, &blob_path(&blob.digest), &[]).await);
    let blob_refused = Scrape::of(&mirror).await;
    assert_deltas(
        &before,
        &blob_refused,
        &[(MISMATCHES, 1.0), ("regmirror_cache_entries", 0.0), (FILLS, 0.0)],
    );

    let by_digest = format!("/v2/{REPO}/manifests/{}", image.manifest.digest);
    let refused = mirror.get_manifest(&by_digest).await;
    assert!(refused.status.is_server_error(), "{refused:?}");
    let manifest_refused = Scrape::of(&mirror).await;
    assert_deltas(
        &blob_refused,
        &manifest_refused,
        &[(MISMATCHES, 1.0), ("regmirror_cache_entries", 0.0)],
    );

    // Good copies afterwards change nothing.
    mirror.get(&blob_path(&blob.digest)).await.assert_blob(&blob);
    mirror.get_manifest(&by_digest).await.assert_manifest(&image.manifest);
    let good = Scrape::of(&mirror).await;
    assert_deltas(
        &manifest_refused,
        &good,
        &[(MISMATCHES, 0.0), ("regmirror_cache_entries", 2.0)],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_tag_counts_a_stale_serve_and_a_hit() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image(REPO, "3.20", Format::Docker);
    let mirror = Mirror::builder(&fake).tag_ttl(Duration::ZERO).start().await;
    mirror.get_manifest(TAG_PATH).await.assert_manifest(&image.manifest);
    fake.stop().await;

    let before = Scrape::of(&mirror).await;
    let reply = mirror.get_manifest(TAG_PATH).await;
    reply.assert_manifest(&image.manifest);
    assert!(reply.header("warning").is_some(), "served stale: {reply:?}");
    let after = Scrape::of(&mirror).await;
    assert_deltas(
        &before,
        &after,
        &[
            ("regmirror_stale_serves_total", 1.0),
            (HITS, 1.0),
            (MISSES, 0.0),
            (&served("cache"), image.manifest.bytes.len() as f64),
            (&requests("manifest", 200), 1.0),
        ],
    );
}

/// The upstream body is held halfway until the mirror reports all nine clients after the
/// first waiting on the fill; only then does it go on, so each of them counts as a waiter
/// and a miss, never as a late hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_joining_a_fill_count_as_coalesced_waiters() {
    let fake = FakeRegistry::builder().cdn_redirects(true).build().await;
    let blob = Blob::new(random_bytes(512 * 1024));
    fake.add_blob(REPO, blob.bytes.clone());
    let gate = Gate::new();
    fake.fail_next(Target::reference(&blob.digest), 1, Fault::HoldMidBody(gate.clone()));
    let mirror = Arc::new(Mirror::start(&fake).await);

    let before = Scrape::of(&mirror).await;
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let (mirror, path) = (Arc::clone(&mirror), blob_path(&blob.digest));
            tokio::spawn(async move { mirror.get(&path).await })
        })
        .collect();
    // The fill is under way, its upstream body held halfway; then every other client joins it.
    assert!(
        gate.reached(WAIT).await,
        "the upstream body is held: {:#?}",
        fake.requests()
    );
    let waiting = Scrape::until(&mirror, COALESCED, before.value(COALESCED) + 9.0, WAIT).await;
    assert_eq!(waiting.value(FILLS), 1.0, "{waiting:?}");
    gate.open();
    for client in clients {
        client.await.expect("client task").assert_blob(&blob);
    }
    assert_eq!(fake.cdn_gets(&blob.digest), 1, "{:#?}", fake.requests());
    let after = Scrape::of(&mirror).await;
    assert_deltas(
        &before,
        &after,
        &[
            (COALESCED, 9.0),
            (MISSES, 10.0),
            (HITS, 0.0),
            (&served("upstream"), 10.0 * blob.bytes.len() as f64),
            (&requests("blob", 200), 10.0),
            (FILLS, 0.0),
        ],
    );
}

/// What the issue names, all there, and nothing outside the `regmirror_` namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_named_regmirror() {
    let fake = FakeRegistry::start().await;
    let image = fake.push_image(REPO, "3.20", Format::Oci);
    let mirror = Mirror::start(&fake).await;
    // Touch the labelled families so that they have samples.
    for _ in 0..2 {
        mirror.get_manifest(TAG_PATH).await.assert_manifest(&image.manifest);
        mirror
            .get(&blob_path(&image.config.digest))
            .await
            .assert_blob(&image.config);
    }
    let scrape = Scrape::of(&mirror).await;

    assert!(!scrape.families.is_empty(), "{scrape:?}");
    for (family, _) in &scrape.families {
        assert!(family.starts_with("regmirror_"), "family {family}:\n{scrape:?}");
    }
    for name in scrape.sample_names() {
        assert!(name.starts_with("regmirror_"), "sample {name}:\n{scrape:?}");
    }
    let types: Vec<(&str, &str)> = scrape
        .families
        .iter()
        .map(|(name, kind)| (name.as_str(), kind.as_str()))
        .collect();
    for expected in [
        ("regmirror_requests", "counter"),
        ("regmirror_cache_hits", "counter"),
        ("regmirror_cache_misses", "counter"),
        ("regmirror_served_bytes", "counter"),
        ("regmirror_upstream_request_seconds", "histogram"),
        ("regmirror_fills_in_flight", "gauge"),
        ("regmirror_coalesced_waiters", "counter"),
        ("regmirror_cache_evictions", "counter"),
        ("regmirror_digest_mismatches", "counter"),
        ("regmirror_stale_serves", "counter"),
        ("regmirror_cache_bytes", "gauge"),
        ("regmirror_cache_entries", "gauge"),
        ("regmirror_upstream_ratelimit_remaining", "gauge"),
    ] {
        assert!(types.contains(&expected), "no {expected:?} family:\n{scrape:?}");
    }
    for sample in [
        requests("manifest", 200).as_str(),
        served("cache").as_str(),
        served("upstream").as_str(),
        "regmirror_cache_evictions_total",
        "regmirror_upstream_request_seconds_bucket{le=\"+Inf\"}",
        "regmirror_upstream_request_seconds_sum",
        // No Docker Hub rate-limit header from the fake: -1, "not seen".
        "regmirror_upstream_ratelimit_remaining",
    ] {
        assert!(scrape.has_sample(sample), "no sample {sample}:\n{scrape:?}");
    }
    assert_eq!(scrape.value("regmirror_upstream_ratelimit_remaining"), -1.0);
    assert_eq!(
        scrape.value("regmirror_upstream_request_seconds_bucket{le=\"+Inf\"}"),
        scrape.value(UPSTREAM_REQUESTS),
        "{scrape:?}"
    );
}
