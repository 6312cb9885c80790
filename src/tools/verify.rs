//! `setget` and `sizes`: write self-verifying values, read them back, check
//! every byte and the flags.
//!
//! Values are derived from the seed and the key (`workload::value_for`), so
//! a reader knows what it must get without remembering what it wrote.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::args::Common;
use super::client::{frame_for, Connection, Protocol};
use super::ketama::Continuum;
use super::report::{Clock, Outcome, Progress, Recorder};
use super::workload::{flags_for, len_for, value_for, verify, KeyGen};
use super::ToolError;
use crate::protocol::{Command, ErrorReply, Request, Response, StoreMode};

/// What a verification run found.
#[derive(Debug, Default)]
pub struct Findings {
    pub checked: u64,
    pub mismatches: u64,
    pub misses: u64,
    pub errors: u64,
    /// The first few problems, for the report.
    pub examples: Vec<String>,
}

impl Findings {
    const EXAMPLES: usize = 10;

    fn note(&mut self, what: String) {
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push(what);
        }
    }

    pub fn ok(&self) -> bool {
        self.mismatches == 0 && self.misses == 0 && self.errors == 0
    }

    fn merge(&mut self, other: Findings) {
        self.checked += other.checked;
        self.mismatches += other.mismatches;
        self.misses += other.misses;
        self.errors += other.errors;
        for e in other.examples {
            self.note(e);
        }
    }

    pub fn print(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        writeln!(
            out,
            "checked {}  mismatches {}  misses {}  errors {}",
            self.checked, self.mismatches, self.misses, self.errors
        )?;
        for e in &self.examples {
            writeln!(out, "  {e}")?;
        }
        Ok(())
    }
}

fn set_request(protocol: Protocol, key: Bytes, flags: u32, value: Bytes) -> Request {
    let cmd = Command::Store {
        mode: StoreMode::Set,
        key,
        flags,
        exptime: 0,
        cas: 0,
        value,
    };
    let frame = frame_for(protocol, &cmd, false);
    Request { cmd, frame }
}

fn get_request(protocol: Protocol, key: Bytes) -> Request {
    let cmd = Command::Get {
        keys: vec![key],
        touch: None,
    };
    let frame = frame_for(protocol, &cmd, false);
    Request { cmd, frame }
}

fn show_key(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Check one get reply against what `key` must hold.
fn check(
    seed: u64,
    key: &[u8],
    expected_len: Option<usize>,
    reply: &Response,
    found: &mut Findings,
) -> Outcome {
    found.checked += 1;
    match reply {
        Response::Values(values) if values.is_empty() => {
            found.misses += 1;
            found.note(format!("miss: {}", show_key(key)));
            Outcome::Miss
        }
        Response::Values(values) => {
            let v = &values[0];
            let len_ok = expected_len.is_none_or(|n| n == v.data.len());
            match (len_ok, verify(seed, key, v.flags, &v.data)) {
                (true, Ok(())) => Outcome::Hit,
                (false, _) => {
                    found.mismatches += 1;
                    found.note(format!(
                        "length mismatch: {}: got {} bytes, want {}",
                        show_key(key),
                        v.data.len(),
                        expected_len.unwrap_or(0)
                    ));
                    Outcome::Error
                }
                (_, Err(m)) => {
                    found.mismatches += 1;
                    found.note(format!("mismatch: {}: {m:?}", show_key(key)));
                    Outcome::Error
                }
            }
        }
        other => {
            found.errors += 1;
            found.note(format!("error: {}: {other:?}", show_key(key)));
            Outcome::Error
        }
    }
}

/// How many set+get pairs `setget` makes: `-n`, or one per key of the key
/// space. Pair `i` uses key `i % key_space`.
pub fn setget_pairs(common: &Common) -> u64 {
    common.num_ops.unwrap_or(common.key_space)
}

/// `setget`: `-n` keys are set (sizes from --value-size), then read back and
/// verified; past the key space, keys repeat with the same value.
pub async fn setget(common: &Common) -> Result<(Findings, Recorder), ToolError> {
    let names = common.server_names();
    let continuum = Arc::new(Continuum::new(&names));
    let start = Instant::now();
    let total = setget_pairs(common);
    let progress = Arc::new(Progress::new(Some(total * 2), None));
    let mut tasks = Vec::new();
    for w in 0..common.workers {
        let common = common.clone();
        let continuum = continuum.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            setget_worker(&common, w, &continuum, &progress, start).await
        }));
    }
    let mut found = Findings::default();
    let mut rec = Recorder::new(start);
    for t in tasks {
        let (f, r) = t
            .await
            .map_err(|e| ToolError::Internal(format!("worker failed: {e}")))??;
        found.merge(f);
        rec.merge(&r);
    }
    progress.finish();
    Ok((found, rec))
}

