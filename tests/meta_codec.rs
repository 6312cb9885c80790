//! The meta codec (`rend::protocol::meta`) against a real memcached 1.6.18:
//!
//! - every refused line of the codec's table (src/protocol/meta/cases.rs,
//!   the same table its unit tests check `parse` with) is sent to memcached,
//!   whose reply must be the table's, and whose next step (read the next
//!   command, or swallow the data block first) must be the table's too; the
//!   lines rend deliberately refuses (memcached truncates a number) must get
//!   another answer from memcached;
//! - a session of valid meta commands: each request must encode back to the
//!   bytes sent (so rend can forward what it parsed), and each of
//!   memcached's replies must decode and encode back to the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Conn, Memcached};
use rend::protocol::meta::{self, After, MetaError, MetaReply, MetaRequest, Verb};
use rend::protocol::Limits;

include!("../src/protocol/meta/cases.rs");

/// The largest value a reply may carry here.
const MAX_VALUE: usize = 4 << 20;

#[test]
fn memcached_refuses_every_line_of_the_table_alike() {
    let mc = Memcached::start();
    for case in CASES {
        let shown = String::from_utf8_lossy(case.line);
        let shown = format!("{shown:?} ({})", case.note);
        // The table and the parser agree (as the unit tests check too).
        let err = meta::parse(&Bytes::from_static(case.line), &Limits::default()).unwrap_err();
        assert_eq!(
            (err.reply, err.memcached, err.next),
            (case.reply, case.memcached, case.next),
            "{shown}"
        );

        let mut c = mc.connect();
        match case.memcached {
            Some(after) => {
                // Send the line, the bytes memcached swallows (if it does),
                // then `mn`: its `MN` shows that memcached read the next
                // command exactly there and kept the connection.
                let mut send = case.line.to_vec();
                if let After::Swallow(n) = after {
                    send.resize(send.len() + n - 2, b'x');
                    send.extend_from_slice(b"\r\n");
                }
                send.extend_from_slice(b"mn\r\n");
                c.send(&send);
                let got = c.read_until(b"MN\r\n");
                let want = format!("{}\r\nMN\r\n", case.reply);
                assert_eq!(String::from_utf8_lossy(&got), want, "{shown}");
            }
            None => {
                // memcached reads the line otherwise (it may wait for a
                // data block of its own length).
                c.send(case.line);
                let closed = c.closed_within(Duration::from_millis(300));
                let got = String::from_utf8_lossy(&c.buf).into_owned();
                assert!(!closed, "{shown}: memcached closed");
                assert!(
                    !got.starts_with(&format!("{}\r\n", case.reply)),
                    "{shown}: memcached refuses it alike ({got:?}); the case should say so"
                );
            }
        }
    }
}

/// What memcached makes of the numbers rend refuses: it truncates them.
#[test]
fn memcached_truncates_what_rend_refuses() {
    let mc = Memcached::start();
    let mut c = mc.connect();
    let refused = |line: &'static [u8]| {
        let err = meta::parse(&Bytes::from_static(line), &Limits::default()).unwrap_err();
        assert_eq!(err.memcached, None, "{line:?}");
    };

    refused(b"ms t1 1 T4294967396\r\n");
    c.send(b"ms t1 1 T4294967396\r\na\r\nmg t1 t v\r\n");
    let got = c.read_until(b"a\r\n");
    assert!(
        got == b"HD\r\nVA 1 t100\r\na\r\n" || got == b"HD\r\nVA 1 t99\r\na\r\n",
        "T4294967396 is T100 to memcached: {:?}",
        String::from_utf8_lossy(&got)
    );

    refused(b"ms t2 1 F4294967297\r\n");
    c.send(b"ms t2 1 F4294967297\r\na\r\nmg t2 f v\r\n");
    assert_eq!(c.read_until(b"a\r\n"), b"HD\r\nVA 1 f1\r\na\r\n");

    refused(b"ms t3 4294967297\r\n");
    c.send(b"ms t3 4294967297\r\nx\r\nmg t3 v\r\n");
    assert_eq!(c.read_until(b"x\r\n"), b"HD\r\nVA 1\r\nx\r\n");

    refused(b"mg t3 T2147483648 t\r\n");
    c.send(b"mg t3 T2147483648 t\r\n");
    let got = String::from_utf8(c.read_until(b"\r\n")).unwrap();
    assert!(got.starts_with("HD t42949"), "a TTL in the past: {got:?}");
}

/// Read one reply: the decoded reply and the bytes it took.
fn next_reply(c: &mut Conn, pending: &mut BytesMut) -> (MetaReply, Vec<u8>) {
    loop {
        let before = pending.to_vec();
        match MetaReply::decode(pending, MAX_VALUE) {
            Ok(Some(reply)) => {
                let used = before.len() - pending.len();
                return (reply, before[..used].to_vec());
            }
            Ok(None) => {}
            Err(e) => panic!(
                "memcached's reply did not decode ({e}): {:?}",
                String::from_utf8_lossy(&before)
            ),
        }
        let more = c.read_until_with(|b| !b.is_empty());
        assert!(
            !more.is_empty(),
            "no more reply after {:?}",
            String::from_utf8_lossy(&before)
        );
        pending.extend_from_slice(&more);
    }
}

