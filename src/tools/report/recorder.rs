//! What one worker records: per command, outcome and clock, a run-wide
//! histogram and per-second histograms; merged across workers at the end.

use super::*;

/// The latencies of one command, outcome and clock.
#[derive(Clone)]
pub(super) struct Series {
    pub(super) hist: Histogram<u64>,
    /// Exact, because the histogram only knows its bucket's upper edge.
    pub(super) max_us: u64,
}

impl Series {
    pub(super) fn new() -> Self {
        Series {
            hist: new_histogram(SIGFIG),
            max_us: 0,
        }
    }

    pub(super) fn record(&mut self, us: u64) {
        record_n(&mut self.hist, us, 1);
        self.max_us = self.max_us.max(us);
    }

    pub(super) fn add(&mut self, other: &Series) {
        add_histogram(&mut self.hist, &other.hist);
        self.max_us = self.max_us.max(other.max_us);
    }

    pub(super) fn count(&self) -> u64 {
        self.hist.len()
    }
}

pub(super) fn merge_into(slot: &mut Option<Series>, s: &Series) {
    match slot {
        Some(m) => m.add(s),
        None => *slot = Some(s.clone()),
    }
}

/// One finished second of one command at one worker, kept sparse (only the
/// buckets that were hit) so long runs with many workers stay small.
#[derive(Clone, Debug)]
pub(super) struct SecondEntry {
    pub(super) sec: u64,
    pub(super) count: u64,
    pub(super) errors: u64,
    pub(super) max_us: u64,
    /// (bucket value in µs, count) at [`SECOND_SIGFIG`] precision.
    pub(super) buckets: Vec<(u32, u32)>,
}

/// The second being recorded, dense so recording stays cheap.
pub(super) struct SecondAccumulator {
    pub(super) sec: u64,
    pub(super) count: u64,
    pub(super) errors: u64,
    pub(super) max_us: u64,
    // u32 counts: one worker cannot answer four billion requests in a second.
    pub(super) hist: Histogram<u32>,
}

impl SecondAccumulator {
    pub(super) fn new() -> Self {
        SecondAccumulator {
            sec: 0,
            count: 0,
            errors: 0,
            max_us: 0,
            hist: new_histogram(SECOND_SIGFIG),
        }
    }

    pub(super) fn record(&mut self, us: u64, error: bool) {
        record_n(&mut self.hist, us, 1);
        self.count += 1;
        self.errors += u64::from(error);
        self.max_us = self.max_us.max(us);
    }

    pub(super) fn entry(&self) -> Option<SecondEntry> {
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

    pub(super) fn reset(&mut self, sec: u64) {
        self.sec = sec;
        self.count = 0;
        self.errors = 0;
        self.max_us = 0;
        self.hist.reset();
    }
}

pub(super) const SERIES_PER_COMMAND: usize = Outcome::ALL.len() * Clock::ALL.len();

pub(super) fn series_index(outcome: Outcome, clock: Clock) -> usize {
    outcome as usize * Clock::ALL.len() + clock as usize
}

pub(super) struct CommandStats {
    pub(super) name: &'static str,
    /// Indexed by [`series_index`]: a direct index, not a map, on the hot path.
    pub(super) series: [Option<Series>; SERIES_PER_COMMAND],
    pub(super) current: SecondAccumulator,
    pub(super) seconds: Vec<SecondEntry>,
}

impl CommandStats {
    pub(super) fn new(name: &'static str) -> Self {
        CommandStats {
            name,
            series: std::array::from_fn(|_| None),
            current: SecondAccumulator::new(),
            seconds: Vec::new(),
        }
    }

    pub(super) fn record_second(&mut self, sec: u64, us: u64, error: bool) {
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

    pub(super) fn series(&self, outcome: Outcome, clock: Clock) -> Option<&Series> {
        self.series[series_index(outcome, clock)].as_ref()
    }
}

/// One worker's measurements. Merge the workers' recorders with
/// [`Recorder::merge`], then call [`Recorder::report`].
pub struct Recorder {
    pub(super) start: Instant,
    /// The latest service completion seen: the run's end unless
    /// [`Recorder::set_end`] says otherwise.
    pub(super) last: Option<Instant>,
    pub(super) end: Option<Instant>,
    pub(super) commands: Vec<CommandStats>,
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

    pub(super) fn command(&mut self, cmd: &'static str) -> &mut CommandStats {
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

    pub(super) fn count_service(&self, keep: impl Fn(Outcome) -> bool) -> u64 {
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
pub(super) fn timeseries(commands: &[&CommandStats]) -> Vec<SecondRow> {
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
pub(super) fn second_rows(
    command: &'static str,
    entries: &[&SecondEntry],
    last: u64,
) -> Vec<SecondRow> {
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
