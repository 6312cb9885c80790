//! libmemcached's protocol conformance suite (Debian's memccapable) against
//! rend. It must report all 54 tests passed; a skip or a failure fails here.
//! Modes: l1-only, l1-l2 (main port, plain and chunked, with 8-byte chunks
//! too) and the batch port of an l1-l2 rend (policy l1-l2-batch).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{assert_all_pass, memccapable, memccapable_at, Conn, Memcached, Rend};

/// rend in l1-l2 in front of a fresh memcached, L2 in a fresh temp dir
/// (declared first, so it outlives rend).
fn two_tier(extra: &[&str]) -> (tempfile::TempDir, Memcached, Rend) {
    let l2 = tempfile::tempdir().expect("temp dir");
    let mc = Memcached::start();
    let rend = Rend::start_two_tier(&mc, l2.path(), extra);
    (l2, mc, rend)
}

/// rend's own counter `name` from its `stats`.
fn stat(rend: &Rend, name: &str) -> u64 {
    let mut c = rend.connect();
    c.send(b"stats\r\n");
    let reply = String::from_utf8_lossy(&c.read_until(b"END\r\n")).into_owned();
    reply
        .lines()
        .find_map(|l| {
            let mut t = l.split(' ');
            (t.next() == Some("STAT") && t.next() == Some(name)).then(|| t.next())?
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no stat {name} in {reply}"))
}

#[test]
fn memccapable_passes_against_l1_only() {
    let mc = Memcached::start();
    let rend = Rend::start(&mc, &[]);
    assert_all_pass(&memccapable(&rend));
}

#[test]
fn memccapable_passes_against_l1_l2() {
    let (_l2, _mc, rend) = two_tier(&[]);
    assert_all_pass(&memccapable(&rend));
    // memccapable's reads reached L2 at least on the way (its gets of keys
    // it just deleted or flushed miss both tiers).
    assert!(stat(&rend, "l2_gets") > 0, "no read reached L2");
}

#[test]
fn memccapable_passes_against_l1_l2_chunked() {
    let (_l2, _mc, rend) = two_tier(&["--chunked"]);
    assert_all_pass(&memccapable(&rend));
}

#[test]
fn memccapable_passes_against_l1_l2_batch_port() {
    let (_l2, _mc, rend) = two_tier(&[]);
    let batch = rend.batch.clone().expect("rend serves a batch port");
    assert_all_pass(&memccapable_at(&batch));
}

// ----------------------------------------------------------------------------
// l1-l2 with 8-byte chunks: memccapable's small values really span chunks.
// In l1-l2 an L1 item is L2's record wrapped (0xA5, the L2 cas as a
// big-endian u64, then the value; src/orca/two_tier.rs), and `--chunked`
// splits that wrapped item in Rend's layout (DESIGN §4).
// ----------------------------------------------------------------------------

const META_LEN: usize = 40;
const TOKEN_LEN: usize = 16;
const L1_TAG: u8 = 0xA5;

/// The metadata item `<key>-meta` (DESIGN §4).
#[derive(Debug)]
struct Meta {
    len: u32,
    chunks: u32,
    chunk_size: u32,
    token: Vec<u8>,
}

fn parse_meta(b: &[u8]) -> Meta {
    assert_eq!(b.len(), META_LEN, "metadata item of {} bytes", b.len());
    let u = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    Meta {
        len: u(0),
        chunks: u(8),
        chunk_size: u(12),
        token: b[24..40].to_vec(),
    }
}

/// One text `gets` of one key: its flags, data and cas, or `None`.
fn gets_one(c: &mut Conn, key: &[u8]) -> Option<(u32, Vec<u8>, u64)> {
    let mut req = b"gets ".to_vec();
    req.extend_from_slice(key);
    req.extend_from_slice(b"\r\n");
    c.send(&req);
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let b = c.read_exact_n(1);
        assert_eq!(b.len(), 1, "short reply: {}", line.escape_ascii());
        line.extend_from_slice(&b);
    }
    if line == b"END\r\n" {
        return None;
    }
    let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
    let t: Vec<&str> = text.split(' ').collect();
    assert!(
        t.len() == 5 && t[0] == "VALUE",
        "not a gets VALUE line: {text:?}"
    );
    let num = |s: &str| -> u64 {
        s.parse()
            .unwrap_or_else(|_| panic!("bad number in {text:?}"))
    };
    let len = num(t[3]) as usize;
    let data = c.read_exact_n(len + 2);
    assert_eq!(data.len(), len + 2, "short value after {text:?}");
    assert_eq!(&data[len..], b"\r\n");
    let end = c.read_exact_n(5);
    assert_eq!(end, b"END\r\n", "one key, one value");
    Some((num(t[2]) as u32, data[..len].to_vec(), num(t[4])))
}

fn meta_of(m: &mut Conn, key: &str) -> Option<Meta> {
    gets_one(m, format!("{key}-meta").as_bytes()).map(|(flags, data, _)| {
        assert_eq!(flags, 0, "metadata items carry flags 0");
        parse_meta(&data)
    })
}

#[test]
fn memccapable_passes_against_l1_l2_chunked_tiny_chunks() {
    let (_l2, mc, rend) = two_tier(&["--chunked", "--chunk-size", "8"]);
    assert_all_pass(&memccapable(&rend));

    // Some value memccapable left spans chunks in memcached: find it with
    // memcached's key dump, then check its metadata and second chunk.
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
            let Some(meta) = meta_of(&mut m, base) else {
                return false;
            };
            let second = gets_one(&mut m, format!("{base}-1").as_bytes());
            meta.chunks >= 2
                && meta.chunk_size == 8
                && second.is_some_and(|(_, c, _)| c[..TOKEN_LEN] == meta.token[..])
        })
        .collect();
    assert!(
        !spanning.is_empty(),
        "no value of memccapable's spans chunks in memcached: {keys:?}"
    );

    // And a key of our own: the L1 item is the wrapped record (tag, L2's
    // cas, value), 29 bytes in 4 chunks of 8.
    let mut c = rend.connect();
    assert_eq!(
        c.line(b"set probe 1 0 20\r\n0123456789abcdefghij\r\n"),
        "STORED\r\n"
    );
    let (flags, data, cas) = gets_one(&mut c, b"probe").expect("probe through rend");
    assert_eq!((flags, &data[..]), (1, &b"0123456789abcdefghij"[..]));
    let mut wrapped = vec![L1_TAG];
    wrapped.extend_from_slice(&cas.to_be_bytes());
    wrapped.extend_from_slice(&data);
    let meta = meta_of(&mut m, "probe").expect("probe-meta in memcached");
    assert_eq!((meta.len, meta.chunks, meta.chunk_size), (29, 4, 8));
    for i in 0..4 {
        let (_, chunk, _) = gets_one(&mut m, format!("probe-{i}").as_bytes())
            .unwrap_or_else(|| panic!("probe-{i} in memcached"));
        assert_eq!(
            chunk.len(),
            TOKEN_LEN + 8,
            "probe-{i} padded to the chunk size"
        );
        assert_eq!(&chunk[..TOKEN_LEN], &meta.token[..], "probe-{i} token");
        let from = i * 8;
        let to = (from + 8).min(wrapped.len());
        assert_eq!(&chunk[TOKEN_LEN..TOKEN_LEN + to - from], &wrapped[from..to]);
        assert!(chunk[TOKEN_LEN + to - from..].iter().all(|&b| b == 0));
    }
}
