//! `rend --orca l1-l2` (DESIGN §3, §5, §8) against a real memcached (L1)
//! and a RocksDB directory (L2): L2 as the cas authority across L1
//! evictions, back-fills and memcached restarts; replies where Rend erred;
//! the batch port's write and read rules; memcached killed or stalled under
//! load; exact read-modify-writes across both listeners; GETE served from L2.
//!
//! memcached is inspected and changed directly over its unix socket (meta
//! `mg` and text commands): an L1 item written by a two-tier policy is the
//! tag byte 0xA5, L2's cas (u64, big-endian), then the value, with the
//! client's flags.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{bin_req, read_line, set_extras, wait_for, Conn, Memcached, Packet, Rend, Resume};

const TAG: u8 = 0xA5;
const HEADER: usize = 9;

const GET: u8 = 0x00;
const SET: u8 = 0x01;
const INCREMENT: u8 = 0x05;
const NOOP: u8 = 0x0a;
const APPEND: u8 = 0x0e;
const TOUCH: u8 = 0x1c;
const GAT: u8 = 0x1d;
const GETE: u8 = 0x40;
const GETEQ: u8 = 0x41;

/// The load tests (client threads, memcached killed or stopped, a 200 ms L1
/// timeout) take turns: on a 2-core machine they would otherwise slow each
/// other past the L1 timeout and blur what each one checks.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

// ============================================================================
// Harness: memcached, L2 directory and rend together.
// ============================================================================

struct Node {
    rend: Rend,
    mc: Memcached,
    _l2: tempfile::TempDir,
}

fn node(extra: &[&str]) -> Node {
    let mc = Memcached::start();
    let l2 = tempfile::tempdir().expect("temp dir");
    let rend = Rend::start_two_tier(&mc, l2.path(), extra);
    Node { rend, mc, _l2: l2 }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

// ============================================================================
// Text replies, read by their framing.
// ============================================================================

fn line_str(c: &mut Conn) -> String {
    String::from_utf8_lossy(&read_line(c)).into_owned()
}

/// A one-line command; its one-line reply.
fn cmd(c: &mut Conn, line: &str) -> String {
    c.send(format!("{line}\r\n").as_bytes());
    line_str(c)
}

/// A text storage command; its reply line.
fn store(c: &mut Conn, verb: &str, key: &str, flags: u32, exptime: i64, value: &str) -> String {
    c.send(
        format!(
            "{verb} {key} {flags} {exptime} {}\r\n{value}\r\n",
            value.len()
        )
        .as_bytes(),
    );
    line_str(c)
}

fn set(c: &mut Conn, key: &str, value: &str) {
    assert_eq!(store(c, "set", key, 0, 0, value), "STORED\r\n", "set {key}");
}

fn cas(c: &mut Conn, key: &str, value: &str, unique: u64) -> String {
    c.send(format!("cas {key} 0 0 {} {unique}\r\n{value}\r\n", value.len()).as_bytes());
    line_str(c)
}

/// One value of a text get reply.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    key: String,
    flags: u32,
    data: String,
    cas: Option<u64>,
}

/// A text get reply up to its `END`; `Err` with the line on anything else.
fn try_read_values(c: &mut Conn) -> Result<Vec<Item>, String> {
    let items = common::try_read_values(c)?;
    Ok(items
        .into_iter()
        .map(|i| Item {
            key: String::from_utf8(i.key).expect("test keys are text"),
            flags: i.flags,
            data: String::from_utf8(i.data).expect("test values are text"),
            cas: i.cas,
        })
        .collect())
}

fn read_values(c: &mut Conn) -> Vec<Item> {
    try_read_values(c).unwrap_or_else(|l| panic!("not a get reply: {l:?}"))
}

/// `get`/`gets`/`gat ...` of one key through a text connection.
fn get1(c: &mut Conn, verb: &str, key: &str) -> Option<Item> {
    c.send(format!("{verb} {key}\r\n").as_bytes());
    let mut v = read_values(c);
    assert!(v.len() <= 1, "{verb} {key}: {v:?}");
    v.pop().inspect(|i| assert_eq!(i.key, key))
}

fn gets(c: &mut Conn, key: &str) -> Item {
    get1(c, "gets", key).unwrap_or_else(|| panic!("gets {key}: miss"))
}

/// rend's `stats` counters.
fn stats(c: &mut Conn) -> HashMap<String, u64> {
    c.send(b"stats\r\n");
    let mut out = HashMap::new();
    loop {
        let line = line_str(c);
        if line == "END\r\n" {
            return out;
        }
        let t: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(t[0], "STAT", "stats line {line:?}");
        if let Ok(v) = t[2].parse() {
            out.insert(t[1].to_string(), v);
        }
    }
}

fn stat(c: &mut Conn, name: &str) -> u64 {
    *stats(c)
        .get(name)
        .unwrap_or_else(|| panic!("no stat {name}"))
}

/// Wait until a counter reaches `want` (rend counts a back-fill once
/// memcached answered it, which may be after a test saw the item), and
/// check it does not pass it.
fn await_stat(c: &mut Conn, name: &str, want: u64) {
    let mut last = 0;
    let _ = wait_for(Duration::from_secs(2), || {
        last = stat(c, name);
        last >= want
    });
    assert_eq!(last, want, "{name}");
}

// ============================================================================
// Binary requests.
// ============================================================================

fn bin(c: &mut Conn, opcode: u8, cas: u64, extras: &[u8], key: &str, value: &[u8]) -> Packet {
    c.send(&bin_req(opcode, 0x7a11, cas, extras, key.as_bytes(), value));
    let p = c.packet();
    assert_eq!(
        (p.magic, p.opcode, p.opaque),
        (0x81, opcode, 0x7a11),
        "reply packet {p:?}"
    );
    p
}

/// Binary GETE hit: (flags, absolute expiry, cas, value).
#[derive(Debug, PartialEq, Eq)]
struct GetE {
    flags: u32,
    expiry: u32,
    cas: u64,
    value: Vec<u8>,
}

fn gete(c: &mut Conn, key: &str) -> Option<GetE> {
    let p = bin(c, GETE, 0, &[], key, &[]);
    match p.status {
        0 => {
            assert_eq!(p.extras.len(), 8, "GETE extras {p:?}");
            Some(GetE {
                flags: u32::from_be_bytes(p.extras[..4].try_into().unwrap()),
                expiry: u32::from_be_bytes(p.extras[4..].try_into().unwrap()),
                cas: p.cas,
                value: p.value,
            })
        }
        1 => None,
        s => panic!("GETE {key}: status {s:#x} {p:?}"),
    }
}

fn incr_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    let mut e = delta.to_be_bytes().to_vec();
    e.extend_from_slice(&initial.to_be_bytes());
    e.extend_from_slice(&exptime.to_be_bytes());
    e
}

// ============================================================================
// memcached, directly.
// ============================================================================

/// An item as memcached holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct L1Item {
    flags: u32,
    /// Remaining seconds; -1 never expires.
    ttl: i64,
    data: Vec<u8>,
}

