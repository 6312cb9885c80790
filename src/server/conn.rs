//! One client connection: sniff the protocol from the first byte, decode
//! requests, start them, and write their replies in order.
//!
//! What a connection may hold is capped (DESIGN §1, "the data path"):
//! - requests started and not yet answered: `max_requests`, each key of a
//!   multi-get counting one;
//! - bytes: replies not yet written, values of requests not yet answered,
//!   and the replies still expected (estimated from the replies this
//!   connection has had): `max_bytes`.
//!
//! At either cap the connection stops decoding and stops reading its socket
//! until replies drain; TCP pushes back on the client. A text multi-get is
//! issued in pieces of at most [`PIECE_KEYS`] keys (fewer when its values are
//! large), each piece when the caps allow, so its reply streams out in
//! bounded steps; a key named several times in one piece is fetched once and
//! its value shared. Replies hold values as the `Bytes` they arrived in and
//! go out with vectored writes.
//!
//! While a connection waits for its client it holds no buffer: one is taken
//! from a small per-thread pool when bytes arrive and given back when
//! everything read has been answered.
//!
//! The pieces of a multi-get are in `conn/multiget.rs`, the per-thread pool
//! in `conn/pool.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::slab_balancer::pacer::{Admit, Landing, Pacer, Wait};
use crate::metrics::ops::{Classified, ListenerMetrics};
use crate::metrics::Counters;
use crate::net::Stream;
use crate::orca::{Orca, Reply};
use crate::protocol::meta::Verb;
use crate::protocol::out::{OutBuf, Sink};
use crate::protocol::{
    encode_response, Command, Decoder, Frame, FrameError, Limits, Request, Response,
};

mod multiget;
mod pool;

use multiget::{has_repeats, Piece, Split, Tally};
use pool::{give_buf, give_flight, take_buf, take_flight};

/// Most keys one piece of a multi-get asks for.
pub const PIECE_KEYS: usize = 32;
/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// At shutdown, how long to wait for bytes a client has already sent.
const DRAIN_WAIT: Duration = Duration::from_millis(100);
/// A new connection's reply-size estimate, as a fraction of its byte cap:
/// until replies say otherwise, it expects large ones, so its first burst
/// of requests cannot commit it to many times its cap.
const FIRST_ESTIMATE_DIVISOR: usize = 8;

pub struct ConnSettings {
    pub limits: Limits,
    /// Close a connection that completes no request for this long.
    pub idle_timeout: Option<Duration>,
    /// Requests started and not answered (multi-get keys count one each).
    pub max_requests: usize,
    /// Bytes held for unwritten replies and unanswered requests.
    pub max_bytes: usize,
    /// Stores wait here for memcached to move a page to their slab class
    /// (`--slab-pacing`).
    pub pacer: Option<Arc<Pacer>>,
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

/// A request started and not yet answered.
struct Slot {
    req: Request,
    reply: Option<Reply>,
    resp: Option<Response>,
    /// Keys it looks up (1 for anything but a get).
    lookups: usize,
    /// Value bytes it holds.
    cost: usize,
    piece: Option<Piece>,
    arrived: std::time::Instant,
    /// A paced store, counted until it is answered.
    _landing: Option<Landing>,
}

/// Why the connection stops taking requests.
enum Closing {
    Quit,
    Eof,
    Fatal(FrameError),
}

struct Session<'a> {
    orca: Box<dyn Orca>,
    counters: &'a Counters,
    figures: &'a ListenerMetrics,
    settings: &'a ConnSettings,
    /// Requests start only when first polled: ones that share a key must
    /// not overlap.
    by_keys: bool,
    decoder: Option<Decoder>,
    inbuf: BytesMut,
    out: OutBuf,
    flight: VecDeque<Slot>,
    /// Requests in flight that run alone ([`runs_alone`]).
    alone: usize,
    /// Meta commands reach the tier on a connection of their own
    /// ([`Orca::meta_apart`]).
    meta_apart: bool,
    /// Requests in flight on the meta lane ([`Session::on_meta_lane`]).
    meta: usize,
    lookups: usize,
    held: usize,
    /// Reply bytes expected per key looked up.
    estimate: usize,
    /// Decoded and not yet started.
    parked: Option<Request>,
    /// The parked request is a store waiting for room in its slab class.
    paced: Option<Wait>,
    /// The request about to start is a store admitted by the pacer.
    landing: Option<Landing>,
    split: Option<Split>,
    tallies: VecDeque<Tally>,
    next_get: u64,
    /// A multi-get that failed part way: its other pieces are dropped.
    failed_get: Option<u64>,
    /// The decoder needs more bytes.
    need_input: bool,
    closing: Option<Closing>,
    /// When the requests buffered now had arrived (latency counts from
    /// here, once per read rather than once per request).
    arrived: std::time::Instant,
    last_progress: Instant,
}

