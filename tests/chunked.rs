//! `rend --chunked` (DESIGN §4, §8) against real memcached processes: a size
//! sweep across chunk boundaries, broken values (a chunk missing or from
//! another write) absent for every verb, Rend's layout in memcached, expiry
//! reaching every item, no torn reads under concurrent overwrites, exact
//! read-modify-writes under concurrency, memccapable, and replies that must
//! match memcached's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    assert_all_pass, bin_req, memccapable, read_line, read_values, set_extras, Conn, Memcached,
    Packet, Rend,
};
use md5::{Digest, Md5};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, TestCaseError, TestRunner,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Rend's layout (DESIGN §4).
const META_LEN: usize = 40;
const TOKEN_LEN: usize = 16;
/// Default chunk data size: this less the key's length.
const CHUNK_BASE: usize = 1097;
/// The default value limit with --chunked.
const MAX_VALUE: usize = 1 << 20;

/// Tests that keep the CPUs busy (32 client threads) and tests that move
/// 1 MiB values in 8-byte chunks (131,072 items in one pipeline, which rend
/// must finish within --l1-timeout-ms) take turns: on a 2-core machine the
/// latter otherwise meet "SERVER_ERROR L1 timeout".
static CPU_HEAVY: Mutex<()> = Mutex::new(());

fn cpu_heavy() -> MutexGuard<'static, ()> {
    CPU_HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const GET: u8 = 0x00;
const SET: u8 = 0x01;
const INCREMENT: u8 = 0x05;
const APPEND: u8 = 0x0e;
const GAT: u8 = 0x1d;

// ============================================================================
// Helpers: replies read by their framing (values may hold any bytes).
// ============================================================================

fn get_line(key: &[u8]) -> Vec<u8> {
    let mut req = b"get ".to_vec();
    req.extend_from_slice(key);
    req.extend_from_slice(b"\r\n");
    req
}

