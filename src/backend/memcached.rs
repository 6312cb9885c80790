//! The L1 client: memcached over its binary protocol, on a unix socket or
//! TCP.
//!
//! A small pool of connections is shared by every client connection. Each
//! pooled connection has one task that writes and one that reads: callers hand
//! the writer encoded packets through a channel; the writer drains everything
//! queued, writes it in one go (coalescing many requests into one syscall) and
//! records what each request expects; the reader matches replies to requests
//! in order. Each client connection is pinned to one pooled connection (a
//! [`Lane`]) so its requests reach memcached in the order it sent them.
//!
//! Failure handling: a per-request timeout; a broken connection fails what it
//! had in flight and is redialled with exponential backoff; while it is down,
//! calls fail at once with `BackendError::Unavailable` (the proxy answers
//! `SERVER_ERROR L1 unavailable` and keeps the client connection).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{Backend, BackendError, BackendFuture, BatchFuture, Tier};
use crate::protocol::binary::{self, op, status, write_packet, Packet, REQ_MAGIC};
use crate::protocol::{exptime_to_wire, Command, FrameError, Invalid, Response, StoreMode, Value};

/// Where memcached listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L1Addr {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl std::str::FromStr for L1Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            Ok(L1Addr::Unix(path.into()))
        } else if s.contains(':') {
            Ok(L1Addr::Tcp(s.to_string()))
        } else {
            Err(format!("expected unix:/path or host:port, got {s:?}"))
        }
    }
}

impl std::fmt::Display for L1Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            L1Addr::Unix(p) => write!(f, "unix:{}", p.display()),
            L1Addr::Tcp(a) => f.write_str(a),
        }
    }
}

/// Pool settings.
#[derive(Clone, Debug)]
pub struct L1Options {
    pub addr: L1Addr,
    pub conns: usize,
    pub timeout: Duration,
    /// Largest reply body accepted from memcached.
    pub max_body: usize,
    /// Requests in flight per pooled connection before new ones are refused.
    pub max_inflight: usize,
}

/// What ends a request's replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// One reply packet.
    One,
    /// Quiet gets, then a noop: everything up to the noop's reply.
    UntilNoop,
    /// Stat replies up to the empty one (or an error).
    UntilStatEnd,
}

struct Submit {
    bytes: Bytes,
    expect: Expect,
    /// The opaque of the packet whose reply ends this request.
    last_opaque: u32,
    reply: oneshot::Sender<Result<Vec<Packet>, BackendError>>,
}

struct Pending {
    expect: Expect,
    last_opaque: u32,
    packets: Vec<Packet>,
    reply: oneshot::Sender<Result<Vec<Packet>, BackendError>>,
}

/// Counters one pooled connection shares with its callers.
#[derive(Default)]
pub struct ConnStats {
    connected: AtomicBool,
    inflight: AtomicUsize,
    opaque: AtomicU32,
    pub reconnects: AtomicU64,
    pub timeouts: AtomicU64,
}

impl ConnStats {
    /// Requests written and not yet answered on this connection.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
}

struct Conn {
    tx: mpsc::UnboundedSender<Submit>,
    stats: Arc<ConnStats>,
}

/// The pool. Cheap to share; dropping every handle stops its tasks.
pub struct MemcachedL1 {
    conns: Vec<Conn>,
    next: AtomicUsize,
    opts: L1Options,
}

