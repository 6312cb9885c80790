//! The listener: accept connections (TCP or a unix socket), enforce the
//! connection limit, hand each connection to a worker thread ([`Workers`])
//! where one task serves it, and shut down gracefully: stop accepting, let
//! every connection answer what it has read, then return.

pub mod conn;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

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
pub type ListenAddr = crate::net::Addr;

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

/// What one listener serves with.
pub struct Serving {
    pub settings: Arc<ServerSettings>,
    pub counters: Arc<Counters>,
    /// This listener's own figures (its Prometheus `listener` label).
    pub figures: Arc<ListenerMetrics>,
    pub make_orca: OrcaFactory,
    /// Each accepted connection is handed to one of these in turn and
    /// stays on that thread.
    pub workers: Vec<Handle>,
    /// How long open connections may take to finish after `shutdown`.
    pub grace: Duration,
}

/// Serve until `shutdown` completes, then wait for open connections to
/// finish what they have read (at most `grace`).
pub async fn run(listener: Listener, serving: Serving, shutdown: impl Future<Output = ()>) {
    serving.figures.serving();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; when all are gone, recv ends.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    let mut accept_backoff = Duration::from_millis(1);
    let mut next_worker = 0usize;
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
        if serving.counters.current_connections() >= serving.settings.max_conns {
            serving.refuse(stream);
            continue;
        }
        // The socket moves to its worker's own reactor.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("cannot hand a connection to a worker: {e}");
                continue;
            }
        };
        let worker = next_worker % serving.workers.len().max(1);
        next_worker = next_worker.wrapping_add(1);
        serving.spawn_conn(worker, stream, stop_rx.clone(), alive_tx.clone());
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let open = serving.counters.current_connections();
    if open > 0 {
        tracing::info!("shutting down: waiting for {open} connection(s) to finish");
    }
    let _ = tokio::time::timeout(serving.grace, alive_rx.recv()).await;
}

impl Serving {
    /// A connection past `--max-conns`: memcached's refusal, then close.
    fn refuse(&self, stream: Stream) {
        self.counters
            .counts
            .rejected_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.figures.rejected();
        tokio::spawn(reject(stream));
    }

    /// Serve an accepted connection on worker thread `worker`, until it
    /// closes; `stop` says when to shut down, and `alive` is dropped at the
    /// end.
    fn spawn_conn(
        &self,
        worker: usize,
        stream: StdStream,
        stop: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
    ) {
        self.counters.connection_opened();
        self.figures.opened();
        let settings = self.settings.clone();
        let counters = self.counters.clone();
        let figures = self.figures.clone();
        let orca = (self.make_orca)(worker);
        let task = async move {
            let closed = match stream.into_tokio() {
                Ok(stream) => {
                    conn::serve(stream, orca, &counters, &figures, &settings.conn, stop).await
                }
                Err(e) => conn::Closed::Io(e),
            };
            tracing::debug!("connection closed: {closed:?}");
            counters.connection_closed();
            figures.closed();
            drop(alive);
        };
        match self.workers.get(worker) {
            Some(h) => drop(h.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
}

/// An accepted socket between runtimes: deregistered from the acceptor's
/// reactor, to be registered with its worker's.
enum StdStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl StdStream {
    /// Register with the current runtime (the worker's).
    fn into_tokio(self) -> std::io::Result<crate::net::Stream> {
        Ok(match self {
            StdStream::Tcp(s) => crate::net::Stream::Tcp(tokio::net::TcpStream::from_std(s)?),
            StdStream::Unix(s) => crate::net::Stream::Unix(tokio::net::UnixStream::from_std(s)?),
        })
    }
}

/// The threads that serve connections: one current-thread runtime each, so
/// a request stays on the thread that read it from its client to the write
/// of its reply (and the memcached connections it uses are that thread's
/// own).
pub struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let mut w = Workers {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n.max(1) {
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name(format!("rend-worker-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .thread_name(format!("rend-blocking-{i}"))
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stop_rx.await;
                    });
                    rt.shutdown_timeout(Duration::from_secs(1));
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| std::io::Error::other("a worker thread ended before it started"))??;
            w.handles.push(handle);
            w.stops.push(stop_tx);
            w.threads.push(thread);
        }
        Ok(w)
    }

    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stop every worker: what still runs there (memcached connections,
    /// connections past the shutdown grace) is dropped.
    pub fn stop(self) {
        drop(self.stops);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Worker threads to run by default: the cores this process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Stream {
    fn into_std(self) -> std::io::Result<StdStream> {
        Ok(match self {
            Stream::Tcp(s) => StdStream::Tcp(s.into_std()?),
            Stream::Unix(s) => StdStream::Unix(s.into_std()?),
        })
    }
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
