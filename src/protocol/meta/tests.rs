//! Table tests of the meta codec: every refused line of `cases.rs` (shared
//! with tests/meta_codec.rs, which checks each against a real memcached),
//! the requests that parse and what their accessors read, request and reply
//! round trips, and the reply decoder's bounds.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::protocol::{FrameError, Invalid, Limits, StoreMode};

include!("cases.rs");

fn limits() -> Limits {
    Limits::default()
}

fn ok(line: &[u8]) -> MetaRequest {
    parse(&Bytes::copy_from_slice(line), &limits())
        .unwrap_or_else(|e| panic!("{:?} refused: {e:?}", String::from_utf8_lossy(line)))
}

fn flags(req: &MetaRequest) -> Vec<(char, String)> {
    req.flags
        .iter()
        .map(|f| {
            (
                char::from(f.code),
                String::from_utf8_lossy(&f.token).into_owned(),
            )
        })
        .collect()
}

fn encoded(req: &MetaRequest) -> Vec<u8> {
    let mut out = BytesMut::new();
    req.encode(&mut out);
    out.to_vec()
}

#[test]
fn every_refused_line_of_the_table() {
    for case in CASES {
        let shown = String::from_utf8_lossy(case.line);
        let err = match parse(&Bytes::from_static(case.line), &limits()) {
            Ok(req) => panic!("{shown:?} ({}) parsed: {req:?}", case.note),
            Err(e) => e,
        };
        assert_eq!(err.reply, case.reply, "reply to {shown:?} ({})", case.note);
        assert_eq!(
            err.memcached, case.memcached,
            "memcached after {shown:?} ({})",
            case.note
        );
        assert_eq!(err.next, case.next, "rend after {shown:?} ({})", case.note);
        let too_large = case.reply == replies::TOO_LARGE;
        assert_eq!(err.delete.is_some(), too_large, "{shown:?}");
        // The line without its line end, and with a bare `\n`, reads alike.
        for variant in [
            &case.line[..case.line.len() - 2],
            &[&case.line[..case.line.len() - 2], b"\n"].concat()[..],
        ] {
            let again = parse(&Bytes::copy_from_slice(variant), &limits());
            assert_eq!(again, Err(err.clone()), "{shown:?} without \\r\\n");
        }
        // Not a meta line only when the command token is not `m?`.
        assert_eq!(is_meta(case.line), !case.line.starts_with(b"mg\t"));
    }
}

#[test]
fn the_table_covers_every_reply() {
    let all = [
        replies::ERROR,
        replies::BAD_FORMAT,
        replies::BAD_TOKEN,
        replies::INVALID_FLAG,
        replies::DUPLICATE_FLAG,
        replies::INVALID_OR_DUPLICATE_FLAG,
        replies::MG_TOO_MANY_FLAGS,
        replies::TOO_MANY_FLAGS,
        replies::OPAQUE_TOO_LONG,
        replies::BAD_BASE64_KEY,
        replies::BAD_MODE_LENGTH,
        replies::BAD_MS_MODE,
        replies::BAD_MA_MODE,
        replies::BAD_INITIAL,
        replies::BAD_DELTA,
        replies::TOO_LARGE,
    ];
    for reply in all {
        assert!(
            CASES.iter().any(|c| c.reply == reply),
            "no case of {reply:?}"
        );
    }
    // Every verb is refused somewhere, and every After appears.
    for verb in ["mg ", "ms ", "md ", "ma ", "me "] {
        assert!(CASES.iter().any(|c| c.line.starts_with(verb.as_bytes())));
    }
    assert!(CASES.iter().any(|c| c.next == After::Close));
    assert!(CASES.iter().any(|c| c.memcached.is_none()));
}

