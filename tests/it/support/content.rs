//! Test content: digests, random bytes and small but well-formed images and indexes.
//!
//! Everything here is pure; `FakeRegistry::push_image` and friends store it upstream.
//! Manifests are pretty-printed JSON so that a mirror which re-serialises them changes
//! their bytes and fails the exact-bytes assertions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest as _, Sha256};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub const MIB: usize = 1024 * 1024;

/// The four manifest types a mirror always asks the upstream for (docs/protocol.md §5).
pub const ALL_MANIFEST_TYPES: [&str; 4] = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Bytes that differ on every call, so no two tests (or layers) share a digest by accident.
pub fn random_bytes(len: usize) -> Bytes {
    static SEED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = nanos ^ SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*: plenty for test data, and avoids a dependency on `rand`.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Docker,
    Oci,
}

#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub bytes: Bytes,
}

impl Blob {
    pub fn new(bytes: Bytes) -> Blob {
        Blob {
            digest: sha256(&bytes),
            bytes,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: String,
    pub media_type: &'static str,
    pub bytes: Bytes,
}

impl Manifest {
    fn new(media_type: &'static str, value: &serde_json::Value) -> Manifest {
        let mut bytes = serde_json::to_vec_pretty(value).expect("manifest JSON serialises");
        bytes.push(b'\n');
        Manifest {
            digest: sha256(&bytes),
            media_type,
            bytes: Bytes::from(bytes),
        }
    }
}

/// A single-platform image: its manifest, its config blob and its layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Manifest,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Image {
    /// A config blob plus two layers of random bytes (one of a few chunks, one tiny).
    pub fn build(format: Format, architecture: &str) -> Image {
        let layers = vec![Blob::new(random_bytes(48 * 1024)), Blob::new(random_bytes(1234))];
        let config = Blob::new(Bytes::from(
            serde_json::to_vec(&json!({
                "architecture": architecture,
                "os": "linux",
                "config": { "Env": ["PATH=/usr/bin"], "Labels": { "nonce": hex::encode(random_bytes(8)) } },
                "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| &l.digest).collect::<Vec<_>>() },
            }))
            .expect("config JSON serialises"),
        ));
        let (media_type, config_type, layer_type) = match format {
            Format::Docker => (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            Format::Oci => (
                OCI_MANIFEST,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
        };
        let manifest = Manifest::new(
            media_type,
            &json!({
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": descriptor(config_type, &config),
                "layers": layers.iter().map(|l| descriptor(layer_type, l)).collect::<Vec<_>>(),
            }),
        );
        Image {
            manifest,
            config,
            layers,
        }
    }

    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// An OCI index with one linux child per architecture.
#[derive(Debug, Clone)]
pub struct Index {
    pub manifest: Manifest,
    pub children: Vec<(String, Image)>,
}

impl Index {
    pub fn build(architectures: &[&str]) -> Index {
        let children: Vec<(String, Image)> = architectures
            .iter()
            .map(|arch| ((*arch).to_owned(), Image::build(Format::Oci, arch)))
            .collect();
        let manifests: Vec<serde_json::Value> = children
            .iter()
            .map(|(arch, image)| {
                json!({
                    "mediaType": image.manifest.media_type,
                    "digest": image.manifest.digest,
                    "size": image.manifest.bytes.len(),
                    "platform": { "architecture": arch, "os": "linux" },
                })
            })
            .collect();
        let manifest = Manifest::new(
            OCI_INDEX,
            &json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }),
        );
        Index { manifest, children }
    }

    pub fn child(&self, architecture: &str) -> &Image {
        &self
            .children
            .iter()
            .find(|(arch, _)| arch == architecture)
            .expect("index has that architecture")
            .1
    }
}

fn descriptor(media_type: &str, blob: &Blob) -> serde_json::Value {
    json!({ "mediaType": media_type, "digest": blob.digest, "size": blob.bytes.len() })
}
