//! What the two-tier policies (`l1-l2` and `l1-l2-batch`) share: L2 is the
//! source of truth, L1 a cache of whole L2 records that never disagrees
//! with it. The policies differ only in how they write L1 ([`Policy`]).
//!
//! - Writes run under the key's exclusive lock: L2 decides and answers, then
//!   L1 gets the resulting record (or a delete, or a touch). Without the
//!   lock two writers could reach L1 in the opposite order from L2.
//! - Reads ask L1; misses read L2 and back-fill L1 with `add` carrying L2's
//!   flags and absolute expiry, under the key's shared lock, so a delete
//!   cannot slip between the L2 read and the back-fill. `flush_all` takes
//!   every stripe.
//! - Meta commands are served from L2 alone ([`Shared::meta`]), which keeps
//!   the item state they see; a meta write drops L1's copy.
//! - L2's cas is the only cas clients see. L1 keeps it beside the value: an
//!   L1 item is [`L1_TAG`], the L2 cas (u64, big-endian), then the value, with
//!   the client's flags. An L1 item without the tag is ignored (a miss).
//! - A key whose L1 write, delete or touch failed or timed out is *suspect*
//!   ([`L1Trust`], in `two_tier/trust.rs`): reads ignore its L1 copy until
//!   an L1 write or delete of it succeeds. The L1 client routes every key
//!   to one connection, so a timed-out write still queued in memcached lands
//!   before the later one that clears the suspicion; when that connection
//!   stalled and was replaced, the old socket may still deliver it, so only
//!   a write issued once the old socket has settled clears
//!   ([`Backend::unsettled`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::{answer_locally, backend_failure, l1_stats, ready, relay_admin, Admin, Orca, Reply};
use crate::backend::record::{flush_when, server_started, FlushWhen};
use crate::backend::Backend;
use crate::locks::KeyLocks;
use crate::metrics::Counters;
use crate::protocol::expiry;
use crate::protocol::meta::{MetaRequest, Verb};
use crate::protocol::{Command, ErrorReply, Invalid, Request, Response, StoreMode, Value};
use crate::ratelimit::RateLimit;

mod trust;

pub use trust::L1Trust;

/// First byte of every L1 item a two-tier policy writes.
pub const L1_TAG: u8 = 0xA5;
/// Bytes the two-tier policies add to each L1 item.
pub const L1_HEADER: usize = 9;

/// How a policy writes L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The verb that refreshes L1 after an L2 write: `Set` puts every
    /// written key in L1; `Replace` refreshes only keys already there.
    pub l1_write: StoreMode,
    /// Whether read misses back-fill L1.
    pub backfill: bool,
}

/// The L1 item for an L2 record's cas and value.
pub fn wrap(cas: u64, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(L1_HEADER + data.len());
    b.put_u8(L1_TAG);
    b.put_u64(cas);
    b.put_slice(data);
    b.freeze()
}

/// Whether an L1 item was written by a two-tier policy.
fn is_tagged(data: &[u8]) -> bool {
    data.len() >= L1_HEADER && data[0] == L1_TAG
}

/// Strip a tagged L1 item's header in place; its L2 cas.
fn untag(data: &mut Bytes) -> u64 {
    let mut cas = [0u8; 8];
    cas.copy_from_slice(&data[1..L1_HEADER]);
    bytes::Buf::advance(data, L1_HEADER);
    u64::from_be_bytes(cas)
}

/// The cas and value in an L1 item, if a two-tier policy wrote it.
pub fn unwrap(data: &Bytes) -> Option<(u64, Bytes)> {
    if data.len() < L1_HEADER || data[0] != L1_TAG {
        return None;
    }
    let mut cas = [0u8; 8];
    cas.copy_from_slice(&data[1..L1_HEADER]);
    Some((u64::from_be_bytes(cas), data.slice(L1_HEADER..)))
}

/// State shared by every connection of both listeners.
pub struct Shared<B1, B2> {
    pub l1: B1,
    pub l2: B2,
    /// Always on: writes and back-fills take them.
    pub locks: Arc<KeyLocks>,
    /// `--locked`: L1 hits take the shared lock too, so no read overlaps a
    /// write of its key.
    pub read_locks: bool,
    pub trust: Arc<L1Trust>,
    /// memcached's admin commands, relayed over text.
    pub admin: Admin,
    pub counters: Arc<Counters>,
    /// The second (Unix time) a delayed flush_all fires at, 0 for none: a
    /// recovery flush of L1 must not forget it, and a back-fill must not
    /// outlive it.
    flush_at: AtomicU64,
    /// How long an L1 request may take (`--l1-timeout-ms`).
    l1_timeout: Duration,
}