#[test]
fn too_large_deletes_the_decoded_key() {
    let err = parse(&Bytes::from_static(b"ms Zm9v 2000000 b\r\n"), &limits()).unwrap_err();
    assert_eq!(err.reply, replies::TOO_LARGE);
    assert_eq!(err.delete.as_deref(), Some(&b"foo"[..]));
    assert_eq!(
        err.to_invalid(),
        Invalid::TooLarge {
            delete: Some(Bytes::from_static(b"foo"))
        }
    );
    // The limit is the caller's.
    let small = Limits {
        max_value: 10,
        ..Limits::default()
    };
    assert!(parse(&Bytes::from_static(b"ms k 10\r\n"), &small).is_ok());
    let err = parse(&Bytes::from_static(b"ms k 11\r\n"), &small).unwrap_err();
    assert_eq!(err.next, After::Swallow(13));
}

#[test]
fn refusals_as_invalid() {
    let refuse = |line: &'static [u8]| parse(&Bytes::from_static(line), &limits()).unwrap_err();
    assert_eq!(refuse(b"mz\r\n").to_invalid(), Invalid::UnknownCommand);
    assert_eq!(
        refuse(b"mg k x\r\n").to_invalid(),
        Invalid::Client("invalid flag")
    );
    let mut req = ok(b"ms k 1\r\n");
    let chunk = req.attach_value(Bytes::from_static(b"ab\r")).unwrap_err();
    assert_eq!(chunk.to_invalid(), Invalid::BadDataChunk);
    let mut out = BytesMut::new();
    chunk.encode(&mut out);
    assert_eq!(&out[..], b"CLIENT_ERROR bad data chunk\r\n");
    assert_eq!(
        MetaReply::from_error(&chunk),
        MetaReply::Error(Bytes::from_static(b"CLIENT_ERROR bad data chunk"))
    );
}

#[test]
fn get_flags_in_request_order() {
    let req = ok(b"mg foo v t c f s k h l u q Oop P/path Lx\r\n");
    assert_eq!(req.verb, Verb::Get);
    assert_eq!(&req.key[..], b"foo");
    assert_eq!(
        flags(&req),
        [
            ('v', ""),
            ('t', ""),
            ('c', ""),
            ('f', ""),
            ('s', ""),
            ('k', ""),
            ('h', ""),
            ('l', ""),
            ('u', ""),
            ('q', ""),
            ('O', "op"),
            ('P', "/path"),
            ('L', "x")
        ]
        .map(|(c, t)| (c, t.to_string()))
    );
    assert!(req.quiet());
    assert!(!req.base64());
    assert_eq!(req.opaque().map(|o| &o[..]), Some(&b"op"[..]));
    assert_eq!(req.datalen, None);
    assert_eq!(req.store_mode(), None);
    assert_eq!(req.arith_mode(), None);
}

#[test]
fn get_with_ttl_tokens() {
    let req = ok(b"mg k N30 R-5 T+7\r\n");
    assert_eq!(req.vivify(), Some(30));
    assert_eq!(req.recache(), Some(-5));
    assert_eq!(req.ttl(), Some(7));
    // C's strtol: white space before and after the digits.
    assert_eq!(ok(b"mg k T10\tzz\r\n").ttl(), Some(10));
    assert_eq!(ok(b"mg k T\t10\r\n").ttl(), Some(10));
    assert_eq!(ok(b"mg k T2147483647\r\n").ttl(), Some(i32::MAX));
    assert_eq!(ok(b"mg k T-2147483648\r\n").ttl(), Some(i32::MIN));
    // Every command takes (and checks) every flag.
    let req = ok(b"mg k F7 C9 J1 D2 MZ I\r\n");
    assert_eq!(req.client_flags(), Some(7));
    assert_eq!(req.compare_cas(), Some(9));
    assert_eq!(req.initial(), Some(1));
    assert_eq!(req.delta(), Some(2));
}

#[test]
fn number_edges_as_memcached_reads_them() {
    assert_eq!(ok(b"mg k F4294967295\r\n").client_flags(), Some(u32::MAX));
    assert_eq!(ok(b"mg k F-0\r\n").client_flags(), Some(0));
    assert_eq!(
        ok(b"mg k C18446744073709551615\r\n").compare_cas(),
        Some(u64::MAX)
    );
    // strtoull negates: -(2^64 - 1) is 1.
    assert_eq!(
        ok(b"md k C-18446744073709551615\r\n").compare_cas(),
        Some(1)
    );
    assert_eq!(ok(b"ma k D+5\r\n").delta(), Some(5));
    assert_eq!(ok(b"ma k J007\r\n").initial(), Some(7));
}

