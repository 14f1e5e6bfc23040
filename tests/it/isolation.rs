//! Content isolation across every registry and repository, public ones included: content a
//! repository holds is never served through another repository or registry, to anyone, online,
//! after a restart, or offline; and the repository that holds it keeps serving it offline,
//! because the links that say so are on disk.

use http::Method;

use crate::support::client::CONTAINERD_ACCEPT;
use crate::support::content::Image;
use crate::support::credentials::{basic, htpasswd};
use crate::support::{FakeRegistry, Format, Mirror, Reply};

const LAN: &str = "registry.lan:5000";

struct Site {
    hub: FakeRegistry,
    lan: FakeRegistry,
    secret: Image,
    alpine: Image,
    _dir: tempfile::TempDir,
}

/// Docker Hub (public) with library/alpine and someuser/tool; a private LAN registry with
/// org/secret and org/public-app. Anyone may pull Docker Hub; alice the LAN's org/*; bob
/// only org/public-app.
async fn site() -> (Site, Mirror) {
    let hub = FakeRegistry::start().await;
    let alpine = hub.push_image("library/alpine", "latest", Format::Docker);
    hub.push_image("someuser/tool", "latest", Format::Docker);
    let lan = FakeRegistry::builder().basic_auth("mirror", "s3cret").build().await;
    let secret = lan.push_image("org/secret", "1", Format::Oci);
    lan.push_image("org/public-app", "1", Format::Docker);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = htpasswd(dir.path(), &[("alice", "wonderland"), ("bob", "builder")]);
    let access = format!(
        "htpasswd = {file:?}\nanonymous = [\"docker.io/*\"]\n\
         [[rules]]\nusers = [\"alice\"]\nrepos = [\"{LAN}/org/*\"]\n\
         [[rules]]\nusers = [\"bob\"]\nrepos = [\"{LAN}/org/public-app\", \"docker.io/*\"]\n"
    );
    let mirror = Mirror::builder(&hub)
        .registry(LAN, &lan, Some(("mirror", "s3cret")))
        .access(&access)
        .start()
        .await;
    let site = Site {
        hub,
        lan,
        secret,
        alpine,
        _dir: dir,
    };
    (site, mirror)
}

fn identities() -> [Option<String>; 3] {
    [None, Some(basic("bob", "builder")), Some(basic("alice", "wonderland"))]
}

async fn get(mirror: &Mirror, path: &str, authorization: Option<&String>) -> Reply {
    let mut headers = vec![("accept", CONTAINERD_ACCEPT)];
    headers.extend(authorization.map(|a| ("authorization", a.as_str())));
    mirror.send(Method::GET, path, &headers).await
}

/// Pulls `image` through `prefix/repo` as `authorization`: manifest by digest, then blobs.
async fn pull(mirror: &Mirror, name: &str, image: &Image, authorization: Option<&String>) {
    get(
        mirror,
        &format!("/v2/{name}/manifests/{}", image.manifest.digest),
        authorization,
    )
    .await
    .assert_manifest(&image.manifest);
    for blob in image.blobs() {
        let reply = get(mirror, &format!("/v2/{name}/blobs/{}", blob.digest), authorization).await;
        reply.assert_blob(blob);
    }
}

/// Every name but `own` that could be tried for `image`'s manifest and blobs, by every
/// identity: none is answered with content.
async fn assert_isolated(mirror: &Mirror, image: &Image, own: &str) {
    let names = [
        format!("{LAN}/org/secret"),
        format!("{LAN}/org/public-app"),
        "library/alpine".to_owned(),
        "library/anything".to_owned(),
        "someuser/tool".to_owned(),
    ];
    let mut tried = 0;
    for name in names.iter().filter(|n| *n != own) {
        let mut paths = vec![format!("/v2/{name}/manifests/{}", image.manifest.digest)];
        paths.extend(image.blobs().map(|b| format!("/v2/{name}/blobs/{}", b.digest)));
        for path in &paths {
            for identity in identities() {
                let reply = get(mirror, path, identity.as_ref()).await;
                assert!(
                    [401, 403, 404].contains(&reply.status.as_u16()),
                    "{path} as {identity:?}: {reply:?}"
                );
                tried += 1;
            }
        }
    }
    assert!(tried >= 4 * 4 * 3, "the matrix was walked: {tried}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_is_served_only_through_the_repository_that_holds_it_online_restarted_and_offline() {
    let (site, mirror) = site().await;
    let alice = basic("alice", "wonderland");
    let secret = format!("{LAN}/org/secret");
    pull(&mirror, &secret, &site.secret, Some(&alice)).await;
    pull(&mirror, "library/alpine", &site.alpine, None).await;

    assert_isolated(&mirror, &site.secret, &secret).await;
    assert_isolated(&mirror, &site.alpine, "library/alpine").await;
    let mirror = mirror.restart().await;
    assert_isolated(&mirror, &site.secret, &secret).await;

    site.hub.stop().await;
    site.lan.stop().await;
    let mirror = mirror.restart_with(|config| config.offline = true).await;
    assert_isolated(&mirror, &site.secret, &secret).await;
    assert_isolated(&mirror, &site.alpine, "library/alpine").await;
    // What each repository holds, it still serves offline: its links outlived the restart.
    pull(&mirror, &secret, &site.secret, Some(&alice)).await;
    pull(&mirror, "library/alpine", &site.alpine, None).await;
}

/// A cached manifest that another repository's upstream confirms by digest vouches, through
/// that repository, for what it lists: its blobs are served there offline too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_confirmed_for_another_repository_links_its_blobs_there() {
    let (site, mirror) = site().await;
    let alpine = &site.alpine;
    let manifest = &alpine.manifest;
    site.hub
        .add_manifest("someuser/copy", "1", manifest.media_type, manifest.bytes.clone());
    for blob in alpine.blobs() {
        site.hub.add_blob("someuser/copy", blob.bytes.clone());
    }
    pull(&mirror, "library/alpine", alpine, None).await;
    get(
        &mirror,
        &format!("/v2/someuser/copy/manifests/{}", manifest.digest),
        None,
    )
    .await
    .assert_manifest(manifest);
    site.hub.stop().await;
    let mirror = mirror.restart_with(|config| config.offline = true).await;
    pull(&mirror, "someuser/copy", alpine, None).await;
}
