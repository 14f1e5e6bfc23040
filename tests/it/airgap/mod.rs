//! Air-gapped sites: `prefetch` from the fake upstream, `export` to a bundle, `import` into an
//! empty data directory, and a mirror serving it `--offline` without a single upstream request.
//! Also platform selection, incremental bundles, and a prefetch that resumes after a failure;
//! `docker_save` has `docker save` tarballs, `beside` the commands run beside a serving mirror,
//! and `import_refusals` the bundles that must be refused.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::Method;
use regmirror::airgap::export::{self, Selection};
use regmirror::airgap::{import, prefetch};
use regmirror::image::{Platform, Platforms};
use regmirror::Config;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::client::{send, Reply, CONTAINERD_ACCEPT};
use crate::support::content::{random_bytes, sha256, Image};
use crate::support::{DataDir, FakeRegistry, Fault, Format, Target, DOCKER_MANIFEST};

mod beside;
mod docker_save;

fn config(upstream: &FakeRegistry, dir: &Path) -> Config {
    let mut config = Config::new(upstream.uri(), dir.to_owned());
    // About the bundle, not about the free space of the machine running the tests.
    config.min_free_disk = 0;
    config
}

pub(crate) async fn prefetch(
    upstream: &FakeRegistry,
    dir: &Path,
    images: &[&str],
    platforms: Platforms,
) -> Vec<prefetch::Outcome> {
    let mut config = config(upstream, dir);
    config.tag_ttl = std::time::Duration::ZERO;
    let mirror = regmirror::mirror::Mirror::new(&config).expect("open the cache");
    let request = prefetch::Request {
        images: images.iter().map(|i| i.parse().expect("image reference")).collect(),
        platforms,
        jobs: 3,
    };
    prefetch::run(Arc::new(mirror), request).await
}

pub(crate) fn assert_all_ok(outcomes: &[prefetch::Outcome]) {
    for outcome in outcomes {
        if let Err(e) = &outcome.result {
            panic!("prefetch of {} failed: {e}", outcome.image);
        }
    }
}

pub(crate) fn export(dir: &Path, selection: Selection, since: &[&Path], output: &Path) -> export::Summary {
    let request = export::Request {
        selection,
        since: since.iter().map(|p| p.to_path_buf()).collect(),
        output: output.to_owned(),
    };
    export::export(dir, &request).expect("export")
}

fn images(names: &[&str]) -> Selection {
    Selection::Images(names.iter().map(|n| n.parse().expect("image reference")).collect())
}

/// Names of a tar's entries, and its JSON `index.json`.
pub(crate) fn bundle_entries(bundle: &Path) -> (Vec<String>, serde_json::Value) {
    let mut archive = tar::Archive::new(std::fs::File::open(bundle).expect("open bundle"));
    let mut names = Vec::new();
    let mut index = serde_json::Value::Null;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        if name == "index.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("index.json");
            index = serde_json::from_str(&text).expect("index.json is JSON");
        }
        names.push(name);
    }
    (names, index)
}

fn blob_entries(bundle: &Path) -> Vec<String> {
    let (names, _) = bundle_entries(bundle);
    let mut blobs: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_prefix("blobs/sha256/").filter(|hex| !hex.is_empty()))
        .map(|hex| format!("sha256:{hex}"))
        .collect();
    blobs.sort();
    blobs
}

fn sorted(digests: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut all: Vec<String> = digests.into_iter().collect();
    all.sort();
    all.dedup();
    all
}

fn image_content(image: &Image) -> Vec<String> {
    let blobs = image.blobs().map(|b| b.digest.clone());
    sorted(std::iter::once(image.manifest.digest.clone()).chain(blobs))
}

/// A real server on 127.0.0.1:0 over `dir`, offline or not; dropping it stops it.
struct Served {
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

impl Served {
    async fn start(upstream: &FakeRegistry, dir: &Path, offline: bool) -> Served {
        let mut config = config(upstream, dir);
        config.offline = offline;
        Served::with(config).await
    }

    async fn with(mut config: Config) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        config.listen = addr;
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(regmirror::server::run(listener, config, async move {
            let _ = stopped.await;
        }));
        Served {
            addr,
            _shutdown: shutdown,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        send(
            &format!("http://{}{path}", self.addr),
            Method::GET,
            &[("accept", CONTAINERD_ACCEPT)],
        )
        .await
    }

