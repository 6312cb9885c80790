//! `blast`: a weighted mix of commands, closed loop (as fast as replies come
//! back, `--pipeline` requests in flight per worker) or open loop at a fixed
//! `--rate`, where latency is measured both from the intended send time
//! (coordinated omission corrected) and from the actual send.
//!
//! Each worker has one connection per server; keys go to servers by ketama.
//! A worker's sender issues requests and a reader task per connection
//! matches replies in order, so a slow reply never stops new sends beyond the
//! window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};

use super::args::Common;
use super::client::{connect, encode, frame_for, ReplyReader, Writer};
use super::ketama::Continuum;
use super::report::{Clock, Outcome, Progress, Recorder};
use super::workload::{worker_rng, KeyGen, Mix, Op};
use super::ToolError;
use crate::protocol::meta::{Code, Flag, MetaReply, MetaRequest, Verb};
use crate::protocol::{Command, Request, Response, StoreMode};

/// blast's own options.
#[derive(Clone, Debug)]
pub struct BlastOptions {
    pub common: Common,
    /// Requests to count, in total over all workers (warmup excluded).
    pub num_ops: Option<u64>,
    pub duration: Option<Duration>,
    pub warmup: Duration,
    pub mix: Mix,
    /// Open loop: requests per second over all workers.
    pub rate: Option<f64>,
    /// Keys per multi-get.
    pub multiget: usize,
    /// Exptime for sets, touch and gat.
    pub exptime: i64,
}

/// A request on the wire, waiting for its reply.
struct InFlight {
    req: Request,
    op: Op,
    sent: Instant,
    intended: Option<Instant>,
    counted: bool,
}

/// Shared state of one run.
struct Run {
    opts: BlastOptions,
    continuum: Continuum,
    /// Counted requests issued so far.
    issued: AtomicU64,
    start: Instant,
    measure_from: Instant,
    deadline: Option<Instant>,
    stop: AtomicBool,
    progress: Progress,
    broken: AtomicU64,
}

impl Run {
    fn counted_budget_left(&self) -> bool {
        match self.opts.num_ops {
            Some(n) => self.issued.load(Ordering::Relaxed) < n,
            None => true,
        }
    }

    /// Whether a worker stops sending at `now`: stopped, past the deadline,
    /// or (after the warmup) every counted request issued.
    fn finished(&self, now: Instant) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            return true;
        }
        let warming = now < self.measure_from;
        !warming && !self.counted_budget_left()
    }
}

/// Run blast to the end; returns the merged recorder.
/// `mg <key> v f t`: what a meta client asks for in place of a `get`.
fn meta_get(key: Bytes) -> MetaRequest {
    MetaRequest {
        verb: Verb::Get,
        key,
        flags: [b'v', b'f', b't']
            .into_iter()
            .map(|code| Flag::new(code, Bytes::new()))
            .collect(),
        datalen: None,
        value: None,
    }
}

pub async fn run(opts: BlastOptions) -> Result<Recorder, ToolError> {
    if opts.mix.ops().contains(&Op::MetaGet)
        && opts.common.protocol() == super::client::Protocol::Binary
    {
        return Err(ToolError::Usage(
            "mg is a text command: use it without --protocol binary".into(),
        ));
    }
    let names = opts.common.server_names();
    let continuum = Continuum::new(&names);
    let start = Instant::now();
    let measure_from = start + opts.warmup;
    let deadline = opts.duration.map(|d| measure_from + d);
    if opts.num_ops.is_none() && deadline.is_none() {
        return Err(ToolError::Usage("give -n/--num-ops or --duration".into()));
    }
    let run = Arc::new(Run {
        progress: Progress::new(opts.num_ops, opts.duration),
        opts,
        continuum,
        issued: AtomicU64::new(0),
        start,
        measure_from,
        deadline,
        stop: AtomicBool::new(false),
        broken: AtomicU64::new(0),
    });
    let mut workers = Vec::new();
    for w in 0..run.opts.common.workers {
        workers.push(tokio::spawn(worker(run.clone(), w as usize)));
    }
    let mut total = Recorder::new(measure_from);
    let mut first_error = None;
    for w in workers {
        match w.await {
            Ok(Ok(rec)) => total.merge(&rec),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(ToolError::Internal(format!("worker failed: {e}")));
            }
        }
    }
    run.progress.finish();
    if let Some(e) = first_error {
        return Err(e);
    }
    let broken = run.broken.load(Ordering::Relaxed);
    if broken > 0 {
        eprintln!("blast: {broken} connection(s) broke during the run");
    }
    Ok(total)
}

