//! A backend that counts what passes through it: each call's command and
//! outcome, its latency and the calls in flight, into one tier's
//! [`TierMetrics`]. It starts the inner call inside `call` (so an eager
//! tier stays eager) and adds one boxed future per call.

use std::sync::Arc;
use std::time::Instant;

use super::{Backend, BackendFuture, BatchFuture};
use crate::metrics::ops::{Shape, TierMetrics};
use crate::protocol::Command;

#[derive(Clone)]
pub struct Instrumented<B> {
    inner: B,
    tier: Arc<TierMetrics>,
}

impl<B> Instrumented<B> {
    pub fn new(inner: B, tier: Arc<TierMetrics>) -> Self {
        Instrumented { inner, tier }
    }
}

/// Counts calls in flight; a call whose future is dropped unanswered ends
/// here too.
struct InFlight {
    tier: Arc<TierMetrics>,
    n: i64,
}

impl InFlight {
    fn new(tier: &Arc<TierMetrics>, n: i64) -> Self {
        tier.started(n);
        InFlight {
            tier: tier.clone(),
            n,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.tier.ended(self.n);
    }
}

impl<B: Backend> Backend for Instrumented<B> {
    fn starts_eagerly(&self) -> bool {
        self.inner.starts_eagerly()
    }

    fn unsettled(&self, key: Option<&[u8]>) -> bool {
        self.inner.unsettled(key)
    }

    fn call(&self, cmd: &Command) -> BackendFuture {
        let start = Instant::now();
        let inflight = InFlight::new(&self.tier, 1);
        let shape = Shape::of(cmd);
        let call = self.inner.call(cmd);
        Box::pin(async move {
            let result = call.await;
            inflight
                .tier
                .ops
                .record_shape(shape, result.as_ref().ok(), start.elapsed());
            drop(inflight);
            result
        })
    }

    /// Each command of the batch counts as one call with its own outcome
    /// and the batch's latency.
    fn call_many(&self, cmds: Vec<Command>) -> BatchFuture {
        let start = Instant::now();
        let inflight = InFlight::new(&self.tier, cmds.len() as i64);
        let shapes: Vec<Shape> = cmds.iter().map(Shape::of).collect();
        let call = self.inner.call_many(cmds);
        Box::pin(async move {
            let result = call.await;
            let elapsed = start.elapsed();
            let ops = &inflight.tier.ops;
            match &result {
                Ok(replies) => {
                    for (shape, resp) in shapes.iter().zip(replies) {
                        ops.record_shape(*shape, Some(resp), elapsed);
                    }
                }
                Err(_) => {
                    for shape in &shapes {
                        ops.record_shape(*shape, None, elapsed);
                    }
                }
            }
            drop(inflight);
            result
        })
    }
}