impl MemcachedL1 {
    /// Start the pool's connection tasks (they connect in the background and
    /// keep redialling). Must be called inside a tokio runtime.
    pub fn start(opts: L1Options) -> Arc<MemcachedL1> {
        let conns = (0..opts.conns.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                let stats = Arc::new(ConnStats::default());
                tokio::spawn(run_conn(opts.clone(), rx, stats.clone()));
                Conn { tx, stats }
            })
            .collect();
        Arc::new(MemcachedL1 {
            conns,
            next: AtomicUsize::new(0),
            opts,
        })
    }

    /// A handle pinned to one pooled connection, for one client connection.
    pub fn lane(self: &Arc<Self>) -> Lane {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        Lane {
            pool: self.clone(),
            index,
        }
    }

    /// A handle that sends each command on the pooled connection its key
    /// hashes to: writes to one key then reach memcached in the order they
    /// were issued even when a timed-out write is still queued, which the
    /// two-tier policies rely on (a late write can never land after a newer
    /// one).
    pub fn keyed(self: &Arc<Self>) -> Keyed {
        Keyed { pool: self.clone() }
    }

    /// How many pooled connections are up.
    pub fn connected(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| c.stats.connected.load(Ordering::Relaxed))
            .count()
    }

    /// Wait until every pooled connection is up, or the deadline passes.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.connected() < self.conns.len() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub fn conn_stats(&self) -> impl Iterator<Item = &ConnStats> {
        self.conns.iter().map(|c| &*c.stats)
    }
}

/// One client connection's view of the pool.
#[derive(Clone)]
pub struct Lane {
    pool: Arc<MemcachedL1>,
    index: usize,
}

impl Backend for Lane {
    fn call_many(&self, cmds: Vec<Command>) -> BatchFuture {
        let stats = &self.pool.conns[self.index].stats;
        let n = cmds.len() as u32;
        let base = stats.opaque.fetch_add(n + 1, Ordering::Relaxed);
        let mut out = BytesMut::new();
        let mut quiet = Vec::with_capacity(cmds.len());
        for (i, cmd) in cmds.iter().enumerate() {
            match quiet_packet(cmd, base.wrapping_add(i as u32), &mut out) {
                Some(q) => quiet.push(q),
                None => {
                    return Box::pin(std::future::ready(Err(BackendError::Unsupported(Tier::L1))))
                }
            }
        }
        let noop = base.wrapping_add(n);
        write_packet(&mut out, REQ_MAGIC, op::NOOP, 0, noop, 0, &[], &[], &[]);
        let rx = self.submit(out.freeze(), Expect::UntilNoop, noop);
        let lane = self.clone();
        Box::pin(async move {
            let packets = lane.wait(rx?, cmds.len()).await?;
            let mut replies: Vec<Option<Response>> = vec![None; cmds.len()];
            for p in &packets {
                let i = p.opaque.wrapping_sub(base) as usize;
                if i < replies.len() {
                    replies[i] = Some(binary::response_from_packet(p));
                }
            }
            // A quiet command that sent nothing back succeeded.
            Ok(replies
                .into_iter()
                .zip(cmds.iter().zip(quiet))
                .map(|(r, (cmd, quiet))| match r {
                    Some(r) => r,
                    None if quiet => match cmd {
                        Command::Delete { .. } => Response::Deleted,
                        _ => Response::Stored { cas: 0 },
                    },
                    None => Response::Error(crate::protocol::ErrorReply::Server(
                        Bytes::from_static(b"L1 sent no reply"),
                    )),
                })
                .collect())
        })
    }

    fn call(&self, cmd: &Command) -> BackendFuture {
        let conn = &self.pool.conns[self.index];
        let stats = conn.stats.clone();
        let Some(encoded) = encode(cmd, &stats.opaque) else {
            return Box::pin(std::future::ready(Err(BackendError::Unsupported(Tier::L1))));
        };
        if !stats.connected.load(Ordering::Relaxed) {
            return Box::pin(std::future::ready(Err(BackendError::Unavailable(Tier::L1))));
        }
        if stats.inflight.load(Ordering::Relaxed) >= self.pool.opts.max_inflight {
            return Box::pin(std::future::ready(Err(BackendError::Overloaded(Tier::L1))));
        }
        let (tx, rx) = oneshot::channel();
        let submit = Submit {
            bytes: encoded.bytes,
            expect: encoded.expect,
            last_opaque: encoded.last_opaque,
            reply: tx,
        };
        if conn.tx.send(submit).is_err() {
            return Box::pin(std::future::ready(Err(BackendError::Unavailable(Tier::L1))));
        }
        let timeout = batch_timeout(self.pool.opts.timeout, cmd_keys(cmd));
        let shape = encoded.shape;
        Box::pin(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(Ok(packets))) => Ok(shape.response(packets)),
                Ok(Ok(Err(e))) => Err(e),
                Ok(Err(_)) => Err(BackendError::Unavailable(Tier::L1)),
                Err(_) => {
                    stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    Err(BackendError::Timeout(Tier::L1))
                }
            }
        })
    }
}