/// Per-connection reply handling: record latency and outcome, release the
/// window slot, remember cas values for later cas requests.
async fn read_loop(
    mut reader: ReplyReader,
    mut rx: mpsc::Receiver<InFlight>,
    window: Arc<Semaphore>,
    cas_seen: Arc<Mutex<HashMap<Bytes, u64>>>,
    run: Arc<Run>,
) -> Recorder {
    let mut rec = Recorder::new(run.measure_from);
    while let Some(f) = rx.recv().await {
        let reply = reader.next(&f.req).await;
        let now = Instant::now();
        window.add_permits(1);
        let outcome = match &reply {
            Ok(resp) => outcome_of(resp),
            Err(_) => Outcome::Error,
        };
        if let Ok(Response::Values(values)) = &reply {
            if f.op == Op::Gets {
                if let Ok(mut seen) = cas_seen.lock() {
                    for v in values {
                        seen.insert(v.key.clone(), v.cas);
                    }
                }
            }
        }
        if f.counted {
            rec.record(f.op.name(), outcome, Clock::Service, now - f.sent);
            if let Some(intended) = f.intended {
                rec.record(
                    f.op.name(),
                    outcome,
                    Clock::Intended,
                    now.saturating_duration_since(intended),
                );
            }
            run.progress.inc(1);
        }
        if let Err(e) = reply {
            // The connection is gone: count what was still in flight as
            // errors and stop this worker's sender.
            eprintln!("blast: connection lost: {e}");
            run.broken.fetch_add(1, Ordering::Relaxed);
            window.close();
            rx.close();
            while let Some(f) = rx.recv().await {
                if f.counted {
                    rec.record(f.op.name(), Outcome::Error, Clock::Service, now - f.sent);
                    run.progress.inc(1);
                }
            }
            break;
        }
    }
    rec
}

pub fn outcome_of(resp: &Response) -> Outcome {
    match resp {
        Response::Meta(MetaReply::Value { .. }) => Outcome::Hit,
        Response::Meta(MetaReply::Status {
            code: Code::Miss, ..
        }) => Outcome::Miss,
        Response::Meta(MetaReply::Error(_)) => Outcome::Error,
        Response::Values(v) if v.is_empty() => Outcome::Miss,
        Response::Values(_) | Response::ValueE { .. } => Outcome::Hit,
        Response::Stored { .. } => Outcome::Stored,
        Response::NotStored => Outcome::NotStored,
        Response::Exists => Outcome::Exists,
        Response::NotFound => Outcome::NotFound,
        Response::Deleted => Outcome::Deleted,
        Response::Touched { .. } => Outcome::Touched,
        Response::Error(_) => Outcome::Error,
        _ => Outcome::Ok,
    }
}

struct Conn {
    write: Writer,
    out: BytesMut,
    /// Requests written and not yet answered: each holds a window slot, so
    /// there are at most `--pipeline` of them.
    tx: mpsc::Sender<InFlight>,
    pending: Vec<InFlight>,
}

