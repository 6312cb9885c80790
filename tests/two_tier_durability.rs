//! l1-l2 durability (DESIGN §3, §5): L2 (RocksDB) is the source of truth.
//! Against real memcached processes and a real rend on a temp L2 directory:
//! everything survives a clean restart with its flags and absolute expiry;
//! every acknowledged write survives SIGKILL; the disk bound refuses writes
//! without losing acknowledged ones; one rend per directory; TTLs reach both
//! tiers and back-fills keep the remaining TTL; and the default run (no
//! `--orca`, no `--l1`) is l1-l2 with its own memcached.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    bin_req, read_line, read_values, set_extras, signal, wait_for, Conn, Memcached, Rend, REND,
};

const BIN_SET: u8 = 0x01;
const GETE: u8 = 0x40;
/// The first byte of every L1 item l1-l2 writes, then L2's cas (8 bytes).
const L1_TAG: u8 = 0xA5;
const L1_HEADER: usize = 9;
const OUT_OF_MEMORY: &str = "SERVER_ERROR out of memory storing object\r\n";

// ============================================================================
// Helpers
// ============================================================================

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `len` pseudo-random bytes (any byte, CR and LF included) from `seed`:
/// incompressible, and a value from another key or a torn write shows.
fn seeded(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut s = seed;
    while out.len() < len {
        s = splitmix(s);
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn seed_of(key: &[u8]) -> u64 {
    key.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    })
}

fn store_req(verb: &str, key: &[u8], flags: u32, exptime: i64, value: &[u8]) -> Vec<u8> {
    let mut req = format!("{verb} ").into_bytes();
    req.extend_from_slice(key);
    req.extend_from_slice(format!(" {flags} {exptime} {}\r\n", value.len()).as_bytes());
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n");
    req
}

fn line_str(c: &mut Conn) -> String {
    String::from_utf8_lossy(&read_line(c)).into_owned()
}

/// Text multi-get: for each key, its flags and data or `None`.
fn get_many(c: &mut Conn, keys: &[Vec<u8>]) -> Vec<Option<(u32, Vec<u8>)>> {
    let mut req = b"get".to_vec();
    for k in keys {
        req.push(b' ');
        req.extend_from_slice(k);
    }
    req.extend_from_slice(b"\r\n");
    c.send(&req);
    let mut values = read_values(c).into_iter().peekable();
    let out: Vec<_> = keys
        .iter()
        .map(|k| match values.peek() {
            Some(v) if &v.key == k => values.next().map(|v| (v.flags, v.data)),
            _ => None,
        })
        .collect();
    assert!(values.next().is_none(), "values out of order or unasked");
    out
}

fn get(c: &mut Conn, key: &[u8]) -> Option<(u32, Vec<u8>)> {
    get_many(c, &[key.to_vec()]).pop().unwrap()
}

/// What binary GETE (L2's view in l1-l2) says of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Gete {
    flags: u32,
    expiry: u32,
    cas: u64,
    data: Vec<u8>,
}

/// Pipelined GETE of `keys`.
fn gete_many(c: &mut Conn, keys: &[Vec<u8>]) -> Vec<Option<Gete>> {
    let mut req = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        req.extend_from_slice(&bin_req(GETE, i as u32, 0, &[], k, &[]));
    }
    c.send(&req);
    (0..keys.len())
        .map(|i| {
            let p = c.packet();
            assert_eq!((p.magic, p.opcode, p.opaque), (0x81, GETE, i as u32));
            match p.status {
                0 => {
                    assert_eq!(p.extras.len(), 8, "GETE extras are flags and expiry");
                    Some(Gete {
                        flags: u32::from_be_bytes(p.extras[..4].try_into().unwrap()),
                        expiry: u32::from_be_bytes(p.extras[4..].try_into().unwrap()),
                        cas: p.cas,
                        data: p.value,
                    })
                }
                1 => None,
                s => panic!(
                    "GETE status {s:#x}: {:?}",
                    String::from_utf8_lossy(&p.value)
                ),
            }
        })
        .collect()
}

fn gete(c: &mut Conn, key: &[u8]) -> Option<Gete> {
    gete_many(c, &[key.to_vec()]).pop().unwrap()
}

/// memcached's own view of an item (`mg <key> t f v`): remaining TTL (-1
/// for none), flags, raw data.
#[derive(Clone, Debug, PartialEq, Eq)]
struct L1Item {
    ttl: i64,
    flags: u32,
    data: Vec<u8>,
}