/// Whether `got` is `pattern`, where `#` in the pattern stands for a
/// number (digits, maybe after a `-`): cas values, ages and TTLs.
fn matches(pattern: &[u8], got: &[u8]) -> bool {
    let (mut p, mut g) = (0, 0);
    while p < pattern.len() {
        if pattern[p] == b'#' {
            if got.get(g) == Some(&b'-') {
                g += 1;
            }
            let digits = got[g.min(got.len())..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits == 0 {
                return false;
            }
            g += digits;
        } else {
            if got.get(g) != Some(&pattern[p]) {
                return false;
            }
            g += 1;
        }
        p += 1;
    }
    g == got.len()
}

/// Split what a client sends into its requests, parse each, and check that
/// each request that parses encodes back to its bytes. Returns the
/// refusals in order (their replies come from memcached too).
fn parse_requests(mut send: &[u8]) -> Vec<MetaError> {
    let limits = Limits {
        max_value: MAX_VALUE / 2,
        ..Limits::default()
    };
    let mut refusals = Vec::new();
    while !send.is_empty() {
        let end = send.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let line = &send[..end];
        let shown = String::from_utf8_lossy(line).into_owned();
        let mut req: MetaRequest = match meta::parse(&Bytes::copy_from_slice(line), &limits) {
            Ok(req) => req,
            Err(err) => {
                let skip = match err.next {
                    After::Swallow(n) => n,
                    _ => 0,
                };
                send = &send[end + skip..];
                refusals.push(err);
                continue;
            }
        };
        let mut taken = end;
        if req.verb == Verb::Set {
            let len = req.datalen.unwrap() + 2;
            let block = Bytes::copy_from_slice(&send[end..end + len]);
            taken += len;
            if let Err(err) = req.attach_value(block) {
                send = &send[taken..];
                refusals.push(err);
                continue;
            }
        }
        let mut out = BytesMut::new();
        req.encode(&mut out);
        assert_eq!(&out[..], &send[..taken], "{shown:?} encodes back");
        send = &send[taken..];
    }
    refusals
}

/// A session of valid (and a few refused) meta commands on one connection:
/// what to send, and the replies expected (`#`: any number).
fn session() -> Vec<(Vec<u8>, Vec<&'static str>)> {
    let big = vec![b'v'; 500_000];
    let mut set_big = b"ms big 500000 T0\r\n".to_vec();
    set_big.extend_from_slice(&big);
    set_big.extend_from_slice(b"\r\n");
    let mut too_big = b"ms huge 3000000\r\n".to_vec();
    too_big.resize(too_big.len() + 3_000_000, b'x');
    too_big.extend_from_slice(b"\r\n");
    let s = |b: &[u8]| b.to_vec();
    vec![
        (
            s(b"ms foo 3 T0 F5 c k Oo1\r\nbar\r\n"),
            vec!["HD c# kfoo Oo1\r\n"],
        ),
        (
            s(b"mg foo v f t s c k Oo2 h l\r\n"),
            vec!["VA 3 f5 t-1 s3 c# kfoo Oo2 h0 l#\r\nbar\r\n"],
        ),
        (s(b"mg foo\r\n"), vec!["HD\r\n"]),
        (s(b"mg foo h\r\n"), vec!["HD h1\r\n"]),
        (s(b"mg missing v k O9\r\n"), vec!["EN kmissing O9\r\n"]),
        (s(b"mg missing q v\r\nmn\r\n"), vec!["MN\r\n"]),
        (
            s(b"ms Zm9vYg== 2 b k\r\nhi\r\n"),
            vec!["HD kZm9vYg== b\r\n"],
        ),
        (
            s(b"mg Zm9vYg== b k v\r\n"),
            vec!["VA 2 kZm9vYg== b\r\nhi\r\n"],
        ),
        // The same key fetched without b: memcached returns it base64
        // encoded, as it was stored.
        (s(b"mg foob k v\r\n"), vec!["VA 2 kZm9vYg== b\r\nhi\r\n"]),
        (
            s(b"me foo\r\n"),
            vec!["ME foo exp=-1 la=# cas=# fetch=yes cls=# size=#\r\n"],
        ),
        (
            s(b"me Zm9vYg== b\r\n"),
            vec!["ME Zm9vYg== exp=-1 la=# cas=# fetch=yes cls=# size=#\r\n"],
        ),
        (s(b"me nope\r\n"), vec!["EN\r\n"]),
        (s(b"md foo q\r\nmn\r\n"), vec!["MN\r\n"]),
        (s(b"md foo\r\n"), vec!["NF\r\n"]),
        (s(b"ma cnt N0 J10 v\r\n"), vec!["VA 2\r\n10\r\n"]),
        (s(b"ma cnt D5 MD v t c\r\n"), vec!["VA 1 t-1 c#\r\n5\r\n"]),
        (s(b"ma cnt q\r\nmn\r\n"), vec!["MN\r\n"]),
        (s(b"ma cnt v M+\r\n"), vec!["VA 1\r\n7\r\n"]),
        (s(b"ma nope\r\n"), vec!["NF\r\n"]),
        // A vivified ma is answered under q.
        (s(b"ma viv N0 q\r\nmn\r\n"), vec!["HD\r\n", "MN\r\n"]),
        (s(b"ms foo 1 ME\r\nx\r\n"), vec!["HD\r\n"]),
        (s(b"ms foo 1 ME\r\nx\r\n"), vec!["NS\r\n"]),
        (s(b"ms foo 1 C1\r\nx\r\n"), vec!["EX\r\n"]),
        (s(b"ms foo 1 MA q\r\ny\r\nmn\r\n"), vec!["MN\r\n"]),
        (s(b"ms nofoo 1 MR\r\nx\r\n"), vec!["NS\r\n"]),
        (s(b"ms nofoo 1 C5\r\nx\r\n"), vec!["NF\r\n"]),
        (s(b"mg viv2 N30 v\r\n"), vec!["VA 0 W\r\n\r\n"]),
        (s(b"mg viv2 N30 v\r\n"), vec!["VA 0 Z\r\n\r\n"]),
        // Stale-while-revalidate: the first fetch wins, the next sees Z.
        (s(b"md foo I T30\r\n"), vec!["HD\r\n"]),
        (s(b"mg foo v c\r\n"), vec!["VA 2 c# X W\r\nxy\r\n"]),
        (s(b"mg foo v\r\n"), vec!["VA 2 Z X\r\nxy\r\n"]),
        // Flags act in request order: t before T shows the old TTL.
        (s(b"ms ttl 1 T0\r\nx\r\n"), vec!["HD\r\n"]),
        (s(b"mg ttl t T100\r\n"), vec!["HD t-1\r\n"]),
        (s(b"mg ttl t\r\n"), vec!["HD t#\r\n"]),
        (s(b"mn\r\n"), vec!["MN\r\n"]),
        (set_big, vec!["HD\r\n"]),
        (s(b"mg big s v\r\n"), vec!["VA 500000 s500000\r\n"]),
        // Refused: the error lines decode and the codec's refusal matches.
        (s(b"mg k x\r\n"), vec!["CLIENT_ERROR invalid flag\r\n"]),
        (
            s(b"ms k 1 Mx\r\nz\r\n"),
            vec!["CLIENT_ERROR invalid mode for ms M token\r\n"],
        ),
        (s(b"ms k 1\r\nabc"), vec!["CLIENT_ERROR bad data chunk\r\n"]),
        (too_big, vec!["SERVER_ERROR object too large for cache\r\n"]),
        (s(b"mz\r\n"), vec!["ERROR\r\n"]),
    ]
}

#[test]
fn replies_decode_and_encode_back_byte_for_byte() {
    let mc = Memcached::start();
    let mut c = mc.connect();
    let mut pending = BytesMut::new();
    for (send, expect) in session() {
        let shown = String::from_utf8_lossy(&send[..send.len().min(60)]).into_owned();
        let mut refusals = parse_requests(&send).into_iter();
        c.send(&send);
        for pattern in expect {
            let (reply, raw) = next_reply(&mut c, &mut pending);
            let mut again = BytesMut::new();
            reply.encode(&mut again);
            assert_eq!(
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(&raw),
                "{shown:?}: encode(decode(reply)) differs"
            );
            if let MetaReply::Value { data, .. } = &reply {
                if data.len() == 500_000 {
                    assert!(data.iter().all(|&b| b == b'v'));
                    assert!(raw.starts_with(pattern.as_bytes()), "{shown:?}");
                    continue;
                }
            }
            assert!(
                matches(pattern.as_bytes(), &raw),
                "{shown:?}: got {:?}, want {pattern:?}",
                String::from_utf8_lossy(&raw)
            );
            if let MetaReply::Error(_) = reply {
                let refusal = refusals.next().expect("a refusal for each error");
                let mut ours = BytesMut::new();
                MetaReply::from_error(&refusal).encode(&mut ours);
                assert_eq!(&ours[..], &raw[..], "{shown:?}: the codec's refusal");
            }
        }
        assert!(
            refusals.next().is_none(),
            "{shown:?}: a refusal without reply"
        );
    }
    assert!(pending.is_empty(), "unexpected replies: {pending:?}");
    // Nothing more arrives.
    assert!(!c.closed_within(Duration::from_millis(200)));
    assert!(c.buf.is_empty(), "unexpected replies: {:?}", c.buf);
}
