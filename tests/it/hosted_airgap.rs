//! Hosted repositories and the air-gap commands: `export` of a pushed image reads its tag like a
//! mirrored one's; `import` of a bundle naming a hosted namespace makes hosted content (pinned,
//! linked to its repository, the namespace recorded), which an offline mirror hosting that
//! namespace serves and `cache prune` leaves alone; `prefetch` refuses a hosted name on one
//! line without asking any upstream.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use regmirror::airgap::import;
use regmirror::cache::maintenance::{self, Prune};
use regmirror::cache::store::Store;
use regmirror::reference::Registry;
use regmirror::Config;
use tempfile::TempDir;

use crate::airgap::export;
use crate::support::content::Image;
use crate::support::process::output_within;
use crate::support::push::{assert_never_asked_upstream, hosted_mirror, push_image, NAMESPACE};
use crate::support::{FakeRegistry, Format, Mirror};

const NAME: &str = "site.lan/gallery/ui";

fn namespace() -> Registry {
    NAMESPACE.parse().expect("namespace")
}

/// A bundle of `site.lan/gallery/ui:v1` exported from a mirror it was pushed to, written into
/// `work`; and the image.
pub(crate) async fn hosted_bundle(work: &Path) -> (std::path::PathBuf, Image, FakeRegistry) {
    let (hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    push_image(&mirror, NAME, "v1", &image).await;
    let bundle = work.join("hosted.tar");
    let selection = regmirror::airgap::export::Selection::Images(vec![format!("{NAME}:v1").parse().expect("ref")]);
    let summary = export(mirror.data_dir().root(), selection, &[], &bundle);
    let names: Vec<String> = summary.images.iter().map(|(i, _)| i.to_string()).collect();
    assert_eq!(names, [format!("{NAME}:v1")]);
    assert_eq!(summary.images[0].1.to_string(), image.manifest.digest);
    assert_eq!(summary.blobs, image.blobs().count() + 1, "manifest, config, layers");
    (bundle, image, hub)
}

fn image_digests(image: &Image) -> Vec<String> {
    let blobs = image.blobs().map(|b| b.digest.clone());
    std::iter::once(image.manifest.digest.clone()).chain(blobs).collect()
}

/// Every digest of `image` is pinned in `site`, and linked to the hosted repository.
async fn assert_hosted_content(site: &Path, image: &Image) {
    let store = Store::at(site).expect("store");
    assert_eq!(store.hosted_namespaces().expect("namespaces"), [namespace()]);
    let repo = "gallery/ui".parse().expect("repo");
    for digest in image_digests(image) {
        let digest = digest.parse().expect("digest");
        assert!(store.pinned(&digest), "{digest} not pinned");
        let link = store.linked(&namespace(), &repo, &digest).await.expect("read link");
        assert!(link.is_some(), "{digest} not linked to {NAME}");
    }
}

/// An offline mirror hosting the namespace over `site` serves the image under its name, and
/// after a prune down to nothing still does: hosted content is never evicted.
async fn assert_served_offline(hub: &FakeRegistry, site: TempDir, image: &Image) {
    let rule = Prune {
        max_bytes: Some(0),
        older_than: Some(Duration::ZERO),
    };
    let (files, _) = maintenance::prune(site.path(), &rule).expect("prune");
    assert_eq!(files, 0, "prune removed hosted content");
    let mut config = Config::new(hub.uri(), site.path().to_owned());
    config.offline = true;
    config.min_free_disk = 0;
    config.hosted = Some(namespace());
    let mirror = Mirror::from_config(config, site).start().await;
    mirror
        .get_manifest(&format!("/v2/{NAME}/manifests/v1"))
        .await
        .assert_manifest(&image.manifest);
    for blob in image.blobs() {
        mirror
            .get(&format!("/v2/{NAME}/blobs/{}", blob.digest))
            .await
            .assert_blob(blob);
    }
    let tags = mirror.get(&format!("/v2/{NAME}/tags/list")).await.json();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_image_exports_and_imports_as_hosted_content_an_offline_mirror_serves() {
    let work = TempDir::new().unwrap();
    let (bundle, image, hub) = hosted_bundle(work.path()).await;
    let (_, index) = crate::airgap::bundle_entries(&bundle);
    let annotations = &index["manifests"][0]["annotations"];
    assert_eq!(annotations["org.opencontainers.image.ref.name"], format!("{NAME}:v1"));

    // The namespace given on the command line: recorded, and the content hosted.
    let site = TempDir::new().unwrap();
    let summary = import::import_hosting(site.path(), &bundle, Some(&namespace()))
        .await
        .expect("import");
    assert_eq!(summary.images.len(), 1);
    assert_hosted_content(site.path(), &image).await;
    assert_served_offline(&hub, site, &image).await;

    // The namespace a mirror has hosted in this data directory counts without being given.
    let served = TempDir::new().unwrap();
    Store::init(served.path())
        .expect("init")
        .record_hosted(&namespace())
        .expect("record");
    import::import(served.path(), &bundle).await.expect("import");
    assert_hosted_content(served.path(), &image).await;
    assert_never_asked_upstream(&hub, &["gallery/ui"]);
}

/// Named under a registry no one hosts here, the same bundle is ordinary cache content:
/// linked to that name, not pinned, so eviction may take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_of_a_namespace_not_hosted_here_imports_unpinned() {
    let work = TempDir::new().unwrap();
    let (bundle, image, _hub) = hosted_bundle(work.path()).await;
    let site = TempDir::new().unwrap();
    import::import(site.path(), &bundle).await.expect("import");
    let store = Store::at(site.path()).expect("store");
    assert!(store.hosted_namespaces().expect("namespaces").is_empty());
    let repo = "gallery/ui".parse().expect("repo");
    for digest in image_digests(&image) {
        let digest = digest.parse().expect("digest");
        assert!(!store.pinned(&digest), "{digest} pinned");
        assert!(store
            .linked(&namespace(), &repo, &digest)
            .await
            .expect("link")
            .is_some());
    }
}

/// `regmirror prefetch` of a hosted name: one line on stderr, a non-zero exit, and no request
/// to the upstream it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_refuses_a_hosted_name_without_asking_upstream() {
    let hub = FakeRegistry::start().await;
    let site = TempDir::new().unwrap();
    Store::init(site.path())
        .expect("init")
        .record_hosted(&namespace())
        .expect("record");
    let mut command = Command::new(env!("CARGO_BIN_EXE_regmirror"));
    command
        .args(["prefetch", "--data-dir"])
        .arg(site.path())
        .args([
            "--upstream",
            &hub.uri().to_string(),
            "alpine:3.20",
            &format!("{NAME}:v1"),
        ])
        .env_clear();
    let output = output_within(&mut command, Duration::from_secs(60)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{:?}: {stderr}", output.status);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!("{NAME}:v1: site.lan is this mirror's hosted namespace")),
        "{stderr}"
    );
    assert!(hub.requests().is_empty(), "asked upstream: {:#?}", hub.requests());
}
