//! The registries mirrored and the logins used towards them: the config file's
//! `[[registries]]` and `[upstream_credentials]` tables and the environment's credentials.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use super::{parse, Error};
use crate::reference::{self, Registry};

/// Upstream login. `Debug` is written by hand so the password never reaches a log.
#[derive(Clone, Deserialize)]
#[serde(try_from = "FileCredentials")]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// `[upstream_credentials]` as written: the password itself, or `password_file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredentials {
    username: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

impl TryFrom<FileCredentials> for Credentials {
    type Error = String;

    fn try_from(file: FileCredentials) -> Result<Credentials, String> {
        let password = match (file.password, file.password_file) {
            (Some(password), None) => password,
            (None, Some(path)) => read_password_file(&path)?,
            _ => return Err("give exactly one of password and password_file".to_owned()),
        };
        Ok(Credentials {
            username: file.username,
            password,
        })
    }
}

/// A password kept in a file of its own, so the config file can be readable: a relative path
/// is looked up in systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`) when there is one.
/// One trailing newline, as editors and `echo` leave, is not part of the password.
fn read_password_file(path: &Path) -> Result<String, String> {
    let path = match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if path.is_relative() => Path::new(&dir).join(path),
        _ => path.to_owned(),
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
    let password = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if password.is_empty() {
        return Err(format!("password_file {} is empty", path.display()));
    }
    Ok(password.to_owned())
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials from `REGMIRROR_UPSTREAM_USERNAME` / `REGMIRROR_UPSTREAM_PASSWORD`; one
/// without the other is a mistake worth stopping for.
pub fn env_credentials(username: Option<String>, password: Option<String>) -> Result<Option<Credentials>, Error> {
    match (username, password) {
        (Some(username), Some(password)) => Ok(Some(Credentials { username, password })),
        (None, None) => Ok(None),
        _ => Err(Error::CredentialsIncomplete),
    }
}

/// One more registry to mirror: clients name it `registry` (with containerd's `ns=` or as a
/// path prefix), the mirror fetches from `url`.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub registry: Registry,
    pub url: Uri,
    pub credentials: Option<Credentials>,
    /// PEM CA certificates to trust for this upstream instead of the public roots.
    pub ca: Option<PathBuf>,
    pub tag_ttl: Option<Duration>,
    /// Hosts other than the upstream's own whose token realms may get its credentials.
    pub realm_hosts: Vec<String>,
}

/// A `[[registries]]` table. `Debug` is written by hand so the password never reaches a log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRegistry {
    name: String,
    #[serde(deserialize_with = "parse::de::required_upstream")]
    url: Uri,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    #[serde(default, deserialize_with = "parse::de::duration")]
    tag_ttl: Option<Duration>,
    #[serde(default)]
    realm_hosts: Vec<String>,
}

impl fmt::Debug for FileRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRegistry")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("ca", &self.ca)
            .field("tag_ttl", &self.tag_ttl)
            .field("realm_hosts", &self.realm_hosts)
            .finish()
    }
}

impl FileRegistry {
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    pub fn validate(self) -> Result<RegistryConfig, Error> {
        let registry = self.name.parse().map_err(|e: reference::Error| Error::Value {
            field: "registries.name",
            value: self.name.clone(),
            reason: e.to_string(),
        })?;
        let password = match (self.password, self.password_file) {
            (password, None) => password,
            (None, Some(path)) => Some(read_password_file(&path).map_err(|reason| Error::Value {
                field: "registries.password_file",
                value: self.name.clone(),
                reason,
            })?),
            (Some(_), Some(_)) => return Err(Error::RegistryCredentials(self.name)),
        };
        let credentials = match (self.username, password) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            (None, None) => None,
            _ => return Err(Error::RegistryCredentials(self.name)),
        };
        Ok(RegistryConfig {
            registry,
            url: self.url,
            credentials,
            ca: self.ca,
            tag_ttl: self.tag_ttl,
            realm_hosts: self.realm_hosts,
        })
    }
}
