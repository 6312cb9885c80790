//! memcached 1.6.18's meta commands (`mg`, `ms`, `md`, `ma`, `me`) as pure
//! functions over an L2 [`Record`]: what `l1-l2` serves them with, L2 being
//! the source of truth for the item state they show and change (stale, win
//! token, fetched, last access, base64 key).
//!
//! Each follows memcached's `proto_text.c` step by step; the reply's flags
//! come in the request's order, and `mg` appends `Z`, `X`, `W` in that
//! order. The reference is memcached with its LRU maintainer off (as
//! `tests/meta_differential.rs` runs it): a fetch marks the item fetched
//! and moves its last access only when that is over a minute old, and
//! `ma` changes a number in place when the result fits in the old value.
//!
//! Times: `T`, `N` and `R` tokens are exptimes as memcached reads them (0
//! never, up to 30 days relative, above a Unix time, negative expired).

use bytes::Bytes;

use super::{arith_value, counted, expiry_of, joined, server_started, Effect, Record, Stamp};
use crate::backend::slab_classes::{self, SlabClasses};
use crate::protocol::meta::{base64, ArithMode, Code, Flag, MetaReply, MetaRequest, Verb};
use crate::protocol::StoreMode;

/// memcached's reply to `ma` on a value that is not a number.
pub const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value";

/// What a meta command did: the reply (`None` when `q` hides it) and what
/// to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaOutcome {
    pub reply: Option<MetaReply>,
    pub effect: Effect,
}

/// Whether running `req` needs a new cas unique (it may create an item or
/// change a value): the caller then passes one to [`apply_meta`].
pub fn needs_cas(req: &MetaRequest) -> bool {
    match req.verb {
        Verb::Set | Verb::Arith => true,
        Verb::Delete => req.has(b'I'),
        Verb::Get => req.has(b'N'),
        Verb::Noop | Verb::Debug => false,
    }
}

/// Run `req` on the live record `old` (`None`: absent, expired or flushed)
/// at `now`. `cas` is the unique of any item or value it creates;
/// `max_value` bounds what append and prepend may make.
pub fn apply_meta(
    req: &MetaRequest,
    old: Option<&Record>,
    now: u32,
    cas: u64,
    max_value: usize,
) -> MetaOutcome {
    let stamp = Stamp { now, cas };
    let (reply, effect, created) = match req.verb {
        Verb::Get => get(req, old, stamp),
        Verb::Set => {
            let (reply, effect) = set(req, old, stamp, max_value);
            (reply, effect, false)
        }
        Verb::Delete => {
            let (reply, effect) = delete(req, old, stamp);
            (reply, effect, false)
        }
        Verb::Arith => arith(req, old, stamp),
        Verb::Debug => (debug(req, old, now), Effect::Keep, false),
        Verb::Noop => (MetaReply::Noop, Effect::Keep, false),
    };
    let reply = (!req.hides(&reply, created)).then_some(reply);
    MetaOutcome { reply, effect }
}

/// An exptime token as an absolute expiry: 0 never; `None` already gone.
fn expiry_at(exptime: i32, now: u32) -> Option<u32> {
    match i64::from(exptime) {
        0 => Some(0),
        e => expiry_of(e, now),
    }
}

/// An exptime token as memcached compares it (`R`): 0 never, else the
/// absolute second (1 for one already gone).
fn time_at(exptime: i32, now: u32) -> u32 {
    expiry_at(exptime, now).unwrap_or(1)
}

/// `t`: seconds to live, `-1` for none. memcached writes an item whose
/// expiry has passed (set so by `T` with a past time) as an unsigned
/// difference on its clock, which starts at [`server_started`].
fn ttl_token(expiry: Option<u32>, now: u32) -> Bytes {
    match expiry {
        Some(0) => Bytes::from_static(b"-1"),
        Some(e) => Bytes::from(e.wrapping_sub(now).to_string()),
        None => {
            let started = server_started();
            let rel = 1u32.wrapping_sub(now.wrapping_sub(started));
            Bytes::from(rel.to_string())
        }
    }
}

