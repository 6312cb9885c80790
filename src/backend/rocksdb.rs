//! L2: one embedded RocksDB, the source of truth behind memcached. The only
//! file that names the `rocksdb` crate.
//!
//! Each key's record ([`super::record`]) holds flags, absolute expiry, cas
//! and value. Every write to a key is a read-modify-write under that key's
//! stripe mutex, so L2 alone decides add/replace/cas/append/incr exactly as
//! memcached would.
//!
//! Where calls run: a call first runs on the worker thread that made it, in
//! a mode where nothing may wait ([`Mode::Now`]): reads only from memtables
//! and the block cache (RocksDB's `BlockCacheTier`), writes with
//! `no_slowdown` (a write stall answers at once instead of sleeping), stripe
//! and clock locks only if free, no fsync. Anything that would wait — a read
//! that needs the disk, a stall, a busy lock, `--l2-durability sync`, a cas
//! ceiling to persist, flush_all — gives up before changing anything and
//! runs again on tokio's blocking pool ([`Mode::Wait`]). So the common call
//! costs no thread hop, and a slow disk never blocks a worker
//! (`l2_blocking_calls` in `stats` counts the calls that went to the pool).
//!
//! Choices, for point lookups of whole values:
//! - block-based tables with a 10 bits/key bloom filter on whole keys (about
//!   1% false positives: a miss rarely touches a data block) and a hash index
//!   inside data blocks;
//! - one LRU block cache of `--l2-cache-mb`, holding index and filter blocks
//!   too, so memory use is one number;
//! - level compaction with dynamic level sizes (space amplification about
//!   1.1x), LZ4 on every level, two background jobs on these small machines;
//! - a compaction filter drops expired and flushed records, so expired data
//!   leaves the disk without a scan;
//! - in-place memtable updates: an overwrite no larger than the value in the
//!   memtable replaces it there, so the memtable holds one entry per hot key
//!   rather than every version.
//!
//! Cas uniques come from a clock: each is the current time in microseconds,
//! or one more than the last if that is later. They only grow, across
//! restarts too (a ceiling is persisted ahead of use), so a stale cas never
//! matches again, and a delayed `flush_all` can tell what was written before
//! its deadline: a record is flushed if its cas is below the flush's cut-off.
//!
//! Disk bound (`--l2-max-bytes`): the store adds up the sizes of every file
//! in its directory (SSTs, write-ahead log, manifest; read every 100 ms)
//! plus what was written since the last reading; a store or incr that would
//! pass the bound is refused with `SERVER_ERROR out of memory storing
//! object`. Deletes, touches and flushes still go through. Memtables are RAM
//! and not counted; their data is in the write-ahead log, which is.
//!
//! Durability (`--l2-durability`): `wal` (the default) appends every write to
//! the write-ahead log before acknowledging it, without fsync: a crash of rend
//! loses nothing acknowledged, a crash of the machine can lose the last
//! writes the OS had not yet flushed. The log is written in groups
//! ([`WalGroup`]): writes made at the same moment append to RocksDB's log
//! buffer and one write(2) puts them all in the file before any of them is
//! acknowledged. (A read at that moment may see a write whose log bytes are
//! not yet in the file; a crash then loses that unacknowledged write.)
//! `sync` fsyncs the log on every write (survives power loss, much slower);
//! `none` skips the log (a crash of rend loses everything since the last
//! memtable flush).
//!
//! The pieces: `rocksdb/open.rs` opens the store with the options above,
//! `rocksdb/exec.rs` runs one call as its mode allows, `rocksdb/cas.rs` is
//! the cas clock and flush_all, `rocksdb/space.rs` the disk bound, and
//! `rocksdb/wal.rs` the log's group commit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ::rocksdb::statistics::Ticker;
use ::rocksdb::{Options, WriteOptions, DB};

use super::{Backend, BackendError, BackendFuture, BatchFuture, Tier};
use crate::protocol::meta::Verb;
use crate::protocol::Command;
use crate::ratelimit::RateLimit;

mod cas;
mod exec;
mod open;
mod space;
mod wal;

#[cfg(test)]
mod tests;

