//! memcached's admin and inspection commands (`cache_memlimit`, `stats
//! cachedump`, `stats settings`, `slabs automove|reassign`, `lru`,
//! `lru_crawler`) through rend, in every mode, beside a memcached talked to
//! directly: rend relays them to its L1 over text and answers what memcached
//! answers, byte for byte where the two memcacheds hold the same things and
//! in shape where they cannot (item times; chunk items and the two-tier
//! header in L1). Their effect reaches L1; memcached's absence, a stall and
//! an oversized reply are answered with SERVER_ERROR, and the next command
//! works again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Conn, Memcached, Rend};

/// The whole reply to one command line: what comes before the answer to a
/// `version` sent after it (memcached and rend both answer `VERSION …`),
/// so replies of any shape, and none at all (`noreply`), are read alike.
fn ask(c: &mut Conn, line: &str) -> String {
    c.send(format!("{line}\r\nversion\r\n").as_bytes());
    let raw = c.read_until_with(ends_with_version);
    assert!(ends_with_version(&raw), "{line:?}: no full reply: {raw:?}");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let cut = text.rfind("VERSION ").unwrap_or(0);
    text[..cut].to_string()
}

fn ends_with_version(b: &[u8]) -> bool {
    let Some(body) = b.strip_suffix(b"\r\n") else {
        return false;
    };
    let start = body.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
    body[start..].starts_with(b"VERSION ")
}

/// `lru_crawler metadump`: memcached reads nothing after it until more bytes
/// come, so it is sent alone and read to its first `\r\n` (`END`, or a
/// refusal; the dump's own lines end in `\n`).
fn dump(c: &mut Conn, line: &str) -> String {
    c.send(format!("{line}\r\n").as_bytes());
    let raw = c.read_until_with(|b| b.windows(2).any(|w| w == b"\r\n"));
    String::from_utf8_lossy(&raw).into_owned()
}

/// `lru_crawler metadump all`, again while memcached's crawler is busy
/// with a crawl of its own.
fn metadump(c: &mut Conn) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = dump(c, "lru_crawler metadump all");
        if !reply.starts_with("BUSY") || Instant::now() > deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cachedump of `classes` once it shows `n` items: memcached dumps its
