//! One client connection: sniff the protocol from the first byte, decode
//! every complete request that has arrived, start them all (in order), then
//! answer them in order with one write per batch.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::ops::ListenerMetrics;
use crate::metrics::Counters;
use crate::orca::{Orca, Reply};
use crate::protocol::{encode_response, Command, Decoder, Limits, Request};

/// Requests started before their replies are awaited.
const MAX_BATCH: usize = 1024;
/// Read buffer size, and the capacity kept between requests.
const READ_CHUNK: usize = 16 * 1024;
const KEEP_CAPACITY: usize = 256 * 1024;
/// At shutdown, how long to wait for bytes a client has already sent.
const DRAIN_WAIT: Duration = Duration::from_millis(100);
/// Pending output is written out once it passes this, even mid-batch.
const FLUSH_AT: usize = 1 << 20;

pub struct ConnSettings {
    pub limits: Limits,
    /// Close a connection that completes no request for this long.
    pub idle_timeout: Option<Duration>,
}

/// Why a connection ended (for logs at debug level).
#[derive(Debug)]
pub enum Closed {
    Eof,
    Quit,
    Idle,
    Shutdown,
    Protocol(&'static str),
    Io(std::io::Error),
}

pub async fn serve<R, W>(
    mut rd: R,
    mut wr: W,
    mut orca: Box<dyn Orca>,
    counters: &Counters,
    figures: &ListenerMetrics,
    settings: &ConnSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Closed
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let mut decoder: Option<Decoder> = None;
    let mut batch: Vec<(Request, Reply)> = Vec::new();
    let mut last_progress = Instant::now();
    let mut draining = *shutdown.borrow();
    let by_keys = orca.orders_by_keys();
    loop {
        if decoder.is_none() && !buf.is_empty() {
            decoder = Some(Decoder::sniff(buf[0], settings.limits));
        }
        let mut fatal = None;
        let mut quit = false;
        // Every request in the buffer had arrived by now: latency counts
        // from here, once per read rather than once per request.
        let arrived = std::time::Instant::now();
        if let Some(d) = decoder.as_mut() {
            while batch.len() < MAX_BATCH {
                match d.decode(&mut buf) {
                    Ok(Some(req)) => {
                        let reply = orca.handle(&req);
                        quit = matches!(req.cmd, Command::Quit);
                        batch.push((req, reply));
                        if quit {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        fatal = Some(e);
                        break;
                    }
                }
            }
        }
        let full_batch = batch.len() >= MAX_BATCH;
        if !batch.is_empty() {
            last_progress = Instant::now();
        }
        let (reqs, mut replies): (Vec<Request>, Vec<Option<Reply>>) = batch
            .drain(..)
            .map(|(req, reply)| (req, Some(reply)))
            .unzip();
        let mut start = 0;
        while start < reqs.len() {
            // Requests that start when first polled (see Backend::call) run
            // together while they touch different keys; eager ones already
            // run, and are awaited one by one.
            let end = if by_keys {
                wave_end(&reqs, start)
            } else {
                start + 1
            };
            let wave: Vec<Reply> = replies[start..end]
                .iter_mut()
                .filter_map(Option::take)
                .collect();
            let responses = join_in_order(wave).await;
            let answered = arrived.elapsed();
            for (i, resp) in (start..end).zip(responses) {
                counters.record(&reqs[i].cmd, &resp);
                figures.ops.record(&reqs[i].cmd, &resp, answered);
                encode_response(&reqs[i], &resp, &mut out);
                if out.len() >= FLUSH_AT {
                    if let Err(e) = wr.write_all(&out).await {
                        return Closed::Io(e);
                    }
                    out.clear();
                }
            }
            start = end;
        }
        if let Some(e) = &fatal {
            if let Some(reply) = &e.reply {
                out.extend_from_slice(reply);
            }
        }
        if !out.is_empty() {
            if let Err(e) = wr.write_all(&out).await {
                return Closed::Io(e);
            }
            out.clear();
        }
        if let Some(e) = fatal {
            let _ = wr.shutdown().await;
            return Closed::Protocol(e.reason);
        }
        if quit {
            let _ = wr.shutdown().await;
            return Closed::Quit;
        }
        if full_batch {
            continue;
        }
        if draining {
            // Shutting down: answer what the client had already sent (it may
            // still sit in the socket buffer), then close.
            match tokio::time::timeout(DRAIN_WAIT, rd.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => return Closed::Shutdown,
            }
        }
        // A large value leaves a large buffer behind; with thousands of
        // connections that memory adds up, so give it back once idle.
        if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        if out.capacity() > KEEP_CAPACITY {
            out = BytesMut::with_capacity(READ_CHUNK);
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        // Wait for more bytes.
        let idle = async {
            match settings.idle_timeout {
                Some(t) => tokio::time::sleep_until(last_progress + t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) => return Closed::Eof,
                Ok(_) => {}
                Err(e) => return Closed::Io(e),
            },
            _ = idle => return Closed::Idle,
            _ = shutdown.changed() => draining = true,
        }
    }
}

/// The keys a request works on; `None` for one that touches every key (a
/// flush) or ends the connection, which must run alone.
fn request_keys(cmd: &Command) -> Option<&[bytes::Bytes]> {
    match cmd {
        Command::Get { keys, .. } => Some(keys),
        Command::GetE { key }
        | Command::Store { key, .. }
        | Command::Delete { key, .. }
        | Command::Touch { key, .. }
        | Command::Arith { key, .. }
        | Command::Invalid(crate::protocol::Invalid::TooLarge { delete: Some(key) }) => {
            Some(std::slice::from_ref(key))
        }
        Command::Flush { .. } | Command::Quit => None,
        _ => Some(&[]),
    }
}

/// The end (exclusive) of the run of requests from `start` that share no key
/// and hold no barrier, so they may run at once without changing any
/// outcome.
fn wave_end(reqs: &[Request], start: usize) -> usize {
    let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    for (i, req) in reqs.iter().enumerate().skip(start) {
        let Some(keys) = request_keys(&req.cmd) else {
            return if i == start { i + 1 } else { i };
        };
        if keys.iter().any(|k| seen.contains(&k[..])) {
            return i;
        }
        seen.extend(keys.iter().map(|k| &k[..]));
    }
    reqs.len()
}

/// Await every reply, polling them together, and give them back in order.
async fn join_in_order(mut replies: Vec<Reply>) -> Vec<crate::protocol::Response> {
    if replies.len() == 1 {
        if let Some(r) = replies.pop() {
            return vec![r.await];
        }
    }
    let mut futures: Vec<Option<Reply>> = replies.into_iter().map(Some).collect();
    let mut done: Vec<Option<crate::protocol::Response>> = vec![None; futures.len()];
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, out) in futures.iter_mut().zip(done.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => {
                        *out = Some(r);
                        *slot = None;
                    }
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter()
        .map(|r| r.unwrap_or(crate::protocol::Response::Nothing))
        .collect()
}
