//! Request figures for Prometheus, kept where requests are answered: per
//! listener (what clients asked and got) and per tier (what rend asked L1
//! and L2). Every figure is a plain atomic in a fixed array indexed by
//! command and outcome, so recording one request is a few relaxed adds: no
//! lock, no label hashing, no allocation.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::protocol::meta::{Code, MetaReply, Verb};
use crate::protocol::{Command, ErrorReply, Response, StoreMode};

/// The `command` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Get,
    Gat,
    GetE,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Touch,
    Incr,
    Decr,
    Flush,
    Stats,
    Version,
    Verbosity,
    Noop,
    Quit,
    /// memcached's admin and inspection commands (`cache_memlimit`, `slabs`,
    /// `lru`, `lru_crawler`), relayed to L1.
    Admin,
    /// The meta commands: `mg`, `ms`, `md`, `ma`, `mn`, `me`.
    MetaGet,
    MetaSet,
    MetaDelete,
    MetaArith,
    MetaNoop,
    MetaDebug,
    /// Refused while decoding (unknown command, bad line, value too large).
    Invalid,
}

impl Cmd {
    pub const ALL: [Cmd; 27] = [
        Cmd::Get,
        Cmd::Gat,
        Cmd::GetE,
        Cmd::Set,
        Cmd::Add,
        Cmd::Replace,
        Cmd::Append,
        Cmd::Prepend,
        Cmd::Cas,
        Cmd::Delete,
        Cmd::Touch,
        Cmd::Incr,
        Cmd::Decr,
        Cmd::Flush,
        Cmd::Stats,
        Cmd::Version,
        Cmd::Verbosity,
        Cmd::Noop,
        Cmd::Quit,
        Cmd::Admin,
        Cmd::MetaGet,
        Cmd::MetaSet,
        Cmd::MetaDelete,
        Cmd::MetaArith,
        Cmd::MetaNoop,
        Cmd::MetaDebug,
        Cmd::Invalid,
    ];
    pub const COUNT: usize = Cmd::ALL.len();

    pub fn label(self) -> &'static str {
        match self {
            Cmd::Get => "get",
            Cmd::Gat => "gat",
            Cmd::GetE => "gete",
            Cmd::Set => "set",
            Cmd::Add => "add",
            Cmd::Replace => "replace",
            Cmd::Append => "append",
            Cmd::Prepend => "prepend",
            Cmd::Cas => "cas",
            Cmd::Delete => "delete",
            Cmd::Touch => "touch",
            Cmd::Incr => "incr",
            Cmd::Decr => "decr",
            Cmd::Flush => "flush",
            Cmd::Stats => "stats",
            Cmd::Version => "version",
            Cmd::Verbosity => "verbosity",
            Cmd::Noop => "noop",
            Cmd::Quit => "quit",
            Cmd::Admin => "admin",
            Cmd::MetaGet => "mg",
            Cmd::MetaSet => "ms",
            Cmd::MetaDelete => "md",
            Cmd::MetaArith => "ma",
            Cmd::MetaNoop => "mn",
            Cmd::MetaDebug => "me",
            Cmd::Invalid => "invalid",
        }
    }

    pub fn of(cmd: &Command) -> Cmd {
        match cmd {
            Command::Get { touch: None, .. } => Cmd::Get,
            Command::Get { touch: Some(_), .. } => Cmd::Gat,
            Command::GetE { .. } => Cmd::GetE,
            Command::Store { mode, .. } => match mode {
                StoreMode::Set => Cmd::Set,
                StoreMode::Add => Cmd::Add,
                StoreMode::Replace => Cmd::Replace,
                StoreMode::Append => Cmd::Append,
                StoreMode::Prepend => Cmd::Prepend,
                StoreMode::Cas => Cmd::Cas,
            },
            Command::Delete { .. } => Cmd::Delete,
            Command::Touch { .. } => Cmd::Touch,
            Command::Arith { incr: true, .. } => Cmd::Incr,
            Command::Arith { incr: false, .. } => Cmd::Decr,
            Command::Flush { .. } => Cmd::Flush,
            Command::Stats { .. } => Cmd::Stats,
            Command::Version => Cmd::Version,
            Command::Verbosity { .. } => Cmd::Verbosity,
            Command::Noop => Cmd::Noop,
            Command::Quit => Cmd::Quit,
            // A text `stats <group>` reaches L1 as an admin line.
            Command::Admin { line, .. } if line.starts_with(b"stats") => Cmd::Stats,
            Command::Admin { .. } => Cmd::Admin,
            Command::Meta(m) => match m.verb {
                Verb::Get => Cmd::MetaGet,
                Verb::Set => Cmd::MetaSet,
                Verb::Delete => Cmd::MetaDelete,
                Verb::Arith => Cmd::MetaArith,
                Verb::Noop => Cmd::MetaNoop,
                Verb::Debug => Cmd::MetaDebug,
            },
            Command::Invalid(_) => Cmd::Invalid,
        }
    }
}