async fn setget_worker(
    common: &Common,
    worker: u64,
    continuum: &Continuum,
    progress: &Progress,
    start: Instant,
) -> Result<(Findings, Recorder), ToolError> {
    let protocol = common.protocol();
    let keys = KeyGen::new(
        common.key_space,
        super::workload::KeyDist::Sequential,
        common.key_length as usize,
    )
    .map_err(ToolError::Usage)?;
    let mut conns = open_all(common).await?;
    let mut rec = Recorder::new(start);
    let mut found = Findings::default();
    let mine: Vec<u64> = (worker..setget_pairs(common))
        .step_by(common.workers as usize)
        .map(|i| i % common.key_space)
        .collect();
    let depth = common.pipeline as usize;
    for phase_set in [true, false] {
        for batch in mine.chunks(depth) {
            let mut order = Vec::with_capacity(batch.len());
            for &i in batch {
                let key = keys.key(i);
                let server = continuum.server_for(&key);
                conns[server].queue(setget_request(common, protocol, &key, phase_set));
                order.push((server, key));
            }
            let sent = Instant::now();
            for c in conns.iter_mut() {
                c.flush().await?;
            }
            for (server, key) in order {
                let Some((_, reply)) = conns[server].reply().await else {
                    continue;
                };
                let reply =
                    reply.map_err(|e| ToolError::Io(format!("{}: {e}", common.servers[server])))?;
                let latency = sent.elapsed();
                let outcome = if phase_set {
                    check_stored(&key, reply, &mut found)
                } else {
                    let want = len_for(common.seed, &key, &common.value_size);
                    check(common.seed, &key, Some(want), &reply, &mut found)
                };
                rec.record(
                    if phase_set { "set" } else { "get" },
                    outcome,
                    Clock::Service,
                    latency,
                );
                progress.inc(1);
            }
        }
    }
    Ok((found, rec))
}

/// One connection to each server.
async fn open_all(common: &Common) -> Result<Vec<Connection>, ToolError> {
    let mut conns = Vec::new();
    let max_body = common.value_size.max() + 64 * 1024;
    for s in &common.servers {
        conns.push(
            Connection::open(&s.addr, max_body)
                .await
                .map_err(|e| ToolError::Connect(s.to_string(), e))?,
        );
    }
    Ok(conns)
}

/// `key`'s request in the set phase (its self-verifying value) or the get
/// phase.
fn setget_request(common: &Common, protocol: Protocol, key: &Bytes, phase_set: bool) -> Request {
    if phase_set {
        let len = len_for(common.seed, key, &common.value_size);
        set_request(
            protocol,
            key.clone(),
            flags_for(common.seed, key),
            value_for(common.seed, key, len),
        )
    } else {
        get_request(protocol, key.clone())
    }
}

/// Check one set reply.
fn check_stored(key: &[u8], reply: Response, found: &mut Findings) -> Outcome {
    match reply {
        Response::Stored { .. } => Outcome::Stored,
        other => {
            found.errors += 1;
            found.note(format!("set failed: {}: {other:?}", show_key(key)));
            Outcome::Error
        }
    }
}

