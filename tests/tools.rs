//! The tools end to end against real memcached processes: exit codes,
//! report contents, corruption detection through a byte-flipping relay, the
//! open loop's rate and coordinated-omission correction, several servers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, wait_for, Memcached, Rend};
use rend::tools::ketama::{point_name, Continuum};
use rend::tools::workload::{KeyDist, KeyGen};

const BLAST: &str = env!("CARGO_BIN_EXE_blast");
const SETGET: &str = env!("CARGO_BIN_EXE_setget");
const SIZES: &str = env!("CARGO_BIN_EXE_sizes");

fn run(bin: &str, args: &[String]) -> Output {
    let out = Command::new(bin).args(args).output().expect("run tool");
    eprintln!(
        "{bin} {args:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// A memcached on TCP (the tools also take unix sockets, but a relay and
/// several-server tests want ports).
struct TcpMemcached {
    child: std::process::Child,
    port: u16,
}

impl TcpMemcached {
    fn start() -> TcpMemcached {
        let port = free_port();
        let child = Command::new("memcached")
            .args([
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-u",
                "root",
                "-m",
                "64",
                "-t",
                "2",
            ])
            .spawn()
            .expect("memcached");
        wait_for(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .expect("memcached up");
        TcpMemcached { child, port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn conn(&self) -> common::Conn {
        common::Conn::tcp(&self.addr())
    }

    fn stat(&self, name: &str) -> u64 {
        let stats = String::from_utf8(self.conn().req(b"stats\r\n", b"END\r\n")).unwrap();
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    }
}

impl Drop for TcpMemcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// summary.csv as (command, outcome, clock) → columns.
fn summary(dir: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).expect("summary.csv");
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn all_row<'a>(
    rows: &'a [std::collections::HashMap<String, String>],
    clock: &str,
) -> &'a std::collections::HashMap<String, String> {
    rows.iter()
        .find(|r| r["command"] == "all" && r["clock"] == clock)
        .unwrap_or_else(|| panic!("no all/{clock} row"))
}

fn num(row: &std::collections::HashMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?}", row[col]))
}

#[test]
fn blast_counts_add_up_and_percentiles_are_ordered() {
    let mc = Memcached::start();
    let dir = tempfile::tempdir().unwrap();
    let server = mc.l1_arg();
    for proto in ["--text", "--binary"] {
        let out = run(
            BLAST,
            &s(&[
                "-s", &server, proto, "-w", "4", "-n", "3000", "--pipeline", "4",
                "--mix", "get=40,set=20,add=5,replace=5,append=5,prepend=5,multiget=5,gets=5,cas=2,incr=2,decr=2,delete=2,touch=1,gat=1",
                "--csv-dir", dir.path().to_str().unwrap(), "--plot", dir.path().join("p.svg").to_str().unwrap(),
            ]),
        );
        assert!(out.status.success(), "blast {proto} failed");
        let rows = summary(dir.path());
        let all = all_row(&rows, "service");
        assert_eq!(num(all, "count"), 3000.0, "-n counts requests in total");
        let per_row: f64 = rows
            .iter()
            .filter(|r| r["command"] != "all" && r["clock"] == "service")
            .map(|r| num(r, "count"))
            .sum();
        assert_eq!(per_row, 3000.0, "rows add up to -n");
        for r in &rows {
            let p: Vec<f64> = [
                "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us",
            ]
            .iter()
            .map(|c| num(r, c))
            .collect();
            assert!(
                p.windows(2).all(|w| w[0] <= w[1]),
                "percentiles out of order: {r:?}"
            );
        }
        assert!(
            rows.iter()
                .any(|r| r["command"] == "get" && r["outcome"] == "hit"),
            "gets hit after sets"
        );
        let svg = std::fs::read_to_string(dir.path().join("p.svg")).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("get"),
            "plot names the commands"
        );
        let ts = std::fs::read_to_string(dir.path().join("timeseries.csv")).unwrap();
        assert!(
            ts.starts_with("second,command,count,errors,p50_us,p99_us,max_us"),
            "{ts}"
        );
    }
}

#[test]
fn warmup_is_not_counted() {
    let mc = TcpMemcached::start();
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        BLAST,
        &s(&[
            "-s",
            &mc.addr(),
            "-w",
            "2",
            "-n",
            "1000",
            "--warmup",
            "0.5",
            "--mix",
            "get=1",
            "--csv-dir",
            dir.path().to_str().unwrap(),
        ]),
    );
    assert!(out.status.success());
    assert_eq!(
        num(all_row(&summary(dir.path()), "service"), "count"),
        1000.0
    );
    assert!(
        mc.stat("cmd_get") > 1000,
        "warmup traffic reached the server but was not counted"
    );
}