/// Text get of one key: its flags and data, or `None` on a miss.
fn get(c: &mut Conn, key: &[u8]) -> Option<(u32, Vec<u8>)> {
    c.send(&get_line(key));
    let mut values = read_values(c);
    assert!(values.len() <= 1, "one key, {} values", values.len());
    values.pop().map(|v| {
        assert_eq!(v.key, key, "value for another key");
        (v.flags, v.data)
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

/// A text storage command; its reply line.
fn store(c: &mut Conn, verb: &str, key: &[u8], flags: u32, exptime: i64, value: &[u8]) -> String {
    c.send(&store_req(verb, key, flags, exptime, value));
    String::from_utf8_lossy(&read_line(c)).into_owned()
}

fn set(c: &mut Conn, key: &[u8], flags: u32, exptime: i64, value: &[u8]) {
    assert_eq!(
        store(c, "set", key, flags, exptime, value),
        "STORED\r\n",
        "set {}",
        String::from_utf8_lossy(key)
    );
}

/// A one-line text command (key spliced in where `{}` is).
fn cmd(c: &mut Conn, line: &str, key: &[u8]) -> String {
    let (a, b) = line.split_once("{}").expect("a {} for the key");
    let mut req = a.as_bytes().to_vec();
    req.extend_from_slice(key);
    req.extend_from_slice(b.as_bytes());
    req.extend_from_slice(b"\r\n");
    c.send(&req);
    String::from_utf8_lossy(&read_line(c)).into_owned()
}

/// Binary request, one reply packet.
fn bin(c: &mut Conn, opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Packet {
    c.send(&bin_req(opcode, 0x5eed, 0, extras, key, value));
    let p = c.packet();
    assert_eq!(
        (p.magic, p.opcode, p.opaque),
        (0x81, opcode, 0x5eed),
        "reply packet {p:?}"
    );
    p
}

/// Binary GET: flags and value, or `None` on a miss.
fn bin_get(c: &mut Conn, key: &[u8]) -> Option<(u32, Vec<u8>)> {
    let p = bin(c, GET, &[], key, &[]);
    match p.status {
        0 => {
            assert_eq!(p.extras.len(), 4, "get extras {p:?}");
            let flags = u32::from_be_bytes(p.extras[..4].try_into().expect("4 bytes"));
            Some((flags, p.value))
        }
        1 => None,
        s => panic!(
            "binary get {}: status {s:#x} {:?}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(&p.value)
        ),
    }
}

fn with_suffix(base: &[u8], suffix: &str) -> Vec<u8> {
    let mut k = base.to_vec();
    k.push(b'-');
    k.extend_from_slice(suffix.as_bytes());
    k
}

/// The name a key's items live under in memcached: the key, or `#` and the
/// hex MD5 of keys over 240 bytes.
fn base_key(key: &[u8]) -> Vec<u8> {
    if key.len() <= 240 {
        return key.to_vec();
    }
    // The key's first 208 bytes, '#', the hex MD5: 241 bytes, longer than
    // any plain name.
    let mut s = key[..208].to_vec();
    s.push(b'#');
    for b in Md5::digest(key) {
        s.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    s
}

/// The metadata record.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Meta {
    len: u32,
    flags: u32,
    chunks: u32,
    chunk_size: u32,
    inserted: u32,
    expiry: u32,
    token: [u8; TOKEN_LEN],
}

fn parse_meta(b: &[u8]) -> Meta {
    assert_eq!(b.len(), META_LEN, "metadata item of {} bytes", b.len());
    let u = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    Meta {
        len: u(0),
        flags: u(4),
        chunks: u(8),
        chunk_size: u(12),
        inserted: u(16),
        expiry: u(20),
        token: b[24..40].try_into().expect("16 bytes"),
    }
}

/// The metadata of `key` as memcached holds it, if any.
fn meta_of(m: &mut Conn, key: &[u8]) -> Option<Meta> {
    get(m, &with_suffix(&base_key(key), "meta")).map(|(flags, data)| {
        assert_eq!(flags, 0, "metadata items carry flags 0");
        parse_meta(&data)
    })
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn bytes_from(seed: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    SmallRng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

fn show(b: &[u8]) -> String {
    let s = b[..b.len().min(120)].escape_ascii().to_string();
    if b.len() > 120 {
        format!("{s}… ({} bytes)", b.len())
    } else {
        s
    }
}

/// PROPTEST_CASES if set (CI sets 256), else `default`.
fn proptest_config(default: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "fixtures/proptest-regressions/chunked_sockets.txt",
        ))),
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

// ============================================================================
// 1. Size sweep across chunk boundaries.
// ============================================================================

/// A value size relative to the chunk size C in effect for the key.
#[derive(Clone, Copy, Debug)]
enum Size {
    Zero,
    One,
    /// k·C + off, k small.
    Boundary {
        k: usize,
        off: i64,
    },
    /// k·C + off, k a fraction (per mille) of the most chunks a value has.
    Far {
        per_mille: usize,
        off: i64,
    },
    /// The limit, 1 MiB.
    Max,
    /// One past it: refused.
    OverMax,
}

impl Size {
    fn bytes(self, c: usize) -> usize {
        let around =
            |k: usize, off: i64| ((k * c) as i64 + off).clamp(0, MAX_VALUE as i64) as usize;
        match self {
            Size::Zero => 0,
            Size::One => 1,
            Size::Boundary { k, off } => around(k, off),
            Size::Far { per_mille, off } => around((MAX_VALUE / c * per_mille / 1000).max(1), off),
            Size::Max => MAX_VALUE,
            Size::OverMax => MAX_VALUE + 1,
        }
    }
}

/// With tiny chunks a value near 1 MiB is 131,072 items: rarer, and "far"
/// sizes stay under 5% of the limit (the fixed edge tests always run 1 MiB).
fn size_strategy(tiny: bool) -> impl Strategy<Value = Size> {
    let (far, max) = if tiny { (50, 1) } else { (1000, 2) };
    prop_oneof![
        2 => Just(Size::Zero),
        2 => Just(Size::One),
        20 => (1usize..=8, -1i64..=1).prop_map(|(k, off)| Size::Boundary { k, off }),
        4 => (0usize..=far, -1i64..=1).prop_map(|(per_mille, off)| Size::Far { per_mille, off }),
        max => Just(Size::Max),
        2 => Just(Size::OverMax),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    key: Vec<u8>,
    size: Size,
    flags: u32,
    seed: u64,
    /// Write with the binary protocol (else text).
    binary: bool,
}

fn case_strategy(tiny: bool) -> impl Strategy<Value = Case> {
    (
        // Printable, no spaces, 1..=250 bytes.
        proptest::collection::vec(0x21u8..=0x7e, 1..=250),
        size_strategy(tiny),
        prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()],
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(key, size, flags, seed, binary)| Case {
            key,
            size,
            flags,
            seed,
            binary,
        })
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

/// One case: write the value (text or binary), read it back both ways.
fn sweep_case(rend: &Rend, chunk_size: Option<usize>, case: &Case) -> Result<(), TestCaseError> {
    let c = chunk_size.unwrap_or(CHUNK_BASE - case.key.len());
    let n = case.size.bytes(c);
    let value = bytes_from(case.seed, n);
    let key = &case.key[..];
    let (mut text, mut binc) = (rend.connect(), rend.connect());
    let what = || {
        format!(
            "key of {} bytes, {n} bytes (C = {c}, {:?}), flags {}, via {}",
            key.len(),
            case.size,
            case.flags,
            if case.binary { "binary" } else { "text" }
        )
    };
    if n > MAX_VALUE {
        // Refused before it is buffered; like memcached, a refused set also
        // drops what the key held.
        set(&mut text, key, 1, 0, b"old");
        if case.binary {
            let p = bin(&mut binc, SET, &set_extras(case.flags, 0), key, &value);
            check(p.status == 0x03 && p.value == b"Too large.", || {
                format!("{}: binary set answered {p:?}", what())
            })?;
        } else {
            let reply = store(&mut text, "set", key, case.flags, 0, &value);
            check(
                reply == "SERVER_ERROR object too large for cache\r\n",
                || format!("{}: text set answered {reply:?}", what()),
            )?;
        }
        check(get(&mut text, key).is_none(), || {
            format!("{}: the old value survived a refused set", what())
        })?;
        check(bin_get(&mut binc, key).is_none(), || {
            format!("{}: binary get hit after a refused set", what())
        })?;
        return Ok(());
    }
    if case.binary {
        let p = bin(&mut binc, SET, &set_extras(case.flags, 0), key, &value);
        check(p.status == 0 && p.cas != 0, || {
            format!("{}: binary set answered {p:?}", what())
        })?;
    } else {
        let reply = store(&mut text, "set", key, case.flags, 0, &value);
        check(reply == "STORED\r\n", || {
            format!("{}: text set answered {reply:?}", what())
        })?;
    }
    let want = Some((case.flags, value));
    let got = get(&mut text, key);
    check(got == want, || {
        format!(
            "{}: text get returned {:?}",
            what(),
            got.map(|(f, d)| (f, show(&d)))
        )
    })?;
    let got = bin_get(&mut binc, key);
    check(got == want, || {
        format!(
            "{}: binary get returned {:?}",
            what(),
            got.map(|(f, d)| (f, show(&d)))
        )
    })?;
    // Free the memory for the next cases.
    let reply = cmd(&mut text, "delete {}", key);
    check(reply == "DELETED\r\n", || {
        format!("{}: delete answered {reply:?}", what())
    })
}

fn sweep(chunk_size: Option<usize>) {
    let _turn = chunk_size.map(|_| cpu_heavy());
    let started = Instant::now();
    // Room for a 1 MiB value in 8-byte chunks (131,072 items) whatever slab
    // class its key length puts the chunks in.
    let mc = Memcached::start_with(&["-m", "1024"]);
    let size_flag = chunk_size.map(|c| c.to_string());
    let mut flags = vec!["--chunked"];
    if let Some(c) = &size_flag {
        flags.extend(["--chunk-size", c]);
    }
    let rend = Rend::start(&mc, &flags);
    let mut runner = TestRunner::new(proptest_config(64));
    let cases = runner.config().cases;
    let result = runner.run(&case_strategy(chunk_size.is_some()), |case| {
        sweep_case(&rend, chunk_size, &case)
    });
    if let Err(e) = result {
        panic!("size sweep through rend {flags:?}: {e}");
    }
    println!(
        "size sweep {flags:?}: {cases} cases in {:.1?}",
        started.elapsed()
    );
}

#[test]
fn size_sweep_default_chunks() {
    sweep(None);
}

#[test]
fn size_sweep_tiny_chunks() {
    sweep(Some(8));
}

/// The fixed edges the random sweep may miss: every k·C ± 1 for k up to 3,
/// and the limit and one past it, for the shortest and longest keys, both
/// protocols.
fn size_edges(chunk_size: Option<usize>, key_lens: &[usize]) {
    let _turn = chunk_size.map(|_| cpu_heavy());
    let mc = Memcached::start_with(&["-m", "1024"]);
    let size_flag = chunk_size.map(|c| c.to_string());
    let mut flags = vec!["--chunked"];
    if let Some(c) = &size_flag {
        flags.extend(["--chunk-size", c]);
    }
    let rend = Rend::start(&mc, &flags);
    let mut n_cases = 0;
    for &len in key_lens {
        let key: Vec<u8> = (0..len).map(|i| b'!' + (i % 94) as u8).collect();
        let c = chunk_size.unwrap_or(CHUNK_BASE - len);
        let mut sizes = vec![Size::Zero, Size::One, Size::Max, Size::OverMax];
        for k in 1..=3 {
            for off in -1..=1 {
                sizes.push(Size::Boundary { k, off });
            }
        }
        for (i, size) in sizes.into_iter().enumerate() {
            for binary in [false, true] {
                let case = Case {
                    key: key.clone(),
                    size,
                    flags: i as u32 * 0x0101_0101,
                    seed: i as u64,
                    binary,
                };
                if let Err(e) = sweep_case(&rend, chunk_size, &case) {
                    panic!("rend {flags:?}, C = {c}: {e}");
                }
                n_cases += 1;
            }
        }
    }
    assert_eq!(n_cases, key_lens.len() * 13 * 2);
}

#[test]
fn size_edges_default_chunks() {
    size_edges(None, &[1, 240, 241, 250]);
}

#[test]
fn size_edges_tiny_chunks() {
    size_edges(Some(8), &[1, 250]);
}

// ============================================================================
// 2. Broken values are absent.
// ============================================================================

#[derive(Clone, Copy, Debug)]
enum Breakage {
    /// `<key>-<i>` deleted in memcached.
    MissingChunk(usize),
    /// `<key>-<i>` rewritten with another token and data of the same size.
    ForeignToken(usize),
    /// `<key>-<i>` rewritten one byte short.
    ShortChunk(usize),
    /// `<key>-meta` rewritten with 39 bytes.
    BadMeta,
}

/// Break the value of `key` (3 chunks) directly in memcached.
fn break_value(m: &mut Conn, key: &[u8], how: Breakage) {
    let meta = meta_of(m, key).expect("metadata before breaking");
    assert_eq!(meta.chunks, 3);
    let chunk = |i: usize| with_suffix(key, &i.to_string());
    match how {
        Breakage::MissingChunk(i) => assert_eq!(cmd(m, "delete {}", &chunk(i)), "DELETED\r\n"),
        Breakage::ForeignToken(i) => {
            let (_, old) = get(m, &chunk(i)).expect("chunk present");
            assert_eq!(old.len(), TOKEN_LEN + meta.chunk_size as usize);
            assert_eq!(&old[..TOKEN_LEN], &meta.token[..]);
            let mut forged: Vec<u8> = meta.token.iter().map(|b| b ^ 0x5a).collect();
            forged.extend_from_slice(&old[TOKEN_LEN..]);
            set(m, &chunk(i), 0, 0, &forged);
        }
        Breakage::ShortChunk(i) => {
            let (_, mut old) = get(m, &chunk(i)).expect("chunk present");
            old.pop();
            set(m, &chunk(i), 0, 0, &old);
        }
        Breakage::BadMeta => {
            let (_, mut old) = get(m, &with_suffix(key, "meta")).expect("meta present");
            old.pop();
            set(m, &with_suffix(key, "meta"), 0, 0, &old);
        }
    }
}

#[test]
fn broken_values_are_absent_for_every_verb() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked"]);
    let (mut c, mut b, mut m) = (rend.connect(), rend.connect(), mc.connect());
    let key = b"broken";
    let size = CHUNK_BASE - key.len();
    // Three chunks, the last one partly filled.
    let value = bytes_from(1, 2 * size + 100);
    let breakages = [
        Breakage::MissingChunk(0),
        Breakage::MissingChunk(1),
        Breakage::MissingChunk(2),
        Breakage::ForeignToken(1),
        Breakage::ForeignToken(2),
        Breakage::ShortChunk(1),
        Breakage::BadMeta,
    ];
    type Verb = fn(&mut Conn, &mut Conn, &[u8], u64);
    let verbs: [(&str, Verb); 15] = [
        ("get", |c, _, k, _| assert_eq!(get(c, k), None)),
        ("gets", |c, _, k, _| {
            c.send(&[b"gets ", k, b"\r\n"].concat());
            assert_eq!(read_values(c), vec![]);
        }),
        ("gat", |c, _, k, _| {
            c.send(&[b"gat 3600 ", k, b"\r\n"].concat());
            assert_eq!(read_values(c), vec![]);
        }),
        ("multi-get", |c, _, k, _| {
            set(c, b"good", 3, 0, b"fine");
            c.send(&[b"get good ", k, b" good\r\n"].concat());
            let v = read_values(c);
            assert_eq!(v.len(), 2, "{v:?}");
            assert!(v.iter().all(|i| i.key == b"good" && i.data == b"fine"));
        }),
        ("binary get", |_, b, k, _| assert_eq!(bin_get(b, k), None)),
        ("binary gat", |_, b, k, _| {
            let p = bin(b, GAT, &3600u32.to_be_bytes(), k, &[]);
            assert_eq!(p.status, 1, "{p:?}");
        }),
        ("replace", |c, _, k, _| {
            assert_eq!(store(c, "replace", k, 0, 0, b"new"), "NOT_STORED\r\n")
        }),
        ("append", |c, _, k, _| {
            assert_eq!(store(c, "append", k, 0, 0, b"tail"), "NOT_STORED\r\n")
        }),
        ("prepend", |c, _, k, _| {
            assert_eq!(store(c, "prepend", k, 0, 0, b"head"), "NOT_STORED\r\n")
        }),
        ("cas", |c, _, k, cas| {
            // With the cas the value had before it broke.
            let mut req = b"cas ".to_vec();
            req.extend_from_slice(k);
            req.extend_from_slice(format!(" 0 0 3 {cas}\r\nnew\r\n").as_bytes());
            c.send(&req);
            assert_eq!(read_line(c), b"NOT_FOUND\r\n");
        }),
        ("incr", |c, _, k, _| {
            assert_eq!(cmd(c, "incr {} 1", k), "NOT_FOUND\r\n")
        }),
        ("decr", |c, _, k, _| {
            assert_eq!(cmd(c, "decr {} 1", k), "NOT_FOUND\r\n")
        }),
        ("touch", |c, _, k, _| {
            assert_eq!(cmd(c, "touch {} 3600", k), "NOT_FOUND\r\n")
        }),
        ("delete", |c, _, k, _| {
            assert_eq!(cmd(c, "delete {}", k), "NOT_FOUND\r\n")
        }),
        ("add", |c, b, k, _| {
            assert_eq!(store(c, "add", k, 9, 0, b"added"), "STORED\r\n");
            assert_eq!(get(c, k), Some((9, b"added".to_vec())));
            assert_eq!(bin_get(b, k), Some((9, b"added".to_vec())));
        }),
    ];
    for how in breakages {
        for (name, verb) in &verbs {
            set(&mut c, key, 7, 0, &value);
            c.send(&[b"gets ", &key[..], b"\r\n"].concat());
            let cas = read_values(&mut c)[0].cas.expect("gets cas");
            assert_eq!(get(&mut c, key), Some((7, value.clone())));
            break_value(&mut m, key, how);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                verb(&mut c, &mut b, key, cas)
            }));
            if let Err(e) = result {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{how:?}, then {name}: {msg}");
            }
            // Still absent (except after add), and a fresh set works.
            if *name != "add" {
                assert_eq!(get(&mut c, key), None, "{how:?}, then {name}, then get");
            }
            set(&mut c, key, 8, 0, b"fresh");
            assert_eq!(
                get(&mut c, key),
                Some((8, b"fresh".to_vec())),
                "{how:?} {name}"
            );
            assert_eq!(bin_get(&mut b, key), Some((8, b"fresh".to_vec())));
        }
    }
}

/// A chunk deleted, then a chunk from another write (a foreign token, data of
/// the same size): each a miss, then add succeeds, then set+get works.
#[test]
fn missing_or_foreign_chunk_is_a_miss() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked"]);
    let (mut c, mut m) = (rend.connect(), mc.connect());
    let key = b"victim";
    let value = bytes_from(2, 5000);
    for foreign in [false, true] {
        set(&mut c, key, 1, 0, &value);
        assert_eq!(get(&mut c, key), Some((1, value.clone())));
        if foreign {
            // `set <key>-1 0 0 <len>`: 16 other bytes, data of the same size.
            let (_, old) = get(&mut m, b"victim-1").expect("chunk 1");
            let mut forged = vec![0xa5u8; TOKEN_LEN];
            forged.extend(std::iter::repeat_n(b'x', old.len() - TOKEN_LEN));
            assert_ne!(forged[..TOKEN_LEN], old[..TOKEN_LEN]);
            set(&mut m, b"victim-1", 0, 0, &forged);
        } else {
            assert_eq!(cmd(&mut m, "delete {}", b"victim-1"), "DELETED\r\n");
        }
        assert_eq!(c.get_reply(b"get victim\r\n"), "END\r\n");
        assert_eq!(store(&mut c, "add", key, 2, 0, b"added"), "STORED\r\n");
        assert_eq!(get(&mut c, key), Some((2, b"added".to_vec())));
        set(&mut c, key, 3, 0, &value);
        assert_eq!(get(&mut c, key), Some((3, value.clone())));
    }
}