/// The `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A get that found every key; a delete, touch, incr/decr or gete that
    /// found its key.
    Hit,
    /// A get that missed at least one key; anything else answered NOT_FOUND.
    Miss,
    Stored,
    NotStored,
    Exists,
    /// flush_all, version, stats, noop, verbosity, quit.
    Ok,
    /// The client's mistake: unknown command, bad format, value too large,
    /// incr of a non-number.
    ClientError,
    /// A server or tier failure (SERVER_ERROR, out of memory, a tier that
    /// could not answer).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Stored,
        Outcome::NotStored,
        Outcome::Exists,
        Outcome::Ok,
        Outcome::ClientError,
        Outcome::Error,
    ];
    pub const COUNT: usize = Outcome::ALL.len();

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stored => "stored",
            Outcome::NotStored => "not_stored",
            Outcome::Exists => "exists",
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::Error => "error",
        }
    }

    /// What a reply that does not say its command means for `cmd`: an
    /// `ms`'s `HD` is a store.
    pub fn for_cmd(self, cmd: Cmd) -> Outcome {
        match (cmd, self) {
            (Cmd::MetaSet, Outcome::Hit) => Outcome::Stored,
            (_, outcome) => outcome,
        }
    }

    /// The outcome of `resp`, the answer to a request naming `keys` keys.
    pub fn of(resp: &Response, keys: usize) -> Outcome {
        match resp {
            Response::Values(v) if v.len() >= keys => Outcome::Hit,
            Response::Values(_) | Response::NotFound => Outcome::Miss,
            Response::ValueE { .. }
            | Response::Deleted
            | Response::Touched { .. }
            | Response::Numeric { .. } => Outcome::Hit,
            Response::Stored { .. } => Outcome::Stored,
            Response::NotStored => Outcome::NotStored,
            Response::Exists => Outcome::Exists,
            Response::Ok | Response::Version(_) | Response::Stats(_) | Response::Nothing => {
                Outcome::Ok
            }
            Response::Meta(reply) => match reply {
                MetaReply::Value { .. } => Outcome::Hit,
                MetaReply::Status { code, .. } => match code {
                    Code::Miss | Code::NotFound => Outcome::Miss,
                    Code::NotStored => Outcome::NotStored,
                    Code::Exists => Outcome::Exists,
                    // Found and done (an `ms`'s is `Stored`: see
                    // [`Outcome::for_cmd`]).
                    Code::Header => Outcome::Hit,
                },
                MetaReply::Noop | MetaReply::Debug { .. } => Outcome::Ok,
                MetaReply::Error(text) => Outcome::of(&Response::Raw(text.clone()), keys),
            },
            // memcached's own words: its refusals of the client's line, its
            // failures, or an answer.
            Response::Raw(text) => {
                if text.starts_with(b"ERROR") || text.starts_with(b"CLIENT_ERROR") {
                    Outcome::ClientError
                } else if text.starts_with(b"SERVER_ERROR") {
                    Outcome::Error
                } else {
                    Outcome::Ok
                }
            }
            Response::Error(e) => match e {
                ErrorReply::UnknownCommand
                | ErrorReply::Client(_)
                | ErrorReply::TooLarge
                | ErrorReply::BadDataChunk
                | ErrorReply::NonNumeric => Outcome::ClientError,
                ErrorReply::OutOfMemory | ErrorReply::Server(_) | ErrorReply::Status(..) => {
                    Outcome::Error
                }
            },
        }
    }
}

/// One answered request, classified once for both `stats`' counters and
/// the Prometheus families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub cmd: Cmd,
    pub outcome: Outcome,
    /// Keys a get names (0 for anything else), and how many were found.
    pub keys: usize,
    pub hits: usize,
    /// memcached's `SERVER_ERROR …` reply (a tier's failure).
    pub server_error: bool,
}

impl Classified {
    pub fn of(cmd: &Command, resp: &Response) -> Classified {
        let shape = Shape::of(cmd);
        let hits = match resp {
            Response::Values(v) => v.len().min(shape.keys),
            _ => 0,
        };
        Classified {
            cmd: shape.cmd,
            outcome: Outcome::of(resp, shape.keys).for_cmd(shape.cmd),
            keys: shape.keys,
            hits,
            server_error: matches!(resp, Response::Error(ErrorReply::Server(_))),
        }
    }
}

/// What a request's figures need of it, taken before the request moves on
/// (so nothing is cloned to count it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub cmd: Cmd,
    /// Keys a get names (0 for anything else).
    pub keys: usize,
}

