//! The cap on upstream transfers: new fills and pass-throughs, overall and per client address.
//! Following a fill already under way is free and never counted, so only a client that makes
//! the mirror fetch something new waits here. Beyond the cap a request waits a bounded time
//! for a transfer to end, then is refused with the cap that stopped it, which `api::error`
//! turns into 429 (this address) or 503 (the whole mirror).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::sync::LockExt;

/// What a refused client is told to wait: a cold layer takes seconds to minutes, so a
/// retry sooner would most likely be refused again.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Who a transfer is for, as the cap per address counts it, and whether it is another member
/// of the fleet (held to the overall cap only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Requester {
    address: IpAddr,
    member: bool,
}

impl Requester {
    /// A client at `ip`. An IPv4 client reached over an IPv6 socket counts as its IPv4
    /// address, and an IPv6 client as its /64: one host is given a whole /64, so counting
    /// single addresses would let it take the cap once per address it picks.
    pub fn client(ip: IpAddr) -> Requester {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Requester::at(IpAddr::V6(prefix.into()))
            }
            v4 => Requester::at(v4),
        }
    }

    /// Another member of the fleet at `ip`, asking on its clients' behalf.
    pub fn member(ip: IpAddr) -> Requester {
        Requester {
            member: true,
            ..Requester::client(ip)
        }
    }

    /// This process itself (`prefetch`), whose own job bound applies.
    pub fn this_process() -> Requester {
        Requester::at(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST))
    }

    fn at(address: IpAddr) -> Requester {
        Requester { address, member: false }
    }
}

/// How many upstream transfers may run, and how long a request waits for one beyond that.
#[derive(Debug, Clone, Copy)]
pub struct TransferLimits {
    pub overall: usize,
    pub per_address: usize,
    pub wait: Duration,
}

impl TransferLimits {
    /// No cap: for `prefetch`, whose `--jobs` bounds its transfers.
    pub fn unbounded() -> TransferLimits {
        TransferLimits {
            overall: usize::MAX,
            per_address: usize::MAX,
            wait: Duration::ZERO,
        }
    }
}

/// Which cap refused a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The client's address has its share under way.
    Address,
    /// The mirror as a whole does.
    Overall,
}

impl Cap {
    pub fn label(self) -> &'static str {
        match self {
            Cap::Address => "address",
            Cap::Overall => "overall",
        }
    }
}

/// A transfer refused at its cap after the wait.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    pub cap: Cap,
    pub limit: usize,
    /// When the client had best try again.
    pub retry_after: Duration,
}

pub struct Transfers {
    limits: TransferLimits,
    counts: Mutex<Counts>,
    /// Woken whenever a transfer ends, so waiters try again.
    freed: Notify,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Counts {
    overall: usize,
    by_requester: HashMap<Requester, usize>,
}

/// One transfer's place under the caps, given back when dropped.
pub struct Permit {
    transfers: Arc<Transfers>,
    requester: Requester,
}

impl Transfers {
    pub fn new(limits: TransferLimits, metrics: Arc<Metrics>) -> Arc<Transfers> {
        Arc::new(Transfers {
            limits,
            counts: Mutex::default(),
            freed: Notify::new(),
            metrics,
        })
    }

    /// A place for one more transfer for `requester`, waiting up to the limits' `wait` for one
    /// to end when the caps are reached.
    pub async fn acquire(self: &Arc<Self>, requester: Requester) -> Result<Permit, Busy> {
        let deadline = tokio::time::Instant::now() + self.limits.wait;
        let mut waited = false;
        loop {
            // Registered before the check, so a transfer ending between the two still wakes us.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let cap = match self.take(requester) {
                Ok(()) => {
                    return Ok(Permit {
                        transfers: self.clone(),
                        requester,
                    })
                }
                Err(cap) => cap,
            };
            if !waited {
                waited = true;
                self.metrics.transfer_waits.inc();
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                self.metrics.refused_transfer(cap.label());
                let limit = match cap {
                    Cap::Address => self.limits.per_address,
                    Cap::Overall => self.limits.overall,
                };
                return Err(Busy {
                    cap,
                    limit,
                    retry_after: RETRY_AFTER,
                });
            }
        }
    }

    /// Takes a place if both caps allow; else the cap that does not. Another member of the
    /// fleet asks for many clients from one address, so only the overall cap applies to it: a
    /// member turned away would fetch the blob from the upstream itself.
    fn take(&self, requester: Requester) -> Result<(), Cap> {
        let mut counts = self.counts.locked();
        let mine = counts.by_requester.get(&requester).copied().unwrap_or(0);
        if mine >= self.limits.per_address && !requester.member {
            return Err(Cap::Address);
        }
        if counts.overall >= self.limits.overall {
            return Err(Cap::Overall);
        }
        counts.overall += 1;
        *counts.by_requester.entry(requester).or_default() += 1;
        Ok(())
    }

    fn give_back(&self, requester: Requester) {
        {
            let mut counts = self.counts.locked();
            counts.overall = counts.overall.saturating_sub(1);
            if let Some(mine) = counts.by_requester.get_mut(&requester) {
                *mine -= 1;
                if *mine == 0 {
                    counts.by_requester.remove(&requester);
                }
            }
        }
        self.freed.notify_waiters();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.transfers.give_back(self.requester);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfers(overall: usize, per_address: usize) -> Arc<Transfers> {
        let limits = TransferLimits {
            overall,
            per_address,
            wait: Duration::from_millis(50),
        };
        Transfers::new(limits, Arc::new(Metrics::default()))
    }

    fn at(ip: &str) -> Requester {
        Requester::client(ip.parse().expect("address"))
    }

    #[tokio::test(start_paused = true)]
    async fn each_cap_refuses_with_its_own_reason_and_a_freed_place_is_taken_by_a_waiter() {
        let transfers = transfers(3, 2);
        let first = transfers.acquire(at("10.0.0.1")).await.expect("free");
        let _second = transfers.acquire(at("10.0.0.1")).await.expect("free");
        let busy = transfers.acquire(at("10.0.0.1")).await.err().expect("address cap");
        assert_eq!(busy.cap, Cap::Address);
        let _third = transfers.acquire(at("10.0.0.2")).await.expect("free");
        let busy = transfers.acquire(at("10.0.0.3")).await.err().expect("overall cap");
        assert_eq!(busy.cap, Cap::Overall);

        let waiter = tokio::spawn({
            let transfers = transfers.clone();
            async move { transfers.acquire(at("10.0.0.3")).await.is_ok() }
        });
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiter.await.expect("task"), "the freed place went to the waiter");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_member_is_held_to_the_overall_cap_only() {
        let transfers = transfers(3, 1);
        let member = Requester::member("10.0.0.1".parse().expect("address"));
        let _client = transfers.acquire(at("10.0.0.1")).await.expect("free");
        let _first = transfers.acquire(member).await.expect("no address cap for a member");
        let _second = transfers.acquire(member).await.expect("no address cap for a member");
        let busy = transfers.acquire(member).await.err().expect("overall cap");
        assert_eq!(busy.cap, Cap::Overall);
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
        assert_eq!(at("2001:db8:1:2::1"), at("2001:db8:1:2:ffff::9"));
        assert_ne!(at("2001:db8:1:2::1"), at("2001:db8:1:3::1"));
        assert_eq!(at("::ffff:192.0.2.7"), at("192.0.2.7"));
    }
}