/// Commands routed by key (see [`MemcachedL1::keyed`]).
#[derive(Clone)]
pub struct Keyed {
    pool: Arc<MemcachedL1>,
}

impl Keyed {
    fn lane(&self, key: Option<&[u8]>) -> Lane {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        Lane {
            pool: self.pool.clone(),
            index: (h.finish() % self.pool.conns.len() as u64) as usize,
        }
    }
}

impl Keyed {
    /// A multi-get split by connection, so each key is read on the
    /// connection its writes use (after any write of it still queued);
    /// hits come back in the order of `keys`.
    fn get_by_lanes(&self, keys: &[Bytes], touch: Option<i64>) -> BackendFuture {
        let lanes: Vec<usize> = keys.iter().map(|k| self.lane(Some(k)).index).collect();
        let mut groups: Vec<(usize, Vec<Bytes>)> = Vec::new();
        for (key, &lane) in keys.iter().zip(&lanes) {
            match groups.iter_mut().find(|(l, _)| *l == lane) {
                Some((_, ks)) => ks.push(key.clone()),
                None => groups.push((lane, vec![key.clone()])),
            }
        }
        if groups.len() == 1 {
            return self.lane(keys.first().map(|k| &k[..])).call(&Command::Get {
                keys: keys.to_vec(),
                touch,
            });
        }
        let calls: Vec<(usize, BackendFuture)> = groups
            .into_iter()
            .map(|(index, keys)| {
                let lane = Lane {
                    pool: self.pool.clone(),
                    index,
                };
                (index, lane.call(&Command::Get { keys, touch }))
            })
            .collect();
        let keys = keys.to_vec();
        Box::pin(async move {
            let mut hits: Vec<(usize, VecDeque<Value>)> = Vec::new();
            for (index, call) in calls {
                match call.await? {
                    Response::Values(v) => hits.push((index, v.into())),
                    other => return Ok(other),
                }
            }
            let mut out = Vec::new();
            for (key, lane) in keys.iter().zip(lanes) {
                if let Some((_, q)) = hits.iter_mut().find(|(l, _)| *l == lane) {
                    if q.front().is_some_and(|v| v.key == *key) {
                        out.extend(q.pop_front());
                    }
                }
            }
            Ok(Response::Values(out))
        })
    }
}

fn first_key(cmd: &Command) -> Option<&[u8]> {
    match cmd {
        Command::Get { keys, .. } => keys.first().map(|k| &k[..]),
        Command::GetE { key }
        | Command::Store { key, .. }
        | Command::Delete { key, .. }
        | Command::Touch { key, .. }
        | Command::Arith { key, .. } => Some(key),
        _ => None,
    }
}

impl Backend for Keyed {
    fn call(&self, cmd: &Command) -> BackendFuture {
        if let Command::Flush { .. } = cmd {
            // On every connection, so the flush lands after whatever is
            // still queued on any of them (a write that timed out).
            let calls: Vec<BackendFuture> = (0..self.pool.conns.len())
                .map(|index| {
                    Lane {
                        pool: self.pool.clone(),
                        index,
                    }
                    .call(cmd)
                })
                .collect();
            return Box::pin(async move {
                let mut last = Ok(Response::Ok);
                for c in calls {
                    match c.await {
                        Ok(Response::Ok) => {}
                        other => last = other,
                    }
                }
                last
            });
        }
        if let Command::Get { keys, touch } = cmd {
            if keys.len() > 1 {
                return self.get_by_lanes(keys, *touch);
            }
        }
        self.lane(first_key(cmd)).call(cmd)
    }