impl L1Item {
    /// The L2 cas and the value of a tagged item.
    fn tagged(&self) -> Option<(u64, &[u8])> {
        (self.data.len() >= HEADER && self.data[0] == TAG).then(|| {
            (
                u64::from_be_bytes(self.data[1..HEADER].try_into().unwrap()),
                &self.data[HEADER..],
            )
        })
    }
}

/// `mg <key> v f t` against memcached.
fn l1_get(m: &mut Conn, key: &str) -> Option<L1Item> {
    m.send(format!("mg {key} v f t\r\n").as_bytes());
    let head = line_str(m);
    if head == "EN\r\n" {
        return None;
    }
    let t: Vec<&str> = head.trim_end().split(' ').collect();
    assert_eq!(t[0], "VA", "mg {key}: {head:?}");
    let len: usize = t[1].parse().expect("mg length");
    let mut flags = None;
    let mut ttl = None;
    for f in &t[2..] {
        if let Some(v) = f.strip_prefix('f') {
            flags = v.parse().ok();
        } else if let Some(v) = f.strip_prefix('t') {
            ttl = v.parse().ok();
        }
    }
    let mut data = m.read_exact_n(len + 2);
    assert_eq!(&data[len..], b"\r\n", "mg {key}: value framing");
    data.truncate(len);
    Some(L1Item {
        flags: flags.expect("mg f"),
        ttl: ttl.expect("mg t"),
        data,
    })
}

/// The tagged L1 copy of `key`: (cas, value, flags, ttl).
fn l1_tagged(m: &mut Conn, key: &str) -> Option<(u64, String, u32, i64)> {
    let item = l1_get(m, key)?;
    let (cas, v) = item
        .tagged()
        .unwrap_or_else(|| panic!("L1 item {key} is not tagged: {item:?}"));
    Some((
        cas,
        String::from_utf8(v.to_vec()).expect("text value"),
        item.flags,
        item.ttl,
    ))
}

/// Put an item straight into memcached.
fn l1_plant(m: &mut Conn, key: &str, flags: u32, exptime: i64, data: &[u8]) {
    let mut req = format!("set {key} {flags} {exptime} {}\r\n", data.len()).into_bytes();
    req.extend_from_slice(data);
    req.extend_from_slice(b"\r\n");
    m.send(&req);
    assert_eq!(line_str(m), "STORED\r\n", "plant {key} in memcached");
}

fn tagged_value(cas: u64, value: &str) -> Vec<u8> {
    let mut d = vec![TAG];
    d.extend_from_slice(&cas.to_be_bytes());
    d.extend_from_slice(value.as_bytes());
    d
}

fn l1_delete(m: &mut Conn, key: &str) {
    let r = cmd(m, &format!("delete {key}"));
    assert!(
        r == "DELETED\r\n" || r == "NOT_FOUND\r\n",
        "memcached delete {key}: {r:?}"
    );
}

/// Wait until memcached holds the tagged copy (cas, value) of `key`.
fn await_l1(m: &mut Conn, key: &str, cas: u64, value: &str) {
    let mut last = None;
    let ok = wait_for(Duration::from_secs(5), || {
        last = l1_tagged(m, key);
        matches!(&last, Some((c, v, _, _)) if *c == cas && v == value)
    });
    assert!(
        ok.is_ok(),
        "L1 never held {key} = {value:?} with cas {cas}; last {last:?}"
    );
}

/// The reply stream holds nothing more before the answer to a `version`
/// sent now (a second `END`, say); `Err` with what came instead.
fn nothing_more(c: &mut Conn) -> Result<(), String> {
    c.send(b"version\r\n");
    let line = line_str(c);
    if line.starts_with("VERSION ") {
        Ok(())
    } else {
        Err(line)
    }
}

// ============================================================================
// 1. L2 is the cas authority.
// ============================================================================

#[test]
fn cas_comes_from_l2_on_l1_misses_and_hits() {
    let n = node(&[]);
    let mut c = n.rend.connect();
    let mut bc = n.rend.connect();
    let mut m = n.mc.connect();

    assert_eq!(store(&mut c, "set", "k", 5, 0, "abc"), "STORED\r\n");
    let (set_cas, v, flags, ttl) = l1_tagged(&mut m, "k").expect("set puts k in L1");
    assert_eq!((v.as_str(), flags, ttl), ("abc", 5, -1));

    // L1 miss: L2 answers, with its cas, and back-fills.
    l1_delete(&mut m, "k");
    let before = stats(&mut c);
    let miss = gets(&mut c, "k");
    assert_eq!((miss.flags, miss.data.as_str()), (5, "abc"));
    assert_eq!(miss.cas, Some(set_cas), "cas on an L1 miss is L2's");
    let after = stats(&mut c);
    assert_eq!(after["l2_gets"], before["l2_gets"] + 1);
    assert_eq!(after["l2_get_hits"], before["l2_get_hits"] + 1);
    await_l1(&mut m, "k", set_cas, "abc");

    // L1 hit: the same cas, and L2 is not asked.
    let hit = gets(&mut c, "k");
    assert_eq!(hit, miss, "gets on the L1 hit");
    assert_eq!(stat(&mut c, "l2_gets"), after["l2_gets"], "served by L1");
    let p = bin(&mut bc, GET, 0, &[], "k", &[]);
    assert_eq!(p.status, 0);
    assert_eq!(
        (p.cas, p.extras.as_slice(), p.value.as_slice()),
        (set_cas, &5u32.to_be_bytes()[..], &b"abc"[..]),
        "binary GET carries the cas gets gave"
    );
    // gats and binary GAT/TOUCH keep the cas.
    let gats = get1(&mut c, "gats 0", "k").expect("gats hit");
    assert_eq!(gats.cas, Some(set_cas));
    assert_eq!(
        bin(&mut bc, GAT, 0, &0u32.to_be_bytes(), "k", &[]).cas,
        set_cas
    );
    assert_eq!(
        bin(&mut bc, TOUCH, 0, &0u32.to_be_bytes(), "k", &[]).cas,
        set_cas
    );
    assert_eq!(stat(&mut c, "l2_gets"), after["l2_gets"]);

    // Store replies carry the cas the next gets gives (an L1 hit each time).
    let p = bin(&mut bc, SET, 0, &set_extras(9, 0), "n", b"10");
    assert_eq!(p.status, 0, "{p:?}");
    let g = gets(&mut c, "n");
    assert_eq!((g.data.as_str(), g.cas), ("10", Some(p.cas)), "after set");
    assert_eq!(l1_tagged(&mut m, "n").map(|t| t.0), Some(p.cas));
    let p2 = bin(&mut bc, APPEND, 0, &[], "n", b"0");
    assert_eq!(p2.status, 0, "{p2:?}");
    assert!(p2.cas > p.cas, "append makes a new cas");
    let g = gets(&mut c, "n");
    assert_eq!(
        (g.data.as_str(), g.cas),
        ("100", Some(p2.cas)),
        "after append"
    );
    let p3 = bin(&mut bc, INCREMENT, 0, &incr_extras(5, 0, 0), "n", &[]);
    assert_eq!(p3.status, 0, "{p3:?}");
    assert_eq!(p3.value, 105u64.to_be_bytes());
    assert!(p3.cas > p2.cas, "incr makes a new cas");
    let g = gets(&mut c, "n");
    assert_eq!(
        (g.data.as_str(), g.flags, g.cas),
        ("105", 9, Some(p3.cas)),
        "after incr"
    );
    assert_eq!(
        l1_tagged(&mut m, "n").map(|t| (t.0, t.1)),
        Some((p3.cas, "105".into()))
    );
    // Binary incr creating the key.
    let p4 = bin(&mut bc, INCREMENT, 0, &incr_extras(1, 40, 0), "fresh", &[]);
    assert_eq!(
        (p4.status, p4.value.as_slice()),
        (0, &40u64.to_be_bytes()[..])
    );
    assert_eq!(gets(&mut c, "fresh").cas, Some(p4.cas));
}