    /// Asserts the mirror serves the whole image (manifest by `reference`, then blobs) exactly.
    async fn assert_image(&self, repo: &str, reference: &str, image: &Image) {
        let manifest = self.get(&format!("/v2/{repo}/manifests/{reference}")).await;
        manifest.assert_manifest(&image.manifest);
        for blob in image.blobs() {
            self.get(&format!("/v2/{repo}/blobs/{}", blob.digest))
                .await
                .assert_blob(blob);
        }
    }
}

#[tokio::test]
async fn prefetch_export_import_then_an_offline_mirror_serves_identical_bytes() {
    let upstream = FakeRegistry::start().await;
    let multi = upstream.push_index("library/multi", "1");
    let tiny = upstream.push_image("library/tiny", "1", Format::Docker);
    let tool = upstream.push_image("someuser/tool", "latest", Format::Oci);
    let (seeded, work, site) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let outcomes = prefetch(
        &upstream,
        seeded.path(),
        &["multi:1", "tiny:1", "someuser/tool"],
        Platforms::All,
    )
    .await;
    assert_all_ok(&outcomes);
    let bundle = work.path().join("bundle.tar");
    let summary = export(seeded.path(), Selection::All, &[], &bundle);
    assert_eq!(summary.images.len(), 3);
    assert!(!work.path().join("bundle.tar.partial").exists());

    let (names, index) = bundle_entries(&bundle);
    assert!(names.contains(&"oci-layout".to_owned()), "{names:?}");
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .expect("ref.name")
        })
        .collect();
    assert_eq!(
        refs,
        [
            "docker.io/library/multi:1",
            "docker.io/library/tiny:1",
            "docker.io/someuser/tool:latest"
        ]
    );

    let imported = import::import(site.path(), &bundle).await.expect("import");
    assert_eq!(imported.images.len(), 3);
    let before = upstream.total();
    let offline = Served::start(&upstream, site.path(), true).await;
    offline
        .get("/v2/multi/manifests/1")
        .await
        .assert_manifest(&multi.manifest);
    for arch in ["amd64", "arm64"] {
        let child = multi.child(arch);
        offline
            .assert_image("library/multi", &child.manifest.digest, child)
            .await;
    }
    offline.assert_image("library/tiny", "1", &tiny).await;
    offline.assert_image("someuser/tool", "latest", &tool).await;
    offline
        .get("/v2/library/absent/manifests/1")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    let miss = offline
        .get(&format!("/v2/library/tiny/blobs/{}", sha256(b"absent")))
        .await;
    miss.assert_error(404, "BLOB_UNKNOWN");
    assert!(
        miss.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("offline"),
        "{miss:?}"
    );
    let tags = offline.get("/v2/library/tiny/tags/list").await;
    assert_eq!(
        tags.json(),
        serde_json::json!({ "name": "library/tiny", "tags": ["1"] })
    );
    offline
        .get("/v2/library/absent/tags/list")
        .await
        .assert_error(404, "NAME_UNKNOWN");
    assert_eq!(upstream.total(), before, "an offline mirror never asks the upstream");

    let again = import::import(site.path(), &bundle).await.expect("import again");
    assert_eq!(
        (again.added, again.present),
        (0, imported.added),
        "importing twice adds nothing"
    );
}