#[test]
fn set_modes_and_tokens() {
    let req = ok(b"ms k 5 T30 F7 I q Oab k c\r\n");
    assert_eq!(req.verb, Verb::Set);
    assert_eq!(req.datalen, Some(5));
    assert_eq!(req.ttl(), Some(30));
    assert_eq!(req.client_flags(), Some(7));
    assert_eq!(req.store_mode(), Some(StoreMode::Set));
    let cases: &[(&[u8], StoreMode)] = &[
        (b"ms k 1 MS\r\n", StoreMode::Set),
        (b"ms k 1 ME\r\n", StoreMode::Add),
        (b"ms k 1 MR\r\n", StoreMode::Replace),
        (b"ms k 1 MA\r\n", StoreMode::Append),
        (b"ms k 1 MP\r\n", StoreMode::Prepend),
        // A cas turns set and replace into cas; the others keep theirs.
        (b"ms k 1 C5\r\n", StoreMode::Cas),
        (b"ms k 1 C5 MR\r\n", StoreMode::Cas),
        (b"ms k 1 C5 ME\r\n", StoreMode::Add),
        (b"ms k 1 C5 MA\r\n", StoreMode::Append),
        (b"ms k 1 MP C5\r\n", StoreMode::Prepend),
    ];
    for (line, mode) in cases {
        assert_eq!(ok(line).store_mode(), Some(*mode), "{line:?}");
    }
    // Data lengths as memcached reads them.
    assert_eq!(ok(b"ms k +1\r\n").datalen, Some(1));
    assert_eq!(ok(b"ms k 1\t\r\n").datalen, Some(1));
    assert_eq!(ok(b"ms k 0\r\n").datalen, Some(0));
    let huge = Limits {
        max_value: usize::MAX,
        ..Limits::default()
    };
    let req = parse(&Bytes::from_static(b"ms k 2147483645\r\n"), &huge).unwrap();
    assert_eq!(req.datalen, Some(2_147_483_645));
}

#[test]
fn arith_modes_and_tokens() {
    let req = ok(b"ma k N0 J5 D3 MD v t c\r\n");
    assert_eq!(req.verb, Verb::Arith);
    assert_eq!(req.vivify(), Some(0));
    assert_eq!(req.initial(), Some(5));
    assert_eq!(req.delta(), Some(3));
    assert_eq!(req.arith_mode(), Some(ArithMode::Decr));
    for (line, mode) in [
        (&b"ma k\r\n"[..], ArithMode::Incr),
        (b"ma k MI\r\n", ArithMode::Incr),
        (b"ma k M+\r\n", ArithMode::Incr),
        (b"ma k MD\r\n", ArithMode::Decr),
        (b"ma k M-\r\n", ArithMode::Decr),
    ] {
        assert_eq!(ok(line).arith_mode(), Some(mode));
    }
    assert_eq!(ok(b"ma k\r\n").delta(), None);
}

#[test]
fn delete_noop_and_debug() {
    let req = ok(b"md k I T30 C1 q k Oz\r\n");
    assert_eq!(req.verb, Verb::Delete);
    assert!(req.has(b'I'));
    assert_eq!(req.ttl(), Some(30));
    assert_eq!(req.compare_cas(), Some(1));

    for line in [&b"mn\r\n"[..], b"mn foo bar\r\n", b"mn\0x\r\n", b"mn"] {
        let req = ok(line);
        assert_eq!(req.verb, Verb::Noop);
        assert!(req.key.is_empty() && req.flags.is_empty());
        assert_eq!(encoded(&req), b"mn\r\n");
    }

    let req = ok(b"me foo\r\n");
    assert_eq!((req.verb, &req.key[..]), (Verb::Debug, &b"foo"[..]));
    assert!(req.flags.is_empty());
    let req = ok(b"me Zm9v b junk\r\n");
    assert_eq!(&req.key[..], b"foo");
    assert_eq!(flags(&req), [('b', String::new())]);
    assert_eq!(encoded(&req), b"me Zm9v b\r\n");
    // Only the token right after the key is read, and only `b` means base64.
    assert_eq!(&ok(b"me Zm9v x b\r\n").key[..], b"Zm9v");
    assert_eq!(&ok(b"me Zm9v bb\r\n").key[..], b"Zm9v");
    // me ignores flags the others refuse.
    assert_eq!(&ok(b"me k Q v v\r\n").key[..], b"k");
}

