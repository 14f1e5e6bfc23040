//! TLS for tests: a throwaway CA (rcgen) issuing server certificates for localhost and
//! 127.0.0.1, and a client connection that keeps the certificate the server presented and
//! sends requests over HTTP/1.1 or HTTP/2, whichever ALPN picked.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::client::{Reply, REQUEST_TIMEOUT};

/// The name every test certificate carries and clients ask for.
pub const SERVER_NAME: &str = "localhost";

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

/// A server certificate and its key, as PEM for the mirror's files and DER to compare with
/// what a client was shown.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "regmirror test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate as PEM, for a file the mirror is told to trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A fresh key and certificate for localhost and 127.0.0.1, named `label`.
    pub fn issue(&self, label: &str) -> ServerCert {
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()]).expect("server names");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, label);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("issue the server certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Trusts this CA only; HTTP/1.1.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        client_config(vec![self.der.clone()], &[b"http/1.1"])
    }
}

/// Trusts the CA certificates in `pem`; offers `alpn` in that order.
pub fn client_config_from_pem(pem: &[u8], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let roots = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .expect("CA PEM parses");
    assert!(!roots.is_empty(), "no certificate in the CA PEM");
    client_config(roots, alpn)
}

fn client_config(roots: Vec<CertificateDer<'static>>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root).expect("CA certificate is usable as a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

enum Sender {
    Http1(http1::SendRequest<Empty<Bytes>>),
    Http2(http2::SendRequest<Empty<Bytes>>),
}

/// One TLS connection, kept open across requests.
pub struct TlsClient {
    sender: Sender,
    authority: String,
    /// The leaf certificate the server presented, DER.
    pub peer: Vec<u8>,
}

impl TlsClient {
    /// Connects to `addr`, verifying the server as `localhost`; requests name
    /// `authority` (`Host`, or `:authority` over HTTP/2).
    pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>, authority: &str) -> Result<TlsClient, String> {
        let connect = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
            let name = ServerName::try_from(SERVER_NAME).expect("valid server name");
            let tls = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let session = tls.get_ref().1;
            let peer = session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|der| der.to_vec())
                .ok_or("no server certificate")?;
            let h2 = session.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            let sender = if h2 {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
                tokio::spawn(connection);
                Sender::Http2(sender)
            } else {
                let (sender, connection) = http1::handshake(io)
                    .await
                    .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
                tokio::spawn(connection);
                Sender::Http1(sender)
            };
            Ok(TlsClient {
                sender,
                authority: authority.to_owned(),
                peer,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| panic!("no TLS connection to {addr} within {REQUEST_TIMEOUT:?}"))
    }

    pub fn is_http2(&self) -> bool {
        matches!(self.sender, Sender::Http2(_))
    }

    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.try_get(path, headers)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn try_get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        let mut request = Request::builder().method(Method::GET);
        request = match self.sender {
            Sender::Http1(_) => request.uri(path).header("host", &self.authority),
            Sender::Http2(_) => request.uri(format!("https://{}{path}", self.authority)),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).expect("test request is well-formed");
        let exchange = async {
            // An HTTP/1.1 connection takes the next request only once the last body is done.
            let response = match &mut self.sender {
                Sender::Http1(sender) => match sender.ready().await {
                    Ok(()) => sender.send_request(request).await,
                    Err(e) => Err(e),
                },
                Sender::Http2(sender) => match sender.ready().await {
                    Ok(()) => sender.send_request(request).await,
                    Err(e) => Err(e),
                },
            };
            let (parts, body) = response.map_err(|e| format!("request failed: {e}"))?.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).map_err(|e| format!("{e:?}"));
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("no complete reply within {REQUEST_TIMEOUT:?}: {path}"))
    }
}