#[tokio::test]
async fn prefetch_takes_only_the_platforms_asked_for() {
    let upstream = FakeRegistry::start().await;
    let multi = upstream.push_index("library/multi", "1");
    let dir = TempDir::new().unwrap();
    let arm64 = Platforms::Only(vec!["linux/arm64".parse::<Platform>().unwrap()]);
    let outcomes = prefetch(&upstream, dir.path(), &["multi:1"], arm64).await;
    assert_all_ok(&outcomes);
    let fetched = outcomes[0].result.as_ref().unwrap();
    assert_eq!(fetched.platforms, ["linux/arm64"]);
    let cached = DataDir::new(dir.path());
    for blob in multi.child("arm64").blobs() {
        assert!(cached.has_blob(&blob.digest));
    }
    for blob in multi.child("amd64").blobs() {
        assert!(!cached.has_blob(&blob.digest));
        assert_eq!(upstream.blob_gets(&blob.digest), 0);
    }
    assert_eq!(upstream.manifest_gets_of(&multi.child("amd64").manifest.digest), 0);

    let work = TempDir::new().unwrap();
    let bundle = work.path().join("arm64.tar");
    export(dir.path(), images(&["multi:1"]), &[], &bundle);
    let arm64_content = sorted(
        image_content(multi.child("arm64"))
            .into_iter()
            .chain([multi.manifest.digest.clone()]),
    );
    assert_eq!(blob_entries(&bundle), arm64_content);

    let s390x = Platforms::Only(vec!["linux/s390x".parse::<Platform>().unwrap()]);
    let outcomes = prefetch(&upstream, dir.path(), &["multi:1"], s390x).await;
    let error = outcomes[0].result.as_ref().err().expect("no such platform").to_string();
    assert!(error.contains("linux/amd64, linux/arm64"), "{error}");
}

#[tokio::test]
async fn an_incremental_bundle_holds_only_new_blobs_and_needs_the_earlier_one() {
    let upstream = FakeRegistry::start().await;
    let tiny = upstream.push_image("library/tiny", "1", Format::Docker);
    let (dir, work) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    assert_all_ok(&prefetch(&upstream, dir.path(), &["tiny:1"], Platforms::All).await);
    let first = work.path().join("first.tar");
    export(dir.path(), Selection::All, &[], &first);
    assert_eq!(blob_entries(&first), image_content(&tiny));

    let tool = upstream.push_image("someuser/tool", "2", Format::Oci);
    assert_all_ok(&prefetch(&upstream, dir.path(), &["someuser/tool:2"], Platforms::All).await);
    let second = work.path().join("second.tar");
    let summary = export(dir.path(), Selection::All, &[&first], &second);
    assert_eq!(
        blob_entries(&second),
        image_content(&tool),
        "only what the first bundle lacks"
    );
    assert_eq!((summary.images.len(), summary.skipped), (2, image_content(&tiny).len()));

    let site = TempDir::new().unwrap();
    let alone = import::import(site.path(), &second)
        .await
        .err()
        .expect("needs the first bundle");
    assert!(alone.to_string().contains(&tiny.manifest.digest), "{alone}");
    assert!(DataDir::new(site.path()).blobs().is_empty(), "nothing added");
    import::import(site.path(), &first).await.expect("first");
    import::import(site.path(), &second).await.expect("then the second");
    let offline = Served::start(&upstream, site.path(), true).await;
    offline.assert_image("library/tiny", "1", &tiny).await;
    offline.assert_image("someuser/tool", "2", &tool).await;
}

pub(crate) fn assert_nothing_added(site: &Path) {
    let data = DataDir::new(site);
    assert!(data.blobs().is_empty(), "{:?}", data.blobs());
    assert!(!site.join("tags/docker.io/library").exists(), "no tag set");
}

#[tokio::test]
async fn an_interrupted_prefetch_resumes_where_it_stopped() {
    let upstream = FakeRegistry::start().await;
    let tool = upstream.push_image("someuser/tool", "1", Format::Oci);
    let broken = &tool.layers[0].digest;
    upstream.fail_always(Target::reference(broken), Fault::status(500));
    let dir = TempDir::new().unwrap();
    let outcomes = prefetch(&upstream, dir.path(), &["someuser/tool:1"], Platforms::All).await;
    let error = outcomes[0].result.as_ref().err().expect("a layer failed").to_string();
    assert!(error.contains("500"), "{error}");
    let cached = DataDir::new(dir.path());
    assert!(cached.has_blob(&tool.config.digest) && !cached.has_blob(broken));

    upstream.clear_faults();
    let config_gets = upstream.blob_gets(&tool.config.digest);
    let outcomes = prefetch(&upstream, dir.path(), &["someuser/tool:1"], Platforms::All).await;
    assert_all_ok(&outcomes);
    let fetched = outcomes[0].result.as_ref().unwrap();
    assert_eq!(
        (fetched.blobs, fetched.fetched),
        (3, 1),
        "only the missing layer is fetched"
    );
    assert_eq!(upstream.blob_gets(&tool.config.digest), config_gets);
    assert!(cached.has_blob(broken));
}
