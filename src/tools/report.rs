//! What the load tools measure and how they show it: latency histograms per
//! command, outcome and clock, per-second rows, a summary table, CSV files,
//! a percentile plot, and a progress display while a run goes.
//!
//! Each worker owns a [`Recorder`] (no locks while requests fly); at the end
//! the runner merges them and asks for a [`Report`], which computes every
//! number once and then prints, writes CSV or draws from the same rows.
//!
//! Two clocks: [`Clock::Service`] is measured from when the request was
//! actually written; [`Clock::Intended`] (open-loop runs only) from when the
//! schedule meant to write it, so a stalled server is charged for the
//! requests that queued behind the stall (coordinated omission corrected).

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Latencies above this (60 s) are recorded as 60 s: a bound keeps every
/// histogram small, and a minute-long reply is a failure whatever its size.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// Significant digits of the run-wide histograms: values are exact below
/// 2048 µs and within 0.1 % above.
const SIGFIG: u8 = 3;

/// Significant digits of the per-second histograms: 1 % is plenty for a
/// time series, and they are four times smaller, which matters because there
/// is one per command per second per worker.
const SECOND_SIGFIG: u8 = 2;

/// The command name of the rows that sum every command.
pub const ALL: &str = "all";

/// Columns of `summary.csv`, in order.
pub const SUMMARY_HEADER: [&str; 11] = [
    "command",
    "outcome",
    "clock",
    "count",
    "rate_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "p9999_us",
    "max_us",
];

/// Columns of `timeseries.csv`, in order.
pub const TIMESERIES_HEADER: [&str; 7] = [
    "second", "command", "count", "errors", "p50_us", "p99_us", "max_us",
];

/// `summary.csv`, documented for the README (a Markdown table).
pub const SUMMARY_COLUMNS: &str = "\
`summary.csv` has one row per command, outcome and clock, then one `all` row per clock.

| column | meaning |
|---|---|
| `command` | the command (`get`, `set`, `gets`, `cas`, …), or `all` for every command together |
| `outcome` | `hit`, `miss`, `stored`, `not_stored`, `exists`, `not_found`, `deleted`, `touched`, `ok` (any other success) or `error`; `all` on `all` rows |
| `clock` | `service`: latency from when the request was written; `intended`: from when the open-loop schedule meant to write it (corrects coordinated omission; open-loop runs only) |
| `count` | responses |
| `rate_per_s` | `count` divided by the measured run time in seconds |
| `p50_us`, `p90_us`, `p99_us`, `p999_us`, `p9999_us` | latency percentiles 50, 90, 99, 99.9 and 99.99, in microseconds (HdrHistogram, 3 significant digits; the upper edge of the bucket, never above `max_us`) |
| `max_us` | the largest latency, in microseconds, exact (latencies are capped at 60 s) |
";

/// `timeseries.csv`, documented for the README (a Markdown table).
pub const TIMESERIES_COLUMNS: &str = "\
`timeseries.csv` has, for every second from 0 to the last, one row per command and then an `all` row.

| column | meaning |
|---|---|
| `second` | whole seconds since measurement began in which the responses arrived (the last second is partial) |
| `command` | the command, or `all` for every command together |
| `count` | responses that arrived in that second |
| `errors` | of those, responses with outcome `error` |
| `p50_us`, `p99_us` | that second's service latency percentiles, in microseconds (HdrHistogram, 2 significant digits); 0 when `count` is 0 |
| `max_us` | that second's largest service latency, in microseconds, exact; 0 when `count` is 0 |
";

/// How a request ended. A miss is an outcome, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Hit,
    Miss,
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    /// Any other success: an incr/decr result, `flush_all`, `version`, ….
    Ok,
    /// A server error reply, a timeout, a broken connection or a failed
    /// verification.
    Error,
}

impl Outcome {
    /// Every outcome, in report order.
    pub const ALL: [Outcome; 10] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Stored,
        Outcome::NotStored,
        Outcome::Exists,
        Outcome::NotFound,
        Outcome::Deleted,
        Outcome::Touched,
        Outcome::Ok,
        Outcome::Error,
    ];

    /// The name used in tables and CSV files.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stored => "stored",
            Outcome::NotStored => "not_stored",
            Outcome::Exists => "exists",
            Outcome::NotFound => "not_found",
            Outcome::Deleted => "deleted",
            Outcome::Touched => "touched",
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

/// Where a latency is measured from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Clock {
    /// From when the request was actually written. Every request needs one
    /// service record: counts, rates and the time series come from these.
    Service,
    /// From when an open-loop schedule meant to write it; recorded in
    /// addition to the service latency, only by open-loop runs.
    Intended,
}

impl Clock {
    /// Both clocks, in report order.
    pub const ALL: [Clock; 2] = [Clock::Service, Clock::Intended];

    /// The name used in tables and CSV files.
    pub fn name(self) -> &'static str {
        match self {
            Clock::Service => "service",
            Clock::Intended => "intended",
        }
    }
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{}: cannot draw the plot: {message}", path.display())]
    Plot { path: PathBuf, message: String },
    #[error("{}: the plot file must end in .svg or .png", path.display())]
    PlotExtension { path: PathBuf },
}

#[allow(
    clippy::expect_used,
    reason = "every caller passes a constant precision of 2 or 3, which hdrhistogram accepts"
)]
fn new_histogram<T: hdrhistogram::Counter>(sigfig: u8) -> Histogram<T> {
    // Auto-resizing, so a histogram costs only what its largest value needs
    // (a few tens of KiB for millisecond latencies) rather than the 60 s bound.
    Histogram::new(sigfig).expect("1 to 5 significant digits is a valid histogram precision")
}

/// Records `count` at `value`; auto-resizing makes this infallible in
/// practice, and the saturating fallback keeps it so without a panic.
fn record_n<T: hdrhistogram::Counter>(h: &mut Histogram<T>, value: u64, count: T) {
    if h.record_n(value, count).is_err() {
        h.saturating_record_n(value, count);
    }
}

fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // Same precision on both sides, so `add` only fails if resizing does;
    // re-recording bucket by bucket is the slow path that cannot.
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .min(MAX_LATENCY_US)
}

/// The latencies of one command, outcome and clock.
#[derive(Clone)]
struct Series {
    hist: Histogram<u64>,
    /// Exact, because the histogram only knows its bucket's upper edge.
    max_us: u64,
}