    fn call_many(&self, cmds: Vec<Command>) -> BatchFuture {
        self.lane(cmds.first().and_then(first_key)).call_many(cmds)
    }
}

impl Lane {
    fn submit(
        &self,
        bytes: Bytes,
        expect: Expect,
        last_opaque: u32,
    ) -> Result<oneshot::Receiver<Result<Vec<Packet>, BackendError>>, BackendError> {
        let conn = &self.pool.conns[self.index];
        if !conn.stats.connected.load(Ordering::Relaxed) {
            return Err(BackendError::Unavailable(Tier::L1));
        }
        if conn.stats.inflight.load(Ordering::Relaxed) >= self.pool.opts.max_inflight {
            return Err(BackendError::Overloaded(Tier::L1));
        }
        let (tx, rx) = oneshot::channel();
        let submit = Submit {
            bytes,
            expect,
            last_opaque,
            reply: tx,
        };
        conn.tx
            .send(submit)
            .map_err(|_| BackendError::Unavailable(Tier::L1))?;
        Ok(rx)
    }

    async fn wait(
        &self,
        rx: oneshot::Receiver<Result<Vec<Packet>, BackendError>>,
        packets: usize,
    ) -> Result<Vec<Packet>, BackendError> {
        match tokio::time::timeout(batch_timeout(self.pool.opts.timeout, packets), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(BackendError::Unavailable(Tier::L1)),
            Err(_) => {
                self.pool.conns[self.index]
                    .stats
                    .timeouts
                    .fetch_add(1, Ordering::Relaxed);
                Err(BackendError::Timeout(Tier::L1))
            }
        }
    }
}

/// The quiet opcode for a pipelined store, delete or touch, or `None` for
/// commands `call_many` does not take. Touch has no quiet form.
fn quiet_packet(cmd: &Command, opaque: u32, out: &mut BytesMut) -> Option<bool> {
    match cmd {
        Command::Store {
            mode,
            key,
            flags,
            exptime,
            cas,
            value,
        } => {
            let extras = binary::store_extras(*flags, *exptime);
            let (opcode, extras): (u8, &[u8]) = match mode {
                StoreMode::Set | StoreMode::Cas => (op::SETQ, &extras),
                StoreMode::Add => (op::ADDQ, &extras),
                StoreMode::Replace => (op::REPLACEQ, &extras),
                StoreMode::Append => (op::APPENDQ, &[]),
                StoreMode::Prepend => (op::PREPENDQ, &[]),
            };
            write_packet(out, REQ_MAGIC, opcode, 0, opaque, *cas, extras, key, value);
            Some(true)
        }
        Command::Delete { key, cas } => {
            write_packet(out, REQ_MAGIC, op::DELETEQ, 0, opaque, *cas, &[], key, &[]);
            Some(true)
        }
        Command::Touch { key, exptime } => {
            let extras = exptime_to_wire(*exptime).to_be_bytes();
            write_packet(out, REQ_MAGIC, op::TOUCH, 0, opaque, 0, &extras, key, &[]);
            Some(false)
        }
        _ => None,
    }
}

/// The timeout of a request of `packets` packets: a batch of many (a
/// chunked value's 100,000 chunks, a 10,000-key get) gets time in proportion,
/// 20 µs a packet on top of the per-request timeout.
fn batch_timeout(timeout: Duration, packets: usize) -> Duration {
    timeout + Duration::from_micros(20).saturating_mul(u32::try_from(packets).unwrap_or(u32::MAX))
}

fn cmd_keys(cmd: &Command) -> usize {
    match cmd {
        Command::Get { keys, .. } => keys.len(),
        _ => 1,
    }
}

