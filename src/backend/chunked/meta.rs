//! Meta commands on chunked values: the value is read and verified as for
//! any read, memcached 1.6.18's rules run over it as over an L2 record
//! ([`crate::backend::record::meta`]), and what they decide is written back
//! as the chunked layout keeps it:
//!
//! - a new value (`ms`, `ma`, a vivifying `mg`, `md … I`, which bumps the
//!   cas) is a whole write, guarded by the old metadata's cas (or an add),
//!   whose new cas goes into the reply's `c`;
//! - a new expiry (`mg … T`) moves memcached's expiry of the metadata and
//!   every chunk, as touch does;
//! - the item state (fetched, last access, stale, win token, base64 key)
//!   lives in the value's `-ttl` record, tied to its token, so any write of
//!   a new value starts from a fresh state, as a new item does in
//!   memcached.
//!
//! Under the key's write lock; losing the cas guard to another writer (key
//! locks off, or another rend) runs the command again on the new value.

use bytes::Bytes;

use super::layout::{base_key, ttl_key, ttl_record};
use super::rmw::RMW_TRIES;
use super::{Chunked, Found, Item, Meta, MetaWrite};
use crate::backend::record::meta::{apply_meta, needs_cas, MetaOutcome};
use crate::backend::record::{Effect, ItemState, Record};
use crate::backend::{Backend, BackendError};
use crate::protocol::expiry;
use crate::protocol::meta::{MetaReply, MetaRequest, Verb};
use crate::protocol::{Command, Response, StoreMode};

/// What [`Chunked::decide`] found and decided.
type Decided = (Option<(Record, Meta)>, MetaWrite, MetaOutcome);

/// The cas a new value's reply carries until memcached has given the
/// metadata its own (no memcached hands this one out).
const PENDING_CAS: u64 = u64::MAX - 1;

impl<B: Backend + Clone> Chunked<B> {
    /// One meta command on `req.key`.
    pub(super) async fn meta(&self, req: &MetaRequest) -> Result<Response, BackendError> {
        let key = std::slice::from_ref(&req.key);
        // Most `mg`s change nothing: decided under the key's read lock,
        // they answer without waiting for its writers' lock.
        if matches!(req.verb, Verb::Get | Verb::Debug) {
            let _shared = self.lock_read(key).await;
            let (_, _, out) = self.decide(req).await?;
            if out.effect == Effect::Keep {
                return Ok(out.reply.map_or(Response::Nothing, Response::Meta));
            }
        }
        let _guard = self.lock_write(key).await;
        let key = &req.key;
        for attempt in 0..RMW_TRIES {
            if attempt > 0 {
                Self::back_off(attempt).await;
            }
            let (old, guard, out) = self.decide(req).await?;
            let reply = match out.effect {
                Effect::Keep => Some(out.reply),
                Effect::Delete => {
                    if let Some((r, _)) = &old {
                        if let Response::Exists = self.delete(key, r.cas).await? {
                            continue;
                        }
                    }
                    if !needs_cas(req) {
                        Some(out.reply)
                    } else {
                        // Stored already expired (`ms … T-1 c`): as memcached
                        // does, store it, expired, for its cas.
                        let gone = Item {
                            key,
                            flags: 0,
                            expiry: -1,
                            value: &[],
                        };
                        match self.write(&gone, MetaWrite::Set).await? {
                            Response::Stored { cas } => Some(out.reply.map(|r| with_cas(r, cas))),
                            failed => return Ok(failed),
                        }
                    }
                }
                Effect::Put(new) if new.cas == PENDING_CAS => {
                    match self.rewrite(key, &new, guard).await? {
                        Ok(cas) => Some(out.reply.map(|r| with_cas(r, cas))),
                        Err(Some(failed)) => return Ok(failed),
                        Err(None) => None,
                    }
                }
                Effect::Put(new) => {
                    // Same value and cas: the expiry or the state moved.
                    // (`apply_meta` keeps a version only of a live record.)
                    let Some((r, meta)) = &old else {
                        return Ok(Response::Nothing);
                    };
                    let base = base_key(key);
                    let exptime = i64::from(new.expiry);
                    let mut cmds = Vec::new();
                    if new.expiry != r.expiry {
                        cmds = super::touches(&base, meta, exptime);
                    }
                    cmds.push(state_store(&base, &meta.token, exptime, &new.state));
                    self.inner.call_many(cmds).await?;
                    Some(out.reply)
                }
            };
            if let Some(reply) = reply {
                return Ok(reply.map_or(Response::Nothing, Response::Meta));
            }
        }
        Ok(super::rmw::busy())
    }

    /// Read the value and run the command on it: the value as a record
    /// (with its metadata), the guard a write of it takes, and what the
    /// command decided.
    async fn decide(&self, req: &MetaRequest) -> Result<Decided, BackendError> {
        let (old, guard) = match self.read_one(&req.key).await? {
            Found::Hit { value, meta, state } => {
                let record = Record {
                    flags: value.flags,
                    expiry: meta.expiry,
                    cas: value.cas,
                    value: value.data,
                    state,
                };
                (Some((record, meta)), MetaWrite::Cas(value.cas))
            }
            // Broken: absent, and replaced only if nobody else wrote.
            Found::Invalid { meta_cas } => (None, MetaWrite::Cas(meta_cas)),
            Found::Absent => (None, MetaWrite::Add),
        };
        let cas = if needs_cas(req) { PENDING_CAS } else { 0 };
        let record = old.as_ref().map(|(r, _)| r);
        let out = apply_meta(req, record, expiry::now(), cas, self.opts.max_value);
        Ok((old, guard, out))
    }

    /// Write `new` as a whole value guarded by `how`, then its state: the
    /// new cas; `Err(None)` when another writer got there first (run
    /// again), `Err(Some(reply))` when the write failed.
    async fn rewrite(
        &self,
        key: &Bytes,
        new: &Record,
        how: MetaWrite,
    ) -> Result<Result<u64, Option<Response>>, BackendError> {
        let item = Item {
            key,
            flags: new.flags,
            expiry: i64::from(new.expiry),
            value: &new.value,
        };
        // A state other than a new value's goes in its `-ttl` record.
        let state = (new.state != ItemState::new(new.state.accessed)).then_some(new.state);
        match self.write_state(&item, how, state).await? {
            Response::Stored { cas } => Ok(Ok(cas)),
            Response::Exists | Response::NotFound | Response::NotStored => Ok(Err(None)),
            failed => Ok(Err(Some(failed))),
        }
    }
}

/// The `-ttl` record of the value with `token`: its expiry and state.
pub(super) fn state_store(
    base: &[u8],
    token: &[u8; super::TOKEN_LEN],
    expiry: i64,
    state: &ItemState,
) -> Command {
    Command::Store {
        mode: StoreMode::Set,
        key: ttl_key(base),
        flags: 0,
        exptime: expiry,
        cas: 0,
        value: ttl_record(token, expiry, state),
    }
}

/// The reply with the new value's cas where it said [`PENDING_CAS`].
fn with_cas(mut reply: MetaReply, cas: u64) -> MetaReply {
    let pending = PENDING_CAS.to_string();
    if let MetaReply::Value { flags, .. } | MetaReply::Status { flags, .. } = &mut reply {
        for f in flags
            .iter_mut()
            .filter(|f| f.code == b'c' && f.token == pending.as_bytes())
        {
            f.token = Bytes::from(cas.to_string());
        }
    }
    reply
}