enum Event {
    Progress,
    Writable(std::io::Result<()>),
    Readable(std::io::Result<()>),
    Idle,
    Shutdown,
    Drained,
}

pub async fn serve(
    stream: Stream,
    orca: Box<dyn Orca>,
    counters: &Counters,
    figures: &ListenerMetrics,
    settings: &ConnSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Closed {
    let mut stream = stream;
    let mut s = Session::new(orca, counters, figures, settings);
    let mut draining = *shutdown.borrow();
    loop {
        if let Err(e) = s.start_and_write(&stream) {
            return Closed::Io(e);
        }
        let quiet = s.flight.is_empty() && s.out.is_empty();
        if quiet && s.parked.is_none() && s.split.is_none() {
            if let Some(closing) = s.closing.take() {
                return s.close(&mut stream, closing).await;
            }
            s.release_buffers();
        }
        let want_read = s.closing.is_none() && s.need_input && s.admits_any();
        let idle_at = match s.settings.idle_timeout {
            Some(t) if quiet && !draining => Some(s.last_progress + t),
            _ => None,
        };
        let paced_wait = s.paced;
        let event = tokio::select! {
            biased;
            _ = std::future::poll_fn(|cx| s.poll_flight(cx)), if !s.flight.is_empty() => Event::Progress,
            _ = paced(settings, paced_wait), if paced_wait.is_some() => Event::Progress,
            r = stream.writable(), if !s.out.is_empty() => Event::Writable(r),
            r = stream.readable(), if want_read => Event::Readable(r),
            _ = sleep_until(idle_at), if idle_at.is_some() => Event::Idle,
            _ = shutdown.changed(), if !draining => Event::Shutdown,
            _ = tokio::time::sleep(DRAIN_WAIT), if draining && quiet => Event::Drained,
        };
        match event {
            Event::Progress => s.finish_ready(),
            Event::Writable(Err(e)) | Event::Readable(Err(e)) => return Closed::Io(e),
            Event::Writable(Ok(())) => {}
            Event::Readable(Ok(())) => {
                if let Err(e) = s.read(&stream) {
                    return Closed::Io(e);
                }
            }
            Event::Idle => return Closed::Idle,
            Event::Shutdown => draining = true,
            Event::Drained => return Closed::Shutdown,
        }
    }
}

/// Until the store a session holds for room may go.
async fn paced(settings: &ConnSettings, wait: Option<Wait>) {
    if let (Some(pacer), Some(wait)) = (&settings.pacer, wait) {
        pacer.changed(wait).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<'a> Session<'a> {
    /// A meta command other than `mn` (which rend answers itself), where
    /// meta commands go on a connection of their own (`l1-only`'s meta
    /// lane, [`crate::backend::meta_lane`]).
    fn on_meta_lane(&self, cmd: &Command) -> bool {
        self.meta_apart && matches!(cmd, Command::Meta(m) if m.verb != Verb::Noop)
    }

    fn new(
        orca: Box<dyn Orca>,
        counters: &'a Counters,
        figures: &'a ListenerMetrics,
        settings: &'a ConnSettings,
    ) -> Session<'a> {
        Session {
            by_keys: orca.orders_by_keys(),
            meta_apart: orca.meta_apart(),
            orca,
            counters,
            figures,
            settings,
            decoder: None,
            inbuf: BytesMut::new(),
            out: OutBuf::default(),
            flight: VecDeque::new(),
            alone: 0,
            meta: 0,
            lookups: 0,
            held: 0,
            estimate: (settings.max_bytes / FIRST_ESTIMATE_DIVISOR).max(64),
            parked: None,
            paced: None,
            landing: None,
            split: None,
            tallies: VecDeque::new(),
            next_get: 0,
            failed_get: None,
            need_input: true,
            closing: None,
            arrived: std::time::Instant::now(),
            last_progress: Instant::now(),
        }
    }

    /// Start what the caps allow and write what is ready, until writing
    /// frees no room for anything waiting to start.
    fn start_and_write(&mut self, stream: &Stream) -> std::io::Result<()> {
        loop {
            self.start_more();
            self.finish_ready();
            let before = self.out.len();
            if before > 0 {
                stream.try_write_out(&mut self.out)?;
            }
            let waiting = self.parked.is_some() || self.split.is_some();
            if !(waiting && self.out.len() < before) {
                return Ok(());
            }
        }
    }

    /// With nothing in flight, when nothing read is left unanswered, the
    /// buffers go back to the pool while the client is quiet.
    fn release_buffers(&mut self) {
        if self.inbuf.is_empty() {
            give_buf(std::mem::take(&mut self.inbuf));
            self.out.release(0);
            give_flight(std::mem::take(&mut self.flight));
        }
    }

    /// Read what the client sent.
    fn read(&mut self, stream: &Stream) -> std::io::Result<()> {
        if self.inbuf.capacity() == 0 {
            self.inbuf = take_buf();
        }
        if self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK / 2 {
            self.inbuf.reserve(READ_CHUNK);
        }
        match stream.try_read_buf(&mut self.inbuf) {
            Ok(0) => {
                // Answer what was read before the end, then close.
                self.closing = Some(Closing::Eof);
                self.need_input = false;
            }
            Ok(_) => {
                self.arrived = std::time::Instant::now();
                self.need_input = false;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// A request started or finished: the idle clock restarts (read only
    /// when `--idle-timeout` is set, so only then is the time taken).
    fn progress(&mut self) {
        if self.settings.idle_timeout.is_some() {
            self.last_progress = Instant::now();
        }
    }

    /// Whether one more lookup could start now.
    fn admits_any(&self) -> bool {
        self.lookups < self.settings.max_requests
            && self.out.len() + self.held < self.settings.max_bytes
    }

    /// Whether a request of `lookups` keys holding `cost` bytes may start.
    fn admits(&self, lookups: usize, cost: usize) -> bool {
        if self.out.len() >= self.settings.max_bytes {
            return false;
        }
        if self.flight.is_empty() {
            return true;
        }
        self.lookups + lookups <= self.settings.max_requests
            && self.out.len() + self.held + cost + (self.lookups + lookups) * self.estimate
                <= self.settings.max_bytes
    }

    /// Keys per piece of a multi-get: fewer when values are large.
    fn piece_keys(&self) -> usize {
        (self.settings.max_bytes / self.estimate.max(1)).clamp(1, PIECE_KEYS)
    }

    /// Start every request the caps and the key order allow.
    fn start_more(&mut self) {
        loop {
            if self.split.is_some() {
                if !self.advance_split() {
                    return;
                }
                continue;
            }
            let req = match self.parked.take() {
                Some(r) => r,
                None => {
                    if !self.decoding() || self.need_input {
                        return;
                    }
                    match self.decode() {
                        Some(r) => r,
                        None => return,
                    }
                }
            };
            if let (Frame::Text { .. }, Command::Get { keys, touch }) = (&req.frame, &req.cmd) {
                // A gat is a write (a negative exptime expires the item as
                // it is read), so only plain gets share repeated keys.
                let open = self.decoder.as_ref().is_some_and(Decoder::continues);
                if open || keys.len() > self.piece_keys() || (touch.is_none() && has_repeats(keys))
                {
                    self.split_get(req, open);
                    continue;
                }
            }
            let lookups = match &req.cmd {
                Command::Get { keys, .. } => keys.len().max(1),
                _ => 1,
            };
            let cost = request_cost(&req.cmd);
            if !self.admits(lookups, cost) || !self.in_order(&req.cmd) || self.must_wait(&req.cmd) {
                self.parked = Some(req);
                return;
            }
            if matches!(req.cmd, Command::Quit) {
                self.closing = Some(Closing::Quit);
            }
            self.start(req, lookups, cost, None);
        }
    }

    /// Whether a store must wait for room in its slab class ([`Pacer`]);
    /// its later requests wait behind it.
    fn must_wait(&mut self, cmd: &Command) -> bool {
        let Some(pacer) = &self.settings.pacer else {
            return false;
        };
        let Some(class) = pacer.class_of(cmd) else {
            return false;
        };
        match pacer.admit(class, self.paced.take()) {
            Admit::Go(landing) => {
                self.landing = landing;
                false
            }
            Admit::Wait(wait) => {
                self.paced = Some(wait);
                true
            }
        }
    }

    /// Whether requests are still decoded: not after quit or a framing
    /// error (at the end of input, what was read is still answered).
    fn decoding(&self) -> bool {
        matches!(self.closing, None | Some(Closing::Eof))
    }

    fn decode(&mut self) -> Option<Request> {
        if self.inbuf.is_empty() {
            self.need_input = true;
            return None;
        }
        let decoder = self
            .decoder
            .get_or_insert_with(|| Decoder::sniff(self.inbuf[0], self.settings.limits));
        match decoder.decode(&mut self.inbuf) {
            Ok(Some(req)) => Some(req),
            Ok(None) => {
                self.need_input = true;
                None
            }
            Err(e) => {
                self.closing = Some(Closing::Fatal(e));
                None
            }
        }
    }

    /// Whether `cmd` may start now without reordering work on a key: for
    /// policies whose requests start when polled, it must share no key
    /// with a request in flight, and one that touches every key (flush,
    /// quit) runs alone. In every policy an admin command runs alone.
    fn in_order(&self, cmd: &Command) -> bool {
        if self.flight.is_empty() {
            return true;
        }
        if self.alone > 0 || runs_alone(cmd) {
            return false;
        }
        // Meta commands reach memcached on a connection of their own: a
        // meta command waits for the client's other requests in flight, and
        // the others wait for it.
        let meta = self.on_meta_lane(cmd);
        if (meta && self.meta < self.flight.len()) || (!meta && self.meta > 0) {
            return false;
        }
        if !self.by_keys {
            return true;
        }
        let Some(keys) = request_keys(cmd) else {
            return false;
        };
        !self
            .flight
            .iter()
            .any(|slot| match request_keys(&slot.req.cmd) {
                None => true,
                Some(theirs) => theirs.iter().any(|k| keys.contains(k)),
            })
    }

    fn start(&mut self, req: Request, lookups: usize, cost: usize, piece: Option<Piece>) {
        let reply = self.orca.handle(&req);
        if self.flight.capacity() == 0 {
            self.flight = take_flight();
        }
        self.lookups += lookups;
        self.held += cost;
        self.alone += usize::from(runs_alone(&req.cmd));
        self.meta += usize::from(self.on_meta_lane(&req.cmd));
        self.progress();
        self.flight.push_back(Slot {
            req,
            reply: Some(reply),
            resp: None,
            lookups,
            cost,
            piece,
            arrived: self.arrived,
            _landing: self.landing.take(),
        });
    }

    /// Poll what is in flight; ready when the oldest request has its
    /// answer. Requests that started eagerly answer in order, so polling
    /// stops at the first still waiting; requests that start when polled
    /// are all polled, so they run together.
    fn poll_flight(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for slot in self.flight.iter_mut() {
            if let Some(reply) = slot.reply.as_mut() {
                match reply.as_mut().poll(cx) {
                    Poll::Ready(resp) => {
                        slot.resp = Some(resp);
                        slot.reply = None;
                    }
                    Poll::Pending if !self.by_keys => break,
                    Poll::Pending => {}
                }
            }
        }
        match self.flight.front() {
            Some(slot) if slot.resp.is_some() => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }

    /// Encode the answers of the oldest requests, in order, as far as they
    /// are ready.
    fn finish_ready(&mut self) {
        while self.flight.front().is_some_and(|s| s.resp.is_some()) {
            let Some(mut slot) = self.flight.pop_front() else {
                break;
            };
            let Some(resp) = slot.resp.take() else {
                break;
            };
            self.lookups -= slot.lookups;
            self.held -= slot.cost;
            self.alone -= usize::from(runs_alone(&slot.req.cmd));
            self.meta -= usize::from(self.on_meta_lane(&slot.req.cmd));
            self.progress();
            let before = self.out.len();
            match slot.piece.take() {
                None => {
                    let class = Classified::of(&slot.req.cmd, &resp);
                    self.counters.record(&class);
                    self.figures.ops.record(&class, slot.arrived.elapsed());
                    encode_response(&slot.req, &resp, &mut self.out);
                }
                Some(piece) => self.finish_piece(&slot.req, piece, resp),
            }
            let per_key = (self.out.len() - before) / slot.lookups.max(1);
            // Up at once, down by halves: an underestimate costs memory, an
            // overestimate only concurrency.
            self.estimate = per_key.max(self.estimate.div_ceil(2)).max(64);
        }
    }

    /// Stop: answer a framing error, write what is left, close.
    async fn close(&mut self, stream: &mut Stream, closing: Closing) -> Closed {
        if let Closing::Fatal(e) = &closing {
            if let Some(reply) = &e.reply {
                self.out.emit(reply);
            }
        }
        if let Err(e) = stream.write_out(&mut self.out).await {
            return Closed::Io(e);
        }
        match closing {
            Closing::Eof => Closed::Eof,
            Closing::Quit => {
                stream.shutdown().await;
                Closed::Quit
            }
            Closing::Fatal(e) => {
                stream.shutdown().await;
                Closed::Protocol(e.reason)
            }
        }
    }
}

/// Value bytes a request holds while it is in flight.
fn request_cost(cmd: &Command) -> usize {
    match cmd {
        Command::Store { value, .. } => value.len(),
        Command::Meta(m) => m.value.as_ref().map_or(0, Bytes::len),
        _ => 0,
    }
}

/// Requests that go to memcached on a connection of their own (the admin
/// lane) rather than this client's: they wait for everything the client
/// sent before them, and what it sends after waits for them, so memcached
/// sees them in the order the client sent them (a `stats items` after a
/// `set` counts the item).
fn runs_alone(cmd: &Command) -> bool {
    matches!(cmd, Command::Admin { .. } | Command::Stats { arg: Some(_) })
}

/// The keys a request works on; `None` for one that touches every key (a
/// flush) or ends the connection, which must run alone.
fn request_keys(cmd: &Command) -> Option<&[Bytes]> {
    match cmd {
        Command::Flush { .. } | Command::Quit => None,
        _ => Some(cmd.keys()),
    }
}
