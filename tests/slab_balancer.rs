//! The slab balancer (`--slab-balancer`), CI-sized: memcached `-m 16` is
//! filled 1.5 times over with values of one size (A), then 80% of its
//! memory is written with values of another size (B) and read back. Without
//! the balancer memcached (default settings) keeps A's pages and B reads
//! back a few percent; with it B reads back as much as on an empty
//! memcached. B is written at a modest pace (a few MB/s), well under the
//! speed at which memcached moves pages, so this checks what the balancer
//! does, not how fast the machine is. Then B is written in a burst, as fast
//! as rend takes it, with pacing (`--slab-pacing`) on: stores wait for the
//! pages they need, so B again reads back as much as on an empty memcached,
//! however fast the machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Conn, Memcached, Rend};

const MB: usize = 16;
const MEM: usize = MB << 20;

fn value(i: usize, size: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; size]
}

/// Sets `count` keys `prefix<i>` of `size` bytes, `batch` at a time; waits
/// for the replies (all STORED) and `pause` after each batch.
fn write(c: &mut Conn, prefix: &str, size: usize, count: usize, batch: usize, pause: Duration) {
    for start in (0..count).step_by(batch) {
        let end = (start + batch).min(count);
        let mut req = Vec::new();
        for i in start..end {
            req.extend_from_slice(format!("set {prefix}{i} 0 0 {size}\r\n").as_bytes());
            req.extend_from_slice(&value(i, size));
            req.extend_from_slice(b"\r\n");
        }
        c.send(&req);
        let n = end - start;
        let reply = c.read_until_with(|b| b.windows(2).filter(|w| w == b"\r\n").count() >= n);
        assert_eq!(
            reply,
            b"STORED\r\n".repeat(n),
            "sets {prefix}{start}..{end}"
        );
        std::thread::sleep(pause);
    }
}

/// How many of the `count` keys read back, each checked byte for byte.
fn hits(c: &mut Conn, prefix: &str, size: usize, count: usize) -> usize {
    let mut found = 0;
    for start in (0..count).step_by(64) {
        let end = (start + 64).min(count);
        let keys: Vec<String> = (start..end).map(|i| format!("{prefix}{i}")).collect();
        let reply = c.get_reply(format!("get {}\r\n", keys.join(" ")).as_bytes());
        let mut rest = reply.as_bytes();
        while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
            let line = std::str::from_utf8(&rest[..line_end]).unwrap();
            if line == "END" {
                break;
            }
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words[0], "VALUE", "{line}");
            let i: usize = words[1][prefix.len()..].parse().unwrap();
            let len: usize = words[3].parse().unwrap();
            let data = &rest[line_end + 2..line_end + 2 + len];
            assert_eq!(data, value(i, size).as_slice(), "value of {}", words[1]);
            found += 1;
            rest = &rest[line_end + 4 + len..];
        }
    }
    found
}

/// B's hit rate after A (or on an empty memcached when `a_size` is 0),
/// written through a rend with `flags` at a modest pace or, with `burst`,
/// as fast as rend takes it; and rend's `stats` after.
fn shift(flags: &[&str], a_size: usize, b_size: usize, burst: bool) -> (f64, String) {
    let mc = Memcached::start_with(&["-m", &MB.to_string()]);
    let rend = Rend::start(&mc, flags);
    let mut c = rend.connect();
    let rate = write_a_then_b(&mut c, a_size, b_size, burst);
    let stats = String::from_utf8(c.req(b"stats\r\n", b"END\r\n")).unwrap();
    (rate, stats)
}

/// The same straight into a memcached run with `-o slab_automove=2`
/// (a page moves on every eviction): the bar rend is held to.
fn shift_automove_2(a_size: usize, b_size: usize, burst: bool) -> f64 {
    let mc = Memcached::start_with(&["-m", &MB.to_string(), "-o", "slab_reassign,slab_automove=2"]);
    write_a_then_b(&mut mc.connect(), a_size, b_size, burst)
}