fn bump(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The key a write names.
fn write_key(cmd: &Command) -> Option<&Bytes> {
    match cmd {
        Command::Store { .. }
        | Command::Delete { .. }
        | Command::Touch { .. }
        | Command::Arith { .. } => cmd.keys().first(),
        _ => None,
    }
}

/// The command with every exptime made absolute, so L2 and L1 expire the
/// item at the same second.
fn absolutize(mut cmd: Command, now: u32) -> Command {
    match &mut cmd {
        Command::Store { exptime, .. } | Command::Touch { exptime, .. } => {
            *exptime = expiry::absolute(*exptime, now)
        }
        Command::Arith {
            create: Some((_, exptime)),
            ..
        } => *exptime = expiry::absolute(*exptime, now),
        _ => {}
    }
    cmd
}

/// How [`Shared`] locks and how long it waits for L1: one setting for
/// both listeners.
pub struct SharedSettings {
    /// Key locks: writes and back-fills always take them.
    pub locks: Arc<KeyLocks>,
    /// `--locked`: L1 hits take the shared lock too.
    pub read_locks: bool,
    /// `--l1-timeout-ms`.
    pub l1_timeout: Duration,
}

/// An L2 record as L1 gets it: the key, the client's flags, the absolute
/// expiry, L2's cas and the value (see [`wrap`]).
struct L1Copy<'a> {
    key: &'a Bytes,
    flags: u32,
    exptime: i64,
    cas: u64,
    data: &'a Bytes,
}

impl<B1: Backend + Clone, B2: Backend + Clone> Shared<B1, B2> {
    pub fn new(
        l1: B1,
        l2: B2,
        admin: Admin,
        counters: Arc<Counters>,
        settings: SharedSettings,
    ) -> Arc<Self> {
        let SharedSettings {
            locks,
            read_locks,
            l1_timeout,
        } = settings;
        let shared = Arc::new(Shared {
            l1,
            l2,
            locks,
            read_locks,
            trust: Arc::new(L1Trust::default()),
            admin,
            counters,
            flush_at: AtomicU64::new(0),
            l1_timeout,
        });
        tokio::spawn(recover(Arc::downgrade(&shared)));
        shared
    }

    async fn run(self: Arc<Self>, policy: Policy, cmd: Command) -> Response {
        match cmd {
            // memcached drops the key when a set is refused as too large.
            Command::Invalid(Invalid::TooLarge { delete: Some(key) }) => {
                let _ = self.write(policy, Command::Delete { key, cas: 0 }).await;
                Response::Error(ErrorReply::TooLarge)
            }
            Command::Get { keys, touch: None } => self.get(policy, keys).await,
            Command::Get {
                keys,
                touch: Some(exptime),
            } => self.gat(policy, keys, exptime).await,
            // GETE: L2 knows the expiry.
            cmd @ Command::GetE { .. } => match self.l2.call(&cmd).await {
                Ok(Response::NotFound) => Response::Values(Vec::new()),
                Ok(r) => r,
                Err(e) => backend_failure(&e),
            },
            cmd @ (Command::Store { .. }
            | Command::Delete { .. }
            | Command::Touch { .. }
            | Command::Arith { .. }) => self.write(policy, cmd).await,
            Command::Flush { delay } => self.flush(delay).await,
            Command::Meta(req) => self.meta(req).await,
            // A binary `stats <group>` is memcached's (a text one went to
            // the admin lane).
            Command::Stats { arg } => match self.l1.call(&l1_stats(&arg)).await {
                Ok(r) => r,
                Err(e) => backend_failure(&e),
            },
            _ => Response::Error(ErrorReply::UnknownCommand),
        }
    }

    async fn get(self: Arc<Self>, policy: Policy, keys: Vec<Bytes>) -> Response {
        if keys.len() == 1 && !self.read_locks {
            return self.get_one(policy, keys).await;
        }
        self.get_many(policy, keys).await
    }