/// Metadata may be written by another process sharing the memcached: one
/// that claims more than rend's limits (a length past the item limit, or
/// millions of one-byte chunks) is a miss, never an allocation of what it
/// claims, and the key can be written again.
#[test]
fn metadata_past_the_limits_is_a_miss() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked"]);
    let (mut c, mut m) = (rend.connect(), mc.connect());
    let before = common::rss_bytes(rend.child.id());
    let forged = |len: u32, chunks: u32, chunk_size: u32| -> Vec<u8> {
        let mut b = Vec::new();
        for v in [len, 0, chunks, chunk_size, now_unix() as u32, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[7; TOKEN_LEN]);
        b
    };
    let cases = [
        ("huge length, one chunk", forged(u32::MAX, 1, u32::MAX)),
        ("100 M one-byte chunks", forged(100_000_000, 100_000_000, 1)),
        (
            "just past the limit",
            forged(MAX_VALUE as u32 + 1, 1, MAX_VALUE as u32 + 1),
        ),
    ];
    for (what, meta) in cases {
        set(&mut m, b"forged-meta", 0, 0, &meta);
        assert_eq!(c.get_reply(b"get forged\r\n"), "END\r\n", "{what}");
        let grown = common::rss_bytes(rend.child.id()).saturating_sub(before);
        assert!(grown < 64 << 20, "{what}: rend grew by {grown} bytes");
        set(&mut c, b"forged", 4, 0, b"fine");
        assert_eq!(
            get(&mut c, b"forged"),
            Some((4, b"fine".to_vec())),
            "{what}"
        );
    }
}

