//! Storage tiers behind one trait. A tier executes a [`Command`] and answers
//! with the outcome as a [`Response`] value (a miss is a value, not an
//! error); [`BackendError`] is for a tier that could not answer at all.
//!
//! Implementations: [`memcached::MemcachedL1`], the pooled, pipelined binary
//! client for the L1 memcached, and [`chunked::Chunked`], an adapter that
//! stores every value as fixed-size chunks in the tier it wraps;
//! [`admin::AdminLane`] relays memcached's admin commands over text. The
//! embedded memcached process that backs the default run lives in
//! [`embedded`]; [`locks`] serialises work on one key; [`instrumented`]
//! counts what a tier is asked, for metrics.

pub mod admin;
pub mod chunked;
pub mod embedded;
#[cfg(test)]
mod exporter_tests;
pub mod instrumented;
pub mod memcached;
pub mod meta_lane;
pub mod record;
pub mod rocksdb;
pub mod slab_balancer;
pub mod slab_classes;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::protocol::{Command, Response};

/// Which tier failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    L1,
    L2,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::L1 => "L1",
            Tier::L2 => "L2",
        })
    }
}

/// A tier that could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("{0} unavailable")]
    Unavailable(Tier),
    #[error("{0} timeout")]
    Timeout(Tier),
    #[error("{0} overloaded")]
    Overloaded(Tier),
    #[error("{0} protocol error: {1}")]
    Protocol(Tier, &'static str),
    #[error("{0} does not serve this command")]
    Unsupported(Tier),
    #[error("{0} storage error: {1}")]
    Storage(Tier, String),
    /// A relayed admin reply passed its cap (see [`admin::MAX_REPLY`]).
    #[error("{0} reply too large")]
    ReplyTooLarge(Tier),
}

impl BackendError {
    /// The tier that failed.
    pub fn tier(&self) -> Tier {
        match self {
            BackendError::Unavailable(t)
            | BackendError::Timeout(t)
            | BackendError::Overloaded(t)
            | BackendError::Protocol(t, _)
            | BackendError::Unsupported(t)
            | BackendError::Storage(t, _)
            | BackendError::ReplyTooLarge(t) => *t,
        }
    }

    /// The text after `SERVER_ERROR ` (and the binary error body).
    pub fn reply_text(&self) -> bytes::Bytes {
        bytes::Bytes::from(self.to_string())
    }
}

pub type BackendFuture = Pin<Box<dyn Future<Output = Result<Response, BackendError>> + Send>>;
pub type BatchFuture = Pin<Box<dyn Future<Output = Result<Vec<Response>, BackendError>> + Send>>;

/// One storage tier.
///
/// A single-step tier (memcached) starts the command in `call`, before it
/// returns, so commands issued one after another on the same handle reach
/// the tier in that order even while their replies are awaited together:
/// that is what lets a connection pipeline. A tier that must wait first
/// (for a lock, or for one round trip before the next, as [`chunked`] does)
/// starts when its future is first polled; a connection awaits its replies
/// in order, so its requests still run in order, one after another.
pub trait Backend: Send + Sync + 'static {
    fn call(&self, cmd: &Command) -> BackendFuture;

    /// Whether `call` starts the command before it returns.
    fn starts_eagerly(&self) -> bool {
        true
    }

    /// Whether a request for `key` (any key: `None`) sent earlier and
    /// reported failed may still be carried out by the tier, after requests
    /// sent since. While it may, a later success does not prove that an
    /// earlier failed write was superseded.
    fn unsettled(&self, _key: Option<&[u8]>) -> bool {
        false
    }

    /// Several stores, deletes or touches at once, answered in order. A tier
    /// that can pipeline sends them together (memcached: quiet opcodes and
    /// one noop, so only failures come back); this default awaits each.
    fn call_many(&self, cmds: Vec<Command>) -> BatchFuture {
        let calls: Vec<BackendFuture> = cmds.iter().map(|c| self.call(c)).collect();
        Box::pin(async move {
            let mut out = Vec::with_capacity(calls.len());
            for c in calls {
                out.push(c.await?);
            }
            Ok(out)
        })
    }
}

/// The runtimes a backend starts its tasks on: `workers`, or the current
/// runtime when there are none (tests and tools run on one).
pub(crate) fn workers_or_current(
    workers: &[tokio::runtime::Handle],
) -> Vec<tokio::runtime::Handle> {
    if workers.is_empty() {
        vec![tokio::runtime::Handle::current()]
    } else {
        workers.to_vec()
    }
}