    /// The common case, one key: an L1 hit is answered without the
    /// bookkeeping of a multi-get; anything else takes the general path.
    async fn get_one(self: Arc<Self>, policy: Policy, keys: Vec<Bytes>) -> Response {
        let key = &keys[0];
        if self.trust.all_suspect() || self.trust.is_suspect(key) {
            return Box::pin(self.get_many(policy, keys)).await;
        }
        let cmd = Command::Get { keys, touch: None };
        let result = self.l1.call(&cmd).await;
        let Command::Get { keys, .. } = cmd else {
            return Response::Error(ErrorReply::UnknownCommand);
        };
        let l1_failed = match result {
            Ok(Response::Values(mut values)) => {
                if let Some(v) = values.first_mut() {
                    // Not suspect when the read was sent (above) nor now.
                    if is_tagged(&v.data) && !self.trust.is_suspect(&v.key) {
                        v.cas = untag(&mut v.data);
                        values.truncate(1);
                        return Response::Values(values);
                    }
                }
                false
            }
            _ => {
                self.l1_read_failed();
                true
            }
        };
        // A miss (or a copy L1 may not serve): L2 decides, and back-fills.
        Box::pin(self.get_misses(policy, keys, HashMap::new(), l1_failed, None)).await
    }

    fn l1_read_failed(&self) {
        bump(&self.counters.counts.l1_read_failures);
        static READS: RateLimit = RateLimit::new(10_000);
        crate::warn_limited!(READS, tier = "L1", "L1 read failed; answering from L2");
    }

    async fn get_many(self: Arc<Self>, policy: Policy, keys: Vec<Bytes>) -> Response {
        let guard = if self.read_locks {
            Some(self.locks.read(keys.iter().map(|k| &k[..])).await)
        } else {
            None
        };
        let mut found: HashMap<Bytes, Value> = HashMap::new();
        let mut l1_failed = self.trust.all_suspect();
        // A key suspect when the read is sent stays suspect for this read:
        // memcached may answer it from the stale copy before it applies a
        // write (queued after the read) whose success lifts the suspicion,
        // and rend may see that success before it sees the read's reply.
        let doubted: Vec<&Bytes> = keys.iter().filter(|k| self.trust.is_suspect(k)).collect();
        if !l1_failed {
            match self
                .l1
                .call(&Command::Get {
                    keys: keys.clone(),
                    touch: None,
                })
                .await
            {
                Ok(Response::Values(values)) => {
                    for v in values {
                        if let Some((cas, data)) = unwrap(&v.data) {
                            if !self.trust.is_suspect(&v.key) && !doubted.contains(&&v.key) {
                                found.insert(
                                    v.key.clone(),
                                    Value {
                                        key: v.key,
                                        flags: v.flags,
                                        cas,
                                        data,
                                    },
                                );
                            }
                        }
                    }
                }
                _ => {
                    l1_failed = true;
                    self.l1_read_failed();
                }
            }
        }
        self.get_misses(policy, keys, found, l1_failed, guard).await
    }

    /// The rest of a get once L1 has answered what it could (`found`): the
    /// misses from L2, back-filled into L1 unless L1 failed.
    async fn get_misses(
        self: Arc<Self>,
        policy: Policy,
        keys: Vec<Bytes>,
        mut found: HashMap<Bytes, Value>,
        l1_failed: bool,
        guard: Option<crate::locks::Guard>,
    ) -> Response {
        let mut misses: Vec<Bytes> = keys
            .iter()
            .filter(|k| !found.contains_key(*k))
            .cloned()
            .collect();
        misses.sort_unstable();
        misses.dedup();
        if !misses.is_empty() {
            let miss_guard = if guard.is_none() {
                Some(self.locks.read(misses.iter().map(|k| &k[..])).await)
            } else {
                None
            };
            let lookups = misses
                .iter()
                .map(|key| Command::GetE { key: key.clone() })
                .collect();
            let replies = match self.l2.call_many(lookups).await {
                Ok(r) => r,
                Err(e) => return backend_failure(&e),
            };
            let mut backfill = Vec::new();
            for (key, reply) in misses.into_iter().zip(replies) {
                bump(&self.counters.counts.l2_gets);
                if let Response::ValueE { value, expiry } = reply {
                    bump(&self.counters.counts.l2_get_hits);
                    if policy.backfill && !l1_failed {
                        backfill.push((value.clone(), expiry));
                    }
                    found.insert(key, value);
                }
            }
            if !backfill.is_empty() {
                // The reply need not wait; the locks stay held until L1 is
                // filled.
                let shared = self.clone();
                tokio::spawn(async move {
                    shared.backfill(backfill).await;
                    drop(miss_guard);
                    drop(guard);
                });
            }
        }
        Response::Values(keys.iter().filter_map(|k| found.get(k).cloned()).collect())
    }

