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

mod plot;
mod progress;
mod recorder;
#[cfg(test)]
mod tests;

use plot::{draw, PLOT_SIZE};
pub use progress::Progress;
pub use recorder::Recorder;
use recorder::*;
