//! The L1 client: memcached over its binary protocol, on a unix socket or
//! TCP.
//!
//! A pool of connections, `conns` per worker thread, each driven by one task
//! on its worker that both writes and reads the socket. A caller encodes its
//! request straight into the connection's queue (values are shared, not
//! copied) and records what it expects; the task writes everything queued
//! in one vectored write, reads replies and hands each to the request at the
//! front of the queue. A client connection is pinned to one pooled
//! connection of its own worker (a [`Lane`]) so its requests reach memcached
//! in the order it sent them, without leaving its thread; the two-tier
//! policies route by key instead ([`Keyed`]).
//!
//! Bounds and failure handling:
//! - each pooled connection queues at most `queue_requests` requests
//!   (written or not, awaiting replies) and `queue_bytes` bytes not yet
//!   written; past either, a call fails at once with
//!   `BackendError::Overloaded`, never waits;
//! - every request has a deadline set when it is queued; the task answers
//!   `Timeout` at that deadline, so a pipeline of N requests to a hung
//!   memcached ends in one timeout, not N;
//! - a connection that receives nothing for one timeout while requests wait
//!   is dead: everything it holds fails, and it is redialled, so no reply is
//!   ever matched to another request. Its socket is not closed: requests
//!   already written to it may still be carried out when memcached wakes,
//!   after newer ones sent on the new socket, so the old socket is kept
//!   (a *zombie*) and read until memcached has answered all of them. Until
//!   then the slot is *unsettled* ([`Backend::unsettled`]): the two-tier
//!   policies do not trust a later write of a key to have superseded an
//!   earlier one that failed. A slot with [`MAX_ZOMBIES`] zombies is not
//!   redialled until one settles;
//! - a broken connection is redialled with exponential backoff; while it is
//!   down, calls fail at once with `BackendError::Unavailable`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::{Backend, BackendError, BackendFuture, BatchFuture, Tier};
use crate::metrics::exporter::{PoolFigures, PoolSource};
use crate::net::Stream;
use crate::protocol::binary::{self, op, status, Packet, RequestPacket};
use crate::protocol::out::OutBuf;
use crate::protocol::{Command, FrameError, Response, StoreMode, Value};

mod io;
use io::*;

/// Where memcached listens.
pub type L1Addr = crate::net::Addr;

