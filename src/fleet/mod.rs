//! The fleet: instances on one site that share the upstream's work, so each blob crosses the
//! internet once for all of them. Every member knows the same list; for each digest the list
//! is put in one order (rendezvous hashing: each member's score is a hash of its URL and the
//! digest, highest first), and the first member that is up fetches the blob from the upstream.
//! The others fill from it over the registry API. When a member stops answering it is passed
//! over, and the next in that digest's order takes its blobs; nothing else moves.
//!
//! Which members are up is watched by `health`, and also learnt on the way: a member that
//! cannot be reached for a blob is marked down at once.

mod health;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::Uri;
use sha2::{Digest as _, Sha256};

use crate::config::FleetConfig;
use crate::upstream;

pub struct Fleet {
    members: Vec<Member>,
    /// SHA-256 of the shared key: offered keys are compared by their hashes, so the comparison
    /// takes the same time however much of a guess is right.
    key_hash: [u8; 32],
    config: FleetConfig,
}

struct Member {
    url: Uri,
    up: AtomicBool,
}

impl Fleet {
    pub fn new(config: &FleetConfig) -> Arc<Fleet> {
        let members = (config.members.iter())
            .map(|url| Member {
                url: url.clone(),
                up: AtomicBool::new(true),
            })
            .collect();
        Arc::new(Fleet {
            members,
            key_hash: Sha256::digest(config.key.as_bytes()).into(),
            config: config.clone(),
        })
    }

    /// The members that may fetch what `key` names (a digest, a tag), in its order, down to
    /// this instance: a member below this one in the order would only ever ask it. Members
    /// marked down are left out.
    pub fn order(&self, key: &str) -> Vec<usize> {
        let mut ranked: Vec<(u64, usize)> = (0..self.members.len())
            .map(|index| (self.score(index, key), index))
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let ranked = ranked.into_iter().map(|(_, index)| index);
        let mut order: Vec<usize> = ranked
            .take_while(|&index| index != self.me())
            .filter(|&index| self.is_up(index))
            .collect();
        order.push(self.me());
        order
    }

    fn score(&self, index: usize, key: &str) -> u64 {
        let mut hash = Sha256::new();
        hash.update(self.members[index].url.to_string().as_bytes());
        hash.update(b"\n");
        hash.update(key.as_bytes());
        let hash = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        u64::from_be_bytes(first)
    }

    pub fn me(&self) -> usize {
        self.config.me
    }

    pub fn url(&self, index: usize) -> &Uri {
        &self.members[index].url
    }

    /// Every member but this one.
    pub fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(move |&index| index != self.me())
    }

    pub fn key(&self) -> &str {
        &self.config.key
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Whether `offered` is the fleet's key: the request comes from a member.
    pub fn is_key(&self, offered: &[u8]) -> bool {
        let offered: [u8; 32] = Sha256::digest(offered).into();
        offered == self.key_hash
    }

    pub fn is_up(&self, index: usize) -> bool {
        self.members[index].up.load(Ordering::Relaxed)
    }

    /// A member that failed a request for `what`: down, when it cannot be reached, until its
    /// probe answers again; one that is busy or failing upstream is only skipped this time.
    pub fn pass_over(&self, index: usize, what: &str, error: &upstream::Error) {
        let member = self.url(index);
        tracing::warn!(%member, what, %error, "fleet member failed; the next in order is asked");
        if matches!(error, upstream::Error::Unreachable(_) | upstream::Error::Timeout(_)) {
            self.set_up(index, false);
        }
    }

    /// Records what was learnt of a member; a change is logged.
    pub fn set_up(&self, index: usize, up: bool) {
        let before = self.members[index].up.swap(up, Ordering::Relaxed);
        if before != up {
            let member = &self.members[index].url;
            match up {
                true => tracing::info!(%member, "fleet member is up"),
                false => tracing::warn!(%member, "fleet member is down; its blobs go to the next in order"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