    /// Put L2's records in L1 with `add`, so a write that got there first is
    /// kept. A suspect key's stale copy is deleted first.
    async fn backfill(&self, records: Vec<(Value, u32)>) {
        for (v, expiry) in records {
            if self.flush_may_hide(v.cas) {
                continue;
            }
            if self.trust.is_suspect(&v.key) {
                if self.trust.all_suspect() {
                    return;
                }
                let settled = self.settled(&v.key);
                match self
                    .l1
                    .call(&Command::Delete {
                        key: v.key.clone(),
                        cas: 0,
                    })
                    .await
                {
                    Ok(Response::Deleted | Response::NotFound) if settled => {
                        self.trust.clear(&v.key)
                    }
                    _ => continue,
                }
            }
            let add = Command::Store {
                mode: StoreMode::Add,
                key: v.key.clone(),
                flags: v.flags,
                exptime: i64::from(expiry),
                cas: 0,
                value: wrap(v.cas, &v.data),
            };
            match self.l1.call(&add).await {
                Ok(Response::Stored { .. }) => bump(&self.counters.counts.l1_backfills),
                Ok(_) => {}
                // The add may still land later: the copy is suspect.
                Err(_) => {
                    self.l1_write_failed();
                    self.trust.suspect(&v.key);
                    return;
                }
            }
        }
    }

    async fn gat(&self, policy: Policy, keys: Vec<Bytes>, exptime: i64) -> Response {
        let exptime = expiry::absolute(exptime, expiry::now());
        let _guard = self.locks.write(keys.iter().map(|k| &k[..])).await;
        let values = match self
            .l2
            .call(&Command::Get {
                keys,
                touch: Some(exptime),
            })
            .await
        {
            Ok(Response::Values(v)) => v,
            Ok(other) => return other,
            Err(e) => return backend_failure(&e),
        };
        for v in &values {
            let copy = L1Copy {
                key: &v.key,
                flags: v.flags,
                exptime,
                cas: v.cas,
                data: &v.data,
            };
            self.l1_put(policy, copy).await;
        }
        Response::Values(values)
    }

    async fn write(&self, policy: Policy, cmd: Command) -> Response {
        let Some(key) = write_key(&cmd).cloned() else {
            return Response::Error(ErrorReply::UnknownCommand);
        };
        let cmd = absolutize(cmd, expiry::now());
        let _guard = self.locks.write([&key[..]]).await;
        let resp = match self.l2.call(&cmd).await {
            Ok(r) => r,
            Err(e) => return backend_failure(&e),
        };
        match (&cmd, &resp) {
            (
                Command::Store {
                    mode: StoreMode::Append | StoreMode::Prepend,
                    ..
                },
                Response::Stored { .. },
            )
            | (Command::Arith { .. }, Response::Numeric { .. }) => {
                self.l1_refresh(policy, &key).await
            }
            (
                Command::Store {
                    flags,
                    exptime,
                    value,
                    ..
                },
                Response::Stored { cas },
            ) => {
                let copy = L1Copy {
                    key: &key,
                    flags: *flags,
                    exptime: *exptime,
                    cas: *cas,
                    data: value,
                };
                self.l1_put(policy, copy).await
            }
            (Command::Delete { .. }, Response::Deleted | Response::NotFound) => {
                self.l1_delete(&key).await
            }
            (Command::Touch { exptime, .. }, Response::Touched { .. }) => {
                self.l1_touch(&key, *exptime).await
            }
            // L2 has no such item, so L1 must not have one either.
            (Command::Touch { .. }, Response::NotFound) => self.l1_delete(&key).await,
            _ => {}
        }
        resp
    }

