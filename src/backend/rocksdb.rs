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

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::rocksdb::compaction_filter::Decision;
use ::rocksdb::statistics::{StatsLevel, Ticker};
use ::rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DataBlockIndexType,
    Options, WriteBatch, WriteOptions, DB,
};

use super::record::{apply, flush_when, server_started, Effect, FlushWhen, Record};
use super::{Backend, BackendError, BackendFuture, BatchFuture, Tier};
use crate::protocol::expiry::{self, is_expired};
use crate::protocol::{Command, ErrorReply, Response, StoreMode};
use crate::ratelimit::RateLimit;

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

/// The flush cut-offs: records with a cas below `cutoff` are gone. A delayed
/// flush still to come hides the records stored before second `pending_at`
/// (Unix seconds, 0 = none) from the start of the second before it, as
/// memcached's does (see [`flush_when`]).
#[derive(Default)]
struct Flush {
    cutoff: AtomicU64,
    pending_at: AtomicU64,
}

impl Flush {
    fn effective(&self, now: u32) -> u64 {
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

    fn load(&self, b: &[u8]) {
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

struct CasClock {
    /// Last issued, and the persisted ceiling.
    state: Mutex<(u64, u64)>,
}

/// Group commit of the write-ahead log (`--l2-durability wal`). A write
/// made on a worker appends to RocksDB's log buffer and takes a ticket; the
/// first waiter to find no flush under way becomes the leader, lets the
/// other tasks of the moment run (and append), then writes the buffer once
/// and wakes everyone whose ticket it covered. A write on the blocking pool
/// writes the buffer itself.
#[derive(Default)]
struct WalGroup {
    /// Tickets handed out: writes appended to the buffer.
    appended: AtomicU64,
    state: Mutex<WalState>,
    flushed: tokio::sync::Notify,
}

#[derive(Default)]
struct WalState {
    /// Every ticket up to this one is in the log file.
    flushed: u64,
    leader: bool,
    /// The last failed flush: the tickets it covered, and why.
    failed: Option<(u64, u64, String)>,
}

impl WalGroup {
    fn lock(&self) -> std::sync::MutexGuard<'_, WalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until ticket `t` is in the log file.
    async fn commit(&self, db: &DB, t: u64) -> Result<(), BackendError> {
        loop {
            let notified = self.flushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.turn(t) {
                Turn::Done(r) => return r,
                Turn::Wait => notified.await,
                Turn::Lead => {
                    // Should this task be dropped while it leads (its client
                    // went away), the next waiter takes over.
                    let mut lead = Leading(self, true);
                    // The other tasks of this moment append first.
                    tokio::task::yield_now().await;
                    let upto = self.appended.load(Ordering::Acquire);
                    let result = db.flush_wal(false);
                    lead.1 = false;
                    self.flushed_upto(upto, result.err().map(|e| e.into_string()));
                }
            }
        }
    }

    /// What ticket `t` does now: it is in the file, or someone is writing
    /// the buffer, or it is to write the buffer itself.
    fn turn(&self, t: u64) -> Turn {
        let mut st = self.lock();
        if st.flushed >= t {
            return Turn::Done(match &st.failed {
                Some((from, upto, why)) if *from < t && t <= *upto => {
                    Err(BackendError::Storage(Tier::L2, why.clone()))
                }
                _ => Ok(()),
            });
        }
        if st.leader {
            return Turn::Wait;
        }
        st.leader = true;
        Turn::Lead
    }

    fn flushed_upto(&self, upto: u64, failed: Option<String>) {
        let mut st = self.lock();
        let from = st.flushed;
        st.flushed = st.flushed.max(upto);
        st.leader = false;
        if let Some(why) = failed {
            st.failed = Some((from, upto, why));
        }
        drop(st);
        self.flushed.notify_waiters();
    }
}

enum Turn {
    Done(Result<(), BackendError>),
    Wait,
    Lead,
}

/// A leader that has not finished: on drop, gives the lead back.
struct Leading<'a>(&'a WalGroup, bool);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.lock().leader = false;
            self.0.flushed.notify_waiters();
        }
    }
}

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

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn failed(e: ::rocksdb::Error) -> BackendError {
    tracing::debug!(tier = "L2", error = %e, "RocksDB call failed");
    BackendError::Storage(Tier::L2, e.into_string())
}

