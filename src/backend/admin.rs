//! The admin lane: memcached's admin and inspection commands
//! (`cache_memlimit`, `slabs …`, `lru …`, `lru_crawler …`, and a text
//! client's `stats <group>`), which the binary protocol cannot carry, go to
//! L1 over one text connection per process and memcached's reply comes back
//! byte for byte ([`Response::Raw`]).
//!
//! One task owns the connection and runs one command at a time, in the
//! order they were queued; it dials memcached when the first command comes
//! and again after any failure. Bounds:
//! - at most [`MAX_QUEUED`] commands wait for the task; past it a command
//!   fails at once (`L1 overloaded`);
//! - each command has a deadline of `--l1-timeout-ms` from when it is
//!   queued, covering its wait, the dial and the exchange (`L1 timeout`);
//! - a reply may hold at most [`MAX_REPLY`] bytes, room for memcached's
//!   largest `stats cachedump` (2 MiB); past it the command fails
//!   (`L1 reply too large`).
//!
//! After any failure the connection is closed, since memcached may still be
//! answering on it, and the next command dials a new one.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::memcached::{connect, L1Addr};
use super::{Backend, BackendError, BackendFuture, Tier};
use crate::net::Stream;
use crate::protocol::out::OutBuf;
use crate::protocol::text::{admin_reply_end, encode_admin, AdminEnd, ADMIN_FENCE_REPLY};
use crate::protocol::{Command, Response};

/// Largest admin reply relayed (memcached caps `stats cachedump` at 2 MiB).
pub const MAX_REPLY: usize = 2 << 20;
/// Admin commands queued for the lane at once.
pub const MAX_QUEUED: usize = 1024;
/// Room made in the read buffer before each read.
const READ_ROOM: usize = 64 * 1024;

struct Job {
    line: Bytes,
    deadline: Instant,
    reply: oneshot::Sender<Result<Response, BackendError>>,
}

/// A handle on the admin lane; cheap to clone. The task ends when every
/// handle is gone.
#[derive(Clone)]
pub struct AdminLane {
    jobs: mpsc::Sender<Job>,
    timeout: Duration,
}

impl AdminLane {
    /// Start the lane's task on the current runtime. It dials `addr` when
    /// the first command comes.
    pub fn start(addr: L1Addr, timeout: Duration) -> AdminLane {
        let (jobs, rx) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(run(rx, addr));
        AdminLane { jobs, timeout }
    }
}

impl Backend for AdminLane {
    fn call(&self, cmd: &Command) -> BackendFuture {
        let Command::Admin { line, .. } = cmd else {
            return Box::pin(std::future::ready(Err(BackendError::Unsupported(Tier::L1))));
        };
        let deadline = Instant::now() + self.timeout;
        let (tx, rx) = oneshot::channel();
        let job = Job {
            line: line.clone(),
            deadline,
            reply: tx,
        };
        if let Err(e) = self.jobs.try_send(job) {
            let e = match e {
                mpsc::error::TrySendError::Full(_) => BackendError::Overloaded(Tier::L1),
                mpsc::error::TrySendError::Closed(_) => BackendError::Unavailable(Tier::L1),
            };
            return Box::pin(std::future::ready(Err(e)));
        }
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(BackendError::Unavailable(Tier::L1)),
                Err(_) => Err(BackendError::Timeout(Tier::L1)),
            }
        })
    }
}

/// The connection and what has been read from it.
struct Conn {
    stream: Stream,
    buf: BytesMut,
}

impl Conn {
    /// Whether an idle connection can still be used: memcached may have
    /// closed it (restarted) since the last command, or sent bytes no
    /// command asked for.
    fn usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.buf.reserve(64);
        // Nothing to read (WouldBlock) is the only good answer.
        matches!(
            self.stream.try_read_buf(&mut self.buf),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }
}

async fn run(mut jobs: mpsc::Receiver<Job>, addr: L1Addr) {
    let mut conn: Option<Conn> = None;
    while let Some(job) = jobs.recv().await {
        if job.reply.is_closed() {
            continue;
        }
        // Its time ran out while it waited: the connection is still good.
        if Instant::now() >= job.deadline {
            let _ = job.reply.send(Err(BackendError::Timeout(Tier::L1)));
            continue;
        }
        let result = match tokio::time::timeout_at(
            job.deadline,
            exchange(&mut conn, &addr, &job.line),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout(Tier::L1)),
        };
        if result.is_err() {
            conn = None;
        }
        let _ = job.reply.send(result);
    }
}

/// Send one command and read memcached's whole reply.
async fn exchange(
    slot: &mut Option<Conn>,
    addr: &L1Addr,
    line: &[u8],
) -> Result<Response, BackendError> {
    let unavailable = |_| BackendError::Unavailable(Tier::L1);
    if slot.as_mut().is_some_and(|c| !c.usable()) {
        *slot = None;
    }
    let conn = match slot {
        Some(c) => c,
        None => slot.insert(Conn {
            stream: connect(addr).await.map_err(unavailable)?,
            buf: BytesMut::new(),
        }),
    };
    let mut out = OutBuf::default();
    let end = encode_admin(line, &mut out);
    conn.stream.write_out(&mut out).await.map_err(unavailable)?;
    let mut scanned = 0;
    loop {
        if let Some((reply, consumed)) = admin_reply_end(end, &conn.buf, &mut scanned) {
            if reply > MAX_REPLY {
                return Err(BackendError::ReplyTooLarge(Tier::L1));
            }
            let bytes = conn.buf.split_to(consumed).freeze().slice(..reply);
            // After a metadump memcached's crawler gave the connection back;
            // a fresh one is simpler to trust. Bytes past the reply mean
            // the exchange is out of step.
            if end == AdminEnd::FirstCrlf || !conn.buf.is_empty() {
                *slot = None;
            } else {
                // What is left shares the reply's memory: let it go with
                // the reply.
                conn.buf = BytesMut::new();
            }
            return Ok(Response::Raw(bytes));
        }
        if conn.buf.len() > MAX_REPLY + ADMIN_FENCE_REPLY.len() {
            return Err(BackendError::ReplyTooLarge(Tier::L1));
        }
        conn.stream.readable().await.map_err(unavailable)?;
        if conn.buf.capacity() - conn.buf.len() < READ_ROOM / 4 {
            conn.buf.reserve(READ_ROOM);
        }
        match conn.stream.try_read_buf(&mut conn.buf) {
            Ok(0) => return Err(BackendError::Unavailable(Tier::L1)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Err(BackendError::Unavailable(Tier::L1)),
        }
    }
}