/// How to turn a request's reply packets into one response.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// One packet, read as is.
    Single,
    /// A multi-get: the hits among the packets.
    Hits,
    /// Stat packets.
    Stats,
    /// A cas sent as a replace: "not found" is the cas's own answer.
    Cas,
}

impl Shape {
    fn response(self, packets: Vec<Packet>) -> Response {
        match self {
            Shape::Single => {
                packets
                    .first()
                    .map(binary::response_from_packet)
                    .unwrap_or(Response::Error(crate::protocol::ErrorReply::Server(
                        Bytes::from_static(b"L1 sent no reply"),
                    )))
            }
            Shape::Hits => Response::Values(
                packets
                    .into_iter()
                    .filter(|p| p.status == status::OK && p.opcode != op::NOOP)
                    .map(|p| Value {
                        flags: p
                            .extras
                            .get(..4)
                            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0),
                        key: p.key,
                        cas: p.cas,
                        data: p.value,
                    })
                    .collect(),
            ),
            Shape::Cas => match Shape::Single.response(packets) {
                Response::NotStored => Response::NotFound,
                other => other,
            },
            Shape::Stats => {
                let mut pairs = Vec::new();
                for p in &packets {
                    match binary::response_from_packet(p) {
                        Response::Stats(mut s) => pairs.append(&mut s),
                        Response::NotFound => {
                            return Response::Error(crate::protocol::ErrorReply::UnknownCommand)
                        }
                        other @ Response::Error(_) => return other,
                        _ => {}
                    }
                }
                Response::Stats(pairs)
            }
        }
    }
}

struct Encoded {
    bytes: Bytes,
    expect: Expect,
    last_opaque: u32,
    shape: Shape,
}

