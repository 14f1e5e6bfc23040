//! Micro-benchmarks of the pure functions every request runs through: the router
//! (`api::route::Route::parse`), the name and reference parsing it is built from, and digest
//! verification throughput.
//! bench/run.sh runs them and sets the sha256 throughput beside `sha256sum` on the same data.
//!
//! `cargo bench --bench hot_paths`; criterion's usual flags follow `--`.

use std::hint::black_box;
use std::str::FromStr;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use http::Method;
use regmirror::api::route::Route;
use regmirror::digest::{Algorithm, Digest, Hasher};
use regmirror::reference::{ImageRef, Reference, RepoName};

const DIGEST: &str = "sha256:72dc914520d70c720b0140b1d5c2ecc5e3b93311e70bdad9dd16415014443231";

/// The pieces of `/v2/<name>/blobs/<digest>` and `/v2/<name>/manifests/<reference>`.
fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for name in ["alpine", "library/alpine", "someuser/some-tool", "a/b/c/d/e__f-g.h"] {
        group.bench_with_input(BenchmarkId::new("repo_name", name), name, |b, s| {
            b.iter(|| RepoName::from_str(black_box(s)))
        });
    }
    for reference in ["latest", "3.20.1-alpine_amd64", DIGEST] {
        let label = if reference.contains(':') { "digest" } else { reference };
        group.bench_with_input(BenchmarkId::new("reference", label), reference, |b, s| {
            b.iter(|| Reference::from_str(black_box(s)))
        });
    }
    group.bench_function("digest", |b| b.iter(|| Digest::from_str(black_box(DIGEST))));
    let image = format!("docker.io/someuser/tool:1.2@{DIGEST}");
    group.bench_function("image_ref", |b| b.iter(|| ImageRef::from_str(black_box(&image))));
    routing(&mut group);
    group.finish();
}

/// Whole requests through the real router, as the server calls it on every request. In the
/// `parse` group, so bench/report.py lists them with the pieces above.
fn routing(group: &mut BenchmarkGroup<'_, WallTime>) {
    let (get, head) = (Method::GET, Method::HEAD);
    let blob = format!("/v2/library/alpine/blobs/{DIGEST}");
    let by_digest = format!("/v2/someuser/tool/manifests/{DIGEST}");
    let requests = [
        ("blob", &get, blob.as_str(), None),
        ("manifest_tag", &head, "/v2/alpine/manifests/3.20", None),
        ("manifest_digest", &get, by_digest.as_str(), None),
        ("manifest_ns", &head, "/v2/org/tool/manifests/1.2", Some("ns=ghcr.io")),
        ("manifest_prefix", &head, "/v2/ghcr.io/org/tool/manifests/1.2", None),
    ];
    for (label, method, path, query) in requests {
        group.bench_function(BenchmarkId::new("route", label), |b| {
            b.iter(|| Route::parse(black_box(method), black_box(path), black_box(query)))
        });
    }
}

/// sha256 of 64 MiB fed in 64 KiB reads, as a fill hashes what the upstream sends.
fn hashing(c: &mut Criterion) {
    const SIZE: usize = 64 << 20;
    const READ: usize = 64 << 10;
    // Deterministic, incompressible-looking bytes (xorshift), so every run hashes the same data.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let data: Vec<u8> = (0..SIZE / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.bench_function("sha256_64MiB", |b| {
        b.iter(|| {
            let mut hasher = Hasher::new(Algorithm::Sha256);
            for chunk in black_box(&data).chunks(READ) {
                hasher.update(chunk);
            }
            hasher.finish()
        })
    });
    group.finish();
}

criterion_group!(benches, parsing, hashing);
criterion_main!(benches);
