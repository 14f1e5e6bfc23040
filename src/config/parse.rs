//! Value parsers shared by the flags (clap `value_parser`), the environment and the config file
//! (serde `deserialize_with`), so a value means the same wherever it is given.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{Authority, Uri};
use serde::{Deserialize, Deserializer};

use crate::reference::Registry;

/// `30s`, `5m`, `2h`, `30d`, `250ms`, `1h 30m` (humantime's units); a bare number is seconds,
/// as it always was here.
pub fn duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().map(Duration::from_secs).map_err(|e| format!("{e}"));
    }
    humantime::parse_duration(value).map_err(|e| e.to_string())
}

/// `1024`, `512MiB`, `50GiB`, `10GB`, `1T`. `Ki`, `Mi`, `Gi`, `Ti` are binary; an SI prefix is
/// decimal with a `B` (`GB` = 10^9) and binary without one (`G` = `GiB`), as it always was here.
pub fn size(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let units = if value.ends_with(['b', 'B']) {
        parse_size::Config::new().with_decimal()
    } else {
        parse_size::Config::new().with_binary()
    };
    units
        .parse_size(value)
        .map_err(|e| format!("{e} (expected a number with an optional unit: B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"))
}

/// An S3 bucket's URL: http(s), a host, and the bucket's name as the path (checked when the
/// options are put together).
pub fn bucket(value: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(value).map_err(|e| e.to_string())?;
    match (url.scheme(), url.host(), url.query()) {
        ("http" | "https", Some(_), None) if url.username().is_empty() && url.password().is_none() => Ok(url),
        ("http" | "https", Some(_), _) => Err("credentials and queries do not belong in the bucket URL".to_owned()),
        _ => Err("expected an http:// or https:// URL".to_owned()),
    }
}

/// A whole number from 1 up: how many of something may run at a time.
pub fn count(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e} (expected a whole number from 1 up)")),
    }
}

pub fn addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| "expected HOST:PORT, e.g. [::]:5000 or 0.0.0.0:5000".to_owned())
}

/// A registry's base URL: http or https, a host, no path prefix (a trailing `/` is dropped).
pub fn upstream(value: &str) -> Result<Uri, String> {
    if userinfo(value).is_some() {
        return Err(
            "credentials do not belong in the URL, where logs and the status page would show \
                    them: set the registry's `username` and `password` (or `password_file`) instead"
                .to_owned(),
        );
    }
    let uri: Uri = value.trim_end_matches('/').parse().map_err(|e| format!("{e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) if uri.path() == "/" || uri.path().is_empty() => Ok(uri),
        (Some("http" | "https"), Some(_)) => Err("a path prefix is not supported".to_owned()),
        _ => Err("expected an http:// or https:// URL".to_owned()),
    }
}

/// The `user:password@` of a URL's authority, if it has one.
fn userinfo(value: &str) -> Option<&str> {
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').map(|(userinfo, _)| userinfo)
}

/// `value` as an error may show it: a URL's `user:password@` replaced by `…@`.
pub fn shown(value: &str) -> String {
    match userinfo(value) {
        Some(userinfo) => value.replacen(&format!("{userinfo}@"), "…@", 1),
        None => value.to_owned(),
    }
}

/// `HOST[:PORT]` as clients reach the mirror: a name, unlike `addr`.
pub fn authority(value: &str) -> Result<Authority, String> {
    value
        .parse()
        .map_err(|e| format!("{e} (expected HOST:PORT, e.g. mirror.lan:5000)"))
}

/// The namespace hosted repositories live under: a name that reads as a registry host
/// (`site.lan`, `hosted.local`), so that no Docker Hub repository shares the path.
pub fn namespace(value: &str) -> Result<Registry, String> {
    let value = value.trim();
    if !Registry::looks_like_host(value) {
        return Err("expected a host-like name (with a '.' or ':'), e.g. site.lan".to_owned());
    }
    let registry: Registry = value.parse().map_err(|e| format!("{e}"))?;
    if registry.is_docker_hub() {
        return Err("Docker Hub's names are mirrored, not hosted".to_owned());
    }
    Ok(registry)
}

/// The config file's side of each parser: `#[serde(deserialize_with = "parse::de::duration")]`.
/// The error carries the value; the file reader adds the key it was found under.
pub mod de {
    use super::*;

    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        optional(d, super::duration)
    }

    pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        optional(d, super::size)
    }

    /// A TOML integer, or a string as the flag would take it.
    pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let text = match Option::<Raw>::deserialize(d)? {
            None => return Ok(None),
            Some(Raw::Number(n)) => n.to_string(),
            Some(Raw::Text(text)) => text,
        };
        super::count(&text)
            .map(Some)
            .map_err(|reason| invalid::<D>(&text, reason))
    }

    pub fn namespace<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Registry>, D::Error> {
        optional(d, super::namespace)
    }

    pub fn addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        optional(d, super::addr)
    }

    pub fn upstream<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uri>, D::Error> {
        optional(d, super::upstream)
    }

    pub fn bucket<'de, D: Deserializer<'de>>(d: D) -> Result<Option<url::Url>, D::Error> {
        optional(d, super::bucket)
    }

    /// A TOML array of bucket URLs.
    pub fn buckets<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<url::Url>>, D::Error> {
        array(d, super::bucket)
    }

    /// A TOML array of URLs.
    pub fn upstreams<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Uri>>, D::Error> {
        array(d, super::upstream)
    }

    pub fn required_upstream<'de, D: Deserializer<'de>>(d: D) -> Result<Uri, D::Error> {
        let value = String::deserialize(d)?;
        super::upstream(&value).map_err(|reason| invalid::<D>(&value, reason))
    }

    fn optional<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
    {
        let Some(value) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        parse(&value).map(Some).map_err(|reason| invalid::<D>(&value, reason))
    }

    /// An optional array of strings, each parsed by `parse`.
    fn array<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<Option<Vec<T>>, D::Error>
    where
        D: Deserializer<'de>,
    {
        let Some(values) = Option::<Vec<String>>::deserialize(d)? else {
            return Ok(None);
        };
        let parsed = values
            .iter()
            .map(|v| parse(v).map_err(|reason| invalid::<D>(v, reason)));
        parsed.collect::<Result<_, _>>().map(Some)
    }

    fn invalid<'de, D: Deserializer<'de>>(value: &str, reason: impl Display) -> D::Error {
        serde::de::Error::custom(format!("invalid value '{}': {reason}", super::shown(value)))
    }
}