/// COLD LRU, where new items arrive when its LRU maintainer moves them
/// (within a second or so).
fn cachedump(c: &mut Conn, classes: &[u32], n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply: String = classes
            .iter()
            .map(|class| ask(c, &format!("stats cachedump {class} 0")))
            .collect();
        if cachedump_keys(&reply).len() >= n || Instant::now() > deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Item times differ between two memcacheds (and with the clock): a
/// cachedump's nonzero `<n> s` becomes `T`.
fn untimed(reply: &str) -> String {
    reply
        .split_inclusive("\r\n")
        .map(|line| match (line.find("; "), line.find(" s]")) {
            (Some(a), Some(b)) if line.starts_with("ITEM ") && &line[a + 2..b] != "0" => {
                format!("{}T{}", &line[..a + 2], &line[b..])
            }
            _ => line.to_string(),
        })
        .collect()
}

/// The keys of a cachedump reply.
fn cachedump_keys(reply: &str) -> BTreeSet<String> {
    reply
        .lines()
        .filter_map(|l| l.strip_prefix("ITEM "))
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect()
}

/// The keys of a metadump, after checking every line's fields.
fn metadump_keys(reply: &str) -> BTreeSet<String> {
    assert!(reply.ends_with("END\r\n"), "{reply:?}");
    let body = &reply[..reply.len() - 5];
    body.split_terminator('\n')
        .map(|line| {
            let fields: Vec<&str> = line
                .split(' ')
                .map(|f| f.split('=').next().unwrap_or(""))
                .collect();
            assert_eq!(
                fields,
                ["key", "exp", "la", "cas", "fetch", "cls", "size"],
                "{line:?}"
            );
            line["key=".len()..line.find(' ').unwrap_or(line.len())].to_string()
        })
        .collect()
}

/// `stats settings` as (name, value) pairs, in memcached's order.
fn settings(reply: &str) -> Vec<(String, String)> {
    assert!(reply.ends_with("END\r\n"), "{reply:?}");
    reply
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn setting(reply: &str, name: &str) -> String {
    settings(reply)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    L1Only,
    Chunked,
    TwoTier,
}

/// A memcached talked to directly (the reference), rend in front of a twin
/// started the same way, and rend's L2 directory.
struct Rig {
    reference: Memcached,
    l1: Memcached,
    rend: Rend,
    _l2: tempfile::TempDir,
}

impl Rig {
    fn start(mode: Mode) -> Rig {
        let reference = Memcached::start();
        let l1 = Memcached::start();
        let l2 = tempfile::tempdir().expect("temp dir");
        let rend = match mode {
            Mode::L1Only => Rend::start(&l1, &[]),
            // Small chunks: each test value is a meta and one chunk item.
            Mode::Chunked => Rend::start(&l1, &["--chunked", "--chunk-size", "8"]),
            Mode::TwoTier => Rend::start_two_tier(&l1, l2.path(), &[]),
        };
        Rig {
            reference,
            l1,
            rend,
            _l2: l2,
        }
    }
}

/// Every line, valid and not, whose reply must be memcached's own. Order
/// matters (some change settings); each setting is put back.
const SAME_REPLY: &[&str] = &[
    "cache_memlimit 100",
    "cache_memlimit",
    "cache_memlimit abc",
    "cache_memlimit -5",
    "cache_memlimit 7",
    "cache_memlimit 1000000001",
    "cache_memlimit 99999999999",
    "cache_memlimit 100 200",
    "cache_memlimit 64 200 300",
    "cache_memlimit 100 noreply",
    "cache_memlimit x noreply",
    "CACHE_MEMLIMIT 100",
    "slabs",
    "slabs foo",
    "slabs foo bar",
    "slabs reassign 1 2",
    "slabs reassign -1 2",
    "slabs reassign x y",
    "slabs reassign 1",
    "slabs reassign 1 1",
    "slabs reassign 0 99",
    "slabs reassign 1 2 noreply",
    "slabs reassign 1 2 3 4",
    "slabs automove invalid",
    "slabs automove",
    "slabs automove 3",
    "slabs automove x noreply",
    "slabs automove ratio",
    "slabs automove ratio x 1",
    "slabs automove ratio 0.5",
    "slabs automove ratio 0.8",
    "slabs automove 2",
    "slabs automove 0",
    "slabs automove 1 noreply",
    "slabs automove 1 2 3",
    "lru",
    "lru foo",
    "lru tune 10 25 0.1 2.0",
    "lru tune 50 50 0.1 2.0",
    "lru tune 10 25 0 2.0",
    "lru tune x 25 0.1 2.0",
    "lru tune 10 25 0.1",
    "lru tune 20 40 0.2 2.0 noreply",
    "lru mode",
    "lru mode foo",
    "lru mode flat",
    "lru mode segmented noreply",
    "lru temp_ttl x",
    "lru temp_ttl 100",
    "lru temp_ttl -1",
    "lru_crawler",
    "lru_crawler foo",
    "lru_crawler enable",
    "lru_crawler enable noreply",
    "lru_crawler sleep 2000000",
    "lru_crawler sleep x",
    "lru_crawler sleep 100",
    "lru_crawler tocrawl x",
    "lru_crawler tocrawl 0",
    "lru_crawler crawl",
    "lru_crawler crawl x",
    "lru_crawler crawl 999",
    "lru_crawler metadump",
    "lru_crawler metadump x",
    "lru_crawler metadump 0",
    "lru_crawler metadump all noreply",
    "stats cachedump",
    "stats cachedump 1",
    "stats cachedump x y",
    "stats cachedump -1 0",
    "stats cachedump 999 0",
    "stats cachedump 64 0",
    "stats cachedump 63 0",
    "stats detail",
    "stats detail x",
    "stats detail on",
    "stats detail dump",
    "stats detail off",
    "stats reset",
];

/// Send every line of [`SAME_REPLY`] to memcached and through `c`, and
/// compare the replies.
fn same_replies(reference: &mut Conn, c: &mut Conn, mode: Mode) {
    for line in SAME_REPLY {
        let want = ask(reference, line);
        let got = ask(c, line);
        assert_eq!(got, want, "{mode:?}: {line:?}");
    }
    // With the crawler off. memcached stops it in the background; until it
    // has stopped, a crawl gets `ERROR an unknown error happened`.
    for conn in [&mut *reference, &mut *c] {
        assert_eq!(ask(conn, "lru_crawler disable"), "OK\r\n");
        common::wait_for(Duration::from_secs(5), || {
            setting(&ask(conn, "stats settings"), "lru_crawler") == "no"
        })
        .expect("the crawler did not stop");
    }
    for line in ["lru_crawler metadump all", "lru_crawler crawl all"] {
        let want = ask(reference, line);
        assert_eq!(want, "CLIENT_ERROR lru crawler disabled\r\n");
        assert_eq!(ask(c, line), want, "{mode:?}: {line:?}");
    }
    for conn in [&mut *reference, &mut *c] {
        assert_eq!(ask(conn, "lru_crawler enable"), "OK\r\n");
    }
}

/// What memcached says of the items the test writes (`a` for ever, `bb`
/// for 100 s): a cachedump and a metadump, as rend relays them.
fn check_item_dumps(rig: &Rig, reference: &mut Conn, c: &mut Conn, mode: Mode) {
    for conn in [&mut *reference, &mut *c] {
        assert_eq!(ask(conn, "set a 0 0 1\r\nx"), "STORED\r\n");
        assert_eq!(ask(conn, "set bb 5 100 3\r\nxyz"), "STORED\r\n");
    }
    let want = untimed(&cachedump(reference, &[1], 2));
    assert_eq!(want, "ITEM bb [3 b; T s]\r\nITEM a [1 b; 0 s]\r\nEND\r\n");
    let want_keys = metadump_keys(&metadump(reference));
    let mut direct = rig.l1.connect();
    match mode {
        Mode::L1Only => {
            assert_eq!(untimed(&cachedump(c, &[1], 2)), want);
            assert_eq!(
                untimed(&ask(c, "stats cachedump 1 1")),
                "ITEM bb [3 b; T s]\r\nEND\r\n"
            );
            assert_eq!(metadump_keys(&metadump(c)), want_keys);
        }
        Mode::TwoTier => {
            // L1 items carry rend's 9-byte header (a tag and L2's cas).
            assert_eq!(
                untimed(&cachedump(c, &[1], 2)),
                "ITEM bb [12 b; T s]\r\nITEM a [10 b; 0 s]\r\nEND\r\n"
            );
            assert_eq!(metadump_keys(&metadump(c)), want_keys);
        }
        Mode::Chunked => {
            // L1 holds each value as a metadata item and chunk items.
            let chunk_keys: BTreeSet<String> = ["a-meta", "a-0", "bb-meta", "bb-0"]
                .iter()
                .map(|k| k.to_string())
                .collect();
            assert_eq!(cachedump_keys(&cachedump(c, &[1, 2], 4)), chunk_keys);
            assert_eq!(metadump_keys(&metadump(c)), chunk_keys);
        }
    }
    // What rend relays is what its memcached says.
    assert_eq!(
        untimed(&ask(c, "stats cachedump 1 0")),
        untimed(&ask(&mut direct, "stats cachedump 1 0"))
    );
}

/// `cache_memlimit` through rend changes L1's `maxbytes`, and rend's
/// `stats settings` is L1's, the same as the reference memcached's but for
/// the socket path.
fn check_settings(rig: &Rig, reference: &mut Conn, c: &mut Conn) {
    let mut direct = rig.l1.connect();
    assert_eq!(
        setting(&ask(&mut direct, "stats settings"), "maxbytes"),
        "67108864"
    );
    assert_eq!(ask(c, "cache_memlimit 80"), "OK\r\n");
    assert_eq!(
        setting(&ask(&mut direct, "stats settings"), "maxbytes"),
        "83886080"
    );
    assert_eq!(ask(c, "cache_memlimit 100"), "OK\r\n");
    assert_eq!(ask(reference, "cache_memlimit 100"), "OK\r\n");
    let through = ask(c, "stats settings");
    assert_eq!(setting(&through, "maxbytes"), "104857600");
    assert_eq!(through, ask(&mut direct, "stats settings"));
    let want = settings(&ask(reference, "stats settings"));
    let got = settings(&through);
    let names = |s: &[(String, String)]| s.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want));
    for ((k, v), (_, w)) in got.iter().zip(&want) {
        if k != "domain_socket" {
            assert_eq!(v, w, "stats settings: {k}");
        }
    }
    // `stats l1 <group>` is memcached's group too.
    assert_eq!(ask(c, "stats l1 settings"), through);
    // The other groups.
    assert_eq!(ask(c, "stats slabs"), ask(&mut direct, "stats slabs"));
    assert_eq!(ask(c, "stats bogus"), "ERROR\r\n");
}

