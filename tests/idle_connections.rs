//! What an idle client connection costs rend (DESIGN §1: idle connections
//! hold no buffers). A file of its own: the test holds about 19,200 sockets
//! open, close to the 20,000 descriptors a process may have.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Memcached, Rend};

/// Connect and do one `get k` (a miss), so the connection has been through
/// a read and a reply; return it still open.
fn one_get(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| {
        panic!("connect: {e} (out of descriptors? the limit is the process's `ulimit -n`)")
    });
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"get k\r\n").expect("write get");
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).expect("read the get's reply");
        assert!(
            n > 0,
            "rend closed a connection: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"END\r\n");
    s
}

/// `n` connections, each through one get, opened from `threads` threads.
fn open(addr: &str, n: usize, threads: usize) -> Vec<TcpStream> {
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = addr.to_string();
            let count = per.min(n - (t * per).min(n));
            std::thread::spawn(move || (0..count).map(|_| one_get(&addr)).collect::<Vec<_>>())
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| {
            h.join()
                .expect("a connecting thread failed (message above)")
        })
        .collect()
}

#[test]
fn idle_connections_cost_at_most_4_kib_each() {
    const FIRST: usize = 200;
    const MORE: usize = 19_000;
    let mc = Memcached::start();
    let rend = Rend::start(
        &mc,
        &[
            "--max-conns",
            "20000",
            "--threads",
            "2",
            "--metrics-listen",
            "off",
        ],
    );
    let warm = open(&rend.addr, FIRST, 4);
    let before = common::settled_rss(rend.pid());

    let t = Instant::now();
    let more = open(&rend.addr, MORE, 4);
    let took = t.elapsed();
    let after = common::settled_rss(rend.pid());
    let per_conn = after.saturating_sub(before) as f64 / MORE as f64;
    eprintln!(
        "{MORE} more connections (each through one get) opened in {took:?}; RSS with {FIRST}: {:.1} MiB, with {}: {:.1} MiB; {per_conn:.0} bytes per connection (bound 4096)",
        before as f64 / (1 << 20) as f64,
        FIRST + MORE,
        after as f64 / (1 << 20) as f64
    );

    // rend still answers, on a new connection and on one long idle.
    drop(one_get(&rend.addr));
    let mut more = more;
    let c = more.last_mut().expect("connections");
    c.write_all(b"get k\r\n")
        .expect("write on an idle connection");
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).expect("an idle connection answers");
    assert_eq!(&buf, b"END\r\n");
    drop(more);
    drop(warm);

    assert!(
        per_conn <= 4096.0,
        "{MORE} idle connections grew rend's RSS by {per_conn:.0} bytes each (bound 4096)"
    );
}