/// Pool settings.
#[derive(Clone, Debug)]
pub struct L1Options {
    pub addr: L1Addr,
    /// Pooled connections per worker thread.
    pub conns: usize,
    pub timeout: Duration,
    /// Largest reply body accepted from memcached.
    pub max_body: usize,
    /// Requests one pooled connection holds (queued or awaiting replies).
    pub queue_requests: usize,
    /// Bytes of requests one pooled connection holds not yet written.
    pub queue_bytes: usize,
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

type ReplyTx = oneshot::Sender<Result<Vec<Packet>, BackendError>>;
type ReplyRx = oneshot::Receiver<Result<Vec<Packet>, BackendError>>;

/// A request queued or written, waiting for its replies.
struct Pending {
    expect: Expect,
    /// The opaque of the packet whose reply ends this request.
    last_opaque: u32,
    packets: Vec<Packet>,
    /// `None` once the caller was answered (its deadline passed): the
    /// replies are still read, and dropped.
    reply: Option<ReplyTx>,
    queued: Instant,
    deadline: Instant,
    /// Where its bytes end in the stream of bytes queued on this slot.
    end: u64,
}

/// Stalled sockets kept per slot before it stops redialling.
pub const MAX_ZOMBIES: usize = 2;

/// Counters one pooled connection shares with its callers.
#[derive(Default)]
pub struct ConnStats {
    connected: AtomicBool,
    inflight: AtomicUsize,
    pub reconnects: AtomicU64,
    pub timeouts: AtomicU64,
    /// Calls refused because the queue was full.
    pub overloads: AtomicU64,
    /// Stalled sockets of this slot whose written requests memcached has
    /// not all answered.
    zombies: AtomicUsize,
}

impl ConnStats {
    /// Requests queued or written and not yet answered on this connection.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Stalled sockets of this slot still waiting for memcached.
    pub fn stalled(&self) -> usize {
        self.zombies.load(Ordering::Relaxed)
    }
}

/// What callers and the connection's task share.
#[derive(Default)]
struct State {
    up: bool,
    /// Encoded requests not yet handed to the task.
    queued: OutBuf,
    /// Bytes the task holds, taken from `queued` and not yet written.
    writing: usize,
    pending: VecDeque<Pending>,
    /// Bytes ever queued on this slot.
    queued_total: u64,
    next_opaque: u32,
    /// The task waits for `wake` and must be told of new requests.
    parked: bool,
}

struct Conn {
    state: Mutex<State>,
    wake: Notify,
    stats: ConnStats,
    /// Every handle is gone: the task ends.
    closed: AtomicBool,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue one request: `encode` writes its packets (numbered from the
    /// opaque it is given, which it advances) and says what ends them, or
    /// writes nothing and returns `None` for a command memcached does not
    /// serve.
    fn submit(
        &self,
        opts: &L1Options,
        keys: usize,
        encode: impl FnOnce(&mut OutBuf, &mut u32) -> Option<(Expect, u32)>,
    ) -> Result<ReplyRx, BackendError> {
        let mut st = self.lock();
        if !st.up {
            return Err(BackendError::Unavailable(Tier::L1));
        }
        if st.pending.len() >= opts.queue_requests
            || (st.queued.len() + st.writing >= opts.queue_bytes && !st.pending.is_empty())
        {
            drop(st);
            self.stats.overloads.fetch_add(1, Ordering::Relaxed);
            return Err(BackendError::Overloaded(Tier::L1));
        }
        let mut opaque = st.next_opaque;
        let before = st.queued.len();
        let Some((expect, last_opaque)) = encode(&mut st.queued, &mut opaque) else {
            return Err(BackendError::Unsupported(Tier::L1));
        };
        st.next_opaque = opaque;
        st.queued_total += (st.queued.len() - before) as u64;
        let end = st.queued_total;
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        st.pending.push_back(Pending {
            expect,
            last_opaque,
            packets: Vec::new(),
            reply: Some(tx),
            queued: now,
            deadline: now + batch_timeout(opts.timeout, keys),
            end,
        });
        self.stats.inflight.fetch_add(1, Ordering::Relaxed);
        let wake = std::mem::take(&mut st.parked);
        drop(st);
        if wake {
            self.wake.notify_one();
        }
        Ok(rx)
    }
}

/// The pool. Cheap to share; dropping every handle stops its tasks.
pub struct MemcachedL1 {
    conns: Vec<Arc<Conn>>,
    /// Pooled connections per worker: worker `w` owns
    /// `conns[w * per_worker..(w + 1) * per_worker]`.
    per_worker: usize,
    next: AtomicUsize,
    opts: L1Options,
}

impl Drop for MemcachedL1 {
    fn drop(&mut self) {
        for c in &self.conns {
            c.closed.store(true, Ordering::Release);
            c.wake.notify_one();
        }
    }
}

impl MemcachedL1 {
    /// Start `opts.conns` connection tasks on each of `workers` (on the
    /// current runtime when `workers` is empty). They connect in the
    /// background and keep redialling.
    pub fn start(opts: L1Options, workers: &[Handle]) -> Arc<MemcachedL1> {
        let workers = super::workers_or_current(workers);
        let per_worker = opts.conns.max(1);
        let mut conns = Vec::with_capacity(per_worker * workers.len());
        for worker in workers {
            for _ in 0..per_worker {
                let conn = Arc::new(Conn {
                    state: Mutex::new(State::default()),
                    wake: Notify::new(),
                    stats: ConnStats::default(),
                    closed: AtomicBool::new(false),
                });
                worker.spawn(run_conn(conn.clone(), opts.clone()));
                conns.push(conn);
            }
        }
        Arc::new(MemcachedL1 {
            conns,
            per_worker,
            next: AtomicUsize::new(0),
            opts,
        })
    }

    /// A handle pinned to one pooled connection of `worker`, for one client
    /// connection served there.
    pub fn lane(self: &Arc<Self>, worker: usize) -> Lane {
        let workers = self.conns.len() / self.per_worker;
        let first = (worker % workers) * self.per_worker;
        let index = first + self.next.fetch_add(1, Ordering::Relaxed) % self.per_worker;
        Lane {
            pool: self.clone(),
            index,
        }
    }

