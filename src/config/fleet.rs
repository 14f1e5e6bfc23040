//! `--fleet`: the instances that share the work of one site, so that each blob is fetched from
//! the upstream once for all of them. Every instance is given the same list, names itself in
//! it, and proves it is a member with a key they all hold.

use std::path::{Path, PathBuf};

use http::Uri;

use super::Error;

/// The shortest member key taken: a guessable one would let any client skip access control.
const MIN_KEY_LEN: usize = 16;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Every member, this instance included, as the others reach it.
    pub members: Vec<Uri>,
    /// This instance's place in `members`.
    pub me: usize,
    /// The secret each member sends the others with every request.
    pub key: String,
    /// PEM CA certificates the members' TLS certificates are checked against; `None`: the
    /// public web roots.
    pub ca: Option<PathBuf>,
}

/// The fleet the four options describe: none when `--fleet` is not given, and an error when
/// the others are missing or do not fit it.
pub fn from_options(
    members: Option<Vec<Uri>>,
    me: Option<Uri>,
    key_file: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<FleetConfig>, Error> {
    let Some(members) = members else {
        return match me.is_some() || key_file.is_some() {
            true => Err(fleet_error("--fleet-self and --fleet-key-file go with --fleet")),
            false => Ok(None),
        };
    };
    let me = me.ok_or_else(|| fleet_error("--fleet needs --fleet-self, this instance's URL in the list"))?;
    let me = (members.iter())
        .position(|member| same(member, &me))
        .ok_or_else(|| fleet_error(&format!("--fleet-self {me} is not in --fleet")))?;
    let key_file = key_file.ok_or_else(|| fleet_error("--fleet needs --fleet-key-file, the members' shared key"))?;
    Ok(Some(FleetConfig {
        members,
        me,
        key: read_key(&key_file)?,
        ca,
    }))
}

fn same(a: &Uri, b: &Uri) -> bool {
    a.scheme() == b.scheme() && a.authority() == b.authority()
}

fn read_key(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let key = text.trim();
    if key.len() < MIN_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(fleet_error(&format!(
            "the key in {} must be at least {MIN_KEY_LEN} printable characters (e.g. openssl rand -hex 32)",
            path.display()
        )));
    }
    Ok(key.to_owned())
}

fn fleet_error(reason: &str) -> Error {
    Error::Fleet(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uris(list: &[&str]) -> Vec<Uri> {
        list.iter().map(|s| s.parse().expect("uri")).collect()
    }

    #[test]
    fn a_fleet_names_itself_and_holds_a_key() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("key");
        std::fs::write(&key, "0123456789abcdef0123\n").expect("key");
        let members = uris(&["https://a.lan:5000", "https://b.lan:5000"]);
        let me = "https://b.lan:5000".parse().ok();
        let fleet = from_options(Some(members.clone()), me, Some(key.clone()), None).expect("valid");
        let fleet = fleet.expect("a fleet");
        assert_eq!((fleet.me, fleet.key.as_str()), (1, "0123456789abcdef0123"));

        let stranger = "https://c.lan:5000".parse().ok();
        let err = from_options(Some(members.clone()), stranger, Some(key.clone()), None).expect_err("not listed");
        assert!(err.to_string().contains("is not in --fleet"), "{err}");
        let err = from_options(Some(members.clone()), None, Some(key.clone()), None).expect_err("no self");
        assert!(err.to_string().contains("--fleet-self"), "{err}");

        std::fs::write(&key, "short").expect("key");
        let me = "https://a.lan:5000".parse().ok();
        let err = from_options(Some(members), me, Some(key.clone()), None).expect_err("weak key");
        assert!(err.to_string().contains("at least 16"), "{err}");
        assert!(from_options(None, None, Some(key), None).is_err());
        assert!(matches!(from_options(None, None, None, None), Ok(None)));
    }
}