use cas::{CasClock, Flush};
use wal::WalGroup;

/// How much of an acknowledged write survives a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// Write-ahead log, fsync on every write: survives a machine crash.
    Sync,
    /// Write-ahead log without fsync: survives a crash of rend.
    Wal,
    /// No write-ahead log: a crash loses recent writes.
    None,
}

#[derive(Clone, Debug)]
pub struct L2Options {
    pub path: PathBuf,
    pub cache_mb: u64,
    /// Refuse stores past this many bytes of files in `path`.
    pub max_bytes: Option<u64>,
    pub durability: Durability,
    /// Largest value an append may produce.
    pub max_value: usize,
}

/// Why the store did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("L2 directory {0} is in use by another process (its RocksDB LOCK is held); run one rend per data directory")]
    Locked(PathBuf),
    #[error("cannot open L2 in {path}: {reason}")]
    Other { path: PathBuf, reason: String },
}

/// Figures for `stats` and metrics.
#[derive(Default)]
pub struct L2Stats {
    pub refused_full: AtomicU64,
    pub errors: AtomicU64,
    /// Calls that could not finish on the calling thread without waiting
    /// and ran on the blocking pool.
    pub blocking_calls: AtomicU64,
}

/// Whether a call may wait (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// On a worker thread: finish from memory or give up unchanged.
    Now,
    /// On the blocking pool: wait for the disk, stalls and locks.
    Wait,
}

/// Why an internal call stopped.
#[derive(Debug)]
enum Stop {
    Failed(BackendError),
    /// In [`Mode::Now`], it would have had to wait; nothing was changed.
    WouldBlock,
}

impl From<BackendError> for Stop {
    fn from(e: BackendError) -> Stop {
        Stop::Failed(e)
    }
}

/// A RocksDB error; in [`Mode::Now`] "incomplete" means it would have
/// waited.
fn stop(e: ::rocksdb::Error, mode: Mode) -> Stop {
    if mode == Mode::Now && e.kind() == ::rocksdb::ErrorKind::Incomplete {
        Stop::WouldBlock
    } else {
        Stop::Failed(failed(e))
    }
}

/// A lock taken as the mode allows.
fn lock<'a, T>(
    m: &'a Mutex<T>,
    mode: Mode,
    what: &str,
) -> Result<std::sync::MutexGuard<'a, T>, Stop> {
    match mode {
        Mode::Wait => m
            .lock()
            .map_err(|_| Stop::Failed(BackendError::Storage(Tier::L2, format!("{what} poisoned")))),
        Mode::Now => m.try_lock().map_err(|e| match e {
            std::sync::TryLockError::WouldBlock => Stop::WouldBlock,
            std::sync::TryLockError::Poisoned(_) => {
                Stop::Failed(BackendError::Storage(Tier::L2, format!("{what} poisoned")))
            }
        }),
    }
}

const META_CF: &str = "rend";
const FLUSH_KEY: &[u8] = b"flush";
/// Present while a rend has the store open and has not stopped with every
/// L1 copy trusted (see [`L2::opened_clean`]).
const RUNNING_KEY: &[u8] = b"running";
const CAS_KEY: &[u8] = b"cas-ceiling";
/// How far ahead of use the cas ceiling is persisted: one write of it per
/// ten seconds of clock.
const CAS_LEASE_US: u64 = 10_000_000;
const STRIPES: usize = 4096;

struct Inner {
    db: DB,
    /// With `--l2-durability wal`: the log's group commit.
    wal: Option<WalGroup>,
    path: PathBuf,
    /// Kept for RocksDB's statistics, which live in the options.
    db_opts: Mutex<Options>,
    durability: Durability,
    flush: Arc<Flush>,
    cas: CasClock,
    stripes: Vec<Mutex<()>>,
    max_bytes: Option<u64>,
    /// Bytes on disk at the last reading, and written since.
    measured: AtomicU64,
    written: AtomicU64,
    max_value: usize,
    stats: Arc<L2Stats>,
    closing: AtomicBool,
    compacting: AtomicBool,
    /// Background threads, joined by `close`.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Itself, for background work that must not outlive the store.
    me: std::sync::OnceLock<Weak<Inner>>,
    opened_clean: bool,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct L2 {
    inner: Arc<Inner>,
}

fn failed(e: ::rocksdb::Error) -> BackendError {
    tracing::debug!(tier = "L2", error = %e, "RocksDB call failed");
    BackendError::Storage(Tier::L2, e.into_string())
}

impl L2 {
    pub fn stats(&self) -> Arc<L2Stats> {
        self.inner.stats.clone()
    }