impl Series {
    fn new() -> Self {
        Series {
            hist: new_histogram(SIGFIG),
            max_us: 0,
        }
    }

    fn record(&mut self, us: u64) {
        record_n(&mut self.hist, us, 1);
        self.max_us = self.max_us.max(us);
    }

    fn add(&mut self, other: &Series) {
        add_histogram(&mut self.hist, &other.hist);
        self.max_us = self.max_us.max(other.max_us);
    }

    fn count(&self) -> u64 {
        self.hist.len()
    }
}

fn merge_into(slot: &mut Option<Series>, s: &Series) {
    match slot {
        Some(m) => m.add(s),
        None => *slot = Some(s.clone()),
    }
}

/// One finished second of one command at one worker, kept sparse (only the
/// buckets that were hit) so long runs with many workers stay small.
#[derive(Clone, Debug)]
struct SecondEntry {
    sec: u64,
    count: u64,
    errors: u64,
    max_us: u64,
    /// (bucket value in µs, count) at [`SECOND_SIGFIG`] precision.
    buckets: Vec<(u32, u32)>,
}

/// The second being recorded, dense so recording stays cheap.
struct SecondAccumulator {
    sec: u64,
    count: u64,
    errors: u64,
    max_us: u64,
    // u32 counts: one worker cannot answer four billion requests in a second.
    hist: Histogram<u32>,
}

impl SecondAccumulator {
    fn new() -> Self {
        SecondAccumulator {
            sec: 0,
            count: 0,
            errors: 0,
            max_us: 0,
            hist: new_histogram(SECOND_SIGFIG),
        }
    }

    fn record(&mut self, us: u64, error: bool) {
        record_n(&mut self.hist, us, 1);
        self.count += 1;
        self.errors += u64::from(error);
        self.max_us = self.max_us.max(us);
    }

    fn entry(&self) -> Option<SecondEntry> {
        if self.count == 0 {
            return None;
        }
        let buckets = self
            .hist
            .iter_recorded()
            .map(|v| {
                let value = u32::try_from(v.value_iterated_to()).unwrap_or(u32::MAX);
                (value, v.count_at_value())
            })
            .collect();
        Some(SecondEntry {
            sec: self.sec,
            count: self.count,
            errors: self.errors,
            max_us: self.max_us,
            buckets,
        })
    }

    fn reset(&mut self, sec: u64) {
        self.sec = sec;
        self.count = 0;
        self.errors = 0;
        self.max_us = 0;
        self.hist.reset();
    }
}

const SERIES_PER_COMMAND: usize = Outcome::ALL.len() * Clock::ALL.len();

fn series_index(outcome: Outcome, clock: Clock) -> usize {
    outcome as usize * Clock::ALL.len() + clock as usize
}

struct CommandStats {
    name: &'static str,
    /// Indexed by [`series_index`]: a direct index, not a map, on the hot path.
    series: [Option<Series>; SERIES_PER_COMMAND],
    current: SecondAccumulator,
    seconds: Vec<SecondEntry>,
}

impl CommandStats {
    fn new(name: &'static str) -> Self {
        CommandStats {
            name,
            series: std::array::from_fn(|_| None),
            current: SecondAccumulator::new(),
            seconds: Vec::new(),
        }
    }

    fn record_second(&mut self, sec: u64, us: u64, error: bool) {
        if sec != self.current.sec {
            // A worker's replies arrive in time order, so this runs once a
            // second; an older second (an out-of-order `record_at`) simply
            // becomes another entry for that second, summed in the report.
            if let Some(e) = self.current.entry() {
                self.seconds.push(e);
            }
            self.current.reset(sec);
        }
        self.current.record(us, error);
    }

    fn series(&self, outcome: Outcome, clock: Clock) -> Option<&Series> {
        self.series[series_index(outcome, clock)].as_ref()
    }
}

/// One worker's measurements. Merge the workers' recorders with
/// [`Recorder::merge`], then call [`Recorder::report`].
pub struct Recorder {
    start: Instant,
    /// The latest service completion seen: the run's end unless
    /// [`Recorder::set_end`] says otherwise.
    last: Option<Instant>,
    end: Option<Instant>,
    commands: Vec<CommandStats>,
}

impl Recorder {
    /// `start` is when measurement began; per-second rows count whole
    /// seconds from it, so every worker of a run must get the same one.
    pub fn new(start: Instant) -> Self {
        Recorder {
            start,
            last: None,
            end: None,
            commands: Vec::new(),
        }
    }

    /// When measurement began.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one latency. For [`Clock::Service`] it reads the clock to
    /// place the reply in its second; use [`Recorder::record_at`] when the
    /// caller has just read it.
    pub fn record(&mut self, cmd: &'static str, outcome: Outcome, clock: Clock, latency: Duration) {
        let done = match clock {
            Clock::Service => Instant::now(),
            // Not used for intended records: skip the clock read.
            Clock::Intended => self.start,
        };
        self.record_at(cmd, outcome, clock, latency, done);
    }

    /// Records one latency of a reply that arrived at `done`. Latencies
    /// above [`MAX_LATENCY_US`] are recorded as that bound.
    pub fn record_at(
        &mut self,
        cmd: &'static str,
        outcome: Outcome,
        clock: Clock,
        latency: Duration,
        done: Instant,
    ) {
        let us = micros(latency);
        let start = self.start;
        let stats = self.command(cmd);
        stats.series[series_index(outcome, clock)]
            .get_or_insert_with(Series::new)
            .record(us);
        if clock == Clock::Service {
            let sec = done.saturating_duration_since(start).as_secs();
            stats.record_second(sec, us, outcome == Outcome::Error);
            if self.last.is_none_or(|l| done > l) {
                self.last = Some(done);
            }
        }
    }

    fn command(&mut self, cmd: &'static str) -> &mut CommandStats {
        // A dozen commands at most: a linear scan beats hashing the name.
        let i = match self.commands.iter().position(|c| c.name == cmd) {
            Some(i) => i,
            None => {
                self.commands.push(CommandStats::new(cmd));
                self.commands.len() - 1
            }
        };
        &mut self.commands[i]
    }

