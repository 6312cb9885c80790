//! Everything rend exports to Prometheus, gathered at scrape time into a
//! `prometheus-client` registry: the request figures of [`super::ops`] and
//! the gauges read from their owners (L1 pool, chunking, L2, the process).
//! Series that never happened (a zero for a command/outcome pair) are left
//! out. The names are listed in the README's Metrics section; a test keeps
//! the two in step. The process's figures are read in
//! `exporter/process.rs`.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::ops::{Cmd, ListenerMetrics, OpMetrics, Outcome, TierMetrics};
use super::Counters;

mod process;

use process::encode_process;

/// The L1 pool's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolFigures {
    /// Pooled connections configured.
    pub conns: u64,
    /// Of those, connected now.
    pub up: u64,
    pub reconnects: u64,
    pub timeouts: u64,
    /// Requests refused at once because a connection's queue was full.
    pub overloads: u64,
    /// Stalled sockets kept until memcached answers what they carried.
    pub stalled: u64,
    /// Requests written to memcached and not yet answered.
    pub inflight: u64,
}

/// Where the L1 pool's figures come from.
pub trait PoolSource: Send + Sync {
    fn pool(&self) -> PoolFigures;
}

/// rend's figures: the listeners', the tiers', and where to read the rest.
pub struct Metrics {
    pub main: Arc<ListenerMetrics>,
    pub batch: Arc<ListenerMetrics>,
    pub l1: Arc<TierMetrics>,
    pub l2: Arc<TierMetrics>,
    /// For the policy's counters, chunking's and L2's figures.
    counters: Arc<Counters>,
    pool: OnceLock<Arc<dyn PoolSource>>,
    started: Instant,
    started_unix: f64,
}

impl Metrics {
    pub fn new(counters: Arc<Counters>) -> Arc<Metrics> {
        Arc::new(Metrics {
            main: Arc::new(ListenerMetrics::new("main")),
            batch: Arc::new(ListenerMetrics::new("batch")),
            l1: Arc::new(TierMetrics::new("l1")),
            l2: Arc::new(TierMetrics::new("l2")),
            counters,
            pool: OnceLock::new(),
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        })
    }

    pub fn set_pool(&self, pool: Arc<dyn PoolSource>) {
        let _ = self.pool.set(pool);
    }
}

/// The registry a scrape encodes.
pub struct Exporter {
    registry: Registry,
}

/// The OpenMetrics text format's `Content-Type`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format's (0.0.4) `Content-Type`.
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Exporter {
    pub fn new(metrics: Arc<Metrics>) -> Exporter {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Collect(metrics)));
        Exporter { registry }
    }

    /// The Prometheus text format (0.0.4), what Prometheus reads by default.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(32 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The OpenMetrics text format.
    pub fn encode_openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(32 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

struct Collect(Arc<Metrics>);

impl std::fmt::Debug for Collect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rend metrics")
    }
}

type Out<'a, 'b> = &'a mut DescriptorEncoder<'b>;