impl Shape {
    pub fn of(cmd: &Command) -> Shape {
        Shape {
            cmd: Cmd::of(cmd),
            keys: match cmd {
                Command::Get { keys, .. } => keys.len(),
                _ => 0,
            },
        }
    }
}

/// Finite bucket bounds: 5 µs doubling up to 10.49 s, then +Inf.
pub const BUCKETS: usize = 22;
const FIRST_BOUND_NS: u64 = 5_000;

/// The upper bound of finite bucket `i`, seconds.
pub fn bucket_bound(i: usize) -> f64 {
    (FIRST_BOUND_NS << i) as f64 / 1e9
}

/// A latency histogram of atomics: per-bucket counts (the last is +Inf)
/// and the sum in nanoseconds. The count is the buckets' total, so a
/// scrape never sees a count that disagrees with its buckets.
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS + 1],
    sum_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// The bucket of a latency: the first whose bound is at least `ns`.
fn bucket_of(ns: u64) -> usize {
    // Bound i is 5 µs · 2^i: the smallest i with 2^i >= ceil(ns / 5 µs).
    let q = ns.div_ceil(FIRST_BOUND_NS);
    if q <= 1 {
        0
    } else {
        ((64 - (q - 1).leading_zeros()) as usize).min(BUCKETS)
    }
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Sum (seconds), count, and per-bucket counts with their bounds (the
    /// encoder makes them cumulative).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let bound = if i < BUCKETS {
                    bucket_bound(i)
                } else {
                    f64::INFINITY
                };
                (bound, c.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Requests by command and outcome, latency by command, and the keys gets
/// named by hit or miss.
pub struct OpMetrics {
    counts: [[AtomicU64; Outcome::COUNT]; Cmd::COUNT],
    latency: [LatencyHistogram; Cmd::COUNT],
    /// Keys named by get and gat: [hits, misses].
    keys: [AtomicU64; 2],
}

impl Default for OpMetrics {
    fn default() -> Self {
        OpMetrics {
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| LatencyHistogram::default()),
            keys: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl OpMetrics {
    /// One answered request.
    pub fn record(&self, c: &Classified, elapsed: Duration) {
        self.count(c.cmd, c.outcome, elapsed);
        if c.keys > 0 && matches!(c.outcome, Outcome::Hit | Outcome::Miss) {
            self.keys[0].fetch_add(c.hits as u64, Ordering::Relaxed);
            self.keys[1].fetch_add((c.keys - c.hits) as u64, Ordering::Relaxed);
        }
    }

    /// One request or tier call, by its shape: `None` when the tier could
    /// not answer, an error.
    pub fn record_shape(&self, shape: Shape, result: Option<&Response>, elapsed: Duration) {
        let outcome = match result {
            Some(resp) => Outcome::of(resp, shape.keys).for_cmd(shape.cmd),
            None => Outcome::Error,
        };
        self.count(shape.cmd, outcome, elapsed);
        if let Some(Response::Values(v)) = result {
            if shape.keys > 0 {
                let hits = v.len().min(shape.keys);
                self.keys[0].fetch_add(hits as u64, Ordering::Relaxed);
                self.keys[1].fetch_add((shape.keys - hits) as u64, Ordering::Relaxed);
            }
        }
    }

    /// A multi-get answered in pieces, counted once: `keys` named, `hits`
    /// found, or `failed` part way.
    pub fn record_get(
        &self,
        touch: bool,
        keys: usize,
        hits: usize,
        failed: bool,
        elapsed: Duration,
    ) {
        let cmd = if touch { Cmd::Gat } else { Cmd::Get };
        let outcome = match (failed, hits >= keys) {
            (true, _) => Outcome::Error,
            (false, true) => Outcome::Hit,
            (false, false) => Outcome::Miss,
        };
        self.count(cmd, outcome, elapsed);
        if !failed {
            self.keys[0].fetch_add(hits as u64, Ordering::Relaxed);
            self.keys[1].fetch_add((keys - hits.min(keys)) as u64, Ordering::Relaxed);
        }
    }

    fn count(&self, cmd: Cmd, outcome: Outcome, elapsed: Duration) {
        self.counts[cmd as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.latency[cmd as usize].observe(elapsed);
    }

    pub fn requests(&self, cmd: Cmd, outcome: Outcome) -> u64 {
        self.counts[cmd as usize][outcome as usize].load(Ordering::Relaxed)
    }

    pub fn latency(&self, cmd: Cmd) -> &LatencyHistogram {
        &self.latency[cmd as usize]
    }

    /// Keys named by gets: (hits, misses).
    pub fn get_keys(&self) -> (u64, u64) {
        (
            self.keys[0].load(Ordering::Relaxed),
            self.keys[1].load(Ordering::Relaxed),
        )
    }
}

/// One client listener's figures (`listener` label: main, batch).
pub struct ListenerMetrics {
    pub name: &'static str,
    pub ops: OpMetrics,
    /// Whether this listener serves (the batch port may not).
    serving: AtomicBool,
    current: AtomicI64,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

impl ListenerMetrics {
    pub fn new(name: &'static str) -> ListenerMetrics {
        ListenerMetrics {
            name,
            ops: OpMetrics::default(),
            serving: AtomicBool::new(false),
            current: AtomicI64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    pub fn serving(&self) {
        self.serving.store(true, Ordering::Relaxed);
    }

    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    pub fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed(&self) {
        self.current.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// (current, accepted, rejected).
    pub fn connections(&self) -> (i64, u64, u64) {
        (
            self.current.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

/// One tier's figures (`tier` label: l1, l2).
pub struct TierMetrics {
    pub name: &'static str,
    pub ops: OpMetrics,
    inflight: AtomicI64,
}

impl TierMetrics {
    pub fn new(name: &'static str) -> TierMetrics {
        TierMetrics {
            name,
            ops: OpMetrics::default(),
            inflight: AtomicI64::new(0),
        }
    }

    /// Calls started and not yet answered (or dropped).
    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn started(&self, n: i64) {
        self.inflight.fetch_add(n, Ordering::Relaxed);
    }

    pub fn ended(&self, n: i64) {
        self.inflight.fetch_sub(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn buckets_hold_their_bounds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(5_000), 0);
        assert_eq!(bucket_of(5_001), 1);
        assert_eq!(bucket_of(10_000), 1);
        assert_eq!(bucket_of(10_001), 2);
        assert_eq!(bucket_of(20_000), 2);
        for i in 0..BUCKETS {
            let bound = FIRST_BOUND_NS << i;
            assert_eq!(bucket_of(bound), i, "at bound {i}");
            assert_eq!(bucket_of(bound + 1), i + 1, "past bound {i}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS);
        assert!((bucket_bound(0) - 5e-6).abs() < 1e-12);
        assert!((bucket_bound(BUCKETS - 1) - 10.48576).abs() < 1e-9);
    }

    #[test]
    fn histogram_counts_and_sums() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(3));
        h.observe(Duration::from_micros(7));
        h.observe(Duration::from_secs(60));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(h.count(), 3);
        assert!((sum - 60.00001).abs() < 1e-9);
        assert_eq!(buckets.len(), BUCKETS + 1);
        assert_eq!((buckets[0].1, buckets[1].1, buckets[BUCKETS].1), (1, 1, 1));
        assert!(buckets[BUCKETS].0.is_infinite());
    }

    #[test]
    fn outcomes() {
        let v = |k: &'static str| crate::protocol::Value {
            key: Bytes::from_static(k.as_bytes()),
            flags: 0,
            cas: 1,
            data: Bytes::new(),
        };
        assert_eq!(
            Outcome::of(&Response::Values(vec![v("a")]), 1),
            Outcome::Hit
        );
        assert_eq!(
            Outcome::of(&Response::Values(vec![v("a")]), 2),
            Outcome::Miss
        );
        assert_eq!(Outcome::of(&Response::Values(vec![]), 1), Outcome::Miss);
        assert_eq!(Outcome::of(&Response::NotFound, 0), Outcome::Miss);
        assert_eq!(Outcome::of(&Response::Deleted, 0), Outcome::Hit);
        assert_eq!(Outcome::of(&Response::NotStored, 0), Outcome::NotStored);
        assert_eq!(
            Outcome::of(&Response::Error(ErrorReply::NonNumeric), 0),
            Outcome::ClientError
        );
        assert_eq!(
            Outcome::of(&Response::Error(ErrorReply::OutOfMemory), 0),
            Outcome::Error
        );
        for (i, c) in Cmd::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }

    #[test]
    fn multi_get_counts_keys() {
        let m = OpMetrics::default();
        let get = Command::Get {
            keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            touch: None,
        };
        let one = Response::Values(vec![crate::protocol::Value {
            key: Bytes::from_static(b"a"),
            flags: 0,
            cas: 1,
            data: Bytes::new(),
        }]);
        m.record(&Classified::of(&get, &one), Duration::from_micros(1));
        m.record_shape(Shape::of(&get), None, Duration::from_micros(1));
        assert_eq!(m.requests(Cmd::Get, Outcome::Miss), 1);
        assert_eq!(m.requests(Cmd::Get, Outcome::Error), 1);
        assert_eq!(m.get_keys(), (1, 1));
        assert_eq!(m.latency(Cmd::Get).count(), 2);
    }
}
