//! One accepted connection, from the TLS handshake to its close: deadlines for the handshake
//! and the first request, an idle timeout, and a graceful close when the mirror stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use super::activity::{Activity, Expiry, Tracked};
use super::limits::Slot;
use super::request::{serve_request, RequestId};
use crate::api::{App, Peer, Role};
use crate::config::ConnectionLimits;
use crate::tls;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// A peer that vanished mid-transfer (powered off, unplugged) is noticed after about two
/// minutes of unanswered probes, instead of holding its connection for the kernel's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 6;

pub struct Connection {
    pub app: Arc<App>,
    pub builder: auto::Builder<TokioExecutor>,
    pub stopping: watch::Receiver<Phase>,
    pub role: Role,
    pub limits: ConnectionLimits,
    /// Held for the connection's life.
    pub _slot: Slot,
}

impl Connection {
    pub async fn serve(self, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
        let first_request = Instant::now() + self.limits.first_request_timeout;
        keep_alive(&stream);
        let Some(acceptor) = tls else {
            return self.serve_io(stream, peer_of(peer, None), first_request).await;
        };
        match tokio::time::timeout_at(first_request, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let certificate_user = tls::client_name(stream.get_ref().1.peer_certificates());
                self.serve_io(stream, peer_of(peer, certificate_user), first_request)
                    .await
            }
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                self.timed_out(Expiry::FirstRequest);
            }
        }
    }

    async fn serve_io<I>(mut self, io: I, peer: Peer, first_request: Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let (app, role, client, tracker) = (self.app.clone(), self.role, peer.clone(), activity.clone());
        let service = service_fn(move |request| {
            let (app, peer, in_flight) = (app.clone(), client.clone(), tracker.begin());
            let span = tracing::info_span!("request", id = %RequestId(REQUEST_IDS.fetch_add(1, Ordering::Relaxed)));
            let served = async move {
                let response = serve_request(&app, role, &peer, request).await;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
            };
            served.instrument(span)
        });
        let connection = self.builder.serve_connection(TokioIo::new(io), service).into_owned();
        tokio::pin!(connection);
        let idle = self.limits.idle_timeout;
        let expiry = tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(peer = %peer.ip, error = %e, "connection ended with an error");
                }
                return;
            }
            expiry = activity.expired(first_request, idle) => Some(expiry),
            _ = self.stopping.wait_for(|phase| *phase != Phase::Serving) => None,
        };
        if let Some(expiry) = expiry {
            tracing::debug!(peer = %peer.ip, deadline = expiry.label(), "closing a connection that missed its deadline");
            self.timed_out(expiry);
            // Without a whole request there is nothing to close gracefully: drop the socket.
            if expiry == Expiry::FirstRequest {
                return;
            }
        }
        // Nothing is in flight unless the mirror is stopping, when those requests may finish
        // within the grace period; after it, the connection is dropped mid-answer.
        connection.as_mut().graceful_shutdown();
        tokio::select! {
            _ = connection => {}
            _ = self.stopping.wait_for(|phase| *phase == Phase::Closed) => {}
        }
    }

    fn timed_out(&self, expiry: Expiry) {
        let metrics = self.app.registries.metrics();
        metrics.connection_timed_out(expiry.label());
    }
}

/// Where the server is in its life, as its connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Requests in flight may finish; no new ones are taken.
    Draining,
    /// The grace period is over: whatever is still open is closed.
    Closed,
}

fn peer_of(address: SocketAddr, certificate_user: Option<String>) -> Peer {
    Peer {
        ip: address.ip(),
        certificate_user,
    }
}

/// Small writes go out at once, and a dead peer is found by TCP keepalive; best effort, as a
/// socket that refuses these options still serves.
fn keep_alive(stream: &TcpStream) {
    use rustix::net::sockopt;
    let _ = stream.set_nodelay(true);
    let _ = sockopt::set_socket_keepalive(stream, true);
    let _ = sockopt::set_tcp_keepidle(stream, KEEPALIVE_IDLE);
    let _ = sockopt::set_tcp_keepintvl(stream, KEEPALIVE_INTERVAL);
    let _ = sockopt::set_tcp_keepcnt(stream, KEEPALIVE_PROBES);
}