/// Writes A (unless `a_size` is 0) and then B on `c`, and reads B back:
/// B's hit rate.
fn write_a_then_b(c: &mut Conn, a_size: usize, b_size: usize, burst: bool) -> f64 {
    let b_keys = write_a_and_b(c, a_size, b_size, burst);
    hits(c, "b", b_size, b_keys) as f64 / b_keys as f64
}

/// Writes A (unless `a_size` is 0) and then B on `c`; how many keys B has.
fn write_a_and_b(c: &mut Conn, a_size: usize, b_size: usize, burst: bool) -> usize {
    if a_size > 0 {
        write(c, "a", a_size, MEM * 3 / 2 / a_size, 256, Duration::ZERO);
        // memcached's clock counts seconds: A's items must be older than
        // what B evicts for the balancer to prefer B.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let b_keys = MEM * 4 / 5 / b_size;
    if burst {
        // Batches of 256 KiB, each sent as soon as the last is answered.
        write(c, "b", b_size, b_keys, (256 << 10) / b_size, Duration::ZERO);
    } else {
        // About 5 MB/s, in batches of about 32 KiB.
        let batch = (32 << 10) / b_size;
        write(c, "b", b_size, b_keys, batch, Duration::from_millis(6));
    }
    b_keys
}

/// A counter of rend's `stats`.
fn stat(stats: &str, name: &str) -> Option<u64> {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .map(|v| v.trim().parse().unwrap())
}

const BALANCER: &[&str] = &["--slab-balancer", "true", "--slab-pacing", "0"];

fn assert_balanced(a_size: usize, b_size: usize) {
    let (control, _) = shift(BALANCER, 0, b_size, false);
    let (calcified, none) = shift(&["--slab-balancer", "false"], a_size, b_size, false);
    let (balanced, stats) = shift(BALANCER, a_size, b_size, false);
    let moves = stat(&stats, "slab_balancer_moves");
    eprintln!(
        "{a_size} B -> {b_size} B: control {control:.3}, no balancer {calcified:.3}, \
         balancer {balanced:.3} ({moves:?} pages moved)"
    );
    assert_eq!(
        stat(&none, "slab_balancer_moves"),
        None,
        "no balancer, no counter"
    );
    assert!(
        calcified < 0.5 * control,
        "without the balancer memcached calcifies: {calcified} against a control of {control}"
    );
    assert!(
        balanced >= 0.95 * control,
        "with the balancer B reads back {balanced}, under 0.95 of the control's {control}"
    );
    assert!(moves.unwrap() > 0);
}

/// B written as fast as rend takes it: faster than memcached frees pages,
/// so B's stores wait for them (a cap long enough that none gives up).
fn assert_paced(a_size: usize, b_size: usize) {
    let paced = &["--slab-balancer", "true", "--slab-pacing", "5000"];
    let (control, _) = shift(paced, 0, b_size, true);
    let (rate, stats) = shift(paced, a_size, b_size, true);
    let bar = shift_automove_2(a_size, b_size, true);
    let (waits, timeouts) = (
        stat(&stats, "slab_pacing_waits").unwrap(),
        stat(&stats, "slab_pacing_timeouts").unwrap(),
    );
    eprintln!(
        "{a_size} B -> {b_size} B in a burst: control {control:.3}, paced {rate:.3} \
         ({waits} stores waited, {timeouts} gave up), memcached slab_automove=2 {bar:.3}"
    );
    assert!(
        rate >= 0.95 * control,
        "paced, B reads back {rate}, under 0.95 of the control's {control}"
    );
    // Where both hold all that fits (B of small values), they may differ
    // by a few items.
    assert!(
        rate >= bar - 0.005,
        "paced, B reads back {rate}, under memcached slab_automove=2's {bar}"
    );
    assert!(waits > 0, "{stats}");
    assert_eq!(timeouts, 0, "{stats}");
}

/// How many of the `count` keys memcached itself holds (asked directly,
/// with `mg`).
fn held(c: &mut Conn, prefix: &str, count: usize) -> usize {
    let mut found = 0;
    for start in (0..count).step_by(64) {
        let end = (start + 64).min(count);
        let req: String = (start..end)
            .map(|i| format!("mg {prefix}{i}\r\n"))
            .collect();
        c.send(req.as_bytes());
        let n = end - start;
        let reply = c.read_until_with(|b| b.windows(2).filter(|w| w == b"\r\n").count() >= n);
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.lines().all(|l| l == "HD" || l == "EN"), "{reply}");
        found += reply.lines().filter(|&l| l == "HD").count();
    }
    found
}

