//! The progress display while a run goes.

use super::*;

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
