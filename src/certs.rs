//! The mirror's own certificate authority: a long-lived CA and a server certificate it signs,
//! so a LAN's clients trust the mirror by installing one CA file.
//!
//! Layout of the certificate directory (`<data-dir>/certs` by default): `ca.crt`, `ca.key`
//! (mode 0600), `server.crt`, `server.key` (mode 0600). An existing CA is never replaced, since
//! every client trusts it; the server certificate is re-issued when the names it must cover
//! change or it nears expiry.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest as _, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::parse_x509_pem;

mod names;
use names::names_of;
pub use names::{machine_hostname, Names};

const CA_LIFETIME: Duration = Duration::days(3650);
/// Within the 398 days that platform trust stores accept for server certificates.
const SERVER_LIFETIME: Duration = Duration::days(397);
const RENEW_BEFORE: Duration = Duration::days(30);
/// Tolerates clients whose clocks run a little behind.
const BACKDATE: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0} is not a PEM certificate this mirror can read")]
    Unreadable(PathBuf),
    #[error("{0} exists but its key {1} does not; refusing to replace a CA that clients may trust")]
    CaWithoutKey(PathBuf, PathBuf),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid name '{0}' for a certificate")]
    BadName(String),
    #[error("no CA in {0}: run `regmirror cert init` (or start the server) first")]
    NoCa(PathBuf),
}

/// The files of one certificate directory.
#[derive(Debug, Clone)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CertDir { dir: dir.into() }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

/// What `ensure` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Kept,
    Reissued,
}

#[derive(Debug)]
pub struct Report {
    pub ca: Action,
    pub server: Action,
    pub names: Names,
}

/// How the server certificate's names are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePolicy {
    /// Exactly the names given (`cert init`).
    Exact,
    /// The names given plus those the current certificate already has, so starting the
    /// server never drops a name an administrator added (`serve`).
    KeepExisting,
}

/// Creates the CA if there is none and (re-)issues the server certificate when needed.
pub fn ensure(dir: &CertDir, wanted: &Names, policy: NamePolicy) -> Result<Report, Error> {
    fs::create_dir_all(&dir.dir).map_err(io_err("create", &dir.dir))?;
    let (issuer, ca_pem, ca_action) = load_or_create_ca(dir)?;
    let current = read_server(dir, &ca_pem);
    let names = match (&current, policy) {
        (Some(current), NamePolicy::KeepExisting) => wanted.union(&current.names),
        _ => wanted.clone(),
    };
    let fresh =
        |c: &ServerCert| c.names == names && c.signed_by_ca && c.not_after > OffsetDateTime::now_utc() + RENEW_BEFORE;
    let server = match &current {
        Some(current) if fresh(current) => Action::Kept,
        Some(_) => {
            issue_server(dir, &issuer, &names)?;
            Action::Reissued
        }
        None => {
            issue_server(dir, &issuer, &names)?;
            Action::Created
        }
    };
    Ok(Report {
        ca: ca_action,
        server,
        names,
    })
}

fn load_or_create_ca(dir: &CertDir) -> Result<(Issuer<'static, KeyPair>, String, Action), Error> {
    let (cert_path, key_path) = (dir.ca_cert(), dir.ca_key());
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let pem = fs::read_to_string(&cert_path).map_err(io_err("read", &cert_path))?;
            let key_pem = fs::read_to_string(&key_path).map_err(io_err("read", &key_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            let issuer = Issuer::from_ca_cert_pem(&pem, key).map_err(|_| Error::Unreadable(cert_path.clone()))?;
            Ok((issuer, pem, Action::Kept))
        }
        (true, false) => Err(Error::CaWithoutKey(cert_path, key_path)),
        _ => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            params.distinguished_name = distinguished_name(&format!(
                "regmirror CA ({})",
                machine_hostname().unwrap_or_else(|| "localhost".into())
            ));
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let now = OffsetDateTime::now_utc();
            (params.not_before, params.not_after) = (now - BACKDATE, now + CA_LIFETIME);
            let cert = params.self_signed(&key)?;
            // The key first and with create_new: an existing key is never overwritten.
            write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_replacing(&cert_path, cert.pem().as_bytes(), 0o644)?;
            Ok((Issuer::new(params, key), cert.pem(), Action::Created))
        }
    }
}

