//! Pins: `pins/<alg>/<hex>` marks content a hosted repository holds. A pushed image is the
//! only copy there is, so eviction for `--max-cache-size` and `cache prune` leave pinned
//! content alone; `gc` pins what hosted repositories reach and unpins the rest.

use std::io;
use std::path::PathBuf;

use super::Store;
use crate::digest::{Algorithm, Digest};

/// The file naming the hosted namespaces, one a line.
const HOSTED: &str = "hosted-namespaces";

impl Store {
    fn pin_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("pins")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub fn pin(&self, digest: &Digest) -> io::Result<()> {
        std::fs::write(self.pin_path(digest), b"")
    }

    pub fn unpin(&self, digest: &Digest) -> io::Result<()> {
        match std::fs::remove_file(self.pin_path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether content is pinned; a pin that cannot be read counts, so nothing pushed is
    /// lost to a transient error.
    pub fn pinned(&self, digest: &Digest) -> bool {
        !matches!(std::fs::metadata(self.pin_path(digest)), Err(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// When content was last pinned (pushed, mounted or marked by `gc`).
    pub fn pinned_at(&self, digest: &Digest) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.pin_path(digest)).and_then(|m| m.modified()).ok()
    }

    /// The hosted namespaces this data directory has served, so `gc` knows whose tags are
    /// roots without being told.
    pub fn record_hosted(&self, namespace: &crate::reference::Registry) -> io::Result<()> {
        let mut known = self.hosted_namespaces()?;
        if known.contains(namespace) {
            return Ok(());
        }
        known.push(namespace.clone());
        let text: String = known.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(self.root.join(HOSTED), text)
    }

    pub fn hosted_namespaces(&self) -> io::Result<Vec<crate::reference::Registry>> {
        let text = super::optional(std::fs::read_to_string(self.root.join(HOSTED)))?.unwrap_or_default();
        Ok(text.lines().filter_map(|line| line.trim().parse().ok()).collect())
    }

    /// Every pinned digest.
    pub fn pins(&self) -> io::Result<Vec<Digest>> {
        let mut found = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("pins").join(alg.name());
            let Some(entries) = super::optional(std::fs::read_dir(dir))? else {
                continue;
            };
            for entry in entries {
                let name = entry?.file_name();
                if let Ok(digest) = format!("{}:{}", alg.name(), name.to_string_lossy()).parse() {
                    found.push(digest);
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path()).expect("init");
        let digest = Digest::sha256_of(b"pushed");
        assert!(!store.pinned(&digest));
        store.pin(&digest).expect("pin");
        assert!(store.pinned(&digest));
        assert_eq!(store.pins().expect("pins"), std::slice::from_ref(&digest));
        store.unpin(&digest).expect("unpin");
        store.unpin(&digest).expect("unpin twice");
        assert!(!store.pinned(&digest));
    }
}