/// Items memcached holds, by `stats items`.
fn item_count(stats_items: &str) -> u64 {
    assert!(stats_items.ends_with("END\r\n"), "{stats_items:?}");
    stats_items
        .lines()
        .filter_map(|l| l.strip_prefix("STAT items:"))
        .filter_map(|l| {
            let (name, v) = l.split_once(' ')?;
            name.ends_with(":number").then(|| v.parse::<u64>().ok())?
        })
        .sum()
}

/// Pipelined after a write, a command relayed on the admin connection sees
/// it, as memcached would.
fn check_pipelined(c: &mut Conn, mode: Mode) {
    let before = item_count(&ask(c, "stats items"));
    c.send(b"set pipelined 0 0 1\r\nx\r\nstats items\r\n");
    let reply = String::from_utf8_lossy(&c.read_until(b"END\r\n")).into_owned();
    let reply = reply
        .strip_prefix("STORED\r\n")
        .unwrap_or_else(|| panic!("{reply:?}"));
    // A chunked value is two items: its metadata and one chunk.
    let items = if mode == Mode::Chunked { 2 } else { 1 };
    assert_eq!(item_count(reply), before + items, "{reply:?}");
}

fn run_mode(mode: Mode) {
    let rig = Rig::start(mode);
    let mut reference = rig.reference.connect();
    let mut c = rig.rend.connect();
    check_item_dumps(&rig, &mut reference, &mut c, mode);
    check_settings(&rig, &mut reference, &mut c);
    same_replies(&mut reference, &mut c, mode);
    check_pipelined(&mut c, mode);
}

