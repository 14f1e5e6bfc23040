//! A fleet of mirrors on one site (`--fleet`): each blob comes from the upstream once for all
//! of them, however many members are asked for it at once; a member that is down hands its
//! blobs to the next in each blob's order, also when it dies halfway through one; each tag is
//! checked with the upstream by one member for all, or the next when that one is gone; and the
//! fleet's key lets a member pull past access control, and nothing else.

use std::time::Duration;

use futures_util::future::join_all;
use http::{Method, StatusCode};

use crate::support::content::{random_bytes, Blob, MIB};
use crate::support::credentials::htpasswd;
use crate::support::fleet::{Fleet, KEY};
use crate::support::{poll_until, FakeRegistry, Fault, Format, Gate, Mirror, Target};

const REPO: &str = "library/postgres";
const WAIT: Duration = Duration::from_secs(20);

async fn upstream_with(blobs: usize, size: usize) -> (FakeRegistry, Vec<Blob>) {
    let upstream = FakeRegistry::builder().build().await;
    let blobs: Vec<Blob> = (0..blobs).map(|_| Blob::new(random_bytes(size))).collect();
    for blob in &blobs {
        upstream.add_blob(REPO, blob.bytes.clone());
    }
    (upstream, blobs)
}

fn path(blob: &Blob) -> String {
    format!("/v2/{REPO}/blobs/{}", blob.digest)
}

