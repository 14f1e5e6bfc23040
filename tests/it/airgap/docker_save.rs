//! `docker save` tarballs: imported whole (layers against their config's diff_ids) and served
//! offline.

use std::path::PathBuf;

use super::*;

/// A tarball as Docker Engine 20.10's `docker save` writes it: a config named by its digest,
/// one directory per layer with an uncompressed `layer.tar` (a repeated layer as a symbolic
/// link to the first), `repositories` and `manifest.json`.
fn docker_save(path: &Path, tag: &str, layers: &[&[u8]], spoil: bool) -> (Vec<u8>, PathBuf) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256(&config).trim_start_matches("sha256:"));
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    let add = |tar: &mut tar::Builder<std::fs::File>, name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, bytes).unwrap();
    };
    let mut layer_names = Vec::new();
    for (n, layer) in layers.iter().enumerate() {
        let name = format!("{n:064}/layer.tar");
        add(&mut tar, &format!("{n:064}/VERSION"), b"1.0");
        add(&mut tar, &format!("{n:064}/json"), b"{}");
        if n > 0 && layer == &layers[0] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &name, format!("../{:064}/layer.tar", 0))
                .unwrap();
        } else if spoil && n == 0 {
            add(&mut tar, &name, b"not the layer the config names");
        } else {
            add(&mut tar, &name, layer);
        }
        layer_names.push(name);
    }
    add(&mut tar, &config_name, &config);
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": [tag], "Layers": layer_names }]);
    add(&mut tar, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add(&mut tar, "repositories", b"{}");
    tar.finish().unwrap();
    (config, PathBuf::from(layer_names[0].clone()))
}

#[tokio::test]
async fn a_docker_save_tarball_imports_and_serves_offline() {
    let upstream = FakeRegistry::start().await;
    let (work, site) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (a, b) = (random_bytes(3000), random_bytes(700));
    let saved = work.path().join("saved.tar");
    let (config, _) = docker_save(&saved, "saved:1", &[&a, &b, &a], false);
    let imported = import::import(site.path(), &saved).await.expect("import docker save");
    assert_eq!(imported.images[0].0.to_string(), "docker.io/library/saved:1");

    let offline = Served::start(&upstream, site.path(), true).await;
    let manifest = offline.get("/v2/saved/manifests/1").await;
    assert_eq!(manifest.header("content-type"), Some(DOCKER_MANIFEST));
    let json = manifest.json();
    assert_eq!(json["config"]["digest"], sha256(&config));
    let layers: Vec<&str> = json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layers, [sha256(&a), sha256(&b), sha256(&a)]);
    offline
        .get(&format!("/v2/saved/blobs/{}", sha256(&b)))
        .await
        .assert_bytes(&b);

    let spoiled = work.path().join("spoiled.tar");
    let (_, bad_layer) = docker_save(&spoiled, "spoiled:1", &[&random_bytes(500)], true);
    let other = TempDir::new().unwrap();
    let error = import::import(other.path(), &spoiled).await.err().expect("refused");
    assert!(error.to_string().starts_with(bad_layer.to_str().unwrap()), "{error}");
    assert_nothing_added(other.path());
}
