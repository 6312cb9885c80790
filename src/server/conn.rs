//! One client connection: sniff the protocol from the first byte, decode
//! every complete request that has arrived, start them all (in order), then
//! answer them in order with one write per batch.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

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
    loop {
        if decoder.is_none() && !buf.is_empty() {
            decoder = Some(Decoder::sniff(buf[0], settings.limits));
        }
        let mut fatal = None;
        let mut quit = false;
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
        for (req, reply) in batch.drain(..) {
            let resp = reply.await;
            counters.record(&req.cmd, &resp);
            encode_response(&req, &resp, &mut out);
            if out.len() >= FLUSH_AT {
                if let Err(e) = wr.write_all(&out).await {
                    return Closed::Io(e);
                }
                out.clear();
            }
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