    /// A RocksDB integer property (e.g. `rocksdb.estimate-num-keys`).
    pub fn property(&self, name: &str) -> Option<u64> {
        self.inner.db.property_int_value(name).ok().flatten()
    }

    /// Microseconds writes were delayed or stopped by RocksDB (write
    /// stalls) since start.
    pub fn stall_micros(&self) -> u64 {
        self.inner
            .db_opts
            .lock()
            .map(|o| o.get_ticker_count(Ticker::StallMicros))
            .unwrap_or(0)
    }

    /// Bytes counted against `--l2-max-bytes`.
    pub fn used_bytes(&self) -> u64 {
        self.inner.used()
    }

    /// Whether the last rend on this store stopped cleanly with every L1
    /// copy trusted ([`mark_clean`](Self::mark_clean)). If not (it was
    /// killed, or stopped while some L1 writes had failed), what it knew
    /// about stale L1 copies is gone, and L1 must be emptied before it is
    /// trusted again.
    pub fn opened_clean(&self) -> bool {
        self.inner.opened_clean
    }

    /// Record that this rend stops with every L1 copy trusted, so the next
    /// one may trust L1 as it finds it.
    pub fn mark_clean(&self) {
        let cleared = self.inner.db.cf_handle(META_CF).map(|cf| {
            let mut sync = WriteOptions::default();
            sync.set_sync(true);
            self.inner.db.delete_cf_opt(cf, RUNNING_KEY, &sync)
        });
        if let Some(Err(e)) = cleared {
            tracing::warn!(tier = "L2", error = %e, "recording a clean stop failed");
        }
    }

    /// Sync the log and stop background work (at shutdown). The database
    /// closes when the last handle is dropped. A compaction under way (the
    /// one after flush_all) is called off, not awaited: what it would drop
    /// stays hidden behind the persisted flush cut-off, and later
    /// compactions drop it.
    pub fn close(&self) {
        self.inner.closing.store(true, Ordering::Release);
        self.inner.db.cancel_all_background_work(false);
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        if let Err(e) = self.inner.db.flush_wal(true) {
            tracing::warn!(tier = "L2", error = %e, "syncing the write-ahead log at shutdown failed");
        }
    }

    /// Run `f` on the blocking pool, where it may wait.
    fn pooled<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, Stop> + Send + 'static,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, BackendError>> + Send>> {
        self.inner
            .stats
            .blocking_calls
            .fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        Box::pin(async move {
            let r = tokio::task::spawn_blocking(move || {
                let r = match f(&inner) {
                    Ok(r) => Ok(r),
                    Err(Stop::Failed(e)) => Err(e),
                    Err(Stop::WouldBlock) => Err(BackendError::Storage(
                        Tier::L2,
                        "L2 call gave up while allowed to wait".into(),
                    )),
                };
                if let Err(e) = &r {
                    inner.failed_call(e);
                }
                r
            })
            .await;
            match r {
                Ok(r) => r,
                Err(_) => Err(BackendError::Storage(Tier::L2, "L2 task failed".into())),
            }
        })
    }
}

impl Inner {
    fn failed_call(&self, e: &BackendError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        static FAILED: RateLimit = RateLimit::new(10_000);
        crate::warn_limited!(FAILED, tier = "L2", error = %e, "L2 call failed");
    }

    fn keep(&self, t: std::thread::JoinHandle<()>) {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        threads.retain(|t| !t.is_finished());
        threads.push(t);
    }
}

