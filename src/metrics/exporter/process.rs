//! The process's own figures, read from /proc at scrape time (resident
//! memory, file descriptors, CPU time; absent off Linux), with rend's start
//! time, uptime and build.

use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::{as_i64, counter_f64, gauge, gauge_f64, Metrics, Out};
use crate::metrics::VERSION;

/// The process, rend's uptime and its build.
pub(super) fn encode_process(enc: Out, m: &Metrics) -> std::fmt::Result {
    let p = process();
    if let Some(v) = p.rss {
        gauge(
            enc,
            "process_resident_memory_bytes",
            "Resident memory.",
            as_i64(v),
        )?;
    }
    if let Some(v) = p.open_fds {
        gauge(enc, "process_open_fds", "Open file descriptors.", as_i64(v))?;
    }
    if let Some(v) = p.max_fds {
        gauge(
            enc,
            "process_max_fds",
            "The open file descriptor limit (soft).",
            as_i64(v),
        )?;
    }
    if let Some(v) = p.cpu_seconds {
        counter_f64(
            enc,
            "process_cpu_seconds",
            "CPU time used, user and system, seconds.",
            v,
        )?;
    }
    gauge_f64(
        enc,
        "process_start_time_seconds",
        "When rend started, seconds since the Unix epoch.",
        m.started_unix,
    )?;
    gauge_f64(
        enc,
        "rend_uptime_seconds",
        "Seconds since rend started.",
        m.started.elapsed().as_secs_f64(),
    )?;
    let mut fam = enc.encode_descriptor(
        "rend_build_info",
        "Always 1; the version label is what `version` answers.",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(1i64).encode(fam.encode_family(&[("version", VERSION)])?)?;
    Ok(())
}

/// What /proc tells about this process (Linux; absent elsewhere).
#[derive(Default)]
struct Process {
    rss: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    cpu_seconds: Option<f64>,
}

fn process() -> Process {
    let field = |text: &str, name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    // The directory handle read_dir holds is one of the entries.
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| (d.count() as u64).saturating_sub(1));
    // utime and stime are fields 14 and 15, counted after the command name
    // (which may hold spaces) closes; /proc reports them in 1/100 s.
    let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) as f64 / 100.0)
        });
    Process {
        rss: field(&status, "VmRSS:").map(|kb| kb * 1024),
        open_fds,
        max_fds: field(&limits, "Max open files"),
        cpu_seconds,
    }
}
