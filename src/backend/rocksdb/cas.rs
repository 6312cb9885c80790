//! The cas clock and flush_all, which rests on it. Each cas unique is the
//! current time in microseconds, or one more than the last if that is
//! later; a ceiling persisted ahead of use keeps them growing across
//! restarts. A flush is a cut-off on that clock: a record whose cas is
//! below it is gone, and compaction drops it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use ::rocksdb::WriteOptions;

use super::{failed, lock, Inner, Mode, Stop, CAS_KEY, CAS_LEASE_US, FLUSH_KEY, META_CF};
use crate::backend::record::{flush_when, server_started, FlushWhen};
use crate::backend::{BackendError, Tier};
use crate::protocol::Response;

/// The flush cut-offs: records with a cas below `cutoff` are gone. A delayed
/// flush still to come hides the records stored before second `pending_at`
/// (Unix seconds, 0 = none) from the start of the second before it, as
/// memcached's does (see [`flush_when`]).
#[derive(Default)]
pub(super) struct Flush {
    cutoff: AtomicU64,
    pending_at: AtomicU64,
}

impl Flush {
    pub(super) fn effective(&self, now: u32) -> u64 {
        let cutoff = self.cutoff.load(Ordering::Acquire);
        let at = self.pending_at.load(Ordering::Acquire);
        if at != 0 && u64::from(now) + 1 >= at {
            cutoff.max(at.saturating_mul(1_000_000))
        } else {
            cutoff
        }
    }

    fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.cutoff.load(Ordering::Acquire).to_be_bytes());
        b[8..].copy_from_slice(&self.pending_at.load(Ordering::Acquire).to_be_bytes());
        b
    }

    pub(super) fn load(&self, b: &[u8]) {
        if b.len() == 16 {
            let mut c = [0u8; 8];
            c.copy_from_slice(&b[..8]);
            self.cutoff.store(u64::from_be_bytes(c), Ordering::Release);
            c.copy_from_slice(&b[8..]);
            self.pending_at
                .store(u64::from_be_bytes(c), Ordering::Release);
        }
    }
}

pub(super) struct CasClock {
    /// Last issued, and the persisted ceiling.
    state: Mutex<(u64, u64)>,
}

impl CasClock {
    /// A clock that issues cas uniques above `ceiling`, the one persisted.
    pub(super) fn new(ceiling: u64) -> CasClock {
        CasClock {
            state: Mutex::new((ceiling, ceiling)),
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Inner {
    fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        let cf = self.db.cf_handle(META_CF).ok_or(BackendError::Storage(
            Tier::L2,
            "missing column family".into(),
        ))?;
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.put_cf_opt(cf, key, value, &w).map_err(failed)
    }

    pub(super) fn next_cas(&self, mode: Mode) -> Result<u64, Stop> {
        let mut st = lock(&self.cas.state, mode, "cas clock")?;
        let cas = now_micros().max(st.0 + 1);
        if cas >= st.1 {
            // Persisting the ceiling fsyncs.
            if mode == Mode::Now {
                return Err(Stop::WouldBlock);
            }
            let ceiling = cas + CAS_LEASE_US;
            self.meta_put(CAS_KEY, &ceiling.to_be_bytes())?;
            st.1 = ceiling;
        }
        st.0 = cas;
        Ok(cas)
    }

    /// memcached's flush_all (see [`flush_when`]): now, later, or nothing.
    /// Records are not removed here: reads stop seeing them and compaction
    /// drops them. A delayed flush that has fired stays fired when a later
    /// flush_all replaces it (memcached's LRU has reaped what it hid by then).
    pub(super) fn flush_all(&self, delay: i64, now: u32) -> Result<Response, BackendError> {
        let when = flush_when(delay, now, server_started());
        self.flush
            .cutoff
            .fetch_max(self.flush.effective(now), Ordering::AcqRel);
        match when {
            FlushWhen::Now => {
                let cutoff = match self.next_cas(Mode::Wait) {
                    Ok(c) => c,
                    Err(Stop::Failed(e)) => return Err(e),
                    Err(Stop::WouldBlock) => {
                        return Err(BackendError::Storage(Tier::L2, "cas clock busy".into()))
                    }
                };
                self.flush.cutoff.fetch_max(cutoff, Ordering::AcqRel);
                self.flush.pending_at.store(0, Ordering::Release);
            }
            FlushWhen::At(second) => self
                .flush
                .pending_at
                .store(u64::from(second) + 1, Ordering::Release),
            FlushWhen::Never => self.flush.pending_at.store(0, Ordering::Release),
        }
        self.meta_put(FLUSH_KEY, &self.flush.encode())?;
        if when == FlushWhen::Now {
            self.compact_soon();
        }
        Ok(Response::Ok)
    }

    /// Reclaim what a flush hid: one background compaction of everything at
    /// a time, so the compaction filter drops it.
    fn compact_soon(&self) {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(me) = self.me.get().and_then(Weak::upgrade) else {
            self.compacting.store(false, Ordering::Release);
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("rend-l2-compact".into())
            .spawn(move || {
                me.db.compact_range::<&[u8], &[u8]>(None, None);
                me.compacting.store(false, Ordering::Release);
            });
        match spawned {
            Ok(t) => self.keep(t),
            Err(_) => self.compacting.store(false, Ordering::Release),
        }
    }
}