async fn worker(run: Arc<Run>, index: usize) -> Result<Recorder, ToolError> {
    let opts = &run.opts;
    let c = &opts.common;
    let protocol = c.protocol();
    let mut rng = worker_rng(c.seed, index);
    let mut keys =
        KeyGen::new(c.key_space, c.key_dist, c.key_length as usize).map_err(ToolError::Usage)?;
    let window = Arc::new(Semaphore::new(c.pipeline as usize));
    let cas_seen: Arc<Mutex<HashMap<Bytes, u64>>> = Arc::default();
    let max_value = c.value_size.max();
    let pattern = Bytes::from(
        (0..max_value.max(64))
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let (mut conns, readers) = connect_all(&run, &window, &cas_seen, max_value).await?;

    // Open loop: this worker's share of the rate, on a fixed schedule.
    let interval = opts
        .rate
        .map(|r| Duration::from_secs_f64(c.workers as f64 / r.max(1e-9)));
    let mut next_send = run.start;

    loop {
        let now = Instant::now();
        if run.finished(now) {
            break;
        }
        let intended = match interval {
            Some(i) => {
                let due = next_send;
                next_send += i;
                if due > now {
                    flush_all(&mut conns).await?;
                    tokio::time::sleep_until(due.into()).await;
                }
                Some(due)
            }
            None => None,
        };
        let Some(counted) = take_slot(&run, &window, &mut conns).await? else {
            break;
        };
        let op = opts.mix.sample(&mut rng);
        let builder = Builder {
            opts,
            pattern: &pattern,
            cas_seen: &cas_seen,
            continuum: &run.continuum,
            protocol,
        };
        let (server, req) = build(builder, op, &mut keys, &mut rng);
        let conn = &mut conns[server];
        encode(&req, &mut conn.out);
        conn.pending.push(InFlight {
            req,
            op,
            sent: Instant::now(),
            intended,
            counted,
        });
        if conn.out.len() >= 64 * 1024 || interval.is_some() {
            flush(conn).await?;
        }
    }
    flush_all(&mut conns).await?;
    drop(conns);
    let mut rec = Recorder::new(run.measure_from);
    for r in readers {
        match r.await {
            Ok(r) => rec.merge(&r),
            Err(e) => return Err(ToolError::Internal(format!("reader failed: {e}"))),
        }
    }
    Ok(rec)
}

/// One connection to each server, each with its reply reader's task.
async fn connect_all(
    run: &Arc<Run>,
    window: &Arc<Semaphore>,
    cas_seen: &Arc<Mutex<HashMap<Bytes, u64>>>,
    max_value: usize,
) -> Result<(Vec<Conn>, Vec<tokio::task::JoinHandle<Recorder>>), ToolError> {
    let c = &run.opts.common;
    let mut conns = Vec::new();
    let mut readers = Vec::new();
    for server in &c.servers {
        let (r, w) = connect(&server.addr)
            .await
            .map_err(|e| ToolError::Connect(server.to_string(), e))?;
        let (tx, rx) = mpsc::channel(c.pipeline.max(1) as usize);
        readers.push(tokio::spawn(read_loop(
            ReplyReader::new(r, max_value + 64 * 1024),
            rx,
            window.clone(),
            cas_seen.clone(),
            run.clone(),
        )));
        conns.push(Conn {
            write: w,
            out: BytesMut::with_capacity(64 * 1024),
            tx,
            pending: Vec::new(),
        });
    }
    Ok((conns, readers))
}

/// A window slot for the next request; when none is free, what is batched
/// is sent first. `Some(counted)`: whether the request counts (it is past
/// the warmup); `None`: the run is over (the window closed, or the last
/// counted request was issued).
async fn take_slot(
    run: &Run,
    window: &Arc<Semaphore>,
    conns: &mut [Conn],
) -> Result<Option<bool>, ToolError> {
    let permit = match window.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(tokio::sync::TryAcquireError::Closed) => return Ok(None),
        Err(tokio::sync::TryAcquireError::NoPermits) => {
            flush_all(conns).await?;
            match window.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return Ok(None),
            }
        }
    };
    permit.forget();
    let counted = !Instant::now().lt(&run.measure_from);
    if counted {
        let n = run.issued.fetch_add(1, Ordering::Relaxed);
        if let Some(max) = run.opts.num_ops {
            if n >= max {
                window.add_permits(1);
                return Ok(None);
            }
        }
    }
    Ok(Some(counted))
}

async fn flush_all(conns: &mut [Conn]) -> Result<(), ToolError> {
    for c in conns.iter_mut() {
        flush(c).await?;
    }
    Ok(())
}

/// Hand the batch to the reader, then write it. A write error is left for
/// the reader to find (it sees the connection close) so it is counted once.
async fn flush(conn: &mut Conn) -> Result<(), ToolError> {
    if conn.out.is_empty() {
        return Ok(());
    }
    let sent = Instant::now();
    for mut f in conn.pending.drain(..) {
        f.sent = sent;
        let _ = conn.tx.send(f).await;
    }
    let _ = conn.write.write_all(&conn.out).await;
    conn.out.clear();
    Ok(())
}

