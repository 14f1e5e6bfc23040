//! Multipart uploads an instance left unfinished (killed mid-upload) are aborted once they are
//! old enough to be nobody's: a fresh one is left alone, an old one goes with its parts, and
//! nothing outside the blobs is touched.

use std::time::Duration;

use regmirror::bucket::{Key, ABANDONED};
use regmirror::digest::Digest;
use rusty_s3::{Credentials, S3Action, UrlStyle};

use crate::support::client::send;
use crate::support::garage::Garage;

/// Begins a multipart upload of `key` and leaves it, as a killed instance would; its id.
async fn begin_upload(garage: &Garage, key: &str) -> String {
    let config = garage.config();
    let bucket =
        rusty_s3::Bucket::new(config.endpoint.clone(), UrlStyle::Path, config.name, config.region).expect("bucket");
    let credentials = Credentials::new(config.credentials.access_key_id, config.credentials.secret_access_key);
    let create = rusty_s3::actions::CreateMultipartUpload::new(&bucket, Some(&credentials), key);
    let reply = send(create.sign(Duration::from_secs(60)).as_str(), http::Method::POST, &[]).await;
    assert!(reply.status.is_success(), "{reply:?}");
    let text = String::from_utf8(reply.bytes().to_vec()).expect("UTF-8");
    let created = rusty_s3::actions::CreateMultipartUpload::parse_response(&text).expect("upload id");
    created.upload_id().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a garage binary in REGMIRROR_GARAGE; .ci/run runs it"]
async fn abandoned_uploads_are_aborted_once_they_are_old() {
    let garage = Garage::start();
    let bucket = garage.client();
    let blob = Key::blob(&Digest::sha256_of(b"never finished"));
    begin_upload(&garage, blob.as_str()).await;
    begin_upload(&garage, "elsewhere/not-a-blob").await;

    assert_eq!(
        bucket.abort_abandoned(ABANDONED).await.expect("sweep"),
        0,
        "a fresh upload stays"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        bucket.abort_abandoned(Duration::from_secs(1)).await.expect("sweep"),
        1,
        "the blob's upload, not the other"
    );
    assert_eq!(
        bucket.abort_abandoned(Duration::ZERO).await.expect("sweep"),
        0,
        "nothing is left"
    );
    assert_eq!(bucket.size(&blob).await.expect("HEAD"), None, "and no object appeared");
}