impl L2 {
    /// Open (or create) the store in `opts.path`.
    pub fn open(opts: &L2Options) -> Result<L2, OpenError> {
        let other = |reason: String| OpenError::Other {
            path: opts.path.clone(),
            reason,
        };
        std::fs::create_dir_all(&opts.path).map_err(|e| other(e.to_string()))?;
        let flush = Arc::new(Flush::default());

        let cache = Cache::new_lru_cache((opts.cache_mb as usize).saturating_mul(1 << 20));
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
        table.set_data_block_hash_ratio(0.75);

        let mut items = Options::default();
        items.set_block_based_table_factory(&table);
        items.set_compression_type(DBCompressionType::Lz4);
        items.set_level_compaction_dynamic_level_bytes(true);
        items.set_write_buffer_size(64 << 20);
        items.set_max_write_buffer_number(3);
        items.set_memtable_whole_key_filtering(true);
        items.set_memtable_prefix_bloom_ratio(0.02);
        // A cache overwrites the same keys over and over: an overwrite no
        // larger than the value in the memtable updates it in place, so the
        // memtable holds one entry per key instead of every version (with
        // every version, finding the insert position in the skiplist was a
        // fifth of rend's CPU under sets). It rules out snapshots and
        // consistent iterators, which L2 does not use, and needs writes to the
        // memtable serialised (below).
        items.set_inplace_update_support(true);
        let filter_flush = flush.clone();
        items.set_compaction_filter(
            "rend-expiry",
            move |_level: u32, _key: &[u8], value: &[u8]| match Record::peek(value) {
                Some((expiry, cas)) => {
                    let now = expiry::now();
                    if is_expired(expiry, now) || cas < filter_flush.effective(now) {
                        Decision::Remove
                    } else {
                        Decision::Keep
                    }
                }
                None => Decision::Keep,
            },
        );

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_max_background_jobs(2);
        db_opts.set_allow_concurrent_memtable_write(false);
        // rend also holds every client connection's socket; RocksDB keeps
        // SST files open only up to this many.
        db_opts.set_max_open_files(512);
        db_opts.set_max_total_wal_size(256 << 20);
        db_opts.set_keep_log_file_num(4);
        // With `wal`, writes made on a worker fill RocksDB's log buffer and
        // one write of the buffer serves every write of that moment
        // ([`WalGroup`]); nothing is acknowledged before its bytes are in
        // the log file.
        db_opts.set_manual_wal_flush(opts.durability == Durability::Wal);
        // Counters only (no timers or histograms, which cost on every call):
        // write-stall time for `stats`.
        db_opts.enable_statistics();
        db_opts.set_statistics_level(StatsLevel::ExceptHistogramOrTimers);

        let cfs = vec![
            ColumnFamilyDescriptor::new(::rocksdb::DEFAULT_COLUMN_FAMILY_NAME, items),
            ColumnFamilyDescriptor::new(META_CF, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&db_opts, &opts.path, cfs).map_err(|e| {
            let text = e.into_string();
            if text.contains("LOCK") && (text.contains("lock") || text.contains("Resource")) {
                OpenError::Locked(opts.path.clone())
            } else {
                other(text)
            }
        })?;

        let meta = db
            .cf_handle(META_CF)
            .ok_or_else(|| other("missing column family".into()))?;
        if let Some(b) = db
            .get_cf(meta, FLUSH_KEY)
            .map_err(|e| other(e.into_string()))?
        {
            flush.load(&b);
        }
        let opened_clean = db
            .get_cf(meta, RUNNING_KEY)
            .map_err(|e| other(e.into_string()))?
            .is_none();
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        db.put_cf_opt(meta, RUNNING_KEY, b"1", &sync)
            .map_err(|e| other(e.into_string()))?;
        let ceiling = db
            .get_cf(meta, CAS_KEY)
            .map_err(|e| other(e.into_string()))?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);

        let inner = Arc::new(Inner {
            db,
            path: opts.path.clone(),
            db_opts: Mutex::new(db_opts),
            durability: opts.durability,
            wal: (opts.durability == Durability::Wal).then(WalGroup::default),
            flush,
            // Everything issued before the restart is below the old ceiling.
            cas: CasClock {
                state: Mutex::new((ceiling, ceiling)),
            },
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            max_bytes: opts.max_bytes,
            measured: AtomicU64::new(0),
            written: AtomicU64::new(0),
            max_value: opts.max_value,
            stats: Arc::new(L2Stats::default()),
            closing: AtomicBool::new(false),
            compacting: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            me: std::sync::OnceLock::new(),
            opened_clean,
        });
        let _ = inner.me.set(Arc::downgrade(&inner));
        inner.measure();
        let weak = Arc::downgrade(&inner);
        let watcher = std::thread::Builder::new()
            .name("rend-l2-space".into())
            .spawn(move || watch_space(weak))
            .map_err(|e| other(e.to_string()))?;
        inner.keep(watcher);
        Ok(L2 { inner })
    }

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

fn watch_space(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let Some(inner) = inner.upgrade() else { return };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        inner.measure();
    }
}