    /// A handle that sends each command on the pooled connection its key
    /// hashes to, across every worker's connections: writes to one key then
    /// reach memcached in the order they were issued even when a timed-out
    /// write is still queued, which the two-tier policies rely on (a late
    /// write can never land after a newer one).
    pub fn keyed(self: &Arc<Self>) -> Keyed {
        self.keyed_by(|key| key)
    }

    /// Like [`keyed`](Self::keyed), but routed by `route(key)`: every item
    /// whose name routes to the same bytes travels on the same connection.
    /// The chunked layout routes each of its items (metadata, chunks, touch
    /// record) by the client key they belong to, so one client key's L1
    /// requests stay in order.
    pub fn keyed_by(self: &Arc<Self>, route: Route) -> Keyed {
        Keyed {
            pool: self.clone(),
            route,
        }
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
        let deadline = Instant::now() + within;
        while self.connected() < self.conns.len() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub fn conn_stats(&self) -> impl Iterator<Item = &ConnStats> {
        self.conns.iter().map(|c| &c.stats)
    }
}

/// One client connection's view of the pool.
#[derive(Clone)]
pub struct Lane {
    pool: Arc<MemcachedL1>,
    index: usize,
}

impl Lane {
    fn conn(&self) -> &Conn {
        &self.pool.conns[self.index]
    }
}

fn failed(e: BackendError) -> BackendFuture {
    Box::pin(std::future::ready(Err(e)))
}

/// The outcome of a queued request, once the connection's task answers.
async fn outcome(rx: ReplyRx) -> Result<Vec<Packet>, BackendError> {
    match rx.await {
        Ok(r) => r,
        // The task ended without answering (the pool is shutting down).
        Err(_) => Err(BackendError::Unavailable(Tier::L1)),
    }
}

impl Backend for Lane {
    fn unsettled(&self, _key: Option<&[u8]>) -> bool {
        self.conn().stats.zombies.load(Ordering::Acquire) > 0
    }

