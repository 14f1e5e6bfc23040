//! The registry pull API over HTTP: `route` parses a request (public, so benchmarks measure
//! the real router), `handler` answers it through the `Mirror`, `range` reads `Range` headers
//! and `error` is the only mapping of failures to HTTP. Nothing here touches the disk or the
//! upstream directly.

mod admission;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod listing;
mod push;
pub(crate) mod range;
pub mod route;
mod status_page;
pub(crate) mod token;

pub use error::Error;
pub use handler::handle;

use std::net::IpAddr;

use crate::access::Access;
use crate::registries::Registries;
use crate::tls::CaCert;

/// What requests are answered from.
pub struct App {
    pub registries: Registries,
    /// Who may do what; `None`: everyone, everything.
    pub access: Option<Access>,
    /// `HOST:PORT` of the mirror as this machine would name it, for pages that must say it
    /// when the request did not.
    pub address: String,
    /// The mirror's own CA, served at `/ca.crt` and shown on the status page, when the mirror
    /// issued its certificate itself.
    pub ca: Option<CaCert>,
    /// Whether clients reach the mirror over TLS, for the URLs it tells them.
    pub tls: bool,
}

/// The client, as the connection knows it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub ip: IpAddr,
    /// The common name of the verified client certificate, over mutual TLS.
    pub certificate_user: Option<String>,
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The only listener: everything.
    All,
    /// The main listener beside an admin listener: all but health and metrics.
    Pull,
    /// The admin listener: health and metrics only.
    Admin,
}