    /// A meta command, served from L2 alone: L2 keeps the item state meta
    /// commands see (stale, win token, fetched, last access), so it is the
    /// same across an L1 eviction or restart. Under the key's lock, as a
    /// write: a command that may change the value, flags, expiry or cas
    /// (every `ms`, `md` and `ma`, and an `mg` with `T`) drops L1's copy,
    /// which the next classic read refills from L2.
    async fn meta(&self, req: Arc<MetaRequest>) -> Response {
        let key = req.key.clone();
        let _guard = self.locks.write([&key[..]]).await;
        let resp = match self.l2.call(&Command::Meta(req.clone())).await {
            Ok(r) => r,
            Err(e) => return backend_failure(&e),
        };
        let drops = match req.verb {
            Verb::Set | Verb::Delete | Verb::Arith => true,
            Verb::Get => req.has(b'T'),
            Verb::Noop | Verb::Debug => false,
        };
        if drops {
            self.l1_delete(&key).await;
        }
        resp
    }

    /// L1 gets L2's current record of `key` (after append or incr, whose
    /// result only L2 has in full).
    async fn l1_refresh(&self, policy: Policy, key: &Bytes) {
        match self.l2.call(&Command::GetE { key: key.clone() }).await {
            Ok(Response::ValueE { value, expiry }) => {
                let copy = L1Copy {
                    key,
                    flags: value.flags,
                    exptime: i64::from(expiry),
                    cas: value.cas,
                    data: &value.data,
                };
                self.l1_put(policy, copy).await
            }
            _ => self.l1_delete(key).await,
        }
    }

    /// Put `copy` in L1 with the policy's verb; a failure makes the key
    /// suspect.
    async fn l1_put(&self, policy: Policy, copy: L1Copy<'_>) {
        let key = copy.key;
        let cmd = Command::Store {
            mode: policy.l1_write,
            key: key.clone(),
            flags: copy.flags,
            exptime: copy.exptime,
            cas: 0,
            value: wrap(copy.cas, copy.data),
        };
        let settled = self.settled(key);
        match self.l1.call(&cmd).await {
            Ok(Response::Stored { .. }) => self.clear_if(key, settled),
            // Replace found nothing: L1 holds nothing stale either.
            Ok(Response::NotStored) if policy.l1_write == StoreMode::Replace => {
                self.clear_if(key, settled)
            }
            // Refused (too large for memcached, out of memory): drop the
            // old copy instead.
            Ok(_) => self.l1_delete(key).await,
            Err(_) => {
                self.l1_write_failed();
                self.trust.suspect(key);
            }
        }
    }

    fn l1_write_failed(&self) {
        bump(&self.counters.counts.l1_write_failures);
        static WRITES: RateLimit = RateLimit::new(10_000);
        crate::warn_limited!(
            WRITES,
            tier = "L1",
            "L1 write failed; the key is served from L2 until L1 is rewritten"
        );
    }

    /// Whether no earlier L1 request for `key` that failed can still be
    /// carried out (see [`Backend::unsettled`]): only then does a write
    /// issued now supersede it.
    fn settled(&self, key: &[u8]) -> bool {
        !self.l1.unsettled(Some(key))
    }

    /// An L1 write or delete of `key` succeeded; it settles a suspicion if
    /// it was issued when nothing earlier could still land after it.
    fn clear_if(&self, key: &[u8], settled: bool) {
        if settled {
            self.trust.clear(key);
        }
    }

    async fn l1_delete(&self, key: &Bytes) {
        let cmd = Command::Delete {
            key: key.clone(),
            cas: 0,
        };
        let settled = self.settled(key);
        match self.l1.call(&cmd).await {
            Ok(Response::Deleted | Response::NotFound) => self.clear_if(key, settled),
            _ => {
                self.l1_write_failed();
                self.trust.suspect(key);
            }
        }
    }

    async fn l1_touch(&self, key: &Bytes, exptime: i64) {
        let cmd = Command::Touch {
            key: key.clone(),
            exptime,
        };
        match self.l1.call(&cmd).await {
            Ok(Response::Touched { .. } | Response::NotFound) => {}
            // An L1 copy with the old expiry could outlive L2's.
            _ => {
                self.l1_write_failed();
                self.trust.suspect(key);
            }
        }
    }

