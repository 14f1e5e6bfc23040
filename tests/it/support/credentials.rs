//! Client credentials for a mirror with access control: `Authorization: Basic` values and
//! bcrypt htpasswd files like `htpasswd -B` writes.

use std::path::{Path, PathBuf};

use base64::Engine as _;

pub fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Writes `dir/htpasswd` with these users, bcrypt at its lowest cost to keep tests quick.
pub fn htpasswd(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("htpasswd");
    let lines: String = users
        .iter()
        .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).expect("bcrypt")))
        .collect();
    std::fs::write(&path, lines).expect("write htpasswd");
    path
}
