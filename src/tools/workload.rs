//! The workload model the load tools share: which key a request touches
//! ([`KeyDist`], [`KeyGen`]), how big a value is ([`ValueSizes`]), which
//! command is sent ([`Op`], [`Mix`]), what a value must contain so that a
//! reader can check it byte for byte ([`value_for`], [`flags_for`],
//! [`verify`], [`len_for`]), and how one `--seed` becomes every worker's
//! random generator ([`worker_rng`]).
//!
//! Everything here is pure and deterministic given a seed, so a run can be
//! repeated exactly and a verifying reader needs no shared state with the
//! writer: the expected value is recomputed from (seed, key).
//!
//! One file a part: `workload/keys.rs`, `workload/sizes.rs`,
//! `workload/ops.rs` and `workload/values.rs`.

use rand::rngs::SmallRng;
use rand::SeedableRng;

mod keys;
mod ops;
mod sizes;
mod values;

#[cfg(test)]
mod tests;

pub use keys::{KeyDist, KeyGen, MAX_KEY_LENGTH};
pub use ops::{Mix, Op};
pub use sizes::ValueSizes;
use values::mix64;
pub use values::{flags_for, len_for, value_for, verify, Mismatch};

/// Worker `worker`'s generator, derived from the run's one `--seed`
/// (rpc-perf style): the same seed gives every worker the same stream again,
/// and workers get independent streams.
pub fn worker_rng(seed: u64, worker: usize) -> SmallRng {
    // Two rounds of mixing so seed s/worker w+1 and seed s+1/worker w do not
    // land on related states.
    let w = (worker as u64).wrapping_add(1);
    SmallRng::seed_from_u64(mix64(mix64(seed) ^ w.wrapping_mul(0xD6E8_FEB8_6659_FD93)))
}
