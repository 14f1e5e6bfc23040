//! Watching the other members: each is asked for `/v2/` every couple of seconds, and is up
//! while it answers. A member that was down is taken back as soon as it answers again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Fleet;
use crate::metrics::Metrics;
use crate::upstream::{self, Dns, Upstream};

const INTERVAL: Duration = Duration::from_secs(2);
/// Generous: a member that is only slow still fills well, and one marked down by mistake costs
/// a second upstream fetch. A member that is gone fails its connection at once anyway.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Fleet {
    /// Starts probing every other member; the probes stop once the fleet is no longer used.
    pub fn watch(self: &Arc<Self>, dns: Dns) -> Result<(), upstream::Error> {
        // The probes' timings are not the upstream's: they get metrics of their own.
        let metrics = Arc::new(Metrics::default());
        let ca = self.config.ca.as_deref();
        let probes = (self.others())
            .map(|index| {
                let probe = Upstream::new(self.url(index).clone(), None, ca, &[], dns.clone(), metrics.clone());
                probe.map(|probe| (index, Arc::new(probe)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        tokio::spawn(probe_all(Arc::downgrade(self), probes));
        Ok(())
    }
}

async fn probe_all(fleet: Weak<Fleet>, probes: Vec<(usize, Arc<Upstream>)>) {
    // The first probe waits an interval: members started together are not down for the
    // moment the others take to listen.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let answers = futures_util::future::join_all(probes.iter().map(|(index, probe)| async move {
            let answered = tokio::time::timeout(PROBE_TIMEOUT, probe.ping()).await;
            (*index, matches!(answered, Ok(Ok(()))))
        }))
        .await;
        let Some(fleet) = fleet.upgrade() else { return };
        for (index, up) in answers {
            fleet.set_up(index, up);
        }
    }
}