/// In l1-l2 (the default mode) L2 keeps every value, and pacing keeps L1's
/// copies: the share of B that L1 holds after a burst of B, through a
/// paced rend in l1-l2 (after A when `a_size` is not 0).
fn l1_share(a_size: usize, b_size: usize) -> f64 {
    let mc = Memcached::start_with(&["-m", &MB.to_string()]);
    let l2 = tempfile::tempdir().unwrap();
    let rend = Rend::start_two_tier(
        &mc,
        &l2.path().join("l2"),
        &["--slab-balancer", "true", "--slab-pacing", "5000"],
    );
    let mut c = rend.connect();
    // Not read back through rend: a read L1 misses would refill L1 from L2.
    let b_keys = write_a_and_b(&mut c, a_size, b_size, true);
    let stats = String::from_utf8(c.req(b"stats\r\n", b"END\r\n")).unwrap();
    if a_size > 0 {
        assert!(stat(&stats, "slab_pacing_waits").unwrap() > 0, "{stats}");
    }
    held(&mut mc.connect(), "b", b_keys) as f64 / b_keys as f64
}

#[test]
fn two_tier_stores_wait_for_l1_pages() {
    let control = l1_share(0, 4000);
    let paced = l1_share(1000, 4000);
    eprintln!("l1-l2, 1000 B -> 4000 B in a burst: L1 holds {paced:.3} of B, control {control:.3}");
    assert!(
        paced >= 0.95 * control,
        "L1 holds {paced} of B, under 0.95 of the control's {control}"
    );
}

#[test]
fn a_burst_of_larger_values_waits_for_pages() {
    assert_paced(100, 4000);
}

#[test]
fn a_burst_of_smaller_values_waits_for_pages() {
    assert_paced(4000, 100);
}

#[test]
fn a_burst_of_much_larger_values_waits_for_pages() {
    assert_paced(1000, 100_000);
}

#[test]
fn small_values_give_way_to_larger_ones() {
    assert_balanced(100, 4000);
}

#[test]
fn large_values_give_way_to_smaller_ones() {
    assert_balanced(4000, 100);
}

/// `stats` of a rend (l1-only) on its embedded memcached, with `extra` flags.
fn embedded_stats(extra: &[&str]) -> String {
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--orca",
        "l1-only",
        "--metrics-listen",
        "off",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    let dir = tempfile::tempdir().unwrap();
    args.extend([
        "--l2-path".to_string(),
        dir.path().join("l2").display().to_string(),
    ]);
    let rend = Rend::start_args(&args);
    let mut c = rend.connect();
    String::from_utf8(c.req(b"stats\r\n", b"END\r\n")).unwrap()
}

#[test]
fn the_embedded_memcached_is_balanced_by_default_unless_chunked() {
    let stats = embedded_stats(&[]);
    assert!(stats.contains("STAT slab_balancer_moves 0\r\n"), "{stats}");
    assert!(stats.contains("STAT slab_pacing_waits 0\r\n"), "{stats}");
    let stats = embedded_stats(&["--slab-pacing", "0"]);
    assert!(!stats.contains("slab_pacing_waits"), "{stats}");
    // A page taken from the chunk class would take live values' chunks.
    let stats = embedded_stats(&["--chunked"]);
    assert!(stats.contains("STAT chunks_written 0\r\n"), "{stats}");
    assert!(!stats.contains("slab_balancer_moves"), "{stats}");
    let stats = embedded_stats(&["--chunked", "--slab-balancer"]);
    assert!(stats.contains("STAT slab_balancer_moves 0\r\n"), "{stats}");
    // A chunked store's items are not the size of its value: not paced.
    assert!(!stats.contains("slab_pacing_waits"), "{stats}");
}