#[test]
fn base64_keys() {
    let req = ok(b"mg Zm9v b k v\r\n");
    assert_eq!(&req.key[..], b"foo");
    assert!(req.base64());
    // memcached's lenient decoder: skipped bytes, the first padded block.
    assert_eq!(&ok(b"mg Zm!9v b\r\n").key[..], b"foo");
    assert_eq!(&ok(b"mg Zg==Zm9v b\r\n").key[..], b"f");
    assert_eq!(&ok(b"mg Zm9v bjunk\r\n").key[..], b"foo");
    // Binary keys: any byte, space and line ends included.
    let req = ok(b"ms IA0K 1 b\r\n");
    assert_eq!(&req.key[..], b" \r\n");
    assert_eq!(encoded(&req), b"ms IA0K 1 b\r\n");
    // 248 base64 bytes (186 decoded) are within the 250-byte limit.
    let key = "AQEB".repeat(62);
    let req = ok(format!("mg {key} b\r\n").as_bytes());
    assert_eq!(req.key.len(), 186);
}

#[test]
fn line_forms() {
    let expect = ok(b"mg k v\r\n");
    for line in [
        &b"mg k v"[..],
        b"mg k v\n",
        b"   mg   k   v   \r\n",
        b"mg k v\0 junk Q\r\n",
    ] {
        assert_eq!(ok(line), expect, "{:?}", String::from_utf8_lossy(line));
    }
    // A tab is part of a token; a `\r` is dropped only right before `\n`.
    assert_eq!(&ok(b"mg k\tv\r\n").key[..], b"k\tv");
    assert_eq!(flags(&ok(b"mg k v\r\r\n")), [('v', "\r".to_string())]);
    // The longest key and the longest opaque.
    let key = "k".repeat(250);
    assert_eq!(ok(format!("mg {key}\r\n").as_bytes()).key.len(), 250);
    let opaque = "o".repeat(MAX_OPAQUE);
    let req = ok(format!("mg k O{opaque}\r\n").as_bytes());
    assert_eq!(req.opaque().map(Bytes::len), Some(31));
    // The most flags: 17 (16 for ms, whose data length is a token too).
    let seventeen = "s t c f v h u k l O P L T1 N1 R1 F1 C1";
    for verb in ["mg", "md", "ma"] {
        assert_eq!(
            ok(format!("{verb} k {seventeen}\r\n").as_bytes())
                .flags
                .len(),
            17
        );
    }
    let sixteen = "s t c f v h u k l O P L T1 N1 R1 F1";
    assert_eq!(
        ok(format!("ms k 1 {sixteen}\r\n").as_bytes()).flags.len(),
        16
    );
}

#[test]
fn is_meta_reads_the_command_token() {
    assert!(is_meta(b"mg k v\r\n"));
    assert!(is_meta(b"  mz\r\n"));
    assert!(is_meta(b"mn"));
    assert!(!is_meta(b"get k\r\n"));
    assert!(!is_meta(b"mgx k\r\n"));
    assert!(!is_meta(b"m\r\n"));
    assert!(!is_meta(b"MG k\r\n"));
    assert!(!is_meta(b"\r\n"));
    assert!(!is_meta(b""));
}

