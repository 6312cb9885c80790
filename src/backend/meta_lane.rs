//! The meta lane: meta commands (`mg`, `ms`, `md`, `ma`, `me`) go to L1
//! over memcached's text protocol, which is the only one that carries them,
//! and memcached's reply comes back as it sent it. This is how `l1-only`
//! serves them: stale items, win tokens, TTLs, last access and hit-before
//! are memcached's own, so every flag means exactly what it means there.
//!
//! One pipelined text connection per worker thread, driven by one task on
//! that worker. A client connection is pinned to its worker's lane, so its
//! meta requests reach memcached in the order it sent them; the connection
//! loop keeps them apart from its binary-lane requests (it starts a meta
//! request only when no other kind is in flight, and the reverse), so a
//! client's `set` and a later `mg` of the same key are not reordered.
//!
//! A request goes as the client sent it. One with `q` is followed by an
//! `mn`, so its reply is whatever memcached sends before the `MN`: nothing
//! when memcached hides it, exactly as memcached decides (`mn` from the
//! client itself is answered by rend, in order).
//!
//! Bounds:
//! - at most [`MAX_QUEUED`] requests and [`MAX_QUEUED_BYTES`] of their
//!   values are held by one lane (queued, written or unanswered: each holds
//!   a [`Ticket`] until its reply is handed back); past either a request
//!   fails at once (`SERVER_ERROR L1 overloaded`);
//! - every request has a deadline of `--l1-timeout-ms` from when it is
//!   queued; when the oldest unanswered one passes it, everything the
//!   connection holds fails (`L1 timeout`) and the connection is closed, so
//!   no reply is ever matched to another request; the next request dials
//!   again;
//! - a reply is read with the value limit the decoder was given (memcached's
//!   item size), so a corrupt length cannot make the lane buffer without end.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::memcached::{connect, L1Addr};
use super::{Backend, BackendError, BackendFuture, Tier};
use crate::net::Stream;
use crate::protocol::meta::{MetaReply, MetaRequest};
use crate::protocol::out::{OutBuf, Sink};
use crate::protocol::{Command, Response};

/// Requests queued, written or unanswered on one lane at once.
pub const MAX_QUEUED: usize = 4096;
/// Value bytes (`ms` data) of those requests.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;
/// Room made in the read buffer before each read.
const READ_ROOM: usize = 64 * 1024;

/// The result of one meta request.
/// The result of one meta request: memcached's reply, or `None` when `q`
/// hid it.
type MetaResult = Result<Option<MetaReply>, BackendError>;

struct Job {
    req: Arc<MetaRequest>,
    ticket: Ticket,
    deadline: Instant,
    reply: oneshot::Sender<MetaResult>,
}

/// What one lane holds: requests and their value bytes, from the call until
/// the reply (or the failure) is handed back.
#[derive(Default)]
struct Load {
    requests: AtomicUsize,
    bytes: AtomicUsize,
}

/// One request's share of its lane's [`Load`], given back when dropped
/// (whichever way the request ends).
struct Ticket {
    load: Arc<Load>,
    bytes: usize,
}