    /// Adds another worker's measurements. Recorders should share `start`;
    /// if they do not, the other's seconds are shifted to this one's.
    pub fn merge(&mut self, other: &Recorder) {
        let shift = if other.start >= self.start {
            (other.start - self.start).as_secs_f64().round() as i64
        } else {
            -((self.start - other.start).as_secs_f64().round() as i64)
        };
        for theirs in &other.commands {
            let mine = self.command(theirs.name);
            for (m, t) in mine.series.iter_mut().zip(&theirs.series) {
                if let Some(t) = t {
                    merge_into(m, t);
                }
            }
            let entries = theirs.seconds.iter().cloned().chain(theirs.current.entry());
            mine.seconds.extend(entries.map(|mut e| {
                e.sec = e.sec.saturating_add_signed(shift);
                e
            }));
        }
        self.last = self.last.max(other.last);
        self.end = self.end.max(other.end);
    }

    /// Sets the end of the measured run (for rates); without it the run ends
    /// at the last service record.
    pub fn set_end(&mut self, end: Instant) {
        self.end = Some(end);
    }

    /// The measured run time: from `start` to [`Recorder::set_end`], or to
    /// the last service record.
    pub fn elapsed(&self) -> Duration {
        self.end.or(self.last).map_or(Duration::ZERO, |end| {
            end.saturating_duration_since(self.start)
        })
    }

    /// Requests recorded (service records of every command and outcome).
    pub fn requests(&self) -> u64 {
        self.count_service(|_| true)
    }

    /// Requests recorded with [`Outcome::Error`].
    pub fn errors(&self) -> u64 {
        self.count_service(|o| o == Outcome::Error)
    }

    fn count_service(&self, keep: impl Fn(Outcome) -> bool) -> u64 {
        let mut n = 0;
        for c in &self.commands {
            for o in Outcome::ALL.into_iter().filter(|&o| keep(o)) {
                n += c.series(o, Clock::Service).map_or(0, Series::count);
            }
        }
        n
    }

    /// Computes every row of the report.
    pub fn report(&self) -> Report {
        let elapsed = self.elapsed();
        let secs = elapsed.as_secs_f64();
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let mut commands: Vec<&CommandStats> = self.commands.iter().collect();
        commands.sort_by_key(|c| c.name);

        let mut rows = Vec::new();
        let mut curves = Vec::new();
        let mut totals: [Option<Series>; 2] = [None, None];
        for (color, c) in commands.iter().enumerate() {
            let mut per_clock: [Option<Series>; 2] = [None, None];
            for outcome in Outcome::ALL {
                for clock in Clock::ALL {
                    let Some(s) = c.series(outcome, clock).filter(|s| s.count() > 0) else {
                        continue;
                    };
                    rows.push(SummaryRow {
                        command: c.name,
                        outcome: Some(outcome),
                        clock,
                        count: s.count(),
                        rate_per_s: rate(s.count()),
                        latency: Percentiles::of(s),
                    });
                    merge_into(&mut per_clock[clock as usize], s);
                    merge_into(&mut totals[clock as usize], s);
                }
            }
            for (clock, s) in Clock::ALL.into_iter().zip(per_clock) {
                if let Some(series) = s {
                    curves.push(Curve {
                        command: c.name,
                        clock,
                        color,
                        series,
                    });
                }
            }
        }
        for (clock, s) in Clock::ALL.into_iter().zip(&totals) {
            if let Some(s) = s {
                rows.push(SummaryRow {
                    command: ALL,
                    outcome: None,
                    clock,
                    count: s.count(),
                    rate_per_s: rate(s.count()),
                    latency: Percentiles::of(s),
                });
            }
        }
        Report {
            elapsed,
            requests: self.requests(),
            errors: self.errors(),
            rows,
            seconds: timeseries(&commands),
            curves,
        }
    }
}

/// Per-second rows: every second from 0 to the last, for every command and
/// `all`, zero rows included (a second without replies is a stall worth
/// seeing).
fn timeseries(commands: &[&CommandStats]) -> Vec<SecondRow> {
    let pending: Vec<Option<SecondEntry>> = commands.iter().map(|c| c.current.entry()).collect();
    let per_command: Vec<Vec<&SecondEntry>> = commands
        .iter()
        .zip(&pending)
        .map(|(c, p)| {
            let mut v: Vec<&SecondEntry> = c.seconds.iter().chain(p).collect();
            v.sort_by_key(|e| e.sec);
            v
        })
        .collect();
    let Some(last) = per_command.iter().flatten().map(|e| e.sec).max() else {
        return Vec::new();
    };
    let mut all: Vec<&SecondEntry> = per_command.iter().flatten().copied().collect();
    all.sort_by_key(|e| e.sec);

    let mut columns: Vec<Vec<SecondRow>> = commands
        .iter()
        .zip(&per_command)
        .map(|(c, entries)| second_rows(c.name, entries, last))
        .collect();
    columns.push(second_rows(ALL, &all, last));

    let mut rows = Vec::with_capacity(columns.iter().map(Vec::len).sum());
    for sec in 0..=last {
        for column in &columns {
            if let Some(row) = usize::try_from(sec).ok().and_then(|i| column.get(i)) {
                rows.push(*row);
            }
        }
    }
    rows
}

/// One command's rows for seconds `0..=last`, from entries sorted by second.
fn second_rows(command: &'static str, entries: &[&SecondEntry], last: u64) -> Vec<SecondRow> {
    // One histogram, reset each second: only one second is ever dense.
    let mut hist: Histogram<u64> = new_histogram(SECOND_SIGFIG);
    let mut rows = Vec::new();
    let mut next = 0;
    for sec in 0..=last {
        hist.reset();
        let mut row = SecondRow {
            second: sec,
            command,
            count: 0,
            errors: 0,
            p50_us: 0,
            p99_us: 0,
            max_us: 0,
        };
        while let Some(e) = entries.get(next).filter(|e| e.sec == sec) {
            row.count += e.count;
            row.errors += e.errors;
            row.max_us = row.max_us.max(e.max_us);
            for &(value, n) in &e.buckets {
                record_n(&mut hist, u64::from(value), u64::from(n));
            }
            next += 1;
        }
        if row.count > 0 {
            row.p50_us = hist.value_at_quantile(0.5).min(row.max_us);
            row.p99_us = hist.value_at_quantile(0.99).min(row.max_us);
        }
        rows.push(row);
    }
    rows
}

/// Latency percentiles in microseconds. Each is the upper edge of its
/// HdrHistogram bucket, capped at the exact maximum, so
/// `p50 <= p90 <= p99 <= p999 <= p9999 <= max` always holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    fn of(s: &Series) -> Self {
        let q = |q: f64| s.hist.value_at_quantile(q).min(s.max_us);
        Percentiles {
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            p9999_us: q(0.9999),
            max_us: s.max_us,
        }
    }
}

