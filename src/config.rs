//! The proxy's command line.

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::backend::memcached::L1Addr;
use crate::backend::rocksdb::Durability;
use crate::protocol::DEFAULT_MAX_VALUE;
use crate::server::ListenAddr;

/// Orchestration policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OrcaKind {
    /// Every request goes to memcached (L1) alone.
    L1Only,
    /// L2 (RocksDB) is the source of truth, L1 (memcached) the hot subset;
    /// a second listener (--batch-listen) serves l1-l2-batch.
    #[value(name = "l1-l2")]
    L1L2,
}

/// rend: a memcached proxy. With no flags it starts its own memcached on a
/// private unix socket as L1, keeps L2 in RocksDB under ./rend-data, and
/// serves l1-l2 on 127.0.0.1:11211 and l1-l2-batch on 127.0.0.1:11212.
#[derive(Clone, Debug, Parser)]
#[command(name = "rend", version = crate::metrics::VERSION)]
pub struct Config {
    /// Where to serve: host:port (port 0 picks a free port; the bound address is
    /// logged as "listening on ADDR") or unix:/path.
    #[arg(long, default_value = "127.0.0.1:11211")]
    pub listen: ListenAddr,

    /// The L1 memcached: unix:/path or host:port. Without it, rend starts
    /// memcached from PATH and supervises it.
    #[arg(long)]
    pub l1: Option<L1Addr>,

    /// Connections to memcached, shared by all client connections.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub l1_conns: u16,

    /// Per-request timeout for L1 calls, milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub l1_timeout_ms: u64,

    /// Memory of the embedded memcached, megabytes (its -m).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=1_048_576))]
    pub l1_memory_mb: u32,

    /// The memcached executable for the embedded L1.
    #[arg(long, default_value = "memcached")]
    pub memcached: String,

    /// Orchestration policy.
    #[arg(long, value_enum, default_value_t = OrcaKind::L1L2)]
    pub orca: OrcaKind,

    /// With l1-l2: where the batch port (l1-l2-batch) listens, host:port or
    /// unix:/path; "off" serves no batch port.
    #[arg(long, default_value = "127.0.0.1:11212")]
    pub batch_listen: BatchListen,

    /// L2's data directory (RocksDB). One rend per directory.
    #[arg(long, default_value = "./rend-data")]
    pub l2_path: std::path::PathBuf,

    /// L2's block cache, megabytes (index and filter blocks included).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub l2_cache_mb: u64,

    /// Refuse stores once L2's files and memtables reach this many bytes
    /// (SERVER_ERROR out of memory storing object); unbounded when absent.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub l2_max_bytes: Option<u64>,

    /// What an acknowledged write survives: wal (a crash of rend), sync (a
    /// crash of the machine; fsync per write), none (neither).
    #[arg(long, value_enum, default_value_t = Durability::Wal)]
    pub l2_durability: Durability,

    /// Client connections served at once; one more gets
    /// "ERROR Too many open connections" and is closed.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_conns: u64,

    /// Largest value accepted, bytes. Default: what memcached -I 1m stores
    /// for a 1-byte key (1048516; its item header counts against the 1 MiB),
    /// or 1 MiB with --chunked (chunking lifts memcached's limit: up to 1 GiB).
    #[arg(long, visible_alias = "max-value-size", value_parser = parse_item_size)]
    pub max_item_size: Option<usize>,

    /// Store values as fixed-size chunks in memcached (Rend's layout), so
    /// every item lands in one slab class.
    #[arg(long)]
    pub chunked: bool,

    /// Chunk data size in bytes. Default: 1097 less the key's length (aimed
    /// at memcached's 1184-byte slab class).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub chunk_size: Option<u64>,

    /// Serialise work on each key with striped locks (writers alone,
    /// readers together). On by default with --chunked.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub locked: Option<bool>,

    /// Number of lock stripes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub lock_stripes: u64,

    /// Close a client connection that completes no request for this many
    /// seconds (idle, or trickling a request); 0 never closes.
    #[arg(long, default_value_t = 0)]
    pub idle_timeout: u64,

    /// How long shutdown waits for connections to finish, seconds.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace: u64,
}

/// The batch port's address, or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchListen {
    Off,
    At(ListenAddr),
}

impl std::str::FromStr for BatchListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            Ok(BatchListen::Off)
        } else {
            s.parse().map(BatchListen::At)
        }
    }
}

fn parse_item_size(s: &str) -> Result<usize, String> {
    let v: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if !(1..=1 << 30).contains(&v) {
        return Err(format!("{v} is out of range 1..=1073741824"));
    }
    Ok(v)
}

impl Config {
    /// The value limit in force.
    pub fn max_item_size(&self) -> usize {
        self.max_item_size.unwrap_or(if self.chunked {
            1 << 20
        } else {
            DEFAULT_MAX_VALUE
        })
    }

    /// Whether key locks are on.
    pub fn locked(&self) -> bool {
        self.locked.unwrap_or(self.chunked)
    }

    pub fn l1_timeout(&self) -> Duration {
        Duration::from_millis(self.l1_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout))
    }
}
