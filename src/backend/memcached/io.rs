//! The task side of the pool: one task per pooled connection dials
//! memcached, writes what callers queued, reads replies and hands each to
//! its caller; a stalled socket is settled before its slot is reused.

use super::*;

/// One pooled connection: connect, serve until it breaks, redial with
/// backoff; ends when every handle is gone.
pub(super) async fn run_conn(conn: Arc<Conn>, opts: L1Options) {
    let mut backoff = Duration::from_millis(5);
    let mut warned = false;
    loop {
        if conn.closed.load(Ordering::Acquire) {
            return;
        }
        if conn.stats.zombies.load(Ordering::Acquire) >= MAX_ZOMBIES {
            // memcached has not answered what the last sockets carried:
            // another socket would stall the same way.
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = conn.wake.notified() => {}
            }
            continue;
        }
        match tokio::time::timeout(opts.timeout, connect(&opts.addr)).await {
            Ok(Ok(stream)) => match serve(&conn, stream, &opts).await {
                Ended::Closed => return,
                Ended::Broken(why) | Ended::Stalled(why) => {
                    tracing::warn!(tier = "L1", addr = %opts.addr, "memcached connection lost: {why}");
                    backoff = Duration::from_millis(5);
                    warned = false;
                }
            },
            Ok(Err(e)) => {
                if !warned {
                    tracing::warn!(tier = "L1", addr = %opts.addr, "cannot connect to memcached: {e}");
                    warned = true;
                }
            }
            Err(_) => {
                if !warned {
                    tracing::warn!(tier = "L1", addr = %opts.addr, "cannot connect to memcached: no answer within {:?}", opts.timeout);
                    warned = true;
                }
            }
        }
        conn.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = conn.wake.notified() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

pub(super) enum Ended {
    /// Every handle is gone: stop.
    Closed,
    /// The connection broke: redial.
    Broken(String),
    /// Nothing arrived for a timeout while requests waited: redial.
    Stalled(String),
}

/// Serve one connected socket until it breaks, stalls or the pool closes;
/// then fail whatever it still holds. A stalled socket with requests
/// written to it becomes a zombie until memcached answers them.
pub(super) async fn serve(conn: &Arc<Conn>, stream: Stream, opts: &L1Options) -> Ended {
    let written_from = {
        let mut st = conn.lock();
        st.up = true;
        st.queued_total
    };
    conn.stats.connected.store(true, Ordering::Relaxed);
    let mut io = ConnIo {
        conn,
        opts,
        rbuf: BytesMut::new(),
        writing: OutBuf::default(),
        done: Vec::new(),
        last_read: Instant::now(),
        written: written_from,
    };
    let (ended, error) = io.run(&stream).await;
    let mut st = conn.lock();
    st.up = false;
    conn.stats.connected.store(false, Ordering::Relaxed);
    let mut failed: Vec<Pending> = st.pending.drain(..).collect();
    st.queued = OutBuf::default();
    st.queued_total = io.written;
    st.writing = 0;
    drop(st);
    conn.stats
        .inflight
        .fetch_sub(failed.len(), Ordering::Relaxed);
    if matches!(error, BackendError::Timeout(_)) {
        conn.stats
            .timeouts
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
    }
    // Requests wholly written are a prefix of the queue. The slot is
    // unsettled before any caller hears of the failure: a caller on another
    // thread may write the key again at once, and must see it.
    let sent = failed.iter().take_while(|p| p.end <= io.written).count();
    let zombie = matches!(ended, Ended::Stalled(_)) && sent > 0;
    if zombie {
        conn.stats.zombies.fetch_add(1, Ordering::AcqRel);
    }
    for p in failed.iter_mut() {
        if let Some(tx) = p.reply.take() {
            let _ = tx.send(Err(error.clone()));
        }
        p.packets = Vec::new();
    }
    if zombie {
        failed.truncate(sent);
        let rbuf = std::mem::take(&mut io.rbuf);
        tokio::spawn(settle(
            conn.clone(),
            stream,
            failed.into(),
            rbuf,
            opts.max_body,
        ));
    }
    match ended {
        Ended::Stalled(why) => Ended::Broken(why),
        other => other,
    }
}

/// A stalled socket: read it until memcached has answered every request
/// written to it (or closed it), then close it and settle its slot.
pub(super) async fn settle(
    conn: Arc<Conn>,
    stream: Stream,
    mut sent: VecDeque<Pending>,
    mut rbuf: BytesMut,
    max_body: usize,
) {
    let waiting = sent.len();
    'read: loop {
        loop {
            let packet = match binary::decode_packet(&mut rbuf, max_body) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(_) => break 'read,
            };
            let Some(front) = sent.front() else {
                break 'read;
            };
            let finished = match front.expect {
                Expect::One => true,
                Expect::UntilNoop => packet.opcode == op::NOOP,
                Expect::UntilStatEnd => packet.status != status::OK || packet.key.is_empty(),
            };
            if finished {
                sent.pop_front();
                if sent.is_empty() {
                    break 'read;
                }
            }
        }
        if conn.closed.load(Ordering::Acquire) || stream.readable().await.is_err() {
            break;
        }
        if rbuf.capacity() - rbuf.len() < READ_ROOM / 4 {
            rbuf.reserve(READ_ROOM);
        }
        match stream.try_read_buf(&mut rbuf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    tracing::info!(
        tier = "L1",
        "a stalled memcached connection settled ({} of {waiting} late replies)",
        waiting - sent.len()
    );
    conn.stats.zombies.fetch_sub(1, Ordering::AcqRel);
    conn.wake.notify_one();
}

/// The task side of one connected socket.
pub(super) struct ConnIo<'a> {
    pub(super) conn: &'a Conn,
    /// Bytes of the slot's stream written so far.
    pub(super) written: u64,
    pub(super) opts: &'a L1Options,
    pub(super) rbuf: BytesMut,
    /// Requests taken from the queue, not yet written.
    pub(super) writing: OutBuf,
    /// Answers to send once the lock is released (kept for its capacity).
    pub(super) done: Vec<(ReplyTx, Result<Vec<Packet>, BackendError>)>,
    pub(super) last_read: Instant,
}

