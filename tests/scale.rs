//! Many client connections through a few memcached connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Conn, Memcached, Rend};

/// memcached's `curr_connections` and `total_connections`.
fn mc_connections(mc: &Memcached) -> (u64, u64) {
    let stats = String::from_utf8(mc.connect().req(b"stats\r\n", b"END\r\n")).unwrap();
    let get = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
    };
    (get("curr_connections"), get("total_connections"))
}

#[test]
fn ten_thousand_clients_through_64_memcached_connections() {
    const CLIENTS: usize = 10_000;
    let mc = Memcached::start_with(&["-c", "4096"]);
    // Two worker threads with 32 memcached connections each.
    let rend = Rend::start(
        &mc,
        &["--threads", "2", "--l1-conns", "32", "--max-conns", "12000"],
    );
    let t = std::time::Instant::now();
    let mut conns: Vec<Conn> = (0..CLIENTS).map(|_| rend.connect()).collect();
    eprintln!("connected in {:?}", t.elapsed());
    for (i, c) in conns.iter_mut().enumerate() {
        c.send(
            format!(
                "set c{i} 0 0 {}\r\n{i}\r\nget c{i}\r\n",
                i.to_string().len()
            )
            .as_bytes(),
        );
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let want = format!(
            "STORED\r\nVALUE c{i} 0 {}\r\n{i}\r\nEND\r\n",
            i.to_string().len()
        );
        assert_eq!(
            String::from_utf8_lossy(&c.read_until(b"END\r\n")),
            want,
            "client {i}"
        );
    }
    eprintln!("answered in {:?}", t.elapsed());
    let stats = String::from_utf8(conns[0].req(b"stats\r\n", b"END\r\n")).unwrap();
    assert!(
        stats.contains(&format!("STAT curr_connections {CLIENTS}\r\n")),
        "rend counts its clients: {stats}"
    );
    // memcached saw at most 64 connections from rend (plus this stats
    // connection and its listener).
    let (curr, total) = mc_connections(&mc);
    assert!(curr <= 64 + 2, "memcached has {curr} connections");
    assert!(
        total <= 64 + 4,
        "memcached accepted {total} connections in all"
    );
}
