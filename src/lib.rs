//! rend: a memcached proxy in front of a local memcached (L1) and an
//! embedded RocksDB (L2), and the library its load and verification tools
//! share.
//!
//! # Layout
//!
//! Where a request goes, top to bottom:
//! - [`server`] accepts connections (TCP or a unix socket), enforces the
//!   connection limit and hands each to a worker thread; [`server::conn`]
//!   sniffs the protocol from the first byte and runs one loop per
//!   connection over a [`net`] socket (`conn/multiget.rs`: a text
//!   multi-get answered in pieces; `conn/pool.rs`: each worker's idle
//!   buffers).
//! - [`protocol`] is the wire, pure (no I/O): one request/response model,
//!   [`protocol::text`] and [`protocol::binary`] as memcached 1.6.18 parses
//!   and answers them, [`protocol::meta`] (the meta commands, which arrive
//!   inside the text protocol), [`protocol::number`] (memcached's number
//!   parsing), [`protocol::expiry`] (memcached's rules for time) and
//!   [`protocol::out`] (where encoders write). `text/` holds request
//!   decoding (`request.rs`), reply encoding (`response.rs`), the client
//!   side (`client.rs`) and the admin relay (`admin.rs`);
//!   [`protocol::binary::Opcode`] and [`protocol::binary::RequestPacket`]
//!   (`binary/opcode.rs`) are the binary opcode model, the one map from a
//!   request to its packet for the L1 and tools' clients; `meta/` holds
//!   the meta replies and memcached's base64.
//! - [`orca`] is the policy that decides which tiers answer:
//!   [`orca::l1_only`], [`orca::l1_l2`] and [`orca::l1_l2_batch`], the last
//!   two sharing [`orca::two_tier`] (which L1 copies may be stale:
//!   `two_tier/trust.rs`).
//! - [`backend`] holds the tiers behind one trait: [`backend::memcached`]
//!   (the pooled, pipelined binary client of memcached, its per-connection
//!   tasks in `memcached/io.rs`), [`backend::rocksdb`] (L2: opening, the
//!   call path, the cas clock and flush_all, the disk bound and the log's
//!   group commit in `rocksdb/`) with [`backend::record`] (its record and
//!   memcached's verbs as pure functions, the meta commands in
//!   [`backend::record::meta`]), [`backend::chunked`] (values as fixed-size
//!   chunks: Rend's layout, reading, writing, read-modify-write and the
//!   meta commands in `chunked/`), [`backend::instrumented`] (per-tier
//!   counters), [`backend::admin`] (the text connection that carries
//!   memcached's admin commands), [`backend::meta_lane`] (the text
//!   connections that carry meta commands in `l1-only` without
//!   `--chunked`),
//!   [`backend::slab_balancer`] (rend moving memcached's slab pages) and
//!   [`backend::embedded`] (the memcached rend starts when it is given
//!   none).
//!
//! Around them: [`config`] is the configuration (flags, `REND_*`, a TOML
//! file), [`app`] wires everything together, [`locks`] holds the
//! key-striped locks that orcas and backends share, [`ratelimit`] keeps
//! repeated warnings from flooding the log, and [`metrics`] keeps the
//! counters `stats` reports and, in [`metrics::ops`], [`metrics::exporter`]
//! (the process's own figures in `exporter/process.rs`) and
//! [`metrics::http`], what Prometheus scrapes. `metrics` is a leaf: it
//! knows the protocol model and nothing else; what it reports comes through
//! its traits ([`metrics::StatsSource`], [`metrics::exporter::PoolSource`]),
//! implemented beside each source's own type.
//!
//! [`tools`] is the library of `blast`, `setget` and `sizes`: their flags
//! ([`tools::args`]), client ([`tools::client`]), workload
//! ([`tools::workload`]: keys, value sizes, commands and self-verifying
//! values, a file each; [`tools::ketama`]), runs ([`tools::blast`],
//! [`tools::verify`]) and report ([`tools::report`]: what a worker
//! records, the plot, the progress display). `src/bin/` holds the four thin
//! binaries.

pub mod app;
pub mod backend;
pub mod config;
pub mod locks;
pub mod metrics;
pub mod net;
pub mod orca;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub mod tools;

/// proptest's configuration for the unit tests: the seeds of failures it
/// finds are kept in `fixtures/proptest-regressions/{file}` (cargo runs tests
/// from the crate root) and replayed first on every run.
#[cfg(test)]
pub(crate) fn proptest_config(file: &'static str) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(file),
        )),
        ..proptest::test_runner::Config::default()
    }
}
