//! What manifests and indexes say about other content: descriptors (media type, digest, size),
//! an index's children and their platforms, an image's config and layers. Read only to walk
//! from an image to everything it is made of; stored and served bytes stay as they came.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a manifest or index: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a {0} is neither an image manifest nor an index")]
    MediaType(String),
    #[error("an image manifest without a config")]
    NoConfig,
    #[error("platform '{0}' is not os/architecture[/variant], e.g. linux/arm64")]
    Platform(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Where a foreign (non-distributable) layer lives; such layers are not on the registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest,
            size,
            platform: None,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// A foreign layer: clients fetch it from its `urls`, so neither the upstream nor a bundle
    /// need have it.
    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
    }
}

/// A manifest's content, by kind.
#[derive(Debug)]
pub enum Node {
    /// An OCI index or Docker manifest list: one child manifest per platform.
    Index(Vec<Descriptor>),
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

impl Node {
    /// Parses manifest bytes stored or sent as `media_type`.
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Node, Error> {
        #[derive(Deserialize)]
        struct Shape {
            #[serde(default)]
            manifests: Vec<Descriptor>,
            config: Option<Descriptor>,
            #[serde(default)]
            layers: Vec<Descriptor>,
        }
        let shape: Shape = serde_json::from_slice(bytes)?;
        match media_type {
            manifest::OCI_INDEX | manifest::DOCKER_LIST => Ok(Node::Index(shape.manifests)),
            manifest::OCI_MANIFEST | manifest::DOCKER_V2 => Ok(Node::Image {
                config: shape.config.ok_or(Error::NoConfig)?,
                layers: shape.layers,
            }),
            other => Err(Error::MediaType(other.to_owned())),
        }
    }
}

/// Whether a media type names a manifest or index (as opposed to a config or layer blob).
pub fn is_manifest(media_type: &str) -> bool {
    matches!(
        media_type,
        manifest::OCI_INDEX | manifest::DOCKER_LIST | manifest::OCI_MANIFEST | manifest::DOCKER_V2
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// linux on this machine's architecture, in the names images use.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Whether an index child for `child` is what this (wanted) platform asks for. No variant
    /// asked means any; arm64 without a variant is v8.
    fn admits(&self, child: &Platform) -> bool {
        let child_variant = match (child.architecture.as_str(), child.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            (_, variant) => variant,
        };
        self.os == child.os
            && self.architecture == child.architecture
            && self.variant.as_deref().is_none_or(|v| Some(v) == child_variant)
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts[..] {
            [os, architecture] | [os, architecture, _] if parts.iter().all(ok) => Ok(Platform {
                os: os.to_owned(),
                architecture: architecture.to_owned(),
                variant: parts.get(2).map(|v| (*v).to_owned()),
            }),
            _ => Err(Error::Platform(s.to_owned())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
        }
    }
}

/// Which children of an index to take.
#[derive(Debug, Clone)]
pub enum Platforms {
    /// Every child, attestations (`unknown/unknown`) included, as `--all-platforms` says.
    All,
    Only(Vec<Platform>),
}

impl Platforms {
    pub fn admits(&self, child: &Descriptor) -> bool {
        match (self, &child.platform) {
            (Platforms::All, _) => true,
            (Platforms::Only(wanted), Some(platform)) => wanted.iter().any(|w| w.admits(platform)),
            (Platforms::Only(_), None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(platform: &str) -> Descriptor {
        let mut d = Descriptor::new(manifest::OCI_MANIFEST, Digest::sha256_of(platform.as_bytes()), 1);
        d.platform = platform.parse().ok();
        d
    }

    #[test]
    fn platforms_parse_and_select() {
        let only = |list: &[&str]| Platforms::Only(list.iter().map(|p| p.parse().expect("platform")).collect());
        assert!(only(&["linux/amd64"]).admits(&child("linux/amd64")));
        assert!(!only(&["linux/amd64"]).admits(&child("linux/arm64")));
        assert!(only(&["linux/arm64/v8"]).admits(&child("linux/arm64")));
        assert!(only(&["linux/arm"]).admits(&child("linux/arm/v7")));
        assert!(!only(&["linux/arm/v6"]).admits(&child("linux/arm/v7")));
        assert!(!only(&["linux/amd64"]).admits(&child("unknown/unknown")));
        assert!(Platforms::All.admits(&child("unknown/unknown")));
        assert_eq!(
            "linux/arm/v7".parse::<Platform>().expect("ok").to_string(),
            "linux/arm/v7"
        );
        for bad in ["linux", "linux/", "a/b/c/d", "linux/amd 64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn nodes_by_media_type() {
        let d = Digest::sha256_of(b"c");
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{d}","size":1}},
            "layers":[{{"mediaType":"l","digest":"{d}","size":2,"urls":["https://x"]}}]}}"#
        );
        match Node::parse(manifest::DOCKER_V2, image.as_bytes()).expect("image") {
            Node::Image { config, layers } => {
                assert_eq!((config.size, layers.len()), (1, 1));
                assert!(layers[0].is_foreign());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Node::parse(manifest::OCI_INDEX, br#"{"manifests":[]}"#),
            Ok(Node::Index(children)) if children.is_empty()
        ));
        assert!(matches!(Node::parse("text/plain", b"{}"), Err(Error::MediaType(_))));
        assert!(matches!(
            Node::parse(manifest::OCI_MANIFEST, b"{}"),
            Err(Error::NoConfig)
        ));
        let bad_digest = r#"{"manifests":[{"mediaType":"x","digest":"sha256:AB","size":1}]}"#;
        assert!(matches!(
            Node::parse(manifest::OCI_INDEX, bad_digest.as_bytes()),
            Err(Error::Json(_))
        ));
    }
}