#[test]
fn setget_and_sizes_pass_on_a_healthy_server() {
    let mc = Memcached::start();
    let server = mc.l1_arg();
    let out = run(
        SETGET,
        &s(&[
            "-s",
            &server,
            "-w",
            "3",
            "--key-space",
            "3000",
            "--value-size",
            "0-3000",
            "--pipeline",
            "8",
        ]),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("checked 3000  mismatches 0  misses 0  errors 0"));
    let out = run(
        SIZES,
        &s(&[
            "-s",
            &server,
            "--binary",
            "--max-size",
            "70000",
            "--chunk-size",
            "1000",
            "--key-length",
            "16",
        ]),
    );
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("all sizes passed"), "{stdout}");
    // 0..=64, then geometric steps, plus 3 points around each of 70 chunk
    // multiples.
    let checked: u64 = stdout
        .split("checked ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(checked > 250, "sizes tried only {checked} sizes");
}

#[test]
fn sizes_finds_the_item_limit() {
    // With memcached's default -I 1m, a 16-byte key with nonzero flags (sizes
    // sets flags, to check them) stores at most 1,048,497 bytes: 1,048,517
    // less the key, less 4 bytes for the flags. Told a higher limit, sizes
    // fails at the first size it tries past the real one (1,048,515: one
    // under the limit it was told); told the real one, it passes, one past it
    // being refused as expected.
    let mc = Memcached::start();
    let server = mc.l1_arg();
    let out = run(
        SIZES,
        &s(&[
            "-s",
            &server,
            "--max-size",
            "1048600",
            "--item-limit",
            "1048516",
            "--key-length",
            "16",
        ]),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("first failing size: 1048515"));
    let out = run(
        SIZES,
        &s(&[
            "-s",
            &server,
            "--max-size",
            "1048600",
            "--item-limit",
            "1048497",
            "--key-length",
            "16",
        ]),
    );
    assert!(
        out.status.success(),
        "one past the limit is refused as too large, as expected"
    );
}

/// The port of a rend listening on 127.0.0.1.
fn port_of(rend: &Rend) -> String {
    rend.addr.rsplit(':').next().unwrap().to_string()
}

/// rend in front of a fresh memcached: `l1-only`, `l1-l2` (L2 in a temp
/// dir), each with or without `--chunked`.
fn rend_in_mode(mode: &str) -> (Memcached, tempfile::TempDir, Rend) {
    let mc = Memcached::start();
    let l2 = tempfile::tempdir().unwrap();
    let rend = match mode {
        "l1-only" => Rend::start(&mc, &[]),
        "l1-only --chunked" => Rend::start(&mc, &["--chunked"]),
        "l1-l2" => Rend::start_two_tier(&mc, l2.path(), &[]),
        "l1-l2 --chunked" => Rend::start_two_tier(&mc, l2.path(), &["--chunked"]),
        m => panic!("no mode {m}"),
    };
    (mc, l2, rend)
}