impl Inner {
    fn failed_call(&self, e: &BackendError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        static FAILED: RateLimit = RateLimit::new(10_000);
        crate::warn_limited!(FAILED, tier = "L2", error = %e, "L2 call failed");
    }

    /// Disk use: every file in the data directory (SSTs, write-ahead log,
    /// manifest, RocksDB's own log). What was written while the directory
    /// is read may be counted twice until the next reading, never missed.
    fn measure(&self) {
        let before = self.written.load(Ordering::Acquire);
        let used = std::fs::read_dir(&self.path)
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        self.measured.store(used, Ordering::Release);
        self.written.fetch_sub(before, Ordering::AcqRel);
    }

    fn used(&self) -> u64 {
        self.measured.load(Ordering::Acquire) + self.written.load(Ordering::Acquire)
    }

    /// Write options for the mode, or `WouldBlock` when every write waits
    /// (`sync`: an fsync each).
    fn write_opts(&self, mode: Mode) -> Result<WriteOptions, Stop> {
        let mut w = WriteOptions::default();
        match self.durability {
            Durability::Sync if mode == Mode::Now => return Err(Stop::WouldBlock),
            Durability::Sync => w.set_sync(true),
            Durability::Wal => {}
            Durability::None => w.disable_wal(true),
        }
        w.set_no_slowdown(mode == Mode::Now);
        Ok(w)
    }

    /// On the blocking pool a write puts its own log bytes in the file (on
    /// a worker, [`WalGroup`] does it for many).
    fn flush_if_waiting(&self, mode: Mode) -> Result<(), Stop> {
        if mode == Mode::Wait && self.wal.is_some() {
            self.db.flush_wal(false).map_err(|e| stop(e, mode))?;
        }
        Ok(())
    }

    fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        let cf = self.db.cf_handle(META_CF).ok_or(BackendError::Storage(
            Tier::L2,
            "missing column family".into(),
        ))?;
        let mut w = WriteOptions::default();
        w.set_sync(true);
        self.db.put_cf_opt(cf, key, value, &w).map_err(failed)
    }

    fn next_cas(&self, mode: Mode) -> Result<u64, Stop> {
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

    /// The live record of `key`: present, not expired, not flushed.
    fn live(&self, key: &[u8], now: u32, mode: Mode) -> Result<Option<Record>, Stop> {
        let found = match mode {
            Mode::Wait => self.db.get_pinned(key),
            Mode::Now => {
                let mut r = ::rocksdb::ReadOptions::default();
                r.set_read_tier(::rocksdb::ReadTier::BlockCache);
                self.db.get_pinned_opt(key, &r)
            }
        };
        let Some(bytes) = found.map_err(|e| stop(e, mode))? else {
            return Ok(None);
        };
        let rec = match Record::decode(&bytes) {
            Ok(r) => r,
            Err(e) => {
                static UNREADABLE: RateLimit = RateLimit::new(10_000);
                crate::warn_limited!(UNREADABLE, tier = "L2", error = %e, "unreadable record treated as absent");
                return Ok(None);
            }
        };
        Ok((!rec.is_expired(now) && rec.cas >= self.flush.effective(now)).then_some(rec))
    }

    fn stripe(&self, key: &[u8]) -> &Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.stripes[(h.finish() % self.stripes.len() as u64) as usize]
    }

    fn grows(cmd: &Command) -> Option<usize> {
        match cmd {
            Command::Store { key, value, .. } => Some(key.len() + value.len()),
            Command::Arith { key, .. } => Some(key.len() + 20),
            _ => None,
        }
    }

    /// One command, as `mode` allows.
    fn exec(&self, cmd: &Command, mode: Mode) -> Result<Response, Stop> {
        let now = expiry::now();
        match cmd {
            Command::Get { keys, touch: None } => {
                let mut hits = Vec::new();
                for key in keys {
                    if let Some(r) = self.live(key, now, mode)? {
                        hits.push(r.to_value(key));
                    }
                }
                Ok(Response::Values(hits))
            }
            Command::Get {
                keys,
                touch: Some(exptime),
            } => {
                // Touching several keys is several writes: run them where
                // they may wait, so none is half done.
                if mode == Mode::Now && keys.len() > 1 {
                    return Err(Stop::WouldBlock);
                }
                let mut hits = Vec::new();
                for key in keys {
                    let one = Command::Get {
                        keys: vec![key.clone()],
                        touch: Some(*exptime),
                    };
                    if let Response::Values(v) = self.write(key, &one, now, mode)? {
                        hits.extend(v);
                    }
                }
                Ok(Response::Values(hits))
            }
            Command::GetE { key } => Ok(match self.live(key, now, mode)? {
                Some(r) => Response::ValueE {
                    expiry: r.expiry,
                    value: r.to_value(key),
                },
                None => Response::NotFound,
            }),
            Command::Store { key, .. }
            | Command::Arith { key, .. }
            | Command::Delete { key, .. }
            | Command::Touch { key, .. } => {
                if let (Some(max), Some(adds)) = (self.max_bytes, Self::grows(cmd)) {
                    if self.used() + adds as u64 > max {
                        self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
                        return Ok(Response::Error(ErrorReply::OutOfMemory));
                    }
                }
                self.write(key, cmd, now, mode)
            }
            Command::Flush { .. } if mode == Mode::Now => Err(Stop::WouldBlock),
            Command::Flush { delay } => Ok(self.flush_all(*delay, now)?),
            _ => Err(Stop::Failed(BackendError::Unsupported(Tier::L2))),
        }
    }

    fn write(&self, key: &[u8], cmd: &Command, now: u32, mode: Mode) -> Result<Response, Stop> {
        let _g = lock(self.stripe(key), mode, "key lock")?;
        let opts = self.write_opts(mode)?;
        // A plain set decides nothing from the old record: skip the lookup
        // (a memtable search, a tenth of rend's CPU under a set-heavy load).
        let blind = matches!(
            cmd,
            Command::Store {
                mode: StoreMode::Set,
                cas: 0,
                ..
            }
        );
        let old = if blind {
            None
        } else {
            self.live(key, now, mode)?
        };
        // A cas is issued for every write that may create a new version.
        let cas = match cmd {
            Command::Store { .. } | Command::Arith { .. } => self.next_cas(mode)?,
            _ => 0,
        };
        let (resp, effect) = apply(cmd, old.as_ref(), now, cas, self.max_value);
        match effect {
            Effect::Keep => {}
            Effect::Put(rec) => {
                let bytes = rec.encode();
                let size = (key.len() + bytes.len()) as u64;
                let mut batch = WriteBatch::default();
                batch.put(key, bytes);
                self.db.write_opt(batch, &opts).map_err(|e| stop(e, mode))?;
                self.written.fetch_add(size, Ordering::Relaxed);
                self.flush_if_waiting(mode)?;
            }
            Effect::Delete => {
                self.db.delete_opt(key, &opts).map_err(|e| stop(e, mode))?;
                self.written
                    .fetch_add(key.len() as u64 + 16, Ordering::Relaxed);
                self.flush_if_waiting(mode)?;
            }
        }
        Ok(resp)
    }

    /// memcached's flush_all (see [`flush_when`]): now, later, or nothing.
    /// Records are not removed here: reads stop seeing them and compaction
    /// drops them. A delayed flush that has fired stays fired when a later
    /// flush_all replaces it (memcached's LRU has reaped what it hid by then).
    fn flush_all(&self, delay: i64, now: u32) -> Result<Response, BackendError> {
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
}

impl Inner {
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
    )
}

