//! The HTTP client itself: the roots it trusts, the guarded resolver every connection goes
//! through (`dns`), the bounds of its connection pool, and what a failed request is called.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::dns::{self, Guard};
use super::Error;

pub(super) type HttpClient = Client<HttpsConnector<HttpConnector<Guard>>, Empty<Bytes>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per host, and for how long: enough for the next burst of pulls,
/// without a past burst's hundreds of connections (and their buffers) lingering.
const POOL_MAX_IDLE_PER_HOST: usize = 32;
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A client resolving through `guard`, trusting the public web roots or, when given, only the
/// CA certificates in the PEM file `ca`; and how that trust reads in a TLS failure.
pub(super) fn client(guard: Guard, ca: Option<&Path>) -> Result<(HttpClient, String), Error> {
    let mut http = HttpConnector::new_with_resolver(guard);
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let (roots, trust) = match ca {
        Some(path) => (
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(private_roots(path)?),
            format!("only the CA file {}", path.display()),
        ),
        None => (
            hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
            "the public web roots".to_owned(),
        ),
    };
    let https = roots.https_or_http().enable_http1().enable_http2().wrap_connector(http);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .build(https);
    Ok((client, trust))
}

fn private_roots(path: &Path) -> Result<rustls::ClientConfig, Error> {
    let bad = |why: String| Error::Protocol(format!("CA file {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificates in it".into()));
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What a request that got no answer failed of: a redirect refused where it resolved, the TLS
/// handshake (`trust` says what was trusted), or reaching the host at all.
pub(super) fn failure(error: &hyper_util::client::legacy::Error, trust: &str) -> Error {
    if let Some(refused @ dns::Error::Refused { .. }) = cause::<dns::Error>(error) {
        return Error::Protocol(refused.to_string());
    }
    match cause::<rustls::Error>(error) {
        Some(tls) => Error::Tls {
            reason: tls.to_string(),
            trust: trust.to_owned(),
        },
        None => Error::Unreachable(error_chain(error)),
    }
}

/// The error of type `T` behind a failed request, if one is. rustls's error comes wrapped in
/// `io::Error`s (hyper-rustls wraps tokio-rustls's), whose `source()` skips the error they
/// wrap, so the walk steps into each of them.
fn cause<'e, T: std::error::Error + 'static>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e T> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        cause = match current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(wrapped) => Some(wrapped),
            None => current.source(),
        };
    }
    None
}

/// hyper's client errors say "client error (Connect)"; the cause is further down the chain.
/// The bucket's client names its failures the same way.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_are_found_inside_wrapped_io_errors() {
        let tls = |e: &(dyn std::error::Error + 'static)| cause::<rustls::Error>(e).map(ToString::to_string);
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, refused));
        assert_eq!(
            tls(&wrapped).as_deref(),
            Some("invalid peer certificate: UnknownIssuer")
        );
        let refused_connection = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls(&refused_connection), None);
    }
}
