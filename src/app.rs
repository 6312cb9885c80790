//! Wiring: configuration → L1 (given, or the embedded memcached) → orca →
//! server. The `rend` binary calls [`run`].

use std::sync::Arc;
use std::time::Duration;

use crate::backend::admin::AdminLane;
use crate::backend::chunked::{ChunkStats, Chunked, ChunkedOptions};
use crate::backend::embedded::{Embedded, EmbeddedOptions};
use crate::backend::instrumented::Instrumented;
use crate::backend::memcached::{L1Addr, L1Options, MemcachedL1};
use crate::backend::meta_lane::MetaLanes;
use crate::backend::rocksdb::{L2Options, OpenError, L2};
use crate::backend::slab_balancer::{self, pacer::Pacer};
use crate::backend::Backend;
use crate::config::{BatchListen, Config, OrcaKind};
use crate::locks::KeyLocks;
use crate::metrics::{Counters, Exporter, Metrics, MetricsListen};
use crate::orca::l1_only::MetaRoute;
use crate::orca::two_tier::{L1Trust, Shared, SharedSettings, L1_HEADER};
use crate::orca::{l1_l2, l1_l2_batch, Admin, L1Only, Orca, OrcaFactory};
use crate::protocol::Limits;
use crate::server::{self, ConnSettings, ListenAddr, Listener, ServerSettings, Workers};
use tokio::sync::watch;

/// Why rend could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the embedded memcached: {0}")]
    Embedded(std::io::Error),
    #[error("{0}")]
    L2(#[from] OpenError),
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
}