impl Ticket {
    /// A share of `load` for a request carrying `bytes` of value, or `None`
    /// past the lane's caps.
    fn take(load: &Arc<Load>, bytes: usize) -> Option<Ticket> {
        let ticket = Ticket {
            load: load.clone(),
            bytes,
        };
        let requests = load.requests.fetch_add(1, Ordering::AcqRel) + 1;
        let held = load.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        (requests <= MAX_QUEUED && held <= MAX_QUEUED_BYTES).then_some(ticket)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.load.requests.fetch_sub(1, Ordering::AcqRel);
        self.load.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One lane per worker thread.
pub struct MetaLanes {
    lanes: Vec<MetaLane>,
}

impl MetaLanes {
    /// Start one lane task on each of `workers` (on the current runtime
    /// when `workers` is empty). Each dials `addr` when its first request
    /// comes. `max_value` bounds a reply's value.
    pub fn start(addr: L1Addr, timeout: Duration, max_value: usize, workers: &[Handle]) -> Self {
        let workers = super::workers_or_current(workers);
        let lanes = workers
            .iter()
            .map(|worker| {
                let (jobs, rx) = mpsc::channel(MAX_QUEUED);
                worker.spawn(run(rx, addr.clone(), max_value));
                MetaLane {
                    jobs,
                    load: Arc::default(),
                    timeout,
                }
            })
            .collect();
        MetaLanes { lanes }
    }

    /// The lane of `worker`.
    pub fn lane(&self, worker: usize) -> MetaLane {
        self.lanes[worker % self.lanes.len()].clone()
    }
}

/// A handle on one lane; cheap to clone.
#[derive(Clone)]
pub struct MetaLane {
    jobs: mpsc::Sender<Job>,
    load: Arc<Load>,
    timeout: Duration,
}

impl MetaLane {
    /// Send `req` and wait for memcached's reply.
    fn send(&self, req: Arc<MetaRequest>) -> Result<oneshot::Receiver<MetaResult>, BackendError> {
        let bytes = req.value.as_ref().map_or(0, |v| v.len());
        let Some(ticket) = Ticket::take(&self.load, bytes) else {
            return Err(BackendError::Overloaded(Tier::L1));
        };
        let (tx, rx) = oneshot::channel();
        let job = Job {
            req,
            ticket,
            deadline: Instant::now() + self.timeout,
            reply: tx,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => Err(BackendError::Overloaded(Tier::L1)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(BackendError::Unavailable(Tier::L1)),
        }
    }
}

/// The lane takes meta commands only: their reply is
/// [`Response::Meta`], or [`Response::Nothing`] when `q` hid it.
impl Backend for MetaLane {
    fn starts_eagerly(&self) -> bool {
        true
    }

    fn call(&self, cmd: &Command) -> BackendFuture {
        let rx = match cmd {
            Command::Meta(m) => self.send(m.clone()),
            _ => Err(BackendError::Unsupported(Tier::L1)),
        };
        Box::pin(async move {
            match rx?.await {
                Ok(Ok(Some(reply))) => Ok(Response::Meta(reply)),
                Ok(Ok(None)) => Ok(Response::Nothing),
                Ok(Err(e)) => Err(e),
                // The lane's task ended (rend is stopping).
                Err(_) => Err(BackendError::Unavailable(Tier::L1)),
            }
        })
    }
}

/// A request written (or being written) and not yet answered.
struct Waiting {
    _ticket: Ticket,
    deadline: Instant,
    reply: oneshot::Sender<MetaResult>,
    /// Sent with `q` and a fencing `mn`: the reply ends at `MN`.
    quiet: bool,
    /// A quiet request's reply, read before its `MN`.
    got: Option<MetaReply>,
}

/// The lane's connection and its state.
struct Conn {
    stream: Stream,
    out: OutBuf,
    buf: BytesMut,
    waiting: VecDeque<Waiting>,
}

async fn run(mut jobs: mpsc::Receiver<Job>, addr: L1Addr, max_value: usize) {
    let mut conn: Option<Conn> = None;
    loop {
        let step = match &mut conn {
            None => match jobs.recv().await {
                None => return,
                Some(job) => Step::Job(job),
            },
            Some(c) => {
                let oldest = c.waiting.front().map(|w| w.deadline);
                tokio::select! {
                    job = jobs.recv() => match job {
                        None => return,
                        Some(job) => Step::Job(job),
                    },
                    // Read even when nothing is awaited: an idle connection
                    // that memcached closed (a restart) is noticed and
                    // dropped before a request is lost on it.
                    r = c.stream.readable() => match r {
                        Ok(()) => Step::Read,
                        Err(_) => Step::Fail(BackendError::Unavailable(Tier::L1)),
                    },
                    r = c.stream.writable(), if !c.out.is_empty() => match r {
                        Ok(()) => Step::Write,
                        Err(_) => Step::Fail(BackendError::Unavailable(Tier::L1)),
                    },
                    () = tokio::time::sleep_until(oldest.unwrap_or_else(Instant::now)),
                        if oldest.is_some() => Step::Fail(BackendError::Timeout(Tier::L1)),
                }
            }
        };
        let failure = match step {
            Step::Job(job) => {
                // One reading of the clock for the batch.
                let now = Instant::now();
                take(&mut conn, &addr, job, now).await;
                // Whatever else is queued goes out in the same write.
                while conn.is_some() {
                    let Ok(job) = jobs.try_recv() else { break };
                    take(&mut conn, &addr, job, now).await;
                }
                None
            }
            Step::Read => conn.as_mut().and_then(|c| read(c, max_value).err()),
            Step::Write => None,
            Step::Fail(e) => Some(e),
        };
        let failure = failure.or_else(|| {
            let c = conn.as_mut()?;
            c.stream.try_write_out(&mut c.out).err()?;
            Some(BackendError::Unavailable(Tier::L1))
        });
        if let Some(e) = failure {
            if let Some(c) = conn.take() {
                for w in c.waiting {
                    let _ = w.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

enum Step {
    Job(Job),
    Read,
    Write,
    Fail(BackendError),
}

/// Queue a job's request on the connection, dialling it first if there is
/// none. A job whose time ran out (by `now`) while it waited fails alone.
async fn take(conn: &mut Option<Conn>, addr: &L1Addr, job: Job, now: Instant) {
    if job.reply.is_closed() {
        return;
    }
    if now >= job.deadline {
        let _ = job.reply.send(Err(BackendError::Timeout(Tier::L1)));
        return;
    }
    if conn.is_none() {
        match tokio::time::timeout_at(job.deadline, connect(addr)).await {
            Ok(Ok(stream)) => {
                *conn = Some(Conn {
                    stream,
                    out: OutBuf::default(),
                    buf: BytesMut::new(),
                    waiting: VecDeque::new(),
                })
            }
            Ok(Err(_)) => {
                let _ = job.reply.send(Err(BackendError::Unavailable(Tier::L1)));
                return;
            }
            Err(_) => {
                let _ = job.reply.send(Err(BackendError::Timeout(Tier::L1)));
                return;
            }
        }
    }
    let Some(c) = conn.as_mut() else {
        return;
    };
    job.req.encode(&mut c.out);
    let quiet = job.req.quiet();
    if quiet {
        c.out.emit(b"mn\r\n");
    }
    c.waiting.push_back(Waiting {
        _ticket: job.ticket,
        deadline: job.deadline,
        reply: job.reply,
        quiet,
        got: None,
    });
}

/// Read what memcached sent and hand each whole reply to the request at the
/// front. An unreadable reply, or bytes no request asked for, fail the
/// connection.
fn read(c: &mut Conn, max_value: usize) -> Result<(), BackendError> {
    if c.buf.capacity() - c.buf.len() < READ_ROOM / 4 {
        c.buf.reserve(READ_ROOM);
    }
    match c.stream.try_read_buf(&mut c.buf) {
        Ok(0) => return Err(BackendError::Unavailable(Tier::L1)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
        Err(_) => return Err(BackendError::Unavailable(Tier::L1)),
    }
    while !c.buf.is_empty() {
        let Some(front) = c.waiting.front_mut() else {
            return Err(BackendError::Protocol(Tier::L1, "reply nobody asked for"));
        };
        let reply = match MetaReply::decode(&mut c.buf, max_value) {
            Ok(Some(reply)) => reply,
            Ok(None) => return Ok(()),
            Err(e) => return Err(BackendError::Protocol(Tier::L1, e.reason)),
        };
        let done = match (front.quiet, reply) {
            (false, reply) => Some(reply),
            (true, MetaReply::Noop) => front.got.take(),
            (true, reply) if front.got.is_none() => {
                front.got = Some(reply);
                continue;
            }
            (true, _) => {
                return Err(BackendError::Protocol(
                    Tier::L1,
                    "two replies to one request",
                ))
            }
        };
        if let Some(w) = c.waiting.pop_front() {
            let _ = w.reply.send(Ok(done));
        }
    }
    Ok(())
}
