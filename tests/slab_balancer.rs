//! The slab balancer (`--slab-balancer`), CI-sized: memcached `-m 16` is
//! filled 1.5 times over with values of one size (A), then 80% of its
//! memory is written with values of another size (B) and read back. Without
//! the balancer memcached (default settings) keeps A's pages and B reads
//! back a few percent; with it B reads back as much as on an empty
//! memcached. B is written at a modest pace (a few MB/s), well under the
//! speed at which memcached moves pages, so this checks what the balancer
//! does, not how fast the machine is.
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
/// and rend's `slab_balancer_moves` (None when it has no balancer).
fn shift(balancer: bool, a_size: usize, b_size: usize) -> (f64, Option<u64>) {
    let mc = Memcached::start_with(&["-m", &MB.to_string()]);
    let flag = if balancer { "true" } else { "false" };
    let rend = Rend::start(&mc, &["--slab-balancer", flag]);
    let mut c = rend.connect();
    if a_size > 0 {
        write(
            &mut c,
            "a",
            a_size,
            MEM * 3 / 2 / a_size,
            256,
            Duration::ZERO,
        );
        // memcached's clock counts seconds: A's items must be older than
        // what B evicts for the balancer to prefer B.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let b_keys = MEM * 4 / 5 / b_size;
    // About 5 MB/s, in batches of about 32 KiB.
    let batch = (32 << 10) / b_size;
    write(&mut c, "b", b_size, b_keys, batch, Duration::from_millis(6));
    let rate = hits(&mut c, "b", b_size, b_keys) as f64 / b_keys as f64;
    let stats = String::from_utf8(c.req(b"stats\r\n", b"END\r\n")).unwrap();
    let moves = stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT slab_balancer_moves "))
        .map(|v| v.trim().parse().unwrap());
    (rate, moves)
}

fn assert_balanced(a_size: usize, b_size: usize) {
    let (control, _) = shift(true, 0, b_size);
    let (calcified, none) = shift(false, a_size, b_size);
    let (balanced, moves) = shift(true, a_size, b_size);
    eprintln!(
        "{a_size} B -> {b_size} B: control {control:.3}, no balancer {calcified:.3}, \
         balancer {balanced:.3} ({moves:?} pages moved)"
    );
    assert_eq!(none, None, "no balancer, no counter");
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
    // A page taken from the chunk class would take live values' chunks.
    let stats = embedded_stats(&["--chunked"]);
    assert!(stats.contains("STAT chunks_written 0\r\n"), "{stats}");
    assert!(!stats.contains("slab_balancer_moves"), "{stats}");
    let stats = embedded_stats(&["--chunked", "--slab-balancer"]);
    assert!(stats.contains("STAT slab_balancer_moves 0\r\n"), "{stats}");
}
