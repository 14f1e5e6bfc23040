//! The caps on open connections, overall and per client, and the count of open ones that a
//! shutdown waits on.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::ConnectionLimits;
use crate::metrics::Metrics;
use crate::mirror::Requester;
use crate::sync::LockExt;

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The mirror has as many connections open as it allows.
    Full,
    /// This client has as many open as one client may.
    ClientFull,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Full => "overall",
            Refusal::ClientFull => "address",
        }
    }
}

pub struct Connections {
    limits: ConnectionLimits,
    by_client: Mutex<HashMap<Requester, usize>>,
    open: watch::Sender<usize>,
    metrics: Arc<Metrics>,
}

/// One open connection's place under the caps, given back when dropped.
pub struct Slot {
    connections: Arc<Connections>,
    /// Counted as the transfer caps count a client: an IPv4 address or an IPv6 /64.
    client: Requester,
}

impl Connections {
    pub fn new(limits: ConnectionLimits, metrics: Arc<Metrics>) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            by_client: Mutex::default(),
            open: watch::Sender::new(0),
            metrics,
        })
    }

    /// A place for a connection from `ip`, unless a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let client = Requester::client(ip);
        let mut by_client = self.by_client.locked();
        if *self.open.borrow() >= self.limits.max_open {
            return Err(Refusal::Full);
        }
        let count = by_client.entry(client).or_default();
        if *count >= self.limits.max_per_client {
            return Err(Refusal::ClientFull);
        }
        *count += 1;
        self.open.send_modify(|open| *open += 1);
        self.metrics.connections_open.inc();
        Ok(Slot {
            connections: self.clone(),
            client,
        })
    }

    pub fn open(&self) -> usize {
        *self.open.borrow()
    }

    /// Returns once every connection has closed.
    pub async fn all_closed(&self) {
        let mut open = self.open.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = open.wait_for(|open| *open == 0).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let connections = &self.connections;
        if let Entry::Occupied(mut count) = connections.by_client.locked().entry(self.client) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
        connections.open.send_modify(|open| *open -= 1);
        connections.metrics.connections_open.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn connections(max_open: usize, max_per_client: usize) -> Arc<Connections> {
        let limits = ConnectionLimits {
            max_open,
            max_per_client,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        };
        Connections::new(limits, Arc::default())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn each_client_gets_its_share_and_a_closed_connection_frees_its_place() {
        let connections = connections(10, 2);
        let first = connections.admit(ip("10.0.0.1")).expect("admitted");
        let _second = connections.admit(ip("10.0.0.1")).expect("admitted");
        assert_eq!(connections.admit(ip("10.0.0.1")).err(), Some(Refusal::ClientFull));
        assert!(
            connections.admit(ip("10.0.0.2")).is_ok(),
            "another client is not held back"
        );
        drop(first);
        assert!(connections.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn the_overall_cap_holds_whoever_asks() {
        let connections = connections(2, 2);
        let _a = connections.admit(ip("10.0.0.1")).expect("admitted");
        let _b = connections.admit(ip("10.0.0.2")).expect("admitted");
        assert_eq!(connections.admit(ip("10.0.0.3")).err(), Some(Refusal::Full));
        assert_eq!(connections.open(), 2);
    }

    #[test]
    fn ipv6_addresses_of_one_64_count_as_one_client() {
        let connections = connections(10, 1);
        let _a = connections.admit(ip("2001:db8:1:2::1")).expect("admitted");
        assert_eq!(
            connections.admit(ip("2001:db8:1:2:abcd::9")).err(),
            Some(Refusal::ClientFull)
        );
        assert!(connections.admit(ip("2001:db8:1:3::1")).is_ok());
        let _mapped = connections.admit(ip("::ffff:10.0.0.1")).expect("admitted");
        assert_eq!(connections.admit(ip("10.0.0.1")).err(), Some(Refusal::ClientFull));
    }

    #[tokio::test]
    async fn all_closed_waits_for_the_last_connection() {
        let connections = connections(10, 10);
        let slot = connections.admit(ip("10.0.0.1")).expect("admitted");
        let waiting = tokio::spawn({
            let connections = connections.clone();
            async move { connections.all_closed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(slot);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("all_closed returned")
            .expect("task");
    }
}