// ============================================================================
// 3. The layout in memcached.
// ============================================================================

#[test]
fn layout_in_memcached_is_rends() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked", "--chunk-size", "8"]);
    let (mut c, mut b, mut m) = (rend.connect(), rend.connect(), mc.connect());
    let value: Vec<u8> = (0..30u8).map(|i| b'A' + i).collect();
    let before = now_unix();
    set(&mut c, b"layout", 0xdead_beef, 0, &value);
    let meta = meta_of(&mut m, b"layout").expect("layout-meta in memcached");
    assert_eq!(
        (
            meta.len,
            meta.flags,
            meta.chunks,
            meta.chunk_size,
            meta.expiry
        ),
        (30, 0xdead_beef, 4, 8, 0),
        "{meta:?}"
    );
    assert!(
        (before.saturating_sub(2)..=now_unix() + 2).contains(&u64::from(meta.inserted)),
        "insert time {} (now {before})",
        meta.inserted
    );
    for i in 0..4 {
        let (flags, chunk) =
            get(&mut m, format!("layout-{i}").as_bytes()).expect("chunk in memcached");
        assert_eq!(flags, 0);
        assert_eq!(chunk.len(), 24, "chunk {i}");
        assert_eq!(&chunk[..TOKEN_LEN], &meta.token[..], "chunk {i} token");
        let data = &value[i * 8..((i + 1) * 8).min(30)];
        assert_eq!(&chunk[TOKEN_LEN..TOKEN_LEN + data.len()], data, "chunk {i}");
        assert!(
            chunk[TOKEN_LEN + data.len()..].iter().all(|&z| z == 0),
            "padding"
        );
    }
    assert_eq!(get(&mut m, b"layout-4"), None);

    // A fresh token per write; the expiry field holds the absolute expiry.
    set(&mut c, b"layout", 5, 3600, &value[..9]);
    let again = meta_of(&mut m, b"layout").expect("meta");
    assert_ne!(again.token, meta.token, "token reused");
    assert_eq!((again.len, again.flags, again.chunks), (9, 5, 2));
    let expiry = u64::from(again.expiry);
    assert!(
        (before + 3600 - 2..=now_unix() + 3600 + 2).contains(&expiry),
        "expiry field {expiry}"
    );

    // 240-byte keys are stored as they are, longer ones under # + md5.
    for len in [240usize, 241, 250] {
        let key = vec![b'q'; len];
        set(&mut c, &key, 11, 0, &value);
        assert_eq!(
            get(&mut c, &key),
            Some((11, value.clone())),
            "{len}-byte key"
        );
        assert_eq!(bin_get(&mut b, &key), Some((11, value.clone())));
        let base = base_key(&key);
        assert_eq!(base.len(), if len <= 240 { len } else { 241 });
        let meta = meta_of(&mut m, &key).expect("meta of a long key");
        assert_eq!((meta.len, meta.chunks, meta.chunk_size), (30, 4, 8));
        let (_, chunk) = get(&mut m, &with_suffix(&base, "3")).expect("last chunk");
        assert_eq!(&chunk[..TOKEN_LEN], &meta.token[..]);
        assert_eq!(cmd(&mut c, "delete {}", &key), "DELETED\r\n");
        assert_eq!(meta_of(&mut m, &key), None, "delete leaves the metadata");
        assert_eq!(
            get(&mut m, &with_suffix(&base, "0")),
            None,
            "delete leaves chunk 0"
        );
    }
}

