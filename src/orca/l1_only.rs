//! `l1-only`: every request goes to memcached and its answer comes back
//! unchanged. The proxy adds only what memcached lacks: refusing unsafe
//! input before it reaches memcached (DESIGN §2) and surviving memcached's
//! absence.

use std::sync::Arc;

use super::{answer_locally, backend_failure, l1_stats, ready, relay_admin, Admin, Orca, Reply};
use crate::backend::Backend;
use crate::metrics::Counters;
use crate::protocol::{Command, ErrorReply, Invalid, Request, Response};

pub struct L1Only<B> {
    l1: B,
    admin: Admin,
    counters: Arc<Counters>,
    meta: MetaRoute,
}

/// Where meta commands go.
pub enum MetaRoute {
    /// To memcached itself, over a text connection of their own
    /// ([`crate::backend::meta_lane`]).
    Lane(Box<dyn Backend>),
    /// To the L1 backend, which runs them (with `--chunked`,
    /// [`crate::backend::chunked`]).
    L1,
}

impl<B: Backend> L1Only<B> {
    pub fn new(l1: B, meta: MetaRoute, admin: Admin, counters: Arc<Counters>) -> Self {
        L1Only {
            l1,
            admin,
            counters,
            meta,
        }
    }
}

impl<B: Backend> Orca for L1Only<B> {
    fn orders_by_keys(&self) -> bool {
        !self.l1.starts_eagerly()
    }

    fn meta_apart(&self) -> bool {
        matches!(self.meta, MetaRoute::Lane(_))
    }

    fn handle(&mut self, req: &Request) -> Reply {
        if let Some(resp) = answer_locally(req, &self.counters) {
            return ready(resp);
        }
        if let Some(reply) = relay_admin(req, &self.admin) {
            return reply;
        }
        match &req.cmd {
            // memcached drops the old value when a set is refused as too
            // large, so a failed write never leaves the previous value
            // readable; rend refused it before memcached saw it, so it asks
            // for the delete itself.
            Command::Invalid(Invalid::TooLarge { delete: Some(key) }) => {
                let delete = self.l1.call(&Command::Delete {
                    key: key.clone(),
                    cas: 0,
                });
                Box::pin(async move {
                    let _ = delete.await;
                    Response::Error(ErrorReply::TooLarge)
                })
            }
            // memcached cannot tell an item's expiry, so GETE has no answer
            // in this mode.
            Command::GetE { .. } => ready(Response::Error(ErrorReply::UnknownCommand)),
            Command::Meta(_) => {
                let call = match &self.meta {
                    MetaRoute::Lane(lane) => lane.call(&req.cmd),
                    MetaRoute::L1 => self.l1.call(&req.cmd),
                };
                Box::pin(async move { call.await.unwrap_or_else(|e| backend_failure(&e)) })
            }
            cmd => {
                let call = match cmd {
                    Command::Stats { arg } => self.l1.call(&l1_stats(arg)),
                    cmd => self.l1.call(cmd),
                };
                Box::pin(async move {
                    match call.await {
                        Ok(resp) => resp,
                        Err(e) => backend_failure(&e),
                    }
                })
            }
        }
    }
}
