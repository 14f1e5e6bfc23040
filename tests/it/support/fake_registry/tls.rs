//! The fake over TLS: a server certificate from the test's CA, offered with HTTP/2 and
//! HTTP/1.1 by ALPN as Docker Hub does, and each connection served in whichever the client
//! picked.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::answer::{Body, BoxError};
use crate::support::tls::TestCa;

pub(super) fn acceptor(ca: &TestCa) -> TlsAcceptor {
    let cert = ca.issue("fake registry");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("server key PEM parses");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der)], key)
        .expect("the server certificate matches its key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// Serves one connection once the handshake is done. A client that rejects the certificate
/// ends it in the handshake, so nothing reaches the request log.
pub(super) async fn serve<S>(acceptor: TlsAcceptor, stream: TcpStream, service: S)
where
    S: Service<hyper::Request<Incoming>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let Ok(stream) = acceptor.accept(stream).await else {
        return;
    };
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
