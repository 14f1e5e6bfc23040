//! A TLS client for a mirror serving with its own CA (`Builder::own_ca`) that can present a
//! client certificate, as dockerd does from `certs.d/HOST:PORT/client.cert|key`: mutual TLS.
//! One connection per request, HTTP/1.1; `handshake` shows what the server makes of a
//! connection before any request.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::client::{Reply, REQUEST_TIMEOUT};

/// Trusts the CA in `ca` (PEM); presents `client` (certificate and key PEM files) if given.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut read(ca).as_slice()) {
        roots.add(cert.expect("CA PEM parses")).expect("CA is usable as a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls_pemfile::certs(&mut read(cert).as_slice())
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificate PEM parses");
            let key = rustls_pemfile::private_key(&mut read(key).as_slice())
                .expect("client key PEM parses")
                .expect("a private key in the key file");
            builder
                .with_client_auth_cert(chain, key)
                .expect("usable client certificate")
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// GETs `path` over a new TLS connection to `addr`, verifying the server as `localhost`. An
/// error names the step that failed: the handshake, or the request (TLS 1.3 clients learn
/// only there that the server refused their certificate, or the lack of one).
pub async fn get(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("localhost").expect("valid server name");
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        let connection = tokio::spawn(connection);
        let mut request = Request::get(path).header("host", format!("localhost:{}", addr.port()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::<Bytes>::new()).expect("well-formed request");
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            // The connection's own error says why: a TLS alert from the server, say.
            Err(e) => {
                let why = match connection.await {
                    Ok(Err(e)) => format!("{e:?}"),
                    other => format!("{other:?}"),
                };
                return Err(format!("request: {e}; connection: {why}"));
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).map_err(|e| format!("{e:?}"));
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("no complete TLS exchange with {addr} within {REQUEST_TIMEOUT:?}: {path}"))
}

/// What the server makes of a TLS connection that sends nothing: `Ok` if it stays open
/// (waiting for a request), else the error, from the handshake or, since a TLS 1.3 client is
/// done with the handshake before the server has judged its certificate, the alert the
/// server sends next. Nothing is sent so that the alert is not lost to a reset.
pub async fn handshake(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("localhost").expect("valid server name");
    let connect = TlsConnector::from(config).connect(name, tcp);
    let mut tls = tokio::time::timeout(REQUEST_TIMEOUT, connect)
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(500), tls.read(&mut byte)).await {
        Err(_) => Ok(()),
        Ok(Ok(0)) => Err("closed after the handshake".to_owned()),
        Ok(Ok(_)) => Err("unexpected bytes before any request".to_owned()),
        Ok(Err(e)) => Err(format!("after the handshake: {e}")),
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
