//! Uploading a verified local file: one PutObject up to `PART_SIZE`, a multipart upload past
//! it. Each request's body streams from the file (`body::file`), so memory stays at a few
//! read chunks whatever the size. The multipart upload is completed only when every part is
//! in, and aborted on any failure: S3 shows an object only once it is completed, so readers
//! never see part of one. An instance that dies mid-upload leaves parts no reader can see;
//! `leftovers` aborts them once they are a day old.

use http::{header, Response, StatusCode};
use hyper::body::Incoming;
use rusty_s3::actions::{AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, PutObject, UploadPart};
use rusty_s3::{Credentials, S3Action};

use super::request::{action_method, Payload};
use super::{expect_ok, status_error, Bucket, Error, Key, SIGNED_FOR};

/// Part size: S3 wants at least 5 MiB per part but the last; 16 MiB keeps a 1 GiB blob at 64
/// requests.
pub const PART_SIZE: u64 = 16 << 20;
/// S3 takes at most this many parts; bigger files get bigger parts.
const MAX_PARTS: u64 = 10_000;
/// Answers to multipart requests are a few hundred bytes of XML.
const ANSWER_LIMIT: usize = 64 << 10;

impl Bucket {
    /// Uploads the `size` bytes of `file` under `key`, visible only once all of them are in.
    pub async fn upload(&self, key: &Key, file: &std::fs::File, size: u64) -> Result<(), Error> {
        if size <= PART_SIZE {
            return self.put_file(file, size, key).await;
        }
        let create = |b, c| CreateMultipartUpload::new(b, Some(c), key.as_str());
        let response = self.act(create, &[], Payload::Empty).await?;
        expect_ok(&response, "POST ?uploads", key)?;
        let text = answer_text(response.into_body(), key).await?;
        let created = CreateMultipartUpload::parse_response(&text).map_err(|e| bad_answer(key, e))?;
        let upload_id = created.upload_id();
        match self.upload_parts(key, upload_id, file, size).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The upload failed already; an abort that fails too leaves parts for the sweep
                // of abandoned uploads.
                let _ = self.abort_upload(key, upload_id).await;
                Err(e)
            }
        }
    }

    /// Drops an unfinished multipart upload and its parts.
    pub(super) async fn abort_upload(&self, key: &Key, upload_id: &str) -> Result<(), Error> {
        let abort = |b, c| AbortMultipartUpload::new(b, Some(c), key.as_str(), upload_id);
        let response = self.act(abort, &[], Payload::Empty).await?;
        match response.status() {
            // Completed or aborted meanwhile by another instance.
            http::StatusCode::NOT_FOUND => Ok(()),
            _ => expect_ok(&response, "DELETE ?uploadId", key),
        }
    }

    async fn upload_parts(&self, key: &Key, upload_id: &str, file: &std::fs::File, size: u64) -> Result<(), Error> {
        let part_size = PART_SIZE.max(size.div_ceil(MAX_PARTS));
        let mut etags = Vec::new();
        for (index, start) in (0..size).step_by(part_size as usize).enumerate() {
            let number =
                u16::try_from(index + 1).map_err(|_| Error::File(format!("{size} bytes need too many parts")))?;
            let len = part_size.min(size - start);
            let etag = self.put_part(file, start, len, key, (number, upload_id)).await?;
            etags.push(etag);
        }
        let complete = |b| {
            let etags = etags.iter().map(String::as_str);
            CompleteMultipartUpload::new(b, Some(&self.credentials), key.as_str(), upload_id, etags)
        };
        // Its body names the parts, the same for every endpoint.
        let parts = complete(self.endpoints.first()).body();
        let sign = |b| {
            let action = complete(b);
            (action_method(&action), action.sign(SIGNED_FOR))
        };
        let response = self.signed(sign, &[], Payload::Bytes(parts.into())).await?;
        expect_ok(&response, "POST ?uploadId", key)?;
        // S3 may answer 200 and still fail the completion, with an error in the body.
        let text = answer_text(response.into_body(), key).await?;
        rusty_s3::actions::CompleteMultipartUploadResponse::parse(&text).map_err(|e| bad_answer(key, e))?;
        Ok(())
    }

    /// PUTs `len` bytes of `file` from `start` as part `number` of upload `id`; its ETag.
    async fn put_part(
        &self,
        file: &std::fs::File,
        start: u64,
        len: u64,
        key: &Key,
        (number, id): (u16, &str),
    ) -> Result<String, Error> {
        let part = |b, c| UploadPart::new(b, Some(c), key.as_str(), number, id);
        let response = self.put_range(part, file, start, len).await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(response.status(), "PUT part", key));
        }
        let etag = response.headers().get(header::ETAG).and_then(|v| v.to_str().ok());
        etag.map(str::to_owned)
            .ok_or_else(|| bad_answer(key, "a part with no ETag"))
    }

    async fn put_file(&self, file: &std::fs::File, len: u64, key: &Key) -> Result<(), Error> {
        let put = |b, c| PutObject::new(b, Some(c), key.as_str());
        let response = self.put_range(put, file, 0, len).await?;
        expect_ok(&response, "PUT", key)
    }

    /// A PUT (of an object or a part) whose body streams `len` bytes of `file` from `start`.
    async fn put_range<'a, A: S3Action<'a>>(
        &'a self,
        make: impl Fn(&'a rusty_s3::Bucket, &'a Credentials) -> A,
        file: &std::fs::File,
        start: u64,
        len: u64,
    ) -> Result<Response<Incoming>, Error> {
        let length = len.to_string();
        let headers = [(header::CONTENT_LENGTH, length.as_str())];
        self.act(make, &headers, Payload::File { file, start, len }).await
    }
}

async fn answer_text(body: Incoming, key: &Key) -> Result<String, Error> {
    super::answer_text(body, "multipart upload", key, ANSWER_LIMIT).await
}

fn bad_answer(key: &Key, reason: impl std::fmt::Display) -> Error {
    Error::Answer {
        action: "multipart upload",
        key: key.to_string(),
        reason: reason.to_string(),
    }
}