/// `sizes` options.
#[derive(Clone, Debug)]
pub struct SizesOptions {
    pub common: Common,
    /// Largest size tried.
    pub max_size: usize,
    /// Chunk data size to probe around (kC-1, kC, kC+1).
    pub chunk_size: Option<usize>,
    /// The server's item limit: sizes up to it must work, one past it must
    /// be refused as too large. Without it, sizes finds the limit.
    pub item_limit: Option<usize>,
}

/// The sizes to try, in increasing order, without duplicates.
pub fn sizes_to_try(opts: &SizesOptions) -> Vec<usize> {
    let max = opts.max_size;
    let mut sizes: Vec<usize> = (0..=max.min(64)).collect();
    let mut s = 64f64;
    while (s as usize) < max {
        s *= 1.25;
        sizes.push((s as usize).min(max));
    }
    if let Some(c) = opts.chunk_size.filter(|&c| c > 0) {
        let mut k = 1;
        while k * c <= max + 1 {
            sizes.extend([k * c - 1, k * c, k * c + 1]);
            k += 1;
            if k > 4096 {
                break;
            }
        }
    }
    if let Some(l) = opts.item_limit {
        sizes.extend([l.saturating_sub(1), l, l + 1]);
    }
    sizes.retain(|&n| n <= max + 1 || Some(n) == opts.item_limit.map(|l| l + 1));
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// The item limit `sizes` saw: the largest value the server stored and the
/// smallest it refused as too large (None: every size tried was stored), over
/// every size it tried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeenLimit {
    pub largest_stored: Option<usize>,
    pub smallest_refused: Option<usize>,
}

impl std::fmt::Display for SeenLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stored = self
            .largest_stored
            .map_or("none".to_string(), |n| format!("{n} bytes"));
        match self.smallest_refused {
            Some(r) => write!(
                f,
                "item limit: largest value stored {stored}, smallest refused {r} bytes"
            ),
            None => write!(f, "item limit not reached: largest value stored {stored}"),
        }
    }
}

/// What one set of size `n` came to.
enum Probe {
    /// Stored, then read back; `true` when it verified.
    Stored(bool),
    /// Refused as too large.
    Refused,
    /// Anything else (already noted in the findings).
    Failed,
}

/// The `sizes` run: one connection, the seed, the key length.
struct Sizer<'a> {
    conn: Connection,
    common: &'a Common,
    server: &'a super::args::Server,
    found: Findings,
    /// Every size stored or refused so far.
    seen: SeenLimit,
}