/// One row of the summary: a command (or [`ALL`]), an outcome (`None` on
/// `all` rows) and a clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SummaryRow {
    pub command: &'static str,
    pub outcome: Option<Outcome>,
    pub clock: Clock,
    pub count: u64,
    pub rate_per_s: f64,
    pub latency: Percentiles,
}

impl SummaryRow {
    /// The outcome's name, or `all`.
    pub fn outcome_name(&self) -> &'static str {
        self.outcome.map_or(ALL, Outcome::name)
    }
}

/// One second of one command (or [`ALL`]), from service records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondRow {
    pub second: u64,
    pub command: &'static str,
    pub count: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// One plotted line: a command's latencies on one clock, all outcomes.
struct Curve {
    command: &'static str,
    clock: Clock,
    color: usize,
    series: Series,
}

/// The numbers of a finished run, computed once by [`Recorder::report`].
pub struct Report {
    elapsed: Duration,
    requests: u64,
    errors: u64,
    rows: Vec<SummaryRow>,
    seconds: Vec<SecondRow>,
    curves: Vec<Curve>,
}

impl Report {
    /// The measured run time the rates divide by.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Requests recorded (service clock).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests with outcome error (service clock).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Summary rows: commands sorted by name, outcomes in [`Outcome::ALL`]
    /// order, service before intended; then the `all` rows.
    pub fn rows(&self) -> &[SummaryRow] {
        &self.rows
    }

    /// The row of a command (or [`ALL`] with outcome `None`).
    pub fn row(
        &self,
        command: &str,
        outcome: Option<Outcome>,
        clock: Clock,
    ) -> Option<&SummaryRow> {
        self.rows
            .iter()
            .find(|r| r.command == command && r.outcome == outcome && r.clock == clock)
    }

    /// Per-second rows, second by second, commands by name then `all`.
    pub fn seconds(&self) -> &[SecondRow] {
        &self.seconds
    }

    /// Writes `summary.csv` and `timeseries.csv` into `dir`, creating it.
    pub fn write_csv_dir(&self, dir: impl AsRef<Path>) -> Result<(), ReportError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        self.write_summary_csv(dir.join("summary.csv"))?;
        self.write_timeseries_csv(dir.join("timeseries.csv"))
    }

    /// Writes the summary; columns in [`SUMMARY_HEADER`], documented in
    /// [`SUMMARY_COLUMNS`].
    pub fn write_summary_csv(&self, path: impl AsRef<Path>) -> Result<(), ReportError> {
        write_csv(
            path.as_ref(),
            &SUMMARY_HEADER,
            self.rows.iter().map(|r| {
                let l = &r.latency;
                vec![
                    r.command.to_string(),
                    r.outcome_name().to_string(),
                    r.clock.name().to_string(),
                    r.count.to_string(),
                    format!("{:.3}", r.rate_per_s),
                    l.p50_us.to_string(),
                    l.p90_us.to_string(),
                    l.p99_us.to_string(),
                    l.p999_us.to_string(),
                    l.p9999_us.to_string(),
                    l.max_us.to_string(),
                ]
            }),
        )
    }

    /// Writes the time series; columns in [`TIMESERIES_HEADER`], documented
    /// in [`TIMESERIES_COLUMNS`].
    pub fn write_timeseries_csv(&self, path: impl AsRef<Path>) -> Result<(), ReportError> {
        write_csv(
            path.as_ref(),
            &TIMESERIES_HEADER,
            self.seconds.iter().map(|r| {
                vec![
                    r.second.to_string(),
                    r.command.to_string(),
                    r.count.to_string(),
                    r.errors.to_string(),
                    r.p50_us.to_string(),
                    r.p99_us.to_string(),
                    r.max_us.to_string(),
                ]
            }),
        )
    }

    /// Prints a headline and an aligned table of the summary rows.
    pub fn print_summary(&self, out: &mut impl Write) -> io::Result<()> {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        };
        writeln!(
            out,
            "{} requests in {:.3} s: {:.0} requests/s, {} errors",
            self.requests, secs, rate, self.errors
        )?;
        if self.rows.is_empty() {
            return Ok(());
        }
        writeln!(out, "latency in microseconds:")?;
        let header = [
            "command", "outcome", "clock", "count", "rate/s", "p50", "p90", "p99", "p99.9",
            "p99.99", "max",
        ];
        // The first three columns are names (left-aligned), the rest numbers.
        const TEXT_COLUMNS: usize = 3;
        let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for r in &self.rows {
            let l = &r.latency;
            table.push(vec![
                r.command.to_string(),
                r.outcome_name().to_string(),
                r.clock.name().to_string(),
                r.count.to_string(),
                format!("{:.1}", r.rate_per_s),
                l.p50_us.to_string(),
                l.p90_us.to_string(),
                l.p99_us.to_string(),
                l.p999_us.to_string(),
                l.p9999_us.to_string(),
                l.max_us.to_string(),
            ]);
        }
        let mut widths = vec![0; header.len()];
        for line in &table {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for line in &table {
            let mut text = String::new();
            for (i, (cell, &w)) in line.iter().zip(&widths).enumerate() {
                let sep = if i == 0 { "" } else { "  " };
                // Writing to a String cannot fail.
                let _ = if i < TEXT_COLUMNS {
                    write!(text, "{sep}{cell:<w$}")
                } else {
                    write!(text, "{sep}{cell:>w$}")
                };
            }
            writeln!(out, "{text}")?;
        }
        Ok(())
    }

    /// Draws latency against percentile, one line per command (intended
    /// clock dashed), as SVG or PNG by the file's extension.
    pub fn plot(&self, path: impl AsRef<Path>) -> Result<(), ReportError> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let plot_error = |message: String| ReportError::Plot {
            path: path.to_path_buf(),
            message,
        };
        let title = format!(
            "latency by percentile ({} requests in {:.1} s)",
            self.requests,
            self.elapsed.as_secs_f64()
        );
        match ext.as_deref() {
            Some("svg") => {
                let root = SVGBackend::new(path, PLOT_SIZE).into_drawing_area();
                draw(&root, &self.curves, &title).map_err(plot_error)
            }
            Some("png") => {
                let root = BitMapBackend::new(path, PLOT_SIZE).into_drawing_area();
                draw(&root, &self.curves, &title).map_err(plot_error)
            }
            _ => Err(ReportError::PlotExtension {
                path: path.to_path_buf(),
            }),
        }
    }
}