#[test]
fn requests_encode_back() {
    let lines: &[&[u8]] = &[
        b"mg foo v t c f s k h l u q Oop P/path Lx\r\n",
        b"mg foo\r\n",
        b"md foo I T30 C1 q\r\n",
        b"ma n N0 J5 D3 MD v t c\r\n",
        b"me foo\r\n",
        b"mn\r\n",
        b"mg Zm9v b k\r\n",
        b"mg k v5 k9\r\n",
    ];
    for line in lines {
        let req = ok(line);
        assert_eq!(encoded(&req), *line, "{:?}", String::from_utf8_lossy(line));
        assert_eq!(ok(&encoded(&req)), req);
    }
    // Spacing becomes canonical; a base64 key is encoded again.
    assert_eq!(encoded(&ok(b"  mg  k   v  \r\n")), b"mg k v\r\n");
    assert_eq!(encoded(&ok(b"mg Zm!9v b\r\n")), b"mg Zm9v b\r\n");
    assert_eq!(encoded(&ok(b"mg Z=9v b\r\n")), b"mg ZA8= b\r\n");
}

#[test]
fn set_value_attach_and_encode() {
    let mut req = ok(b"ms Zm9v 3 T30 F5 b\r\n");
    assert_eq!(req.value, None);
    // Without its value: the line alone, with the declared length.
    assert_eq!(encoded(&req), b"ms Zm9v 3 T30 F5 b\r\n");
    req.attach_value(Bytes::from_static(b"abc\r\n")).unwrap();
    assert_eq!(req.value.as_deref(), Some(&b"abc"[..]));
    assert_eq!(encoded(&req), b"ms Zm9v 3 T30 F5 b\r\nabc\r\n");
    // The line declares the attached value's length.
    req.value = Some(Bytes::from_static(b"hello"));
    assert_eq!(encoded(&req), b"ms Zm9v 5 T30 F5 b\r\nhello\r\n");

    // A hand-built request with an impossible length is refused, not a panic.
    let mut odd = ok(b"ms k 0\r\n");
    odd.datalen = Some(usize::MAX);
    assert!(odd.attach_value(Bytes::from_static(b"\r\n")).is_err());

    let mut empty = ok(b"ms k 0\r\n");
    empty.attach_value(Bytes::from_static(b"\r\n")).unwrap();
    assert_eq!(encoded(&empty), b"ms k 0\r\n\r\n");

    // A block that does not end in \r\n (or is not datalen + 2 bytes).
    for block in [&b"abc\r\r"[..], b"abcd\n", b"ab\r\n", b"abcd\r\n"] {
        let mut req = ok(b"ms k 3\r\n");
        let err = req.attach_value(Bytes::copy_from_slice(block)).unwrap_err();
        assert_eq!(err.reply, "CLIENT_ERROR bad data chunk");
        assert_eq!(err.next, After::Continue);
        assert_eq!(err.memcached, Some(After::Continue));
        assert_eq!(req.value, None);
    }
}

#[test]
fn quiet_hides_nominal_replies() {
    let hd = MetaReply::Status {
        code: Code::Header,
        flags: vec![],
    };
    let status = |code| MetaReply::Status {
        code,
        flags: vec![],
    };
    let va = MetaReply::Value {
        flags: vec![],
        data: Bytes::from_static(b"1"),
    };
    let error = MetaReply::Error(Bytes::from_static(b"CLIENT_ERROR x"));
    let mg = ok(b"mg k q v\r\n");
    assert!(mg.hides(&status(Code::Miss), false));
    assert!(!mg.hides(&hd, false) && !mg.hides(&va, false));
    for line in [&b"ms k 1 q\r\n"[..], b"md k q\r\n"] {
        let req = ok(line);
        assert!(req.hides(&hd, false));
        for code in [Code::NotFound, Code::NotStored, Code::Exists] {
            assert!(!req.hides(&status(code), false));
        }
        assert!(!req.hides(&error, false));
    }
    let ma = ok(b"ma k q v N0\r\n");
    assert!(ma.hides(&hd, false) && ma.hides(&va, false));
    // A vivified ma is answered even under q (memcached 1.6.18).
    assert!(!ma.hides(&hd, true) && !ma.hides(&va, true));
    assert!(!ma.hides(&status(Code::NotFound), false));
    // Without q nothing is hidden.
    assert!(!ok(b"mg k v\r\n").hides(&status(Code::Miss), false));
    assert!(!ok(b"mn\r\n").hides(&MetaReply::Noop, false));
}