fn mg(m: &mut Conn, key: &[u8]) -> Option<L1Item> {
    let mut req = b"mg ".to_vec();
    req.extend_from_slice(key);
    req.extend_from_slice(b" t f v\r\n");
    m.send(&req);
    let line = line_str(m);
    if line == "EN\r\n" {
        return None;
    }
    let t: Vec<&str> = line.trim_end().split(' ').collect();
    assert!(t.len() == 4 && t[0] == "VA", "unexpected mg reply {line:?}");
    let len: usize = t[1].parse().unwrap();
    let ttl = t[2].strip_prefix('t').unwrap().parse().unwrap();
    let flags = t[3].strip_prefix('f').unwrap().parse().unwrap();
    let mut data = m.read_exact_n(len + 2);
    assert_eq!(&data[len..], b"\r\n");
    data.truncate(len);
    Some(L1Item { ttl, flags, data })
}

/// The L1 item l1-l2 writes for L2's cas and value.
fn wrapped(cas: u64, data: &[u8]) -> Vec<u8> {
    let mut out = vec![L1_TAG];
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Poll memcached until it holds `key`: a back-fill is asynchronous, and
/// one whose L1 call timed out (a loaded machine) is dropped, so every
/// second without it the key is read through rend (`c`) again.
fn wait_l1(m: &mut Conn, c: &mut Conn, key: &[u8]) -> L1Item {
    let start = Instant::now();
    let mut next_read = start + Duration::from_secs(1);
    let mut found = None;
    wait_for(Duration::from_secs(10), || {
        found = mg(m, key);
        if found.is_none() && Instant::now() > next_read {
            eprintln!(
                "{:?} not back-filled after {:?}; reading it again",
                String::from_utf8_lossy(key),
                start.elapsed()
            );
            assert!(get(c, key).is_some(), "read through rend misses");
            next_read += Duration::from_secs(1);
        }
        found.is_some()
    })
    .unwrap_or_else(|_| panic!("{:?} never reached L1", String::from_utf8_lossy(key)));
    found.unwrap()
}

fn ok_exit(rend: &mut Rend) {
    let status = rend
        .terminate(Duration::from_secs(30))
        .expect("rend exits within 30 s of SIGTERM");
    assert!(status.success(), "rend exit status {status}");
}

/// The address after `marker` in rend's log.
fn logged(rend: &Rend, marker: &str) -> Option<String> {
    let log = rend.log();
    let i = log.find(marker)?;
    log[i + marker.len()..]
        .split_whitespace()
        .next()
        .map(str::to_string)
}

// ============================================================================
// 1. Persistence across a clean restart
// ============================================================================

/// Key `i` of the persistence test: its flags, exptime as sent, and value.
fn persist_item(i: u64, abs_base: u32) -> (Vec<u8>, u32, i64, Vec<u8>) {
    let key = format!("persist:{i:05}").into_bytes();
    let h = splitmix(i);
    let len = if i.is_multiple_of(97) {
        0
    } else {
        (h % 5001) as usize
    };
    let flags = match i % 101 {
        0 => 0,
        1 => u32::MAX,
        _ => (h >> 32) as u32,
    };
    let exptime = match i % 3 {
        0 => 0,
        1 => 3600,
        // Past 30 days: an absolute Unix time.
        _ => i64::from(abs_base) + 7200,
    };
    let value = seeded(seed_of(&key), len);
    (key, flags, exptime, value)
}

#[test]
fn everything_survives_a_clean_restart_with_flags_and_absolute_expiry() {
    const N: u64 = 10_000;
    const BATCH: u64 = 250;
    let l2 = tempfile::tempdir().unwrap();
    let mc = Memcached::start();
    let mut rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let abs_base = now();
    let items: Vec<_> = (0..N).map(|i| persist_item(i, abs_base)).collect();

    let before = now();
    let mut c = rend.connect();
    for batch in items.chunks(BATCH as usize) {
        let mut req = Vec::new();
        for (key, flags, exptime, value) in batch {
            req.extend_from_slice(&store_req("set", key, *flags, *exptime, value));
        }
        c.send(&req);
        for (key, ..) in batch {
            let reply = line_str(&mut c);
            assert_eq!(reply, "STORED\r\n", "set {}", String::from_utf8_lossy(key));
        }
    }
    let after = now();
    drop(c);
    ok_exit(&mut rend);
    drop(rend);
    drop(mc);

    // A fresh memcached: every read below is answered by L2.
    let mc = Memcached::start();
    let rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let mut c = rend.connect();
    let mut b = rend.connect();
    let expected_expiry = |exptime: i64| -> (u32, u32) {
        match exptime {
            0 => (0, 0),
            3600 => (before + 3600, after + 3600),
            abs => (abs as u32, abs as u32),
        }
    };

    // L2's view: value, flags, absolute expiry.
    let mut cas_of = Vec::with_capacity(N as usize);
    for batch in items.chunks(500) {
        let keys: Vec<Vec<u8>> = batch.iter().map(|it| it.0.clone()).collect();
        for ((key, flags, exptime, value), got) in batch.iter().zip(gete_many(&mut b, &keys)) {
            let name = String::from_utf8_lossy(key);
            let got = got.unwrap_or_else(|| panic!("{name} lost across the restart"));
            assert!(got.data == *value, "{name}: value differs after restart");
            assert_eq!(got.flags, *flags, "{name}: flags");
            let (lo, hi) = expected_expiry(*exptime);
            assert!(
                (lo..=hi).contains(&got.expiry),
                "{name}: expiry {} not in {lo}..={hi} (exptime {exptime}): a fresh TTL?",
                got.expiry
            );
            cas_of.push(got.cas);
        }
    }

    // Text gets (L1 misses, read from L2, back-filled).
    for batch in items.chunks(100) {
        let keys: Vec<Vec<u8>> = batch.iter().map(|it| it.0.clone()).collect();
        for ((key, flags, _, value), got) in batch.iter().zip(get_many(&mut c, &keys)) {
            let name = String::from_utf8_lossy(key);
            let (f, data) = got.unwrap_or_else(|| panic!("{name}: text get misses"));
            assert!(data == *value, "{name}: text get value differs");
            assert_eq!(f, *flags, "{name}: text get flags");
        }
    }

    // The back-filled L1 items: L2's cas and value, the client's flags, and
    // the remaining (not a fresh) TTL.
    let mut m = mc.connect();
    for (i, (key, flags, exptime, value)) in items.iter().enumerate().step_by(7) {
        let name = String::from_utf8_lossy(key);
        let l1 = wait_l1(&mut m, &mut c, key);
        assert!(l1.data == wrapped(cas_of[i], value), "{name}: L1 item");
        assert_eq!(l1.flags, *flags, "{name}: L1 flags");
        if *exptime == 0 {
            assert_eq!(l1.ttl, -1, "{name}: L1 TTL");
        } else {
            let (lo, hi) = expected_expiry(*exptime);
            let t = i64::from(now());
            assert!(
                l1.ttl >= i64::from(lo) - t - 2 && l1.ttl <= i64::from(hi) - t + 2,
                "{name}: L1 TTL {} for expiry {lo}..={hi} at {t}",
                l1.ttl
            );
        }
    }
}

// ============================================================================
// 2. Every acknowledged write survives SIGKILL
// ============================================================================

/// Slots the overwriting writer cycles through.
const SLOTS: usize = 50;

/// What a crash writer sends as its request `i`: distinct keys, or
/// (`overwrite`) versions of one of [`SLOTS`] keys, each value naming its
/// version.
fn crash_item(w: usize, overwrite: bool, i: usize) -> (Vec<u8>, u32, Vec<u8>) {
    let key = if overwrite {
        format!("crash:{w}:slot{:02}", i % SLOTS).into_bytes()
    } else {
        format!("crash:{w}:{i:07}").into_bytes()
    };
    let seed = splitmix((w as u64) << 40 | i as u64);
    let mut value = (i as u64).to_le_bytes().to_vec();
    value.extend_from_slice(&seeded(seed, (splitmix(seed) % 3000) as usize));
    (key, (w * 10_000_000 + i) as u32, value)
}

struct WriterEnd {
    acked: usize,
    /// Requests whose sending began (some of them may be stored).
    attempted: usize,
    unexpected: Option<String>,
}

/// Sets, at most `depth` unanswered, until rend goes away (or `stop`).
/// `progress` counts acknowledgements as they come.
fn crash_writer(
    addr: &str,
    (w, depth, overwrite): (usize, usize, bool),
    stop: &AtomicBool,
    progress: &AtomicUsize,
) -> WriterEnd {
    const MAX: usize = 5_000_000;
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    let mut end = WriterEnd {
        acked: 0,
        attempted: 0,
        unexpected: None,
    };
    let mut line = Vec::new();
    loop {
        while end.attempted < end.acked + depth
            && end.attempted < MAX
            && !stop.load(Ordering::Relaxed)
        {
            let (key, flags, value) = crash_item(w, overwrite, end.attempted);
            let req = store_req("set", &key, flags, 0, &value);
            end.attempted += 1;
            if out.write_all(&req).is_err() {
                return end;
            }
        }
        if end.acked == end.attempted {
            return end;
        }
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(n) if n > 0 && line.ends_with(b"\r\n") => {}
            _ => return end,
        }
        if line != b"STORED\r\n" {
            end.unexpected = Some(String::from_utf8_lossy(&line).into_owned());
            return end;
        }
        end.acked += 1;
        progress.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn acknowledged_sets_survive_sigkill() {
    // (writer, requests in flight, overwrites): two wait for each reply, one
    // keeps 16 in flight, one overwrites a few keys again and again.
    const WRITERS: [(usize, usize, bool); 4] =
        [(0, 1, false), (1, 1, false), (2, 16, false), (3, 1, true)];
    let l2 = tempfile::tempdir().unwrap();
    let mc = Memcached::start();
    let mut rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = WRITERS
        .iter()
        .map(|&spec| {
            let (addr, stop, progress) = (rend.addr.clone(), stop.clone(), progress.clone());
            std::thread::spawn(move || crash_writer(&addr, spec, &stop, &progress))
        })
        .collect();
    wait_for(Duration::from_secs(10), || {
        progress.load(Ordering::Relaxed) >= 100
    })
    .expect("sets are acknowledged");
    std::thread::sleep(Duration::from_secs(1));
    signal(rend.pid(), "KILL");
    let _ = rend.child.wait();
    stop.store(true, Ordering::Relaxed);
    let ends: Vec<WriterEnd> = writers
        .into_iter()
        .map(|w| w.join().expect("writer panicked"))
        .collect();
    for (w, end) in ends.iter().enumerate() {
        assert!(
            end.unexpected.is_none(),
            "writer {w}: unexpected reply {:?}",
            end.unexpected
        );
        assert!(
            end.acked > SLOTS,
            "writer {w}: only {} acknowledged",
            end.acked
        );
    }
    drop(rend);

    let mc = Memcached::start();
    let rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let mut c = rend.connect();
    let mut in_flight_present = 0;
    for (&(w, _, overwrite), end) in WRITERS.iter().zip(&ends) {
        if overwrite {
            // Each slot holds a version written, no older than its last
            // acknowledged one.
            let keys: Vec<Vec<u8>> = (0..SLOTS).map(|s| crash_item(w, true, s).0).collect();
            for (s, got) in get_many(&mut c, &keys).into_iter().enumerate() {
                let name = String::from_utf8_lossy(&keys[s]).into_owned();
                let last_acked = (0..end.acked).rev().find(|i| i % SLOTS == s).unwrap();
                let (flags, data) = got.unwrap_or_else(|| panic!("{name} lost by SIGKILL"));
                let version = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
                assert!(
                    version % SLOTS == s && version < end.attempted,
                    "{name}: version {version} was never written"
                );
                let (_, f, v) = crash_item(w, true, version);
                assert!(data == v && flags == f, "{name}: corrupted value");
                assert!(
                    version >= last_acked,
                    "{name}: version {version} after SIGKILL, but {last_acked} was acknowledged"
                );
            }
            continue;
        }
        // Past what was attempted nothing may exist; a little of it is
        // checked.
        let items: Vec<_> = (0..end.attempted + 20)
            .map(|i| crash_item(w, false, i))
            .collect();
        let keys: Vec<Vec<u8>> = items.iter().map(|it| it.0.clone()).collect();
        for (start, batch) in keys.chunks(100).enumerate().map(|(b, k)| (b * 100, k)) {
            for (j, got) in get_many(&mut c, batch).into_iter().enumerate() {
                let i = start + j;
                let name = String::from_utf8_lossy(&batch[j]).into_owned();
                match got {
                    Some((flags, data)) => {
                        assert!(
                            i < end.attempted,
                            "{name} present but never sent (writer {w} sent {})",
                            end.attempted
                        );
                        assert!(data == items[i].2, "{name}: corrupted value");
                        assert_eq!(flags, items[i].1, "{name}: flags");
                        if i >= end.acked {
                            in_flight_present += 1;
                        }
                    }
                    None => assert!(
                        i >= end.acked,
                        "{name} acknowledged (writer {w}: {} acked) but lost by SIGKILL",
                        end.acked
                    ),
                }
            }
        }
    }
    let acked: usize = ends.iter().map(|e| e.acked).sum();
    eprintln!(
        "acknowledged before SIGKILL: {acked}; unacknowledged but present: {in_flight_present}"
    );
}

// ============================================================================
// 3. The disk bound refuses, never loses
// ============================================================================

const BOUND: u64 = 2_000_000;
const BIG: usize = 10 * 1024;

fn full_key(i: usize) -> Vec<u8> {
    format!("full:{i:04}").into_bytes()
}

fn full_value(key: &[u8]) -> Vec<u8> {
    seeded(seed_of(key), BIG)
}

/// Set keys `from..` of 10 KiB, `pause` apart, until refused, then `more`
/// sets after the first refusal: the keys stored and the keys refused.
fn fill(c: &mut Conn, from: usize, more: usize, pause: Duration) -> (Vec<usize>, Vec<usize>) {
    let (mut stored, mut refused) = (Vec::new(), Vec::new());
    let mut i = from;
    while refused.len() <= more {
        assert!(
            i < from + 1000,
            "{BOUND} bytes hold no 1000 values of 10 KiB"
        );
        let k = full_key(i);
        match c
            .line(&store_req("set", &k, i as u32, 0, &full_value(&k)))
            .as_str()
        {
            "STORED\r\n" => stored.push(i),
            OUT_OF_MEMORY => refused.push(i),
            other => panic!("set {i}: {other:?}"),
        }
        i += 1;
        std::thread::sleep(pause);
    }
    (stored, refused)
}

/// Stored keys read back exactly (text get: L1, or L2 after a restart);
/// refused and deleted ones are in neither tier.
fn check_bound(
    (c, b, m): (&mut Conn, &mut Conn, &mut Conn),
    stored: &[usize],
    absent: &[usize],
    when: &str,
) {
    for &i in stored {
        let k = full_key(i);
        assert!(
            get(c, &k) == Some((i as u32, full_value(&k))),
            "{when}: acknowledged key {i} lost or changed"
        );
    }
    for &i in absent {
        let k = full_key(i);
        assert!(get(c, &k).is_none(), "{when}: key {i} is present");
        assert!(gete(b, &k).is_none(), "{when}: key {i} is in L2");
        assert!(mg(m, &k).is_none(), "{when}: key {i} is in L1");
    }
}

#[test]
fn disk_bound_refuses_writes_and_keeps_every_acknowledged_one() {
    let bound = BOUND.to_string();
    let flags = ["--l2-max-bytes", bound.as_str()];
    let l2 = tempfile::tempdir().unwrap();
    let mc = Memcached::start();
    let mut rend = Rend::start_two_tier(&mc, l2.path(), &flags);
    let mut c = rend.connect();
    let mut b = rend.connect();
    let mut m = mc.connect();

    // How many fit depends on when rend last measured RocksDB (see the
    // ignored test below); what is refused and what is kept must not.
    let (mut stored, mut absent) = fill(&mut c, 0, 20, Duration::ZERO);
    eprintln!("stored {}, refused {}", stored.len(), absent.len());
    assert!(
        stored.len() as u64 * BIG as u64 <= BOUND,
        "{} values of {BIG} bytes acknowledged under a bound of {BOUND}",
        stored.len()
    );

    // An overwrite at the bound is refused too; the old value stays, in
    // both tiers alike.
    let first = full_key(stored[0]);
    let reply = c.line(&store_req("set", &first, 7, 0, &seeded(1, BIG)));
    assert_eq!(reply, OUT_OF_MEMORY, "overwrite at the bound");
    assert!(get(&mut c, &first) == Some((stored[0] as u32, full_value(&first))));
    assert!(gete(&mut b, &first).map(|g| g.data) == Some(full_value(&first)));
    assert!(
        mg(&mut m, &first).map(|it| it.data[L1_HEADER..].to_vec()) == Some(full_value(&first)),
        "L1 keeps what L2 keeps"
    );
    // Deletes go through at the bound.
    let gone = stored.pop().unwrap();
    assert_eq!(
        c.line(&delete_req(&full_key(gone))),
        "DELETED\r\n",
        "delete at the bound"
    );
    absent.push(gone);
    check_bound((&mut c, &mut b, &mut m), &stored, &absent, "before restart");
    drop((c, b, m));
    ok_exit(&mut rend);
    drop(rend);
    drop(mc);

    // A fresh memcached: reads come from L2.
    let mc = Memcached::start();
    let rend = Rend::start_two_tier(&mc, l2.path(), &flags);
    let mut c = rend.connect();
    let mut b = rend.connect();
    let mut m = mc.connect();
    check_bound((&mut c, &mut b, &mut m), &stored, &absent, "after restart");
    // The bound still holds: whatever more is accepted is kept, and all of
    // it stays within the bound.
    let (more, refused) = fill(&mut c, 1000, 5, Duration::ZERO);
    stored.extend(more);
    absent.extend(refused);
    assert!(
        stored.len() as u64 * BIG as u64 <= BOUND,
        "{} values of {BIG} bytes acknowledged under a bound of {BOUND} (after the restart)",
        stored.len()
    );
    check_bound((&mut c, &mut b, &mut m), &stored, &absent, "filled again");
}

/// The bound is disk use, whatever the write rate: a writer pausing between
/// sets fills it with data as a fast one does (it once counted ~2.4 MB of
/// memtable arena and bloom filter, RAM, as soon as one value was written).
#[test]
fn disk_bound_admits_data_up_to_the_bound_at_any_write_rate() {
    let bound = BOUND.to_string();
    let l2 = tempfile::tempdir().unwrap();
    let mc = Memcached::start();
    let rend = Rend::start_two_tier(&mc, l2.path(), &["--l2-max-bytes", bound.as_str()]);
    let mut c = rend.connect();
    let (stored, _) = fill(&mut c, 0, 0, Duration::from_millis(20));
    assert!(
        stored.len() as u64 * BIG as u64 >= BOUND / 2,
        "refused after {} values of {BIG} bytes (~{} KB of data) \
         under a bound of {BOUND} bytes",
        stored.len(),
        stored.len() * BIG / 1000
    );
}

#[test]
fn disk_bound_holds_under_concurrent_pipelined_writers() {
    const MAX_BYTES: u64 = 2_000_000;
    const VALUE: usize = 10 * 1024;
    const DEPTH: usize = 8;
    let bound = MAX_BYTES.to_string();
    let l2 = tempfile::tempdir().unwrap();
    let mc = Memcached::start();
    let rend = Rend::start_two_tier(&mc, l2.path(), &["--l2-max-bytes", bound.as_str()]);
    let key = |t: usize, i: usize| format!("cfull:{t}:{i:04}").into_bytes();
    let value = |k: &[u8]| seeded(seed_of(k), VALUE);

    // Four connections, each with 8 sets in flight, until each has seen
    // ten refusals.
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let mut c = rend.connect();
            std::thread::spawn(move || {
                let (mut stored, mut refused) = (Vec::new(), Vec::new());
                let mut i = 0;
                while refused.len() < 10 {
                    assert!(i < 1000, "writer {t}: never refused");
                    let mut req = Vec::new();
                    for j in i..i + DEPTH {
                        let k = key(t, j);
                        req.extend_from_slice(&store_req("set", &k, j as u32, 0, &value(&k)));
                    }
                    c.send(&req);
                    for j in i..i + DEPTH {
                        match line_str(&mut c).as_str() {
                            "STORED\r\n" => stored.push(j),
                            OUT_OF_MEMORY => refused.push(j),
                            other => panic!("set {t}:{j}: {other:?}"),
                        }
                    }
                    i += DEPTH;
                }
                (stored, refused)
            })
        })
        .collect();
    let results: Vec<(Vec<usize>, Vec<usize>)> = writers
        .into_iter()
        .map(|w| w.join().expect("writer panicked"))
        .collect();
    let total: usize = results.iter().map(|r| r.0.len()).sum();
    eprintln!("concurrent: stored {total}");
    assert!(
        total as u64 * VALUE as u64 <= MAX_BYTES,
        "{total} values of {VALUE} bytes acknowledged under a bound of {MAX_BYTES}"
    );

    let mut c = rend.connect();
    let mut m = mc.connect();
    for (t, (stored, refused)) in results.iter().enumerate() {
        for &i in stored {
            let k = key(t, i);
            assert_eq!(
                get(&mut c, &k),
                Some((i as u32, value(&k))),
                "stored key {t}:{i} lost"
            );
        }
        for &i in refused {
            let k = key(t, i);
            assert_eq!(get(&mut c, &k), None, "refused key {t}:{i} is present");
            assert_eq!(mg(&mut m, &k), None, "refused key {t}:{i} is in L1");
        }
    }
}

