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
fn outcome_names_are_distinct_lowercase() {
    let names: std::collections::BTreeSet<&str> = Outcome::ALL.iter().map(|o| o.name()).collect();
    assert_eq!(names.len(), Outcome::ALL.len());
    assert!(names
        .iter()
        .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    assert!(!names.contains(ALL));
}
