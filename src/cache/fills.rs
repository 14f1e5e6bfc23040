//! The fills under way, by digest, and the one locked lookup that says where an uncached blob
//! stands: being filled, indexed after all, or absent (and then, if asked, claimed for a new
//! fill). Cache hits never get here: the index answers them without a lock.
//!
//! A fill enters the index before it leaves this map, and both are consulted under the map's
//! lock, so a lookup never falls between a fill's end and its blob's cache entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::fill::Fill;
use super::index::Index;
use crate::digest::Digest;
use crate::sync::LockExt;

#[derive(Default)]
pub(super) struct Fills {
    by_digest: Mutex<HashMap<Digest, Arc<Fill>>>,
}

pub(super) enum State {
    Filling(Arc<Fill>),
    Indexed,
    /// Neither; the new fill was registered when a claim was asked for.
    Absent(Option<Arc<Fill>>),
}

/// What to do when the blob is neither being filled nor indexed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum OnAbsent {
    Claim,
    Report,
}

impl Fills {
    pub(super) fn lookup(&self, digest: &Digest, index: &Index, absent: OnAbsent) -> State {
        let mut fills = self.by_digest.locked();
        if let Some(fill) = fills.get(digest) {
            return State::Filling(fill.clone());
        }
        if index.get(digest).is_some() {
            return State::Indexed;
        }
        if absent == OnAbsent::Report {
            return State::Absent(None);
        }
        let fill = Arc::new(Fill::new());
        fills.insert(digest.clone(), fill.clone());
        State::Absent(Some(fill))
    }

    pub(super) fn remove(&self, digest: &Digest) {
        self.by_digest.locked().remove(digest);
    }

    pub(super) fn all(&self) -> Vec<Arc<Fill>> {
        self.by_digest.locked().values().cloned().collect()
    }
}