/// Every blob asked of every member at once, three clients per member.
async fn pull_everywhere(members: &[&Mirror], blobs: &[Blob]) {
    let requests = blobs.iter().flat_map(|blob| {
        members
            .iter()
            .flat_map(move |member| (0..3).map(move |_| async move { (blob, member.get(&path(blob)).await) }))
    });
    for (blob, reply) in join_all(requests).await {
        assert_eq!(reply.status, StatusCode::OK, "{}", blob.digest);
        assert_eq!(reply.bytes(), &blob.bytes, "{}", blob.digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_blob_comes_from_the_upstream_once_for_the_whole_fleet() {
    let (upstream, blobs) = upstream_with(12, 256 * 1024).await;
    let fleet = Fleet::start(&upstream, 3, |b| b).await;
    let members: Vec<&Mirror> = (0..3).map(|i| fleet.member(i)).collect();

    pull_everywhere(&members, &blobs).await;

    for blob in &blobs {
        assert_eq!(upstream.blob_gets(&blob.digest), 1, "{} fetched once", blob.digest);
    }
    // Each member keeps a copy: warm pulls from any of them cost the upstream nothing.
    pull_everywhere(&members, &blobs).await;
    let fetched: usize = blobs.iter().map(|b| upstream.blob_gets(&b.digest)).sum();
    assert_eq!(fetched, blobs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_hands_its_blobs_to_the_next_in_order() {
    let (upstream, blobs) = upstream_with(12, 64 * 1024).await;
    let mut fleet = Fleet::start(&upstream, 3, |b| b).await;
    fleet.stop(0).await;
    let members = [fleet.member(1), fleet.member(2)];

    pull_everywhere(&members, &blobs).await;

    for blob in &blobs {
        assert_eq!(upstream.blob_gets(&blob.digest), 1, "{} fetched once", blob.digest);
    }
}

/// The member that owns `key` (a digest, or `registry/repo:tag`), as every member computes it.
fn owner_of(fleet: &Fleet, key: &str) -> usize {
    let config = regmirror::config::FleetConfig {
        members: fleet.urls.iter().map(|u| u.parse().expect("member URL")).collect(),
        me: 0,
        key: KEY.to_owned(),
        ca: None,
    };
    regmirror::fleet::Fleet::new(&config).order(key)[0]
}

/// The owner dies with the blob half sent: the member filling from it resumes from the next
/// in order (here, itself), and its client gets the exact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_dying_mid_blob_costs_no_client_its_pull() {
    let (upstream, blobs) = upstream_with(1, 4 * MIB).await;
    let blob = &blobs[0];
    let gate = Gate::new();
    upstream.fail_next(Target::reference(&blob.digest), 1, Fault::HoldMidBody(gate.clone()));
    let mut fleet = Fleet::start(&upstream, 2, |b| b.configure(|c| c.shutdown_grace = Duration::ZERO)).await;
    let owner = owner_of(&fleet, &blob.digest);
    let doomed = fleet.members[owner].take().expect("owner running");

    let blob_path = path(blob);
    let pull = fleet.member(1 - owner).get(&blob_path);
    let kill = async {
        let fetching = poll_until(WAIT, || upstream.blob_gets(&blob.digest) == 1).await;
        assert!(fetching, "the owner fetches the blob");
        doomed.stop().await;
        gate.open();
    };
    let (reply, ()) = tokio::join!(pull, kill);

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.bytes(), &blob.bytes, "the exact bytes, after the owner died");
    // The owner's fetch, cut off, and the survivor's own, which took over.
    assert_eq!(upstream.blob_gets(&blob.digest), 2);
}

/// A tag is checked with the upstream by one member for the whole fleet, and its manifest
/// fetched by one: the others ask them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tag_is_checked_with_the_upstream_once_for_the_whole_fleet() {
    let upstream = FakeRegistry::builder().build().await;
    let image = upstream.push_image(REPO, "16", Format::Oci);
    let fleet = Fleet::start(&upstream, 3, |b| b.tag_ttl(Duration::from_secs(60))).await;

    for member in 0..3 {
        let reply = fleet
            .member(member)
            .get_manifest(&format!("/v2/{REPO}/manifests/16"))
            .await;
        reply.assert_manifest(&image.manifest);
    }
    assert_eq!(upstream.manifest_heads(REPO), 1, "one HEAD by tag for three members");
    let digest = &image.manifest.digest;
    assert_eq!(
        upstream.manifest_gets_of(digest),
        1,
        "one GET of the manifest for three members"
    );
}

/// The member that checks a tag is gone: the next in the tag's order checks it for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_members_tags_are_checked_by_the_next_in_order() {
    let upstream = FakeRegistry::builder().build().await;
    let image = upstream.push_image(REPO, "16", Format::Oci);
    let mut fleet = Fleet::start(&upstream, 3, |b| b.tag_ttl(Duration::from_secs(60))).await;
    let owner = owner_of(&fleet, &format!("docker.io/{REPO}:16"));
    fleet.stop(owner).await;

    for member in (0..3).filter(|&m| m != owner) {
        let reply = fleet
            .member(member)
            .get_manifest(&format!("/v2/{REPO}/manifests/16"))
            .await;
        reply.assert_manifest(&image.manifest);
    }
    assert_eq!(upstream.manifest_heads(REPO), 1, "one HEAD by tag for the two left");
}

/// The member that checks a tag answers from its cache while the upstream fails: the others
/// do not take that for a check, and say the tag is stale too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_a_member_serves_stale_is_stale_for_the_fleet() {
    let upstream = FakeRegistry::builder().build().await;
    let image = upstream.push_image(REPO, "16", Format::Oci);
    let fleet = Fleet::start(&upstream, 2, |b| b.tag_ttl(Duration::ZERO)).await;
    let owner = owner_of(&fleet, &format!("docker.io/{REPO}:16"));
    let tag = format!("/v2/{REPO}/manifests/16");
    for member in 0..2 {
        fleet
            .member(member)
            .get_manifest(&tag)
            .await
            .assert_manifest(&image.manifest);
    }

    upstream.fail_always(Target::name(REPO), Fault::status(503));
    for member in [owner, 1 - owner] {
        let reply = fleet.member(member).get_manifest(&tag).await;
        reply.assert_manifest(&image.manifest);
        let warning = reply.header("warning").unwrap_or_default();
        assert!(
            warning.starts_with("299"),
            "member {member} (owner {owner}) says it is stale: {warning:?}"
        );
    }
}

/// With access control on, only the fleet's key lets a request past it, and only for pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_fleets_key_passes_access_control_and_only_to_pull() {
    let (upstream, blobs) = upstream_with(1, 1024).await;
    let blob = &blobs[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let file = htpasswd(dir.path(), &[("alice", "wonderland")]);
    let fleet = Fleet::start(&upstream, 2, |b| b.access(&format!("htpasswd = {file:?}"))).await;
    let member = fleet.member(0);

    for key in [None, Some("fleet-key-0123456789abcdeX"), Some("")] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("regmirror-fleet-key", k)).into_iter().collect();
        let reply = member.send(Method::GET, &path(blob), &headers).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "key {key:?}");
    }
    let with_key = [("regmirror-fleet-key", KEY)];
    let reply = member.send(Method::GET, &path(blob), &with_key).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.bytes(), &blob.bytes);
    let start_upload = "/v2/library/postgres/blobs/uploads/";
    let reply = member.send(Method::POST, start_upload, &with_key).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "a push is no member's to make");
    // Anonymous clients of either member are still challenged, the blob cached or not.
    assert_eq!(fleet.member(1).get(&path(blob)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(member.get(&path(blob)).await.status, StatusCode::UNAUTHORIZED);
}