fn decode_all(bytes: &[u8]) -> Result<Option<MetaReply>, FrameError> {
    let mut buf = BytesMut::from(bytes);
    let reply = MetaReply::decode(&mut buf, 1 << 20)?;
    if reply.is_some() {
        assert!(buf.is_empty(), "left over: {buf:?}");
    }
    Ok(reply)
}

/// Replies memcached 1.6.18 sent (see tests/meta_codec.rs for the live check).
const REPLIES: &[&[u8]] = &[
    b"VA 2 s2 t-1 c6 f0 h1 kk\r\nab\r\n",
    b"VA 0 W\r\n\r\n",
    b"VA 1\r\nx\r\n",
    b"VA 1 c7 X W\r\nx\r\n",
    b"VA 1 Z X\r\nx\r\n",
    b"VA 4 kZm9vYQ== b Oo1\r\na\r\nb\r\n",
    b"HD\r\n",
    b"HD c16 kcnt O\r\n",
    b"HD Oab\tc\r\n",
    b"HD W\r\n",
    b"EN\r\n",
    b"EN kZm9v b\r\n",
    b"NF O\r\n",
    b"NS\r\n",
    b"EX kcnt O\r\n",
    b"MN\r\n",
    b"ME k exp=-1 la=3 cas=1 fetch=no cls=1 size=61\r\n",
    b"ME Zm9v exp=-100 la=0 cas=7 fetch=yes cls=1 size=63\r\n",
    b"ERROR\r\n",
    b"CLIENT_ERROR bad command line format\r\n",
    b"SERVER_ERROR object too large for cache\r\n",
];

#[test]
fn replies_round_trip() {
    for raw in REPLIES {
        let shown = String::from_utf8_lossy(raw);
        let reply = decode_all(raw)
            .unwrap_or_else(|e| panic!("{shown:?}: {e}"))
            .unwrap_or_else(|| panic!("{shown:?} incomplete"));
        let mut out = BytesMut::new();
        reply.encode(&mut out);
        assert_eq!(&out[..], *raw, "{shown:?}");
        // Every proper prefix is incomplete, never an error.
        for cut in 0..raw.len() {
            assert_eq!(decode_all(&raw[..cut]), Ok(None), "{shown:?} cut at {cut}");
        }
    }
}

#[test]
fn reply_shapes() {
    assert_eq!(
        decode_all(b"VA 3 f5 t-1 Oo\r\nbar\r\n").unwrap(),
        Some(MetaReply::Value {
            flags: vec![
                Flag::new(b'f', &b"5"[..]),
                Flag::new(b't', &b"-1"[..]),
                Flag::new(b'O', &b"o"[..])
            ],
            data: Bytes::from_static(b"bar"),
        })
    );
    let reply = decode_all(b"EX c9 kfoo\r\n").unwrap().unwrap();
    assert_eq!(
        reply,
        MetaReply::Status {
            code: Code::Exists,
            flags: vec![Flag::new(b'c', &b"9"[..]), Flag::new(b'k', &b"foo"[..])],
        }
    );
    assert_eq!(reply.flag(b'k').map(|f| &f.token[..]), Some(&b"foo"[..]));
    assert_eq!(reply.flag(b'v'), None);
    assert_eq!(
        decode_all(b"ME k exp=-1 la=0\r\n").unwrap(),
        Some(MetaReply::Debug {
            key: Bytes::from_static(b"k"),
            info: Bytes::from_static(b"exp=-1 la=0"),
        })
    );
    assert!(MetaReply::Noop.flags().is_empty());
    // Values may hold anything, line ends included.
    let raw = b"VA 6\r\n\r\nMN\r\n\r\n";
    assert_eq!(
        decode_all(raw).unwrap(),
        Some(MetaReply::Value {
            flags: vec![],
            data: Bytes::from_static(b"\r\nMN\r\n"),
        })
    );
}