fn write_csv(
    path: &Path,
    header: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) -> Result<(), ReportError> {
    let csv_error = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(csv_error)?;
    w.write_record(header).map_err(csv_error)?;
    for row in rows {
        w.write_record(&row).map_err(csv_error)?;
    }
    w.flush().map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

const PLOT_SIZE: (u32, u32) = (1200, 720);

/// The x axis is log10(1 / (1 - p)): 0 is the 0th percentile, 1 the 90th,
/// 2 the 99th, and so on, so every extra nine gets the same width.
const PLOT_NINES: f64 = 5.0;

fn nines(p: f64) -> f64 {
    -(1.0 - p).log10()
}

fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    // 50 and 90 need no decimals, 99.9 one, 99.99 two, …
    let decimals = (x.round() as i64 - 2).clamp(0, 6) as usize;
    format!("{percent:.decimals$}%")
}

fn latency_label(us: f64) -> String {
    if us >= 10.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

/// Points of a curve: latency at evenly spaced x up to the percentile the
/// sample count can support, then the maximum.
fn curve_points(s: &Series) -> Vec<(f64, f64)> {
    const STEP: f64 = 0.01;
    let count = s.count().max(1) as f64;
    let x_end = count.log10().clamp(nines(0.5), PLOT_NINES);
    let y = |us: u64| (us.max(1)) as f64;
    let mut points: Vec<(f64, f64)> = (0..)
        .map(|i| f64::from(i) * STEP)
        .take_while(|&x| x < x_end)
        .map(|x| {
            let p = 1.0 - 10f64.powf(-x);
            (x, y(s.hist.value_at_quantile(p).min(s.max_us)))
        })
        .collect();
    points.push((x_end, y(s.max_us)));
    points
}

/// The x axis, labelled at 50 %, 90 %, 99 %, … only (plotters' own
/// key-point wrapper cannot be combined with a label formatter).
struct NinesAxis(std::ops::Range<f64>);

impl Ranged for NinesAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let (lo, hi) = (self.0.start, self.0.end);
        let t = (value - lo) / (hi - lo);
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            // No light grid lines: only the labelled nines.
            return Vec::new();
        }
        [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999]
            .into_iter()
            .map(nines)
            .filter(|x| self.0.contains(x))
            .collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.0.clone()
    }
}

impl ValueFormatter<f64> for NinesAxis {
    fn format(value: &f64) -> String {
        percentile_label(*value)
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    title: &str,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let lines: Vec<(&Curve, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|c| (c, curve_points(&c.series)))
        .collect();
    let ys = lines.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::MAX, 1.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let lo = if lo == f64::MAX { 1.0 } else { lo };
    // Some room above and below, and a decade at least so the axis has labels.
    let (y_lo, y_hi) = ((lo / 1.5).max(0.5), (hi * 1.5).max(lo * 10.0));
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(NinesAxis(0.0..PLOT_NINES + 0.05), (y_lo..y_hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .y_label_formatter(&|y| latency_label(*y))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(e)?;

    for (curve, points) in lines {
        let color = Palette99::pick(curve.color).to_rgba();
        let style = color.stroke_width(2);
        match curve.clock {
            Clock::Service => {
                chart
                    .draw_series(LineSeries::new(points, style))
                    .map_err(e)?
                    .label(curve.command)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            }
            Clock::Intended => {
                chart
                    .draw_series(DashedLineSeries::new(points, 8, 5, style))
                    .map_err(e)?
                    .label(format!("{} (intended)", curve.command))
                    .legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (8, 0)], style)
                            + PathElement::new(vec![(13, 0), (21, 0)], style)
                    });
            }
        }
    }
    if !curves.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)
}

/// Shows how far a run has got: an indicatif bar on a terminal, otherwise a
/// plain line on stderr at most once a second. Workers call
/// [`Progress::inc`], which is one relaxed atomic add; a ticker thread reads
/// the counter and draws, so drawing never slows a request.
pub struct Progress {
    done: Arc<AtomicU64>,
    ticker: Mutex<Option<Ticker>>,
}

struct Ticker {
    // Dropping the sender wakes the thread and tells it to stop.
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// What the ticker needs to describe the run.
#[derive(Clone, Copy)]
struct Goal {
    total: Option<u64>,
    duration: Option<Duration>,
}

impl Progress {
    /// Starts showing progress towards `total` requests and/or `duration`
    /// (whichever the run stops at).
    pub fn new(total: Option<u64>, duration: Option<Duration>) -> Self {
        let goal = Goal { total, duration };
        let bar = io::stderr().is_terminal().then(|| new_bar(goal));
        let done = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = mpsc::channel();
        let counter = done.clone();
        let spawned = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || tick(&counter, goal, bar, &stopped));
        // Without a thread there is no display, but counting still works.
        let ticker = spawned.ok().map(|thread| Ticker { stop, thread });
        Progress {
            done,
            ticker: Mutex::new(ticker),
        }
    }

    /// Counts without showing anything (tests, quiet runs).
    pub fn hidden() -> Self {
        Progress {
            done: Arc::new(AtomicU64::new(0)),
            ticker: Mutex::new(None),
        }
    }

