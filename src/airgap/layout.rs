//! The OCI image layout as a bundle carries it: `oci-layout`, `index.json` (one entry per
//! image, named by annotation) and `blobs/<alg>/<hex>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image::Descriptor;
use crate::manifest;
use crate::reference::ImageRef;

pub const OCI_LAYOUT: &str = "oci-layout";
pub const INDEX: &str = "index.json";
/// The image spec's name annotation; skopeo's `oci-archive:FILE:REF` matches REF against it.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and `docker save`'s, since Engine 25) full image name annotation.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// `index.json` naming each image by its full reference.
    pub fn of(images: &[(ImageRef, Descriptor)]) -> Index {
        let manifests = images
            .iter()
            .map(|(image, descriptor)| Descriptor {
                annotations: BTreeMap::from([(REF_NAME.to_owned(), image.to_string())]),
                ..descriptor.clone()
            })
            .collect();
        Index {
            schema_version: 2,
            media_type: Some(manifest::OCI_INDEX.to_owned()),
            manifests,
        }
    }
}

/// `{"imageLayoutVersion":"1.0.0"}`, the layout's marker file.
pub fn layout_marker() -> &'static [u8] {
    br#"{"imageLayoutVersion":"1.0.0"}"#
}

/// Where a layout keeps a blob: `blobs/sha256/<hex>`.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// The digest a layout path names, for `blobs/<alg>/<hex>`.
pub fn digest_of_path(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (algorithm, hex) = rest.split_once('/')?;
    format!("{algorithm}:{hex}").parse().ok()
}

/// The image an `index.json` entry names. A bare tag (the spec allows `ref.name` = `3.20`)
/// names no repository, so only full names count: containerd's annotation, or a `ref.name`
/// with a repository in it.
pub fn image_name(descriptor: &Descriptor) -> Option<ImageRef> {
    let full = descriptor.annotations.get(CONTAINERD_NAME);
    let ref_name = descriptor.annotations.get(REF_NAME).filter(|name| name.contains('/'));
    full.or(ref_name)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(digest_of_path(&blob_path(&d)), Some(d.clone()));
        assert_eq!(digest_of_path("blobs/sha256/XY"), None);
        assert_eq!(digest_of_path("manifest.json"), None);
        let image: ImageRef = "alpine:3.20".parse().expect("ref");
        let index = Index::of(&[(image.clone(), Descriptor::new(manifest::OCI_MANIFEST, d, 5))]);
        assert_eq!(
            index.manifests[0].annotations[REF_NAME],
            "docker.io/library/alpine:3.20"
        );
        assert_eq!(image_name(&index.manifests[0]), Some(image));
        let mut bare = index.manifests[0].clone();
        bare.annotations.insert(REF_NAME.into(), "3.20".into());
        assert_eq!(image_name(&bare), None);
        bare.annotations
            .insert(CONTAINERD_NAME.into(), "docker.io/library/alpine:3.20".into());
        assert!(image_name(&bare).is_some());
    }
}