/// Run the proxy until `shutdown` completes.
///
/// Longer than the rest (about 240 lines) for a reason: it is where every
/// piece meets, in start order (listeners, L2, L1, workers, orcas,
/// metrics) and then in stop order, and the stop order is the point
/// (worker threads before the embedded memcached, L2 marked clean last).
/// Each step that stands alone is a helper below.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let bind = |addr: ListenAddr| async move {
        Listener::bind(&addr)
            .await
            .map_err(|source| StartError::Listen {
                addr: format!("{addr:?}"),
                source,
            })
    };
    // Absolute times (flush_all) count from here, as memcached's do from
    // its own start.
    crate::backend::record::server_started();
    let listener = bind(config.listen.clone()).await?;
    let two_tier = config.orca == OrcaKind::L1L2;
    let batch_listener = match (&config.batch_listen, two_tier) {
        (BatchListen::At(addr), true) => Some(bind(addr.clone()).await?),
        _ => None,
    };

    // L2 first: a second rend on the same directory stops here, before it
    // starts a memcached.
    let l2 = if two_tier {
        Some(open_l2(&config)?)
    } else {
        None
    };

    let (l1_addr, embedded) = start_l1(&config, two_tier).await?;

    let workers = Workers::start(config.threads()).map_err(StartError::Workers)?;
    let l1 = MemcachedL1::start(
        L1Options {
            addr: l1_addr.clone(),
            conns: usize::from(config.l1_conns),
            timeout: config.l1_timeout(),
            max_body: config.max_item_size() + 64 * 1024,
            queue_requests: config.l1_queue_requests as usize,
            queue_bytes: config.l1_queue_bytes as usize,
        },
        workers.handles(),
    );
    if !l1.wait_connected(Duration::from_secs(2)).await {
        tracing::warn!(tier = "L1", addr = %l1_addr, "memcached is not reachable yet; requests fail until it is");
    }

    let counters = Arc::new(Counters::default());
    let metrics = Metrics::new(counters.clone());
    metrics.set_pool(l1.clone());
    let (l1m, l2m) = (metrics.l1.clone(), metrics.l2.clone());
    // One text connection for memcached's admin commands, on this thread.
    let admin: Admin = Arc::new(Instrumented::new(
        AdminLane::start(l1_addr.clone(), config.l1_timeout()),
        l1m.clone(),
    ));
    let locks = config
        .locked()
        .then(|| KeyLocks::new(config.lock_stripes as usize));
    let chunking = config.chunked.then(|| {
        (
            Arc::new(ChunkedOptions {
                chunk_size: config.chunk_size.map(|c| c as usize),
                max_value: config.max_item_size() + if two_tier { L1_HEADER } else { 0 },
            }),
            Arc::new(ChunkStats::default()),
        )
    });
    if let Some((_, stats)) = &chunking {
        let _ = counters.chunks.set(stats.clone());
    }
    if let Some(l2) = &l2 {
        let _ = counters.l2.set(Arc::new(l2.clone()));
    }
    counters
        .max_connections
        .store(config.max_conns, std::sync::atomic::Ordering::Relaxed);
    if config.slab_balancer() {
        let moves = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let _ = counters.slab_moves.set(moves.clone());
        let pacer = config.slab_pacing().map(|cap| {
            let extra = if two_tier { L1_HEADER } else { 0 };
            Arc::new(Pacer::new(cap, extra))
        });
        if let Some(p) = &pacer {
            let _ = counters.slab_pacer.set(p.clone());
        }
        slab_balancer::start(l1_addr.clone(), moves, pacer);
    }
    let (make_orca, make_batch, trust): (OrcaFactory, Option<OrcaFactory>, Option<Arc<L1Trust>>) =
        match (l2.clone(), chunking) {
            (None, None) => {
                let counters = counters.clone();
                // One text connection per worker for meta commands.
                let meta = MetaLanes::start(
                    l1_addr.clone(),
                    config.l1_timeout(),
                    config.max_item_size(),
                    workers.handles(),
                );
                (
                    Arc::new(move |worker| {
                        let l1 = Instrumented::new(l1.lane(worker), l1m.clone());
                        let meta = Instrumented::new(meta.lane(worker), l1m.clone());
                        let meta = MetaRoute::Lane(Box::new(meta));
                        let orca = L1Only::new(l1, meta, admin.clone(), counters.clone());
                        Box::new(orca) as Box<dyn Orca>
                    }),
                    None,
                    None,
                )
            }
            (None, Some((opts, stats))) => {
                let counters = counters.clone();
                (
                    Arc::new(move |worker| {
                        let l1 = Chunked::new(
                            l1.lane(worker),
                            opts.clone(),
                            locks.clone(),
                            stats.clone(),
                        );
                        let l1 = Instrumented::new(l1, l1m.clone());
                        // Meta commands run on the chunked values too.
                        let orca = L1Only::new(l1, MetaRoute::L1, admin.clone(), counters.clone());
                        Box::new(orca) as Box<dyn Orca>
                    }),
                    None,
                    None,
                )
            }
            (Some(l2), None) => two_tier_factories(
                Instrumented::new(l1.keyed(), l1m),
                Instrumented::new(l2, l2m),
                admin,
                &config,
                &counters,
            ),
            (Some(l2), Some((opts, stats))) => {
                // The chunked layer's own locks are a separate set from the
                // policy's: the policy holds a key's stripe while it calls L1.
                let l1 = Chunked::new(
                    l1.keyed_by(crate::backend::chunked::route_key),
                    opts,
                    locks,
                    stats,
                );
                two_tier_factories(
                    Instrumented::new(l1, l1m),
                    Instrumented::new(l2, l2m),
                    admin,
                    &config,
                    &counters,
                )
            }
        };

    // A rend that was killed, or stopped while some L1 copies were suspect,
    // took what it knew about them with it: L1 is flushed before it is
    // trusted (reads go to L2 meanwhile).
    if let (Some(l2), Some(trust)) = (&l2, &trust) {
        if !l2.opened_clean() {
            tracing::info!(
                tier = "L1",
                "the last run did not stop with L1 trusted; L1 is flushed before it is used"
            );
            trust.suspect_all();
        }
    }

    let settings = server_settings(&config, counters.slab_pacer.get().cloned());

    log_start(&config, workers.handles().len(), &l1_addr);
    tracing::info!("listening on {}", listener.local_addr());
    if let Some(b) = &batch_listener {
        tracing::info!("batch port (l1-l2-batch) listening on {}", b.local_addr());
    }
    // After the lines above: tests take the first "listening on" as the
    // main port. Metrics are an aid, not the service: a port that cannot be
    // had is logged and rend serves on without them.
    let metrics_listener = bind_metrics(&config.metrics_listen).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let grace = Duration::from_secs(config.shutdown_grace);
    if let Some(l) = metrics_listener {
        let exporter = Arc::new(Exporter::new(metrics.clone()));
        tokio::spawn(crate::metrics::http::serve(
            l,
            exporter,
            stopped(stop_rx.clone()),
        ));
    }
    let main = server::run(
        listener,
        server::Serving {
            settings: settings.clone(),
            counters: counters.clone(),
            figures: metrics.main.clone(),
            make_orca,
            workers: workers.handles().to_vec(),
            grace,
        },
        stopped(stop_rx.clone()),
    );
    let handles = workers.handles().to_vec();
    let batch = async {
        if let (Some(listener), Some(make)) = (batch_listener, make_batch) {
            let serving = server::Serving {
                settings,
                counters,
                figures: metrics.batch.clone(),
                make_orca: make,
                workers: handles,
                grace,
            };
            server::run(listener, serving, stopped(stop_rx)).await;
        }
    };
    let embedded_stopping = embedded.as_ref().map(Embedded::stopping);
    let signal = async {
        shutdown.await;
        if let Some(stopping) = &embedded_stopping {
            stopping.store(true, std::sync::atomic::Ordering::Release);
        }
        let _ = stop_tx.send(true);
    };
    tokio::select! {
        _ = async { tokio::join!(main, batch) } => {}
        _ = async { signal.await; std::future::pending::<()>().await } => {}
    }

    // Connections to memcached end with their worker threads, before the
    // embedded memcached stops, so none of them sees it go.
    workers.stop();
    if let Some(l2) = l2 {
        if trust.as_ref().is_some_and(|t| t.is_clear()) {
            l2.mark_clean();
        }
        l2.close();
    }
    if let Some(e) = embedded {
        e.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// L2 (RocksDB) as the configuration says.
fn open_l2(config: &Config) -> Result<L2, StartError> {
    L2::open(&L2Options {
        path: config.l2_path.clone(),
        cache_mb: config.l2_cache_mb,
        max_bytes: config.l2_max_bytes,
        durability: config.l2_durability,
        max_value: config.max_item_size(),
    })
    .map_err(StartError::L2)
}

/// L1's address: the one given, or that of the memcached rend starts (and
/// returns, to stop it at the end).
async fn start_l1(
    config: &Config,
    two_tier: bool,
) -> Result<(L1Addr, Option<Embedded>), StartError> {
    Ok(match &config.l1 {
        Some(addr) => (addr.clone(), None),
        None => {
            // Chunk items are small; otherwise memcached must hold the
            // largest value (with the two-tier cas header).
            let item_size = if config.chunked {
                1 << 20
            } else if two_tier {
                embedded_item_size(config.max_item_size() + L1_HEADER)
            } else {
                embedded_item_size(config.max_item_size())
            };
            let e = Embedded::start(EmbeddedOptions {
                program: config.memcached.clone(),
                memory_mb: config.l1_memory_mb,
                item_size,
            })
            .await
            .map_err(StartError::Embedded)?;
            (L1Addr::Unix(e.socket().to_path_buf()), Some(e))
        }
    })
}

/// What every client connection is held to.
fn server_settings(config: &Config, pacer: Option<Arc<Pacer>>) -> Arc<ServerSettings> {
    Arc::new(ServerSettings {
        max_conns: config.max_conns,
        conn: ConnSettings {
            limits: Limits {
                max_value: config.max_item_size(),
                ..Limits::default()
            },
            idle_timeout: config.idle_timeout(),
            max_requests: config.conn_max_requests as usize,
            max_bytes: config.conn_max_bytes as usize,
            pacer,
        },
    })
}

/// The start line: the mode and every setting in force.
fn log_start(config: &Config, threads: usize, l1_addr: &L1Addr) {
    let two_tier = config.orca == OrcaKind::L1L2;
    tracing::info!(
        orca = ?config.orca,
        threads,
        l1 = %l1_addr,
        l1_conns = config.l1_conns,
        l2_path = ?two_tier.then_some(&config.l2_path),
        l2_max_bytes = ?config.l2_max_bytes,
        l2_durability = ?config.l2_durability,
        max_conns = config.max_conns,
        max_item_size = config.max_item_size(),
        chunked = config.chunked,
        chunk_size = ?config.chunk_size,
        locked = config.locked(),
        settings = %config
            .to_toml()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
        "rend {}",
        crate::metrics::VERSION
    );
}

/// The metrics port. Metrics are an aid, not the service: a port that
/// cannot be had is logged and rend serves on without them.
async fn bind_metrics(at: &MetricsListen) -> Option<tokio::net::TcpListener> {
    match at {
        MetricsListen::Off => None,
        MetricsListen::At(addr) => match crate::metrics::http::bind(addr).await {
            Ok(l) => {
                let shown = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                tracing::info!("metrics listening on {shown}");
                Some(l)
            }
            Err(e) => {
                tracing::warn!("metrics disabled: cannot listen on {addr}: {e}");
                None
            }
        },
    }
}

/// The main port's and the batch port's orcas over one shared state: one
/// set of key locks and one record of which L1 copies to distrust.
fn two_tier_factories<B1: Backend + Clone, B2: Backend + Clone>(
    l1: B1,
    l2: B2,
    admin: Admin,
    config: &Config,
    counters: &Arc<Counters>,
) -> (OrcaFactory, Option<OrcaFactory>, Option<Arc<L1Trust>>) {
    let settings = SharedSettings {
        locks: KeyLocks::new(config.lock_stripes as usize),
        read_locks: config.locked(),
        l1_timeout: config.l1_timeout(),
    };
    let shared = Shared::new(l1, l2, admin, counters.clone(), settings);
    let batch = shared.clone();
    let trust = shared.trust.clone();
    (
        Arc::new(move |_| Box::new(l1_l2::orca(shared.clone())) as Box<dyn Orca>),
        Some(Arc::new(move |_| {
            Box::new(l1_l2_batch::orca(batch.clone())) as Box<dyn Orca>
        })),
        Some(trust),
    )
}

/// memcached's `-I` for a largest value: its 1 MiB default up to what that
/// stores, else the value plus room for the item header, in the 512 KiB steps
/// memcached requires.
fn embedded_item_size(max_value: usize) -> usize {
    const STEP: usize = 512 * 1024;
    if max_value <= crate::protocol::DEFAULT_MAX_VALUE {
        return 1 << 20;
    }
    (max_value + 4096).div_ceil(STEP) * STEP
}