    fn call_many(&self, cmds: Vec<Command>) -> BatchFuture {
        let mut quiet = Vec::with_capacity(cmds.len());
        let mut base = 0;
        let rx = self
            .conn()
            .submit(&self.pool.opts, cmds.len(), |out, opaque| {
                base = *opaque;
                for cmd in &cmds {
                    quiet.push(quiet_packet(cmd, *opaque, out)?);
                    *opaque = opaque.wrapping_add(1);
                }
                let noop = *opaque;
                *opaque = opaque.wrapping_add(1);
                RequestPacket::noop().write(noop, out);
                Some((Expect::UntilNoop, noop))
            });
        let rx = match rx {
            Ok(rx) => rx,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        Box::pin(async move {
            let packets = outcome(rx).await?;
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
                    Some(r)
                        if matches!(
                            cmd,
                            Command::Store {
                                mode: StoreMode::Cas,
                                ..
                            }
                        ) =>
                    {
                        binary::cas_reply(r)
                    }
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
        call_on(&self.pool, self.index, cmd)
    }
}

/// Send `cmd` on slot `index` of `pool`.
fn call_on(pool: &MemcachedL1, index: usize, cmd: &Command) -> BackendFuture {
    let mut shape = Shape::Single;
    let rx = pool.conns[index].submit(&pool.opts, cmd.keys().len().max(1), |out, opaque| {
        let (expect, last, s) = encode(cmd, opaque, out)?;
        shape = s;
        Some((expect, last))
    });
    match rx {
        Ok(rx) => Box::pin(async move { outcome(rx).await.map(|p| shape.response(p)) }),
        Err(e) => failed(e),
    }
}

/// The bytes an item name is routed by (see [`MemcachedL1::keyed_by`]).
pub type Route = fn(&[u8]) -> &[u8];

/// Commands routed by key (see [`MemcachedL1::keyed`]).
#[derive(Clone)]
pub struct Keyed {
    pool: Arc<MemcachedL1>,
    route: Route,
}

/// The slot of `slots` that `route_key` maps to.
fn slot_of(route_key: Option<&[u8]>, slots: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    route_key.hash(&mut h);
    (h.finish() % slots as u64) as usize
}

impl Keyed {
    /// The slot `key` maps to.
    fn index(&self, key: Option<&[u8]>) -> usize {
        slot_of(key.map(self.route), self.pool.conns.len())
    }

    fn lane(&self, key: Option<&[u8]>) -> Lane {
        Lane {
            pool: self.pool.clone(),
            index: self.index(key),
        }
    }

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
    cmd.keys().first().map(|k| &k[..])
}

impl Backend for Keyed {
    fn unsettled(&self, key: Option<&[u8]>) -> bool {
        match key {
            Some(k) => self.pool.conns[self.index(Some(k))].stats.stalled() > 0,
            None => self
                .pool
                .conns
                .iter()
                .any(|c| c.stats.zombies.load(Ordering::Acquire) > 0),
        }
    }

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
        call_on(&self.pool, self.index(first_key(cmd)), cmd)
    }

    fn call_many(&self, cmds: Vec<Command>) -> BatchFuture {
        self.lane(cmds.first().and_then(first_key)).call_many(cmds)
    }
}

/// Write the quiet packet of a pipelined store, delete or touch, and say
/// whether it is quiet (touch has no quiet form); `None` for commands
/// `call_many` does not take.
fn quiet_packet(cmd: &Command, opaque: u32, out: &mut OutBuf) -> Option<bool> {
    if !matches!(
        cmd,
        Command::Store { .. } | Command::Delete { .. } | Command::Touch { .. }
    ) {
        return None;
    }
    let packet = RequestPacket::of(cmd)?.quiet();
    packet.write(opaque, out);
    Some(packet.opcode.is_quiet())
}

/// The timeout of a request of `packets` packets: a batch of many (a
/// chunked value's 100,000 chunks, a 10,000-key get) gets time in proportion,
/// 20 µs a packet on top of the per-request timeout.
fn batch_timeout(timeout: Duration, packets: usize) -> Duration {
    timeout + Duration::from_micros(20).saturating_mul(u32::try_from(packets).unwrap_or(u32::MAX))
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
            Shape::Cas => binary::cas_reply(Shape::Single.response(packets)),
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

/// Write the packets that carry `cmd` to memcached, numbered from
/// `*opaque`; `None` (and nothing written) for commands the proxy answers
/// itself.
fn encode(cmd: &Command, opaque: &mut u32, out: &mut OutBuf) -> Option<(Expect, u32, Shape)> {
    let (expect, shape) = match cmd {
        // Not one key (`gat 0` has none): quiet gets, then a no-op.
        Command::Get { keys, .. } if keys.len() != 1 => (Expect::UntilNoop, Shape::Hits),
        Command::Get { .. } => (Expect::One, Shape::Hits),
        Command::Stats { .. } => (Expect::UntilStatEnd, Shape::Stats),
        Command::Store {
            mode: StoreMode::Cas,
            ..
        } => (Expect::One, Shape::Cas),
        Command::Store { .. }
        | Command::Delete { .. }
        | Command::Touch { .. }
        | Command::Arith { .. }
        | Command::Flush { .. }
        | Command::Version => (Expect::One, Shape::Single),
        Command::GetE { .. }
        | Command::Verbosity { .. }
        | Command::Admin { .. }
        | Command::Noop
        | Command::Quit
        | Command::Meta(_)
        | Command::Invalid(_) => return None,
    };
    let packet = RequestPacket::of(cmd)?;
    let mut next = || {
        let this = *opaque;
        *opaque = opaque.wrapping_add(1);
        this
    };
    let last = match cmd {
        // Quiet gets, so only hits answer, then a no-op.
        Command::Get { keys, .. } if keys.len() != 1 => {
            for key in keys {
                packet.for_key(key).quiet().write(next(), out);
            }
            let last = next();
            RequestPacket::noop().write(last, out);
            last
        }
        _ => {
            let last = next();
            packet.write(last, out);
            last
        }
    };
    Some((expect, last, shape))
}

/// Dial memcached (TCP without Nagle's delay).
pub(crate) async fn connect(addr: &L1Addr) -> std::io::Result<Stream> {
    addr.connect().await
}

/// The pool's figures, for `/metrics`.
impl PoolSource for MemcachedL1 {
    fn pool(&self) -> PoolFigures {
        use std::sync::atomic::Ordering::Relaxed;
        let mut f = PoolFigures {
            up: self.connected() as u64,
            ..PoolFigures::default()
        };
        for c in self.conn_stats() {
            f.conns += 1;
            f.reconnects += c.reconnects.load(Relaxed);
            f.timeouts += c.timeouts.load(Relaxed);
            f.overloads += c.overloads.load(Relaxed);
            f.stalled += c.stalled() as u64;
            f.inflight += c.inflight() as u64;
        }
        f
    }
}