/// The packets that carry `cmd` to memcached, or `None` for commands the
/// proxy answers itself.
fn encode(cmd: &Command, opaques: &AtomicU32) -> Option<Encoded> {
    let mut out = BytesMut::new();
    let next = || opaques.fetch_add(1, Ordering::Relaxed);
    let one =
        |out: &mut BytesMut, opcode: u8, cas: u64, extras: &[u8], key: &[u8], value: &[u8]| {
            let opaque = next();
            write_packet(out, REQ_MAGIC, opcode, 0, opaque, cas, extras, key, value);
            opaque
        };
    let single = |out: BytesMut, last_opaque: u32| Encoded {
        bytes: out.freeze(),
        expect: Expect::One,
        last_opaque,
        shape: Shape::Single,
    };
    let enc = match cmd {
        Command::Get { keys, touch } => {
            let extras = touch.map(|e| exptime_to_wire(e).to_be_bytes());
            let extras: &[u8] = extras.as_ref().map(|e| &e[..]).unwrap_or(&[]);
            if keys.len() == 1 {
                let opcode = if touch.is_some() { op::GATK } else { op::GETK };
                let last = one(&mut out, opcode, 0, extras, &keys[0], &[]);
                Encoded {
                    bytes: out.freeze(),
                    expect: Expect::One,
                    last_opaque: last,
                    shape: Shape::Hits,
                }
            } else {
                let opcode = if touch.is_some() {
                    op::GATKQ
                } else {
                    op::GETKQ
                };
                for key in keys {
                    one(&mut out, opcode, 0, extras, key, &[]);
                }
                let last = one(&mut out, op::NOOP, 0, &[], &[], &[]);
                Encoded {
                    bytes: out.freeze(),
                    expect: Expect::UntilNoop,
                    last_opaque: last,
                    shape: Shape::Hits,
                }
            }
        }
        Command::Store {
            mode,
            key,
            flags,
            exptime,
            cas,
            value,
        } => {
            let extras = binary::store_extras(*flags, *exptime);
            let last = match mode {
                StoreMode::Set => one(&mut out, op::SET, *cas, &extras, key, value),
                StoreMode::Add => one(&mut out, op::ADD, *cas, &extras, key, value),
                StoreMode::Replace => one(&mut out, op::REPLACE, *cas, &extras, key, value),
                StoreMode::Append => one(&mut out, op::APPEND, *cas, &[], key, value),
                StoreMode::Prepend => one(&mut out, op::PREPEND, *cas, &[], key, value),
                // Text cas goes as a binary replace carrying the cas: with a
                // cas, memcached treats every storage opcode as cas, but a
                // refused (too large) binary *set* also drops the old value,
                // which a text cas does not. memcached's text cas compares a
                // cas of 0 like any other and never matches it, while binary
                // reads 0 as "no cas"; a cas no item can have gives the same
                // answers (too large, EXISTS or NOT_FOUND) and stores nothing.
                StoreMode::Cas => {
                    let cas = if *cas == 0 { u64::MAX } else { *cas };
                    let last = one(&mut out, op::REPLACE, cas, &extras, key, value);
                    return Some(Encoded {
                        bytes: out.freeze(),
                        expect: Expect::One,
                        last_opaque: last,
                        shape: Shape::Cas,
                    });
                }
            };
            single(out, last)
        }
        Command::Delete { key, cas } => {
            let last = one(&mut out, op::DELETE, *cas, &[], key, &[]);
            single(out, last)
        }
        Command::Touch { key, exptime } => {
            let last = one(
                &mut out,
                op::TOUCH,
                0,
                &exptime_to_wire(*exptime).to_be_bytes(),
                key,
                &[],
            );
            single(out, last)
        }
        Command::Arith {
            key,
            incr,
            delta,
            create,
        } => {
            let extras = binary::arith_extras(*delta, *create);
            let opcode = if *incr { op::INCREMENT } else { op::DECREMENT };
            let last = one(&mut out, opcode, 0, &extras, key, &[]);
            single(out, last)
        }
        Command::Flush { delay } => {
            // A delay of zero or less flushes now; binary says that with no
            // extras (a negative one would read as a time long past).
            let last = if *delay > 0 {
                one(
                    &mut out,
                    op::FLUSH,
                    0,
                    &exptime_to_wire(*delay).to_be_bytes(),
                    &[],
                    &[],
                )
            } else {
                one(&mut out, op::FLUSH, 0, &[], &[], &[])
            };
            single(out, last)
        }
        Command::Stats { arg } => {
            let last = one(
                &mut out,
                op::STAT,
                0,
                &[],
                arg.as_deref().unwrap_or(&[]),
                &[],
            );
            Encoded {
                bytes: out.freeze(),
                expect: Expect::UntilStatEnd,
                last_opaque: last,
                shape: Shape::Stats,
            }
        }
        Command::Version => {
            let last = one(&mut out, op::VERSION, 0, &[], &[], &[]);
            single(out, last)
        }
        Command::Invalid(Invalid::TooLarge { .. })
        | Command::Invalid(_)
        | Command::GetE { .. }
        | Command::Verbosity { .. }
        | Command::Noop
        | Command::Quit => return None,
    };
    Some(enc)
}