fn counter(enc: Out, name: &'static str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn counter_f64(enc: Out, name: &'static str, help: &str, v: f64) -> std::fmt::Result {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(enc: Out, name: &'static str, help: &str, v: i64) -> std::fmt::Result {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn gauge_f64(enc: Out, name: &'static str, help: &str, v: f64) -> std::fmt::Result {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A labelled family over the listeners or the tiers: `label` names the
/// first label, `sources` pairs its values with their figures.
fn op_families(
    enc: Out,
    prefix: Prefix,
    label: &'static str,
    sources: &[(&'static str, &OpMetrics)],
) -> std::fmt::Result {
    let mut fam = enc.encode_descriptor(
        prefix.requests,
        prefix.requests_help,
        None,
        MetricType::Counter,
    )?;
    for (name, ops) in sources {
        for cmd in Cmd::ALL {
            for outcome in Outcome::ALL {
                let v = ops.requests(cmd, outcome);
                if v == 0 {
                    continue;
                }
                let labels = [
                    (label, *name),
                    ("command", cmd.label()),
                    ("outcome", outcome.label()),
                ];
                ConstCounter::new(v).encode(fam.encode_family(&labels)?)?;
            }
        }
    }
    let mut fam = enc.encode_descriptor(
        prefix.latency,
        prefix.latency_help,
        None,
        MetricType::Histogram,
    )?;
    for (name, ops) in sources {
        for cmd in Cmd::ALL {
            let (sum, count, buckets) = ops.latency(cmd).snapshot();
            if count == 0 {
                continue;
            }
            let labels = [(label, *name), ("command", cmd.label())];
            fam.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
    }
    let mut fam =
        enc.encode_descriptor(prefix.keys, prefix.keys_help, None, MetricType::Counter)?;
    for (name, ops) in sources {
        let (hits, misses) = ops.get_keys();
        for (outcome, v) in [("hit", hits), ("miss", misses)] {
            if v > 0 {
                let labels = [(label, *name), ("outcome", outcome)];
                ConstCounter::new(v).encode(fam.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Prefix {
    requests: &'static str,
    requests_help: &'static str,
    latency: &'static str,
    latency_help: &'static str,
    keys: &'static str,
    keys_help: &'static str,
}

const CLIENT: Prefix = Prefix {
    requests: "rend_requests",
    requests_help: "Client requests answered, by listener, command and outcome.",
    latency: "rend_request_duration_seconds",
    latency_help: "Time from a request's arrival to its answer, by listener and command.",
    keys: "rend_get_keys",
    keys_help: "Keys named by client gets, by listener and outcome.",
};

const TIER: Prefix = Prefix {
    requests: "rend_tier_requests",
    requests_help: "Calls rend made to a tier, by tier (l1, l2), command and outcome.",
    latency: "rend_tier_request_duration_seconds",
    latency_help: "Latency of calls to a tier, by tier and command.",
    keys: "rend_tier_get_keys",
    keys_help: "Keys named by gets sent to a tier, by tier and outcome.",
};

/// Chunking's figures: its `stats` name, the family, the help.
const CHUNK_FIGURES: &[(&str, &str, &str)] = &[
    (
        "chunks_written",
        "rend_chunks_written",
        "Chunks written to L1.",
    ),
    ("chunks_read", "rend_chunks_read", "Chunks read from L1."),
    (
        "chunk_token_misses",
        "rend_chunk_token_misses",
        "Reads that found a chunk of another write (counted as misses).",
    ),
    (
        "chunk_missing_misses",
        "rend_chunk_missing_misses",
        "Reads that found a chunk missing (counted as misses).",
    ),
];

/// L2's `stats` figures and the metrics they become: (stats name, metric
/// name, counter?, scale, help).
pub(crate) const L2_FIGURES: &[(&str, &str, bool, f64, &str)] = &[
    (
        "l2_estimated_keys",
        "rend_l2_estimated_keys",
        false,
        1.0,
        "Keys in L2 (RocksDB's estimate, counting overwritten and deleted keys until compaction).",
    ),
    (
        "l2_live_data_bytes",
        "rend_l2_live_data_bytes",
        false,
        1.0,
        "Live data in L2 (RocksDB's estimate).",
    ),
    (
        "l2_sst_bytes",
        "rend_l2_sst_bytes",
        false,
        1.0,
        "Size of L2's SST files.",
    ),
    (
        "l2_memtable_bytes",
        "rend_l2_memtable_bytes",
        false,
        1.0,
        "Size of L2's memtables.",
    ),
    (
        "l2_used_bytes",
        "rend_l2_used_bytes",
        false,
        1.0,
        "Bytes counted against --l2-max-bytes.",
    ),
    (
        "l2_max_bytes",
        "rend_l2_max_bytes",
        false,
        1.0,
        "--l2-max-bytes (0: unbounded).",
    ),
    (
        "l2_block_cache_bytes",
        "rend_l2_block_cache_usage_bytes",
        false,
        1.0,
        "Memory held by L2's block cache.",
    ),
    (
        "l2_pending_compaction_bytes",
        "rend_l2_pending_compaction_bytes",
        false,
        1.0,
        "Bytes RocksDB estimates compaction has to rewrite.",
    ),
    (
        "l2_running_compactions",
        "rend_l2_running_compactions",
        false,
        1.0,
        "Compactions running now.",
    ),
    (
        "l2_write_stall_micros",
        "rend_l2_write_stall_seconds",
        true,
        1e-6,
        "Time writes were delayed or stopped by RocksDB (write stalls).",
    ),
    (
        "l2_write_stopped",
        "rend_l2_write_stopped",
        false,
        1.0,
        "1 while RocksDB stops writes.",
    ),
    (
        "l2_delayed_write_rate",
        "rend_l2_delayed_write_rate_bytes_per_second",
        false,
        1.0,
        "The rate RocksDB slows writes to while it delays them (0: not delaying).",
    ),
    (
        "l2_refused_full",
        "rend_l2_refused_full",
        true,
        1.0,
        "Stores refused because L2 reached --l2-max-bytes.",
    ),
    (
        "l2_errors",
        "rend_l2_errors",
        true,
        1.0,
        "L2 calls that failed in RocksDB.",
    ),
    (
        "l2_blocking_calls",
        "rend_l2_blocking_calls",
        true,
        1.0,
        "L2 calls that would have waited (disk reads, write stalls, fsync) and ran on the blocking pool.",
    ),
];

impl Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.0;
        let enc = &mut enc;
        encode_requests(enc, m)?;
        encode_connections(enc, m)?;
        encode_policy(enc, m)?;
        encode_pool(enc, m)?;
        encode_chunking(enc, m)?;
        encode_l2(enc, m)?;
        encode_process(enc, m)
    }
}

/// Client requests, per listener; tier calls, per tier.
fn encode_requests(enc: Out, m: &Metrics) -> std::fmt::Result {
    op_families(
        enc,
        CLIENT,
        "listener",
        &[(m.main.name, &m.main.ops), (m.batch.name, &m.batch.ops)],
    )?;
    op_families(
        enc,
        TIER,
        "tier",
        &[(m.l1.name, &m.l1.ops), (m.l2.name, &m.l2.ops)],
    )?;
    let mut fam = enc.encode_descriptor(
        "rend_tier_inflight",
        "Calls to a tier started and not yet answered.",
        None,
        MetricType::Gauge,
    )?;
    for t in [&m.l1, &m.l2] {
        ConstGauge::new(t.inflight()).encode(fam.encode_family(&[("tier", t.name)])?)?;
    }
    Ok(())
}

/// Client connections, per listener.
fn encode_connections(enc: Out, m: &Metrics) -> std::fmt::Result {
    let conns: Vec<_> = [&m.main, &m.batch]
        .into_iter()
        .filter(|l| l.is_serving())
        .map(|l| (l.name, l.connections()))
        .collect();
    let mut fam = enc.encode_descriptor(
        "rend_client_connections",
        "Client connections open now.",
        None,
        MetricType::Gauge,
    )?;
    for &(name, (current, _, _)) in &conns {
        ConstGauge::new(current).encode(fam.encode_family(&[("listener", name)])?)?;
    }
    let mut fam = enc.encode_descriptor(
        "rend_client_connections_accepted",
        "Client connections accepted.",
        None,
        MetricType::Counter,
    )?;
    for &(name, (_, accepted, _)) in &conns {
        ConstCounter::new(accepted).encode(fam.encode_family(&[("listener", name)])?)?;
    }
    let mut fam = enc.encode_descriptor(
        "rend_client_connections_rejected",
        "Client connections refused at --max-conns.",
        None,
        MetricType::Counter,
    )?;
    for &(name, (_, _, rejected)) in &conns {
        ConstCounter::new(rejected).encode(fam.encode_family(&[("listener", name)])?)?;
    }
    Ok(())
}

/// The policy's own counters.
fn encode_policy(enc: Out, m: &Metrics) -> std::fmt::Result {
    let c = &m.counters.counts;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    counter(
        enc,
        "rend_l1_backfills",
        "L2 records copied into L1 after an L1 miss.",
        load(&c.l1_backfills),
    )?;
    counter(
        enc,
        "rend_l1_read_failures",
        "L1 reads that failed, served from L2 instead.",
        load(&c.l1_read_failures),
    )?;
    counter(
        enc,
        "rend_l1_write_failures",
        "L1 writes, deletes or touches that failed (the key's L1 copy is then ignored).",
        load(&c.l1_write_failures),
    )?;
    Ok(())
}

/// The L1 pool's figures, once the pool is known.
fn encode_pool(enc: Out, m: &Metrics) -> std::fmt::Result {
    if let Some(pool) = m.pool.get() {
        let p = pool.pool();
        gauge(
            enc,
            "rend_l1_pool_connections",
            "Pooled connections to memcached (--threads x --l1-conns).",
            as_i64(p.conns),
        )?;
        gauge(
            enc,
            "rend_l1_pool_connections_up",
            "Pooled connections to memcached that are connected now.",
            as_i64(p.up),
        )?;
        gauge(
            enc,
            "rend_l1_pool_inflight",
            "Requests written to memcached and not yet answered, over all pooled connections.",
            as_i64(p.inflight),
        )?;
        counter(
            enc,
            "rend_l1_pool_reconnects",
            "Times a pooled connection was lost or could not connect, and was redialled.",
            p.reconnects,
        )?;
        counter(
            enc,
            "rend_l1_pool_timeouts",
            "L1 requests that timed out (--l1-timeout-ms).",
            p.timeouts,
        )?;
        counter(
            enc,
            "rend_l1_pool_overloads",
            "L1 requests refused at once because a connection's queue was full.",
            p.overloads,
        )?;
        gauge(
            enc,
            "rend_l1_pool_stalled_sockets",
            "Stalled memcached sockets kept until memcached answers what was written to them.",
            as_i64(p.stalled),
        )?;
    }
    Ok(())
}

/// Chunking's figures, with `--chunked`.
fn encode_chunking(enc: Out, m: &Metrics) -> std::fmt::Result {
    if let Some(chunks) = m.counters.chunks.get() {
        let figures = chunks.stats();
        for (stat, name, help) in CHUNK_FIGURES {
            if let Some(&(_, v)) = figures.iter().find(|(k, _)| k == stat) {
                counter(enc, name, help, v)?;
            }
        }
    }
    Ok(())
}

/// L2's figures, with an L2.
fn encode_l2(enc: Out, m: &Metrics) -> std::fmt::Result {
    if let Some(l2) = m.counters.l2.get() {
        let figures = l2.stats();
        for (stat, name, is_counter, scale, help) in L2_FIGURES {
            let Some(&(_, v)) = figures.iter().find(|(k, _)| k == stat) else {
                continue;
            };
            match (*is_counter, *scale == 1.0) {
                (true, true) => counter(enc, name, help, v)?,
                (true, false) => counter_f64(enc, name, help, v as f64 * scale)?,
                (false, true) => gauge(enc, name, help, as_i64(v))?,
                (false, false) => gauge_f64(enc, name, help, v as f64 * scale)?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ops::Classified;
    use crate::protocol::{Command, Response};
    use std::time::Duration;

    #[test]
    fn histograms_encode_cumulative_buckets() {
        let counters = Arc::new(Counters::default());
        let m = Metrics::new(counters);
        let set = Command::Store {
            mode: crate::protocol::StoreMode::Set,
            key: bytes::Bytes::from_static(b"k"),
            flags: 0,
            exptime: 0,
            cas: 0,
            value: bytes::Bytes::new(),
        };
        let ok = Response::Stored { cas: 1 };
        m.main
            .ops
            .record(&Classified::of(&set, &ok), Duration::from_micros(3));
        m.main
            .ops
            .record(&Classified::of(&set, &ok), Duration::from_micros(8));
        let text = Exporter::new(m).encode().unwrap();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .to_string()
        };
        assert!(line(
            "rend_request_duration_seconds_bucket{listener=\"main\",command=\"set\",le=\"+Inf\"}"
        )
        .ends_with(" 2"));
        assert!(
            line("rend_request_duration_seconds_count{listener=\"main\",command=\"set\"}")
                .ends_with(" 2")
        );
        assert!(
            line("rend_requests_total{listener=\"main\",command=\"set\",outcome=\"stored\"}")
                .ends_with(" 2")
        );
        assert!(text.contains("le=\"5e-06\"} 1"), "{text}");
        assert!(text.contains("le=\"1e-05\"} 2"), "{text}");
    }
}
