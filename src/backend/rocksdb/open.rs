//! Opening the store: RocksDB's options (the choices the module doc lists),
//! the column family of rend's own records (the flush cut-offs, the cas
//! ceiling, whether the last rend stopped cleanly), and the thread that
//! reads the disk use.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use ::rocksdb::compaction_filter::Decision;
use ::rocksdb::statistics::StatsLevel;
use ::rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DataBlockIndexType,
    Options, WriteOptions, DB,
};

use super::cas::{CasClock, Flush};
use super::space::watch_space;
use super::wal::WalGroup;
use super::{
    Durability, Inner, L2Options, L2Stats, OpenError, CAS_KEY, FLUSH_KEY, L2, META_CF, RUNNING_KEY,
    STRIPES,
};
use crate::backend::record::Record;
use crate::protocol::expiry::{self, is_expired};

impl L2 {
    /// Open (or create) the store in `opts.path`.
    pub fn open(opts: &L2Options) -> Result<L2, OpenError> {
        let other = |reason: String| OpenError::Other {
            path: opts.path.clone(),
            reason,
        };
        std::fs::create_dir_all(&opts.path).map_err(|e| other(e.to_string()))?;
        let flush = Arc::new(Flush::default());
        let items = item_options(opts.cache_mb, flush.clone());
        let db_opts = db_options(opts.durability);
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
        let (opened_clean, ceiling) = start_meta(&db, &flush).map_err(other)?;

        let inner = Arc::new(Inner {
            db,
            path: opts.path.clone(),
            db_opts: Mutex::new(db_opts),
            durability: opts.durability,
            wal: (opts.durability == Durability::Wal).then(WalGroup::default),
            flush,
            // Everything issued before the restart is below the old ceiling.
            cas: CasClock::new(ceiling),
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
}

/// The options of the items' column family: block-based tables with a
/// bloom filter and a hash index, one LRU block cache of `cache_mb`, LZ4,
/// in-place memtable updates, and the compaction filter that drops expired
/// and flushed records.
fn item_options(cache_mb: u64, flush: Arc<Flush>) -> Options {
    let cache = Cache::new_lru_cache((cache_mb as usize).saturating_mul(1 << 20));
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
    items.set_compaction_filter(
        "rend-expiry",
        move |_level: u32, _key: &[u8], value: &[u8]| match Record::peek(value) {
            Some((expiry, cas)) => {
                let now = expiry::now();
                if is_expired(expiry, now) || cas < flush.effective(now) {
                    Decision::Remove
                } else {
                    Decision::Keep
                }
            }
            None => Decision::Keep,
        },
    );
    items
}

/// The database's own options: two background jobs, serialised memtable
/// writes, a bounded count of open files and of log size, the manual log
/// flush of the group commit, and counters for `stats`.
fn db_options(durability: Durability) -> Options {
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
    db_opts.set_manual_wal_flush(durability == Durability::Wal);
    // Counters only (no timers or histograms, which cost on every call):
    // write-stall time for `stats`.
    db_opts.enable_statistics();
    db_opts.set_statistics_level(StatsLevel::ExceptHistogramOrTimers);
    db_opts
}

/// Read what the last rend left in the meta column family and mark this one
/// running: the flush cut-offs (into `flush`), whether the last rend
/// stopped cleanly, and the persisted cas ceiling.
fn start_meta(db: &DB, flush: &Flush) -> Result<(bool, u64), String> {
    let meta = db
        .cf_handle(META_CF)
        .ok_or_else(|| String::from("missing column family"))?;
    if let Some(b) = db.get_cf(meta, FLUSH_KEY).map_err(|e| e.into_string())? {
        flush.load(&b);
    }
    let opened_clean = db
        .get_cf(meta, RUNNING_KEY)
        .map_err(|e| e.into_string())?
        .is_none();
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    db.put_cf_opt(meta, RUNNING_KEY, b"1", &sync)
        .map_err(|e| e.into_string())?;
    let ceiling = db
        .get_cf(meta, CAS_KEY)
        .map_err(|e| e.into_string())?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    Ok((opened_clean, ceiling))
}
