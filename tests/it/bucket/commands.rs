//! The air-gap commands on a bucket: what `import --bucket` adds, every instance on the bucket
//! serves, offline too; and `export --bucket` reads what the data directory lacks from the
//! bucket (an offline prefetch on it), asking no upstream.

use std::path::Path;
use std::sync::Arc;

use regmirror::airgap::export::{self, Selection};
use regmirror::airgap::{import, prefetch, share};
use regmirror::cache::store::Store;
use regmirror::image::Platforms;

use super::{offline_on, path, REPO};
use crate::support::garage::Garage;
use crate::support::{FakeRegistry, Format};

fn export(dir: &Path, output: &Path) -> export::Summary {
    let request = export::Request {
        selection: Selection::Images(vec![format!("{REPO}:7").parse().expect("image reference")]),
        since: Vec::new(),
        output: output.to_owned(),
    };
    export::export(dir, &request).expect("export")
}

/// A mirror with `dir` as its data directory, online or offline, on the bucket.
fn config(upstream: &FakeRegistry, garage: &Garage, dir: &Path, offline: bool) -> regmirror::Config {
    let mut config = regmirror::Config::new(upstream.uri(), dir.to_owned());
    config.min_free_disk = 0;
    config.offline = offline;
    config.bucket = Some(garage.config());
    config
}

/// Prefetches `REPO:7`, every platform, through a mirror on `config`: whether it all came.
async fn prefetch_on(config: &regmirror::Config) -> bool {
    let mirror = regmirror::mirror::Mirror::new(config).expect("mirror");
    let request = prefetch::Request {
        images: vec![format!("{REPO}:7").parse().expect("image reference")],
        platforms: Platforms::All,
        jobs: 2,
    };
    let outcomes = prefetch::run(Arc::new(mirror), request).await;
    outcomes.iter().all(|o| o.result.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn an_import_reaches_every_instance_and_an_export_reads_the_bucket() {
    let garage = Garage::start();
    let upstream = FakeRegistry::start().await;
    let image = upstream.push_image(REPO, "7", Format::Oci);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().expect("dir")).collect();
    let bundle = dirs[0].path().join("bundle.tar");

    // A bundle made elsewhere, without the bucket.
    let mut elsewhere = config(&upstream, &garage, dirs[0].path(), false);
    elsewhere.bucket = None;
    assert!(prefetch_on(&elsewhere).await, "prefetch from the upstream");
    export(dirs[0].path(), &bundle);

    let imported = import::import(dirs[1].path(), &bundle).await.expect("import");
    let store = Store::at(dirs[1].path()).expect("store");
    let shared = share::share(&store, &garage.client(), &imported.images, &[])
        .await
        .expect("share");
    assert_eq!(shared.uploaded, image.blobs().count() + 1, "{shared:?}");
    let again = share::share(&store, &garage.client(), &imported.images, &[]).await;
    let again = again.expect("share again");
    assert_eq!(
        (again.uploaded, again.present),
        (0, image.blobs().count() + 1),
        "{again:?}"
    );

    let asked = upstream.total();
    let offline = offline_on(&upstream, &garage).await;
    // By digest first: only the links the import put in the bucket vouch for it.
    let by_digest = format!("/v2/{REPO}/manifests/{}", image.manifest.digest);
    offline.get_manifest(&by_digest).await.assert_manifest(&image.manifest);
    (offline.get_manifest(&format!("/v2/{REPO}/manifests/7")).await).assert_manifest(&image.manifest);
    for blob in image.blobs() {
        offline.get(&path(blob)).await.assert_blob(blob);
    }

    // An export from an empty data directory: everything comes from the bucket.
    let empty = config(&upstream, &garage, dirs[2].path(), true);
    assert!(prefetch_on(&empty).await, "offline prefetch from the bucket");
    let out = dirs[2].path().join("out.tar");
    let exported = export(dirs[2].path(), &out);
    assert_eq!(exported.images[0].1.to_string(), image.manifest.digest);
    assert_eq!(exported.blobs, image.blobs().count() + 1);
    assert_eq!(upstream.total(), asked, "nothing came from the upstream");
    import::import(dirs[3].path(), &out).await.expect("the export imports");
}
