//! Test support: an in-process fake upstream registry, the real mirror started against
//! it (in-process, or as the real binary in a child process), the content (digests,
//! images, indexes) the tests push upstream, and views of what the mirror has on disk;
//! for the service side, parsed `/metrics` scrapes, TLS certificates and a TLS client, and
//! headless Chromium; for access control, client credentials and a client presenting a
//! client certificate (mutual TLS); clients from other loopback addresses (`peers`); pushing
//! to hosted repositories (`push`).

pub mod chromium;
pub mod client;
pub mod content;
pub mod credentials;
pub mod data_dir;
pub mod fake_registry;
pub mod fleet;
pub mod garage;
pub mod metrics;
pub mod mirror;
pub mod mtls;
pub mod peers;
pub mod process;
pub mod push;
pub mod streaming;
pub mod tls;

use std::time::Duration;

pub use client::Reply;
pub use content::{Format, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
pub use data_dir::DataDir;
pub use fake_registry::{FakeRegistry, Fault, Gate, Target};
pub use mirror::Mirror;

/// Checks `condition` every 20 ms for up to `within`; whether it ever held. For state that
/// settles asynchronously (a fill committing after its last client left, say), so a test
/// neither sleeps a guessed margin nor hangs.
pub async fn poll_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