    /// Counts `n` finished requests.
    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Requests counted so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the display after a final line; later calls do nothing.
    pub fn finish(&self) {
        let ticker = self
            .ticker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(Ticker { stop, thread }) = ticker {
            drop(stop);
            // A panicked ticker only loses the display.
            let _ = thread.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

fn new_bar(goal: Goal) -> ProgressBar {
    let (bar, template) = if goal.total.is_some() || goal.duration.is_some() {
        (
            ProgressBar::with_draw_target(Some(BAR_LENGTH), ProgressDrawTarget::stderr()),
            "{bar:40.cyan/blue} {percent:>3}% {msg} [{elapsed_precise}, eta {eta}]",
        )
    } else {
        (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{spinner} {msg} [{elapsed_precise}]",
        )
    };
    let style =
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

/// The bar counts per mille so requests and time share one scale.
const BAR_LENGTH: u64 = 1000;

fn describe(goal: Goal, done: u64, rate: f64, elapsed: Duration) -> String {
    let mut s = match goal.total {
        Some(total) => format!("{done}/{total} ops, {rate:.0} ops/s"),
        None => format!("{done} ops, {rate:.0} ops/s"),
    };
    if let Some(d) = goal.duration {
        let _ = write!(s, ", {}/{} s", elapsed.as_secs(), d.as_secs());
    }
    s
}

fn fraction(goal: Goal, done: u64, elapsed: Duration) -> f64 {
    let by_count = goal
        .total
        .filter(|&t| t > 0)
        .map(|t| done as f64 / t as f64);
    let by_time = goal
        .duration
        .filter(|d| !d.is_zero())
        .map(|d| elapsed.as_secs_f64() / d.as_secs_f64());
    by_count
        .into_iter()
        .chain(by_time)
        .fold(0.0, f64::max)
        .min(1.0)
}

fn tick(done: &AtomicU64, goal: Goal, bar: Option<ProgressBar>, stopped: &mpsc::Receiver<()>) {
    let start = Instant::now();
    let interval = if bar.is_some() {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    // The rate shown is over the last second or so, not the whole run, so a
    // stall shows at once.
    let (mut window_at, mut window_done, mut rate) = (start, 0u64, 0.0);
    loop {
        let stop = !matches!(
            stopped.recv_timeout(interval),
            Err(RecvTimeoutError::Timeout)
        );
        let now = Instant::now();
        let n = done.load(Ordering::Relaxed);
        let elapsed = now - start;
        if stop {
            let secs = elapsed.as_secs_f64();
            let average = if secs > 0.0 { n as f64 / secs } else { 0.0 };
            let line = format!("{n} ops in {secs:.1} s, {average:.0} ops/s");
            match &bar {
                Some(bar) => {
                    // Where the run really got to: a run cut short by an
                    // error should not show a full bar.
                    bar.set_position((fraction(goal, n, elapsed) * BAR_LENGTH as f64) as u64);
                    bar.finish_with_message(line);
                }
                None => eprintln!("progress: done, {line}"),
            }
            return;
        }
        let window = now - window_at;
        if window >= Duration::from_secs(1) {
            rate = n.saturating_sub(window_done) as f64 / window.as_secs_f64();
            (window_at, window_done) = (now, n);
        }
        let message = describe(goal, n, rate, elapsed);
        match &bar {
            Some(bar) => {
                bar.set_position((fraction(goal, n, elapsed) * BAR_LENGTH as f64) as u64);
                bar.set_message(message);
            }
            None => eprintln!("progress: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn sample() -> Recorder {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        for i in 1..=100u64 {
            let at = start + Duration::from_millis(10 * i);
            let outcome = if i % 4 == 0 {
                Outcome::Miss
            } else {
                Outcome::Hit
            };
            r.record_at("get", outcome, Clock::Service, us(i * 10), at);
            r.record_at("get", outcome, Clock::Intended, us(i * 20), at);
            r.record_at("set", Outcome::Stored, Clock::Service, us(i * 5), at);
        }
        r.set_end(start + Duration::from_secs(2));
        r
    }

    fn within(actual: u64, expected: u64, tolerance: f64) -> bool {
        (actual as f64 - expected as f64).abs() <= expected as f64 * tolerance
    }

    #[test]
    fn percentiles_of_known_data() {
        let mut r = Recorder::new(Instant::now());
        for v in 1..=10_000 {
            r.record("get", Outcome::Hit, Clock::Service, us(v));
        }
        let report = r.report();
        let row = report
            .row("get", Some(Outcome::Hit), Clock::Service)
            .copied();
        let row = row.expect("a get/hit row");
        let l = row.latency;
        assert_eq!(row.count, 10_000);
        // HdrHistogram with 3 significant digits: within 0.1 %.
        assert!(within(l.p50_us, 5_000, 0.001), "{l:?}");
        assert!(within(l.p90_us, 9_000, 0.001), "{l:?}");
        assert!(within(l.p99_us, 9_900, 0.001), "{l:?}");
        assert!(within(l.p999_us, 9_990, 0.001), "{l:?}");
        assert!(within(l.p9999_us, 9_999, 0.001), "{l:?}");
        assert_eq!(l.max_us, 10_000);
        assert_eq!(report.requests(), 10_000);
        assert_eq!(report.errors(), 0);
    }

    #[test]
    fn small_values_are_exact() {
        let mut r = Recorder::new(Instant::now());
        for v in [3, 3, 3, 7] {
            r.record("get", Outcome::Hit, Clock::Service, us(v));
        }
        let report = r.report();
        let l = report
            .row("get", Some(Outcome::Hit), Clock::Service)
            .map(|r| r.latency);
        assert_eq!(
            l,
            Some(Percentiles {
                p50_us: 3,
                p90_us: 7,
                p99_us: 7,
                p999_us: 7,
                p9999_us: 7,
                max_us: 7
            })
        );
    }

    #[test]
    fn huge_latency_saturates_and_zero_is_kept() {
        let mut r = Recorder::new(Instant::now());
        r.record(
            "get",
            Outcome::Hit,
            Clock::Service,
            Duration::from_secs(3600),
        );
        r.record("get", Outcome::Hit, Clock::Service, Duration::ZERO);
        r.record("get", Outcome::Hit, Clock::Service, Duration::MAX);
        let report = r.report();
        let row = report
            .row("get", Some(Outcome::Hit), Clock::Service)
            .copied();
        let row = row.expect("a get/hit row");
        assert_eq!(row.count, 3);
        assert_eq!(row.latency.max_us, MAX_LATENCY_US);
        assert_eq!(row.latency.p50_us, MAX_LATENCY_US);
    }

    proptest! {
        #![proptest_config(crate::proptest_config("fixtures/proptest-regressions/report.txt"))]
        #[test]
        fn percentiles_are_ordered(values in prop::collection::vec(0u64..100_000_000, 1..300)) {
            let mut r = Recorder::new(Instant::now());
            for &v in &values {
                r.record("get", Outcome::Hit, Clock::Service, us(v));
            }
            let report = r.report();
            for row in report.rows() {
                let l = row.latency;
                prop_assert!(l.p50_us <= l.p90_us);
                prop_assert!(l.p90_us <= l.p99_us);
                prop_assert!(l.p99_us <= l.p999_us);
                prop_assert!(l.p999_us <= l.p9999_us);
                prop_assert!(l.p9999_us <= l.max_us);
                prop_assert_eq!(l.max_us, values.iter().max().copied().unwrap_or(0).min(MAX_LATENCY_US));
            }
            for s in report.seconds() {
                prop_assert!(s.p50_us <= s.p99_us && s.p99_us <= s.max_us);
            }
        }
    }

    #[test]
    fn merge_adds_counts() {
        let start = Instant::now();
        let mut a = Recorder::new(start);
        let mut b = Recorder::new(start);
        for i in 0..10 {
            a.record_at("get", Outcome::Hit, Clock::Service, us(100), start);
            b.record_at("get", Outcome::Hit, Clock::Service, us(200), start);
            b.record_at("get", Outcome::Miss, Clock::Service, us(50), start);
            b.record_at("delete", Outcome::Error, Clock::Service, us(i), start);
        }
        a.merge(&b);
        let report = a.report();
        let count = |c, o| report.row(c, o, Clock::Service).map(|r| r.count);
        assert_eq!(count("get", Some(Outcome::Hit)), Some(20));
        assert_eq!(count("get", Some(Outcome::Miss)), Some(10));
        assert_eq!(count("delete", Some(Outcome::Error)), Some(10));
        assert_eq!(count(ALL, None), Some(40));
        assert_eq!(report.requests(), 40);
        assert_eq!(report.errors(), 10);
        let max = report
            .row("get", Some(Outcome::Hit), Clock::Service)
            .map(|r| r.latency.max_us);
        assert_eq!(max, Some(200));
        // Both workers' pending seconds are merged too.
        let all = report.seconds().iter().find(|s| s.command == ALL).copied();
        assert_eq!(
            all.map(|s| (s.second, s.count, s.errors)),
            Some((0, 40, 10))
        );
        // Merging is associative with the parts: b into an empty recorder is b.
        let mut empty = Recorder::new(start);
        empty.merge(&b);
        assert_eq!(empty.requests(), b.requests());
    }

    #[test]
    fn rows_are_ordered_and_intended_rows_appear_when_recorded() {
        let report = sample().report();
        let keys: Vec<(&str, &str, &str)> = report
            .rows()
            .iter()
            .map(|r| (r.command, r.outcome_name(), r.clock.name()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("get", "hit", "service"),
                ("get", "hit", "intended"),
                ("get", "miss", "service"),
                ("get", "miss", "intended"),
                ("set", "stored", "service"),
                ("all", "all", "service"),
                ("all", "all", "intended"),
            ]
        );
        let rate = report.row(ALL, None, Clock::Service).map(|r| r.rate_per_s);
        assert_eq!(rate, Some(100.0)); // 200 requests over the 2 s set_end gives
        let intended = report.row(ALL, None, Clock::Intended).map(|r| r.count);
        assert_eq!(intended, Some(100));
    }

    #[test]
    fn elapsed_is_the_last_reply_unless_set() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        assert_eq!(r.elapsed(), Duration::ZERO);
        r.record_at(
            "get",
            Outcome::Hit,
            Clock::Service,
            us(1),
            start + Duration::from_millis(1500),
        );
        r.record_at(
            "get",
            Outcome::Hit,
            Clock::Service,
            us(1),
            start + Duration::from_millis(500),
        );
        assert_eq!(r.elapsed(), Duration::from_millis(1500));
        r.set_end(start + Duration::from_secs(3));
        assert_eq!(r.elapsed(), Duration::from_secs(3));
    }

    #[test]
    fn summary_csv_parses_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let report = sample().report();
        report.write_csv_dir(dir.path().join("out"))?;
        let mut reader = csv::Reader::from_path(dir.path().join("out/summary.csv"))?;
        let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
        assert_eq!(header, SUMMARY_HEADER);
        let mut rows = 0;
        for record in reader.records() {
            let record = record?;
            assert_eq!(record.len(), SUMMARY_HEADER.len());
            let outcome = Outcome::ALL.into_iter().find(|o| o.name() == &record[1]);
            let clock = if &record[2] == "service" {
                Clock::Service
            } else {
                Clock::Intended
            };
            let row = report.row(&record[0], outcome, clock).copied();
            let row = row.ok_or("row not in the report")?;
            assert_eq!(record[3].parse::<u64>()?, row.count);
            assert!((record[4].parse::<f64>()? - row.rate_per_s).abs() < 0.001);
            let nums: Vec<u64> = (5..11)
                .map(|i| record[i].parse())
                .collect::<Result<_, _>>()?;
            let l = row.latency;
            assert_eq!(
                nums,
                [l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.p9999_us, l.max_us]
            );
            rows += 1;
        }
        assert_eq!(rows, report.rows().len());
        let hits = report
            .row("get", Some(Outcome::Hit), Clock::Service)
            .map(|r| r.count);
        assert_eq!(hits, Some(75));
        // Every documented column is written, and every written one documented.
        for column in SUMMARY_HEADER {
            assert!(SUMMARY_COLUMNS.contains(&format!("`{column}`")), "{column}");
        }
        for column in TIMESERIES_HEADER {
            assert!(
                TIMESERIES_COLUMNS.contains(&format!("`{column}`")),
                "{column}"
            );
        }
        for outcome in Outcome::ALL {
            assert!(SUMMARY_COLUMNS.contains(&format!("`{}`", outcome.name())));
        }
        Ok(())
    }

    #[test]
    fn timeseries_has_a_row_per_second_and_command() -> Result<(), Box<dyn std::error::Error>> {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        let at = |ms| start + Duration::from_millis(ms);
        for i in 0..10 {
            r.record_at("get", Outcome::Hit, Clock::Service, us(100 + i), at(200));
        }
        r.record_at("get", Outcome::Error, Clock::Service, us(5_000), at(900));
        r.record_at("set", Outcome::Stored, Clock::Service, us(40), at(1_100));
        // Nothing in second 2; intended records never count here.
        r.record_at("get", Outcome::Hit, Clock::Intended, us(1), at(2_500));
        r.record_at("get", Outcome::Miss, Clock::Service, us(70), at(3_999));
        let report = r.report();
        let rows: Vec<(u64, &str, u64, u64)> = report
            .seconds()
            .iter()
            .map(|s| (s.second, s.command, s.count, s.errors))
            .collect();
        assert_eq!(
            rows,
            vec![
                (0, "get", 11, 1),
                (0, "set", 0, 0),
                (0, "all", 11, 1),
                (1, "get", 0, 0),
                (1, "set", 1, 0),
                (1, "all", 1, 0),
                (2, "get", 0, 0),
                (2, "set", 0, 0),
                (2, "all", 0, 0),
                (3, "get", 1, 0),
                (3, "set", 0, 0),
                (3, "all", 1, 0),
            ]
        );
        let first = report.seconds()[0];
        assert_eq!(
            (first.p50_us, first.p99_us, first.max_us),
            (105, 5_000, 5_000)
        );
        let empty = report.seconds()[6];
        assert_eq!((empty.p50_us, empty.p99_us, empty.max_us), (0, 0, 0));

        let dir = tempfile::tempdir()?;
        let path = dir.path().join("timeseries.csv");
        report.write_timeseries_csv(&path)?;
        let mut reader = csv::Reader::from_path(&path)?;
        assert_eq!(
            reader.headers()?.iter().collect::<Vec<_>>(),
            TIMESERIES_HEADER
        );
        let parsed: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
        assert_eq!(parsed.len(), 12);
        assert_eq!(
            parsed[0].iter().collect::<Vec<_>>(),
            ["0", "get", "11", "1", "105", "5000", "5000"]
        );
        Ok(())
    }

    #[test]
    fn merged_seconds_shift_to_the_common_start() {
        let start = Instant::now();
        let mut a = Recorder::new(start);
        let mut b = Recorder::new(start + Duration::from_secs(2));
        b.record_at(
            "get",
            Outcome::Hit,
            Clock::Service,
            us(1),
            start + Duration::from_secs(2),
        );
        a.merge(&b);
        let seconds: Vec<(u64, u64)> = a
            .report()
            .seconds()
            .iter()
            .filter(|s| s.command == ALL)
            .map(|s| (s.second, s.count))
            .collect();
        assert_eq!(seconds, [(0, 0), (1, 0), (2, 1)]);
    }

    #[test]
    fn summary_table_is_aligned() -> io::Result<()> {
        let mut out = Vec::new();
        sample().report().print_summary(&mut out)?;
        let text = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("200 requests in 2.000 s: 100 requests/s, 0 errors"));
        let table = &lines[2..];
        assert_eq!(table.len(), 8);
        assert!(table[0].starts_with("command"));
        let width = table[0].len();
        assert!(table.iter().all(|l| l.len() == width), "{text}");
        assert!(table[1].starts_with("get      hit      service"), "{text}");
        Ok(())
    }

    #[test]
    fn plots_svg_and_png() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let report = sample().report();
        let svg = dir.path().join("latency.svg");
        report.plot(&svg)?;
        let text = std::fs::read_to_string(&svg)?;
        assert!(text.starts_with("<svg"));
        // plotters writes each label as `<text …>\nlabel\n</text>`.
        let labels: Vec<&str> = text
            .split("<text")
            .skip(1)
            .filter_map(|t| t.split_once('>'))
            .filter_map(|(_, rest)| rest.split_once("</text>"))
            .map(|(label, _)| label.trim())
            .collect();
        for needle in ["get", "set", "get (intended)", "50%", "99.9%", "99.999%"] {
            assert!(labels.contains(&needle), "{needle} missing from {labels:?}");
        }
        let png = dir.path().join("latency.PNG");
        report.plot(&png)?;
        let bytes = std::fs::read(&png)?;
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.len() > 1000);
        // An empty run still draws axes rather than failing.
        Recorder::new(Instant::now())
            .report()
            .plot(dir.path().join("empty.svg"))?;
        Ok(())
    }

    #[test]
    fn plot_needs_a_known_extension() {
        let report = sample().report();
        for name in ["latency.jpg", "latency", "latency.svg.txt"] {
            let err = report.plot(Path::new(name));
            assert!(
                matches!(err, Err(ReportError::PlotExtension { .. })),
                "{name}"
            );
            assert!(!Path::new(name).exists());
        }
        let message = report.plot("x.gif").err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("x.gif: the plot file must end in .svg or .png")
        );
    }

