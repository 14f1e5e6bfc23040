//! Micro-benchmarks of the pure functions every request runs through: name and reference
//! parsing (the public pieces `api::route` is built from) and digest verification throughput.
//! bench/run.sh runs them and sets the sha256 throughput beside `sha256sum` on the same data.
//!
//! `cargo bench --bench hot_paths`; criterion's usual flags follow `--`.

use std::hint::black_box;
use std::str::FromStr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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
    // A whole blob route's worth: split the path the way the router does, parse both halves.
    let path = format!("/v2/library/alpine/blobs/{DIGEST}");
    group.bench_function("blob_path", |b| {
        b.iter(|| {
            let rest = black_box(&path).strip_prefix("/v2/").expect("prefix");
            let (name, digest) = rest.rsplit_once("/blobs/").expect("blobs");
            (RepoName::from_str(name), Digest::from_str(digest))
        })
    });
    group.finish();
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
