//! Headless Chromium (Debian's `chromium`) for looking at the status page the way a person
//! at the gateway does: the DOM after rendering, and a screenshot.
//!
//! It trusts exactly one server key (`--ignore-certificate-errors-spki-list`, honoured with a
//! `--user-data-dir`), so a page served with the mirror's own CA renders without installing
//! that CA anywhere. Each run has a fresh profile and a time limit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use super::process::output_within;

const RUN_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Chromium {
    binary: PathBuf,
    /// base64 SHA-256 of the trusted server's SubjectPublicKeyInfo.
    spki: Option<String>,
}

impl Chromium {
    /// `chromium` from `PATH`; `None` when it is not installed.
    pub fn find() -> Option<Chromium> {
        let binary = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("chromium"))
            .find(|path| path.is_file())?;
        Some(Chromium { binary, spki: None })
    }

    /// Accepts the server certificate in `cert_pem` (its key, whoever signed it).
    pub fn trusting(self, cert_pem: &[u8]) -> Chromium {
        Chromium {
            spki: Some(spki_sha256(cert_pem)),
            ..self
        }
    }

    /// The DOM after the page has loaded (`--dump-dom`).
    pub async fn dump_dom(&self, url: &str) -> String {
        let profile = tempfile::tempdir().expect("chromium profile dir");
        let mut command = self.command(&profile);
        command.args(["--dump-dom", url]);
        let output = output_within(&mut command, RUN_TIMEOUT).await;
        let dom = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success() && !dom.is_empty(),
            "chromium --dump-dom {url}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        dom
    }

    /// A PNG of the page in a `width`×`height` window.
    pub async fn screenshot(&self, url: &str, path: &Path, (width, height): (u32, u32)) {
        let profile = tempfile::tempdir().expect("chromium profile dir");
        let mut command = self.command(&profile);
        command
            .arg(format!("--screenshot={}", path.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("--hide-scrollbars")
            .arg(url);
        let output = output_within(&mut command, RUN_TIMEOUT).await;
        assert!(
            output.status.success() && path.is_file(),
            "chromium --screenshot {url}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, profile: &TempDir) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            // Chromium writes crash reports and caches under HOME otherwise.
            .env("HOME", profile.path());
        if let Some(spki) = &self.spki {
            command.arg(format!("--ignore-certificate-errors-spki-list={spki}"));
        }
        command
    }
}

fn spki_sha256(cert_pem: &[u8]) -> String {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem).expect("server certificate PEM");
    let cert = pem.parse_x509().expect("server certificate DER");
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(cert.public_key().raw))
}
