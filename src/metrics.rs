//! The proxy's own counters, kept as atomics and reported by `stats` with
//! memcached's names so memcached dashboards read rend unchanged; and its
//! Prometheus metrics: request figures per listener and tier ([`ops`]),
//! gathered with everything else at scrape time ([`exporter`]) and served
//! at `/metrics` ([`http`]).

pub mod exporter;
pub mod http;
pub mod ops;

pub use exporter::{Exporter, Metrics, PoolSource};
pub use http::MetricsListen;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;

use crate::backend::slab_balancer::pacer::Pacer;
use crate::metrics::ops::{Classified, Cmd, Outcome};

/// The protocol level rend speaks, then its own version: clients such as
/// memccapable read the leading memcached version to choose their tests.
pub const VERSION: &str = concat!("1.6.18-rend-", env!("CARGO_PKG_VERSION"));

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Counters, named as in memcached's `stats`.
        #[derive(Default)]
        pub struct Counts { $(pub $name: AtomicU64,)* }

        impl Counts {
            fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters!(
    curr_connections,
    total_connections,
    rejected_connections,
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    get_hits,
    get_misses,
    delete_misses,
    delete_hits,
    incr_misses,
    incr_hits,
    decr_misses,
    decr_hits,
    cas_misses,
    cas_hits,
    cas_badval,
    touch_hits,
    touch_misses,
    backend_errors,
    l1_read_failures,
    l1_write_failures,
    l1_backfills,
    l2_gets,
    l2_get_hits,
);

/// A part of the proxy with figures of its own for `stats` (L2).
pub trait StatsSource: Send + Sync {
    fn stats(&self) -> Vec<(&'static str, u64)>;
}

/// Counters plus the start time.
pub struct Counters {
    pub counts: Counts,
    started: Instant,
    /// Chunking's own counters, when values are chunked.
    pub chunks: std::sync::OnceLock<std::sync::Arc<dyn StatsSource>>,
    /// `--max-conns`, for `stats`.
    pub max_connections: AtomicU64,
    /// L2's figures, in the two-tier modes.
    pub l2: std::sync::OnceLock<std::sync::Arc<dyn StatsSource>>,
    /// Pages the slab balancer moved, when it runs.
    pub slab_moves: std::sync::OnceLock<std::sync::Arc<AtomicU64>>,
    /// Stores paced for slab pages, when they are.
    pub slab_pacer: std::sync::OnceLock<std::sync::Arc<Pacer>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            counts: Counts::default(),
            started: Instant::now(),
            chunks: std::sync::OnceLock::new(),
            l2: std::sync::OnceLock::new(),
            slab_moves: std::sync::OnceLock::new(),
            slab_pacer: std::sync::OnceLock::new(),
            max_connections: AtomicU64::new(0),
        }
    }
}

