//! Blob uploads into hosted repositories (OCI distribution spec 1.1): monolithic, in one POST,
//! in ranged chunks and streamed; the session's status, a chunk out of order, cancelling, and
//! a digest that does not match, after which nothing is served.

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::support::content::{random_bytes, sha256, Blob};
use crate::support::push::{
    assert_blob_created, hosted_mirror, location_path, patch_and_hang_up, range_end, send_body, send_streamed,
    with_query, Upload,
};
use crate::support::Mirror;

const REPO: &str = "site.lan/gallery/ui";

fn blob_path(digest: &str) -> String {
    format!("/v2/{REPO}/blobs/{digest}")
}

/// Asserts `blob` is served from REPO, by GET and by HEAD.
async fn assert_served(mirror: &Mirror, blob: &Blob) {
    mirror.get(&blob_path(&blob.digest)).await.assert_blob(blob);
    let head = mirror.head(&blob_path(&blob.digest)).await;
    assert_eq!(head.status, StatusCode::OK, "{head:?}");
    assert_eq!(
        head.header("docker-content-digest"),
        Some(blob.digest.as_str()),
        "{head:?}"
    );
    assert_eq!(
        head.header("content-length"),
        Some(blob.bytes.len().to_string().as_str()),
        "{head:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolithic_upload_post_then_put_with_digest_stores_the_blob() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(70 * 1024));
    assert_eq!(
        mirror.get(&blob_path(&blob.digest)).await.status,
        404,
        "not there before"
    );

    let upload = Upload::start(&mirror, REPO).await;
    let reply = upload.finish(&mirror, &blob.digest, blob.bytes.clone()).await;
    assert_blob_created(&reply, REPO, &blob.digest);
    assert_served(&mirror, &blob).await;
    let ranged = mirror
        .send(Method::GET, &blob_path(&blob.digest), &[("range", "bytes=10-19")])
        .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT, "{ranged:?}");
    assert_eq!(&ranged.bytes()[..], &blob.bytes[10..20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_post_with_digest_and_body_is_created_at_once() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(5000));
    let url = with_query(&format!("/v2/{REPO}/blobs/uploads/"), "digest", &blob.digest);
    let headers = [("content-type", "application/octet-stream")];

    let reply = send_body(&mirror, Method::POST, &url, &headers, blob.bytes.clone()).await;
    assert_blob_created(&reply, REPO, &blob.digest);
    assert_served(&mirror, &blob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_with_content_range_then_put_assemble_the_blob() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(300 * 1024));
    let (first, second) = (blob.bytes.slice(..100_000), blob.bytes.slice(100_000..));
    let mut upload = Upload::start(&mirror, REPO).await;

    let reply = upload.patch(&mirror, 0, &first).await;
    upload.follow(&reply, 100_000);
    let reply = upload.patch(&mirror, 100_000, &second).await;
    upload.follow(&reply, blob.bytes.len() as u64);
    let reply = upload.finish(&mirror, &blob.digest, Bytes::new()).await;
    assert_blob_created(&reply, REPO, &blob.digest);
    assert_served(&mirror, &blob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_patches_without_content_range_append_and_put_adds_the_last_chunk() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(200 * 1024));
    let mut upload = Upload::start(&mirror, REPO).await;

    let pieces = vec![blob.bytes.slice(..1000), blob.bytes.slice(1000..65_000)];
    let reply = send_streamed(&mirror, Method::PATCH, &upload.url, pieces).await;
    upload.follow(&reply, 65_000);
    let pieces = vec![blob.bytes.slice(65_000..100_000), blob.bytes.slice(100_000..150_000)];
    let reply = send_streamed(&mirror, Method::PATCH, &upload.url, pieces).await;
    upload.follow(&reply, 150_000);
    let reply = upload.finish(&mirror, &blob.digest, blob.bytes.slice(150_000..)).await;
    assert_blob_created(&reply, REPO, &blob.digest);
    assert_served(&mirror, &blob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_status_is_204_with_the_range_held() {
    let (_hub, mirror) = hosted_mirror().await;
    let mut upload = Upload::start(&mirror, REPO).await;

    let empty = upload.status(&mirror).await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT, "{empty:?}");
    assert_eq!(empty.header("range"), Some("0-0"), "{empty:?}");
    assert_eq!(
        empty.header("docker-upload-uuid"),
        Some(upload.uuid.as_str()),
        "{empty:?}"
    );
    assert!(location_path(&empty).contains(&upload.uuid), "{empty:?}");

    let reply = upload.patch(&mirror, 0, &random_bytes(1000)).await;
    upload.follow(&reply, 1000);
    let held = upload.status(&mirror).await;
    assert_eq!(held.status, StatusCode::NO_CONTENT, "{held:?}");
    assert_eq!(held.header("range"), Some("0-999"), "{held:?}");
    assert_eq!(
        held.header("docker-upload-uuid"),
        Some(upload.uuid.as_str()),
        "{held:?}"
    );
    assert!(location_path(&held).contains(&upload.uuid), "{held:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_does_not_start_at_the_size_held_is_416_and_the_session_survives() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(3000));
    let mut upload = Upload::start(&mirror, REPO).await;
    let reply = upload.patch(&mirror, 0, &blob.bytes.slice(..1000)).await;
    upload.follow(&reply, 1000);

    for start in [2000, 500, 0] {
        let chunk = blob.bytes.slice(start..start + 1000);
        let reply = upload.patch(&mirror, start as u64, &chunk).await;
        assert_eq!(
            reply.status,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "start {start}: {reply:?}"
        );
        assert_eq!(reply.header("range"), Some("0-999"), "start {start}: {reply:?}");
    }
    let status = upload.status(&mirror).await;
    assert_eq!(
        status.header("range"),
        Some("0-999"),
        "refused chunks add nothing: {status:?}"
    );

    let reply = upload.patch(&mirror, 1000, &blob.bytes.slice(1000..)).await;
    upload.follow(&reply, 3000);
    let reply = upload.finish(&mirror, &blob.digest, Bytes::new()).await;
    assert_blob_created(&reply, REPO, &blob.digest);
    assert_served(&mirror, &blob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_is_unknown_afterwards() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(2000));
    let mut upload = Upload::start(&mirror, REPO).await;
    let reply = upload.patch(&mirror, 0, &blob.bytes.slice(..1000)).await;
    upload.follow(&reply, 1000);

    let cancelled = mirror.send(Method::DELETE, &upload.url, &[]).await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT, "{cancelled:?}");
    upload.status(&mirror).await.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    upload
        .patch(&mirror, 1000, &blob.bytes.slice(1000..))
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    upload
        .finish(&mirror, &blob.digest, blob.bytes.slice(1000..))
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    let again = mirror.send(Method::DELETE, &upload.url, &[]).await;
    again.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(mirror.get(&blob_path(&blob.digest)).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_id_never_issued_is_blob_upload_unknown() {
    let (_hub, mirror) = hosted_mirror().await;
    let url = format!("/v2/{REPO}/blobs/uploads/0f8e7a6b-never-issued");
    mirror.get(&url).await.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    let chunk = random_bytes(10);
    let patch = send_body(&mirror, Method::PATCH, &url, &[], chunk.clone()).await;
    patch.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    let put = send_body(
        &mirror,
        Method::PUT,
        &with_query(&url, "digest", &sha256(&chunk)),
        &[],
        chunk,
    )
    .await;
    put.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    mirror
        .send(Method::DELETE, &url, &[])
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");

    // A session belongs to the repository it was opened in.
    let upload = Upload::start(&mirror, REPO).await;
    let elsewhere = upload.url.replace("/gallery/ui/", "/gallery/other/");
    mirror.get(&elsewhere).await.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_that_does_not_match_is_digest_invalid_and_nothing_is_served() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(4000));
    let claimed = sha256(b"some other bytes");
    let upload = Upload::start(&mirror, REPO).await;

    let reply = upload.finish(&mirror, &claimed, blob.bytes.clone()).await;
    reply.assert_error(400, "DIGEST_INVALID");
    upload.status(&mirror).await.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    for digest in [&claimed, &blob.digest] {
        let get = mirror.get(&blob_path(digest)).await;
        get.assert_error(404, "BLOB_UNKNOWN");
        assert_eq!(mirror.head(&blob_path(digest)).await.status, 404);
    }

    // The single-POST form checks the same way.
    let url = with_query(&format!("/v2/{REPO}/blobs/uploads/"), "digest", &claimed);
    let reply = send_body(&mirror, Method::POST, &url, &[], blob.bytes.clone()).await;
    reply.assert_error(400, "DIGEST_INVALID");
    for digest in [&claimed, &blob.digest] {
        mirror.get(&blob_path(digest)).await.assert_error(404, "BLOB_UNKNOWN");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_without_a_valid_digest_is_digest_invalid() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(100));
    for digest in [None, Some("sha256:zz"), Some("md5:0123"), Some("")] {
        let upload = Upload::start(&mirror, REPO).await;
        let url = match digest {
            Some(digest) => with_query(&upload.url, "digest", digest),
            None => upload.url.clone(),
        };
        let reply = send_body(&mirror, Method::PUT, &url, &[], blob.bytes.clone()).await;
        reply.assert_error(400, "DIGEST_INVALID");
    }
    mirror
        .get(&blob_path(&blob.digest))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_interrupted_mid_patch_resumes_from_the_size_the_status_reports() {
    let (_hub, mirror) = hosted_mirror().await;
    let blob = Blob::new(random_bytes(3 * 1024 * 1024));
    let mut upload = Upload::start(&mirror, REPO).await;
    let reply = upload.patch(&mirror, 0, &blob.bytes.slice(..10_000)).await;
    upload.follow(&reply, 10_000);

    let sent = 10_000 + 1024 * 1024;
    let declared = blob.bytes.len() as u64 - 10_000;
    patch_and_hang_up(&mirror, &upload.url, declared, &blob.bytes[10_000..sent]).await;

    // The server may still be settling the broken request: wait for a status, then for it to
    // hold still.
    let mut last = None;
    for _ in 0..50 {
        let status = upload.status(&mirror).await;
        if status.status == StatusCode::NO_CONTENT {
            let held = range_end(&status) + 1;
            if last == Some(held) {
                break;
            }
            last = Some(held);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let held = last.expect("the session survives a dropped connection, with a 204 status");
    assert!(
        (10_000..=sent as u64).contains(&held),
        "holds what it had and at most what was sent: {held}"
    );

    let reply = upload.patch(&mirror, held, &blob.bytes.slice(held as usize..)).await;
    upload.follow(&reply, blob.bytes.len() as u64);
    let reply = upload.finish(&mirror, &blob.digest, Bytes::new()).await;
    assert_blob_created(&reply, REPO, &blob.digest);
    assert_served(&mirror, &blob).await;
}