fn number(n: impl ToString) -> Bytes {
    Bytes::from(n.to_string())
}

/// `k`: the key, base64 (and a `b` after it) when `binary`.
fn push_key(flags: &mut Vec<Flag>, key: &Bytes, binary: bool) {
    if binary {
        flags.push(Flag::new(b'k', base64::encode(key)));
        flags.push(Flag::new(b'b', Bytes::new()));
    } else {
        flags.push(Flag::new(b'k', key.clone()));
    }
}

/// The `O` and `k` flags alone, in request order: what every reply without
/// an item carries (`k` as the request named the key).
fn echo_only(req: &MetaRequest) -> Vec<Flag> {
    let mut flags = Vec::new();
    for f in &req.flags {
        match f.code {
            b'O' => flags.push(f.clone()),
            b'k' => push_key(&mut flags, &req.key, req.base64()),
            _ => {}
        }
    }
    flags
}

fn status(code: Code, flags: Vec<Flag>) -> MetaReply {
    MetaReply::Status { code, flags }
}

/// What to store after a command that ran on `it` (`before`: the record
/// as it was; `expiry` `None` when the command made it expire).
fn effect_of(it: Record, before: Option<&Record>, expiry: Option<u32>) -> Effect {
    match expiry {
        None => Effect::Delete,
        Some(expiry) => {
            let it = Record { expiry, ..it };
            if before == Some(&it) {
                Effect::Keep
            } else {
                Effect::Put(it)
            }
        }
    }
}

/// `mg`.
fn get(req: &MetaRequest, old: Option<&Record>, stamp: Stamp) -> (MetaReply, Effect, bool) {
    let now = stamp.now;
    let (mut it, created) = match (old, req.vivify()) {
        (Some(o), _) => (o.clone(), false),
        // An empty item, won by this request (its `N` sets the TTL).
        (None, Some(_)) => (stamp.record(0, 0, Bytes::new()), true),
        (None, None) => return (status(Code::Miss, echo_only(req)), Effect::Keep, false),
    };
    let mut expiry = Some(it.expiry);
    let mut won = false;
    let mut flags = Vec::new();
    for f in &req.flags {
        match f.code {
            b'T' => expiry = req.ttl().and_then(|t| expiry_at(t, now)),
            b'N' if created => {
                expiry = req.vivify().and_then(|t| expiry_at(t, now));
                won = true;
            }
            b'R' => {
                let e = expiry.unwrap_or(1);
                let recache = req.recache().map_or(0, |r| time_at(r, now));
                if !it.state.won && !created && e != 0 && e < recache {
                    won = true;
                }
            }
            b's' => flags.push(Flag::new(b's', number(it.value.len()))),
            b't' => flags.push(Flag::new(b't', ttl_token(expiry, now))),
            b'c' => flags.push(Flag::new(b'c', number(it.cas))),
            b'f' => flags.push(Flag::new(b'f', number(it.flags))),
            b'l' => flags.push(Flag::new(b'l', number(it.state.idle(now)))),
            b'h' => flags.push(Flag::new(b'h', number(u8::from(it.state.fetched)))),
            b'O' => flags.push(f.clone()),
            b'k' => push_key(&mut flags, &req.key, it.state.binary_key),
            _ => {}
        }
    }
    if it.state.won {
        flags.push(Flag::new(b'Z', Bytes::new()));
    }
    if it.state.stale {
        flags.push(Flag::new(b'X', Bytes::new()));
        won |= !it.state.won;
    }
    if won {
        flags.push(Flag::new(b'W', Bytes::new()));
        it.state.won = true;
    }
    if !req.has(b'u') {
        it.state.bump(now);
    }
    let reply = if req.has(b'v') {
        MetaReply::Value {
            flags,
            data: it.value.clone(),
        }
    } else {
        status(Code::Header, flags)
    };
    let before = if created { None } else { old };
    (reply, effect_of(it, before, expiry), created)
}

/// How an `ms`'s cas compares with the item's (memcached's `cas_result`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum CasResult {
    None,
    Match,
    /// Older than the item's, and `I` allows it.
    Stale,
    BadValue,
}