    #[test]
    fn plot_into_a_missing_directory_is_an_error() {
        let report = sample().report();
        let err = report.plot("/nonexistent-dir/for/sure/latency.png");
        assert!(
            matches!(err, Err(ReportError::Plot { .. })),
            "{:?}",
            err.err()
        );
        let err = report.write_summary_csv("/nonexistent-dir/for/sure/summary.csv");
        assert!(matches!(err, Err(ReportError::Csv { .. })));
    }

    #[test]
    fn percentile_labels() {
        let labels: Vec<String> = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999]
            .into_iter()
            .map(|p| percentile_label(nines(p)))
            .collect();
        assert_eq!(labels, ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn outcome_names_are_distinct_lowercase() {
        let names: std::collections::BTreeSet<&str> =
            Outcome::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        assert!(!names.contains(ALL));
    }

    #[test]
    fn progress_counts_and_stops() {
        let hidden = Progress::hidden();
        hidden.inc(3);
        hidden.inc(4);
        assert_eq!(hidden.done(), 7);
        hidden.finish();

        // Under the test harness stderr is not a terminal: plain lines.
        let shown = Arc::new(Progress::new(Some(1000), Some(Duration::from_secs(5))));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let p = shown.clone();
                std::thread::spawn(move || (0..250).for_each(|_| p.inc(1)))
            })
            .collect();
        for w in workers {
            assert!(w.join().is_ok());
        }
        assert_eq!(shown.done(), 1000);
        let begun = Instant::now();
        shown.finish();
        shown.finish();
        // Finishing wakes the ticker rather than waiting out its second.
        assert!(begun.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn progress_description() {
        let goal = Goal {
            total: Some(100_000),
            duration: None,
        };
        assert_eq!(
            describe(goal, 12_345, 45_678.2, Duration::ZERO),
            "12345/100000 ops, 45678 ops/s"
        );
        let goal = Goal {
            total: None,
            duration: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            describe(goal, 5, 1.0, Duration::from_millis(12_500)),
            "5 ops, 1 ops/s, 12/30 s"
        );
        assert_eq!(fraction(goal, 5, Duration::from_secs(15)), 0.5);
        let both = Goal {
            total: Some(10),
            duration: Some(Duration::from_secs(10)),
        };
        assert_eq!(fraction(both, 8, Duration::from_secs(1)), 0.8);
        assert_eq!(fraction(both, 80, Duration::from_secs(1)), 1.0);
    }
}
