//! Test support: an in-process fake upstream registry, the real mirror started against
//! it, and the content (digests, images, indexes) the tests push upstream.

pub mod content;
pub mod fake_registry;
pub mod mirror;

pub use content::{Format, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
pub use fake_registry::{FakeRegistry, Fault, Target};
pub use mirror::{Mirror, Reply};
