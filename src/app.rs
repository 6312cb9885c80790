//! Wiring: configuration → L1 (given, or the embedded memcached) → orca →
//! server. The `rend` binary calls [`run`].

use std::sync::Arc;
use std::time::Duration;

use crate::backend::chunked::{ChunkStats, Chunked, ChunkedOptions};
use crate::backend::embedded::{Embedded, EmbeddedOptions};
use crate::backend::locks::KeyLocks;
use crate::backend::memcached::{L1Addr, L1Options, MemcachedL1};
use crate::config::{Config, OrcaKind};
use crate::metrics::Counters;
use crate::orca::{L1Only, Orca, OrcaFactory};
use crate::protocol::Limits;
use crate::server::{self, ConnSettings, Listener, ServerSettings};

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
}

/// Run the proxy until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let listener = Listener::bind(&config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: format!("{:?}", config.listen),
            source,
        })?;

    let (l1_addr, embedded) = match &config.l1 {
        Some(addr) => (addr.clone(), None),
        None => {
            let e = Embedded::start(EmbeddedOptions {
                program: config.memcached.clone(),
                memory_mb: config.l1_memory_mb,
                // Chunk items are small; otherwise memcached must hold the
                // largest value.
                item_size: if config.chunked {
                    1 << 20
                } else {
                    embedded_item_size(config.max_item_size())
                },
            })
            .await
            .map_err(StartError::Embedded)?;
            (L1Addr::Unix(e.socket().to_path_buf()), Some(e))
        }
    };

    let l1 = MemcachedL1::start(L1Options {
        addr: l1_addr.clone(),
        conns: usize::from(config.l1_conns),
        timeout: config.l1_timeout(),
        max_body: config.max_item_size() + 64 * 1024,
        max_inflight: 100_000,
    });
    if !l1.wait_connected(Duration::from_secs(2)).await {
        tracing::warn!(tier = "L1", addr = %l1_addr, "memcached is not reachable yet; requests fail until it is");
    }

    let counters = Arc::new(Counters::default());
    let locks = config
        .locked()
        .then(|| KeyLocks::new(config.lock_stripes as usize));
    let chunking = config.chunked.then(|| {
        (
            Arc::new(ChunkedOptions {
                chunk_size: config.chunk_size.map(|c| c as usize),
                max_value: config.max_item_size(),
            }),
            Arc::new(ChunkStats::default()),
        )
    });
    if let Some((_, stats)) = &chunking {
        let _ = counters.chunks.set(stats.clone());
    }
    let make_orca: OrcaFactory = match (config.orca, chunking) {
        (OrcaKind::L1Only, None) => {
            let counters = counters.clone();
            Arc::new(move || Box::new(L1Only::new(l1.lane(), counters.clone())) as Box<dyn Orca>)
        }
        (OrcaKind::L1Only, Some((opts, stats))) => {
            let counters = counters.clone();
            Arc::new(move || {
                let l1 = Chunked::new(l1.lane(), opts.clone(), locks.clone(), stats.clone());
                Box::new(L1Only::new(l1, counters.clone())) as Box<dyn Orca>
            })
        }
    };

    let settings = Arc::new(ServerSettings {
        max_conns: config.max_conns,
        conn: ConnSettings {
            limits: Limits {
                max_value: config.max_item_size(),
                ..Limits::default()
            },
            idle_timeout: config.idle_timeout(),
        },
    });

    tracing::info!(
        orca = ?config.orca,
        l1 = %l1_addr,
        l1_conns = config.l1_conns,
        max_conns = config.max_conns,
        max_item_size = config.max_item_size(),
        chunked = config.chunked,
        chunk_size = ?config.chunk_size,
        locked = config.locked(),
        "rend {}",
        crate::metrics::VERSION
    );
    tracing::info!("listening on {}", listener.local_addr());

    server::run(
        listener,
        settings,
        counters,
        make_orca,
        shutdown,
        Duration::from_secs(config.shutdown_grace),
    )
    .await;

    if let Some(e) = embedded {
        e.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
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
