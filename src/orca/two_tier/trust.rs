//! Which L1 copies may be stale: a key whose L1 write, delete or touch
//! failed or timed out is suspect until an L1 write or delete of it
//! succeeds; past [`MAX_SUSPECTS`] keys, or after a failed flush, all of L1
//! is, until L1 is flushed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// Suspect keys past this many: distrust all of L1 until it is flushed.
pub(super) const MAX_SUSPECTS: usize = 100_000;

#[derive(Default)]
struct TrustState {
    keys: HashSet<Bytes>,
    /// Too many suspects, or a failed flush: all of L1 is suspect.
    all: bool,
    /// Bumped by every new suspicion, so a recovery flush knows whether it
    /// covered them all.
    generation: u64,
}

/// Which L1 copies may be stale.
#[derive(Default)]
pub struct L1Trust {
    state: Mutex<TrustState>,
    /// Fast path: nothing is suspect.
    any: AtomicBool,
}

impl L1Trust {
    fn with<T>(&self, f: impl FnOnce(&mut TrustState) -> T) -> T {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut st);
        self.any
            .store(st.all || !st.keys.is_empty(), Ordering::Release);
        out
    }

    pub fn is_suspect(&self, key: &[u8]) -> bool {
        self.any.load(Ordering::Acquire) && self.with(|st| st.all || st.keys.contains(key))
    }

    /// Whether no L1 copy is suspect.
    pub fn is_clear(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    pub fn all_suspect(&self) -> bool {
        self.any.load(Ordering::Acquire) && self.with(|st| st.all)
    }

    /// Mark `key` suspect. The set keeps its own copy of the key: a slice
    /// of a client's read buffer would keep the whole buffer alive.
    pub fn suspect(&self, key: &[u8]) {
        self.with(|st| {
            st.generation += 1;
            if st.all {
                return;
            }
            if st.keys.len() >= MAX_SUSPECTS {
                st.all = true;
                st.keys.clear();
            } else if !st.keys.contains(key) {
                st.keys.insert(Bytes::copy_from_slice(key));
            }
        });
    }

    pub fn suspect_all(&self) {
        self.with(|st| {
            st.generation += 1;
            st.all = true;
            st.keys.clear();
        });
    }

    pub fn clear(&self, key: &[u8]) {
        if self.any.load(Ordering::Acquire) {
            self.with(|st| st.keys.remove(key));
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.with(|st| st.generation)
    }

    /// L1 was flushed; if nothing became suspect since `generation` was
    /// read, every suspicion is settled.
    pub(super) fn flushed(&self, generation: u64) -> bool {
        self.with(|st| {
            if st.generation == generation {
                st.keys.clear();
                st.all = false;
                true
            } else {
                false
            }
        })
    }
}