/// What a worker builds its requests from.
#[derive(Clone, Copy)]
struct Builder<'a> {
    opts: &'a BlastOptions,
    /// The bytes values are cut from.
    pattern: &'a Bytes,
    /// The cas last seen per key, for cas requests.
    cas_seen: &'a Mutex<HashMap<Bytes, u64>>,
    continuum: &'a Continuum,
    protocol: super::client::Protocol,
}

impl Builder<'_> {
    /// A multi-get's keys: binary gets carry one key; text multi-gets go to
    /// the first key's server, with the other keys drawn from that server.
    fn multiget_keys(
        &self,
        first: Bytes,
        server: usize,
        keys: &mut KeyGen,
        rng: &mut impl Rng,
    ) -> Vec<Bytes> {
        let mut batch = vec![first];
        if self.protocol == super::client::Protocol::Text {
            let multiget = self.opts.multiget;
            let mut tries = 0;
            while batch.len() < multiget && tries < multiget * 16 {
                tries += 1;
                let k = keys.next_key(rng);
                if self.continuum.server_for(&k) == server {
                    batch.push(k);
                }
            }
        }
        batch
    }

    /// An incr or decr of `key`'s counter, and the server it goes to.
    /// Counters live in their own key space so sets of text values do not
    /// make every incr fail.
    fn counter(&self, key: Bytes, incr: bool) -> (usize, Request) {
        let mut counter = key.to_vec();
        counter[0] = b'#';
        let counter = Bytes::from(counter);
        let server = self.continuum.server_for(&counter);
        let cmd = Command::Arith {
            key: counter,
            incr,
            delta: 1,
            create: (self.protocol == super::client::Protocol::Binary).then_some((0, 0)),
        };
        let frame = frame_for(self.protocol, &cmd, false);
        (server, Request { cmd, frame })
    }
}

/// The request for one sampled operation, and the server it goes to.
fn build(builder: Builder<'_>, op: Op, keys: &mut KeyGen, rng: &mut impl Rng) -> (usize, Request) {
    let Builder {
        opts,
        pattern,
        cas_seen,
        continuum,
        protocol,
    } = builder;
    let c = &opts.common;
    let key = keys.next_key(rng);
    let server = continuum.server_for(&key);
    let value = |len: usize| pattern.slice(..len.min(pattern.len()));
    let store = |mode, key: Bytes, value: Bytes, cas| Command::Store {
        mode,
        key,
        flags: 0,
        exptime: opts.exptime,
        cas,
        value,
    };
    let mut with_cas = false;
    let cmd = match op {
        Op::Set => store(StoreMode::Set, key, value(c.value_size.sample(rng)), 0),
        Op::Add => store(StoreMode::Add, key, value(c.value_size.sample(rng)), 0),
        Op::Replace => store(StoreMode::Replace, key, value(c.value_size.sample(rng)), 0),
        Op::Append => store(
            StoreMode::Append,
            key,
            pattern.slice(..8.min(pattern.len())),
            0,
        ),
        Op::Prepend => store(
            StoreMode::Prepend,
            key,
            pattern.slice(..8.min(pattern.len())),
            0,
        ),
        Op::Cas => {
            let cas = cas_seen
                .lock()
                .ok()
                .and_then(|m| m.get(&key).copied())
                .unwrap_or(1);
            store(StoreMode::Cas, key, value(c.value_size.sample(rng)), cas)
        }
        Op::Get => Command::Get {
            keys: vec![key],
            touch: None,
        },
        Op::Gets => {
            with_cas = true;
            Command::Get {
                keys: vec![key],
                touch: None,
            }
        }
        Op::Gat => Command::Get {
            keys: vec![key],
            touch: Some(opts.exptime),
        },
        Op::MultiGet => Command::Get {
            keys: builder.multiget_keys(key, server, keys, rng),
            touch: None,
        },
        Op::Incr | Op::Decr => return builder.counter(key, op == Op::Incr),
        Op::Delete => Command::Delete { key, cas: 0 },
        Op::Touch => Command::Touch {
            key,
            exptime: opts.exptime,
        },
        Op::MetaGet => Command::Meta(Arc::new(meta_get(key))),
    };
    let frame = frame_for(protocol, &cmd, with_cas);
    (server, Request { cmd, frame })
}