/// Without --chunk-size, the chunk data size is 1097 less the client key's
/// length (also for hashed keys).
#[test]
fn default_chunk_size_follows_the_key_length() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked"]);
    let (mut c, mut m) = (rend.connect(), mc.connect());
    for len in [1usize, 100, 240, 250] {
        let key = vec![b'd'; len];
        let size = CHUNK_BASE - len;
        let value = bytes_from(len as u64, 2 * size + 1);
        set(&mut c, &key, 0, 0, &value);
        let meta = meta_of(&mut m, &key).expect("meta");
        assert_eq!(
            (meta.chunk_size as usize, meta.chunks, meta.len as usize),
            (size, 3, value.len()),
            "{len}-byte key"
        );
        let (_, last) = get(&mut m, &with_suffix(&base_key(&key), "2")).expect("chunk 2");
        assert_eq!(last.len(), TOKEN_LEN + size);
        assert_eq!(last[TOKEN_LEN], value[2 * size]);
        assert!(last[TOKEN_LEN + 1..].iter().all(|&z| z == 0));
        assert_eq!(get(&mut c, &key), Some((0, value)));
    }
}

// ============================================================================
// 4. Expiry.
// ============================================================================

/// The items of `key`'s value (meta and `chunks` chunks) present in memcached.
fn items_present(m: &mut Conn, key: &[u8], chunks: usize) -> Vec<bool> {
    let base = base_key(key);
    let mut out = vec![get(m, &with_suffix(&base, "meta")).is_some()];
    out.extend((0..chunks).map(|i| get(m, &with_suffix(&base, &i.to_string())).is_some()));
    out
}

#[test]
fn expiry_reaches_every_item() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked"]);
    let (mut c, mut b, mut m) = (rend.connect(), rend.connect(), mc.connect());
    let size = CHUNK_BASE - 7;
    let value = bytes_from(4, 2 * size + 5);

    // Touched and gat'ed values first, the control last: when the control
    // has expired, so have the originals' expiries.
    for key in [&b"touched"[..], b"gatted", b"bgatted", b"expires"] {
        set(&mut c, key, 4, 2, &value);
        assert_eq!(get(&mut c, key), Some((4, value.clone())));
        assert_eq!(bin_get(&mut b, key), Some((4, value.clone())));
        assert_eq!(items_present(&mut m, key, 3), vec![true; 4]);
    }
    assert_eq!(cmd(&mut c, "touch {} 3600", b"touched"), "TOUCHED\r\n");
    c.send(b"gat 3600 gatted\r\n");
    let v = read_values(&mut c);
    assert_eq!((v.len(), &v[0].data), (1, &value));
    let p = bin(&mut b, GAT, &3600u32.to_be_bytes(), b"bgatted", &[]);
    assert_eq!((p.status, &p.value), (0, &value), "binary gat");

    let t0 = Instant::now();
    assert!(
        common::wait_for(Duration::from_secs(5), || get(&mut c, b"expires").is_none()).is_ok(),
        "a value set with exptime 2 still served after 5 s"
    );
    let expired_after = t0.elapsed();
    assert!(
        common::wait_for(Duration::from_secs(2), || items_present(
            &mut m, b"expires", 3
        ) == vec![false; 4])
        .is_ok(),
        "memcached still holds items of an expired value: {:?}",
        items_present(&mut m, b"expires", 3)
    );
    for key in [&b"touched"[..], b"gatted", b"bgatted"] {
        assert_eq!(
            items_present(&mut m, key, 3),
            vec![true; 4],
            "{}: meta and chunks must outlive the original expiry after touch/gat",
            String::from_utf8_lossy(key)
        );
        assert_eq!(get(&mut c, key), Some((4, value.clone())));
    }
    println!("exptime 2 expired after {expired_after:?}");
}