/// Read buffer: at least this much room for each read; kept while idle
/// only up to this size.
pub(super) const READ_ROOM: usize = 64 * 1024;

impl ConnIo<'_> {
    /// Run until the socket breaks or stalls (with the error its requests
    /// fail with) or the pool closes.
    async fn run(&mut self, stream: &Stream) -> (Ended, BackendError) {
        let unavailable = BackendError::Unavailable(Tier::L1);
        let timer = tokio::time::sleep(self.opts.timeout);
        tokio::pin!(timer);
        let mut armed = false;
        loop {
            if self.conn.closed.load(Ordering::Acquire) {
                return (Ended::Closed, unavailable);
            }
            // Take what callers queued, and arm the deadline check if
            // requests wait.
            {
                let mut st = self.conn.lock();
                if self.writing.is_empty() {
                    std::mem::swap(&mut st.queued, &mut self.writing);
                }
                if !armed {
                    if let Some(front) = st.pending.front() {
                        timer.as_mut().reset(front.deadline);
                        armed = true;
                    }
                }
                st.parked = self.writing.is_empty();
                st.writing = self.writing.len();
            }
            if !self.writing.is_empty() {
                let before = self.writing.len();
                let result = stream.try_write_out(&mut self.writing);
                self.written += (before - self.writing.len()) as u64;
                if let Err(e) = result {
                    return (Ended::Broken(format!("write failed: {e}")), unavailable);
                }
                if self.writing.is_empty() {
                    self.writing.release(READ_ROOM);
                    continue;
                }
            }
            tokio::select! {
                biased;
                r = stream.readable() => {
                    if let Err(e) = r {
                        return (Ended::Broken(format!("read failed: {e}")), unavailable);
                    }
                    if let Err(why) = self.read(stream) {
                        return (Ended::Broken(why), unavailable);
                    }
                }
                r = stream.writable(), if !self.writing.is_empty() => {
                    if let Err(e) = r {
                        return (Ended::Broken(format!("write failed: {e}")), unavailable);
                    }
                }
                _ = self.conn.wake.notified(), if self.writing.is_empty() => {}
                _ = &mut timer, if armed => {
                    match self.check_deadlines() {
                        Ok(Some(next)) => timer.as_mut().reset(next),
                        Ok(None) => armed = false,
                        Err(why) => return (Ended::Stalled(why), BackendError::Timeout(Tier::L1)),
                    }
                }
            }
        }
    }

    /// Read what memcached sent and answer the requests it completes.
    fn read(&mut self, stream: &Stream) -> Result<(), String> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_ROOM / 4 {
            self.rbuf.reserve(READ_ROOM);
        }
        match stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => return Err("memcached closed the connection".into()),
            Ok(_) => self.last_read = Instant::now(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(format!("read failed: {e}")),
        }
        let mut st = self.conn.lock();
        let result = loop {
            let packet = match binary::decode_packet(&mut self.rbuf, self.opts.max_body) {
                Ok(Some(p)) => p,
                Ok(None) => break Ok(()),
                Err(FrameError { reason, .. }) => break Err(format!("bad reply: {reason}")),
            };
            if packet.magic != binary::RES_MAGIC {
                break Err("bad reply magic".into());
            }
            let Some(front) = st.pending.front_mut() else {
                break Err("reply with no request waiting".into());
            };
            let finished = match front.expect {
                Expect::One => true,
                Expect::UntilNoop => packet.opcode == op::NOOP,
                Expect::UntilStatEnd => packet.status != status::OK || packet.key.is_empty(),
            };
            if finished && packet.opaque != front.last_opaque {
                break Err("replies out of step with requests".into());
            }
            if front.reply.is_some() {
                front.packets.push(packet);
            }
            if finished {
                if let Some(p) = st.pending.pop_front() {
                    self.conn.stats.inflight.fetch_sub(1, Ordering::Relaxed);
                    if let Some(tx) = p.reply {
                        self.done.push((tx, Ok(p.packets)));
                    }
                }
            }
        };
        let idle = st.pending.is_empty();
        drop(st);
        for (tx, r) in self.done.drain(..) {
            let _ = tx.send(r);
        }
        // Idle with nothing buffered: let a large buffer go (the values
        // sliced from it live on with their readers).
        if idle && self.rbuf.is_empty() && self.rbuf.capacity() > READ_ROOM {
            self.rbuf = BytesMut::new();
        }
        result
    }

    /// The timer fired: answer requests past their deadline, declare the
    /// connection dead if nothing arrived for a whole timeout while requests
    /// waited, and say when to look again (`None`: nothing waits).
    fn check_deadlines(&mut self) -> Result<Option<Instant>, String> {
        let now = Instant::now();
        let mut st = self.conn.lock();
        let Some(front) = st.pending.front() else {
            return Ok(None);
        };
        let stalled_since = self.last_read.max(front.queued);
        let dead_at = stalled_since + self.opts.timeout;
        if now >= dead_at {
            return Err(format!(
                "no reply for {:?} with {} request(s) waiting",
                self.opts.timeout,
                st.pending.len()
            ));
        }
        let mut next = dead_at;
        for p in st.pending.iter_mut() {
            if p.reply.is_none() {
                continue;
            }
            if p.deadline <= now {
                if let Some(tx) = p.reply.take() {
                    self.conn.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    self.done.push((tx, Err(BackendError::Timeout(Tier::L1))));
                }
                p.packets = Vec::new();
            } else {
                next = next.min(p.deadline);
            }
        }
        drop(st);
        for (tx, r) in self.done.drain(..) {
            let _ = tx.send(r);
        }
        Ok(Some(next))
    }
}
