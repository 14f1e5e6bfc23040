//! TLS for the listener: PEM files (given, or the mirror's own from `certs`) into a rustls
//! `ServerConfig` offering HTTP/2 and HTTP/1.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::certs::{self, CertDir, NamePolicy, Names};
use crate::config::Tls;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: pem::Error },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("certificate and key do not make a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error(transparent)]
    Certs(#[from] certs::Error),
    #[error("client certificates need TLS; remove --insecure-http")]
    ClientAuthWithoutTls,
    #[error("client certificates need access.client_ca when the server certificate is not the mirror's own")]
    NoClientCa,
    #[error("unusable client CA: {0}")]
    ClientCa(String),
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

/// Client certificates the listener asks for (mutual TLS).
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// The CA client certificates must chain to; the mirror's own CA when absent.
    pub ca: Option<PathBuf>,
    /// Refuse the handshake without one; otherwise access rules decide.
    pub required: bool,
}

pub fn setup(tls: &Tls, clients: Option<&ClientAuth>) -> Result<Setup, Error> {
    match tls {
        Tls::Off if clients.is_some() => Err(Error::ClientAuthWithoutTls),
        Tls::Off => Ok(Setup {
            acceptor: None,
            ca: None,
        }),
        Tls::Files { cert, key } => {
            let verifier = clients.map(|c| verifier(c, None)).transpose()?;
            Ok(Setup {
                acceptor: Some(TlsAcceptor::from(server_config(cert, key, verifier)?)),
                ca: None,
            })
        }
        Tls::SelfIssued { dir } => {
            let dir = CertDir::new(dir);
            let report = certs::ensure(&dir, &Names::local(&[], &[]), NamePolicy::KeepExisting)?;
            tracing::info!(ca = ?report.ca, server_certificate = ?report.server, "using the mirror's own certificates");
            let (pem, fingerprint) = certs::ca_pem_and_fingerprint(&dir)?;
            let verifier = clients.map(|c| verifier(c, Some(&dir.ca_cert()))).transpose()?;
            let acceptor = TlsAcceptor::from(server_config(&dir.server_cert(), &dir.server_key(), verifier)?);
            let ca = CaCert {
                path: dir.ca_cert(),
                pem,
                fingerprint,
            };
            Ok(Setup {
                acceptor: Some(acceptor),
                ca: Some(ca),
            })
        }
    }
}

fn verifier(clients: &ClientAuth, own_ca: Option<&Path>) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let path = clients.ca.as_deref().or(own_ca).ok_or(Error::NoClientCa)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(read_err(path))? {
        roots.add(cert.map_err(read_err(path))?)?;
    }
    let builder = WebPkiClientVerifier::builder(Arc::new(roots));
    let builder = if clients.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| Error::ClientCa(e.to_string()))
}

/// The common name of a verified client certificate: the client's identity for access rules.
pub fn client_name(certificates: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certificates?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_owned())
}

pub fn server_config(
    cert: &Path,
    key: &Path,
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, Error> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(read_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(cert))?;
    if chain.is_empty() {
        return Err(Error::NoCertificate(cert.to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        pem::Error::NoItemsFound => Error::NoKey(key.to_owned()),
        other => read_err(key)(other),
    })?;
    let builder = ServerConfig::builder();
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_err(path: &Path) -> impl FnOnce(pem::Error) -> Error + '_ {
    move |source| Error::Read {
        path: path.to_owned(),
        source,
    }
}