#[test]
fn l1_only_answers_as_memcached() {
    run_mode(Mode::L1Only);
}

#[test]
fn chunked_answers_as_memcached() {
    run_mode(Mode::Chunked);
}

#[test]
fn two_tier_answers_as_memcached_on_both_ports() {
    run_mode(Mode::TwoTier);
    // The batch port relays the same way.
    let rig = Rig::start(Mode::TwoTier);
    let mut reference = rig.reference.connect();
    let mut batch = rig.rend.connect_batch();
    check_settings(&rig, &mut reference, &mut batch);
    same_replies(&mut reference, &mut batch, Mode::TwoTier);
}

/// rend with its own memcached (no `--l1`): the commands reach it.
#[test]
fn embedded_memcached_gets_them() {
    let rend = Rend::start_args(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--orca".into(),
        "l1-only".into(),
        "--l1-memory-mb".into(),
        "32".into(),
    ]);
    let mut c = rend.connect();
    assert_eq!(
        setting(&ask(&mut c, "stats settings"), "maxbytes"),
        "33554432"
    );
    assert_eq!(ask(&mut c, "cache_memlimit 100"), "OK\r\n");
    assert_eq!(
        setting(&ask(&mut c, "stats settings"), "maxbytes"),
        "104857600"
    );
    assert_eq!(ask(&mut c, "set a 0 0 1\r\nx"), "STORED\r\n");
    assert_eq!(cachedump(&mut c, &[1], 1), "ITEM a [1 b; 0 s]\r\nEND\r\n");
    assert_eq!(
        ask(&mut c, "slabs automove invalid"),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(ask(&mut c, "lru mode flat"), "OK\r\n");
    assert!(metadump(&mut c).starts_with("key=a exp=-1 "));
}

/// memcached gone or stalled: SERVER_ERROR (nothing after `noreply`), and
/// the next command works once memcached does.
#[test]
fn failures_are_server_errors_and_pass() {
    let mut l1 = Memcached::start();
    let rend = Rend::start(&l1, &["--l1-timeout-ms", "300"]);
    let mut c = rend.connect();
    assert_eq!(ask(&mut c, "cache_memlimit 100"), "OK\r\n");

    // memcached restarted while the admin connection was idle: a new one.
    l1.restart();
    assert_eq!(ask(&mut c, "cache_memlimit 100"), "OK\r\n");

    l1.kill();
    assert_eq!(
        ask(&mut c, "cache_memlimit 100"),
        "SERVER_ERROR L1 unavailable\r\n"
    );
    assert_eq!(
        ask(&mut c, "stats settings"),
        "SERVER_ERROR L1 unavailable\r\n"
    );
    assert_eq!(ask(&mut c, "cache_memlimit 100 noreply"), "");
    l1.restart();
    assert_eq!(ask(&mut c, "cache_memlimit 100"), "OK\r\n");

    l1.signal("STOP");
    assert_eq!(
        ask(&mut c, "slabs automove 1"),
        "SERVER_ERROR L1 timeout\r\n"
    );
    assert_eq!(ask(&mut c, "slabs automove 1 noreply"), "");
    l1.signal("CONT");
    assert_eq!(ask(&mut c, "slabs automove 1"), "OK\r\n");
}

/// A reply past the 2 MiB cap (a metadump of 25,000 long keys) is refused
/// with SERVER_ERROR, and the next command works.
#[test]
fn a_reply_past_the_cap_is_refused() {
    let l1 = Memcached::start();
    let rend = Rend::start(&l1, &["--l1-timeout-ms", "10000"]);
    let mut c = rend.connect();
    let mut direct = l1.connect();
    let mut load = Vec::new();
    for i in 0..25_000 {
        load.extend_from_slice(format!("set {i:0>60} 0 0 1 noreply\r\nx\r\n").as_bytes());
    }
    direct.send(&load);
    assert!(direct.line(b"version\r\n").starts_with("VERSION "));
    assert_eq!(metadump(&mut c), "SERVER_ERROR L1 reply too large\r\n");
    assert_eq!(ask(&mut c, "cache_memlimit 100"), "OK\r\n");
    // The dump is really that large.
    let mut whole = metadump(&mut direct).into_bytes();
    while !whole.ends_with(b"END\r\n") {
        let more = direct.read_until(b"END\r\n");
        assert!(!more.is_empty(), "metadump ended early");
        whole.extend(more);
    }
    assert!(whole.len() > 2 << 20, "the dump is {} bytes", whole.len());
}