/// Issues a client certificate for mutual TLS, named `name` (its common name, which access
/// rules match), into `clients/NAME.cert` and `clients/NAME.key`: the file names dockerd reads
/// from `certs.d`. Returns the two paths.
pub fn issue_client(dir: &CertDir, name: &str) -> Result<(PathBuf, PathBuf), Error> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if !valid || name.starts_with('.') {
        return Err(Error::BadName(name.to_owned()));
    }
    let (cert_path, key_path) = (dir.ca_cert(), dir.ca_key());
    if !cert_path.exists() || !key_path.exists() {
        return Err(Error::NoCa(dir.dir.clone()));
    }
    let (issuer, _, _) = load_or_create_ca(dir)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    (params.not_before, params.not_after) = (now - BACKDATE, now + SERVER_LIFETIME);
    let cert = params.signed_by(&key, &issuer)?;
    let clients = dir.dir.join("clients");
    fs::create_dir_all(&clients).map_err(io_err("create", &clients))?;
    let (cert_out, key_out) = (
        clients.join(format!("{name}.cert")),
        clients.join(format!("{name}.key")),
    );
    write_replacing(&key_out, key.serialize_pem().as_bytes(), 0o600)?;
    write_replacing(&cert_out, cert.pem().as_bytes(), 0o644)?;
    Ok((cert_out, key_out))
}

fn issue_server(dir: &CertDir, issuer: &Issuer<'_, KeyPair>, names: &Names) -> Result<(), Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let common_name = names.dns.iter().find(|d| *d != "localhost").or(names.dns.first());
    params.distinguished_name = distinguished_name(common_name.map_or("regmirror", String::as_str));
    params.subject_alt_names = names.sans()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    (params.not_before, params.not_after) = (now - BACKDATE, now + SERVER_LIFETIME);
    let cert = params.signed_by(&key, issuer)?;
    write_replacing(&dir.server_key(), key.serialize_pem().as_bytes(), 0o600)?;
    write_replacing(&dir.server_cert(), cert.pem().as_bytes(), 0o644)
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "regmirror");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// What the current server certificate says of itself.
struct ServerCert {
    names: Names,
    not_after: OffsetDateTime,
    signed_by_ca: bool,
}

fn read_server(dir: &CertDir, ca_pem: &str) -> Option<ServerCert> {
    let pem = fs::read(dir.server_cert()).ok()?;
    if !dir.server_key().exists() {
        return None;
    }
    let (_, pem) = parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let (_, ca) = parse_x509_pem(ca_pem.as_bytes()).ok()?;
    let ca = ca.parse_x509().ok()?;
    let signed_by_ca = cert.verify_signature(Some(ca.public_key())).is_ok();
    let not_after = cert.validity().not_after.to_datetime();
    Some(ServerCert {
        names: names_of(&cert),
        not_after,
        signed_by_ca,
    })
}

/// `cert show`: subject, names and expiry of the server certificate, and the CA fingerprint
/// a client can compare against.
pub fn describe(dir: &CertDir) -> Result<String, Error> {
    let ca_der = read_der(&dir.ca_cert())?;
    let server_der = read_der(&dir.server_cert())?;
    let ca_cert = parse_der(&ca_der, &dir.ca_cert())?;
    let cert = parse_der(&server_der, &dir.server_cert())?;
    let names = names_of(&cert);
    let sans: Vec<String> = names
        .dns
        .iter()
        .cloned()
        .chain(names.ips.iter().map(IpAddr::to_string))
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "server certificate  {}", dir.server_cert().display());
    let _ = writeln!(out, "  subject           {}", cert.subject());
    let _ = writeln!(out, "  names             {}", sans.join(", "));
    let _ = writeln!(out, "  expires           {}", cert.validity().not_after);
    let _ = writeln!(out, "CA certificate      {}", dir.ca_cert().display());
    let _ = writeln!(out, "  subject           {}", ca_cert.subject());
    let _ = writeln!(out, "  expires           {}", ca_cert.validity().not_after);
    let _ = writeln!(out, "  SHA-256           {}", fingerprint(&ca_der));
    Ok(out)
}

/// The CA's SHA-256 fingerprint in the colon-separated form browsers and openssl print.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The CA certificate's PEM text and fingerprint, for `/ca.crt` and the startup log.
fn read_der(path: &Path) -> Result<Vec<u8>, Error> {
    let pem = fs::read(path).map_err(io_err("read", path))?;
    let (_, pem) = parse_x509_pem(&pem).map_err(|_| Error::Unreadable(path.to_owned()))?;
    Ok(pem.contents)
}

fn parse_der<'a>(der: &'a [u8], path: &Path) -> Result<X509Certificate<'a>, Error> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|_| Error::Unreadable(path.to_owned()))
}

pub fn ca_pem_and_fingerprint(dir: &CertDir) -> Result<(String, String), Error> {
    let pem = fs::read_to_string(dir.ca_cert()).map_err(io_err("read", &dir.ca_cert()))?;
    let (_, parsed) = parse_x509_pem(pem.as_bytes()).map_err(|_| Error::Unreadable(dir.ca_cert()))?;
    let fingerprint = fingerprint(&parsed.contents);
    Ok((pem, fingerprint))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err("create", path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", path))
}

/// Writes beside the target and renames over it, so a crash never leaves half a key.
fn write_replacing(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let temp = path.with_extension("tmp");
    let _ = fs::remove_file(&temp);
    write_new(&temp, bytes, mode)?;
    fs::rename(&temp, path).map_err(io_err("replace", path))
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
