//! A `docker save` tarball's `manifest.json` and an image config, as an import reads them from
//! a tarball someone handed over: the registry manifest made for an image lists the config and
//! the checked layers, in order, only when the layers are the config's `diff_ids`; and tags
//! name images that read back as themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::airgap::docker_save::{self, Hashed, Saved};
use regmirror::digest::Digest;
use regmirror::image::Node;
use regmirror::manifest;
use regmirror::reference::ImageRef;

fuzz_target!(|input: &[u8]| {
    // `manifest.json` on the first line, then the config file.
    let (manifest_json, config) = match input.iter().position(|&b| b == b'\n') {
        Some(end) => (&input[..end], &input[end + 1..]),
        None => (input, &[][..]),
    };
    let Ok(saved) = docker_save::parse(manifest_json) else {
        return;
    };
    let diff_ids = diff_ids(config);
    for image in &saved {
        for tag in image.repo_tags.iter().flatten() {
            if let Ok(named) = tag.parse::<ImageRef>() {
                assert_eq!(named.to_string().parse::<ImageRef>().as_ref(), Ok(&named), "{tag}");
            }
        }
        // A sound tarball, whose layer files hash to the config's diff_ids in order, and one
        // whose files are something else.
        let sound: Vec<Digest> = (0..image.layers.len())
            .map(|i| diff_ids.get(i).cloned().unwrap_or_else(|| Digest::sha256_of(&[0])))
            .collect();
        let other: Vec<Digest> = image.layers.iter().map(|l| Digest::sha256_of(l.as_bytes())).collect();
        check(image, config, &sound, &diff_ids);
        check(image, config, &other, &diff_ids);
    }
});

fn check(image: &Saved, config_bytes: &[u8], layer_digests: &[Digest], diff_ids: &[Digest]) {
    let config = Hashed {
        digest: Digest::sha256_of(config_bytes),
        size: config_bytes.len() as u64,
    };
    let layers: Vec<Hashed> = (layer_digests.iter().enumerate())
        .map(|(i, digest)| Hashed {
            digest: digest.clone(),
            size: i as u64 + 1,
        })
        .collect();
    let Ok(made) = docker_save::manifest(image, config_bytes, &config, &layers) else {
        return;
    };
    assert_eq!(
        layer_digests, diff_ids,
        "layers that are not the config's diff_ids pass"
    );
    match Node::parse(manifest::DOCKER_V2, &made) {
        Ok(Node::Image { config: c, layers: l }) => {
            assert_eq!((&c.digest, c.size), (&config.digest, config.size));
            let listed: Vec<_> = l.iter().map(|d| (&d.digest, d.size)).collect();
            let checked: Vec<_> = layers.iter().map(|h| (&h.digest, h.size)).collect();
            assert_eq!(listed, checked);
        }
        other => panic!("the manifest made reads as {other:?}"),
    }
}

/// The config's `rootfs.diff_ids`, where it has valid ones.
fn diff_ids(config: &[u8]) -> Vec<Digest> {
    let json: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
    serde_json::from_value(json["rootfs"]["diff_ids"].clone()).unwrap_or_default()
}