#[test]
fn sizes_passes_out_of_the_box_and_finds_the_real_limit() {
    // A default memcached (only its port chosen): sizes with no options but
    // the port passes and reports the limit for its 16-byte keys.
    let mc = TcpMemcached::start();
    for proto in ["-t", "-b"] {
        let out = run(SIZES, &s(&[proto, "-p", &mc.port.to_string()]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout.contains(
                "item limit: largest value stored 1048497 bytes, smallest refused 1048498 bytes"
            ),
            "{stdout}"
        );
    }
    // A default rend in every mode: its own limit (1,048,516, or 1 MiB when
    // chunked) or memcached's, whichever is lower for the mode.
    for (mode, stored) in [
        ("l1-only", 1_048_497),
        ("l1-only --chunked", 1_048_576),
        ("l1-l2", 1_048_516),
        ("l1-l2 --chunked", 1_048_576),
    ] {
        let (_mc, _l2, rend) = rend_in_mode(mode);
        let out = run(SIZES, &s(&["-p", &port_of(&rend)]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mode}: {stdout}");
        let want = format!(
            "item limit: largest value stored {stored} bytes, smallest refused {} bytes",
            stored + 1
        );
        assert!(stdout.contains(&want), "{mode}: {stdout}");
    }
}

#[test]
fn rends_example_lines_run_as_written_against_rend() {
    // Netflix Rend's README lines, with the port of the rend this test
    // starts (the default l1-l2, as scripts/run.sh starts it).
    let (_mc, _l2, rend) = rend_in_mode("l1-l2");
    let port = port_of(&rend);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().to_str().unwrap();
    let out = run(
        BLAST,
        &s(&[
            "--binary",
            "-w",
            "10",
            "-n",
            "100000",
            "-kl",
            "5",
            "-p",
            &port,
            "--csv-dir",
            csv,
        ]),
    );
    assert!(out.status.success());
    let rows = summary(dir.path());
    assert_eq!(num(all_row(&rows, "service"), "count"), 100_000.0);
    assert!(
        rows.iter().all(|r| r["outcome"] != "error"),
        "no errors: {rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["command"] == "get" && r["outcome"] == "hit"),
        "5-byte keys (-kl 5) hit after sets"
    );
    let out = run(
        SETGET,
        &s(&["--binary", "-n", "100000", "-p", &port, "-w", "10"]),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("checked 100000  mismatches 0  misses 0  errors 0"));
    let out = run(SIZES, &s(&["--binary", "-p", &port]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("all sizes passed"));
}

#[test]
fn sizes_rounds_repeat_the_sweep() {
    let mc = Memcached::start();
    let server = mc.l1_arg();
    let checked = |rounds: &str| -> u64 {
        let out = run(
            SIZES,
            &s(&["-s", &server, "--max-size", "5000", "-n", rounds]),
        );
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .split("checked ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(checked("3"), 3 * checked("1"));
}

#[derive(Clone, Copy)]
enum Tamper {
    /// Flip one bit in the middle of the value.
    Flip,
    /// Remove the whole VALUE block, so the get reads as a miss.
    Drop,
}

/// A relay that tampers once with the first value block (text protocol)
/// longer than `min_len` bytes that passes from server to client.
fn tampering_relay(upstream: String, min_len: usize, tamper: Tamper) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let flipped = Arc::new(AtomicBool::new(false));
    let done = flipped.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                return;
            };
            let mut c2 = client.try_clone().unwrap();
            let mut s2 = server.try_clone().unwrap();
            std::thread::spawn(move || std::io::copy(&mut c2, &mut s2));
            let done = done.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let mut pending = Vec::new();
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    // Send everything but an incomplete VALUE block, which
                    // waits for its end so it can be tampered with whole.
                    let mut keep = 0;
                    if !done.load(Ordering::SeqCst) {
                        let mut at = 0;
                        while let Some(i) = find(&pending[at..], b"VALUE ") {
                            let start = at + i;
                            let Some(nl) = find(&pending[start..], b"\r\n") else {
                                keep = pending.len() - start;
                                break;
                            };
                            let header =
                                String::from_utf8_lossy(&pending[start..start + nl]).into_owned();
                            let len: usize = header
                                .split(' ')
                                .nth(3)
                                .and_then(|l| l.parse().ok())
                                .unwrap_or(0);
                            let data = start + nl + 2;
                            if data + len + 2 > pending.len() {
                                keep = pending.len() - start;
                                break;
                            }
                            if len > min_len {
                                match tamper {
                                    Tamper::Flip => pending[data + len / 2] ^= 0x01,
                                    Tamper::Drop => {
                                        pending.drain(start..data + len + 2);
                                    }
                                }
                                done.store(true, Ordering::SeqCst);
                                break;
                            }
                            at = data + len + 2;
                        }
                    }
                    let send = pending.len() - keep;
                    if client.write_all(&pending[..send]).is_err() {
                        return;
                    }
                    pending.drain(..send);
                }
            });
        }
    });
    (addr, flipped)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn setget_and_sizes_detect_a_flipped_byte() {
    let mc = TcpMemcached::start();
    let (relay, flipped) = tampering_relay(mc.addr(), 10, Tamper::Flip);
    let out = run(
        SETGET,
        &s(&[
            "-s",
            &relay,
            "-w",
            "1",
            "--key-space",
            "200",
            "--value-size",
            "100",
            "--pipeline",
            "1",
        ]),
    );
    assert!(flipped.load(Ordering::SeqCst), "the relay flipped a byte");
    assert_eq!(out.status.code(), Some(1), "setget must fail on corruption");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mismatches 1 "), "{stdout}");
    assert!(
        stdout.contains("mismatch: key:"),
        "the key is named: {stdout}"
    );

    let (relay, flipped) = tampering_relay(mc.addr(), 300, Tamper::Flip);
    let out = run(SIZES, &s(&["-s", &relay, "--max-size", "2000"]));
    assert!(flipped.load(Ordering::SeqCst));
    assert_eq!(out.status.code(), Some(1), "sizes must fail on corruption");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first: usize = stdout
        .split("first failing size: ")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(first > 300 && first <= 2000, "{stdout}");
}