impl crate::metrics::StatsSource for L2 {
    fn stats(&self) -> Vec<(&'static str, u64)> {
        let p = |name: &str| self.property(name).unwrap_or(0);
        let st = &self.inner.stats;
        vec![
            ("l2_estimated_keys", p("rocksdb.estimate-num-keys")),
            ("l2_live_data_bytes", p("rocksdb.estimate-live-data-size")),
            ("l2_sst_bytes", p("rocksdb.total-sst-files-size")),
            ("l2_memtable_bytes", p("rocksdb.cur-size-all-mem-tables")),
            ("l2_used_bytes", self.used_bytes()),
            ("l2_max_bytes", self.inner.max_bytes.unwrap_or(0)),
            ("l2_block_cache_bytes", p("rocksdb.block-cache-usage")),
            (
                "l2_pending_compaction_bytes",
                p("rocksdb.estimate-pending-compaction-bytes"),
            ),
            (
                "l2_running_compactions",
                p("rocksdb.num-running-compactions"),
            ),
            ("l2_write_stall_micros", self.stall_micros()),
            ("l2_write_stopped", p("rocksdb.is-write-stopped")),
            (
                "l2_delayed_write_rate",
                p("rocksdb.actual-delayed-write-rate"),
            ),
            ("l2_refused_full", st.refused_full.load(Ordering::Relaxed)),
            ("l2_errors", st.errors.load(Ordering::Relaxed)),
            (
                "l2_blocking_calls",
                st.blocking_calls.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// Whether a command may change the store (and so write the log).
fn writes(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Store { .. }
            | Command::Arith { .. }
            | Command::Delete { .. }
            | Command::Touch { .. }
            | Command::Get { touch: Some(_), .. }
            | Command::Flush { .. }
    ) || matches!(cmd, Command::Meta(m) if !matches!(m.verb, Verb::Noop | Verb::Debug))
}

impl Backend for L2 {
    fn starts_eagerly(&self) -> bool {
        false
    }

    /// On this thread if it finishes without waiting, else on the pool.
    fn call(&self, cmd: &Command) -> BackendFuture {
        // A meta command says whether it wrote: most `mg`s do not.
        let done = match cmd {
            Command::Meta(m) => self.inner.exec_meta(cmd, m, Mode::Now),
            _ => self.inner.exec(cmd, Mode::Now).map(|r| (r, writes(cmd))),
        };
        match done {
            Ok((r, true)) if self.inner.wal.is_some() => self.committed(r),
            Ok((r, _)) => Box::pin(std::future::ready(Ok(r))),
            Err(Stop::Failed(e)) => {
                self.inner.failed_call(&e);
                Box::pin(std::future::ready(Err(e)))
            }
            Err(Stop::WouldBlock) => {
                let cmd = cmd.clone();
                self.pooled(move |inner| inner.exec(&cmd, Mode::Wait))
            }
        }
    }

    /// Several commands in order: on this thread as far as they finish
    /// without waiting, the rest together on the blocking pool.
    fn call_many(&self, cmds: Vec<Command>) -> BatchFuture {
        if self.inner.wal.is_some() && cmds.iter().any(writes) {
            // Writes wait for the log; rare in a batch (the policies batch
            // lookups): one at a time keeps that simple.
            let this = self.clone();
            return Box::pin(async move {
                let mut out = Vec::with_capacity(cmds.len());
                for c in &cmds {
                    out.push(this.call(c).await?);
                }
                Ok(out)
            });
        }
        let mut done = Vec::with_capacity(cmds.len());
        for cmd in &cmds {
            match self.inner.exec(cmd, Mode::Now) {
                Ok(r) => done.push(r),
                Err(Stop::Failed(e)) => {
                    self.inner.failed_call(&e);
                    return Box::pin(std::future::ready(Err(e)));
                }
                Err(Stop::WouldBlock) => break,
            }
        }
        if done.len() == cmds.len() {
            return Box::pin(std::future::ready(Ok(done)));
        }
        let rest: Vec<Command> = cmds[done.len()..].to_vec();
        let rest_call = self.pooled(move |inner| {
            rest.iter()
                .map(|c| inner.exec(c, Mode::Wait))
                .collect::<Result<Vec<_>, _>>()
        });
        Box::pin(async move {
            let mut out = done;
            out.extend(rest_call.await?);
            Ok(out)
        })
    }
}
