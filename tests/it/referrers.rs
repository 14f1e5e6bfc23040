//! The referrers API (OCI distribution spec 1.1) over hosted repositories: an artifact pushed
//! with a `subject` is answered with `OCI-Subject` and listed among the subject's referrers,
//! with its artifact type; `?artifactType=` filters; an unknown subject has none.

use serde_json::json;

use crate::support::content::{random_bytes, sha256, Image, Manifest};
use crate::support::push::{artifact, assert_manifest_created, hosted_mirror, push_blob, push_image, put_manifest};
use crate::support::{Format, Mirror, Reply, OCI_INDEX, OCI_MANIFEST};

const REPO: &str = "site.lan/gallery/ui";
const SIGNATURE: &str = "application/vnd.example.signature.v1+json";
const SBOM: &str = "application/spdx+json";

/// Pushes an artifact about `subject` and checks the reply names the subject.
async fn push_artifact(mirror: &Mirror, subject: &Manifest, artifact_type: &str, in_config: bool) -> Manifest {
    let (manifest, config, payload) = artifact(subject, artifact_type, in_config);
    push_blob(mirror, REPO, &config).await;
    push_blob(mirror, REPO, &payload).await;
    let reply = put_manifest(mirror, REPO, &manifest.digest, &manifest).await;
    assert_manifest_created(&reply, REPO, &manifest);
    assert_eq!(reply.header("oci-subject"), Some(subject.digest.as_str()), "{reply:?}");
    manifest
}

async fn referrers(mirror: &Mirror, subject: &str, query: &str) -> Reply {
    let reply = mirror.get(&format!("/v2/{REPO}/referrers/{subject}{query}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some(OCI_INDEX), "{reply:?}");
    let body = reply.json();
    assert_eq!(body["schemaVersion"], 2, "{reply:?}");
    assert_eq!(body["mediaType"], OCI_INDEX, "{reply:?}");
    reply
}

/// The descriptor the referrers API must give for `manifest`.
fn descriptor(manifest: &Manifest, artifact_type: &str) -> serde_json::Value {
    json!({
        "mediaType": OCI_MANIFEST,
        "size": manifest.bytes.len(),
        "digest": manifest.digest,
        "artifactType": artifact_type,
        "annotations": { "org.opencontainers.image.created": "2024-05-01T00:00:00Z" },
    })
}

/// The `manifests` of a referrers reply, sorted by digest, for comparing as a set.
fn listed(reply: &Reply) -> Vec<serde_json::Value> {
    let mut manifests = reply.json()["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("manifests is an array: {reply:?}"))
        .clone();
    manifests.sort_by_key(|m| m["digest"].as_str().unwrap_or_default().to_owned());
    manifests
}

fn sorted(mut descriptors: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    descriptors.sort_by_key(|m| m["digest"].as_str().unwrap_or_default().to_owned());
    descriptors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_with_a_subject_gets_oci_subject_and_is_listed_as_a_referrer() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    for blob in image.blobs() {
        push_blob(&mirror, REPO, blob).await;
    }
    let reply = put_manifest(&mirror, REPO, "v1", &image.manifest).await;
    assert_manifest_created(&reply, REPO, &image.manifest);
    assert_eq!(reply.header("oci-subject"), None, "no subject, no header: {reply:?}");
    let before = referrers(&mirror, &image.manifest.digest, "").await;
    assert_eq!(before.json()["manifests"], json!([]), "{before:?}");

    let signature = push_artifact(&mirror, &image.manifest, SIGNATURE, false).await;
    let reply = referrers(&mirror, &image.manifest.digest, "").await;
    assert_eq!(listed(&reply), [descriptor(&signature, SIGNATURE)], "{reply:?}");
    assert_eq!(reply.header("oci-filters-applied"), None, "{reply:?}");

    // The artifact itself pulls like any manifest, and the image is untouched.
    let path = format!("/v2/{REPO}/manifests/{}", signature.digest);
    mirror.get_manifest(&path).await.assert_manifest(&signature);
    let tagged = format!("/v2/{REPO}/manifests/v1");
    mirror.get_manifest(&tagged).await.assert_manifest(&image.manifest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_without_artifact_type_is_listed_with_its_config_media_type() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    push_image(&mirror, REPO, "v1", &image).await;

    let sbom = push_artifact(&mirror, &image.manifest, SBOM, true).await;
    let signature = push_artifact(&mirror, &image.manifest, SIGNATURE, false).await;
    let reply = referrers(&mirror, &image.manifest.digest, "").await;
    let expected = sorted(vec![descriptor(&sbom, SBOM), descriptor(&signature, SIGNATURE)]);
    assert_eq!(listed(&reply), expected, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_type_filters_the_referrers_and_says_so() {
    let (_hub, mirror) = hosted_mirror().await;
    let image = Image::build(Format::Oci, "amd64");
    push_image(&mirror, REPO, "v1", &image).await;
    let first = push_artifact(&mirror, &image.manifest, SIGNATURE, false).await;
    let second = push_artifact(&mirror, &image.manifest, SIGNATURE, false).await;
    let sbom = push_artifact(&mirror, &image.manifest, SBOM, false).await;

    let all = referrers(&mirror, &image.manifest.digest, "").await;
    assert_eq!(listed(&all).len(), 3, "{all:?}");
    assert_eq!(all.header("oci-filters-applied"), None, "{all:?}");

    let query = format!("?artifactType={}", SIGNATURE.replace('+', "%2B"));
    let signatures = referrers(&mirror, &image.manifest.digest, &query).await;
    let expected = sorted(vec![descriptor(&first, SIGNATURE), descriptor(&second, SIGNATURE)]);
    assert_eq!(listed(&signatures), expected, "{signatures:?}");
    assert_eq!(
        signatures.header("oci-filters-applied"),
        Some("artifactType"),
        "{signatures:?}"
    );

    let query = format!("?artifactType={}", SBOM.replace('+', "%2B"));
    let sboms = referrers(&mirror, &image.manifest.digest, &query).await;
    assert_eq!(listed(&sboms), [descriptor(&sbom, SBOM)], "{sboms:?}");
    assert_eq!(sboms.header("oci-filters-applied"), Some("artifactType"), "{sboms:?}");

    let none = referrers(&mirror, &image.manifest.digest, "?artifactType=application/x-none").await;
    assert_eq!(none.json()["manifests"], json!([]), "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_subject_has_an_empty_list_and_a_subject_need_not_exist() {
    let (_hub, mirror) = hosted_mirror().await;
    let unknown = sha256(&random_bytes(32));
    let reply = referrers(&mirror, &unknown, "").await;
    assert_eq!(reply.json()["manifests"], json!([]), "{reply:?}");

    // A signature may be pushed before the image it signs.
    let image = Image::build(Format::Oci, "amd64");
    let signature = push_artifact(&mirror, &image.manifest, SIGNATURE, false).await;
    let reply = referrers(&mirror, &image.manifest.digest, "").await;
    assert_eq!(listed(&reply), [descriptor(&signature, SIGNATURE)], "{reply:?}");
    let elsewhere = mirror
        .get(&format!("/v2/site.lan/gallery/api/referrers/{}", image.manifest.digest))
        .await;
    assert_eq!(elsewhere.status, 200, "{elsewhere:?}");
    assert_eq!(
        elsewhere.json()["manifests"],
        json!([]),
        "referrers are per repository: {elsewhere:?}"
    );
}
