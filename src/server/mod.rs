//! The listener: accept connections (TCP or a unix socket), enforce the
//! connection limit, run one task per connection, and shut down gracefully:
//! stop accepting, let every connection answer what it has read, then return.

pub mod conn;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::{mpsc, watch};

use crate::metrics::ops::ListenerMetrics;
use crate::metrics::Counters;
use crate::orca::OrcaFactory;
pub use conn::ConnSettings;

/// Accept queue length, as memcached's default (`-b 1024`): bursts of new
/// connections must not overflow it while the accept loop catches up.
const BACKLOG: u32 = 1024;

/// memcached's reply when it is at its connection limit.
const TOO_MANY: &[u8] = b"ERROR Too many open connections\r\n";

/// Where to listen: `host:port` (port 0 picks one) or `unix:/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(ListenAddr::Unix(path.into()));
        }
        if s.contains(':') {
            Ok(ListenAddr::Tcp(s.to_string()))
        } else {
            Err(format!("expected host:port or unix:/path, got {s:?}"))
        }
    }
}

/// A bound listener.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    pub async fn bind(addr: &ListenAddr) -> std::io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => {
                let addr = tokio::net::lookup_host(a.as_str())
                    .await?
                    .next()
                    .ok_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
                    })?;
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.set_reuseaddr(true)?;
                socket.bind(addr)?;
                Ok(Listener::Tcp(socket.listen(BACKLOG)?))
            }
            ListenAddr::Unix(path) => {
                // A socket file left by an earlier run would make bind fail.
                if path.exists() {
                    std::fs::remove_file(path)?;
                }
                Ok(Listener::Unix(UnixListener::bind(path)?, path.clone()))
            }
        }
    }

    /// The bound address as a flag would spell it (the real port for port 0).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub struct ServerSettings {
    pub max_conns: u64,
    pub conn: ConnSettings,
}

/// Serve until `shutdown` completes, then wait for open connections to
/// finish what they have read (at most `grace`). `figures` are this
/// listener's own (its Prometheus `listener` label).
pub async fn run(
    listener: Listener,
    settings: Arc<ServerSettings>,
    counters: Arc<Counters>,
    figures: Arc<ListenerMetrics>,
    make_orca: OrcaFactory,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    figures.serving();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; when all are gone, recv ends.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    let mut accept_backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = accept(&listener) => a,
        };
        let stream = match accepted {
            Ok(s) => {
                accept_backoff = Duration::from_millis(1);
                s
            }
            Err(e) => {
                // Out of file descriptors, typically: wait, then go on.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(accept_backoff).await;
                accept_backoff = (accept_backoff * 2).min(Duration::from_millis(500));
                continue;
            }
        };
        if counters.current_connections() >= settings.max_conns {
            counters
                .counts
                .rejected_connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            figures.rejected();
            tokio::spawn(reject(stream));
            continue;
        }
        counters.connection_opened();
        figures.opened();
        let settings = settings.clone();
        let counters = counters.clone();
        let figures = figures.clone();
        let orca = make_orca();
        let stop = stop_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            let closed = match stream {
                Stream::Tcp(mut s) => {
                    let (r, w) = s.split();
                    conn::serve(r, w, orca, &counters, &figures, &settings.conn, stop).await
                }
                Stream::Unix(mut s) => {
                    let (r, w) = s.split();
                    conn::serve(r, w, orca, &counters, &figures, &settings.conn, stop).await
                }
            };
            tracing::debug!("connection closed: {closed:?}");
            counters.connection_closed();
            figures.closed();
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let open = counters.current_connections();
    if open > 0 {
        tracing::info!("shutting down: waiting for {open} connection(s) to finish");
    }
    let _ = tokio::time::timeout(grace, alive_rx.recv()).await;
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Stream> {
    match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok(Stream::Tcp(s))
        }
        Listener::Unix(l, _) => Ok(Stream::Unix(l.accept().await?.0)),
    }
}

async fn reject(stream: Stream) {
    let _ = match stream {
        Stream::Tcp(mut s) => s.write_all(TOO_MANY).await,
        Stream::Unix(mut s) => s.write_all(TOO_MANY).await,
    };
}