    /// flush_all in both tiers, with one reading of its time (see
    /// [`flush_when`]): L2 and L1 are each sent the canonical form, so a
    /// memcached that started at another time reads it the same way. A
    /// delayed flush that has already fired stays fired in L2; L1 would
    /// forget it when the new one replaces it (memcached keeps one flush
    /// time), so L1 is emptied first.
    async fn flush(&self, delay: i64) -> Response {
        let _guard = self.locks.write_all().await;
        let now = expiry::now();
        let when = flush_when(delay, now, server_started());
        let canonical = Command::Flush {
            delay: when.delay(),
        };
        if let Err(e) = self.l2.call(&canonical).await {
            return backend_failure(&e);
        }
        let next = match when {
            FlushWhen::At(second) => u64::from(second),
            FlushWhen::Now | FlushWhen::Never => 0,
        };
        let fired = match self.flush_at.swap(next, Ordering::AcqRel) {
            0 => false,
            before => before <= u64::from(now),
        };
        let mut ok = true;
        if fired && when != FlushWhen::Now {
            ok = matches!(
                self.l1.call(&Command::Flush { delay: 0 }).await,
                Ok(Response::Ok)
            );
        }
        if ok {
            ok = matches!(self.l1.call(&canonical).await, Ok(Response::Ok));
        }
        if !ok {
            self.l1_write_failed();
            self.trust.suspect_all();
        }
        Response::Ok
    }

    /// Whether an L2 record with this cas, put in L1 now, could outlive a
    /// delayed flush that hides it in L2: the flush fires before the L1
    /// write surely lands (within the L1 timeout, and memcached's clock may
    /// be a second behind), and the record was stored before it.
    fn flush_may_hide(&self, cas: u64) -> bool {
        let at = self.flush_at.load(Ordering::Acquire);
        at != 0
            && cas < (at + 1).saturating_mul(1_000_000)
            && u64::from(expiry::now()) + self.l1_timeout.as_secs() + 2 >= at
    }
}

/// While all of L1 is suspect, flush it every half second until that works;
/// then L1 is empty and can be trusted again. A delayed flush_all still to
/// come is sent again, so L1 drops what L2 will drop at that time.
async fn recover<B1: Backend + Clone, B2: Backend + Clone>(shared: Weak<Shared<B1, B2>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(s) = shared.upgrade() else { return };
        if !s.trust.all_suspect() || s.l1.unsettled(None) {
            continue;
        }
        let generation = s.trust.generation();
        if !matches!(
            s.l1.call(&Command::Flush { delay: 0 }).await,
            Ok(Response::Ok)
        ) {
            continue;
        }
        let at = s.flush_at.load(Ordering::Acquire);
        if at > u64::from(expiry::now()) {
            let delayed = Command::Flush {
                delay: FlushWhen::At(u32::try_from(at).unwrap_or(u32::MAX)).delay(),
            };
            if !matches!(s.l1.call(&delayed).await, Ok(Response::Ok)) {
                continue;
            }
        }
        if s.trust.flushed(generation) {
            tracing::info!(tier = "L1", "L1 flushed and trusted again");
        }
    }
}

/// A two-tier policy for one client connection.
pub struct TwoTier<B1, B2> {
    shared: Arc<Shared<B1, B2>>,
    policy: Policy,
}

impl<B1: Backend + Clone, B2: Backend + Clone> TwoTier<B1, B2> {
    pub fn new(shared: Arc<Shared<B1, B2>>, policy: Policy) -> Self {
        TwoTier { shared, policy }
    }
}

impl<B1: Backend + Clone, B2: Backend + Clone> Orca for TwoTier<B1, B2> {
    fn orders_by_keys(&self) -> bool {
        true
    }

    fn handle(&mut self, req: &Request) -> Reply {
        if let Some(resp) = answer_locally(req, &self.shared.counters) {
            return ready(resp);
        }
        if let Some(reply) = relay_admin(req, &self.shared.admin) {
            return reply;
        }
        // A one-key get, the common request, gets a future of its own size
        // rather than one sized for every command.
        if let Command::Get { keys, touch: None } = &req.cmd {
            if keys.len() == 1 && !self.shared.read_locks {
                return Box::pin(self.shared.clone().get_one(self.policy, keys.clone()));
            }
        }
        Box::pin(self.shared.clone().run(self.policy, req.cmd.clone()))
    }
}

#[cfg(test)]
#[path = "two_tier_tests.rs"]
mod tests;
