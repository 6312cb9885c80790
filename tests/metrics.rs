//! Prometheus metrics end to end: a known workload through rend (real
//! memcached, RocksDB in a temp dir), then `/metrics` scraped over HTTP,
//! parsed, and every request counter and histogram count checked exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Conn, Memcached, Rend};

/// The metrics address rend logged ("metrics listening on ADDR").
fn metrics_addr(rend: &Rend) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = rend.log();
        if let Some(i) = log.find("metrics listening on ") {
            return log[i + 21..]
                .split_whitespace()
                .next()
                .expect("an address")
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "rend did not log its metrics address:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One HTTP request; the status line and the body.
fn http(addr: &str, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read the reply");
    let text = String::from_utf8(out).expect("UTF-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or("").to_string();
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
    {
        assert_eq!(len.parse::<usize>().unwrap(), body.len(), "{head}");
    }
    (status, body.to_string())
}

/// A parsed scrape: every sample by name and sorted labels.
struct Scrape {
    text: String,
    samples: HashMap<String, BTreeMap<BTreeMap<String, String>, f64>>,
}

fn scrape(addr: &str) -> Scrape {
    let (status, text) = http(addr, "GET /metrics HTTP/1.1\r\nHost: rend\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    let mut samples: HashMap<String, BTreeMap<BTreeMap<String, String>, f64>> = HashMap::new();
    let mut types = HashSet::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let name = t.split_whitespace().next().unwrap();
            assert!(types.insert(name.to_string()), "family {name} twice");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let labels: BTreeMap<String, String> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label=value");
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        let prev = samples
            .entry(name.to_string())
            .or_default()
            .insert(labels, value);
        assert!(prev.is_none(), "series twice: {line}");
    }
    Scrape { text, samples }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Scrape {
    fn get(&self, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(name)?.get(&labels(pairs)).copied()
    }

    fn value(&self, name: &str, pairs: &[(&str, &str)]) -> f64 {
        self.get(name, pairs)
            .unwrap_or_else(|| panic!("no {name}{pairs:?} in\n{}", self.text))
    }

    /// The series of `name` whose label `key` is `value`, as (labels without
    /// it) → value.
    fn series(&self, name: &str, key: &str, value: &str) -> BTreeMap<Vec<String>, f64> {
        self.samples
            .get(name)
            .map(|all| {
                all.iter()
                    .filter(|(l, _)| l.get(key).map(String::as_str) == Some(value))
                    .map(|(l, v)| {
                        let rest = l
                            .iter()
                            .filter(|(k, _)| *k != key)
                            .map(|(_, v)| v.clone())
                            .collect();
                        (rest, *v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Requests counted under `label=value`, as (command, outcome) → count,
    /// checked against the latency histogram of the same label: for every
    /// command the histogram counts exactly the requests, and its +Inf
    /// bucket equals its count.
    fn requests(&self, prefix: &str, label: &str, value: &str) -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        let mut per_cmd: BTreeMap<String, u64> = BTreeMap::new();
        for (rest, v) in self.series(&format!("{prefix}requests_total"), label, value) {
            // Labels sort as command, outcome.
            let (cmd, outcome) = (rest[0].clone(), rest[1].clone());
            *per_cmd.entry(cmd.clone()).or_default() += v as u64;
            out.insert((cmd, outcome), v as u64);
        }
        let hist = format!("{prefix}request_duration_seconds");
        let counts = self.series(&format!("{hist}_count"), label, value);
        let histogram: BTreeMap<String, u64> = counts
            .iter()
            .map(|(rest, v)| (rest[0].clone(), *v as u64))
            .collect();
        assert_eq!(
            histogram, per_cmd,
            "{hist} counts vs requests ({label}={value})"
        );
        for cmd in per_cmd.keys() {
            let inf = self.value(
                &format!("{hist}_bucket"),
                &[(label, value), ("command", cmd), ("le", "+Inf")],
            );
            assert_eq!(inf as u64, per_cmd[cmd], "+Inf bucket of {cmd}");
            let sum = self.value(&format!("{hist}_sum"), &[(label, value), ("command", cmd)]);
            assert!(sum > 0.0 && sum < 60.0, "{hist}_sum of {cmd}: {sum}");
        }
        out
    }
}

fn expect(pairs: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    pairs
        .iter()
        .map(|(c, o, n)| ((c.to_string(), o.to_string()), *n))
        .collect()
}

fn ask(c: &mut Conn, req: &str, want: &str) {
    let reply = String::from_utf8_lossy(&c.req(req.as_bytes(), want.as_bytes())).into_owned();
    assert!(
        reply.ends_with(want),
        "{req:?} got {reply:?}, want {want:?}"
    );
}

/// Scrape until `done` holds (at most 5 s): a back-fill finishes after the
/// reply that caused it.
fn scrape_until(addr: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(addr);
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_two_tier_workload_is_counted_exactly() {
    let mc = Memcached::start();
    let l2 = tempfile::tempdir().unwrap();
    let rend = Rend::start_two_tier(
        &mc,
        l2.path(),
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--max-conns",
            "3",
            "--threads",
            "1",
            "--l1-conns",
            "2",
        ],
    );
    let addr = metrics_addr(&rend);

    let mut c = rend.connect();
    ask(&mut c, "set a 0 0 1\r\n1\r\n", "STORED\r\n");
    ask(&mut c, "get a\r\n", "END\r\n");
    ask(&mut c, "get a nope\r\n", "END\r\n");
    ask(&mut c, "add a 0 0 1\r\n2\r\n", "NOT_STORED\r\n");
    ask(&mut c, "cas a 0 0 1 1\r\nx\r\n", "EXISTS\r\n");
    ask(&mut c, "incr a 5\r\n", "6\r\n");
    ask(&mut c, "incr nope 1\r\n", "NOT_FOUND\r\n");
    ask(&mut c, "delete a\r\n", "DELETED\r\n");
    ask(&mut c, "delete a\r\n", "NOT_FOUND\r\n");
    ask(&mut c, "bogus\r\n", "ERROR\r\n");
    ask(&mut c, "version\r\n", "\r\n");
    ask(&mut c, "set b 0 0 2\r\nbb\r\n", "STORED\r\n");
    // Empty L1 behind rend's back: the next get of b is served by L2 and
    // back-fills L1.
    ask(&mut mc.connect(), "flush_all\r\n", "OK\r\n");
    let reply = c.get_reply(b"get b\r\n");
    assert_eq!(reply, "VALUE b 0 2\r\nbb\r\nEND\r\n");

    let mut batch = rend.connect_batch();
    ask(&mut batch, "set c 0 0 1\r\nc\r\n", "STORED\r\n");
    assert_eq!(batch.get_reply(b"get c\r\n"), "VALUE c 0 1\r\nc\r\nEND\r\n");

    // Three connections open (the limit), so a fourth is refused.
    let mut c3 = rend.connect();
    ask(&mut c3, "version\r\n", "\r\n");
    let mut c4 = rend.connect();
    let refused = String::from_utf8_lossy(&c4.read_until(b"\r\n")).into_owned();
    assert_eq!(refused, "ERROR Too many open connections\r\n");

    let s = scrape_until(&addr, |s| {
        s.get(
            "rend_tier_requests_total",
            &[("tier", "l1"), ("command", "add"), ("outcome", "stored")],
        ) == Some(1.0)
    });

    // Client requests, per listener.
    assert_eq!(
        s.requests("rend_", "listener", "main"),
        expect(&[
            ("set", "stored", 2),
            ("get", "hit", 2),
            ("get", "miss", 1),
            ("add", "not_stored", 1),
            ("cas", "exists", 1),
            ("incr", "hit", 1),
            ("incr", "miss", 1),
            ("delete", "hit", 1),
            ("delete", "miss", 1),
            ("invalid", "client_error", 1),
            ("version", "ok", 2),
        ])
    );
    assert_eq!(
        s.requests("rend_", "listener", "batch"),
        expect(&[("set", "stored", 1), ("get", "hit", 1)])
    );
    let keys = |l: &str, o: &str| s.get("rend_get_keys_total", &[("listener", l), ("outcome", o)]);
    assert_eq!(keys("main", "hit"), Some(3.0));
    assert_eq!(keys("main", "miss"), Some(1.0));
    assert_eq!(keys("batch", "hit"), Some(1.0));
    assert_eq!(keys("batch", "miss"), None);

    // Calls to the tiers, the policy's own included: L2 decides every
    // write and serves L1's misses; L1 gets each resulting record.
    assert_eq!(
        s.requests("rend_tier_", "tier", "l1"),
        expect(&[
            // a, a again after incr (a refresh), b
            ("set", "stored", 3),
            ("get", "hit", 1),
            // get a nope (nope missed), get b after the flush, get c
            ("get", "miss", 3),
            ("delete", "hit", 1),
            ("delete", "miss", 1),
            // b's back-fill
            ("add", "stored", 1),
            // the batch port refreshes only what L1 holds
            ("replace", "not_stored", 1),
        ])
    );
    assert_eq!(
        s.requests("rend_tier_", "tier", "l2"),
        expect(&[
            ("set", "stored", 3),
            ("add", "not_stored", 1),
            ("cas", "exists", 1),
            ("incr", "hit", 1),
            ("incr", "miss", 1),
            ("delete", "hit", 1),
            ("delete", "miss", 1),
            // nope's miss; the incr's refresh, b's and c's lookups
            ("gete", "hit", 3),
            ("gete", "miss", 1),
        ])
    );
    let tier_keys =
        |t: &str, o: &str| s.get("rend_tier_get_keys_total", &[("tier", t), ("outcome", o)]);
    assert_eq!(tier_keys("l1", "hit"), Some(2.0));
    assert_eq!(tier_keys("l1", "miss"), Some(3.0));
    assert_eq!(s.value("rend_tier_inflight", &[("tier", "l1")]), 0.0);
    assert_eq!(s.value("rend_tier_inflight", &[("tier", "l2")]), 0.0);
    assert_eq!(s.value("rend_l1_backfills_total", &[]), 1.0);
    assert_eq!(s.value("rend_l1_read_failures_total", &[]), 0.0);
    assert_eq!(s.value("rend_l1_write_failures_total", &[]), 0.0);

    // Connections.
    let conn = |name: &str, l: &str| s.value(name, &[("listener", l)]);
    assert_eq!(conn("rend_client_connections", "main"), 2.0);
    assert_eq!(conn("rend_client_connections", "batch"), 1.0);
    assert_eq!(conn("rend_client_connections_accepted_total", "main"), 2.0);
    assert_eq!(conn("rend_client_connections_accepted_total", "batch"), 1.0);
    assert_eq!(conn("rend_client_connections_rejected_total", "main"), 1.0);
    assert_eq!(conn("rend_client_connections_rejected_total", "batch"), 0.0);

    // The L1 pool, L2 and the process.
    assert_eq!(s.value("rend_l1_pool_connections", &[]), 2.0);
    assert_eq!(s.value("rend_l1_pool_connections_up", &[]), 2.0);
    assert_eq!(s.value("rend_l1_pool_reconnects_total", &[]), 0.0);
    assert_eq!(s.value("rend_l1_pool_timeouts_total", &[]), 0.0);
    assert_eq!(s.value("rend_l1_pool_inflight", &[]), 0.0);
    assert!(s.value("rend_l2_estimated_keys", &[]) >= 2.0);
    assert!(s.value("rend_l2_memtable_bytes", &[]) > 0.0);
    assert_eq!(s.value("rend_l2_max_bytes", &[]), 0.0);
    assert_eq!(s.value("rend_l2_refused_full_total", &[]), 0.0);
    assert_eq!(s.value("rend_l2_errors_total", &[]), 0.0);
    for name in [
        "rend_l2_live_data_bytes",
        "rend_l2_block_cache_usage_bytes",
        "rend_l2_pending_compaction_bytes",
        "rend_l2_write_stall_seconds_total",
        "rend_l2_write_stopped",
    ] {
        assert!(s.value(name, &[]) >= 0.0, "{name}");
    }
    assert!(s.samples.keys().all(|k| !k.starts_with("rend_chunk")));
    assert!(s.value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(s.value("process_open_fds", &[]) >= 5.0);
    assert!(s.value("process_max_fds", &[]) >= s.value("process_open_fds", &[]));
    assert!(s.value("process_cpu_seconds_total", &[]) >= 0.0);
    assert!(s.value("rend_uptime_seconds", &[]) >= 0.0);
    assert!(s.value("process_start_time_seconds", &[]) > 1.6e9);
    let build = &s.samples["rend_build_info"];
    assert_eq!(build.len(), 1);
    assert!(build.keys().next().unwrap()["version"].starts_with("1.6.18-rend-"));

    // `stats` is unchanged and agrees.
    let stats = String::from_utf8_lossy(&c.req(b"stats\r\n", b"END\r\n")).into_owned();
    assert!(stats.contains("STAT get_hits 4\r\n"), "{stats}");
    assert!(stats.contains("STAT get_misses 1\r\n"), "{stats}");
    assert!(stats.contains("STAT rejected_connections 1\r\n"), "{stats}");

    // Anything but /metrics is not found.
    let (status, _) = http(&addr, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn chunking_is_counted_exactly() {
    let mc = Memcached::start();
    let rend = Rend::start(
        &mc,
        &[
            "--chunked",
            "--chunk-size",
            "8",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let addr = metrics_addr(&rend);
    let value = "abcdefghijklmnopqrst"; // 20 bytes: 3 chunks of 8
    let set = format!("set k 0 0 20\r\n{value}\r\n");
    let hit = format!("VALUE k 0 20\r\n{value}\r\nEND\r\n");
    let mut c = rend.connect();
    ask(&mut c, &set, "STORED\r\n");
    assert_eq!(c.get_reply(b"get k\r\n"), hit);
    assert_eq!(c.get_reply(b"get nope\r\n"), "END\r\n");
    // A chunk of another write (here: of the wrong length) is a miss.
    let mut m = mc.connect();
    ask(&mut m, "set k-0 0 0 1\r\nx\r\n", "STORED\r\n");
    assert_eq!(c.get_reply(b"get k\r\n"), "END\r\n");
    // So is a missing chunk.
    ask(&mut c, &set, "STORED\r\n");
    ask(&mut m, "delete k-1\r\n", "DELETED\r\n");
    assert_eq!(c.get_reply(b"get k\r\n"), "END\r\n");

    let s = scrape(&addr);
    assert_eq!(s.value("rend_chunks_written_total", &[]), 6.0);
    // Every chunk of each get that found the metadata.
    assert_eq!(s.value("rend_chunks_read_total", &[]), 9.0);
    assert_eq!(s.value("rend_chunk_token_misses_total", &[]), 1.0);
    assert_eq!(s.value("rend_chunk_missing_misses_total", &[]), 1.0);
    assert_eq!(
        s.requests("rend_", "listener", "main"),
        expect(&[("set", "stored", 2), ("get", "hit", 1), ("get", "miss", 3)])
    );
    // L1 as the policy sees it: one call per request, however many chunks.
    assert_eq!(
        s.requests("rend_tier_", "tier", "l1"),
        expect(&[("set", "stored", 2), ("get", "hit", 1), ("get", "miss", 3)])
    );
    assert!(s.requests("rend_tier_", "tier", "l2").is_empty());
    assert!(s.requests("rend_", "listener", "batch").is_empty());
    assert_eq!(
        s.get("rend_client_connections", &[("listener", "batch")]),
        None
    );
    assert_eq!(
        s.value("rend_client_connections", &[("listener", "main")]),
        1.0
    );
    assert!(s.samples.keys().all(|k| !k.starts_with("rend_l2_")));
    assert_eq!(
        s.value("rend_l1_pool_connections_up", &[]),
        s.value("rend_l1_pool_connections", &[])
    );
}

/// The TCP ports process `pid` listens on: its socket inodes
/// (`/proc/<pid>/fd`) matched with the listening sockets of
/// `/proc/net/tcp` and `tcp6` (state 0A).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read fds") {
        let Ok(target) = std::fs::read_link(fd.expect("fd").path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_string_lossy()
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().expect("local address");
                ports.insert(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    ports
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn metrics_can_be_turned_off_and_speak_openmetrics() {
    let mc = Memcached::start();
    let off = Rend::start(&mc, &["--metrics-listen", "off"]);
    let on = Rend::start(&mc, &["--metrics-listen", "127.0.0.1:0"]);
    let addr = metrics_addr(&on);
    let (status, body) = http(
        &addr,
        "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE rend_uptime_seconds gauge"), "{body}");
    // The one that serves metrics listens on its client port and the
    // metrics port; the other on its client port alone, so nothing of it
    // answers HTTP.
    assert_eq!(
        listening_ports(on.pid()),
        BTreeSet::from([port_of(&on.addr), port_of(&addr)]),
        "listening ports with metrics on"
    );
    // rend decides on its metrics port before it serves its first client,
    // so once `off` answers, its listening ports are final.
    let mut c = off.connect();
    assert!(c.line(b"version\r\n").starts_with("VERSION"));
    assert_eq!(
        listening_ports(off.pid()),
        BTreeSet::from([port_of(&off.addr)]),
        "listening ports with metrics off"
    );
    assert!(!off.log().contains("metrics listening on"), "{}", off.log());
}
