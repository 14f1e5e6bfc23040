//! The registry pull API over HTTP: `route` parses a request, `handler` answers it through the
//! `Mirror`, `range` reads `Range` headers and `error` is the only mapping of failures to
//! HTTP. Nothing here touches the disk or the upstream directly.

mod error;
mod handler;
mod range;
mod route;

pub use error::Error;
pub use handler::handle;

use bytes::Bytes;

use crate::mirror::Mirror;

/// What requests are answered from.
pub struct App {
    pub mirror: Mirror,
    /// The mirror's own CA certificate (PEM), served at `/ca.crt` when the mirror issued its
    /// certificate itself.
    pub ca_cert: Option<Bytes>,
}