/// A cas from gets stays good across L1 events that do not change L2; one
/// made stale by a write fails after each of them; a fresh one works once.
#[test]
fn stale_cas_fails_after_eviction_backfill_and_memcached_restart() {
    // One worker thread, so one memcached connection: the probe after the
    // restart below then proves that the connection every key uses is back.
    let mut n = node(&["--threads", "1"]);
    let mut c = n.rend.connect();
    let mut bc = n.rend.connect();
    let mut m = n.mc.connect();

    // (a) L1 eviction.
    set(&mut c, "k", "v1");
    let good = gets(&mut c, "k").cas.expect("cas");
    l1_delete(&mut m, "k");
    assert_eq!(
        cas(&mut c, "k", "v2", good),
        "STORED\r\n",
        "eviction kept cas"
    );
    let stale = good;
    let fresh = gets(&mut c, "k").cas.unwrap();
    assert_ne!(fresh, stale);
    l1_delete(&mut m, "k");
    assert_eq!(cas(&mut c, "k", "x", stale), "EXISTS\r\n", "(a) eviction");
    assert_eq!(cas(&mut c, "k", "v3", fresh), "STORED\r\n");
    assert_eq!(cas(&mut c, "k", "x", fresh), "EXISTS\r\n", "used once");
    assert_eq!(get1(&mut c, "get", "k").unwrap().data, "v3");

    // (b) back-fill: L1 is refilled from L2 after the cas went stale.
    let stale = gets(&mut c, "k").cas.unwrap();
    set(&mut c, "k", "v4");
    let current = gets(&mut c, "k").cas.unwrap();
    l1_delete(&mut m, "k");
    let backfills = stat(&mut c, "l1_backfills");
    assert_eq!(get1(&mut c, "get", "k").unwrap().data, "v4");
    await_l1(&mut m, "k", current, "v4");
    await_stat(&mut c, "l1_backfills", backfills + 1);
    assert_eq!(cas(&mut c, "k", "x", stale), "EXISTS\r\n", "(b) back-fill");
    let fresh = gets(&mut c, "k").cas.unwrap();
    assert_eq!(fresh, current, "the back-filled copy carries L2's cas");
    assert_eq!(cas(&mut c, "k", "v5", fresh), "STORED\r\n");
    assert_eq!(cas(&mut c, "k", "x", fresh), "EXISTS\r\n", "used once");

    // (c) memcached restart: its own cas counter starts over.
    let good = gets(&mut c, "k").cas.unwrap();
    set(&mut c, "k2", "w1");
    let stale = gets(&mut c, "k2").cas.unwrap();
    set(&mut c, "k2", "w2");
    n.mc.restart();
    let mut m = n.mc.connect();
    wait_for(Duration::from_secs(10), || {
        set(&mut c, "probe", "p");
        l1_get(&mut m, "probe").is_some()
    })
    .expect("rend reconnects to the new memcached");
    assert_eq!(cas(&mut c, "k2", "x", stale), "EXISTS\r\n", "(c) restart");
    assert_eq!(
        cas(&mut c, "k", "v6", good),
        "STORED\r\n",
        "restart kept cas"
    );
    for key in ["k", "k2"] {
        let fresh = gets(&mut c, key).cas.unwrap();
        assert_eq!(gete(&mut bc, key).unwrap().cas, fresh, "{key}: L2's cas");
        assert_eq!(cas(&mut c, key, "z", fresh), "STORED\r\n");
        assert_eq!(cas(&mut c, key, "y", fresh), "EXISTS\r\n", "used once");
        // Also when the key is hot in L1 again (a write that met the
        // other memcached connection still redialling left the key to L2,
        // and the read's back-fill is asynchronous: wait for it).
        let hot = gets(&mut c, key).cas.unwrap();
        await_l1(&mut m, key, hot, "z");
        assert_eq!(cas(&mut c, key, "done", hot), "STORED\r\n");
        assert_eq!(cas(&mut c, key, "y", hot), "EXISTS\r\n");
        assert_eq!(get1(&mut c, "get", key).unwrap().data, "done");
    }
}

// ============================================================================
// 2. Replies that were Rend's defects.
// ============================================================================

#[test]
fn add_accepted_by_l2_is_stored_and_lands_in_l1() {
    let n = node(&[]);
    let mut c = n.rend.connect();
    let mut m = n.mc.connect();

    assert_eq!(store(&mut c, "add", "a", 7, 0, "hello"), "STORED\r\n");
    let g = gets(&mut c, "a");
    let item = l1_get(&mut m, "a").expect("add puts the item in L1");
    assert_eq!(item.flags, 7);
    assert_eq!(item.data, tagged_value(g.cas.unwrap(), "hello"));
    assert_eq!(store(&mut c, "add", "a", 7, 0, "again"), "NOT_STORED\r\n");

    // A stale L1 copy that L2 does not hold does not refuse the add, and is
    // replaced by the new value.
    l1_plant(&mut m, "ghost", 1, 0, &tagged_value(1, "old"));
    assert_eq!(store(&mut c, "add", "ghost", 2, 0, "new"), "STORED\r\n");
    let g = gets(&mut c, "ghost");
    assert_eq!((g.flags, g.data.as_str()), (2, "new"));
    assert_eq!(
        l1_tagged(&mut m, "ghost").map(|t| (t.0, t.1, t.2)),
        Some((g.cas.unwrap(), "new".into(), 2))
    );
    // An untagged item in L1 (not a two-tier item) is ignored too.
    l1_plant(&mut m, "plain", 0, 0, b"raw");
    assert_eq!(store(&mut c, "add", "plain", 3, 0, "mine"), "STORED\r\n");
    assert_eq!(get1(&mut c, "get", "plain").unwrap().data, "mine");
}

