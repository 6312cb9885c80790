//! `stats` (text) and STAT (binary) answer with memcached's fields, and the
//! counts move with a known workload; `stats l1` is memcached's own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{bin_req, Conn, Memcached, Rend};

fn text_stats(c: &mut Conn) -> HashMap<String, String> {
    let raw = String::from_utf8(c.req(b"stats\r\n", b"END\r\n")).unwrap();
    raw.lines()
        .filter_map(|l| {
            let mut t = l.split(' ');
            (t.next()? == "STAT").then(|| {
                (
                    t.next().unwrap().to_string(),
                    t.next().unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

fn binary_stats(c: &mut Conn) -> HashMap<String, String> {
    c.send(&bin_req(0x10, 7, 0, &[], b"", b""));
    let mut out = HashMap::new();
    loop {
        let p = c.packet();
        assert_eq!((p.opcode, p.status, p.opaque), (0x10, 0, 7));
        if p.key.is_empty() {
            return out;
        }
        out.insert(
            String::from_utf8(p.key).unwrap(),
            String::from_utf8(p.value).unwrap(),
        );
    }
}

const FIELDS: &[&str] = &[
    "pid",
    "uptime",
    "time",
    "version",
    "pointer_size",
    "rusage_user",
    "rusage_system",
    "max_connections",
    "curr_connections",
    "total_connections",
    "rejected_connections",
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
];

fn n(s: &HashMap<String, String>, k: &str) -> i64 {
    s[k].parse().unwrap_or_else(|_| panic!("{k} = {:?}", s[k]))
}

#[test]
fn stats_has_memcacheds_fields_and_counts_the_workload() {
    let mc = Memcached::start();
    let l2 = tempfile::tempdir().unwrap();
    let rend = Rend::start_two_tier(&mc, l2.path(), &["--max-conns", "100"]);
    let mut c = rend.connect();
    let before = text_stats(&mut c);
    for f in FIELDS {
        assert!(before.contains_key(*f), "stats lacks {f}: {before:?}");
    }
    assert_eq!(before["pid"], rend.pid().to_string());
    assert!(before["version"].starts_with("1.6.18-rend-"));
    assert_eq!(before["max_connections"], "100");
    assert!(before["rusage_user"].contains('.'));
    assert_eq!(n(&before, "curr_connections"), 1);

    let w = |c: &mut Conn, req: &str, want: &str| assert_eq!(c.line(req.as_bytes()), want);
    w(&mut c, "set a 0 0 1\r\n1\r\n", "STORED\r\n");
    w(&mut c, "set b 0 0 1\r\nx\r\n", "STORED\r\n");
    assert_eq!(
        c.req(b"get a b nope\r\n", b"END\r\n"),
        b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\nx\r\nEND\r\n"
    );
    w(&mut c, "incr a 5\r\n", "6\r\n");
    w(&mut c, "incr nope 1\r\n", "NOT_FOUND\r\n");
    w(&mut c, "decr a 1\r\n", "5\r\n");
    w(&mut c, "cas a 0 0 1 1\r\n9\r\n", "EXISTS\r\n");
    w(&mut c, "cas nope 0 0 1 1\r\n9\r\n", "NOT_FOUND\r\n");
    w(&mut c, "touch b 100\r\n", "TOUCHED\r\n");
    w(&mut c, "touch nope 100\r\n", "NOT_FOUND\r\n");
    w(&mut c, "delete b\r\n", "DELETED\r\n");
    w(&mut c, "delete b\r\n", "NOT_FOUND\r\n");
    w(&mut c, "flush_all\r\n", "OK\r\n");
    let mut other = rend.connect();
    let after = binary_stats(&mut other);
    for f in FIELDS {
        assert!(after.contains_key(*f), "STAT lacks {f}: {after:?}");
    }
    let d = |k: &str| n(&after, k) - n(&before, k);
    for (k, want) in [
        ("cmd_get", 3),
        ("get_hits", 2),
        ("get_misses", 1),
        ("cmd_set", 4),
        ("incr_hits", 1),
        ("incr_misses", 1),
        ("decr_hits", 1),
        ("decr_misses", 0),
        ("cas_badval", 1),
        ("cas_misses", 1),
        ("cas_hits", 0),
        ("cmd_touch", 2),
        ("touch_hits", 1),
        ("touch_misses", 1),
        ("delete_hits", 1),
        ("delete_misses", 1),
        ("cmd_flush", 1),
        ("total_connections", 1),
        ("curr_connections", 1),
    ] {
        assert_eq!(d(k), want, "{k}: before {before:?} after {after:?}");
    }

    // `stats l1` is memcached's, not rend's.
    let l1 = String::from_utf8(c.req(b"stats l1\r\n", b"END\r\n")).unwrap();
    assert!(l1.contains(&format!("STAT pid {}\r\n", mc.pid())), "{l1}");
    assert!(l1.contains("STAT version 1.6.18\r\n"), "{l1}");
}