// ============================================================================
// 4. One rend per L2 directory
// ============================================================================

/// Run rend with `args` to its exit (at most 20 s): status and stderr.
fn run_to_exit(args: &[String]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(REND)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rend");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second rend is still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
}

#[test]
fn a_second_rend_on_the_same_directory_fails_and_the_first_keeps_serving() {
    let l2 = tempfile::tempdir().unwrap();
    let mc = Memcached::start();
    let mut rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let mut c = rend.connect();
    assert_eq!(c.line(b"set before 3 0 5\r\nfirst\r\n"), "STORED\r\n");
    let dir = l2.path().display().to_string();

    let with_l1 = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--batch-listen".into(),
        "127.0.0.1:0".into(),
        "--orca".into(),
        "l1-l2".into(),
        "--l1".into(),
        mc.l1_arg(),
        "--l2-path".into(),
        dir.clone(),
    ];
    // And with its own memcached, which it must not start (or must stop).
    let embedded = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--batch-listen".into(),
        "127.0.0.1:0".into(),
        "--orca".into(),
        "l1-l2".into(),
        "--l2-path".into(),
        dir.clone(),
    ];
    for args in [with_l1, embedded] {
        let (status, stderr) = run_to_exit(&args);
        assert!(!status.success(), "second rend exited {status}:\n{stderr}");
        assert!(
            stderr.contains(&dir) && stderr.contains("in use"),
            "stderr must name {dir} and say it is in use:\n{stderr}"
        );
        assert!(
            !stderr.contains("started embedded memcached"),
            "a refused rend starts no memcached:\n{stderr}"
        );
    }

    // The first serves on: old connection, new connection, both tiers.
    assert!(
        rend.child.try_wait().unwrap().is_none(),
        "the first rend died"
    );
    assert_eq!(get(&mut c, b"before"), Some((3, b"first".to_vec())));
    let mut c2 = rend.connect();
    assert_eq!(c2.line(b"set after 4 0 6\r\nsecond\r\n"), "STORED\r\n");
    assert_eq!(get(&mut c2, b"after"), Some((4, b"second".to_vec())));
    assert_eq!(
        gete(&mut rend.connect(), b"before").map(|g| g.data),
        Some(b"first".to_vec())
    );
    let mut b = rend.connect_batch();
    assert_eq!(get(&mut b, b"after"), Some((4, b"second".to_vec())));
}

