//! TLS for the listener: PEM files (given, or the mirror's own from `certs`) into a rustls
//! `ServerConfig` offering HTTP/2 and HTTP/1.1.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::certs::{self, CertDir, NamePolicy, Names};
use crate::config::Tls;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("certificate and key do not make a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error(transparent)]
    Certs(#[from] certs::Error),
}

/// How the listener speaks: TLS or not, and the mirror's own CA when it issued the certificate.
pub struct Setup {
    pub acceptor: Option<TlsAcceptor>,
    pub ca: Option<CaCert>,
}

/// The public half of the mirror's CA, served at `/ca.crt` and named in the startup log.
pub struct CaCert {
    pub path: PathBuf,
    pub pem: String,
    pub fingerprint: String,
}

pub fn setup(tls: &Tls) -> Result<Setup, Error> {
    match tls {
        Tls::Off => Ok(Setup {
            acceptor: None,
            ca: None,
        }),
        Tls::Files { cert, key } => Ok(Setup {
            acceptor: Some(TlsAcceptor::from(server_config(cert, key)?)),
            ca: None,
        }),
        Tls::SelfIssued { dir } => {
            let dir = CertDir::new(dir);
            let report = certs::ensure(&dir, &Names::local(&[], &[]), NamePolicy::KeepExisting)?;
            tracing::info!(ca = ?report.ca, server_certificate = ?report.server, "using the mirror's own certificates");
            let (pem, fingerprint) = certs::ca_pem_and_fingerprint(&dir)?;
            let acceptor = TlsAcceptor::from(server_config(&dir.server_cert(), &dir.server_key())?);
            Ok(Setup {
                acceptor: Some(acceptor),
                ca: Some(CaCert {
                    path: dir.ca_cert(),
                    pem,
                    fingerprint,
                }),
            })
        }
    }
}

pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
    let mut reader = BufReader::new(File::open(cert).map_err(read_err(cert))?);
    let chain = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(cert))?;
    if chain.is_empty() {
        return Err(Error::NoCertificate(cert.to_owned()));
    }
    let mut reader = BufReader::new(File::open(key).map_err(read_err(key))?);
    let key_der = rustls_pemfile::private_key(&mut reader)
        .map_err(read_err(key))?
        .ok_or_else(|| Error::NoKey(key.to_owned()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Read {
        path: path.to_owned(),
        source,
    }
}