/// One pooled connection: connect, serve until it breaks, redial with
/// backoff; ends when every handle is gone.
async fn run_conn(opts: L1Options, mut rx: mpsc::UnboundedReceiver<Submit>, stats: Arc<ConnStats>) {
    let mut backoff = Duration::from_millis(5);
    let mut warned = false;
    loop {
        let result = match &opts.addr {
            L1Addr::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                Ok(s) => {
                    let (r, w) = s.into_split();
                    Ok(serve(r, w, &mut rx, &stats, &opts).await)
                }
                Err(e) => Err(e),
            },
            L1Addr::Tcp(addr) => match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let (r, w) = s.into_split();
                    Ok(serve(r, w, &mut rx, &stats, &opts).await)
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(Ended::Closed) => return,
            Ok(Ended::Broken(why)) => {
                tracing::warn!(tier = "L1", addr = %opts.addr, "memcached connection lost: {why}");
                backoff = Duration::from_millis(5);
                warned = false;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(tier = "L1", addr = %opts.addr, "cannot connect to memcached: {e}");
                    warned = true;
                }
            }
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        // Fail whatever arrives while we wait to redial.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                sub = rx.recv() => match sub {
                    Some(s) => { let _ = s.reply.send(Err(BackendError::Unavailable(Tier::L1))); }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

enum Ended {
    /// Every handle is gone: stop.
    Closed,
    /// The connection broke: redial.
    Broken(String),
}

async fn serve<R, W>(
    read: R,
    mut write: W,
    rx: &mut mpsc::UnboundedReceiver<Submit>,
    stats: &Arc<ConnStats>,
    opts: &L1Options,
) -> Ended
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let pending: Arc<Mutex<VecDeque<Pending>>> = Arc::default();
    let mut reader = tokio::spawn(read_replies(
        read,
        pending.clone(),
        stats.clone(),
        opts.max_body,
    ));
    stats.connected.store(true, Ordering::Relaxed);
    let mut out = BytesMut::with_capacity(64 * 1024);
    let ended = loop {
        tokio::select! {
            biased;
            done = &mut reader => {
                break Ended::Broken(match done {
                    Ok(why) => why,
                    Err(e) => format!("reader task failed: {e}"),
                });
            }
            sub = rx.recv() => {
                let Some(first) = sub else { break Ended::Closed };
                let mut next = Some(first);
                {
                    let Ok(mut queue) = pending.lock() else { break Ended::Broken("lock poisoned".into()) };
                    while let Some(s) = next.take() {
                        out.extend_from_slice(&s.bytes);
                        queue.push_back(Pending {
                            expect: s.expect,
                            last_opaque: s.last_opaque,
                            packets: Vec::new(),
                            reply: s.reply,
                        });
                        stats.inflight.fetch_add(1, Ordering::Relaxed);
                        if out.len() < 256 * 1024 {
                            next = rx.try_recv().ok();
                        }
                    }
                }
                if let Err(e) = write.write_all(&out).await {
                    break Ended::Broken(format!("write failed: {e}"));
                }
                out.clear();
            }
        }
    };
    stats.connected.store(false, Ordering::Relaxed);
    reader.abort();
    let drained: Vec<Pending> = match pending.lock() {
        Ok(mut q) => q.drain(..).collect(),
        Err(_) => Vec::new(),
    };
    for p in drained {
        stats.inflight.fetch_sub(1, Ordering::Relaxed);
        let _ = p.reply.send(Err(BackendError::Unavailable(Tier::L1)));
    }
    ended
}

/// Read reply packets and hand each to the request at the front of the queue.
async fn read_replies<R: AsyncRead + Unpin>(
    mut read: R,
    pending: Arc<Mutex<VecDeque<Pending>>>,
    stats: Arc<ConnStats>,
    max_body: usize,
) -> String {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let packet = match binary::decode_packet(&mut buf, max_body) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(FrameError { reason, .. }) => return format!("bad reply: {reason}"),
            };
            if packet.magic != binary::RES_MAGIC {
                return "bad reply magic".into();
            }
            let Ok(mut queue) = pending.lock() else {
                return "lock poisoned".into();
            };
            let Some(front) = queue.front_mut() else {
                return "reply with no request waiting".into();
            };
            let done = match front.expect {
                Expect::One => true,
                Expect::UntilNoop => packet.opcode == op::NOOP,
                Expect::UntilStatEnd => packet.status != status::OK || packet.key.is_empty(),
            };
            if done && packet.opaque != front.last_opaque {
                return "replies out of step with requests".into();
            }
            front.packets.push(packet);
            if done {
                if let Some(p) = queue.pop_front() {
                    stats.inflight.fetch_sub(1, Ordering::Relaxed);
                    let _ = p.reply.send(Ok(p.packets));
                }
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => return "memcached closed the connection".into(),
            Ok(_) => {}
            Err(e) => return format!("read failed: {e}"),
        }
    }
}