// ============================================================================
// 5. TTLs in both tiers; back-fills keep the remaining TTL
// ============================================================================

fn delete_req(key: &[u8]) -> Vec<u8> {
    let mut req = b"delete ".to_vec();
    req.extend_from_slice(key);
    req.extend_from_slice(b"\r\n");
    req
}

#[test]
fn ttls_reach_both_tiers_and_backfills_keep_the_remaining_ttl() {
    let l2 = tempfile::tempdir().unwrap();
    let mc = Memcached::start();
    let rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let mut c = rend.connect();
    let mut b = rend.connect();
    let mut m = mc.connect();
    let t0 = now();

    // Short TTLs, given four ways.
    assert_eq!(c.line(b"set short:set 1 2 3\r\nabc\r\n"), "STORED\r\n");
    b.send(&bin_req(
        BIN_SET,
        1,
        0,
        &set_extras(2, 2),
        b"short:bin",
        b"def",
    ));
    assert_eq!(b.packet().status, 0, "binary set");
    assert_eq!(c.line(b"set short:touch 3 0 3\r\nghi\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"touch short:touch 2\r\n"), "TOUCHED\r\n");
    assert_eq!(c.line(b"set short:gat 4 0 3\r\njkl\r\n"), "STORED\r\n");
    assert_eq!(
        get_reply_values(&mut c, b"gat 2 short:gat\r\n"),
        vec![(b"short:gat".to_vec(), 4, b"jkl".to_vec())]
    );
    let short: [&[u8]; 4] = [b"short:set", b"short:bin", b"short:touch", b"short:gat"];
    for k in short {
        let name = String::from_utf8_lossy(k);
        assert!(get(&mut c, k).is_some(), "{name} present at first");
        let l1 = mg(&mut m, k).unwrap_or_else(|| panic!("{name} in L1"));
        // memcached's clock lags by up to a second, so an absolute expiry
        // 2 s ahead may read as 3.
        assert!((0..=3).contains(&l1.ttl), "{name}: L1 TTL {}", l1.ttl);
        let e = gete(&mut b, k).unwrap().expiry;
        assert!(
            (t0 + 2..=now() + 2).contains(&e),
            "{name}: L2 expiry {e} at {t0}"
        );
    }

    // TTL 100, given three ways, and none.
    assert_eq!(c.line(b"set long:set 5 100 3\r\nmno\r\n"), "STORED\r\n");
    assert_eq!(c.line(b"set long:touch 6 1000 3\r\npqr\r\n"), "STORED\r\n");
    let touched_at = now();
    assert_eq!(c.line(b"touch long:touch 100\r\n"), "TOUCHED\r\n");
    assert_eq!(c.line(b"set long:gat 7 0 3\r\nstu\r\n"), "STORED\r\n");
    assert_eq!(
        get_reply_values(&mut c, b"gat 100 long:gat\r\n"),
        vec![(b"long:gat".to_vec(), 7, b"stu".to_vec())]
    );
    let abs = now() + 100;
    assert_eq!(
        c.line(format!("set long:abs 8 {abs} 3\r\nvwx\r\n").as_bytes()),
        "STORED\r\n"
    );
    assert_eq!(c.line(b"set long:none 9 0 3\r\nyz!\r\n"), "STORED\r\n");
    let t1 = now();
    // The touch reached L1 as well.
    let l1 = mg(&mut m, b"long:touch").unwrap();
    assert!((97..=101).contains(&l1.ttl), "touched L1 TTL {}", l1.ttl);

    // Let the short ones expire and the long ones age.
    std::thread::sleep(Duration::from_millis(3300));

    for k in short {
        let name = String::from_utf8_lossy(k);
        wait_for(Duration::from_secs(5), || get(&mut c, k).is_none())
            .unwrap_or_else(|_| panic!("{name} still served after its TTL"));
        assert_eq!(mg(&mut m, k), None, "{name}: memcached holds a live item");
        assert_eq!(gete(&mut b, k), None, "{name}: L2 holds a live record");
    }

    // (key, flags, value, expiry range or none)
    let long: [LongTtl; 5] = [
        (b"long:set", 5, b"mno", Some((t0 + 100, t1 + 100))),
        (b"long:touch", 6, b"pqr", Some((touched_at + 100, t1 + 100))),
        (b"long:gat", 7, b"stu", Some((t0 + 100, t1 + 100))),
        (b"long:abs", 8, b"vwx", Some((abs, abs))),
        (b"long:none", 9, b"yz!", None),
    ];
    for (k, flags, data, expiry) in long {
        let name = String::from_utf8_lossy(k);
        let g = gete(&mut b, k).unwrap_or_else(|| panic!("{name} gone from L2"));
        match expiry {
            Some((lo, hi)) => assert!(
                (lo..=hi).contains(&g.expiry),
                "{name}: L2 expiry {} not in {lo}..={hi}",
                g.expiry
            ),
            None => assert_eq!(g.expiry, 0, "{name}: L2 expiry"),
        }
        // L1 loses it; a read through rend back-fills it from L2.
        assert_eq!(m.line(&delete_req(k)), "DELETED\r\n", "{name} in L1");
        assert_eq!(get(&mut c, k), Some((flags, data.to_vec())), "{name}");
        let l1 = wait_l1(&mut m, &mut c, k);
        assert_eq!(l1.data, wrapped(g.cas, data), "{name}: back-filled item");
        assert_eq!(l1.flags, flags, "{name}: back-filled flags");
        if expiry.is_none() {
            assert_eq!(l1.ttl, -1, "{name}: back-filled TTL");
            continue;
        }
        let remaining = i64::from(g.expiry) - i64::from(now());
        assert!(
            l1.ttl > 90 && l1.ttl <= 98 && (l1.ttl - remaining).abs() <= 2,
            "{name}: back-filled TTL {} where {remaining} remain (a fresh TTL would be 100)",
            l1.ttl
        );
    }
}

/// A TTL-100 case: key, flags, value, and L2's expected expiry range.
type LongTtl = (&'static [u8], u32, &'static [u8], Option<(u32, u32)>);

/// The values of a text reply ending in END, as (key, flags, data).
fn get_reply_values(c: &mut Conn, req: &[u8]) -> Vec<(Vec<u8>, u32, Vec<u8>)> {
    c.send(req);
    read_values(c)
        .into_iter()
        .map(|it| (it.key, it.flags, it.data))
        .collect()
}

// ============================================================================
// 6. The default run is l1-l2 with its own memcached
// ============================================================================

fn default_args(l2: &Path) -> Vec<String> {
    vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--batch-listen".into(),
        "127.0.0.1:0".into(),
        "--l2-path".into(),
        l2.display().to_string(),
    ]
}

fn embedded_socket(rend: &Rend) -> String {
    let mut socket = None;
    wait_for(Duration::from_secs(5), || {
        socket = logged(rend, "started embedded memcached socket=");
        socket.is_some()
    })
    .expect("rend logs its memcached's socket");
    socket.unwrap()
}

fn socket_dead(socket: &str) -> bool {
    wait_for(Duration::from_secs(10), || {
        UnixStream::connect(socket).is_err()
    })
    .is_ok()
}

#[test]
fn default_run_serves_l1_l2_with_its_own_memcached() {
    let l2 = tempfile::tempdir().unwrap();
    let mut rend = Rend::start_args(&default_args(l2.path()));
    let socket = embedded_socket(&rend);
    let mut c = rend.connect();
    let value = seeded(42, 3000);
    assert_eq!(
        c.line(&store_req("set", b"kept", 77, 0, &value)),
        "STORED\r\n"
    );
    assert_eq!(get(&mut c, b"kept"), Some((77, value.clone())));
    // GETE is l1-l2's (l1-only answers 0x81).
    let g = gete(&mut rend.connect(), b"kept").expect("GETE hit: l1-l2 serves");
    assert_eq!((g.flags, g.expiry, &g.data), (77, 0, &value));
    // Its memcached holds l1-l2's items.
    let mut m = Conn::unix(Path::new(&socket));
    assert_eq!(mg(&mut m, b"kept").unwrap().data, wrapped(g.cas, &value));
    drop(m);
    // So does the batch port.
    let batch = logged(&rend, "batch port (l1-l2-batch) listening on ").expect("a batch port");
    assert_eq!(
        get(&mut Conn::tcp(&batch), b"kept"),
        Some((77, value.clone()))
    );
    drop(c);
    ok_exit(&mut rend);
    assert!(socket_dead(&socket), "memcached outlives rend's SIGTERM");
    drop(rend);

    // Restarted with the same flags: the value comes back from L2 (a new
    // memcached starts empty).
    let mut rend = Rend::start_args(&default_args(l2.path()));
    let socket = embedded_socket(&rend);
    let mut c = rend.connect();
    assert_eq!(get(&mut c, b"kept"), Some((77, value.clone())));
    assert_eq!(
        gete(&mut rend.connect(), b"kept").map(|g| g.cas),
        Some(g.cas)
    );
    // Killed outright, rend takes its memcached with it.
    signal(rend.pid(), "KILL");
    let _ = rend.child.wait();
    assert!(socket_dead(&socket), "memcached outlives rend's SIGKILL");
}
