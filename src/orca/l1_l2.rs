//! `l1-l2`, the main port's policy: L2 (RocksDB) is the source of truth and
//! L1 (memcached) holds what was recently written or read.
//!
//! Every write goes to L2 first, which decides and answers; L1 then gets a
//! `set` of the resulting record (a delete if memcached refuses it). Reads
//! are served by L1; misses read L2 and back-fill L1 with `add`, carrying
//! L2's flags and remaining expiry. delete, touch and flush_all reach both
//! tiers. When memcached is down, reads fall through to L2 and writes go to
//! L2 alone (both counted), so no client sees an error for a key L2 holds.
//! The mechanics shared with the batch port are in [`super::two_tier`].

use std::sync::Arc;

use super::two_tier::{Policy, Shared, TwoTier};
use crate::backend::Backend;
use crate::protocol::StoreMode;

pub const POLICY: Policy = Policy {
    l1_write: StoreMode::Set,
    backfill: true,
};

pub fn orca<B1: Backend + Clone, B2: Backend + Clone>(
    shared: Arc<Shared<B1, B2>>,
) -> TwoTier<B1, B2> {
    TwoTier::new(shared, POLICY)
}