#[test]
fn delete_and_touch_reach_l1_when_l2_missed() {
    let n = node(&[]);
    let mut c = n.rend.connect();
    let mut bc = n.rend.connect();
    let mut m = n.mc.connect();

    // delete: L2 misses, L1's copy goes anyway.
    l1_plant(&mut m, "ghost", 0, 0, &tagged_value(42, "stale"));
    assert_eq!(cmd(&mut c, "delete ghost"), "NOT_FOUND\r\n");
    assert_eq!(l1_get(&mut m, "ghost"), None, "delete reached L1");
    assert_eq!(get1(&mut c, "get", "ghost"), None);

    // touch: L2 misses, so L1's copy is dropped (L2 holds no such item).
    l1_plant(&mut m, "ghost2", 0, 0, &tagged_value(42, "stale"));
    assert_eq!(l1_get(&mut m, "ghost2").unwrap().ttl, -1);
    assert_eq!(cmd(&mut c, "touch ghost2 100"), "NOT_FOUND\r\n");
    assert_eq!(l1_get(&mut m, "ghost2"), None, "touch reached L1");

    // Both tiers hit: both get the new expiry.
    set(&mut c, "t", "v");
    let t0 = now();
    assert_eq!(cmd(&mut c, "touch t 500"), "TOUCHED\r\n");
    let ttl = l1_tagged(&mut m, "t").expect("t in L1").3;
    assert!((490..=501).contains(&ttl), "L1 ttl {ttl}");
    let e = gete(&mut bc, "t").unwrap();
    assert!(
        (t0 + 499..=now() + 500).contains(&u64::from(e.expiry)),
        "L2 expiry {} (now {t0})",
        e.expiry
    );
    // Deleting a key both tiers hold.
    assert_eq!(cmd(&mut c, "delete t"), "DELETED\r\n");
    assert_eq!(l1_get(&mut m, "t"), None);
    assert_eq!(gete(&mut bc, "t"), None);
}

#[test]
fn gat_on_the_batch_port_keeps_the_requested_ttl() {
    let n = node(&[]);
    let mut c = n.rend.connect();
    let mut bc = n.rend.connect();
    let mut b = n.rend.connect_batch();
    let mut m = n.mc.connect();

    // Hot in L1: both tiers take the TTL.
    assert_eq!(store(&mut c, "set", "g", 3, 0, "abc"), "STORED\r\n");
    let cas0 = gets(&mut c, "g").cas;
    let t0 = now();
    let v = get1(&mut b, "gats 1000", "g").expect("gats hit");
    assert_eq!((v.flags, v.data.as_str(), v.cas), (3, "abc", cas0));
    let e = gete(&mut bc, "g").unwrap();
    assert!(
        (t0 + 999..=now() + 1000).contains(&u64::from(e.expiry)),
        "L2 expiry {} (now {t0})",
        e.expiry
    );
    assert_eq!((e.flags, e.cas), (3, cas0.unwrap()));
    let (l1_cas, l1_v, l1_flags, ttl) = l1_tagged(&mut m, "g").expect("g stays in L1");
    assert_eq!((l1_cas, l1_v.as_str(), l1_flags), (cas0.unwrap(), "abc", 3));
    assert!((990..=1001).contains(&ttl), "L1 ttl {ttl}");

    // Not in L1: L2 takes the TTL, L1 stays without it.
    assert_eq!(store(&mut b, "set", "h", 0, 0, "xyz"), "STORED\r\n");
    assert_eq!(l1_get(&mut m, "h"), None);
    let t0 = now();
    assert_eq!(get1(&mut b, "gat 2000", "h").unwrap().data, "xyz");
    let e = gete(&mut bc, "h").unwrap();
    assert!(
        (t0 + 1999..=now() + 2000).contains(&u64::from(e.expiry)),
        "L2 expiry {}",
        e.expiry
    );
    assert_eq!(l1_get(&mut m, "h"), None, "the batch port does not fill L1");

    // Binary GAT on the batch port, too.
    let t0 = now();
    let mut bb = n.rend.connect_batch();
    let p = bin(&mut bb, GAT, 0, &3000u32.to_be_bytes(), "g", &[]);
    assert_eq!((p.status, p.value.as_slice()), (0, &b"abc"[..]));
    let e = gete(&mut bc, "g").unwrap();
    assert!((t0 + 2999..=now() + 3000).contains(&u64::from(e.expiry)));
    let ttl = l1_tagged(&mut m, "g").unwrap().3;
    assert!((2990..=3001).contains(&ttl), "L1 ttl {ttl}");
}