#[test]
fn negative_or_past_exptime_is_never_served() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked"]);
    let (mut c, mut b, mut m) = (rend.connect(), rend.connect(), mc.connect());
    let value = bytes_from(5, 3000);
    for exptime in [-1i64, -2_147_483_648, 1_000_000_000] {
        // Fresh, and over a live value.
        for over in [false, true] {
            let key = format!("neg{exptime}{over}").into_bytes();
            if over {
                set(&mut c, &key, 0, 0, b"live");
            }
            assert_eq!(store(&mut c, "set", &key, 1, exptime, &value), "STORED\r\n");
            assert_eq!(get(&mut c, &key), None, "set with exptime {exptime}");
            assert_eq!(bin_get(&mut b, &key), None, "set with exptime {exptime}");
            assert_eq!(items_present(&mut m, &key, 3), vec![false; 4]);
            assert_eq!(store(&mut c, "add", &key, 0, 0, b"a"), "STORED\r\n");
        }
    }
    // touch and gat with a negative exptime expire the value.
    set(&mut c, b"tneg", 0, 0, &value);
    assert_eq!(cmd(&mut c, "touch {} -1", b"tneg"), "TOUCHED\r\n");
    assert_eq!(get(&mut c, b"tneg"), None);
    assert_eq!(items_present(&mut m, b"tneg", 3), vec![false; 4]);
    set(&mut c, b"gneg", 0, 0, &value);
    c.send(b"gat -1 gneg\r\n");
    assert!(read_values(&mut c).len() <= 1);
    assert_eq!(get(&mut c, b"gneg"), None);
    assert_eq!(bin_get(&mut b, b"gneg"), None);
    assert_eq!(items_present(&mut m, b"gneg", 3), vec![false; 4]);
}

// ============================================================================
// 5. Concurrent overwrites: no torn reads.
// ============================================================================

const HOT_KEYS: [&[u8]; 4] = [b"hot0", b"hot1", b"hot2", b"hot3"];
/// With 4-byte keys the chunk data size is 1093: 1 chunk, exactly 1 chunk,
/// 2 chunks, 19 chunks.
const HOT_SIZES: [usize; 4] = [500, 1093, 1500, 20_000];
const HEADER_LEN: usize = 23;

fn hot_flags(writer: u64, seq: u64) -> u32 {
    ((writer << 24) | (seq & 0xff_ffff)) as u32
}

/// `ww/ssssssssss/llllllll/` then bytes derived from them.
fn hot_value(writer: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{writer:02}/{seq:010}/{len:08}/").into_bytes();
    assert_eq!(v.len(), HEADER_LEN);
    v.extend(bytes_from((writer << 40) ^ seq, len - HEADER_LEN));
    v
}

/// Check a value read back is exactly one writer's write.
fn verify_hot(flags: u32, data: &[u8]) -> Result<(), String> {
    let head = std::str::from_utf8(data.get(..HEADER_LEN).ok_or("short value")?)
        .map_err(|_| format!("bad header {}", show(data)))?;
    let parts: Vec<&str> = head.split('/').collect();
    let num = |i: usize| {
        parts
            .get(i)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("bad header {head:?}"))
    };
    let (writer, seq, len) = (num(0)?, num(1)?, num(2)? as usize);
    if data.len() != len {
        return Err(format!(
            "header {head:?} says {len} bytes, got {}",
            data.len()
        ));
    }
    if flags != hot_flags(writer, seq) {
        return Err(format!(
            "header {head:?} with flags {flags:#x} from another write"
        ));
    }
    if data != hot_value(writer, seq, len) {
        let at = data
            .iter()
            .zip(hot_value(writer, seq, len))
            .position(|(a, b)| *a != b)
            .unwrap_or(0);
        return Err(format!(
            "torn value: header {head:?}, bytes differ from offset {at} (chunk {})",
            at / 1093
        ));
    }
    Ok(())
}

