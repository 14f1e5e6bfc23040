//! What a connection is doing, for its deadlines: whether its first request has come, how
//! many requests are in flight, and since when it has had none.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::body::Body;
use crate::sync::LockExt;

/// Which deadline a connection missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No complete request (and, with TLS, no handshake) in time after it was accepted.
    FirstRequest,
    /// Nothing in flight for the idle timeout.
    Idle,
}

impl Expiry {
    pub fn label(self) -> &'static str {
        match self {
            Expiry::FirstRequest => "first_request",
            Expiry::Idle => "idle",
        }
    }
}

pub struct Activity {
    state: Mutex<State>,
}

struct State {
    requests: u64,
    in_flight: u32,
    idle_since: Instant,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                requests: 0,
                in_flight: 0,
                idle_since: Instant::now(),
            }),
        })
    }

    /// Marks a request in flight until its response body is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.state.locked();
        state.requests += 1;
        state.in_flight += 1;
        InFlight(self.clone())
    }

    /// Returns when the connection misses a deadline: its first request by `first_request`,
    /// or then a new request within `idle` of the last one's end. A request in flight is never
    /// cut here; a stalled one is left to TCP keepalive and HTTP/2 pings.
    pub async fn expired(&self, first_request: Instant, idle: Duration) -> Expiry {
        loop {
            match self.check(first_request, idle) {
                Ok(wake) => tokio::time::sleep_until(wake).await,
                Err(expiry) => return expiry,
            }
        }
    }

    /// When to look again, or the deadline missed.
    fn check(&self, first_request: Instant, idle: Duration) -> Result<Instant, Expiry> {
        let now = Instant::now();
        let state = self.state.locked();
        let (deadline, expiry) = match (state.requests, state.in_flight) {
            (0, _) => (first_request, Expiry::FirstRequest),
            (_, 0) => (state.idle_since + idle, Expiry::Idle),
            _ => return Ok(now + idle),
        };
        if now >= deadline {
            Err(expiry)
        } else {
            Ok(deadline)
        }
    }
}

/// A request in flight; the response body carries it, so it ends when hyper is done with the
/// body, sent or abandoned.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state.locked();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
    }
}

/// A response body that keeps its request in flight while hyper holds it.
pub struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl Tracked {
    pub fn new(body: Body, in_flight: InFlight) -> Tracked {
        Tracked {
            body,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_expires_at_its_first_request_deadline() {
        let activity = Activity::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(activity.expired(deadline, IDLE).await, Expiry::FirstRequest);
        assert!(Instant::now() >= deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_the_connection_open_past_every_deadline() {
        let activity = Activity::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let in_flight = activity.begin();
        let waited = tokio::time::timeout(10 * IDLE, activity.expired(deadline, IDLE)).await;
        assert!(waited.is_err(), "expired while a request was in flight");
        drop(in_flight);
        let ended = Instant::now();
        assert_eq!(activity.expired(deadline, IDLE).await, Expiry::Idle);
        assert_eq!(Instant::now() - ended, IDLE);
    }
}
