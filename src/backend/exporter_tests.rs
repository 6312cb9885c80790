//! The Prometheus exporter with real sources behind it: chunking's
//! figures and a RocksDB L2, so every family shows. These tests live under
//! `backend` because `metrics` knows no backend type (it is a leaf), while
//! a backend may know `metrics`.

use std::sync::Arc;

use crate::backend::chunked::ChunkStats;
use crate::metrics::exporter::{Exporter, Metrics, PoolFigures, PoolSource, L2_FIGURES};
use crate::metrics::ops::Classified;
use crate::metrics::Counters;
use crate::protocol::{Command, Response};
use std::collections::HashSet;
use std::time::Duration;

/// The family names a scrape holds (`# TYPE` lines), in order.
fn family_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

struct FakePool;
impl PoolSource for FakePool {
    fn pool(&self) -> PoolFigures {
        PoolFigures {
            conns: 4,
            up: 3,
            reconnects: 2,
            timeouts: 1,
            inflight: 5,
            overloads: 6,
            stalled: 1,
        }
    }
}

/// Every source set, every listener and tier used, so every family
/// shows.
fn everything(l2_dir: &std::path::Path) -> (Arc<Metrics>, crate::backend::rocksdb::L2) {
    let counters = Arc::new(Counters::default());
    let _ = counters.chunks.set(Arc::new(ChunkStats::default()));
    let l2 = crate::backend::rocksdb::L2::open(&crate::backend::rocksdb::L2Options {
        path: l2_dir.to_path_buf(),
        cache_mb: 8,
        max_bytes: None,
        durability: crate::backend::rocksdb::Durability::Wal,
        max_value: 1 << 20,
    })
    .unwrap();
    let _ = counters.l2.set(Arc::new(l2.clone()));
    let m = Metrics::new(counters);
    m.set_pool(Arc::new(FakePool));
    let get = Command::Get {
        keys: vec![bytes::Bytes::from_static(b"k")],
        touch: None,
    };
    let miss = Response::Values(Vec::new());
    m.main.serving();
    m.batch.serving();
    for ops in [&m.main.ops, &m.batch.ops, &m.l1.ops, &m.l2.ops] {
        ops.record(&Classified::of(&get, &miss), Duration::from_micros(30));
    }
    (m, l2)
}

/// Sample names each family may produce.
fn sample_names(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{family}{s}"))
            .collect(),
        _ => vec![family.to_string()],
    }
}

#[test]
fn no_two_metrics_share_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let (m, l2) = everything(dir.path());
    let exporter = Exporter::new(m);
    for text in [
        exporter.encode().unwrap(),
        exporter.encode_openmetrics().unwrap(),
    ] {
        let mut families = HashSet::new();
        let mut samples: HashSet<String> = HashSet::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let mut parts = line.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(families.insert(name.to_string()), "{name} twice:\n{text}");
            // OpenMetrics names a counter family without `_total`.
            let family = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            for s in sample_names(&family, kind) {
                assert!(samples.insert(s.clone()), "sample name {s} twice:\n{text}");
            }
        }
        // Every sample belongs to a family it was declared under.
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(samples.contains(name), "{name} has no family:\n{text}");
        }
        assert!(families.len() > 40, "{text}");
    }
    l2.close();
}

#[test]
fn every_l2_figure_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let (_, l2) = everything(dir.path());
    let names: Vec<&str> = crate::metrics::StatsSource::stats(&l2)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for n in &names {
        assert!(
            L2_FIGURES.iter().any(|(s, ..)| s == n),
            "L2 figure {n} has no metric"
        );
    }
    l2.close();
}

#[test]
fn the_readme_names_every_metric() {
    let dir = tempfile::tempdir().unwrap();
    let (m, l2) = everything(dir.path());
    let text = Exporter::new(m).encode().unwrap();
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Metrics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Metrics section");
    for name in family_names(&text) {
        assert!(
            section.contains(&format!("`{name}`")),
            "README's Metrics section does not name `{name}`"
        );
    }
    l2.close();
}