fn no_torn_reads(flags: &[&str]) {
    let _turn = cpu_heavy();
    let mc = Memcached::start();
    let rend = Rend::start(&mc, flags);
    let stop = AtomicBool::new(false);
    let (writes, hits, misses) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let failure = std::sync::Mutex::new(None::<String>);
    let run_for = Duration::from_secs(3);
    std::thread::scope(|s| {
        for w in 0..16u64 {
            let (rend, stop, writes) = (&rend, &stop, &writes);
            s.spawn(move || {
                let mut c = rend.connect();
                let mut b = rend.connect();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let key = HOT_KEYS[((w + seq) % 4) as usize];
                    let len = HOT_SIZES[((w / 4 + seq) % 4) as usize];
                    let value = hot_value(w, seq, len);
                    let flags = hot_flags(w, seq);
                    if seq.is_multiple_of(3) {
                        let p = bin(&mut b, SET, &set_extras(flags, 0), key, &value);
                        assert_eq!(p.status, 0, "binary set {p:?}");
                    } else {
                        set(&mut c, key, flags, 0, &value);
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for r in 0..16u64 {
            let (rend, stop, hits, misses, failure) = (&rend, &stop, &hits, &misses, &failure);
            s.spawn(move || {
                let mut c = rend.connect();
                let mut b = rend.connect();
                let mut i = r;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = HOT_KEYS[(i % 4) as usize];
                    let found: Vec<(u32, Vec<u8>)> = match i % 3 {
                        0 => bin_get(&mut b, key).into_iter().collect(),
                        1 => get(&mut c, key).into_iter().collect(),
                        _ => {
                            c.send(b"get hot0 hot1 hot2 hot3\r\n");
                            read_values(&mut c)
                                .into_iter()
                                .map(|v| (v.flags, v.data))
                                .collect()
                        }
                    };
                    let expected = if i % 3 == 2 { 4 } else { 1 };
                    misses.fetch_add((expected - found.len()) as u64, Ordering::Relaxed);
                    for (flags, data) in found {
                        if let Err(e) = verify_hot(flags, &data) {
                            failure.lock().expect("lock").get_or_insert(e);
                            stop.store(true, Ordering::Relaxed);
                        }
                        hits.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        let deadline = Instant::now() + run_for;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (writes, hits, misses) = (
        writes.load(Ordering::Relaxed),
        hits.load(Ordering::Relaxed),
        misses.load(Ordering::Relaxed),
    );
    println!("{flags:?}: {writes} writes, {hits} verified hits, {misses} misses");
    if let Some(e) = failure.into_inner().expect("lock") {
        panic!("rend {flags:?} served a value no single write produced: {e}");
    }
    assert!(writes >= 500, "only {writes} writes");
    assert!(hits >= 500, "only {hits} hits verified ({misses} misses)");
}

#[test]
fn no_torn_reads_under_concurrent_overwrites() {
    no_torn_reads(&["--chunked"]);
}

/// Without key locks the tokens alone must keep torn values out.
#[test]
fn no_torn_reads_without_key_locks() {
    no_torn_reads(&["--chunked", "--locked=false"]);
}

// ============================================================================
// 6. Read-modify-write under concurrency.
// ============================================================================

#[test]
fn concurrent_incr_and_append_are_exact() {
    concurrent_read_modify_write(&["--chunked"]);
}

/// Without key locks (as with two rends on one memcached), the metadata's cas
/// alone keeps read-modify-write exact: a writer that loses it tries again.
#[test]
fn concurrent_incr_and_append_are_exact_without_locks() {
    concurrent_read_modify_write(&["--chunked", "--locked", "false"]);
}

fn concurrent_read_modify_write(flags: &[&str]) {
    const CLIENTS: u64 = 16;
    const INCRS: u64 = 500;
    const APPENDS: u64 = 50;
    let _turn = cpu_heavy();
    let mc = Memcached::start();
    let rend = Rend::start(&mc, flags);
    let mut c = rend.connect();
    set(&mut c, b"counter", 0, 0, b"0");
    set(&mut c, b"tags", 0, 0, b"");
    let results: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let rend = &rend;
                s.spawn(move || {
                    let mut c = rend.connect();
                    let mut seen = Vec::with_capacity(INCRS as usize);
                    for i in 0..INCRS {
                        // Half the clients speak binary.
                        let n = if t % 2 == 0 {
                            let line = cmd(&mut c, "incr {} 1", b"counter");
                            line.trim_end()
                                .parse::<u64>()
                                .unwrap_or_else(|_| panic!("client {t}: incr answered {line:?}"))
                        } else {
                            let mut extras = 1u64.to_be_bytes().to_vec();
                            extras.extend_from_slice(&0u64.to_be_bytes());
                            extras.extend_from_slice(&u32::MAX.to_be_bytes());
                            let p = bin(&mut c, INCREMENT, &extras, b"counter", &[]);
                            assert_eq!(p.status, 0, "client {t}: binary incr {p:?}");
                            u64::from_be_bytes(p.value[..8].try_into().expect("8 bytes"))
                        };
                        seen.push(n);
                        if i % (INCRS / APPENDS) == 0 {
                            let tag = format!("t{t}-{};", i / (INCRS / APPENDS));
                            if t % 2 == 0 {
                                let reply = store(&mut c, "append", b"tags", 0, 0, tag.as_bytes());
                                assert_eq!(reply, "STORED\r\n", "client {t}: append");
                            } else {
                                let p = bin(&mut c, APPEND, &[], b"tags", tag.as_bytes());
                                assert_eq!(p.status, 0, "client {t}: binary append {p:?}");
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let (flags, count) = get(&mut c, b"counter").expect("counter");
    assert_eq!(flags, 0);
    let total = CLIENTS * INCRS;
    assert_eq!(
        String::from_utf8_lossy(&count).trim_end(),
        total.to_string(),
        "lost increments"
    );
    // Every increment saw a distinct count: 1..=8000 each once.
    let mut all: Vec<u64> = results.into_iter().flatten().collect();
    all.sort_unstable();
    assert!(
        all.iter().copied().eq(1..=total),
        "incr results are not 1..={total} each once"
    );
    let (_, tags) = get(&mut c, b"tags").expect("tags");
    let tags = String::from_utf8(tags).expect("ascii tags");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for tag in tags.split(';').filter(|t| !t.is_empty()) {
        *counts.entry(tag).or_default() += 1;
    }
    let dup: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dup.is_empty(), "tags appended more than once: {dup:?}");
    let want: HashSet<String> = (0..CLIENTS)
        .flat_map(|t| (0..APPENDS).map(move |i| format!("t{t}-{i}")))
        .collect();
    let got: HashSet<String> = counts.keys().map(|s| s.to_string()).collect();
    assert_eq!(got, want, "the set of tags differs");
    assert!(
        tags.len() > CHUNK_BASE,
        "the tags value spans several chunks"
    );
}

// ============================================================================
// 7. memccapable.
// ============================================================================

#[test]
fn memccapable_passes_against_chunked() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked"]);
    assert_all_pass(&memccapable(&rend));
}

/// With 8-byte chunks memccapable's values really span chunks.
#[test]
fn memccapable_passes_against_chunked_tiny_chunks() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked", "--chunk-size", "8"]);
    assert_all_pass(&memccapable(&rend));

    // Some value memccapable left spans chunks: find it with memcached's
    // key dump, then check its metadata and second chunk.
    let mut m = mc.connect();
    m.send(b"lru_crawler metadump all\r\n");
    let dump = m.read_until(b"END\r\n");
    let dump = String::from_utf8_lossy(&dump);
    let keys: HashSet<&str> = dump
        .lines()
        .filter_map(|l| l.strip_prefix("key=")?.split(' ').next())
        .collect();
    let spanning: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_suffix("-meta"))
        .filter(|base| {
            let Some(meta) = meta_of(&mut m, base.as_bytes()) else {
                return false;
            };
            let second = get(&mut m, format!("{base}-1").as_bytes());
            meta.chunks >= 2
                && meta.chunk_size == 8
                && second.is_some_and(|(_, c)| c[..TOKEN_LEN] == meta.token)
        })
        .collect();
    assert!(
        !spanning.is_empty(),
        "no value of memccapable's spans chunks in memcached: {keys:?}"
    );

    // And a key of our own through the same rend.
    let mut c = rend.connect();
    set(&mut c, b"probe", 1, 0, b"0123456789abcdefghij");
    let meta = meta_of(&mut m, b"probe").expect("probe-meta");
    assert_eq!((meta.len, meta.chunks, meta.chunk_size), (20, 3, 8));
    let (_, second) = get(&mut m, b"probe-1").expect("probe-1");
    assert_eq!(&second[..TOKEN_LEN], &meta.token[..]);
    assert_eq!(&second[TOKEN_LEN..], b"89abcdef");
}

// ============================================================================
// Replies that must match memcached's (found by the differential test).
// ============================================================================

/// Each request sent to a memcached directly and to `rend --chunked`
/// (in front of another), in order; the replies must be identical.
fn same_as_memcached(flags: &[&str], requests: &[&[u8]]) {
    let reference = Memcached::start();
    let mc = Memcached::start();
    let rend = Rend::start(&mc, flags);
    let (mut a, mut r) = (reference.connect(), rend.connect());
    for req in requests {
        let done =
            |b: &[u8]| b.ends_with(b"\r\n") && !b.starts_with(b"VALUE") || b.ends_with(b"END\r\n");
        a.send(req);
        let ra = a.read_until_with(done);
        r.send(req);
        let rr = r.read_until_with(done);
        assert!(
            rr == ra,
            "rend {flags:?} answered {} differently from memcached:\n  memcached: {}\n  rend:      {}",
            show(req),
            show(&ra),
            show(&rr)
        );
    }
}

/// `gat` with a negative (or past absolute) exptime expires the item as it is
/// read, so memcached serves a key named twice in one command once.
#[test]
fn negative_gat_serves_a_repeated_key_once() {
    for flags in [&["--chunked"][..], &["--chunked", "--chunk-size", "8"]] {
        same_as_memcached(
            flags,
            &[
                b"set k 0 0 20\r\n01234567890123456789\r\n",
                b"gat -1 k k\r\n",
                b"get k\r\n",
                b"set k 0 0 1\r\na\r\n",
                b"gat -1 k j k k\r\n",
                b"set k 0 0 1\r\na\r\n",
                b"gat 1000000000 k k\r\n",
                b"get k\r\n",
                b"set k 0 0 1\r\na\r\n",
                b"gat 0 k k\r\n",
            ],
        );
    }
}

/// memcached's safe_strtoull reads a value as a C string: a NUL ends the
/// number ("5\0abc" is 5, kept space-padded to its length).
#[test]
fn arithmetic_on_a_value_with_a_nul_matches_memcached() {
    same_as_memcached(
        &["--chunked"],
        &[
            b"set n 0 0 5\r\n5\x00abc\r\n",
            b"incr n 3\r\n",
            b"get n\r\n",
            b"set n 0 0 4\r\n12\x00\x00\r\n",
            b"decr n 3\r\n",
            b"get n\r\n",
            b"set n 0 0 2\r\n\x005\r\n",
            b"incr n 1\r\n",
        ],
    );
}

/// A key over 240 bytes is stored under `#` and its MD5 in hex, a name that
/// is also a valid 33-byte client key: the two must not share a value.
#[test]
fn long_keys_do_not_alias_their_hashed_names() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked"]);
    let mut c = rend.connect();
    let long = vec![b'a'; 250];
    let alias = base_key(&long);
    assert_eq!(alias.len(), 241);
    set(&mut c, &long, 1, 0, b"secret");
    assert_eq!(
        get(&mut c, &alias),
        None,
        "{} reads the value of the 250-byte key",
        String::from_utf8_lossy(&alias)
    );
    set(&mut c, &alias, 2, 0, b"forged");
    assert_eq!(
        get(&mut c, &long),
        Some((1, b"secret".to_vec())),
        "a set of {} replaced the value of the 250-byte key",
        String::from_utf8_lossy(&alias)
    );
}

/// A broken value is absent for binary incr/decr with an initial value too:
/// they create the key, as on a miss.
#[test]
fn binary_incr_with_initial_creates_over_a_broken_value() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked", "--chunk-size", "8"]);
    let (mut c, mut b, mut m) = (rend.connect(), rend.connect(), mc.connect());
    for (opcode, name) in [(INCREMENT, "incr"), (0x06, "decr")] {
        let key = format!("broken-{name}").into_bytes();
        set(&mut c, &key, 0, 0, b"1234567890123456");
        assert_eq!(
            cmd(&mut m, "delete {}", &with_suffix(&key, "1")),
            "DELETED\r\n"
        );
        assert_eq!(get(&mut c, &key), None);
        let mut extras = 5u64.to_be_bytes().to_vec();
        extras.extend_from_slice(&42u64.to_be_bytes());
        extras.extend_from_slice(&0u32.to_be_bytes());
        let p = bin(&mut b, opcode, &extras, &key, &[]);
        assert_eq!(
            (p.status, p.value.clone()),
            (0, 42u64.to_be_bytes().to_vec()),
            "binary {name} with initial 42 over a broken value: {:?}",
            String::from_utf8_lossy(&p.value)
        );
        assert_eq!(get(&mut c, &key), Some((0, b"42".to_vec())));
    }
}

/// incr/decr/append/prepend keep the item's expiry as touch or gat last set
/// it, as memcached does: the same script on a memcached and on rend, then
/// (after a control key set last with the same TTL has expired) the same
/// survivors.
#[test]
fn read_modify_write_keeps_the_touched_expiry() {
    let reference = Memcached::start();
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &["--chunked"]);
    // memcached 1.6.18 expires relative exptimes of 1-2 s at once (its clock
    // runs behind): 3 s is the shortest that lives.
    let script: &[&[u8]] = &[
        // No expiry, touched to 3 s, then incremented: gone with the control.
        b"set never 0 0 1\r\n5\r\n",
        b"touch never 3\r\n",
        b"incr never 1\r\n",
        // 3 s, touched to never, then appended: survives the control.
        b"set brief 0 3 1\r\n5\r\n",
        b"touch brief 0\r\n",
        b"append brief 0 0 1\r\nx\r\n",
        // 3 s, gat to never, then prepended: survives.
        b"set gatted 0 3 1\r\n5\r\n",
        b"gat 0 gatted\r\n",
        b"prepend gatted 0 0 1\r\nx\r\n",
        // 3 s, touched to never, then decremented: survives.
        b"set counted 0 3 2\r\n10\r\n",
        b"touch counted 0\r\n",
        b"decr counted 1\r\n",
        b"set control 0 3 1\r\nc\r\n",
    ];
    let done =
        |b: &[u8]| b.ends_with(b"\r\n") && !b.starts_with(b"VALUE") || b.ends_with(b"END\r\n");
    let (mut a, mut r) = (reference.connect(), rend.connect());
    for req in script {
        a.send(req);
        let ra = a.read_until_with(done);
        r.send(req);
        let rr = r.read_until_with(done);
        assert!(
            ra == rr,
            "{}: memcached {} rend {}",
            show(req),
            show(&ra),
            show(&rr)
        );
    }
    for (name, conn) in [("memcached", &mut a), ("rend", &mut r)] {
        assert!(
            common::wait_for(Duration::from_secs(6), || get(conn, b"control").is_none()).is_ok(),
            "{name}: the control key did not expire"
        );
    }
    let survivors = |c: &mut Conn| {
        c.send(b"get never brief gatted counted\r\n");
        read_values(c)
            .into_iter()
            .map(|v| (String::from_utf8_lossy(&v.key).into_owned(), v.data))
            .collect::<Vec<_>>()
    };
    let want = survivors(&mut a);
    assert_eq!(
        want.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["brief", "gatted", "counted"],
        "memcached's own survivors"
    );
    assert_eq!(
        survivors(&mut r),
        want,
        "rend's survivors differ from memcached's"
    );
}
