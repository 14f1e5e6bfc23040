//! `docker save` tarballs, as Docker Engine 20.10 writes them: `manifest.json` lists each
//! image's config file (`<hex>.json`), its tags and its layer files (`<id>/layer.tar`,
//! uncompressed, in order), beside `repositories` and per-layer metadata no one needs here.
//!
//! There is no registry manifest in such a tarball, so one is made: a Docker v2 manifest over
//! the config and the uncompressed layers, whose digests the config's `rootfs.diff_ids` must
//! confirm. Pulled through the mirror it is the same image (same config, same image ID) under
//! a manifest digest of its own.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image::Descriptor;
use crate::manifest;

pub const MANIFEST: &str = "manifest.json";
pub const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// Saved layers are plain tars; clients take them as they take gzipped ones.
pub const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{entry}: {source}")]
    Json { entry: String, source: serde_json::Error },
    #[error("{entry}: content hashes to {actual}, not the config's diff_id {expected}")]
    Layer {
        entry: String,
        actual: Digest,
        expected: Digest,
    },
    #[error("{entry}: names {named} layers, but the config {config} has {diff_ids} diff_ids")]
    LayerCount {
        entry: String,
        config: String,
        named: usize,
        diff_ids: usize,
    },
    #[error("{entry}: content hashes to {actual}, not the digest its name says")]
    Config { entry: String, actual: Digest },
}

/// One image of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Saved {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// A file of the tarball as the import hashed it.
#[derive(Debug, Clone)]
pub struct Hashed {
    pub digest: Digest,
    pub size: u64,
}

pub fn parse(manifest_json: &[u8]) -> Result<Vec<Saved>, Error> {
    serde_json::from_slice(manifest_json).map_err(|source| Error::Json {
        entry: MANIFEST.to_owned(),
        source,
    })
}

/// The registry manifest for a saved image, once the files are known to be what the config
/// says: the config's name is its digest, and the layers hash to its `diff_ids` in order.
pub fn manifest(saved: &Saved, config_bytes: &[u8], config: &Hashed, layers: &[Hashed]) -> Result<Vec<u8>, Error> {
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(Deserialize)]
    struct RootFs {
        diff_ids: Vec<Digest>,
    }
    let named = saved.config.trim_end_matches(".json").rsplit('/').next().unwrap_or("");
    if named.len() == 64 && named != config.digest.hex() {
        return Err(Error::Config {
            entry: saved.config.clone(),
            actual: config.digest.clone(),
        });
    }
    let parsed: Config = serde_json::from_slice(config_bytes).map_err(|source| Error::Json {
        entry: saved.config.clone(),
        source,
    })?;
    let diff_ids = parsed.rootfs.diff_ids;
    if diff_ids.len() != layers.len() {
        return Err(Error::LayerCount {
            entry: MANIFEST.to_owned(),
            config: saved.config.clone(),
            named: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    for ((entry, layer), expected) in saved.layers.iter().zip(layers).zip(diff_ids) {
        if layer.digest != expected {
            return Err(Error::Layer {
                entry: entry.clone(),
                actual: layer.digest.clone(),
                expected,
            });
        }
    }
    Ok(render(config, layers))
}

fn render(config: &Hashed, layers: &[Hashed]) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct V2 {
        schema_version: u32,
        media_type: &'static str,
        config: Descriptor,
        layers: Vec<Descriptor>,
    }
    let v2 = V2 {
        schema_version: 2,
        media_type: manifest::DOCKER_V2,
        config: Descriptor::new(CONFIG_TYPE, config.digest.clone(), config.size),
        layers: layers
            .iter()
            .map(|l| Descriptor::new(LAYER_TYPE, l.digest.clone(), l.size))
            .collect(),
    };
    // Serialising these plain structs cannot fail.
    serde_json::to_vec_pretty(&v2).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Node;

    fn hashed(bytes: &[u8]) -> Hashed {
        Hashed {
            digest: Digest::sha256_of(bytes),
            size: bytes.len() as u64,
        }
    }

    fn config_for(layers: &[&Hashed]) -> Vec<u8> {
        let ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
        serde_json::to_vec(&serde_json::json!({ "rootfs": { "type": "layers", "diff_ids": ids } })).expect("json")
    }

    #[test]
    fn makes_a_v2_manifest_over_checked_layers() {
        let (a, b) = (hashed(b"layer a"), hashed(b"layer b"));
        let config_bytes = config_for(&[&a, &b]);
        let config = hashed(&config_bytes);
        let json = format!(
            r#"[{{"Config":"{}.json","RepoTags":["tool:1"],"Layers":["x/layer.tar","y/layer.tar"]}}]"#,
            config.digest.hex()
        );
        let saved = parse(json.as_bytes()).expect("parse");
        assert_eq!(saved[0].repo_tags.as_deref(), Some(&["tool:1".to_owned()][..]));
        let made = manifest(&saved[0], &config_bytes, &config, &[a.clone(), b.clone()]).expect("manifest");
        match Node::parse(manifest::DOCKER_V2, &made).expect("parses as a v2 manifest") {
            Node::Image { config: c, layers } => {
                assert_eq!((c.digest, c.media_type.as_str()), (config.digest.clone(), CONFIG_TYPE));
                assert_eq!(
                    layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
                    [&a.digest, &b.digest]
                );
            }
            other => panic!("{other:?}"),
        }
        let swapped = manifest(&saved[0], &config_bytes, &config, &[b, a]);
        assert!(matches!(swapped, Err(Error::Layer { entry, .. }) if entry == "x/layer.tar"));
        let wrong_config = manifest(&saved[0], &config_bytes, &hashed(b"other"), &[]);
        assert!(matches!(wrong_config, Err(Error::Config { .. })));
    }
}