#[test]
fn setget_detects_a_dropped_value() {
    let mc = TcpMemcached::start();
    let (relay, dropped) = tampering_relay(mc.addr(), 10, Tamper::Drop);
    let out = run(
        SETGET,
        &s(&[
            "-s",
            &relay,
            "-w",
            "1",
            "--key-space",
            "200",
            "--value-size",
            "100",
        ]),
    );
    assert!(dropped.load(Ordering::SeqCst), "the relay dropped a value");
    assert_eq!(out.status.code(), Some(1), "a missing value fails the run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("misses 1 "), "{stdout}");
    assert!(stdout.contains("miss: key:"), "{stdout}");
}

#[test]
fn open_loop_rate_and_coordinated_omission() {
    let mc = TcpMemcached::start();
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap().to_string();
    // The open loop keeps to its schedule: never more requests than the
    // rate allows over the run (a closed loop against memcached would send
    // tens of thousands), and on this shared machine at least half of them
    // (an achieved-rate bound belongs to a benchmark, not a test).
    let out = run(
        BLAST,
        &s(&[
            "-s",
            &mc.addr(),
            "-w",
            "4",
            "--rate",
            "2000",
            "--duration",
            "2",
            "--mix",
            "get=9,set=1",
            "--csv-dir",
            &dir_s,
        ]),
    );
    assert!(out.status.success());
    let rows = summary(dir.path());
    let sent = num(all_row(&rows, "service"), "count");
    assert!(
        (2000.0..=4000.0 + 4.0).contains(&sent),
        "{sent} requests in 2 s at 2000/s"
    );

    // Stall the server for half a second mid-run.
    let child = Command::new(BLAST)
        .args(s(&[
            "-s",
            &mc.addr(),
            "-w",
            "2",
            "--rate",
            "2000",
            "--duration",
            "3",
            "--mix",
            "get=1",
            "--csv-dir",
            &dir_s,
        ]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = mc.stat("cmd_get");
    wait_for(Duration::from_secs(5), || mc.stat("cmd_get") > base + 1500)
        .expect("blast is running");
    common::signal(mc.child.id(), "STOP");
    std::thread::sleep(Duration::from_millis(500));
    common::signal(mc.child.id(), "CONT");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let rows = summary(dir.path());
    let service = all_row(&rows, "service");
    let intended = all_row(&rows, "intended");
    eprintln!("service {service:?}\nintended {intended:?}");
    assert!(
        num(intended, "max_us") >= 400_000.0,
        "the stall shows from the intended send time"
    );
    assert!(
        num(intended, "p90_us") > 10.0 * num(service, "p90_us"),
        "intended-time percentiles exceed actual-send ones"
    );
}

#[test]
fn several_servers_share_the_keys_by_ketama() {
    let servers: Vec<TcpMemcached> = (0..3).map(|_| TcpMemcached::start()).collect();
    let mut args = s(&[
        "-w",
        "2",
        "--key-space",
        "3000",
        "--value-size",
        "10",
        "--pipeline",
        "16",
    ]);
    for m in &servers {
        args.push("-s".into());
        args.push(m.addr());
    }
    let out = run(SETGET, &args);
    assert!(out.status.success());
    let items: Vec<u64> = servers.iter().map(|m| m.stat("curr_items")).collect();
    assert_eq!(items.iter().sum::<u64>(), 3000, "{items:?}");
    assert!(
        items.iter().all(|&n| n > 500),
        "keys spread over every server: {items:?}"
    );
    // Every key sits where ketama (as twemproxy computes it) puts it.
    let names: Vec<String> = servers
        .iter()
        .map(|m| point_name(&m.addr()).to_string())
        .collect();
    let ring = Continuum::new(&names);
    let mut conns: Vec<common::Conn> = servers.iter().map(|m| m.conn()).collect();
    let keys = KeyGen::new(3000, KeyDist::Sequential, 16).unwrap();
    for i in (0..3000).step_by(97) {
        let key = String::from_utf8(keys.key(i).to_vec()).unwrap();
        let home = ring.server_for(key.as_bytes());
        for (j, c) in conns.iter_mut().enumerate() {
            let reply = c.req(format!("get {key}\r\n").as_bytes(), b"END\r\n");
            assert_eq!(
                reply.starts_with(b"VALUE "),
                j == home,
                "{key} on server {j}, ketama says {home}"
            );
        }
    }
}

/// blast's `mg` (the meta get `mg <key> v f t`) against memcached directly
/// and through an l1-only rend: every key written first, so every mg hits;
/// with the binary protocol it is refused before anything is sent.
#[test]
fn blast_sends_meta_gets_in_text_only() {
    let (_mc, _l2, rend) = rend_in_mode("l1-only");
    let direct = Memcached::start();
    for server in [rend.addr.clone(), direct.l1_arg()] {
        let dir = tempfile::tempdir().unwrap();
        let load = |mix: &str| {
            run(
                BLAST,
                &s(&[
                    "-s",
                    &server,
                    "-w",
                    "4",
                    "-n",
                    "2000",
                    "--key-space",
                    "200",
                    "--mix",
                    mix,
                    "--csv-dir",
                    dir.path().to_str().unwrap(),
                ]),
            )
        };
        assert!(load("set=1").status.success());
        // Every key of the 200, written by a sequential pass.
        let out = run(
            BLAST,
            &s(&[
                "-s",
                &server,
                "-n",
                "200",
                "--key-space",
                "200",
                "--key-dist",
                "sequential",
                "--mix",
                "set=1",
            ]),
        );
        assert!(out.status.success());
        assert!(load("mg=1").status.success(), "blast mg against {server}");
        let rows = summary(dir.path());
        let hits = rows
            .iter()
            .find(|r| r["command"] == "mg" && r["outcome"] == "hit" && r["clock"] == "service")
            .map_or(0.0, |r| num(r, "count"));
        assert_eq!(hits, 2000.0, "every mg hits through {server}: {rows:?}");
    }
    let out = run(
        BLAST,
        &s(&["-s", &rend.addr, "--binary", "-n", "10", "--mix", "mg=1"]),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mg is a text command"));
}