/// An item an `ms` would store, and its expiry (`None`: already gone).
struct Pending {
    item: Record,
    expiry: Option<u32>,
}

/// `ms`.
fn set(
    req: &MetaRequest,
    old: Option<&Record>,
    stamp: Stamp,
    max_value: usize,
) -> (MetaReply, Effect) {
    let mode = req.store_mode().unwrap_or(StoreMode::Set);
    let mut item = stamp.record(
        req.client_flags().unwrap_or(0),
        0,
        req.value.clone().unwrap_or_default(),
    );
    item.state.binary_key = req.base64();
    let new = Pending {
        item,
        expiry: expiry_at(req.ttl().unwrap_or(0), stamp.now),
    };
    let outcome = match old {
        Some(o) => {
            let stale_ok = req.has(b'I') && mode == StoreMode::Cas;
            let cas = match req.compare_cas().unwrap_or(0) {
                0 => CasResult::None,
                w if w == o.cas => CasResult::Match,
                w if stale_ok && w < o.cas => CasResult::Stale,
                _ => CasResult::BadValue,
            };
            over(o, mode, cas, new, stamp, max_value)
        }
        None => match mode {
            StoreMode::Set | StoreMode::Add => Ok(new),
            StoreMode::Cas => Err((Code::NotFound, Effect::Keep)),
            _ => Err((Code::NotStored, Effect::Keep)),
        },
    };
    let (code, cas, effect) = match outcome {
        Ok(p) => (Code::Header, p.item.cas, effect_of(p.item, None, p.expiry)),
        Err((code, effect)) => (code, 0, effect),
    };
    let mut flags = Vec::new();
    for f in &req.flags {
        match f.code {
            b'O' => flags.push(f.clone()),
            b'k' => push_key(&mut flags, &req.key, req.base64()),
            b'c' => flags.push(Flag::new(b'c', number(cas))),
            _ => {}
        }
    }
    (status(code, flags), effect)
}

/// An `ms` over the live item `o`: what it stores, or why it stores
/// nothing (and what happens to `o` then), as memcached's `do_store_item`.
fn over(
    o: &Record,
    mode: StoreMode,
    cas: CasResult,
    mut new: Pending,
    stamp: Stamp,
    max_value: usize,
) -> Result<Pending, (Code, Effect)> {
    match mode {
        StoreMode::Add => {
            // memcached updates the item it did not replace.
            let mut kept = o.clone();
            kept.state.update(stamp.now);
            Err((Code::NotStored, effect_of(kept, Some(o), Some(o.expiry))))
        }
        StoreMode::Cas if cas == CasResult::Match => Ok(new),
        StoreMode::Cas if cas == CasResult::Stale => {
            // The value goes in, keeping the TTL and the win state, and the
            // item is stale.
            new.item.state.stale = true;
            new.item.state.won = o.state.won;
            new.expiry = Some(o.expiry);
            Ok(new)
        }
        StoreMode::Cas => Err((Code::Exists, Effect::Keep)),
        StoreMode::Append | StoreMode::Prepend => {
            if !matches!(cas, CasResult::None | CasResult::Match) {
                Err((Code::Exists, Effect::Keep))
            } else if o.value.len() + new.item.value.len() > max_value {
                Err((Code::NotStored, Effect::Keep))
            } else {
                let value = joined(&o.value, &new.item.value, mode == StoreMode::Append);
                Ok(Pending {
                    item: stamp.record(o.flags, o.expiry, value),
                    expiry: Some(o.expiry),
                })
            }
        }
        StoreMode::Set | StoreMode::Replace => Ok(new),
    }
}

/// `md`.
fn delete(req: &MetaRequest, old: Option<&Record>, stamp: Stamp) -> (MetaReply, Effect) {
    let flags = echo_only(req);
    let Some(o) = old else {
        return (status(Code::NotFound, flags), Effect::Keep);
    };
    if req.has(b'C') && req.compare_cas() != Some(o.cas) {
        return (status(Code::Exists, flags), Effect::Keep);
    }
    if !req.has(b'I') {
        return (status(Code::Header, flags), Effect::Delete);
    }
    // Invalidate: the item stays, stale, with a new cas, and the next
    // fetch may win.
    let mut it = o.clone();
    it.cas = stamp.cas;
    it.state.stale = true;
    it.state.won = false;
    let expiry = match req.ttl() {
        Some(t) => expiry_at(t, stamp.now),
        None => Some(o.expiry),
    };
    (status(Code::Header, flags), effect_of(it, Some(o), expiry))
}

