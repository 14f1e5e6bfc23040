//! Multipart uploads nobody will finish. An instance killed mid-upload leaves its parts in the
//! bucket: invisible (S3 shows an object only once its upload is completed) but taking space.
//! Any instance may abort them once they are old enough to be nobody's any more: a part's
//! signed URL lasts an hour, and the largest blob's upload takes far less than `ABANDONED`.
//!
//! rusty-s3 has no ListMultipartUploads, so its request is signed with `rusty_s3::signing` and
//! its XML answer read with instant-xml, as rusty-s3 reads the answers it knows.

use std::sync::Arc;
use std::time::Duration;

use instant_xml::FromXml;
use jiff::Timestamp;

use super::request::Payload;
use super::{answer_text, expect_ok, Bucket, Error, Key, LISTING_LIMIT, SIGNED_FOR};

/// Uploads begun longer ago than this are abandoned.
pub const ABANDONED: Duration = Duration::from_secs(24 * 3600);

/// How often a serving instance looks for abandoned uploads.
const SWEEP_EVERY: Duration = Duration::from_secs(6 * 3600);

/// A listing is a thousand uploads a page; this many pages bound one sweep.
const MAX_PAGES: usize = 100;

const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

#[derive(Debug, FromXml)]
#[xml(rename = "ListMultipartUploadsResult", ns(S3_NS))]
struct Listing {
    uploads: Vec<Upload>,
    #[xml(rename = "IsTruncated")]
    is_truncated: Option<bool>,
    #[xml(rename = "NextKeyMarker")]
    next_key_marker: Option<String>,
    #[xml(rename = "NextUploadIdMarker")]
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, FromXml)]
#[xml(rename = "Upload", ns(S3_NS))]
struct Upload {
    #[xml(rename = "Key")]
    key: String,
    #[xml(rename = "UploadId")]
    upload_id: String,
    #[xml(rename = "Initiated")]
    initiated: String,
}

impl Upload {
    /// Whether it began before `cutoff`; one whose start cannot be read is left alone.
    fn began_before(&self, cutoff: Timestamp) -> bool {
        self.initiated.parse::<Timestamp>().is_ok_and(|began| began < cutoff)
    }
}

/// Aborts abandoned uploads now and every `SWEEP_EVERY`, for as long as the bucket is used.
pub fn sweep(bucket: &Arc<Bucket>) {
    let bucket = Arc::downgrade(bucket);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(bucket) = bucket.upgrade() else { return };
            match bucket.abort_abandoned(ABANDONED).await {
                Ok(0) => {}
                Ok(aborted) => tracing::info!(aborted, "aborted uploads abandoned in the bucket"),
                Err(e) => tracing::warn!(error = %e, "cannot sweep abandoned uploads from the bucket"),
            }
        }
    });
}

impl Bucket {
    /// Aborts the multipart uploads of blobs begun more than `age` ago; how many it aborted.
    pub async fn abort_abandoned(&self, age: Duration) -> Result<usize, Error> {
        let age = jiff::SignedDuration::try_from(age).ok();
        let Some(cutoff) = age.and_then(|age| Timestamp::now().checked_sub(age).ok()) else {
            // Older than time can say: nothing began that long ago.
            return Ok(0);
        };
        let mut aborted = 0;
        let mut marker = None;
        for _ in 0..MAX_PAGES {
            let listing = self.list_uploads(marker.as_ref()).await?;
            for upload in listing.uploads.iter().filter(|u| u.began_before(cutoff)) {
                self.abort_upload(&Key::listed(upload.key.clone()), &upload.upload_id)
                    .await?;
                aborted += 1;
            }
            marker = match listing {
                Listing {
                    is_truncated: Some(true),
                    next_key_marker: Some(key),
                    next_upload_id_marker: Some(id),
                    ..
                } => Some((key, id)),
                _ => break,
            };
        }
        Ok(aborted)
    }

    /// One page of the uploads under `blobs/` in progress, from `marker` on.
    async fn list_uploads(&self, marker: Option<&(String, String)>) -> Result<Listing, Error> {
        let listing = Key::listed("?uploads".to_owned());
        let mut query = vec![("prefix", Key::BLOBS), ("uploads", "")];
        if let Some((key, id)) = marker {
            query.extend([("key-marker", key.as_str()), ("upload-id-marker", id.as_str())]);
        }
        // The signature wants the query sorted by name.
        query.sort_unstable();
        let sign = |endpoint: &rusty_s3::Bucket| {
            let url = rusty_s3::signing::sign(
                &Timestamp::now(),
                rusty_s3::Method::Get,
                endpoint.base_url().clone(),
                self.credentials.key(),
                self.credentials.secret(),
                self.credentials.token(),
                endpoint.region(),
                SIGNED_FOR.as_secs(),
                query.iter().copied(),
                std::iter::empty(),
            );
            (rusty_s3::Method::Get, url)
        };
        let response = self.signed(sign, &[], Payload::Empty).await?;
        expect_ok(&response, "GET", &listing)?;
        let text = answer_text(response.into_body(), "list uploads", &listing, LISTING_LIMIT).await?;
        instant_xml::from_str(&text).map_err(|e| Error::Answer {
            action: "list uploads",
            key: listing.to_string(),
            reason: e.to_string(),
        })
    }
}
