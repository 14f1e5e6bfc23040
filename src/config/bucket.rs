//! `--bucket`: an S3 bucket that several instances share as their store, so what one of them
//! fetched the others read instead of the upstream. The URL names the endpoint and the bucket
//! (`http://garage.lan:3900/regmirror`); the credentials come from a file, from systemd's
//! `$CREDENTIALS_DIRECTORY/bucket`, or from the usual `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`, never from the command line where `ps` would show them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use super::Error;

/// The region S3 signs requests for when none is given.
const DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, Clone)]
pub struct BucketConfig {
    /// The S3 endpoint, without the bucket.
    pub endpoint: Url,
    /// Other endpoints of the same bucket (other nodes of its cluster), in the order they are
    /// tried when the ones before cannot be reached.
    pub fallbacks: Vec<Url>,
    pub name: String,
    pub region: String,
    /// Address the bucket as `name.endpoint-host` instead of `endpoint/name`.
    pub virtual_host: bool,
    pub credentials: BucketCredentials,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The key id names the key; the secret stays out of logs and error messages.
impl fmt::Debug for BucketCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BucketCredentials({}, <secret>)", self.access_key_id)
    }
}

/// The bucket the options describe: none without `--bucket`, an error when the rest do not
/// fit it.
pub fn from_options(options: BucketOptions) -> Result<Option<BucketConfig>, Error> {
    let BucketOptions {
        url,
        fallbacks,
        region,
        virtual_host,
        credentials_file,
    } = options;
    let Some(url) = url else {
        return match !fallbacks.is_empty() || region.is_some() || virtual_host || credentials_file.is_some() {
            true => Err(bucket_error(
                "--bucket-fallback, --bucket-region, --bucket-virtual-host and --bucket-credentials go with --bucket",
            )),
            false => Ok(None),
        };
    };
    let (endpoint, name) = split(&url)?;
    Ok(Some(BucketConfig {
        endpoint,
        fallbacks: fallbacks.iter().map(endpoint_only).collect::<Result<_, _>>()?,
        name,
        region: region.unwrap_or_else(|| DEFAULT_REGION.to_owned()),
        virtual_host,
        credentials: credentials(credentials_file)?,
    }))
}

/// The bucket options as given, each layer (flags, environment, file) put together.
#[derive(Debug, Default)]
pub struct BucketOptions {
    pub url: Option<Url>,
    pub fallbacks: Vec<Url>,
    pub region: Option<String>,
    pub virtual_host: bool,
    pub credentials_file: Option<PathBuf>,
}

/// A fallback endpoint: the bucket's name comes from `--bucket`, so it has no path.
fn endpoint_only(url: &Url) -> Result<Url, Error> {
    match url.path() {
        "" | "/" => Ok(url.clone()),
        _ => Err(bucket_error(&format!(
            "--bucket-fallback {url} names a path; give the endpoint alone, e.g. http://garage2.lan:3900"
        ))),
    }
}

/// `http://host:port/name` into the endpoint and the bucket's name.
fn split(url: &Url) -> Result<(Url, String), Error> {
    let name = url.path().trim_matches('/');
    if name.is_empty() || name.contains('/') {
        return Err(bucket_error(&format!(
            "{url} must name the bucket as its one path segment, e.g. http://garage.lan:3900/regmirror"
        )));
    }
    let mut endpoint = url.clone();
    endpoint.set_path("/");
    Ok((endpoint, name.to_owned()))
}

fn credentials(file: Option<PathBuf>) -> Result<BucketCredentials, Error> {
    let systemd = std::env::var_os("CREDENTIALS_DIRECTORY").map(|dir| Path::new(&dir).join("bucket"));
    match file.or(systemd.filter(|path| path.is_file())) {
        Some(path) => read_credentials(&path),
        None => from_env().ok_or_else(|| {
            bucket_error(
                "--bucket needs credentials: --bucket-credentials FILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        }),
    }
}

fn from_env() -> Option<BucketCredentials> {
    let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    Some(BucketCredentials {
        access_key_id: var("AWS_ACCESS_KEY_ID")?,
        secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
    })
}

fn read_credentials(path: &Path) -> Result<BucketCredentials, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| {
        bucket_error(&format!(
            "{}: {} (expected access_key_id = \"…\" and secret_access_key = \"…\")",
            path.display(),
            e.message()
        ))
    })
}

fn bucket_error(reason: &str) -> Error {
    Error::Bucket(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_endpoint_and_bucket() {
        let url = Url::parse("http://[::1]:3900/regmirror/").expect("url");
        let (endpoint, name) = split(&url).expect("valid");
        assert_eq!((endpoint.as_str(), name.as_str()), ("http://[::1]:3900/", "regmirror"));
        for bad in ["http://[::1]:3900/", "http://[::1]:3900/a/b"] {
            let err = split(&Url::parse(bad).expect("url")).expect_err(bad);
            assert!(err.to_string().contains("one path segment"), "{err}");
        }
    }

    #[test]
    fn credentials_come_from_a_file_and_the_secret_stays_out_of_debug() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bucket.toml");
        std::fs::write(&path, "access_key_id = \"GK1\"\nsecret_access_key = \"s3cr3t\"\n").expect("write");
        let read = read_credentials(&path).expect("valid");
        assert_eq!(read.access_key_id, "GK1");
        assert!(!format!("{read:?}").contains("s3cr3t"));
        std::fs::write(&path, "key = \"GK1\"\n").expect("write");
        let err = read_credentials(&path).expect_err("unknown key");
        assert!(err.to_string().contains("expected access_key_id"), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }

    #[test]
    fn the_other_options_need_a_bucket() {
        let options = BucketOptions {
            region: Some("garage".into()),
            ..BucketOptions::default()
        };
        let err = from_options(options).expect_err("no bucket");
        assert!(err.to_string().contains("go with --bucket"), "{err}");
        let options = BucketOptions {
            fallbacks: vec![Url::parse("http://[::1]:3901").expect("url")],
            ..BucketOptions::default()
        };
        assert!(from_options(options).is_err(), "a fallback without --bucket");
        assert!(from_options(BucketOptions::default()).expect("none").is_none());
    }

    #[test]
    fn a_fallback_is_an_endpoint_alone() {
        let url = |s: &str| Url::parse(s).expect("url");
        assert_eq!(
            endpoint_only(&url("http://[::1]:3901")).expect("endpoint").as_str(),
            "http://[::1]:3901/"
        );
        let err = endpoint_only(&url("http://[::1]:3901/regmirror")).expect_err("a path");
        assert!(err.to_string().contains("the endpoint alone"), "{err}");
    }
}