impl Sizer<'_> {
    async fn probe(&mut self, n: usize) -> Result<Probe, ToolError> {
        let c = self.common;
        let protocol = c.protocol();
        let key_len = (c.key_length as usize).max(12);
        let key = Bytes::from(format!(
            "{:0>width$}",
            format!("sizes:{n}"),
            width = key_len
        ));
        let server = self.server;
        let io = move |e: super::client::ClientError| ToolError::Io(format!("{server}: {e}"));
        let reply = self
            .conn
            .call(set_request(
                protocol,
                key.clone(),
                flags_for(c.seed, &key),
                value_for(c.seed, &key, n),
            ))
            .await
            .map_err(io)?;
        Ok(match reply {
            Response::Stored { .. } => {
                self.seen.largest_stored = self.seen.largest_stored.max(Some(n));
                let got = self
                    .conn
                    .call(get_request(protocol, key.clone()))
                    .await
                    .map_err(io)?;
                Probe::Stored(check(c.seed, &key, Some(n), &got, &mut self.found) == Outcome::Hit)
            }
            Response::Error(ErrorReply::TooLarge) => {
                self.seen.smallest_refused =
                    Some(self.seen.smallest_refused.map_or(n, |r| r.min(n)));
                Probe::Refused
            }
            other => {
                self.found.checked += 1;
                self.found.errors += 1;
                self.found.note(format!("size {n}: got {other:?}"));
                Probe::Failed
            }
        })
    }

    /// Whether size `n` passed: stored and verified below `refused_from`
    /// (an asserted or found limit, plus one), refused as too large at or past it.
    fn judge(&mut self, n: usize, probe: &Probe, refused_from: Option<usize>) -> bool {
        let want_refused = refused_from.is_some_and(|r| n >= r);
        match (probe, want_refused) {
            (Probe::Stored(ok), false) => *ok,
            (Probe::Refused, true) => {
                self.found.checked += 1;
                true
            }
            (Probe::Failed, _) => false,
            (Probe::Stored(_), true) => {
                self.found.errors += 1;
                self.found.note(format!("size {n}: stored, want too large"));
                false
            }
            (Probe::Refused, false) => {
                self.found.checked += 1;
                self.found.errors += 1;
                self.found
                    .note(format!("size {n}: refused as too large, want stored"));
                false
            }
        }
    }

    /// Between a stored size `lo` and a refused size `hi`, find where the
    /// limit is: returns (largest stored, smallest refused).
    async fn bisect(
        &mut self,
        mut lo: Option<usize>,
        mut hi: usize,
        first_failure: &mut Option<usize>,
    ) -> Result<(Option<usize>, usize), ToolError> {
        // The sizes still in doubt are lo+1 .. hi (all of 0 .. hi with no lo).
        let first_open = |lo: Option<usize>| lo.map_or(0, |l| l + 1);
        while first_open(lo) < hi {
            let mid = first_open(lo) + (hi - first_open(lo)) / 2;
            match self.probe(mid).await? {
                Probe::Stored(ok) => {
                    if !ok {
                        first_failure.get_or_insert(mid);
                    }
                    lo = Some(mid);
                }
                Probe::Refused => {
                    self.found.checked += 1;
                    hi = mid;
                }
                Probe::Failed => {
                    first_failure.get_or_insert(mid);
                    break;
                }
            }
        }
        Ok((lo, hi))
    }
}

/// What a `sizes` run found.
#[derive(Debug, Default)]
pub struct SizesReport {
    pub found: Findings,
    /// The first size that failed.
    pub first_failure: Option<usize>,
    pub limit: SeenLimit,
}

/// `sizes`: set then get each size, verifying every value, for `-n` rounds
/// (default 1). With `--item-limit`, sizes up to it must be stored and one
/// past it refused; without, the first size refused as too large starts a
/// bisection for the real limit, and every larger size must be refused too.
pub async fn sizes(opts: &SizesOptions) -> Result<SizesReport, ToolError> {
    let c = &opts.common;
    let server = c
        .servers
        .first()
        .ok_or_else(|| ToolError::Usage("no server".into()))?;
    let max_body = opts.max_size.max(opts.item_limit.unwrap_or(0)) + 64 * 1024;
    let conn = Connection::open(&server.addr, max_body)
        .await
        .map_err(|e| ToolError::Connect(server.to_string(), e))?;
    let mut sizer = Sizer {
        conn,
        common: c,
        server,
        found: Findings::default(),
        seen: SeenLimit::default(),
    };
    let mut first_failure = None;
    let list = sizes_to_try(opts);
    let rounds = c.num_ops.unwrap_or(1);
    let progress = Progress::new(Some(list.len() as u64 * rounds), None);
    for _ in 0..rounds {
        let mut refused_from = opts.item_limit.map(|l| l + 1);
        for &n in &list {
            let probe = sizer.probe(n).await?;
            let passed = match probe {
                Probe::Refused if refused_from.is_none() => {
                    let below = sizer.seen.largest_stored.filter(|&s| s < n);
                    let (_, hi) = sizer.bisect(below, n, &mut first_failure).await?;
                    refused_from = Some(hi);
                    sizer.found.checked += 1;
                    true
                }
                _ => sizer.judge(n, &probe, refused_from),
            };
            if !passed {
                first_failure.get_or_insert(n);
            }
            progress.inc(1);
        }
    }
    progress.finish();
    Ok(SizesReport {
        found: sizer.found,
        first_failure,
        limit: sizer.seen,
    })
}
