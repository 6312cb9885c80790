//! `l1-l2-batch`, the batch port's policy, for bulk loads: writes go to L2
//! and then only *refresh* L1 with `replace`, so a bulk load does not push
//! the hot set out of memcached. Reads are served by L1 and fall back to L2
//! without back-filling. gat keeps the requested TTL in both tiers.
//! delete, touch and flush_all reach both tiers. Shares its mechanics, key
//! locks and L1 trust with the main port ([`super::two_tier`]).

use std::sync::Arc;

use super::two_tier::{Policy, Shared, TwoTier};
use crate::backend::Backend;
use crate::protocol::StoreMode;

pub const POLICY: Policy = Policy {
    l1_write: StoreMode::Replace,
    backfill: false,
};

pub fn orca<B1: Backend + Clone, B2: Backend + Clone>(
    shared: Arc<Shared<B1, B2>>,
) -> TwoTier<B1, B2> {
    TwoTier::new(shared, POLICY)
}