/// CPU seconds of this process in memcached's `stats` form (`0.123456`):
/// field `index` (0-based; 13 user, 14 system) of /proc/self/stat, in
/// clock ticks of 1/100 s (Linux's USER_HZ).
fn rusage(index: usize) -> String {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The command name may hold spaces; fields count from after it.
            let rest = s.get(s.rfind(')')? + 2..)?.to_string();
            rest.split_whitespace().nth(index - 2)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    format!("{}.{:06}", ticks / 100, (ticks % 100) * 10_000)
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    /// Count one answered request as memcached's `stats` does.
    pub fn record(&self, r: &Classified) {
        let c = &self.counts;
        if r.server_error {
            bump(&c.backend_errors, 1);
        }
        let (hit, miss) = (r.outcome == Outcome::Hit, r.outcome == Outcome::Miss);
        match r.cmd {
            Cmd::Get | Cmd::Gat if hit || miss => {
                self.record_get(r.cmd == Cmd::Gat, r.keys as u64, r.hits as u64)
            }
            // memcached counts a meta get, set and delete as their classic
            // forms (a reply `q` hid has no outcome to count).
            Cmd::MetaGet if hit || miss => self.record_get(false, 1, u64::from(hit)),
            Cmd::MetaSet => bump(&c.cmd_set, 1),
            Cmd::MetaDelete if hit => bump(&c.delete_hits, 1),
            Cmd::MetaDelete if miss => bump(&c.delete_misses, 1),
            Cmd::Set | Cmd::Add | Cmd::Replace | Cmd::Append | Cmd::Prepend => bump(&c.cmd_set, 1),
            Cmd::Cas => {
                bump(&c.cmd_set, 1);
                match r.outcome {
                    Outcome::Stored => bump(&c.cas_hits, 1),
                    Outcome::Exists => bump(&c.cas_badval, 1),
                    Outcome::Miss => bump(&c.cas_misses, 1),
                    _ => {}
                }
            }
            Cmd::Delete if hit => bump(&c.delete_hits, 1),
            Cmd::Delete if miss => bump(&c.delete_misses, 1),
            Cmd::Incr if hit => bump(&c.incr_hits, 1),
            Cmd::Incr if miss => bump(&c.incr_misses, 1),
            Cmd::Decr if hit => bump(&c.decr_hits, 1),
            Cmd::Decr if miss => bump(&c.decr_misses, 1),
            Cmd::Touch => {
                bump(&c.cmd_touch, 1);
                if hit {
                    bump(&c.touch_hits, 1);
                } else if miss {
                    bump(&c.touch_misses, 1);
                }
            }
            Cmd::Flush => bump(&c.cmd_flush, 1),
            _ => {}
        }
    }

    /// Count the keys of a get (or gat, `touch`) and how many were found.
    pub fn record_get(&self, touch: bool, keys: u64, hits: u64) {
        let c = &self.counts;
        let misses = keys.saturating_sub(hits);
        if touch {
            bump(&c.cmd_touch, keys);
            bump(&c.touch_hits, hits);
            bump(&c.touch_misses, misses);
        } else {
            bump(&c.cmd_get, keys);
            bump(&c.get_hits, hits);
            bump(&c.get_misses, misses);
        }
    }

    /// `stats` as memcached lays it out: pid, uptime, time, version, then
    /// the counters.
    pub fn stats(&self) -> Vec<(Bytes, Bytes)> {
        let now = crate::protocol::expiry::now();
        let mut out: Vec<(Bytes, Bytes)> = vec![
            ("pid", std::process::id().to_string()),
            ("uptime", self.started.elapsed().as_secs().to_string()),
            ("time", now.to_string()),
            ("version", VERSION.to_string()),
            (
                "pointer_size",
                (8 * std::mem::size_of::<usize>()).to_string(),
            ),
            ("rusage_user", rusage(13)),
            ("rusage_system", rusage(14)),
            (
                "max_connections",
                self.max_connections.load(Ordering::Relaxed).to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (Bytes::from_static(k.as_bytes()), Bytes::from(v)))
        .collect();
        out.extend(
            self.counts
                .pairs()
                .into_iter()
                .map(|(k, v)| (Bytes::from_static(k.as_bytes()), Bytes::from(v.to_string()))),
        );
        for source in [self.chunks.get(), self.l2.get()].into_iter().flatten() {
            out.extend(
                source
                    .stats()
                    .into_iter()
                    .map(|(k, v)| (Bytes::from_static(k.as_bytes()), Bytes::from(v.to_string()))),
            );
        }
        if let Some(moves) = self.slab_moves.get() {
            out.push((
                Bytes::from_static(b"slab_balancer_moves"),
                Bytes::from(moves.load(Ordering::Relaxed).to_string()),
            ));
        }
        if let Some(pacer) = self.slab_pacer.get() {
            for (name, n) in [
                (&b"slab_pacing_waits"[..], &pacer.waits),
                (&b"slab_pacing_timeouts"[..], &pacer.timeouts),
            ] {
                out.push((
                    Bytes::from_static(name),
                    Bytes::from(n.load(Ordering::Relaxed).to_string()),
                ));
            }
        }
        out
    }

    pub fn connection_opened(&self) {
        bump(&self.counts.curr_connections, 1);
        bump(&self.counts.total_connections, 1);
    }

    pub fn connection_closed(&self) {
        self.counts.curr_connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn current_connections(&self) -> u64 {
        self.counts.curr_connections.load(Ordering::Relaxed)
    }
}
