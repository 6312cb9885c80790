//! The meta commands through rend.
//!
//! - l1-only sends them to memcached on the meta lane: a pipeline mixing
//!   classic, meta and `mn` commands gets the bytes memcached itself sends,
//!   every refused line of the codec's table is refused as memcached
//!   refuses it (or as README's deliberate differences say), 50 clients
//!   racing to recache a missing key get one win, and an invalidated item
//!   is served stale with one win;
//! - the lane fails fast while memcached is down and serves again when it
//!   is back;
//! - l1-l2 and its batch port serve them from L2: the herd and the stale
//!   item behave as in l1-only, the item state outlives an L1 restart and a
//!   rend restart, and classic reads after a meta write see it;
//! - `--chunked` runs them over chunked values, the item state in each
//!   value's `-ttl` record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{proxy, Conn, Memcached, Rend};
use rend::protocol::meta::After;

include!("../src/protocol/meta/cases.rs");

/// Send `req` followed by `mn`, and read everything up to its `MN`.
fn fenced(c: &mut Conn, req: &[u8]) -> Vec<u8> {
    let mut bytes = req.to_vec();
    bytes.extend_from_slice(b"mn\r\n");
    c.req(&bytes, b"MN\r\n")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Each request (fenced) gets exactly its reply.
fn transcript(c: &mut Conn, steps: &[(&[u8], &str)]) {
    for (req, want) in steps {
        assert_eq!(
            text(&fenced(c, req)),
            format!("{want}MN\r\n"),
            "{}",
            text(req)
        );
    }
}

/// A pipeline of classic, meta and `mn` commands, quiet ones among them,
/// with base64 keys, opaques and every flag `mg` returns. Sent in one write.
const PIPELINE: &[u8] = b"set a 3 0 2\r\nhi\r\n\
ms b 3 T0 F7 c\r\nabc\r\n\
mg a v f t c s k O1\r\n\
mg b v f q\r\n\
mg missing v q\r\n\
mn\r\n\
get a b\r\n\
ms Zm9v 2 b T0\r\nxy\r\n\
mg Zm9v b v k\r\n\
get foo\r\n\
ma n N0 J5 v\r\n\
ma n MD D2 v\r\n\
ma n q\r\n\
incr n 10\r\n\
md a q\r\n\
md a q\r\n\
mn\r\n\
mg a v\r\n\
ms b 1 MA\r\nd\r\n\
ms b 1 ME\r\ne\r\n\
mg b v h l\r\n\
me b\r\n\
mg b s v O9 k q\r\n\
delete b\r\n\
mg b\r\n\
mn\r\n";

#[test]
fn a_mixed_pipeline_gets_memcacheds_own_bytes() {
    let direct = Memcached::start();
    let (_mc, rend) = proxy(&[]);
    // The pipeline's own last `mn` ends it.
    let want = direct.connect().req(PIPELINE, b"EN\r\nMN\r\n");
    let got = rend.connect().req(PIPELINE, b"EN\r\nMN\r\n");
    assert_eq!(text(&got), text(&want));
    // The pipeline exercised what it is meant to.
    let want = text(&want);
    for part in [
        "VA 2 f3 t-1 c1 s2 ka O1\r\nhi\r\n",
        "VALUE a 3 2\r\nhi\r\n",
        "VA 2 kZm9v b\r\nxy\r\n",
        "VALUE foo 0 2\r\nxy\r\n",
        "VA 1\r\n5\r\nVA 1\r\n3\r\n",
        "14\r\n",
        "NF\r\n",
        "NS\r\n",
        "EN\r\n",
        "ME b exp=-1",
    ] {
        assert!(want.contains(part), "{part:?} in {want:?}");
    }
}

/// Every line of the codec's refusal table, through rend, against
/// memcached: where rend does what memcached does, the bytes are the same
/// (reply, then the fencing `MN` on the same connection); where rend is
/// deliberately stricter, it sends the table's reply and goes on as the
/// table says.
#[test]
fn refused_lines_get_memcacheds_replies() {
    let direct = Memcached::start();
    let (_mc, rend) = proxy(&[]);
    for case in CASES {
        let shown = format!("{:?} ({})", text(case.line), case.note);
        let mut req = case.line.to_vec();
        if let After::Swallow(n) = case.next {
            // A data block of the declared length, then its line end.
            req.extend(std::iter::repeat_n(b'x', n - 2));
            req.extend_from_slice(b"\r\n");
        }
        let mut r = rend.connect();
        if case.next == After::Close {
            r.send(&req);
            let reply = r.read_until(b"\r\n");
            assert_eq!(text(&reply), format!("{}\r\n", case.reply), "{shown}");
            assert!(r.closed_within(Duration::from_secs(2)), "{shown}");
            continue;
        }
        let got = fenced(&mut r, &req);
        assert_eq!(text(&got), format!("{}\r\nMN\r\n", case.reply), "{shown}");
        if case.memcached == Some(case.next) {
            let want = fenced(&mut direct.connect(), &req);
            assert_eq!(text(&got), text(&want), "{shown}");
        }
    }
}

/// The flags of a meta reply line (`VA 0 t30 c1 W` → `t30 c1 W`).
fn reply_flags(reply: &[u8]) -> Vec<String> {
    let line = text(reply);
    let line = line.lines().next().unwrap_or_default().to_string();
    let mut tokens = line.split(' ').map(str::to_string);
    let code = tokens.next().unwrap_or_default();
    if code == "VA" {
        tokens.next();
    }
    tokens.collect()
}

fn has_flag(reply: &[u8], flag: &str) -> bool {
    reply_flags(reply).iter().any(|f| f == flag)
}

/// One `mg` reply with its value block (`VA <n> …\r\n<n bytes>\r\n`) or a
/// status line.
fn read_meta(c: &mut Conn) -> Vec<u8> {
    let line = common::read_line(c);
    let mut reply = line.clone();
    let text = String::from_utf8_lossy(&line).into_owned();
    if let Some(rest) = text.strip_prefix("VA ") {
        let n: usize = rest.split([' ', '\r']).next().unwrap().parse().unwrap();
        reply.extend(c.read_exact_n(n + 2));
    }
    reply
}

#[test]
fn fifty_clients_racing_to_recache_a_missing_key_get_one_win() {
    let (_mc, rend) = proxy(&[]);
    herd(&rend);
    let mc = Memcached::start();
    let l2 = tempfile::tempdir().unwrap();
    herd(&Rend::start_two_tier(&mc, l2.path(), &[]));
}

/// 50 clients `mg herd N30` at once: one wins, 49 see the win taken, until
/// the winner sets the value.
fn herd(rend: &Rend) {
    const CLIENTS: usize = 50;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let replies: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let barrier = barrier.clone();
                let rend = &rend;
                s.spawn(move || {
                    let mut c = rend.connect();
                    barrier.wait();
                    c.send(b"mg herd N30 v t c\r\n");
                    read_meta(&mut c)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wins = replies.iter().filter(|r| has_flag(r, "W")).count();
    let taken = replies.iter().filter(|r| has_flag(r, "Z")).count();
    assert_eq!((wins, taken), (1, CLIENTS - 1), "{replies:?}");
    for r in &replies {
        assert!(text(r).starts_with("VA 0 t30 "), "{}", text(r));
    }
    // Until the winner sets the value, the win stays taken.
    let mut c = rend.connect();
    assert!(has_flag(&fenced(&mut c, b"mg herd N30 v\r\n"), "Z"));
    assert_eq!(
        text(&fenced(&mut c, b"ms herd 3 T30\r\nnew\r\n")),
        "HD\r\nMN\r\n"
    );
    let after = fenced(&mut c, b"mg herd N30 v\r\n");
    assert_eq!(text(&after), "VA 3\r\nnew\r\nMN\r\n");
}

#[test]
fn an_invalidated_item_is_served_stale_with_one_win() {
    let (_mc, rend) = proxy(&[]);
    stale_while_revalidate(&rend);
    let mc = Memcached::start();
    let l2 = tempfile::tempdir().unwrap();
    stale_while_revalidate(&Rend::start_two_tier(&mc, l2.path(), &[]));
}

/// `md k I`, then five `mg`s: `X` and `W` once, then `X` and `Z`; the
/// winner's set replaces the stale item.
fn stale_while_revalidate(rend: &Rend) {
    let mut c = rend.connect();
    assert_eq!(
        text(&fenced(&mut c, b"set k 0 0 3\r\nold\r\nmd k I T30\r\n")),
        "STORED\r\nHD\r\nMN\r\n"
    );
    let replies: Vec<Vec<u8>> = (0..5)
        .map(|_| {
            let mut c = rend.connect();
            c.send(b"mg k v c\r\n");
            read_meta(&mut c)
        })
        .collect();
    for r in &replies {
        assert!(has_flag(r, "X"), "stale: {}", text(r));
        assert!(text(r).ends_with("\r\nold\r\n"), "{}", text(r));
    }
    assert!(has_flag(&replies[0], "W"), "{}", text(&replies[0]));
    for r in &replies[1..] {
        assert!(has_flag(r, "Z") && !has_flag(r, "W"), "{}", text(r));
    }
    // The winner's recache replaces the stale item.
    assert_eq!(
        text(&fenced(&mut c, b"ms k 3 T30\r\nnew\r\n")),
        "HD\r\nMN\r\n"
    );
    assert_eq!(
        text(&fenced(&mut c, b"mg k v\r\n")),
        "VA 3\r\nnew\r\nMN\r\n"
    );
}

#[test]
fn the_meta_lane_fails_fast_while_memcached_is_down() {
    let (mut mc, rend) = proxy(&["--l1-timeout-ms", "500"]);
    let mut c = rend.connect();
    assert_eq!(text(&fenced(&mut c, b"ms k 1\r\nv\r\n")), "HD\r\nMN\r\n");
    mc.kill();
    let started = std::time::Instant::now();
    let reply = fenced(&mut c, b"mg k v\r\n");
    assert!(
        text(&reply).starts_with("SERVER_ERROR L1 "),
        "{}",
        text(&reply)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    mc.restart();
    // The lane dials again on the next request.
    common::wait_for(Duration::from_secs(5), || {
        text(&fenced(&mut c, b"ms k 1\r\nw\r\n")) == "HD\r\nMN\r\n"
    })
    .expect("the meta lane serves again");
    assert_eq!(text(&fenced(&mut c, b"mg k v\r\n")), "VA 1\r\nw\r\nMN\r\n");
}

/// `--chunked` runs meta commands over chunked values: the herd and the
/// stale item as in l1-only, sizes are the client's (a value of several
/// chunks), a value a classic `set` wrote is served, and the item state
/// outlives a classic `touch` and an in-place `incr`.
#[test]
fn chunked_mode_serves_meta_commands() {
    let (_mc, chunked) = proxy(&["--chunked"]);
    herd(&chunked);
    stale_while_revalidate(&chunked);
    let mut c = chunked.connect();
    let big = "x".repeat(5000);
    let set = format!("ms big 5000 T0 F3\r\n{big}\r\nmg big s f v\r\n");
    assert_eq!(
        text(&fenced(&mut c, set.as_bytes())),
        format!("HD\r\nVA 5000 s5000 f3\r\n{big}\r\nMN\r\n")
    );
    let steps: [(&[u8], &str); 6] = [
        (
            b"set n 0 0 2\r\n10\r\nmg n h\r\nmg n h\r\n",
            "STORED\r\nHD h0\r\nHD h1\r\n",
        ),
        (b"md n I\r\nmg n v\r\n", "HD\r\nVA 2 X W\r\n10\r\n"),
        (b"touch n 100\r\nincr n 5\r\n", "TOUCHED\r\n15\r\n"),
        (b"mg n v t h\r\n", "VA 2 t100 h1 Z X\r\n15\r\n"),
        (b"incr n 100\r\nmg n v h\r\n", "115\r\nVA 3 h0\r\n115\r\n"),
        (
            b"ma n D5 N0 v\r\nma gone N0 J7 v\r\n",
            "VA 3\r\n120\r\nVA 1\r\n7\r\n",
        ),
    ];
    transcript(&mut c, &steps);
}

/// l1-l2 keeps the item state meta commands see in L2: it outlives L1's
/// restart and rend's, and after a meta write a classic read through L1
/// sees L2's value. The batch port serves meta commands the same way.
#[test]
fn two_tier_keeps_meta_state_in_l2() {
    let mut mc = Memcached::start();
    let l2 = tempfile::tempdir().unwrap();
    let rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let mut c = rend.connect();
    // A classic read fills L1; each meta write that follows is seen by the
    // next classic read.
    let steps: [(&[u8], &str); 8] = [
        (
            b"set k 0 0 3\r\nold\r\nget k\r\n",
            "STORED\r\nVALUE k 0 3\r\nold\r\nEND\r\n",
        ),
        (
            b"ms k 3 F9\r\nnew\r\nget k\r\n",
            "HD\r\nVALUE k 9 3\r\nnew\r\nEND\r\n",
        ),
        (
            b"set n 0 0 1\r\n5\r\nget n\r\n",
            "STORED\r\nVALUE n 0 1\r\n5\r\nEND\r\n",
        ),
        (
            b"ma n D3 v\r\nget n\r\n",
            "VA 1\r\n8\r\nVALUE n 0 1\r\n8\r\nEND\r\n",
        ),
        (
            b"ms k 1 MA\r\n!\r\nget k\r\n",
            "HD\r\nVALUE k 9 4\r\nnew!\r\nEND\r\n",
        ),
        (b"md n q\r\nget n\r\n", "END\r\n"),
        (
            b"md k I T100\r\nget k\r\n",
            "HD\r\nVALUE k 9 4\r\nnew!\r\nEND\r\n",
        ),
        (b"mg k v t\r\n", "VA 4 t100 X W\r\nnew!\r\n"),
    ];
    transcript(&mut c, &steps);
    // L1 restarts empty: the item, stale, its win taken, is still there.
    mc.kill();
    mc.restart();
    common::wait_for(Duration::from_secs(5), || {
        text(&fenced(&mut c, b"get k\r\n")).starts_with("VALUE k 9 4")
    })
    .expect("rend serves again after L1's restart");
    assert_eq!(
        text(&fenced(&mut c, b"mg k v\r\n")),
        "VA 4 Z X\r\nnew!\r\nMN\r\n"
    );
    // And rend restarts on the same L2.
    drop(c);
    drop(rend);
    let rend = Rend::start_two_tier(&mc, l2.path(), &[]);
    let mut c = rend.connect();
    assert_eq!(
        text(&fenced(&mut c, b"mg k h c\r\n")).split(' ').nth(1),
        Some("h1")
    );
    assert_eq!(text(&fenced(&mut c, b"mg k s\r\n")), "HD s4 Z X\r\nMN\r\n");
    let mut b = rend.connect_batch();
    assert_eq!(
        text(&fenced(
            &mut b,
            b"ms b 2 T0\r\nxy\r\nmg b v k\r\nmg b N30 v\r\nmg gone N30 v\r\n"
        )),
        "HD\r\nVA 2 kb\r\nxy\r\nVA 2\r\nxy\r\nVA 0 W\r\n\r\nMN\r\n"
    );
}

#[test]
fn a_meta_line_past_the_line_limit_closes_the_connection() {
    let (_mc, rend) = proxy(&[]);
    let mut c = rend.connect();
    let mut line = b"mg k".to_vec();
    while line.len() < 3000 {
        line.extend_from_slice(b" v");
    }
    line.extend_from_slice(b"\r\n");
    c.send(&line);
    assert!(c.closed_within(Duration::from_secs(2)));
}

/// A hung memcached (SIGSTOP) costs a pipeline of meta requests one
/// timeout, not one each, and the lane's caps: 20 clients with 256 `mg`s
/// each in flight (5,120, past the lane's 4,096) get `SERVER_ERROR L1
/// overloaded` at once for what the lane cannot hold and `SERVER_ERROR L1
/// timeout` for the rest, all within a few timeouts (not 5,120 of them). Once memcached
/// resumes, the lane serves again.
#[test]
fn a_hung_memcached_costs_one_timeout_and_the_lanes_caps() {
    // One worker thread: one lane.
    let (mc, rend) = proxy(&[
        "--threads",
        "1",
        "--l1-timeout-ms",
        "500",
        "--metrics-listen",
        "off",
    ]);
    let mut c = rend.connect();
    assert_eq!(text(&fenced(&mut c, b"ms k 1\r\nv\r\n")), "HD\r\nMN\r\n");
    let resume = common::Resume(mc.pid());
    mc.signal("STOP");
    const CLIENTS: usize = 20;
    const EACH: usize = 256;
    let started = std::time::Instant::now();
    let replies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let rend = &rend;
                s.spawn(move || {
                    let mut c = rend.connect();
                    c.send(&b"mg k v\r\n".repeat(EACH));
                    (0..EACH)
                        .map(|_| text(&common::read_line(&mut c)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    let count = |want: &str| replies.iter().filter(|r| r.as_str() == want).count();
    let overloaded = count("SERVER_ERROR L1 overloaded\r\n");
    let timeouts = count("SERVER_ERROR L1 timeout\r\n");
    assert_eq!(overloaded + timeouts, CLIENTS * EACH, "{:?}", &replies[..8]);
    // Past the lane's 4,096 some are refused at once (how many depends on
    // how many started before the first timeouts gave tickets back).
    assert!(overloaded > 0, "{overloaded} overloaded");
    assert!(timeouts >= 1, "{timeouts} timeouts");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    drop(resume);
    common::wait_for(Duration::from_secs(5), || {
        text(&fenced(&mut c, b"mg k v\r\n")) == "VA 1\r\nv\r\nMN\r\n"
    })
    .expect("the meta lane serves again once memcached resumes");
}

/// memcached restarted while the meta connection was idle: rend notices the
/// closed connection, and the next meta request goes on a new one rather
/// than failing on the old.
#[test]
fn an_idle_meta_connection_survives_a_memcached_restart() {
    let (mut mc, rend) = proxy(&[]);
    let mut c = rend.connect();
    assert_eq!(text(&fenced(&mut c, b"ms k 1\r\nv\r\n")), "HD\r\nMN\r\n");
    mc.restart();
    std::thread::sleep(Duration::from_millis(300));
    // The new memcached is empty.
    assert_eq!(text(&fenced(&mut c, b"mg k v\r\n")), "EN\r\nMN\r\n");
}

/// rend's `stats` counts meta gets, sets and deletes as memcached counts
/// them: as their classic forms.
#[test]
fn stats_count_meta_commands_as_memcached_does() {
    let direct = Memcached::start();
    let (_mc, rend) = proxy(&[]);
    let script: &[u8] = b"ms k 1\r\nv\r\nmg k v\r\nmg nope v\r\nmg k s\r\nmd k\r\nmd k\r\nms k2 1 ME\r\nw\r\nmn\r\n";
    let stat = |c: &mut Conn, name: &str| -> u64 {
        let reply = text(&c.req(b"stats\r\n", b"END\r\n"));
        reply
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .unwrap_or_else(|| panic!("no {name} in {reply}"))
            .parse()
            .unwrap()
    };
    let names = [
        "cmd_get",
        "get_hits",
        "get_misses",
        "cmd_set",
        "delete_hits",
        "delete_misses",
    ];
    let mut d = direct.connect();
    d.req(script, b"MN\r\n");
    let want: Vec<u64> = names.iter().map(|n| stat(&mut d, n)).collect();
    assert_eq!(want, [3, 2, 1, 2, 1, 1], "memcached's own counts");
    // In every mode that serves them.
    let mc = Memcached::start();
    let l2 = tempfile::tempdir().unwrap();
    let two_tier = Rend::start_two_tier(&mc, l2.path(), &[]);
    let (_mc, chunked) = proxy(&["--chunked"]);
    for (mode, rend) in [
        ("l1-only", &rend),
        ("l1-l2", &two_tier),
        ("--chunked", &chunked),
    ] {
        let mut r = rend.connect();
        r.req(script, b"MN\r\n");
        let got: Vec<u64> = names.iter().map(|n| stat(&mut r, n)).collect();
        assert_eq!(got, want, "{mode}: {names:?}");
    }
}