/// `ma`.
fn arith(req: &MetaRequest, old: Option<&Record>, stamp: Stamp) -> (MetaReply, Effect, bool) {
    let incr = req.arith_mode() != Some(ArithMode::Decr);
    let delta = req.delta().unwrap_or(1);
    // A number that no longer fits is a new item (see `counted`); like
    // memcached, `T` then changes the copy it replaced, so only the reply's
    // `t` sees it.
    let mut grew = false;
    let (it, digits, created) = match old {
        Some(o) => {
            let non_numeric = || {
                let reply = MetaReply::Error(Bytes::from_static(NON_NUMERIC.as_bytes()));
                (reply, Effect::Keep, false)
            };
            // memcached refuses an empty value before it compares the cas,
            // and any other value that is not a number after.
            if o.value.is_empty() {
                return non_numeric();
            }
            let want = req.compare_cas().unwrap_or(0);
            if want != 0 && want != o.cas {
                return (status(Code::Exists, echo_only(req)), Effect::Keep, false);
            }
            let Some((n, padded)) = arith_value(&o.value, incr, delta) else {
                return non_numeric();
            };
            grew = padded.len() > o.value.len();
            (counted(o, padded, stamp), n.to_string(), false)
        }
        None if req.vivify().is_some() => {
            let n = req.initial().unwrap_or(0).to_string();
            (stamp.record(0, 0, Bytes::from(n.clone())), n, true)
        }
        None => return (status(Code::NotFound, echo_only(req)), Effect::Keep, false),
    };
    let now = stamp.now;
    let mut expiry = Some(it.expiry);
    let mut flags = Vec::new();
    for f in &req.flags {
        match f.code {
            b'c' => flags.push(Flag::new(b'c', number(it.cas))),
            b't' => flags.push(Flag::new(b't', ttl_token(expiry, now))),
            b'T' => expiry = req.ttl().and_then(|t| expiry_at(t, now)),
            b'N' if created => expiry = req.vivify().and_then(|t| expiry_at(t, now)),
            b'O' => flags.push(f.clone()),
            b'k' => push_key(&mut flags, &req.key, req.base64()),
            _ => {}
        }
    }
    let reply = if req.has(b'v') {
        MetaReply::Value {
            flags,
            data: Bytes::from(digits),
        }
    } else {
        status(Code::Header, flags)
    };
    let expiry = if grew { Some(it.expiry) } else { expiry };
    (reply, effect_of(it, None, expiry), created)
}

/// `me`: memcached's debug line, from the record. `cls` and `size` are
/// what a memcached with default slab settings would use for the item.
fn debug(req: &MetaRequest, old: Option<&Record>, now: u32) -> MetaReply {
    let Some(o) = old else {
        return status(Code::Miss, Vec::new());
    };
    let key = if o.state.binary_key {
        Bytes::from(base64::encode(&req.key))
    } else {
        req.key.clone()
    };
    let exp = match o.expiry {
        0 => -1,
        e => i64::from(now) - i64::from(e),
    };
    let size = slab_classes::item_size(req.key.len(), o.flags, o.value.len());
    let info = format!(
        "exp={exp} la={} cas={} fetch={} cls={} size={size}",
        o.state.idle(now),
        o.cas,
        if o.state.fetched { "yes" } else { "no" },
        slab_class(size),
    );
    MetaReply::Debug {
        key,
        info: Bytes::from(info),
    }
}

/// The slab class memcached's defaults put an item of `size` bytes in.
fn slab_class(size: u64) -> usize {
    static DEFAULT: std::sync::OnceLock<SlabClasses> = std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(SlabClasses::memcached_default)
        .class_of(size)
}

#[cfg(test)]
mod tests;