#[test]
fn locked_multi_get_ends_with_one_end() {
    let n = node(&["--locked"]);
    let mut c = n.rend.connect();
    let mut m = n.mc.connect();
    for k in ["m1", "m2", "m3", "m4"] {
        set(&mut c, k, &format!("{k}-value"));
    }
    // m2 and m4 only in L2; m5 nowhere.
    l1_delete(&mut m, "m2");
    l1_delete(&mut m, "m4");
    for verb in ["get", "gets", "get", "gets"] {
        c.send(format!("{verb} m1 m2 m5 m3 m1 m4\r\n").as_bytes());
        let v = read_values(&mut c);
        let keys: Vec<&str> = v.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["m1", "m2", "m3", "m1", "m4"], "{verb}: {v:?}");
        for i in &v {
            assert_eq!(i.data, format!("{}-value", i.key));
            assert_eq!(i.cas.is_some(), verb == "gets");
        }
        assert_eq!(nothing_more(&mut c), Ok(()), "{verb}: more after the END");
    }
    // All misses, and one key.
    c.send(b"get x1 x2 x3\r\n");
    assert_eq!(read_values(&mut c), []);
    assert_eq!(nothing_more(&mut c), Ok(()));

    // Under concurrent writes of the same keys (both ports), every
    // multi-get still ends once.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = [n.rend.connect(), n.rend.connect_batch()]
        .into_iter()
        .enumerate()
        .map(|(w, mut wc)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let k = format!("m{}", 1 + i % 4);
                    set(&mut wc, &k, &format!("{k}-value"));
                    if w == 0 && i.is_multiple_of(7) {
                        assert_eq!(cmd(&mut wc, &format!("delete {k}")), "DELETED\r\n");
                        set(&mut wc, &k, &format!("{k}-value"));
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut rounds = 0usize;
    while Instant::now() < deadline {
        rounds += 1;
        c.send(b"gets m1 m2 m3 m4 m1 m2 m3 m4\r\n");
        let v = read_values(&mut c);
        assert!(v.len() <= 8, "{v:?}");
        assert!(v.iter().all(|i| i.data == format!("{}-value", i.key)));
        assert_eq!(nothing_more(&mut c), Ok(()), "more after the END");
        if rounds.is_multiple_of(3) {
            l1_delete(&mut m, &format!("m{}", 1 + rounds % 4));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    assert!(rounds > 10, "only {rounds} multi-gets");
}

// ============================================================================
// 3. The batch port.
// ============================================================================

#[test]
fn batch_port_refreshes_l1_but_never_fills_it() {
    let n = node(&[]);
    let mut c = n.rend.connect();
    let mut b = n.rend.connect_batch();
    let mut m = n.mc.connect();

    // A set of a key L1 does not hold stays out of L1.
    assert_eq!(store(&mut b, "set", "cold", 1, 0, "c1"), "STORED\r\n");
    assert_eq!(l1_get(&mut m, "cold"), None, "batch set filled L1");

    // A set of a key L1 holds refreshes it there.
    set(&mut c, "hot", "h1");
    assert!(l1_get(&mut m, "hot").is_some());
    assert_eq!(store(&mut b, "set", "hot", 4, 0, "h2"), "STORED\r\n");
    let g = gets(&mut c, "hot");
    assert_eq!((g.flags, g.data.as_str()), (4, "h2"));
    let (l1_cas, l1_v, l1_flags, _) = l1_tagged(&mut m, "hot").expect("still in L1");
    assert_eq!((Some(l1_cas), l1_v.as_str(), l1_flags), (g.cas, "h2", 4));
    // Same for append and incr on the batch port.
    assert_eq!(store(&mut b, "append", "hot", 0, 0, "+"), "STORED\r\n");
    let g = gets(&mut c, "hot");
    assert_eq!(
        l1_tagged(&mut m, "hot").map(|t| (t.0, t.1)),
        Some((g.cas.unwrap(), "h2+".into()))
    );
    assert_eq!(store(&mut b, "set", "num", 0, 0, "1"), "STORED\r\n");
    assert_eq!(cmd(&mut b, "incr num 1"), "2\r\n");
    assert_eq!(l1_get(&mut m, "num"), None);

    // A batch-port get of an L1 miss reads L2 and does not back-fill.
    let before = stats(&mut c);
    let v = get1(&mut b, "get", "cold").expect("served from L2");
    assert_eq!((v.flags, v.data.as_str()), (1, "c1"));
    let after = stats(&mut c);
    assert_eq!(after["l2_gets"], before["l2_gets"] + 1);
    assert_eq!(after["l2_get_hits"], before["l2_get_hits"] + 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(l1_get(&mut m, "cold"), None, "batch get back-filled L1");
    assert_eq!(stat(&mut c, "l1_backfills"), before["l1_backfills"]);

    // The same get on the main port back-fills, with L2's cas and flags.
    let v = gets(&mut c, "cold");
    assert_eq!((v.flags, v.data.as_str()), (1, "c1"));
    await_l1(&mut m, "cold", v.cas.unwrap(), "c1");
    assert_eq!(l1_get(&mut m, "cold").unwrap().flags, 1);
    await_stat(&mut c, "l1_backfills", before["l1_backfills"] + 1);
    // And then the batch port reads it from L1.
    let l2_gets = stat(&mut c, "l2_gets");
    assert_eq!(get1(&mut b, "gets", "cold"), Some(v));
    assert_eq!(stat(&mut c, "l2_gets"), l2_gets);

    // A back-fill carries L2's remaining TTL.
    assert_eq!(store(&mut b, "set", "ttl", 6, 1000, "t"), "STORED\r\n");
    std::thread::sleep(Duration::from_millis(1100));
    let v = gets(&mut c, "ttl");
    await_l1(&mut m, "ttl", v.cas.unwrap(), "t");
    let (_, _, flags, ttl) = l1_tagged(&mut m, "ttl").unwrap();
    assert_eq!(flags, 6);
    assert!((990..=1001).contains(&ttl), "back-filled ttl {ttl}");
}

// ============================================================================
// 4. memcached killed under load.
// ============================================================================

#[derive(Default)]
struct Phase {
    gets: AtomicU64,
    sets: AtomicU64,
}

#[test]
fn l1_killed_under_load_l2_serves_and_l1_refills_after_restart() {
    let _heavy = heavy();
    let mut n = node(&["--l1-timeout-ms", "500", "--l1-conns", "4"]);
    let mut c = n.rend.connect();
    const THREADS: usize = 4;
    const KEYS: usize = 20;
    let key = |t: usize, i: usize| format!("load-{t}-{i}");
    for t in 0..THREADS {
        for i in 0..KEYS {
            set(&mut c, &key(t, i), &format!("{t}.{i}.0"));
        }
    }

    // Each thread owns its keys, so it knows every value exactly.
    let phase = Arc::new(AtomicU8::new(0));
    let phases: Arc<[Phase; 3]> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (phase, phases, stop, errors) =
                (phase.clone(), phases.clone(), stop.clone(), errors.clone());
            let mut c = n.rend.connect();
            std::thread::spawn(move || {
                let mut version = [0u64; KEYS];
                let mut op = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    op += 1;
                    let i = (op * 7) % KEYS;
                    let k = key(t, i);
                    let p = &phases[phase.load(Ordering::Relaxed) as usize];
                    let result = if op.is_multiple_of(3) {
                        let v = format!("{t}.{i}.{}", version[i] + 1);
                        let r = store(&mut c, "set", &k, 0, 0, &v);
                        if r == "STORED\r\n" {
                            version[i] += 1;
                            p.sets.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        } else {
                            Err(format!("set {k}: {r:?}"))
                        }
                    } else {
                        c.send(format!("get {k}\r\n").as_bytes());
                        let want = format!("{t}.{i}.{}", version[i]);
                        match try_read_values(&mut c) {
                            Ok(v) if v.len() == 1 && v[0].data == want => {
                                p.gets.fetch_add(1, Ordering::Relaxed);
                                Ok(())
                            }
                            Ok(v) => Err(format!("get {k}: {v:?}, want {want}")),
                            Err(line) => Err(format!("get {k}: {line:?}")),
                        }
                    };
                    if let Err(e) = result {
                        let mut errs = errors.lock().unwrap();
                        errs.push(format!("phase {}: {e}", phase.load(Ordering::Relaxed)));
                        if errs.len() > 20 {
                            break;
                        }
                    }
                }
                version
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(800));
    let before_kill = stats(&mut c);
    n.mc.kill();
    phase.store(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1200));
    let dead = stats(&mut c);
    n.mc.restart();
    phase.store(2, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let versions: Vec<[u64; KEYS]> = workers
        .into_iter()
        .map(|w| w.join().expect("worker panicked"))
        .collect();
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{} errors: {errors:#?}", errors.len());
    let (g1, s1) = (
        phases[1].gets.load(Ordering::Relaxed),
        phases[1].sets.load(Ordering::Relaxed),
    );
    assert!(g1 > 20 && s1 > 10, "L1 down: {g1} gets, {s1} sets served");
    assert!(
        dead["l1_read_failures"] > before_kill["l1_read_failures"],
        "l1_read_failures did not move: {dead:?}"
    );
    assert!(
        dead["l1_write_failures"] > before_kill["l1_write_failures"],
        "l1_write_failures did not move"
    );

    // L1 is back: reads refill it with tagged copies of L2's records.
    let mut m = n.mc.connect();
    for t in 0..THREADS {
        for i in (0..KEYS).step_by(2) {
            l1_delete(&mut m, &key(t, i));
        }
    }
    let mut expected = BTreeMap::new();
    let mut missing = Vec::new();
    let refilled = wait_for(Duration::from_secs(10), || {
        missing.clear();
        for (t, last) in versions.iter().enumerate() {
            for (i, version) in last.iter().enumerate() {
                let k = key(t, i);
                let v = gets(&mut c, &k);
                assert_eq!(v.data, format!("{t}.{i}.{version}"), "{k}");
                expected.insert(k, v);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for (k, v) in &expected {
            if l1_tagged(&mut m, k) != Some((v.cas.unwrap(), v.data.clone(), 0, -1)) {
                missing.push(k.clone());
            }
        }
        missing.is_empty()
    });
    assert!(refilled.is_ok(), "L1 not refilled: {missing:?}");
    let mut backfills = 0;
    let _ = wait_for(Duration::from_secs(2), || {
        backfills = stat(&mut c, "l1_backfills");
        backfills >= dead["l1_backfills"] + (THREADS * KEYS / 2) as u64
    });
    assert!(
        backfills >= dead["l1_backfills"] + (THREADS * KEYS / 2) as u64,
        "l1_backfills {backfills}, {} while L1 was down",
        dead["l1_backfills"]
    );
    let l2_gets = stat(&mut c, "l2_gets");
    for (k, v) in &expected {
        assert_eq!(&gets(&mut c, k), v, "{k} from L1");
    }
    assert_eq!(stat(&mut c, "l2_gets"), l2_gets, "all served by L1");
}

// ============================================================================
// 5. memcached stalled past the L1 timeout.
// ============================================================================

#[test]
fn stalled_l1_never_serves_a_value_older_than_an_acknowledged_write() {
    let _heavy = heavy();
    let n = node(&["--l1-timeout-ms", "200", "--l1-conns", "4"]);
    const KEYS: usize = 8;
    let key = |i: usize| format!("ver-{i}");
    let mut c = n.rend.connect();
    let mut bc = n.rend.connect();
    for i in 0..KEYS {
        set(&mut c, &key(i), "0");
    }
    // Last acknowledged version per key.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let reads = Arc::new(AtomicU64::new(0));
    let fail = |errors: &Mutex<Vec<String>>, e: String| {
        let mut errs = errors.lock().unwrap();
        errs.push(e);
        errs.len() > 20
    };

    let writer = {
        let (acked, stop, errors) = (acked.clone(), stop.clone(), errors.clone());
        let mut c = n.rend.connect();
        std::thread::spawn(move || {
            let mut version = 0u64;
            while !stop.load(Ordering::Relaxed) {
                version += 1;
                let i = version as usize % KEYS;
                let r = store(&mut c, "set", &key(i), 0, 0, &version.to_string());
                if r == "STORED\r\n" {
                    acked[i].fetch_max(version, Ordering::SeqCst);
                } else if fail(&errors, format!("set {} = {version}: {r:?}", key(i))) {
                    return;
                }
            }
        })
    };
    // Readers: multi-gets of two to four distinct keys, each reader in its
    // own order (the next test repeats the narrow case of a multi-get that
    // once served a replaced value here).
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (acked, stop, errors, reads) =
                (acked.clone(), stop.clone(), errors.clone(), reads.clone());
            let mut c = n.rend.connect();
            std::thread::spawn(move || {
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let first = round * (2 * r + 1) + r;
                    let keys: Vec<usize> =
                        (0..2 + round % 3).map(|j| (first + j * 3) % KEYS).collect();
                    let floor: Vec<u64> =
                        keys.iter().map(|&i| acked[i].load(Ordering::SeqCst)).collect();
                    let names: Vec<String> = keys.iter().map(|&i| key(i)).collect();
                    c.send(format!("get {}\r\n", names.join(" ")).as_bytes());
                    let values = match try_read_values(&mut c) {
                        Ok(v) => v,
                        Err(line) => {
                            if fail(&errors, format!("reader {r}: {line:?}")) {
                                return;
                            }
                            continue;
                        }
                    };
                    reads.fetch_add(1, Ordering::Relaxed);
                    let got: HashMap<&str, u64> = values
                        .iter()
                        .map(|v| (v.key.as_str(), v.data.parse().unwrap()))
                        .collect();
                    for (name, floor) in names.iter().zip(&floor) {
                        match got.get(name.as_str()) {
                            Some(v) if v >= floor => {}
                            other => {
                                let e = format!(
                                    "reader {r}: {name} = {other:?}, but {floor} was acknowledged before the read"
                                );
                                if fail(&errors, e) {
                                    return;
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let counts = |c: &mut Conn| {
        let s = stats(c);
        (s["l1_read_failures"], s["l1_write_failures"])
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = counts(&mut c);
    for _ in 0..3 {
        let resume = Resume(n.mc.pid());
        n.mc.signal("STOP");
        std::thread::sleep(Duration::from_millis(1000));
        drop(resume);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let during = counts(&mut c);
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    for r in readers {
        r.join().expect("reader");
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{} errors: {errors:#?}", errors.len());
    assert!(
        during.0 > before.0 && during.1 > before.1,
        "the stalls were not felt: {before:?} -> {during:?}"
    );
    assert!(reads.load(Ordering::Relaxed) > 50);

    // Quiet now: every read gives the last acknowledged version, and an L1
    // copy, where there is one, agrees with L2.
    let mut m = n.mc.connect();
    std::thread::sleep(Duration::from_millis(300));
    for (i, a) in acked.iter().enumerate() {
        let k = key(i);
        let g = gets(&mut c, &k);
        assert_eq!(g.data, a.load(Ordering::SeqCst).to_string(), "{k}");
        let e = gete(&mut bc, &k).unwrap();
        assert_eq!(
            (e.cas, e.value),
            (g.cas.unwrap(), g.data.clone().into_bytes())
        );
        if let Some((cas, v, _, _)) = l1_tagged(&mut m, &k) {
            assert_eq!((cas, v), (e.cas, g.data.clone()), "{k}: L1 copy");
        }
    }
}

/// The narrow case of the above, repeated: a multi-get's L1 request travels
/// on its first key's L1 connection, the writes of its other keys on theirs.
/// memcached is stopped, a write of `kb` times out in L1 (acknowledged from
/// L2, `kb` suspect), a multi-get `get x kb` and a second write of `kb` are
/// queued, then memcached resumes. memcached may answer the get from its old
/// copy (it has not yet applied the timed-out write on the other
/// connection), and rend may see the second write succeed, which lifts the
/// suspicion, before it sees the get's reply.
#[test]
fn stalled_l1_multi_get_never_serves_a_replaced_value() {
    let _heavy = heavy();
    let n = node(&["--l1-timeout-ms", "200", "--l1-conns", "2"]);
    let mut c = n.rend.connect();
    let mut stale = Vec::new();
    // A large first value keeps rend reading the get's reply after
    // memcached has answered the write.
    let big = "x".repeat(400_000);
    for round in 0..24 {
        let x = format!("x{round}");
        set(&mut c, &x, &big);
        set(&mut c, "kb", "old");
        let resume = Resume(n.mc.pid());
        n.mc.signal("STOP");
        // Times out in L1, acknowledged from L2: kb is suspect.
        set(&mut c, "kb", "new");
        let mut reader = n.rend.connect();
        let mut writer = n.rend.connect();
        reader.send(format!("get {x} kb\r\n").as_bytes());
        writer.send(b"set kb 0 0 5\r\nnewer\r\n");
        std::thread::sleep(Duration::from_millis(40));
        drop(resume);
        let values = read_values(&mut reader);
        assert_eq!(line_str(&mut writer), "STORED\r\n");
        let kb: Vec<&str> = values
            .iter()
            .filter(|v| v.key == "kb")
            .map(|v| v.data.as_str())
            .collect();
        if kb != ["new"] && kb != ["newer"] {
            stale.push(format!("round {round}: kb = {kb:?}"));
        }
    }
    assert!(
        stale.is_empty(),
        "\"new\" was acknowledged before each get: {stale:?}"
    );
}

// ============================================================================
// 6. Concurrency across both listeners.
// ============================================================================

#[test]
fn incr_and_append_are_exact_across_both_listeners() {
    let _heavy = heavy();
    let n = node(&[]);
    let mut c = n.rend.connect();
    let mut bc = n.rend.connect();
    set(&mut c, "count", "0");
    set(&mut c, "tags", "");
    const N: usize = 8;
    const M: usize = 150;
    let workers: Vec<_> = (0..N)
        .map(|t| {
            let mut c = if t % 2 == 0 {
                n.rend.connect()
            } else {
                n.rend.connect_batch()
            };
            std::thread::spawn(move || {
                let mut seen = Vec::with_capacity(M);
                for j in 0..M {
                    let r = cmd(&mut c, "incr count 1");
                    seen.push(
                        r.trim_end()
                            .parse::<u64>()
                            .unwrap_or_else(|_| panic!("incr: {r:?}")),
                    );
                    let tag = format!("<{t}.{j}>");
                    assert_eq!(
                        store(&mut c, "append", "tags", 0, 0, &tag),
                        "STORED\r\n",
                        "append {tag}"
                    );
                }
                seen
            })
        })
        .collect();
    let mut results: Vec<u64> = Vec::new();
    for w in workers {
        results.extend(w.join().expect("worker"));
    }
    results.sort_unstable();
    let total = (N * M) as u64;
    assert_eq!(results, (1..=total).collect::<Vec<_>>(), "incr replies");

    let mut m = n.mc.connect();
    let mut b = n.rend.connect_batch();
    let main = (gets(&mut c, "count"), gets(&mut c, "tags"));
    let batch = (gets(&mut b, "count"), gets(&mut b, "tags"));
    assert_eq!(main, batch, "both ports agree");
    assert_eq!(main.0.data, total.to_string());
    let tags: Vec<&str> = main.1.data.split_inclusive('>').collect();
    let unique: HashSet<&str> = tags.iter().copied().collect();
    assert_eq!(tags.len(), N * M, "tags appended");
    assert_eq!(unique.len(), N * M, "a tag appended twice");
    for t in 0..N {
        for j in 0..M {
            assert!(unique.contains(format!("<{t}.{j}>").as_str()));
        }
    }
    for item in [&main.0, &main.1] {
        let e = gete(&mut bc, &item.key).unwrap();
        assert_eq!(
            (e.cas, e.value.as_slice()),
            (item.cas.unwrap(), item.data.as_bytes())
        );
        if let Some((cas, v, _, _)) = l1_tagged(&mut m, &item.key) {
            assert_eq!((Some(cas), &v), (item.cas, &item.data), "L1 copy");
        }
    }
}

// ============================================================================
// 7. GETE answers from L2.
// ============================================================================

#[test]
fn gete_answers_with_l2_flags_and_expiry_when_hot_in_l1() {
    let n = node(&[]);
    let mut c = n.rend.connect();
    let mut bc = n.rend.connect();
    let mut m = n.mc.connect();

    assert_eq!(
        store(&mut c, "set", "forever", 0xDEAD_BEEF, 0, "v"),
        "STORED\r\n"
    );
    let t0 = now();
    assert_eq!(store(&mut c, "set", "hour", 17, 3600, "w"), "STORED\r\n");
    let g = gets(&mut c, "forever");
    let h = gets(&mut c, "hour");
    // Hot in L1; make L1's copy disagree in flags and TTL (same cas and
    // value): GETE must still report L2's.
    for (k, v, cas) in [("forever", "v", g.cas), ("hour", "w", h.cas)] {
        assert!(l1_get(&mut m, k).is_some(), "{k} hot in L1");
        l1_plant(&mut m, k, 1, 99, &tagged_value(cas.unwrap(), v));
    }
    let e = gete(&mut bc, "forever").expect("hit");
    assert_eq!(
        e,
        GetE {
            flags: 0xDEAD_BEEF,
            expiry: 0,
            cas: g.cas.unwrap(),
            value: b"v".to_vec()
        }
    );
    let e = gete(&mut bc, "hour").expect("hit");
    assert_eq!(
        (e.flags, e.cas, e.value.as_slice()),
        (17, h.cas.unwrap(), &b"w"[..])
    );
    assert!(
        (t0 + 3600..=now() + 3600).contains(&u64::from(e.expiry)),
        "expiry {} (now {t0})",
        e.expiry
    );
    // A miss: GETE answers not found, GETEQ nothing.
    assert_eq!(gete(&mut bc, "nothing"), None);
    bc.send(&bin_req(GETEQ, 1, 0, &[], b"nothing", &[]));
    bc.send(&bin_req(GETEQ, 2, 0, &[], b"hour", &[]));
    bc.send(&bin_req(NOOP, 3, 0, &[], &[], &[]));
    let p = bc.packet();
    assert_eq!((p.opcode, p.opaque, p.status), (GETEQ, 2, 0), "{p:?}");
    assert_eq!(p.extras[..4], 17u32.to_be_bytes());
    let p = bc.packet();
    assert_eq!((p.opcode, p.opaque), (NOOP, 3));
}

/// With --chunked, every L1 request for one client key (its metadata,
/// chunks and -ttl record, for sets, gets, touches, appends and deletes)
/// travels on the one pooled memcached connection the key maps to, so a
/// key's L1 operations stay in order. memcached's own `watch` log names the
/// connection (`cfd=`) of every fetch and store (a delete or touch shows as
/// the fetch it makes).
#[test]
fn chunked_items_of_one_key_share_one_l1_connection() {
    let n = node(&["--chunked", "--threads", "2", "--l1-conns", "3"]);
    let mut watch = n.mc.connect();
    watch.send(b"watch fetchers mutations\r\n");
    assert_eq!(line_str(&mut watch), "OK\r\n");
    let mut c = n.rend.connect();
    let keys: Vec<String> = (0..24).map(|i| format!("routed{i}")).collect();
    let value = "v".repeat(5000);
    for k in &keys {
        set(&mut c, k, &value);
        assert_eq!(get1(&mut c, "get", k).map(|i| i.data.len()), Some(5000));
        assert_eq!(cmd(&mut c, &format!("touch {k} 1000")), "TOUCHED\r\n");
        assert_eq!(store(&mut c, "append", k, 0, 0, "tail"), "STORED\r\n");
        assert_eq!(cmd(&mut c, &format!("delete {k}")), "DELETED\r\n");
    }
    // A miss last: its metadata fetch ends what the log must show.
    assert_eq!(get1(&mut c, "get", "the-end"), None);
    let mut seen: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ended = false;
    let mut log = Vec::new();
    while !ended && Instant::now() < deadline {
        // The log's lines end in a bare newline.
        log.extend(watch.read_until_with(|b| b.ends_with(b"\n")));
        let Some(end) = log.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let lines: Vec<u8> = log.drain(..=end).collect();
        for line in String::from_utf8_lossy(&lines).lines() {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .map(str::to_string)
            };
            let (Some(item), Some(cfd)) = (field("key="), field("cfd=")) else {
                continue;
            };
            ended |= item == "the-end-meta";
            if let Some((base, _)) = item.rsplit_once('-') {
                seen.entry(base.to_string()).or_default().insert(cfd);
            }
        }
    }
    assert!(ended, "the watch log stopped short: {seen:?}");
    for k in &keys {
        assert!(
            seen.contains_key(k),
            "no L1 request of {k} in the log: {seen:?}"
        );
    }
    let all: HashSet<&String> = keys.iter().filter_map(|k| seen.get(k)).flatten().collect();
    assert!(
        all.len() > 1,
        "every key on one connection proves nothing: {seen:?}"
    );
    for (key, cfds) in &seen {
        assert_eq!(
            cfds.len(),
            1,
            "{key}'s items went over connections {cfds:?}"
        );
    }
}

/// memcached 1.6.18's flush_all times, in both tiers (checked against
/// memcached itself): a delayed flush that has fired stays fired when a
/// later delayed one replaces it, in L1, in L2 and across a restart; an
/// absolute time in 1970 flushes nothing and calls off a delayed flush.
#[test]
fn flush_all_times_hold_in_both_tiers_as_in_memcached() {
    for extra in [&[][..], &["--chunked"][..]] {
        let mc = Memcached::start();
        let l2 = tempfile::tempdir().expect("temp dir");
        let rend = Rend::start_two_tier(&mc, l2.path(), extra);
        let mut c = rend.connect();
        let mut batch = rend.connect_batch();
        let mut l1 = mc.connect();
        // Fired, then replaced by a later delayed flush: still fired.
        set(&mut c, "fired", "old");
        assert_eq!(cmd(&mut c, "flush_all 2"), "OK\r\n");
        std::thread::sleep(Duration::from_millis(3100));
        set(&mut c, "later", "new");
        assert_eq!(cmd(&mut c, "flush_all 100"), "OK\r\n");
        for (what, conn) in [("main", &mut c), ("batch", &mut batch)] {
            assert_eq!(get1(conn, "get", "fired"), None, "{extra:?} {what}");
            assert_eq!(
                get1(conn, "get", "later").map(|i| i.data),
                Some("new".into()),
                "{extra:?} {what}"
            );
        }
        // In 1970: nothing is flushed, in either tier, and the flush still
        // to come (at +100 s, and a new one at +2 s) is called off.
        set(&mut c, "kept", "v");
        assert_eq!(cmd(&mut c, "flush_all 2"), "OK\r\n");
        assert_eq!(cmd(&mut batch, "flush_all 2592001"), "OK\r\n");
        std::thread::sleep(Duration::from_millis(2200));
        assert_eq!(
            get1(&mut c, "get", "kept").map(|i| i.data),
            Some("v".into()),
            "{extra:?}: L1"
        );
        assert_eq!(cmd(&mut l1, "flush_all"), "OK\r\n");
        assert_eq!(
            get1(&mut c, "get", "kept").map(|i| i.data),
            Some("v".into()),
            "{extra:?}: L2"
        );
        // Restart on the same L2, with L1 emptied behind rend's back: what
        // comes back is what L2 holds.
        drop((c, batch, rend));
        assert_eq!(cmd(&mut l1, "flush_all"), "OK\r\n");
        let rend = Rend::start_two_tier(&mc, l2.path(), extra);
        let mut c = rend.connect();
        assert_eq!(
            get1(&mut c, "get", "fired"),
            None,
            "{extra:?} after restart"
        );
        for (key, value) in [("later", "new"), ("kept", "v")] {
            assert_eq!(
                get1(&mut c, "get", key).map(|i| i.data),
                Some(value.into()),
                "{extra:?} after restart"
            );
        }
    }
}

/// A key whose L1 write failed is served from L2 until L1 is set right;
/// rend keeps that in memory. A rend that was killed, or stopped while such
/// keys remained, must not trust L1 as it finds it when it starts again (the
/// soak found a stale value served after such a restart). A rend that
/// stopped with L1 trusted keeps its L1 as it is.
#[test]
fn l1_is_trusted_after_a_restart_only_if_rend_stopped_trusting_it() {
    let _heavy = heavy();
    for kill in [false, true] {
        let mc = Memcached::start();
        let l2 = tempfile::tempdir().expect("temp dir");
        let flags = ["--l1-timeout-ms", "200", "--shutdown-grace", "1"];
        let mut rend = Rend::start_two_tier(&mc, l2.path(), &flags);
        let mut c = rend.connect();
        set(&mut c, "k", "v1");
        let old_cas = gets(&mut c, "k").cas.expect("gets gives a cas");
        // memcached stops: the next write reaches L2 only, and k is suspect.
        mc.signal("STOP");
        set(&mut c, "k", "v2");
        if kill {
            rend.child.kill().expect("kill rend");
            rend.child.wait().expect("reap rend");
        } else {
            assert!(
                rend.terminate(Duration::from_secs(10)).is_some(),
                "rend did not stop"
            );
        }
        mc.signal("CONT");
        // Whatever memcached made of the write in its socket, L1 now holds
        // the old copy, as if that write had been lost.
        let mut m = mc.connect();
        l1_plant(&mut m, "k", 0, 0, &tagged_value(old_cas, "v1"));
        drop(rend);
        let rend = Rend::start_two_tier(&mc, l2.path(), &flags);
        let mut c = rend.connect();
        assert_eq!(
            get1(&mut c, "get", "k").map(|i| i.data),
            Some("v2".into()),
            "kill {kill}: a stale L1 copy was trusted after the restart"
        );
    }
    // Stopped with nothing suspect: L1 is kept and served as it is.
    let mc = Memcached::start();
    let l2 = tempfile::tempdir().expect("temp dir");
    let mut rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let mut c = rend.connect();
    set(&mut c, "kept", "v");
    let cas = gets(&mut c, "kept").cas.expect("gets gives a cas");
    let mut m = mc.connect();
    await_l1(&mut m, "kept", cas, "v");
    assert!(rend.terminate(Duration::from_secs(15)).is_some());
    drop(rend);
    // The same cas, other bytes: served only if L1 is trusted as it is.
    l1_plant(&mut m, "kept", 0, 0, &tagged_value(cas, "from-l1"));
    let rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let mut c = rend.connect();
    assert_eq!(
        get1(&mut c, "get", "kept").map(|i| i.data),
        Some("from-l1".into()),
        "a clean stop left L1 trusted"
    );
}