impl L2 {
    /// A write made on this thread, answered once its log bytes are in the
    /// log file.
    fn committed(&self, resp: Response) -> BackendFuture {
        let ticket = self
            .inner
            .wal
            .as_ref()
            .map(|w| w.appended.fetch_add(1, Ordering::AcqRel) + 1);
        let inner = self.inner.clone();
        Box::pin(async move {
            if let (Some(wal), Some(t)) = (&inner.wal, ticket) {
                if let Err(e) = wal.commit(&inner.db, t).await {
                    inner.failed_call(&e);
                    return Err(e);
                }
            }
            Ok(resp)
        })
    }
}

impl Backend for L2 {
    fn starts_eagerly(&self) -> bool {
        false
    }

    /// On this thread if it finishes without waiting, else on the pool.
    fn call(&self, cmd: &Command) -> BackendFuture {
        match self.inner.exec(cmd, Mode::Now) {
            Ok(r) if writes(cmd) && self.inner.wal.is_some() => self.committed(r),
            Ok(r) => Box::pin(std::future::ready(Ok(r))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::path::Path;

    fn open(dir: &Path, max_bytes: Option<u64>) -> L2 {
        L2::open(&L2Options {
            path: dir.to_path_buf(),
            cache_mb: 8,
            max_bytes,
            durability: Durability::Wal,
            max_value: 1 << 20,
        })
        .unwrap()
    }

    fn set(key: &str, value: &str, exptime: i64) -> Command {
        Command::Store {
            mode: StoreMode::Set,
            key: Bytes::from(key.to_string()),
            flags: 5,
            exptime,
            cas: 0,
            value: Bytes::from(value.to_string()),
        }
    }

    fn gete(key: &str) -> Command {
        Command::GetE {
            key: Bytes::from(key.to_string()),
        }
    }

    #[test]
    fn a_second_open_of_one_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = open(dir.path(), None);
        let second = L2::open(&L2Options {
            path: dir.path().to_path_buf(),
            cache_mb: 8,
            max_bytes: None,
            durability: Durability::Wal,
            max_value: 1 << 20,
        });
        let err = second.err().expect("second open must fail");
        assert!(matches!(err, OpenError::Locked(_)), "{err}");
        assert!(err.to_string().contains("in use by another process"));
    }

    #[test]
    fn cas_grows_across_restarts_and_flush_hides_older_records() {
        let dir = tempfile::tempdir().unwrap();
        let first_cas;
        {
            let l2 = open(dir.path(), None);
            let Response::Stored { cas } = l2.inner.exec(&set("a", "1", 0), Mode::Wait).unwrap()
            else {
                panic!()
            };
            first_cas = cas;
            assert_eq!(
                l2.inner
                    .exec(&Command::Flush { delay: 0 }, Mode::Wait)
                    .unwrap(),
                Response::Ok
            );
            assert_eq!(
                l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
                Response::NotFound
            );
            l2.inner.exec(&set("b", "2", 0), Mode::Wait).unwrap();
            l2.close();
        }
        let l2 = open(dir.path(), None);
        // The flush is remembered; what came after it is not hidden.
        assert_eq!(
            l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
            Response::NotFound
        );
        let Response::ValueE { value, expiry } = l2.inner.exec(&gete("b"), Mode::Wait).unwrap()
        else {
            panic!()
        };
        assert_eq!((value.flags, expiry, &value.data[..]), (5, 0, &b"2"[..]));
        assert!(value.cas > first_cas);
        let Response::Stored { cas } = l2.inner.exec(&set("c", "3", 0), Mode::Wait).unwrap() else {
            panic!()
        };
        assert!(cas > value.cas);
    }

    #[test]
    fn delayed_flush_takes_effect_at_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let l2 = open(dir.path(), None);
        l2.inner.exec(&set("a", "1", 0), Mode::Wait).unwrap();
        l2.inner.exec(&set("b", "1", 0), Mode::Wait).unwrap();
        l2.inner
            .exec(&Command::Flush { delay: 3 }, Mode::Wait)
            .unwrap();
        assert!(matches!(
            l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
            Response::ValueE { .. }
        ));
        std::thread::sleep(Duration::from_millis(3100));
        assert_eq!(
            l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
            Response::NotFound
        );
        l2.inner.exec(&set("a", "2", 0), Mode::Wait).unwrap();
        assert!(matches!(
            l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
            Response::ValueE { .. }
        ));
        // A later delayed flush, or one in 1970 (which flushes nothing),
        // does not bring back what the fired one hid, nor does a restart.
        for delay in [100, 2_592_001] {
            l2.inner
                .exec(&Command::Flush { delay }, Mode::Wait)
                .unwrap();
            assert_eq!(
                l2.inner.exec(&gete("b"), Mode::Wait).unwrap(),
                Response::NotFound,
                "flush_all {delay}"
            );
        }
        drop(l2);
        let l2 = open(dir.path(), None);
        assert_eq!(
            l2.inner.exec(&gete("b"), Mode::Wait).unwrap(),
            Response::NotFound
        );
        assert!(matches!(
            l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
            Response::ValueE { .. }
        ));
    }

    /// flush_all starts a compaction of everything; closing at shutdown
    /// calls it off instead of waiting for it.
    #[test]
    fn close_does_not_wait_for_the_compaction_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let l2 = open(dir.path(), None);
        // Values that do not compress away: hex digits of a random walk.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut value = || {
            (0..63)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    format!("{:016x}", x)
                })
                .collect::<String>()
        };
        for batch in 0..4 {
            for i in 0..50_000 {
                l2.inner
                    .exec(&set(&format!("key-{batch}-{i}"), &value(), 0), Mode::Wait)
                    .unwrap();
            }
            l2.inner.db.flush().unwrap();
        }
        let sst = |l2: &L2| l2.property("rocksdb.total-sst-files-size").unwrap();
        let before = sst(&l2);
        assert!(before > 50_000_000, "{before}");
        l2.inner
            .exec(&Command::Flush { delay: 0 }, Mode::Wait)
            .unwrap();
        l2.close();
        let after = sst(&l2);
        assert!(
            after > before / 2,
            "the compaction ran to its end before close returned: {before} -> {after} bytes"
        );
        assert_eq!(
            l2.inner.exec(&gete("key-0-0"), Mode::Wait).unwrap(),
            Response::NotFound
        );
    }

    #[test]
    fn a_flush_in_1970_flushes_nothing_and_calls_off_a_delayed_one() {
        let dir = tempfile::tempdir().unwrap();
        let l2 = open(dir.path(), None);
        l2.inner.exec(&set("a", "1", 0), Mode::Wait).unwrap();
        l2.inner
            .exec(&Command::Flush { delay: 2 }, Mode::Wait)
            .unwrap();
        l2.inner
            .exec(&Command::Flush { delay: 2_592_001 }, Mode::Wait)
            .unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        assert!(matches!(
            l2.inner.exec(&gete("a"), Mode::Wait).unwrap(),
            Response::ValueE { .. }
        ));
    }

    #[test]
    fn expired_records_are_misses_and_compaction_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let l2 = open(dir.path(), None);
        l2.inner.exec(&set("short", "x", 1), Mode::Wait).unwrap();
        l2.inner.exec(&set("long", "y", 0), Mode::Wait).unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(
            l2.inner.exec(&gete("short"), Mode::Wait).unwrap(),
            Response::NotFound
        );
        l2.inner.db.flush().unwrap();
        l2.inner.db.compact_range::<&[u8], &[u8]>(None, None);
        assert!(l2.inner.db.get(b"short").unwrap().is_none());
        assert!(l2.inner.db.get(b"long").unwrap().is_some());
    }

    #[test]
    fn stores_past_the_disk_bound_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let l2 = open(dir.path(), Some(256 * 1024));
        let value = "v".repeat(1000);
        let mut refused = 0;
        for i in 0..600 {
            match l2
                .inner
                .exec(&set(&format!("k{i}"), &value, 0), Mode::Wait)
                .unwrap()
            {
                Response::Stored { .. } => {}
                Response::Error(ErrorReply::OutOfMemory) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!((300..550).contains(&refused), "refused {refused}");
        assert!(l2.used_bytes() <= 256 * 1024);
        // Deletes still work at the bound.
        assert_eq!(
            l2.inner
                .exec(
                    &Command::Delete {
                        key: Bytes::from_static(b"k0"),
                        cas: 0
                    },
                    Mode::Wait
                )
                .unwrap(),
            Response::Deleted
        );
    }

    #[tokio::test]
    async fn calls_that_would_wait_run_on_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let l2 = open(dir.path(), None);
        // The first cas persists its ceiling (an fsync): that set waits.
        assert!(matches!(
            l2.inner.exec(&set("a", "1", 0), Mode::Now),
            Err(Stop::WouldBlock)
        ));
        assert!(matches!(
            l2.call(&set("a", "1", 0)).await,
            Ok(Response::Stored { .. })
        ));
        let pooled = l2.inner.stats.blocking_calls.load(Ordering::Relaxed);
        assert_eq!(pooled, 1);
        // Within the lease, sets and reads finish from memory, here.
        for i in 0..100 {
            assert!(matches!(
                l2.call(&set(&format!("k{i}"), "v", 0)).await,
                Ok(Response::Stored { .. })
            ));
            assert!(matches!(
                l2.call(&gete(&format!("k{i}"))).await,
                Ok(Response::ValueE { .. })
            ));
        }
        assert_eq!(
            l2.inner.stats.blocking_calls.load(Ordering::Relaxed),
            pooled
        );
        // A busy key lock is not waited for on a worker.
        let held = l2.inner.stripe(b"a").lock().unwrap();
        assert!(matches!(
            l2.inner.exec(&set("a", "2", 0), Mode::Now),
            Err(Stop::WouldBlock)
        ));
        drop(held);
        // Every write of --l2-durability sync fsyncs: always the pool.
        let dir2 = tempfile::tempdir().unwrap();
        let synced = L2::open(&L2Options {
            path: dir2.path().to_path_buf(),
            cache_mb: 8,
            max_bytes: None,
            durability: Durability::Sync,
            max_value: 1 << 20,
        })
        .unwrap();
        synced.call(&set("x", "1", 0)).await.unwrap();
        assert!(matches!(
            synced.inner.exec(&set("x", "2", 0), Mode::Now),
            Err(Stop::WouldBlock)
        ));
        assert_eq!(
            synced.call(&gete("x")).await.unwrap(),
            synced.inner.exec(&gete("x"), Mode::Now).unwrap()
        );
    }

    /// Writes made together share one write of the log buffer, every
    /// writer hears when its bytes are in the file, and a leader dropped
    /// half way (its client went away) hands over instead of wedging the
    /// others.
    #[tokio::test(flavor = "current_thread")]
    async fn the_log_group_commit_covers_every_writer() {
        let dir = tempfile::tempdir().unwrap();
        let l2 = open(dir.path(), None);
        // Persist the cas ceiling first (a pool call), then write together.
        l2.call(&set("first", "x", 0)).await.unwrap();
        let calls: Vec<_> = (0..50)
            .map(|i| l2.call(&set(&format!("k{i}"), "v", 0)))
            .collect();
        let wal = l2.inner.wal.as_ref().expect("wal durability groups");
        let appended = wal.appended.load(Ordering::Acquire);
        assert!(appended >= 50, "{appended}");
        for c in calls {
            assert!(matches!(c.await, Ok(Response::Stored { .. })));
        }
        assert!(wal.lock().flushed >= appended);

        let t1 = wal.appended.fetch_add(1, Ordering::AcqRel) + 1;
        let t2 = wal.appended.fetch_add(1, Ordering::AcqRel) + 1;
        let inner = l2.inner.clone();
        let leader = tokio::spawn(async move {
            let wal = inner.wal.as_ref().unwrap();
            wal.commit(&inner.db, t1).await
        });
        tokio::task::yield_now().await; // the first leads, then yields
        assert!(wal.lock().leader);
        let inner = l2.inner.clone();
        let follower = tokio::spawn(async move {
            let wal = inner.wal.as_ref().unwrap();
            wal.commit(&inner.db, t2).await
        });
        leader.abort();
        assert!(
            leader.await.unwrap_err().is_cancelled(),
            "the leader was dropped before it wrote the buffer"
        );
        let r = tokio::time::timeout(Duration::from_secs(2), follower)
            .await
            .expect("the follower took over");
        assert!(matches!(r, Ok(Ok(()))));
        assert!(wal.lock().flushed >= t2);
    }
}
