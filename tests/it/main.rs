//! Integration tests: the real regmirror server, in-process, against a fake upstream
//! registry that behaves like Docker Hub (bearer tokens, a CDN behind 307s, 401 for
//! unknown repositories) and can be told to misbehave.
//!
//! One test binary, one module per feature; `support` holds the fake and the harness.
//! `fake_upstream` checks the fake itself, so a failure elsewhere points at the mirror.

#![allow(clippy::unwrap_used, reason = "a test that cannot unwrap has already failed")]

mod support;

mod accept;
mod access;
mod airgap;
mod auth;
mod blob_sizes;
mod blobs;
mod bucket;
mod concurrency;
mod config;
mod connections;
mod crash;
mod disk;
mod errors;
mod fake_upstream;
mod fleet;
mod health;
mod hosted;
mod hosted_airgap;
mod hosted_gc;
mod import_refusals;
mod integrity;
mod inward_redirects;
mod isolation;
mod logs;
mod manifests;
mod metrics;
mod ping;
mod private_content;
mod push_delete;
mod push_manifests;
mod push_mounts;
mod push_uploads;
mod referrers;
mod registries;
mod restart;
mod resume;
mod revalidation;
mod signals;
mod single_flight;
mod stale;
mod status_page;
mod tags;
mod tokens;
mod transfer_caps;
mod upstream_origin;
mod upstream_tls;