#[test]
fn pipelined_replies_decode_one_at_a_time() {
    let mut buf = BytesMut::from(&b"HD\r\nVA 1 c2\r\nx\r\nEN\r\nMN\r\nVA 2\r\nx"[..]);
    let mut got = Vec::new();
    while let Some(r) = MetaReply::decode(&mut buf, 100).unwrap() {
        got.push(r);
    }
    assert_eq!(got.len(), 4);
    assert_eq!(got[3], MetaReply::Noop);
    assert_eq!(&buf[..], b"VA 2\r\nx", "an incomplete value is left whole");
}

#[test]
fn replies_memcached_never_sends_are_refused() {
    let bad: &[&[u8]] = &[
        b"VA\r\n",
        b"VA x\r\nab\r\n",
        b"VA -1\r\n\r\n",
        b"VA 01\r\nx\r\n",
        b"VA 1 \r\nx\r\n",
        b"VA 1\r\nxy\r\n",
        b"VA 1  c1\r\nx\r\n",
        b"HD \r\n",
        b"HD  c1\r\n",
        b"HDc1\r\n",
        b"OK\r\n",
        b"STORED\r\n",
        b"MN x\r\n",
        b"ME\r\n",
        b"ME \r\n",
        b"ME k \r\n",
        b"\r\n",
        b"hd\r\n",
    ];
    for raw in bad {
        assert!(
            decode_all(raw).is_err(),
            "{:?} decoded",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn reply_decoding_is_bounded() {
    // A line with no end within MAX_REPLY_LINE bytes.
    let mut long = BytesMut::from(&vec![b'a'; MAX_REPLY_LINE + 1][..]);
    assert_eq!(MetaReply::decode(&mut long, 100), Ok(None));
    long.extend_from_slice(b"a");
    assert!(MetaReply::decode(&mut long, 100).is_err());
    // The longest line is read.
    let mut line = b"HD O".to_vec();
    line.resize(MAX_REPLY_LINE, b'o');
    line.extend_from_slice(b"\r\n");
    assert!(decode_all(&line).unwrap().is_some());
    // A value larger than max_value is refused before it is buffered.
    let mut buf = BytesMut::from(&b"VA 101\r\n"[..]);
    assert!(MetaReply::decode(&mut buf, 100).is_err());
    let mut buf = BytesMut::from(&b"VA 99999999999999999999999\r\n"[..]);
    assert!(MetaReply::decode(&mut buf, 100).is_err());
    let mut buf = BytesMut::from(&b"VA 100\r\n"[..]);
    assert_eq!(MetaReply::decode(&mut buf, 100), Ok(None));
    // No limit at all: a length no buffer can hold is still an error.
    let max = format!("VA {}\r\n", usize::MAX);
    let mut buf = BytesMut::from(max.as_bytes());
    assert!(MetaReply::decode(&mut buf, usize::MAX).is_err());
}

#[test]
fn no_panic_on_any_short_input() {
    // Every line of up to three bytes from a small alphabet, as a request
    // and as a reply.
    let alphabet = b"m gsdnaevqObT1-=\r\n\0\xff";
    let mut inputs: Vec<Vec<u8>> = vec![vec![]];
    for _ in 0..3 {
        let mut next = Vec::new();
        for i in &inputs {
            for &b in alphabet {
                let mut j = i.clone();
                j.push(b);
                next.push(j);
            }
        }
        inputs.extend(next);
    }
    for input in inputs {
        for prefix in [&b""[..], b"mg ", b"ms k ", b"ma k ", b"me ", b"VA ", b"HD "] {
            let line = [prefix, &input[..]].concat();
            let _ = parse(&Bytes::from(line.clone()), &limits());
            let _ = is_meta(&line);
            let mut buf = BytesMut::from(&line[..]);
            let _ = MetaReply::decode(&mut buf, 10);
        }
    }
}
