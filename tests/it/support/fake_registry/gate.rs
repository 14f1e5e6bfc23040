//! A barrier the test opens: answers or bodies that reach it wait there until `open`, so a
//! test decides when the upstream goes on instead of guessing how long a pause must be, and
//! can see that something is waiting at it (`held`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Gate {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    open: watch::Sender<bool>,
    held: AtomicUsize,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate {
            state: Arc::new(State {
                open: watch::Sender::new(false),
                held: AtomicUsize::new(0),
            }),
        }
    }

    /// Lets everything waiting go on, and everything arriving later pass.
    pub fn open(&self) {
        self.state.open.send_replace(true);
    }

    /// How many answers or bodies are waiting at the gate now.
    pub fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Waits up to `within` until an answer or body waits at the gate; whether one did.
    pub async fn reached(&self, within: Duration) -> bool {
        crate::support::poll_until(within, || self.held() > 0).await
    }

    /// Waits until the gate is open.
    pub(super) async fn pass(&self) {
        let mut open = self.state.open.subscribe();
        let _waiting = Waiting::new(&self.state.held);
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// Counts one waiter for as long as it lives, so an answer dropped at the gate (its client
/// gone) is not counted as held any more.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(held: &'a AtomicUsize) -> Self {
        held.fetch_add(1, Ordering::SeqCst);
        Waiting(held)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
