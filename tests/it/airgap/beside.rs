//! Commands beside a running mirror: what `import` and `prefetch` add is served without a
//! restart; and an offline mirror asks nothing even with upstream credentials.

use super::*;

#[tokio::test]
async fn an_import_beside_a_running_mirror_serves_without_a_restart() {
    let upstream = FakeRegistry::start().await;
    let tiny = upstream.push_image("library/tiny", "1", Format::Docker);
    let (seeded, work, site) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    assert_all_ok(&prefetch(&upstream, seeded.path(), &["tiny:1"], Platforms::All).await);
    let bundle = work.path().join("bundle.tar");
    export(seeded.path(), Selection::All, &[], &bundle);
    let offline = Served::start(&upstream, site.path(), true).await;
    offline
        .get("/v2/tiny/manifests/1")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    import::import(site.path(), &bundle)
        .await
        .expect("import beside the server");
    offline.assert_image("library/tiny", "1", &tiny).await;
}

#[tokio::test]
async fn a_prefetch_beside_a_running_mirror_is_served_from_the_cache() {
    let upstream = FakeRegistry::start().await;
    let tool = upstream.push_image("someuser/tool", "1", Format::Oci);
    let dir = TempDir::new().unwrap();
    let online = Served::start(&upstream, dir.path(), false).await;
    online
        .get("/v2/someuser/tool/manifests/1")
        .await
        .assert_manifest(&tool.manifest);
    assert_all_ok(&prefetch(&upstream, dir.path(), &["someuser/tool:1"], Platforms::All).await);
    let gets: Vec<usize> = tool.blobs().map(|b| upstream.blob_gets(&b.digest)).collect();
    assert_eq!(gets, [1, 1, 1]);
    online.assert_image("someuser/tool", "1", &tool).await;
    let after: Vec<usize> = tool.blobs().map(|b| upstream.blob_gets(&b.digest)).collect();
    assert_eq!(after, gets, "the running mirror found the prefetched blobs on disk");
}

/// Upstream credentials make an online mirror confirm private content with the upstream;
/// offline there is no upstream to ask, and none is asked.
#[tokio::test]
async fn an_offline_mirror_with_upstream_credentials_still_asks_nothing() {
    let upstream = FakeRegistry::start().await;
    let tool = upstream.push_image("someuser/tool", "1", Format::Oci);
    let (seeded, work, site) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    assert_all_ok(&prefetch(&upstream, seeded.path(), &["someuser/tool:1"], Platforms::All).await);
    let bundle = work.path().join("bundle.tar");
    export(seeded.path(), Selection::All, &[], &bundle);
    import::import(site.path(), &bundle).await.expect("import");
    let mut config = config(&upstream, site.path());
    config.offline = true;
    config.credentials = Some(regmirror::config::Credentials {
        username: "user".into(),
        password: "secret".into(),
    });
    let offline = Served::with(config).await;
    let before = upstream.total();
    offline
        .assert_image("someuser/tool", &tool.manifest.digest, &tool)
        .await;
    offline.assert_image("someuser/tool", "1", &tool).await;
    assert_eq!(upstream.total(), before);
}
