//! Table-driven tests of the codec: the text and binary request decoders,
//! each limit at and past its edge, and the exact bytes of every reply in
//! both encodings. The expected behaviour is memcached 1.6.18's, except where
//! DESIGN §2 lists a deliberate difference (noted at each such test).

use bytes::{BufMut, Bytes, BytesMut};

use super::binary::{self, op, status, HEADER_LEN, REQ_MAGIC, RES_MAGIC};
use super::text;
use super::{
    msg, Command, Decoder, ErrorReply, Frame, FrameError, Invalid, Limits, Request, Response,
    StoreMode, Value, MAX_KEY_LEN,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn key_of(len: usize) -> Vec<u8> {
    vec![b'k'; len]
}

/// Limits with a small value cap so the edges are cheap to reach.
fn limits() -> Limits {
    Limits {
        max_value: 1000,
        max_line: 2048,
    }
}

/// The keys of a long get line decoded in segments, in order; every
/// segment is a plain text get (`gets` when `cas`).
fn segment_keys(reqs: &[Request], cas: bool) -> Vec<Bytes> {
    let mut all = Vec::new();
    for r in reqs {
        match r {
            Request {
                cmd: Command::Get { keys, touch: None },
                frame:
                    Frame::Text {
                        noreply: false,
                        cas: c,
                    },
            } if *c == cas => all.extend(keys.iter().cloned()),
            other => panic!("not a get segment: {other:?}"),
        }
    }
    all
}

fn text_frame(noreply: bool, cas: bool) -> Frame {
    Frame::Text { noreply, cas }
}

fn tx(cmd: Command) -> Request {
    Request {
        cmd,
        frame: text_frame(false, false),
    }
}

fn tx_noreply(cmd: Command) -> Request {
    Request {
        cmd,
        frame: text_frame(true, false),
    }
}

fn tx_cas(cmd: Command) -> Request {
    Request {
        cmd,
        frame: text_frame(false, true),
    }
}

fn invalid(i: Invalid) -> Command {
    Command::Invalid(i)
}

fn unknown() -> Command {
    Command::Invalid(Invalid::UnknownCommand)
}

fn client(m: &'static str) -> Command {
    Command::Invalid(Invalid::Client(m))
}

fn get(keys: &[&str]) -> Command {
    Command::Get {
        keys: keys.iter().map(|k| b(k)).collect(),
        touch: None,
    }
}

fn gat(exptime: i64, keys: &[&str]) -> Command {
    Command::Get {
        keys: keys.iter().map(|k| b(k)).collect(),
        touch: Some(exptime),
    }
}

fn store(mode: StoreMode, key: &str, flags: u32, exptime: i64, cas: u64, value: &str) -> Command {
    Command::Store {
        mode,
        key: b(key),
        flags,
        exptime,
        cas,
        value: b(value),
    }
}

/// Everything one decoder makes of `input` fed at once: the requests, then
/// the framing error if there was one, and what is left in the buffer.
struct Decoded {
    reqs: Vec<Request>,
    err: Option<FrameError>,
    rest: BytesMut,
}

fn drain<F>(buf: &mut BytesMut, mut decode: F) -> (Vec<Request>, Option<FrameError>)
where
    F: FnMut(&mut BytesMut) -> Result<Option<Request>, FrameError>,
{
    let mut reqs = Vec::new();
    loop {
        match decode(buf) {
            Ok(Some(r)) => reqs.push(r),
            Ok(None) => return (reqs, None),
            Err(e) => return (reqs, Some(e)),
        }
    }
}

fn text_decode_with(input: &[u8], limits: Limits) -> Decoded {
    let mut d = text::RequestDecoder::new(limits);
    let mut buf = BytesMut::from(input);
    let (reqs, err) = drain(&mut buf, |buf| d.decode(buf));
    Decoded {
        reqs,
        err,
        rest: buf,
    }
}

fn text_decode(input: &[u8]) -> Decoded {
    text_decode_with(input, limits())
}

/// Decode `input` fed one byte at a time; must agree with feeding it whole.
fn text_decode_bytewise(input: &[u8], limits: Limits) -> (Vec<Request>, Option<FrameError>) {
    let mut d = text::RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut reqs = Vec::new();
    for &byte in input {
        buf.put_u8(byte);
        let (mut r, err) = drain(&mut buf, |buf| d.decode(buf));
        reqs.append(&mut r);
        if err.is_some() {
            return (reqs, err);
        }
    }
    (reqs, None)
}

fn binary_decode_with(input: &[u8], limits: Limits) -> Decoded {
    let mut d = binary::RequestDecoder::new(limits);
    let mut buf = BytesMut::from(input);
    let (reqs, err) = drain(&mut buf, |buf| d.decode(buf));
    Decoded {
        reqs,
        err,
        rest: buf,
    }
}

fn binary_decode(input: &[u8]) -> Decoded {
    binary_decode_with(input, limits())
}

/// A packet header with every length given explicitly, then `body`.
#[allow(clippy::too_many_arguments)]
fn raw_packet(
    magic: u8,
    opcode: u8,
    keylen: u16,
    extlen: u8,
    status: u16,
    bodylen: u32,
    opaque: u32,
    cas: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + body.len());
    v.push(magic);
    v.push(opcode);
    v.extend_from_slice(&keylen.to_be_bytes());
    v.push(extlen);
    v.push(0); // data type
    v.extend_from_slice(&status.to_be_bytes());
    v.extend_from_slice(&bodylen.to_be_bytes());
    v.extend_from_slice(&opaque.to_be_bytes());
    v.extend_from_slice(&cas.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A well-formed request packet.
fn req_packet(
    opcode: u8,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let body = [extras, key, value].concat();
    raw_packet(
        REQ_MAGIC,
        opcode,
        key.len() as u16,
        extras.len() as u8,
        0,
        body.len() as u32,
        opaque,
        cas,
        &body,
    )
}

/// A well-formed response packet, built independently of `write_packet`.
fn rsp_packet(
    opcode: u8,
    status: u16,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let body = [extras, key, value].concat();
    raw_packet(
        RES_MAGIC,
        opcode,
        key.len() as u16,
        extras.len() as u8,
        status,
        body.len() as u32,
        opaque,
        cas,
        &body,
    )
}

fn bin_frame(opcode: u8, opaque: u32) -> Frame {
    Frame::Binary { opcode, opaque }
}

const OPAQUE: u32 = 0xdead_beef;

fn noop_packet() -> Vec<u8> {
    req_packet(op::NOOP, 7, 0, &[], &[], &[])
}

fn noop_request() -> Request {
    Request {
        cmd: Command::Noop,
        frame: bin_frame(op::NOOP, 7),
    }
}

// ---------------------------------------------------------------------------
// Text decoder: every command
// ---------------------------------------------------------------------------

#[test]
fn text_commands_table() {
    use StoreMode::*;
    let cases: Vec<(&[u8], Vec<Request>)> = vec![
        // Retrieval.
        (b"get k\r\n", vec![tx(get(&["k"]))]),
        (b"get a b c\r\n", vec![tx(get(&["a", "b", "c"]))]),
        (b"get  a   b \r\n", vec![tx(get(&["a", "b"]))]),
        (b"get k\n", vec![tx(get(&["k"]))]),
        (b"gets a b\r\n", vec![tx_cas(get(&["a", "b"]))]),
        (b"gat 10 a b\r\n", vec![tx(gat(10, &["a", "b"]))]),
        (b"gats -1 a\r\n", vec![tx_cas(gat(-1, &["a"]))]),
        // memcached answers `gat 10` with a bare END.
        (b"gat 10\r\n", vec![tx(gat(10, &[]))]),
        (b"bget a\r\n", vec![tx(get(&["a"]))]),
        // Keys are tokens: tabs and control bytes are part of them.
        (b"get a\tb\x01\r\n", vec![tx(get(&["a\tb\x01"]))]),
        // Only one \r before the \n is stripped.
        (b"get k\r\r\n", vec![tx(get(&["k\r"]))]),
        // A NUL ends the line as it does memcached's C string.
        (b"get a\0b c\r\n", vec![tx(get(&["a"]))]),
        (b"gat abc k\r\n", vec![tx(client(msg::BAD_EXPTIME))]),
        // Storage.
        (
            b"set k 5 100 3\r\nabc\r\n",
            vec![tx(store(Set, "k", 5, 100, 0, "abc"))],
        ),
        (
            b"set k 5 100 3 noreply\r\nabc\r\n",
            vec![tx_noreply(store(Set, "k", 5, 100, 0, "abc"))],
        ),
        (
            b"add k 0 0 1\r\nx\r\n",
            vec![tx(store(Add, "k", 0, 0, 0, "x"))],
        ),
        (
            b"add k 0 0 1 noreply\r\nx\r\n",
            vec![tx_noreply(store(Add, "k", 0, 0, 0, "x"))],
        ),
        (
            b"replace k 1 -1 1\r\nx\r\n",
            vec![tx(store(Replace, "k", 1, -1, 0, "x"))],
        ),
        (
            b"replace k 1 -1 1 noreply\r\nx\r\n",
            vec![tx_noreply(store(Replace, "k", 1, -1, 0, "x"))],
        ),
        (
            b"append k 0 0 2\r\nxy\r\n",
            vec![tx(store(Append, "k", 0, 0, 0, "xy"))],
        ),
        (
            b"append k 0 0 2 noreply\r\nxy\r\n",
            vec![tx_noreply(store(Append, "k", 0, 0, 0, "xy"))],
        ),
        (
            b"prepend k 0 0 2\r\nxy\r\n",
            vec![tx(store(Prepend, "k", 0, 0, 0, "xy"))],
        ),
        (
            b"prepend k 0 0 2 noreply\r\nxy\r\n",
            vec![tx_noreply(store(Prepend, "k", 0, 0, 0, "xy"))],
        ),
        (
            b"cas k 1 2 3 99\r\nabc\r\n",
            vec![tx(store(Cas, "k", 1, 2, 99, "abc"))],
        ),
        (
            b"cas k 1 2 3 99 noreply\r\nabc\r\n",
            vec![tx_noreply(store(Cas, "k", 1, 2, 99, "abc"))],
        ),
        (
            b"cas k 0 0 1 0\r\nx\r\n",
            vec![tx(store(Cas, "k", 0, 0, 0, "x"))],
        ),
        (
            b"set k 0 0 0\r\n\r\n",
            vec![tx(store(Set, "k", 0, 0, 0, ""))],
        ),
        // The data block is length-delimited: it may hold \r\n.
        (
            b"set k 0 0 4\r\na\r\nb\r\n",
            vec![tx(store(Set, "k", 0, 0, 0, "a\r\nb"))],
        ),
        // A sixth token that is not `noreply` is ignored, as memcached does.
        (
            b"set k 0 0 1 junk\r\nx\r\n",
            vec![tx(store(Set, "k", 0, 0, 0, "x"))],
        ),
        // Numbers as strtol reads them.
        (
            b"set k +7 0 1\r\nx\r\n",
            vec![tx(store(Set, "k", 7, 0, 0, "x"))],
        ),
        (
            b"set k 0 -2147483648 1\r\nx\r\n",
            vec![tx(store(Set, "k", 0, -2147483648, 0, "x"))],
        ),
        // Deletion: memcached's odd `delete <key> 0` forms.
        (
            b"delete k\r\n",
            vec![tx(Command::Delete {
                key: b("k"),
                cas: 0,
            })],
        ),
        (
            b"delete k noreply\r\n",
            vec![tx_noreply(Command::Delete {
                key: b("k"),
                cas: 0,
            })],
        ),
        (
            b"delete k 0\r\n",
            vec![tx(Command::Delete {
                key: b("k"),
                cas: 0,
            })],
        ),
        (
            b"delete k 0 noreply\r\n",
            vec![tx_noreply(Command::Delete {
                key: b("k"),
                cas: 0,
            })],
        ),
        (b"delete k 1\r\n", vec![tx(client(msg::BAD_DELETE))]),
        (b"delete k 0 0\r\n", vec![tx(client(msg::BAD_DELETE))]),
        (b"delete k x\r\n", vec![tx(client(msg::BAD_DELETE))]),
        (
            b"delete k 1 noreply\r\n",
            vec![tx_noreply(client(msg::BAD_DELETE))],
        ),
        (b"delete k 0 noreply x\r\n", vec![tx(unknown())]),
        // Arithmetic.
        (
            b"incr k 5\r\n",
            vec![tx(Command::Arith {
                key: b("k"),
                incr: true,
                delta: 5,
                create: None,
            })],
        ),
        (
            b"decr k 5 noreply\r\n",
            vec![tx_noreply(Command::Arith {
                key: b("k"),
                incr: false,
                delta: 5,
                create: None,
            })],
        ),
        (
            b"incr k 18446744073709551615\r\n",
            vec![tx(Command::Arith {
                key: b("k"),
                incr: true,
                delta: u64::MAX,
                create: None,
            })],
        ),
        (
            b"incr k 18446744073709551616\r\n",
            vec![tx(client(msg::BAD_DELTA))],
        ),
        (b"incr k abc\r\n", vec![tx(client(msg::BAD_DELTA))]),
        (b"decr k -1\r\n", vec![tx(client(msg::BAD_DELTA))]),
        (
            b"incr k abc noreply\r\n",
            vec![tx_noreply(client(msg::BAD_DELTA))],
        ),
        // Touch.
        (
            b"touch k 10\r\n",
            vec![tx(Command::Touch {
                key: b("k"),
                exptime: 10,
            })],
        ),
        (
            b"touch k -1 noreply\r\n",
            vec![tx_noreply(Command::Touch {
                key: b("k"),
                exptime: -1,
            })],
        ),
        (b"touch k abc\r\n", vec![tx(client(msg::BAD_EXPTIME))]),
        (
            b"touch k 2147483648\r\n",
            vec![tx(client(msg::BAD_EXPTIME))],
        ),
        (
            b"touch k abc noreply\r\n",
            vec![tx_noreply(client(msg::BAD_EXPTIME))],
        ),
        // flush_all with and without delay and noreply.
        (b"flush_all\r\n", vec![tx(Command::Flush { delay: 0 })]),
        (b"flush_all 10\r\n", vec![tx(Command::Flush { delay: 10 })]),
        (b"flush_all -1\r\n", vec![tx(Command::Flush { delay: -1 })]),
        (
            b"flush_all noreply\r\n",
            vec![tx_noreply(Command::Flush { delay: 0 })],
        ),
        (
            b"flush_all 10 noreply\r\n",
            vec![tx_noreply(Command::Flush { delay: 10 })],
        ),
        (
            b"flush_all 10 junk\r\n",
            vec![tx(Command::Flush { delay: 10 })],
        ),
        (b"flush_all abc\r\n", vec![tx(client(msg::BAD_EXPTIME))]),
        (
            b"flush_all abc noreply\r\n",
            vec![tx_noreply(client(msg::BAD_EXPTIME))],
        ),
        // The rest.
        (b"version\r\n", vec![tx(Command::Version)]),
        (b"version foo\r\n", vec![tx(Command::Version)]),
        (
            b"verbosity 1\r\n",
            vec![tx(Command::Verbosity { level: 1 })],
        ),
        (
            b"verbosity 1 2\r\n",
            vec![tx(Command::Verbosity { level: 1 })],
        ),
        (
            b"verbosity 1 noreply\r\n",
            vec![tx_noreply(Command::Verbosity { level: 1 })],
        ),
        (b"verbosity abc\r\n", vec![tx(client(msg::BAD_FORMAT))]),
        (
            b"verbosity noreply\r\n",
            vec![tx_noreply(client(msg::BAD_FORMAT))],
        ),
        (b"stats\r\n", vec![tx(Command::Stats { arg: None })]),
        (
            b"stats items\r\n",
            vec![tx(Command::Stats {
                arg: Some(b("items")),
            })],
        ),
        (
            b"stats  slabs   foo\r\n",
            vec![tx(Command::Stats {
                arg: Some(b("slabs foo")),
            })],
        ),
        (b"quit\r\n", vec![tx(Command::Quit)]),
        (b"quit now\r\n", vec![tx(Command::Quit)]),
        // Pipelined.
        (
            b"get a\r\nset b 0 0 1\r\nx\r\ndelete c\r\n",
            vec![
                tx(get(&["a"])),
                tx(store(Set, "b", 0, 0, 0, "x")),
                tx(Command::Delete {
                    key: b("c"),
                    cas: 0,
                }),
            ],
        ),
    ];
    for (input, want) in cases {
        let d = text_decode(input);
        let shown = String::from_utf8_lossy(input);
        assert_eq!(d.err, None, "{shown:?}");
        assert_eq!(d.reqs, want, "{shown:?}");
        assert!(d.rest.is_empty(), "{shown:?} left {:?}", d.rest);
        // Byte at a time gives the same.
        let (reqs, err) = text_decode_bytewise(input, limits());
        assert_eq!(err, None, "{shown:?} bytewise");
        assert_eq!(reqs, want, "{shown:?} bytewise");
    }
}

#[test]
fn text_wrong_argument_counts_are_unknown_commands() {
    let lines: &[&[u8]] = &[
        b"get\r\n",
        b"gets\r\n",
        b"gat\r\n",
        b"gats\r\n",
        b"bget\r\n",
        b"set k 0 0\r\n",
        b"set k 0 0 1 noreply x\r\n",
        b"add k 0\r\n",
        b"replace k\r\n",
        b"append\r\n",
        b"prepend k 0 0 1 noreply x\r\n",
        b"cas k 0 0 1\r\n",
        b"cas k 0 0 1 1 noreply x\r\n",
        b"incr k\r\n",
        b"incr k 1 noreply x\r\n",
        b"decr\r\n",
        b"touch k\r\n",
        b"touch k 1 noreply x\r\n",
        b"delete\r\n",
        b"delete k 0 noreply x\r\n",
        b"flush_all 1 noreply x\r\n",
        b"verbosity\r\n",
        b"verbosity 1 noreply x\r\n",
        // Not commands at all.
        b"\r\n",
        b"\n",
        b"a\r\n",
        b"foo bar\r\n",
        b"GET k\r\n",
        b"gett k\r\n",
        // A two-letter m? command memcached does not know.
        b"mz k\r\n",
    ];
    for line in lines {
        let d = text_decode(line);
        let shown = String::from_utf8_lossy(line);
        assert_eq!(d.err, None, "{shown:?}");
        assert_eq!(d.reqs, vec![tx(unknown())], "{shown:?}");
        assert!(d.rest.is_empty(), "{shown:?}");
    }
    // Meta commands decode as such.
    for line in [&b"mg k v\r\n"[..], b"mn\r\n", b"md k q\r\n"] {
        let d = text_decode(line);
        assert!(
            matches!(
                &d.reqs[..],
                [Request {
                    cmd: Command::Meta(_),
                    ..
                }]
            ),
            "{:?}: {:?}",
            String::from_utf8_lossy(line),
            d.reqs
        );
    }
    // A storage line with the wrong count cannot be followed: as memcached,
    // its data block is read as the next command.
    let d = text_decode(b"set k 0 0\r\nversion\r\n");
    assert_eq!(d.reqs, vec![tx(unknown()), tx(Command::Version)]);
}

#[test]
fn text_http_request_closes_like_memcached() {
    // memcached closes on a trailing "HTTP/" token only for commands it does
    // not dispatch otherwise.
    for line in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"HTTP/1.1\r\n",
        b"xx HTTP/1.0\r\n",
        b"mxx / HTTP/1.1\r\n",
        b"POST /x HTTP/1.1\r\n",
    ] {
        let d = text_decode(line);
        assert!(d.reqs.is_empty(), "{:?}", String::from_utf8_lossy(line));
        assert_eq!(d.err.map(|e| e.reply), Some(None));
    }
    // Commands memcached routes by their first letter (g s a c i d t), its
    // two-letter meta commands and the other commands it names answer ERROR
    // even with an HTTP/ token (checked against memcached 1.6.18).
    for line in [
        &b"gxx / HTTP/1.1\r\n"[..],
        b"sxx HTTP/1.1\r\n",
        b"axx HTTP/1.1\r\n",
        b"cxx HTTP/1.1\r\n",
        b"ixx HTTP/1.1\r\n",
        b"dxx HTTP/1.1\r\n",
        b"txx HTTP/1.1\r\n",
        b"mx HTTP/1.1\r\n",
        b"extstore HTTP/1.1\r\n",
        b"watch HTTP/1.1\r\n",
        b"x HTTP/1.1\r\n",
    ] {
        let d = text_decode(line);
        let shown = String::from_utf8_lossy(line);
        assert_eq!(d.err, None, "{shown:?}");
        assert_eq!(d.reqs, vec![tx(unknown())], "{shown:?}");
    }
    // lru and lru_crawler go to memcached, which answers ERROR.
    for line in [&b"lru HTTP/1.1\r\n"[..], b"lru_crawler HTTP/1.1\r\n"] {
        let d = text_decode(line);
        assert_eq!(d.err, None);
        assert!(matches!(
            d.reqs[..],
            [Request {
                cmd: Command::Admin { .. },
                ..
            }]
        ));
    }
    // memcached's tokenizer stops after 23 tokens; it looks at the 23rd.
    let tokens = |n: usize| -> Vec<String> { (0..n).map(|i| format!("t{i}")).collect() };
    let line = |words: Vec<String>| format!("foo {}\r\n", words.join(" ")).into_bytes();
    let mut w = tokens(21);
    w.push("HTTP/1.1".into());
    assert!(text_decode(&line(w.clone())).err.is_some(), "23rd token");
    w.push("x".into());
    assert!(
        text_decode(&line(w)).err.is_some(),
        "23rd token, more after"
    );
    let mut w = tokens(22);
    w.push("HTTP/1.1".into());
    assert_eq!(
        text_decode(&line(w)).reqs,
        vec![tx(unknown())],
        "24th token"
    );
}

fn admin(line: &str, noreply: bool) -> Command {
    Command::Admin {
        line: b(line),
        noreply,
    }
}

/// memcached's admin commands go to L1 as the line memcached would read:
/// whatever their arguments (memcached checks them), without the line end,
/// cut at a NUL; `noreply` is the last of the first 23 tokens.
#[test]
fn text_admin_commands() {
    let cases: Vec<(&[u8], Command)> = vec![
        (
            b"cache_memlimit 100\r\n",
            admin("cache_memlimit 100", false),
        ),
        (b"cache_memlimit\r\n", admin("cache_memlimit", false)),
        (
            b"cache_memlimit 100 noreply\r\n",
            admin("cache_memlimit 100 noreply", true),
        ),
        (b"slabs automove 1\n", admin("slabs automove 1", false)),
        (
            b"slabs automove invalid\r\n",
            admin("slabs automove invalid", false),
        ),
        (
            b"slabs reassign 1 2\r\n",
            admin("slabs reassign 1 2", false),
        ),
        (b"slabs\r\n", admin("slabs", false)),
        (
            b"lru tune 10 25 0.1 2.0\r\n",
            admin("lru tune 10 25 0.1 2.0", false),
        ),
        (
            b"lru mode flat noreply\r\n",
            admin("lru mode flat noreply", true),
        ),
        (
            b"lru_crawler metadump all\r\n",
            admin("lru_crawler metadump all", false),
        ),
        (
            b"  lru_crawler  crawl 1,2 \r\n",
            admin("  lru_crawler  crawl 1,2 ", false),
        ),
        (
            b"lru_crawler crawl 1\0 x\r\n",
            admin("lru_crawler crawl 1", false),
        ),
        (
            b"lru_crawler crawl 1\r\r\n",
            admin("lru_crawler crawl 1\r", false),
        ),
    ];
    for (line, want) in cases {
        let d = text_decode(line);
        let shown = String::from_utf8_lossy(line);
        assert_eq!(d.err, None, "{shown:?}");
        assert_eq!(d.reqs, vec![tx(want)], "{shown:?}");
        assert!(d.rest.is_empty(), "{shown:?}");
    }
    // Past the 23rd token memcached does not look for noreply.
    let words: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let at_23 = format!("lru {} noreply", words.join(" "));
    let past_23 = format!("lru {} x noreply", words.join(" "));
    let decoded = |l: &str| text_decode(format!("{l}\r\n").as_bytes()).reqs;
    assert_eq!(decoded(&at_23), vec![tx(admin(&at_23, true))]);
    assert_eq!(decoded(&past_23), vec![tx(admin(&past_23, false))]);
    // Case matters, as in memcached; the 2048-byte line limit holds.
    assert_eq!(text_decode(b"LRU mode flat\r\n").reqs, vec![tx(unknown())]);
    let mut long = b"cache_memlimit ".to_vec();
    long.resize(limits().max_line + 1, b'1');
    long.extend_from_slice(b"\n");
    assert!(text_decode(&long).err.is_some());
    // The line goes to memcached as it came.
    let mut out = BytesMut::new();
    text::encode_request(&tx(admin("lru mode flat noreply", true)), &mut out);
    assert_eq!(&out[..], b"lru mode flat noreply\r\n");
    // memcached's reply goes back byte for byte.
    let reply = b("ITEM a [1 b; 0 s]\r\nEND\r\n");
    let req = tx(admin("stats cachedump 1 0", false));
    assert_eq!(
        text_reply(&req, &Response::Raw(reply.clone())),
        reply.to_vec()
    );
}

/// How the admin lane frames a command for memcached and finds the end of
/// its reply.
#[test]
fn admin_framing() {
    use text::{admin_reply_end, encode_admin, AdminEnd};
    let mut out = BytesMut::new();
    assert_eq!(
        encode_admin(b"cache_memlimit 100", &mut out),
        AdminEnd::Fence
    );
    assert_eq!(&out[..], b"cache_memlimit 100\r\nmn\r\n");
    let mut out = BytesMut::new();
    assert_eq!(
        encode_admin(b" lru_crawler  metadump all", &mut out),
        AdminEnd::FirstCrlf
    );
    assert_eq!(&out[..], b" lru_crawler  metadump all\r\n");
    let mut out = BytesMut::new();
    assert_eq!(
        encode_admin(b"lru_crawler crawl all", &mut out),
        AdminEnd::Fence
    );

    let fence = |buf: &[u8]| admin_reply_end(AdminEnd::Fence, buf, &mut 0);
    assert_eq!(fence(b""), None);
    assert_eq!(fence(b"OK\r\n"), None);
    assert_eq!(fence(b"OK\r\nMN\r"), None);
    assert_eq!(fence(b"OK\r\nMN\r\n"), Some((4, 8)));
    // noreply: only the fence comes back.
    assert_eq!(fence(b"MN\r\n"), Some((0, 4)));
    // MN inside a line is not the fence.
    assert_eq!(fence(b"ITEM MN\r\n"), None);
    let dump = b"ITEM a [1 b; 0 s]\r\nEND\r\nMN\r\n";
    assert_eq!(fence(dump), Some((dump.len() - 4, dump.len())));

    let mut scanned = 0;
    let mut first = |buf: &[u8]| admin_reply_end(AdminEnd::FirstCrlf, buf, &mut scanned);
    assert_eq!(first(b"key=a exp=-1\nkey=b"), None);
    assert_eq!(first(b"key=a exp=-1\nkey=b exp=-1\nEND\r"), None);
    assert_eq!(
        first(b"key=a exp=-1\nkey=b exp=-1\nEND\r\n"),
        Some((31, 31))
    );
    let mut scanned = 0;
    assert_eq!(
        admin_reply_end(
            AdminEnd::FirstCrlf,
            b"BADCLASS invalid class id\r\n",
            &mut scanned
        ),
        Some((27, 27))
    );
}

// ---------------------------------------------------------------------------
// Text decoder: limits at and past their edges
// ---------------------------------------------------------------------------

#[test]
fn text_key_length_edge_for_get() {
    let ok = [b"get ".to_vec(), key_of(250), b"\r\n".to_vec()].concat();
    let d = text_decode(&ok);
    assert_eq!(
        d.reqs,
        vec![tx(Command::Get {
            keys: vec![Bytes::from(key_of(250))],
            touch: None
        })]
    );
    for line in [
        [b"get ".to_vec(), key_of(251), b"\r\n".to_vec()].concat(),
        [b"get a ".to_vec(), key_of(251), b" b\r\n".to_vec()].concat(),
        [b"gets ".to_vec(), key_of(251), b"\r\n".to_vec()].concat(),
        [b"gat 1 ".to_vec(), key_of(251), b"\r\n".to_vec()].concat(),
    ] {
        let d = text_decode(&line);
        assert_eq!(d.err, None);
        // The error reply carries no cas, even for gets.
        assert_eq!(d.reqs, vec![tx(client(msg::BAD_FORMAT))]);
    }
}

#[test]
fn text_key_length_edge_for_other_commands() {
    let k250 = String::from_utf8(key_of(250)).unwrap();
    let k251 = String::from_utf8(key_of(251)).unwrap();
    let ok = format!("delete {k250}\r\nincr {k250} 1\r\ntouch {k250} 1\r\n");
    let d = text_decode(ok.as_bytes());
    assert_eq!(d.reqs.len(), 3);
    assert!(d.reqs.iter().all(|r| !matches!(r.cmd, Command::Invalid(_))));
    for line in [
        format!("delete {k251}\r\n"),
        format!("incr {k251} 1\r\n"),
        format!("decr {k251} 1\r\n"),
        format!("touch {k251} 1\r\n"),
    ] {
        assert_eq!(
            text_decode(line.as_bytes()).reqs,
            vec![tx(client(msg::BAD_FORMAT))]
        );
    }
    let line = format!("delete {k251} noreply\r\n");
    assert_eq!(
        text_decode(line.as_bytes()).reqs,
        vec![tx_noreply(client(msg::BAD_FORMAT))]
    );
}

#[test]
fn text_set_key_too_long_swallows_the_data_block() {
    let k250 = String::from_utf8(key_of(250)).unwrap();
    let k251 = String::from_utf8(key_of(251)).unwrap();
    let ok = format!("set {k250} 0 0 13\r\ndelete victim\r\n");
    assert_eq!(
        text_decode(ok.as_bytes()).reqs,
        vec![tx(store(StoreMode::Set, &k250, 0, 0, 0, "delete victim"))]
    );
    // DESIGN §2: memcached would run `delete victim` as a command; rend
    // discards the data block of a refused storage command.
    for (verb, noreply) in [("set", false), ("add", true), ("cas", false)] {
        let cas = if verb == "cas" { " 1" } else { "" };
        let nr = if noreply { " noreply" } else { "" };
        let input = format!("{verb} {k251} 0 0 13{cas}{nr}\r\ndelete victim\r\nversion\r\n");
        let d = text_decode(input.as_bytes());
        assert_eq!(d.err, None);
        assert_eq!(
            d.reqs,
            vec![
                Request {
                    cmd: client(msg::BAD_FORMAT),
                    frame: text_frame(noreply, false),
                },
                tx(Command::Version),
            ],
            "{verb}"
        );
        // The same, a byte at a time.
        let (reqs, err) = text_decode_bytewise(input.as_bytes(), limits());
        assert_eq!(err, None);
        assert_eq!(reqs, d.reqs);
    }
}

#[test]
fn text_value_size_edge() {
    let max = limits().max_value;
    let value = "v".repeat(max);
    let input = format!("set k 0 0 {max}\r\n{value}\r\n");
    assert_eq!(
        text_decode(input.as_bytes()).reqs,
        vec![tx(store(StoreMode::Set, "k", 0, 0, 0, &value))]
    );
    let over = max + 1;
    let value = "v".repeat(over);
    let cases = [
        ("set", Some(b("k")), false),
        ("set", Some(b("k")), true),
        ("add", None, false),
        ("replace", None, false),
        ("append", None, false),
        ("prepend", None, true),
    ];
    for (verb, delete, noreply) in cases {
        let nr = if noreply { " noreply" } else { "" };
        let input = format!("{verb} k 0 0 {over}{nr}\r\n{value}\r\nversion\r\n");
        let want = vec![
            Request {
                cmd: invalid(Invalid::TooLarge {
                    delete: delete.clone(),
                }),
                frame: text_frame(noreply, false),
            },
            tx(Command::Version),
        ];
        let d = text_decode(input.as_bytes());
        assert_eq!(d.err, None, "{verb}");
        assert_eq!(d.reqs, want, "{verb}");
        assert!(d.rest.is_empty());
        let (reqs, err) = text_decode_bytewise(input.as_bytes(), limits());
        assert_eq!((reqs, err), (want, None), "{verb} bytewise");
    }
    // cas: refused, never deletes.
    let input = format!("cas k 0 0 {over} 5\r\n{value}\r\n");
    assert_eq!(
        text_decode(input.as_bytes()).reqs,
        vec![tx(invalid(Invalid::TooLarge { delete: None }))]
    );
}

#[test]
fn text_too_large_is_answered_before_its_body_arrives() {
    let mut d = text::RequestDecoder::new(limits());
    let mut buf = BytesMut::from(&b"set big 0 0 100000\r\n"[..]);
    assert_eq!(
        d.decode(&mut buf).unwrap(),
        Some(tx(invalid(Invalid::TooLarge {
            delete: Some(b("big"))
        })))
    );
    // The body is discarded as it arrives, never buffered.
    let mut left = 100_002;
    while left > 0 {
        let n = left.min(4096);
        buf.put_slice(&vec![b'x'; n]);
        left -= n;
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }
    buf.put_slice(b"version\r\n");
    assert_eq!(d.decode(&mut buf).unwrap(), Some(tx(Command::Version)));
}

#[test]
fn text_flags_edge() {
    let d = text_decode(b"set k 4294967295 0 1\r\nx\r\n");
    assert_eq!(
        d.reqs,
        vec![tx(store(StoreMode::Set, "k", u32::MAX, 0, 0, "x"))]
    );
    // DESIGN §2: memcached truncates; rend refuses and swallows the block.
    for flags in ["4294967296", "-1", "abc", "18446744073709551616"] {
        let input = format!("set k {flags} 0 13\r\ndelete victim\r\nversion\r\n");
        let d = text_decode(input.as_bytes());
        assert_eq!(d.err, None, "{flags}");
        assert_eq!(
            d.reqs,
            vec![tx(client(msg::BAD_FORMAT)), tx(Command::Version)],
            "{flags}"
        );
    }
}

#[test]
fn text_exptime_edge() {
    let d = text_decode(b"set k 0 2147483647 1\r\nx\r\n");
    assert_eq!(
        d.reqs,
        vec![tx(store(StoreMode::Set, "k", 0, 2147483647, 0, "x"))]
    );
    for exptime in ["2147483648", "-2147483649", "1x"] {
        let input = format!("set k 0 {exptime} 13 noreply\r\ndelete victim\r\nversion\r\n");
        let d = text_decode(input.as_bytes());
        assert_eq!(d.err, None, "{exptime}");
        assert_eq!(
            d.reqs,
            vec![tx_noreply(client(msg::BAD_FORMAT)), tx(Command::Version)],
            "{exptime}"
        );
    }
    // gat, touch and flush_all take the same 32-bit signed exptime.
    assert_eq!(
        text_decode(b"gat 2147483647 k\r\n").reqs,
        vec![tx(gat(2147483647, &["k"]))]
    );
    assert_eq!(
        text_decode(b"gat 2147483648 k\r\n").reqs,
        vec![tx(client(msg::BAD_EXPTIME))]
    );
    assert_eq!(
        text_decode(b"flush_all 2147483648\r\n").reqs,
        vec![tx(client(msg::BAD_EXPTIME))]
    );
}

#[test]
fn text_cas_unique_must_parse() {
    let d = text_decode(b"cas k 0 0 13 abc\r\ndelete victim\r\nversion\r\n");
    assert_eq!(
        d.reqs,
        vec![tx(client(msg::BAD_FORMAT)), tx(Command::Version)]
    );
    let d = text_decode(b"cas k 0 0 1 18446744073709551615\r\nx\r\n");
    assert_eq!(
        d.reqs,
        vec![tx(store(StoreMode::Cas, "k", 0, 0, u64::MAX, "x"))]
    );
}

#[test]
fn text_bad_length_field_closes() {
    let reply = Some(Bytes::from_static(
        b"CLIENT_ERROR bad command line format\r\n",
    ));
    for line in [
        &b"set k 0 0 -1\r\n"[..],
        b"set k 0 0 abc\r\n",
        b"add k 0 0 1x\r\n",
        b"cas k 0 0 -5 1\r\n",
        b"append k 0 0 2147483648\r\n",
        // memcached refuses lengths above INT_MAX - 2.
        b"set k 0 0 2147483646\r\n",
        // A bad length wins over a bad key: the stream cannot be followed.
        b"set kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk 0 0 -1\r\n",
    ] {
        let d = text_decode(line);
        let shown = String::from_utf8_lossy(line);
        assert!(d.reqs.is_empty(), "{shown:?}");
        assert_eq!(d.err.expect("must close").reply, reply, "{shown:?}");
    }
    for line in [
        &b"set k 0 0 -1 noreply\r\n"[..],
        b"prepend k 0 0 z noreply\r\n",
    ] {
        let d = text_decode(line);
        assert!(d.reqs.is_empty());
        assert_eq!(d.err.expect("must close").reply, None);
    }
    // The largest length memcached takes is accepted (and refused as too
    // large, without buffering it).
    let d = text_decode(b"set k 0 0 2147483645\r\n");
    assert_eq!(
        d.reqs,
        vec![tx(invalid(Invalid::TooLarge {
            delete: Some(b("k"))
        }))]
    );
}

#[test]
fn text_line_length_edge() {
    let lim = limits();
    // A non-get line without a newline: 2048 bytes wait, 2049 close.
    let mut d = text::RequestDecoder::new(lim);
    let mut buf = BytesMut::from(&vec![b'x'; lim.max_line][..]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    buf.put_u8(b'x');
    assert!(d.decode(&mut buf).is_err());
    // Likewise when it arrives whole, so the outcome does not depend on how
    // the bytes were cut.
    let mut line = vec![b'x'; lim.max_line];
    line.extend_from_slice(b"\n");
    assert_eq!(text_decode(&line).reqs, vec![tx(unknown())]);
    let mut line = vec![b'x'; lim.max_line + 1];
    line.extend_from_slice(b"\n");
    assert!(text_decode(&line).err.is_some());
    let mut set = b"set ".to_vec();
    set.extend(key_of(3000));
    set.extend_from_slice(b" 0 0 1\r\nx\r\n");
    let d = text_decode(&set);
    assert!(d.reqs.is_empty() && d.err.is_some());
    // A get line may be longer.
    let keys: Vec<String> = (0..20).map(|i| format!("{i:0>200}")).collect();
    let line = format!("get {}\r\n", keys.join(" "));
    assert!(line.len() > 4000);
    let want: Vec<Bytes> = keys.iter().map(|k| b(k)).collect();
    let whole = text_decode(line.as_bytes());
    assert_eq!(whole.err, None);
    assert!(whole.reqs.len() > 1, "decoded in segments");
    assert_eq!(segment_keys(&whole.reqs, false), want);
    let (bytewise, err) = text_decode_bytewise(line.as_bytes(), lim);
    assert_eq!(err, None);
    assert_eq!(segment_keys(&bytewise, false), want);
    let gets = format!("   gets {}\r\n", keys.join(" "));
    let d = text_decode(gets.as_bytes());
    assert_eq!(d.err, None);
    assert_eq!(segment_keys(&d.reqs, true), want);
    // gat lines may not (memcached lets only get and gets grow).
    let gat_line = format!("gat 0 {}\r\n", keys.join(" "));
    assert!(text_decode(gat_line.as_bytes()).err.is_some());
    assert!(text_decode_bytewise(gat_line.as_bytes(), lim).1.is_some());
}

/// memcached's own t/getset.t sends one get naming 18,725 keys; memcached
/// takes a get line of any length. rend decodes it in segments of at most
/// max_line bytes, so what it holds stays bounded whatever the length.
#[test]
fn text_long_get_lines_are_decoded_in_segments_of_bounded_size() {
    let lim = limits();
    let keys: Vec<String> = (0..18_725).map(|i| format!("key{i}")).collect();
    let line = format!("get {}\r\n", keys.join(" "));
    assert!(line.len() > 150_000);
    let want: Vec<Bytes> = keys.iter().map(|k| b(k)).collect();
    for chunk in [1, 7, 1000, 4096, line.len()] {
        let mut d = text::RequestDecoder::new(lim);
        let mut buf = BytesMut::new();
        let mut reqs = Vec::new();
        let mut continuing = Vec::new();
        for piece in line.as_bytes().chunks(chunk) {
            buf.put_slice(piece);
            while let Some(r) = d.decode(&mut buf).unwrap() {
                reqs.push(r);
                continuing.push(d.continues());
            }
            assert!(
                buf.len() <= lim.max_line + chunk,
                "{} bytes held",
                buf.len()
            );
        }
        assert!(buf.is_empty());
        assert_eq!(segment_keys(&reqs, false), want, "fed {chunk} at a time");
        // Every segment but the last says more keys follow.
        assert_eq!(continuing.last(), Some(&false));
        assert!(continuing[..continuing.len() - 1].iter().all(|&c| c));
    }
    // What follows the line is a request of its own.
    let two = format!("{line}get after\r\n");
    let d = text_decode(two.as_bytes());
    let (last, segments) = d.reqs.split_last().unwrap();
    assert_eq!(segment_keys(segments, false), want);
    assert_eq!(last, &tx(get(&["after"])));
}

#[test]
fn text_long_get_line_with_a_bad_key_is_refused_and_swallowed() {
    let lim = limits();
    let mut line = b"get ".to_vec();
    for i in 0..500 {
        line.extend_from_slice(format!("k{i} ").as_bytes());
    }
    line.extend(key_of(251));
    line.extend_from_slice(b" more keys\r\nget after\r\n");
    let whole = text_decode_with(&line, lim);
    let (bytewise, err) = text_decode_bytewise(&line, lim);
    for reqs in [&whole.reqs, &bytewise] {
        let n = reqs.len();
        assert!(n >= 3, "{reqs:?}");
        // The keys before the bad one, then the error, then the next line.
        let keys = segment_keys(&reqs[..n - 2], false);
        assert_eq!(keys.len(), 500);
        assert_eq!(reqs[n - 2], tx(client(msg::BAD_FORMAT)));
        assert_eq!(reqs[n - 1], tx(get(&["after"])));
    }
    assert_eq!((whole.err, err), (None, None));
}

#[test]
fn text_get_line_of_spaces_is_taken_however_it_arrives() {
    // Spaces past max_line do not close the connection: memcached takes
    // the line, and so does rend, in one read or byte by byte.
    let lim = limits();
    let mut line = b"get ".to_vec();
    line.extend(std::iter::repeat_n(b' ', 3 * lim.max_line));
    line.extend_from_slice(b"k\r\n");
    let whole = text_decode_with(&line, lim);
    assert_eq!(whole.err, None);
    assert_eq!(segment_keys(&whole.reqs, false), vec![b("k")]);
    let (bytewise, err) = text_decode_bytewise(&line, lim);
    assert_eq!(err, None);
    assert_eq!(segment_keys(&bytewise, false), vec![b("k")]);
    // Only spaces: memcached's ERROR.
    let mut only = b"get ".to_vec();
    only.extend(std::iter::repeat_n(b' ', 3 * lim.max_line));
    only.extend_from_slice(b"\r\n");
    assert_eq!(text_decode_with(&only, lim).reqs, vec![tx(unknown())]);
}

#[test]
fn text_bad_data_chunk() {
    // memcached reads <bytes>+2 bytes, finds no \r\n at their end, answers
    // bad data chunk, and reads what follows as a command line.
    let d = text_decode(b"set k 0 0 3\r\nabcde\r\n");
    assert_eq!(d.err, None);
    assert_eq!(
        d.reqs,
        vec![tx(invalid(Invalid::BadDataChunk)), tx(unknown())]
    );
    let d = text_decode(b"set k 0 0 3 noreply\r\nabcde\r\n");
    assert_eq!(
        d.reqs,
        vec![tx_noreply(invalid(Invalid::BadDataChunk)), tx(unknown())]
    );
    let d = text_decode(b"set k 0 0 1\r\nxy\nversion\r\n");
    assert_eq!(
        d.reqs,
        vec![tx(invalid(Invalid::BadDataChunk)), tx(Command::Version)]
    );
    let d = text_decode(b"append k 0 0 2\r\nab\n\n");
    assert_eq!(d.reqs[0], tx(invalid(Invalid::BadDataChunk)));
    // A data block still arriving is waited for.
    let mut dec = text::RequestDecoder::new(limits());
    let mut buf = BytesMut::from(&b"set k 0 0 3\r\nab"[..]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    buf.put_slice(b"c\r");
    assert_eq!(dec.decode(&mut buf), Ok(None));
    buf.put_slice(b"\n");
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(tx(store(StoreMode::Set, "k", 0, 0, 0, "abc"))))
    );
}

#[test]
fn decoder_sniffs_the_first_byte() {
    let lim = limits();
    let mut d = Decoder::sniff(b'g', lim);
    assert!(matches!(d, Decoder::Text(_)));
    let mut buf = BytesMut::from(&b"get k\r\n"[..]);
    assert_eq!(d.decode(&mut buf), Ok(Some(tx(get(&["k"])))));
    let mut d = Decoder::sniff(REQ_MAGIC, lim);
    assert!(matches!(d, Decoder::Binary(_)));
    let mut buf = BytesMut::from(&noop_packet()[..]);
    assert_eq!(d.decode(&mut buf), Ok(Some(noop_request())));
}

// ---------------------------------------------------------------------------
// Binary decoder
// ---------------------------------------------------------------------------

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn store_extras(flags: u32, exptime: u32) -> Vec<u8> {
    [be32(flags), be32(exptime)].concat()
}

fn arith_extras(delta: u64, initial: u64, expiry: u32) -> Vec<u8> {
    [
        &delta.to_be_bytes()[..],
        &initial.to_be_bytes()[..],
        &be32(expiry)[..],
    ]
    .concat()
}

#[test]
fn binary_every_opcode() {
    use StoreMode::*;
    let k = b"key".as_slice();
    let key = || Bytes::from_static(b"key");
    let bget = |touch| Command::Get {
        keys: vec![key()],
        touch,
    };
    let bstore = |mode, flags, exptime, cas, value: &str| Command::Store {
        mode,
        key: key(),
        flags,
        exptime,
        cas,
        value: b(value),
    };
    let arith = |incr, create| Command::Arith {
        key: key(),
        incr,
        delta: 3,
        create,
    };
    let se = store_extras(5, 100);
    let cases: Vec<(Vec<u8>, Command)> = vec![
        (req_packet(op::GET, OPAQUE, 0, &[], k, &[]), bget(None)),
        (req_packet(op::GETQ, OPAQUE, 0, &[], k, &[]), bget(None)),
        (req_packet(op::GETK, OPAQUE, 0, &[], k, &[]), bget(None)),
        (req_packet(op::GETKQ, OPAQUE, 0, &[], k, &[]), bget(None)),
        (
            req_packet(op::GAT, OPAQUE, 0, &be32(100), k, &[]),
            bget(Some(100)),
        ),
        (
            req_packet(op::GATQ, OPAQUE, 0, &be32(0), k, &[]),
            bget(Some(0)),
        ),
        (
            req_packet(op::GATK, OPAQUE, 0, &be32(u32::MAX), k, &[]),
            bget(Some(i64::from(u32::MAX))),
        ),
        (
            req_packet(op::GATKQ, OPAQUE, 0, &be32(7), k, &[]),
            bget(Some(7)),
        ),
        (
            req_packet(op::GETE, OPAQUE, 0, &[], k, &[]),
            Command::GetE { key: key() },
        ),
        (
            req_packet(op::GETEQ, OPAQUE, 0, &[], k, &[]),
            Command::GetE { key: key() },
        ),
        (
            req_packet(op::TOUCH, OPAQUE, 0, &be32(60), k, &[]),
            Command::Touch {
                key: key(),
                exptime: 60,
            },
        ),
        (
            req_packet(op::SET, OPAQUE, 9, &se, k, b"val"),
            bstore(Set, 5, 100, 9, "val"),
        ),
        (
            req_packet(op::SETQ, OPAQUE, 0, &se, k, b"val"),
            bstore(Set, 5, 100, 0, "val"),
        ),
        (
            req_packet(op::ADD, OPAQUE, 0, &se, k, b""),
            bstore(Add, 5, 100, 0, ""),
        ),
        (
            req_packet(op::ADDQ, OPAQUE, 0, &se, k, b"v"),
            bstore(Add, 5, 100, 0, "v"),
        ),
        (
            req_packet(op::REPLACE, OPAQUE, 1, &se, k, b"v"),
            bstore(Replace, 5, 100, 1, "v"),
        ),
        (
            req_packet(op::REPLACEQ, OPAQUE, 0, &se, k, b"v"),
            bstore(Replace, 5, 100, 0, "v"),
        ),
        (
            req_packet(op::APPEND, OPAQUE, 0, &[], k, b"tail"),
            bstore(Append, 0, 0, 0, "tail"),
        ),
        (
            req_packet(op::APPENDQ, OPAQUE, 4, &[], k, b"t"),
            bstore(Append, 0, 0, 4, "t"),
        ),
        (
            req_packet(op::PREPEND, OPAQUE, 0, &[], k, b"head"),
            bstore(Prepend, 0, 0, 0, "head"),
        ),
        (
            req_packet(op::PREPENDQ, OPAQUE, 0, &[], k, b"h"),
            bstore(Prepend, 0, 0, 0, "h"),
        ),
        (
            req_packet(op::DELETE, OPAQUE, 0, &[], k, &[]),
            Command::Delete { key: key(), cas: 0 },
        ),
        (
            req_packet(op::DELETEQ, OPAQUE, 77, &[], k, &[]),
            Command::Delete {
                key: key(),
                cas: 77,
            },
        ),
        (
            req_packet(op::INCREMENT, OPAQUE, 0, &arith_extras(3, 10, 0), k, &[]),
            arith(true, Some((10, 0))),
        ),
        (
            req_packet(
                op::INCREMENTQ,
                OPAQUE,
                0,
                &arith_extras(3, 0, u32::MAX),
                k,
                &[],
            ),
            arith(true, None),
        ),
        (
            req_packet(op::DECREMENT, OPAQUE, 0, &arith_extras(3, 1, 3600), k, &[]),
            arith(false, Some((1, 3600))),
        ),
        (
            req_packet(
                op::DECREMENTQ,
                OPAQUE,
                0,
                &arith_extras(3, 0, u32::MAX),
                k,
                &[],
            ),
            arith(false, None),
        ),
        (
            req_packet(op::QUIT, OPAQUE, 0, &[], &[], &[]),
            Command::Quit,
        ),
        (
            req_packet(op::QUITQ, OPAQUE, 0, &[], &[], &[]),
            Command::Quit,
        ),
        (
            req_packet(op::NOOP, OPAQUE, 0, &[], &[], &[]),
            Command::Noop,
        ),
        (
            req_packet(op::VERSION, OPAQUE, 0, &[], &[], &[]),
            Command::Version,
        ),
        (
            req_packet(op::FLUSH, OPAQUE, 0, &[], &[], &[]),
            Command::Flush { delay: 0 },
        ),
        (
            req_packet(op::FLUSH, OPAQUE, 0, &be32(30), &[], &[]),
            Command::Flush { delay: 30 },
        ),
        (
            req_packet(op::FLUSHQ, OPAQUE, 0, &[], &[], &[]),
            Command::Flush { delay: 0 },
        ),
        (
            req_packet(op::FLUSHQ, OPAQUE, 0, &be32(0), &[], &[]),
            Command::Flush { delay: 0 },
        ),
        (
            req_packet(op::STAT, OPAQUE, 0, &[], &[], &[]),
            Command::Stats { arg: None },
        ),
        (
            req_packet(op::STAT, OPAQUE, 0, &[], b"items", &[]),
            Command::Stats {
                arg: Some(b("items")),
            },
        ),
    ];
    for (packet, cmd) in cases {
        let opcode = packet[1];
        let want = Request {
            cmd,
            frame: bin_frame(opcode, OPAQUE),
        };
        // Followed by a NOOP, to show the request consumed exactly its bytes.
        let mut input = packet.clone();
        input.extend(noop_packet());
        let d = binary_decode(&input);
        assert_eq!(d.err, None, "opcode {opcode:#04x}");
        assert_eq!(
            d.reqs,
            vec![want.clone(), noop_request()],
            "opcode {opcode:#04x}"
        );
        assert!(d.rest.is_empty());
        // A byte at a time.
        let mut dec = binary::RequestDecoder::new(limits());
        let mut buf = BytesMut::new();
        for (i, &byte) in packet.iter().enumerate() {
            buf.put_u8(byte);
            let got = dec.decode(&mut buf).unwrap();
            if i + 1 < packet.len() {
                assert_eq!(got, None, "opcode {opcode:#04x} at {i}");
            } else {
                assert_eq!(got, Some(want.clone()), "opcode {opcode:#04x}");
            }
        }
    }
}

#[test]
fn binary_invalid_lengths_close_with_einval() {
    let k = b"key".as_slice();
    let cases: Vec<Vec<u8>> = vec![
        req_packet(op::GET, OPAQUE, 0, &be32(1), k, &[]),
        req_packet(op::GET, OPAQUE, 0, &[], &[], &[]),
        req_packet(op::GETK, OPAQUE, 0, &[], k, b"v"),
        req_packet(op::GETQ, OPAQUE, 0, &[], &[], b"v"),
        req_packet(op::GETE, OPAQUE, 0, &be32(1), k, &[]),
        req_packet(op::SET, OPAQUE, 0, &be32(1), k, b"v"),
        req_packet(op::SETQ, OPAQUE, 0, &store_extras(0, 0), &[], b"v"),
        req_packet(op::ADD, OPAQUE, 0, &[], k, b"v"),
        req_packet(op::DELETE, OPAQUE, 0, &be32(0), k, &[]),
        req_packet(op::DELETEQ, OPAQUE, 0, &[], k, b"v"),
        req_packet(op::DELETE, OPAQUE, 0, &[], &[], &[]),
        req_packet(op::INCREMENT, OPAQUE, 0, &[0; 8], k, &[]),
        req_packet(op::DECREMENTQ, OPAQUE, 0, &arith_extras(1, 0, 0), &[], &[]),
        req_packet(op::INCREMENT, OPAQUE, 0, &arith_extras(1, 0, 0), k, b"v"),
        req_packet(op::APPEND, OPAQUE, 0, &store_extras(0, 0), k, b"v"),
        req_packet(op::PREPENDQ, OPAQUE, 0, &[], &[], b"v"),
        req_packet(op::TOUCH, OPAQUE, 0, &[], k, &[]),
        req_packet(op::TOUCH, OPAQUE, 0, &be32(1), k, b"zz"),
        req_packet(op::TOUCH, OPAQUE, 0, &be32(1), &[], &[]),
        req_packet(op::GAT, OPAQUE, 0, &[], k, &[]),
        req_packet(op::GATKQ, OPAQUE, 0, &store_extras(0, 0), k, &[]),
        req_packet(op::FLUSH, OPAQUE, 0, &[0, 0], &[], &[]),
        req_packet(op::FLUSHQ, OPAQUE, 0, &[], k, &[]),
        req_packet(op::FLUSH, OPAQUE, 0, &be32(1), &[], b"v"),
        req_packet(op::NOOP, OPAQUE, 0, &[], &[], b"v"),
        req_packet(op::VERSION, OPAQUE, 0, &[], k, &[]),
        req_packet(op::QUIT, OPAQUE, 0, &be32(0), &[], &[]),
        req_packet(op::QUITQ, OPAQUE, 0, &[], &[], b"v"),
        req_packet(op::STAT, OPAQUE, 0, &be32(0), &[], &[]),
        req_packet(op::STAT, OPAQUE, 0, &[], k, b"v"),
        // Keys over 250 bytes, for known and unknown opcodes alike.
        req_packet(op::GET, OPAQUE, 0, &[], &key_of(MAX_KEY_LEN + 1), &[]),
        req_packet(
            op::SET,
            OPAQUE,
            0,
            &store_extras(0, 0),
            &key_of(MAX_KEY_LEN + 1),
            b"v",
        ),
        req_packet(0x30, OPAQUE, 0, &[], &key_of(MAX_KEY_LEN + 1), &[]),
    ];
    for packet in cases {
        let opcode = packet[1];
        let want_reply = rsp_packet(
            opcode,
            status::EINVAL,
            OPAQUE,
            0,
            &[],
            &[],
            b"Invalid arguments",
        );
        // The verdict comes from the header alone.
        let d = binary_decode(&packet[..HEADER_LEN]);
        assert!(d.reqs.is_empty(), "opcode {opcode:#04x}");
        let err = d
            .err
            .unwrap_or_else(|| panic!("opcode {opcode:#04x} accepted"));
        assert_eq!(
            err.reply.as_deref(),
            Some(&want_reply[..]),
            "opcode {opcode:#04x}"
        );
    }
    // The edge: a 250-byte key is fine.
    let d = binary_decode(&req_packet(
        op::GET,
        OPAQUE,
        0,
        &[],
        &key_of(MAX_KEY_LEN),
        &[],
    ));
    assert_eq!(d.err, None);
    assert_eq!(d.reqs.len(), 1);
}

#[test]
fn binary_key_and_extras_longer_than_body() {
    for (keylen, extlen, bodylen) in [(3u16, 8u8, 10u32), (5, 0, 4), (0, 4, 3), (300, 0, 10)] {
        let packet = raw_packet(
            REQ_MAGIC,
            op::SET,
            keylen,
            extlen,
            0,
            bodylen,
            OPAQUE,
            0,
            &[],
        );
        let d = binary_decode(&packet);
        assert!(d.reqs.is_empty());
        let want = rsp_packet(
            op::SET,
            status::UNKNOWN_COMMAND,
            OPAQUE,
            0,
            &[],
            &[],
            b"Unknown command",
        );
        assert_eq!(d.err.expect("must close").reply.as_deref(), Some(&want[..]));
    }
}

#[test]
fn binary_bad_magic_closes_without_reply() {
    for magic in [0x00, RES_MAGIC, 0x7f, b'g'] {
        let mut packet = noop_packet();
        packet[0] = magic;
        let d = binary_decode(&packet);
        assert!(d.reqs.is_empty());
        assert_eq!(d.err.expect("must close").reply, None, "magic {magic:#04x}");
    }
    // After a good packet too.
    let mut input = noop_packet();
    input.extend(raw_packet(0x00, op::NOOP, 0, 0, 0, 0, 0, 0, &[]));
    let d = binary_decode(&input);
    assert_eq!(d.reqs, vec![noop_request()]);
    assert_eq!(d.err.expect("must close").reply, None);
    // A short header waits.
    let d = binary_decode(&noop_packet()[..HEADER_LEN - 1]);
    assert_eq!((d.reqs.len(), d.err), (0, None));
}

#[test]
fn binary_unknown_opcode_is_answered_and_swallowed() {
    // DESIGN §2: memcached loses sync on such a packet; rend discards its body.
    let packet = req_packet(0x30, OPAQUE, 0, &be32(1), b"key", b"value");
    let want = Request {
        cmd: unknown(),
        frame: bin_frame(0x30, OPAQUE),
    };
    let mut input = packet.clone();
    input.extend(noop_packet());
    let d = binary_decode(&input);
    assert_eq!(d.err, None);
    assert_eq!(d.reqs, vec![want.clone(), noop_request()]);
    assert!(d.rest.is_empty());
    // Answered on its header alone; the body is discarded as it arrives.
    let mut dec = binary::RequestDecoder::new(limits());
    let mut buf = BytesMut::from(&packet[..HEADER_LEN]);
    assert_eq!(dec.decode(&mut buf), Ok(Some(want)));
    for &byte in &packet[HEADER_LEN..] {
        buf.put_u8(byte);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }
    buf.put_slice(&noop_packet());
    assert_eq!(dec.decode(&mut buf), Ok(Some(noop_request())));
    // Without a body, and for other unknown opcodes: VERBOSITY too, which
    // memcached 1.6.18 does not serve (it answers 0x81).
    for opcode in [
        op::VERBOSITY,
        0x1f,
        0x20,
        0x21,
        0x22,
        0x25,
        0x3f,
        0x42,
        0xff,
    ] {
        let mut input = req_packet(opcode, 1, 0, &[], &[], &[]);
        input.extend(req_packet(opcode, 2, 0, &[], b"k", &vec![0; 5000]));
        input.extend(noop_packet());
        let d = binary_decode(&input);
        assert_eq!(d.err, None, "opcode {opcode:#04x}");
        assert_eq!(
            d.reqs,
            vec![
                Request {
                    cmd: unknown(),
                    frame: bin_frame(opcode, 1)
                },
                Request {
                    cmd: unknown(),
                    frame: bin_frame(opcode, 2)
                },
                noop_request()
            ]
        );
    }
}

#[test]
fn binary_verbosity_is_unknown_and_its_body_swallowed() {
    // As memcached 1.6.18 sends it (extras: the level), and with a key.
    for (extras, key) in [
        (&be32(1)[..], &b""[..]),
        (&[][..], &b"k"[..]),
        (&be32(1), b"key"),
    ] {
        let mut input = req_packet(op::VERBOSITY, OPAQUE, 0, extras, key, b"v");
        input.extend(noop_packet());
        let want = vec![
            Request {
                cmd: unknown(),
                frame: bin_frame(op::VERBOSITY, OPAQUE),
            },
            noop_request(),
        ];
        let d = binary_decode(&input);
        assert_eq!((d.reqs, d.err), (want.clone(), None));
        assert!(d.rest.is_empty());
        // A byte at a time.
        let mut dec = binary::RequestDecoder::new(limits());
        let mut buf = BytesMut::new();
        let mut reqs = Vec::new();
        for &byte in &input {
            buf.put_u8(byte);
            let (mut r, err) = drain(&mut buf, |buf| dec.decode(buf));
            assert_eq!(err, None);
            reqs.append(&mut r);
        }
        assert_eq!(reqs, want);
    }
}

/// A store over the limit cut anywhere, in two or three pieces: "Too
/// large." once its key is in, the rest discarded, the next request read in
/// step; never more than header, extras and key held while waiting.
#[test]
fn binary_too_large_store_cut_anywhere() {
    let max = limits().max_value;
    let value = vec![b'v'; max + 1];
    let se = store_extras(0, 0);
    for (opcode, extras, delete) in [
        (op::SET, se.clone(), Some(b("key"))),
        (op::SETQ, se.clone(), Some(b("key"))),
        (op::ADD, se.clone(), None),
        (op::APPENDQ, vec![], None),
    ] {
        let packet = req_packet(opcode, OPAQUE, 0, &extras, b"key", &value);
        let mut input = packet.clone();
        input.extend(noop_packet());
        let want = vec![
            Request {
                cmd: invalid(Invalid::TooLarge { delete }),
                frame: bin_frame(opcode, OPAQUE),
            },
            noop_request(),
        ];
        let held = HEADER_LEN + extras.len() + 3;
        let feed = |at: &[usize]| {
            let mut dec = binary::RequestDecoder::new(limits());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut from = 0;
            for &to in at.iter().chain(std::iter::once(&input.len())) {
                buf.put_slice(&input[from..to]);
                from = to;
                while let Some(r) = dec.decode(&mut buf).expect("no framing error") {
                    got.push(r);
                }
                assert!(buf.len() <= held, "holds {} bytes at {at:?}", buf.len());
            }
            got
        };
        for cut in 1..packet.len() {
            assert_eq!(feed(&[cut]), want, "opcode {opcode:#04x}, cut at {cut}");
        }
        // Three pieces: a cut in the header, the extras or the key, and one
        // in the value.
        for first in (1..held).step_by(3) {
            for second in [held, held + 1, held + max / 2, packet.len() - 1] {
                assert_eq!(
                    feed(&[first, second]),
                    want,
                    "opcode {opcode:#04x}, cuts at {first} and {second}"
                );
            }
        }
    }
}

#[test]
fn binary_value_size_edge() {
    let max = limits().max_value;
    let se = store_extras(0, 0);
    // Exactly the limit: accepted.
    let value = vec![b'v'; max];
    let d = binary_decode(&req_packet(op::SET, OPAQUE, 0, &se, b"k", &value));
    assert_eq!(d.err, None);
    assert!(matches!(
        &d.reqs[..],
        [Request { cmd: Command::Store { value: v, .. }, .. }] if v.len() == max
    ));
    let d = binary_decode(&req_packet(op::APPEND, OPAQUE, 0, &[], b"k", &value));
    assert_eq!(d.reqs.len(), 1);
    assert!(matches!(d.reqs[0].cmd, Command::Store { .. }));
    // One more: refused on header, extras and key, before the value arrives.
    let value = vec![b'v'; max + 1];
    let cases = [
        (op::SET, se.clone(), Some(b("k"))),
        (op::SETQ, se.clone(), Some(b("k"))),
        (op::ADD, se.clone(), None),
        (op::ADDQ, se.clone(), None),
        (op::REPLACE, se.clone(), None),
        (op::REPLACEQ, se.clone(), None),
        (op::APPEND, vec![], None),
        (op::APPENDQ, vec![], None),
        (op::PREPEND, vec![], None),
        (op::PREPENDQ, vec![], None),
    ];
    for (opcode, extras, delete) in cases {
        let packet = req_packet(opcode, OPAQUE, 0, &extras, b"k", &value);
        let want = Request {
            cmd: invalid(Invalid::TooLarge { delete }),
            frame: bin_frame(opcode, OPAQUE),
        };
        let head = HEADER_LEN + extras.len() + 1;
        let mut dec = binary::RequestDecoder::new(limits());
        // Not yet: the key has not arrived.
        let mut buf = BytesMut::from(&packet[..head - 1]);
        assert_eq!(dec.decode(&mut buf), Ok(None), "opcode {opcode:#04x}");
        buf.put_slice(&packet[head - 1..head]);
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Some(want.clone())),
            "opcode {opcode:#04x}"
        );
        assert!(buf.is_empty());
        // The value is discarded as it arrives; the next request follows.
        for chunk in packet[head..].chunks(97) {
            buf.put_slice(chunk);
            assert_eq!(dec.decode(&mut buf), Ok(None));
            assert!(buf.is_empty());
        }
        buf.put_slice(&noop_packet());
        assert_eq!(dec.decode(&mut buf), Ok(Some(noop_request())));
        // Fed whole.
        let mut input = packet;
        input.extend(noop_packet());
        let d = binary_decode(&input);
        assert_eq!(d.reqs, vec![want, noop_request()]);
    }
    // A body length near 4 GiB: refused at once, nothing buffered.
    let packet = raw_packet(REQ_MAGIC, op::SET, 1, 8, 0, u32::MAX, OPAQUE, 0, &[0; 9]);
    let d = binary_decode(&packet);
    assert_eq!(
        d.reqs,
        vec![Request {
            cmd: invalid(Invalid::TooLarge {
                delete: Some(b("\0"))
            }),
            frame: bin_frame(op::SET, OPAQUE),
        }]
    );
    assert!(d.rest.is_empty());
}

// ---------------------------------------------------------------------------
// Replies: text
// ---------------------------------------------------------------------------

fn value(key: &str, flags: u32, cas: u64, data: &str) -> Value {
    Value {
        key: b(key),
        flags,
        cas,
        data: b(data),
    }
}

fn text_reply(req: &Request, resp: &Response) -> Vec<u8> {
    let mut out = BytesMut::new();
    text::encode_response(req, resp, &mut out);
    // The protocol-neutral entry point agrees.
    let mut again = BytesMut::new();
    super::encode_response(req, resp, &mut again);
    assert_eq!(out, again);
    out.to_vec()
}

#[test]
fn text_reply_bytes() {
    let get_req = tx(get(&["a", "b"]));
    let gets_req = tx_cas(get(&["a", "b"]));
    let other = tx(Command::Delete {
        key: b("a"),
        cas: 0,
    });
    let two = Response::Values(vec![value("a", 5, 99, "abc"), value("b", 0, 100, "")]);
    let cases: Vec<(&Request, Response, &[u8])> = vec![
        (&get_req, Response::Values(vec![]), b"END\r\n"),
        (
            &get_req,
            two.clone(),
            b"VALUE a 5 3\r\nabc\r\nVALUE b 0 0\r\n\r\nEND\r\n",
        ),
        (
            &gets_req,
            two,
            b"VALUE a 5 3 99\r\nabc\r\nVALUE b 0 0 100\r\n\r\nEND\r\n",
        ),
        (
            &get_req,
            Response::Values(vec![value("k", u32::MAX, 0, "a\r\nb")]),
            b"VALUE k 4294967295 4\r\na\r\nb\r\nEND\r\n",
        ),
        (
            &get_req,
            Response::ValueE {
                value: value("k", 1, 2, "xy"),
                expiry: 5,
            },
            b"VALUE k 1 2\r\nxy\r\nEND\r\n",
        ),
        (&other, Response::Stored { cas: 5 }, b"STORED\r\n"),
        (&other, Response::NotStored, b"NOT_STORED\r\n"),
        (&other, Response::Exists, b"EXISTS\r\n"),
        (&other, Response::NotFound, b"NOT_FOUND\r\n"),
        (&other, Response::Deleted, b"DELETED\r\n"),
        (
            &other,
            Response::Touched { flags: 1, cas: 2 },
            b"TOUCHED\r\n",
        ),
        (&other, Response::Numeric { value: 0, cas: 3 }, b"0\r\n"),
        (
            &other,
            Response::Numeric {
                value: u64::MAX,
                cas: 3,
            },
            b"18446744073709551615\r\n",
        ),
        (&other, Response::Ok, b"OK\r\n"),
        (
            &other,
            Response::Version(b("1.6.18-rend-0.1.0")),
            b"VERSION 1.6.18-rend-0.1.0\r\n",
        ),
        (
            &other,
            Response::Stats(vec![(b("pid"), b("1")), (b("uptime"), b("2 3"))]),
            b"STAT pid 1\r\nSTAT uptime 2 3\r\nEND\r\n",
        ),
        (&other, Response::Stats(vec![]), b"END\r\n"),
        (
            &other,
            Response::Error(ErrorReply::UnknownCommand),
            b"ERROR\r\n",
        ),
        (
            &other,
            Response::Error(ErrorReply::Client(b(msg::BAD_DELETE))),
            b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        ),
        (
            &other,
            Response::Error(ErrorReply::Client(b(msg::BAD_FORMAT))),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (
            &other,
            Response::Error(ErrorReply::TooLarge),
            b"SERVER_ERROR object too large for cache\r\n",
        ),
        (
            &other,
            Response::Error(ErrorReply::BadDataChunk),
            b"CLIENT_ERROR bad data chunk\r\n",
        ),
        (
            &other,
            Response::Error(ErrorReply::NonNumeric),
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        (
            &other,
            Response::Error(ErrorReply::OutOfMemory),
            b"SERVER_ERROR out of memory storing object\r\n",
        ),
        (
            &other,
            Response::Error(ErrorReply::Server(b("backend unavailable"))),
            b"SERVER_ERROR backend unavailable\r\n",
        ),
        (
            &other,
            Response::Error(ErrorReply::Status(0x86, b("Temporary failure"))),
            b"SERVER_ERROR Temporary failure\r\n",
        ),
        (&other, Response::Nothing, b""),
    ];
    for (req, resp, want) in cases {
        assert_eq!(
            text_reply(req, &resp),
            want,
            "{resp:?}: {:?}",
            String::from_utf8_lossy(want)
        );
        // noreply suppresses every reply, errors included.
        let quiet = Request {
            cmd: req.cmd.clone(),
            frame: text_frame(true, false),
        };
        assert_eq!(text_reply(&quiet, &resp), b"", "noreply {resp:?}");
    }
}

#[test]
fn invalid_maps_to_error_reply() {
    assert_eq!(
        ErrorReply::from_invalid(&Invalid::UnknownCommand),
        ErrorReply::UnknownCommand
    );
    assert_eq!(
        ErrorReply::from_invalid(&Invalid::Client(msg::BAD_DELTA)),
        ErrorReply::Client(b("invalid numeric delta argument"))
    );
    assert_eq!(
        ErrorReply::from_invalid(&Invalid::TooLarge {
            delete: Some(b("k"))
        }),
        ErrorReply::TooLarge
    );
    assert_eq!(
        ErrorReply::from_invalid(&Invalid::BadDataChunk),
        ErrorReply::BadDataChunk
    );
}

// ---------------------------------------------------------------------------
// Replies: binary
// ---------------------------------------------------------------------------

fn bin_req(opcode: u8, cmd: Command) -> Request {
    Request {
        cmd,
        frame: bin_frame(opcode, OPAQUE),
    }
}

fn bin_reply(req: &Request, resp: &Response) -> Vec<u8> {
    let mut out = BytesMut::new();
    binary::encode_response(req, resp, &mut out);
    let mut again = BytesMut::new();
    super::encode_response(req, resp, &mut again);
    assert_eq!(out, again);
    out.to_vec()
}

fn ok_rsp(opcode: u8, cas: u64, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    rsp_packet(opcode, status::OK, OPAQUE, cas, extras, key, value)
}

fn err_rsp(opcode: u8, code: u16, body: &[u8]) -> Vec<u8> {
    rsp_packet(opcode, code, OPAQUE, 0, &[], &[], body)
}

#[test]
fn binary_get_replies() {
    let hit = Response::Values(vec![value("key", 5, 7, "abc")]);
    let miss = Response::Values(vec![]);
    let flags = be32(5);
    for opcode in [
        op::GET,
        op::GETQ,
        op::GETK,
        op::GETKQ,
        op::GAT,
        op::GATQ,
        op::GATK,
        op::GATKQ,
    ] {
        let touch = [op::GAT, op::GATQ, op::GATK, op::GATKQ]
            .contains(&opcode)
            .then_some(0);
        let req = bin_req(
            opcode,
            Command::Get {
                keys: vec![b("key")],
                touch,
            },
        );
        let with_key = [op::GETK, op::GETKQ, op::GATK, op::GATKQ].contains(&opcode);
        let quiet = [op::GETQ, op::GETKQ, op::GATQ, op::GATKQ].contains(&opcode);
        let key: &[u8] = if with_key { b"key" } else { b"" };
        // Hits are sent even by the quiet forms.
        assert_eq!(
            bin_reply(&req, &hit),
            ok_rsp(opcode, 7, &flags, key, b"abc"),
            "hit {opcode:#04x}"
        );
        // Misses: "Not found" in the body, or (K forms) the key in the key
        // field, as memcached 1.6.18 sends them; the quiet forms send none.
        let want_miss = if quiet {
            vec![]
        } else if with_key {
            rsp_packet(opcode, status::KEY_ENOENT, OPAQUE, 0, &[], b"key", &[])
        } else {
            err_rsp(opcode, status::KEY_ENOENT, b"Not found")
        };
        assert_eq!(bin_reply(&req, &miss), want_miss, "miss {opcode:#04x}");
        assert_eq!(
            bin_reply(&req, &Response::NotFound),
            want_miss,
            "NotFound {opcode:#04x}"
        );
        // Errors are never quiet.
        assert_eq!(
            bin_reply(&req, &Response::Error(ErrorReply::Server(b("down")))),
            err_rsp(opcode, status::ETMPFAIL, b"down")
        );
    }
    // memcached's exact GETK miss: key length 5, body length 5, the key once.
    let req = bin_req(op::GETK, get(&["nokey"]));
    let mut want = raw_packet(
        RES_MAGIC,
        op::GETK,
        5,
        0,
        status::KEY_ENOENT,
        5,
        OPAQUE,
        0,
        b"nokey",
    );
    assert_eq!(bin_reply(&req, &miss), want);
    want[1] = op::GATK;
    let req = bin_req(op::GATK, gat(0, &["nokey"]));
    assert_eq!(bin_reply(&req, &miss), want);
}

#[test]
fn binary_gete_replies() {
    for opcode in [op::GETE, op::GETEQ] {
        let req = bin_req(opcode, Command::GetE { key: b("key") });
        let resp = Response::ValueE {
            value: value("key", 5, 7, "abc"),
            expiry: 1_700_000_000,
        };
        let extras = [be32(5), be32(1_700_000_000)].concat();
        assert_eq!(
            bin_reply(&req, &resp),
            ok_rsp(opcode, 7, &extras, b"", b"abc")
        );
        let want_miss = if opcode == op::GETEQ {
            vec![]
        } else {
            err_rsp(opcode, status::KEY_ENOENT, b"Not found")
        };
        assert_eq!(bin_reply(&req, &Response::NotFound), want_miss);
        assert_eq!(bin_reply(&req, &Response::Values(vec![])), want_miss);
    }
}

#[test]
fn binary_store_replies() {
    let cmd = || store(StoreMode::Set, "key", 0, 0, 0, "v");
    // Success: sent by the loud forms only.
    for (loud, quiet) in [
        (op::SET, op::SETQ),
        (op::ADD, op::ADDQ),
        (op::REPLACE, op::REPLACEQ),
        (op::APPEND, op::APPENDQ),
        (op::PREPEND, op::PREPENDQ),
    ] {
        assert_eq!(
            bin_reply(&bin_req(loud, cmd()), &Response::Stored { cas: 42 }),
            ok_rsp(loud, 42, &[], &[], &[])
        );
        assert_eq!(
            bin_reply(&bin_req(quiet, cmd()), &Response::Stored { cas: 42 }),
            b""
        );
    }
    // NotStored by opcode, as memcached maps it; never quiet.
    let not_stored = [
        (op::ADD, status::KEY_EEXISTS, &b"Data exists for key."[..]),
        (op::ADDQ, status::KEY_EEXISTS, b"Data exists for key."),
        (op::REPLACE, status::KEY_ENOENT, b"Not found"),
        (op::REPLACEQ, status::KEY_ENOENT, b"Not found"),
        (op::APPEND, status::NOT_STORED, b"Not stored."),
        (op::APPENDQ, status::NOT_STORED, b"Not stored."),
        (op::PREPEND, status::NOT_STORED, b"Not stored."),
        (op::PREPENDQ, status::NOT_STORED, b"Not stored."),
        (op::SET, status::NOT_STORED, b"Not stored."),
        (op::SETQ, status::NOT_STORED, b"Not stored."),
    ];
    for (opcode, code, body) in not_stored {
        assert_eq!(
            bin_reply(&bin_req(opcode, cmd()), &Response::NotStored),
            err_rsp(opcode, code, body),
            "opcode {opcode:#04x}"
        );
    }
    // cas mismatch and cas on a missing key.
    for opcode in [op::SET, op::SETQ, op::REPLACE] {
        assert_eq!(
            bin_reply(&bin_req(opcode, cmd()), &Response::Exists),
            err_rsp(opcode, status::KEY_EEXISTS, b"Data exists for key.")
        );
        assert_eq!(
            bin_reply(&bin_req(opcode, cmd()), &Response::NotFound),
            err_rsp(opcode, status::KEY_ENOENT, b"Not found")
        );
    }
    // Too large: sent by quiet forms too.
    for opcode in [op::SET, op::SETQ, op::APPENDQ] {
        assert_eq!(
            bin_reply(
                &bin_req(opcode, cmd()),
                &Response::Error(ErrorReply::TooLarge)
            ),
            err_rsp(opcode, status::E2BIG, b"Too large.")
        );
    }
}

#[test]
fn binary_other_replies() {
    let del = || Command::Delete {
        key: b("key"),
        cas: 0,
    };
    assert_eq!(
        bin_reply(&bin_req(op::DELETE, del()), &Response::Deleted),
        ok_rsp(op::DELETE, 0, &[], &[], &[])
    );
    assert_eq!(
        bin_reply(&bin_req(op::DELETEQ, del()), &Response::Deleted),
        b""
    );
    for opcode in [op::DELETE, op::DELETEQ] {
        assert_eq!(
            bin_reply(&bin_req(opcode, del()), &Response::NotFound),
            err_rsp(opcode, status::KEY_ENOENT, b"Not found")
        );
        assert_eq!(
            bin_reply(&bin_req(opcode, del()), &Response::Exists),
            err_rsp(opcode, status::KEY_EEXISTS, b"Data exists for key.")
        );
    }
    let touch = bin_req(
        op::TOUCH,
        Command::Touch {
            key: b("key"),
            exptime: 1,
        },
    );
    assert_eq!(
        bin_reply(&touch, &Response::Touched { flags: 3, cas: 11 }),
        ok_rsp(op::TOUCH, 11, &be32(3), &[], &[])
    );
    assert_eq!(
        bin_reply(&touch, &Response::NotFound),
        err_rsp(op::TOUCH, status::KEY_ENOENT, b"Not found")
    );
    let arith = || Command::Arith {
        key: b("key"),
        incr: true,
        delta: 1,
        create: None,
    };
    for (loud, quiet) in [
        (op::INCREMENT, op::INCREMENTQ),
        (op::DECREMENT, op::DECREMENTQ),
    ] {
        let resp = Response::Numeric { value: 5, cas: 10 };
        assert_eq!(
            bin_reply(&bin_req(loud, arith()), &resp),
            ok_rsp(loud, 10, &[], &[], &5u64.to_be_bytes())
        );
        assert_eq!(bin_reply(&bin_req(quiet, arith()), &resp), b"");
        for opcode in [loud, quiet] {
            assert_eq!(
                bin_reply(&bin_req(opcode, arith()), &Response::NotFound),
                err_rsp(opcode, status::KEY_ENOENT, b"Not found")
            );
            assert_eq!(
                bin_reply(
                    &bin_req(opcode, arith()),
                    &Response::Error(ErrorReply::NonNumeric)
                ),
                err_rsp(
                    opcode,
                    status::DELTA_BADVAL,
                    b"Non-numeric server-side value for incr or decr"
                )
            );
        }
    }
    for (opcode, cmd) in [
        (op::FLUSH, Command::Flush { delay: 0 }),
        (op::NOOP, Command::Noop),
        (op::QUIT, Command::Quit),
    ] {
        assert_eq!(
            bin_reply(&bin_req(opcode, cmd), &Response::Ok),
            ok_rsp(opcode, 0, &[], &[], &[])
        );
    }
    for (opcode, cmd) in [
        (op::FLUSHQ, Command::Flush { delay: 0 }),
        (op::QUITQ, Command::Quit),
    ] {
        assert_eq!(bin_reply(&bin_req(opcode, cmd), &Response::Ok), b"");
    }
    assert_eq!(
        bin_reply(&bin_req(op::QUITQ, Command::Quit), &Response::Nothing),
        b""
    );
    assert_eq!(
        bin_reply(
            &bin_req(op::VERSION, Command::Version),
            &Response::Version(b("1.6.18"))
        ),
        ok_rsp(op::VERSION, 0, &[], &[], b"1.6.18")
    );
    // A stat per packet, then the empty terminator.
    let stat = bin_req(op::STAT, Command::Stats { arg: None });
    let want = [
        ok_rsp(op::STAT, 0, &[], b"pid", b"1"),
        ok_rsp(op::STAT, 0, &[], b"uptime", b"22"),
        ok_rsp(op::STAT, 0, &[], &[], &[]),
    ]
    .concat();
    assert_eq!(
        bin_reply(
            &stat,
            &Response::Stats(vec![(b("pid"), b("1")), (b("uptime"), b("22"))])
        ),
        want
    );
    assert_eq!(
        bin_reply(&stat, &Response::Stats(vec![])),
        ok_rsp(op::STAT, 0, &[], &[], &[])
    );
}

#[test]
fn binary_error_replies() {
    let req = bin_req(0x30, unknown());
    let cases: Vec<(ErrorReply, u16, &[u8])> = vec![
        (
            ErrorReply::UnknownCommand,
            status::UNKNOWN_COMMAND,
            b"Unknown command",
        ),
        (
            ErrorReply::Client(b(msg::BAD_FORMAT)),
            status::EINVAL,
            b"Invalid arguments",
        ),
        (
            ErrorReply::BadDataChunk,
            status::EINVAL,
            b"Invalid arguments",
        ),
        (ErrorReply::TooLarge, status::E2BIG, b"Too large."),
        (
            ErrorReply::NonNumeric,
            status::DELTA_BADVAL,
            b"Non-numeric server-side value for incr or decr",
        ),
        (ErrorReply::OutOfMemory, status::ENOMEM, b"Out of memory"),
        (
            ErrorReply::Server(b("backend down")),
            status::ETMPFAIL,
            b"backend down",
        ),
        (
            ErrorReply::Server(b("")),
            status::ETMPFAIL,
            b"Temporary failure",
        ),
        (
            ErrorReply::Status(status::EINTERNAL, b("")),
            status::EINTERNAL,
            b"Internal error",
        ),
        (
            ErrorReply::Status(0x20, b("Auth failure.")),
            0x20,
            b"Auth failure.",
        ),
    ];
    for (e, code, body) in cases {
        assert_eq!(
            bin_reply(&req, &Response::Error(e.clone())),
            err_rsp(0x30, code, body),
            "{e:?}"
        );
    }
    assert_eq!(bin_reply(&req, &Response::Nothing), b"");
}

#[test]
fn replies_follow_the_request_encoding() {
    // A text request never gets binary bytes and vice versa.
    let text_req = tx(get(&["k"]));
    let mut out = BytesMut::new();
    binary::encode_response(&text_req, &Response::Ok, &mut out);
    assert!(out.is_empty());
    let bin = bin_req(op::NOOP, Command::Noop);
    let mut out = BytesMut::new();
    super::encode_response(&bin, &Response::Ok, &mut out);
    assert_eq!(out.to_vec(), ok_rsp(op::NOOP, 0, &[], &[], &[]));
}

// ---------------------------------------------------------------------------
// Reply decoders
// ---------------------------------------------------------------------------

#[test]
fn text_reply_decoder_refuses_absurd_lengths() {
    let req = tx(get(&["k"]));
    for reply in [
        &b"VALUE k 0 18446744073709551615\r\n"[..],
        b"VALUE k 0 18446744073709551614\r\nxx\r\nEND\r\n",
    ] {
        let mut buf = BytesMut::from(reply);
        // Must not panic; a length that cannot be met is an error or waits.
        let got = text::decode_response(&req, &mut buf);
        assert!(!matches!(got, Ok(Some(_))), "{got:?}");
    }
}

#[test]
fn text_reply_decoder_waits_for_the_whole_reply() {
    let req = tx_cas(get(&["a", "b"]));
    let reply = b"VALUE a 1 3 9\r\nabc\r\nVALUE b 2 0 10\r\n\r\nEND\r\n";
    for cut in 0..reply.len() {
        let mut buf = BytesMut::from(&reply[..cut]);
        assert_eq!(text::decode_response(&req, &mut buf), Ok(None), "cut {cut}");
    }
    let mut buf = BytesMut::from(&reply[..]);
    assert_eq!(
        text::decode_response(&req, &mut buf),
        Ok(Some(Response::Values(vec![
            value("a", 1, 9, "abc"),
            value("b", 2, 10, "")
        ])))
    );
    assert!(buf.is_empty());
}

#[test]
fn binary_packet_decoder_limits() {
    let packet = rsp_packet(op::GET, 0, 1, 2, &be32(0), &[], &[0; 100]);
    let mut buf = BytesMut::from(&packet[..]);
    assert!(binary::decode_packet(&mut buf, 99).is_err());
    let mut buf = BytesMut::from(&packet[..]);
    let p = binary::decode_packet(&mut buf, 104).unwrap().unwrap();
    assert_eq!(
        (p.magic, p.opcode, p.opaque, p.cas),
        (RES_MAGIC, op::GET, 1, 2)
    );
    assert!(buf.is_empty());
    // Key and extras must fit in the body; magic must be one of the two.
    let mut buf = BytesMut::from(&raw_packet(RES_MAGIC, 0, 5, 0, 0, 4, 0, 0, &[0; 4])[..]);
    assert!(binary::decode_packet(&mut buf, 1 << 20).is_err());
    let mut buf = BytesMut::from(&raw_packet(0x82, 0, 0, 0, 0, 0, 0, 0, &[])[..]);
    assert!(binary::decode_packet(&mut buf, 1 << 20).is_err());
}

#[test]
fn command_keys_names_what_a_request_touches() {
    let k = |s: &'static str| Bytes::from_static(s.as_bytes());
    let get = Command::Get {
        keys: vec![k("a"), k("b")],
        touch: None,
    };
    assert_eq!(get.keys(), &[k("a"), k("b")]);
    let del = Command::Delete {
        key: k("d"),
        cas: 0,
    };
    assert_eq!(del.keys(), &[k("d")]);
    let too_large = Command::Invalid(Invalid::TooLarge {
        delete: Some(k("big")),
    });
    assert_eq!(too_large.keys(), &[k("big")]);
    assert!(Command::Invalid(Invalid::TooLarge { delete: None })
        .keys()
        .is_empty());
    assert!(Command::Flush { delay: 0 }.keys().is_empty());
    assert!(Command::Noop.keys().is_empty());
}

#[test]
fn text_meta_commands_decode_whole_and_bytewise_alike() {
    // An ms with its block, a refused ms (a bad mode) whose block is
    // swallowed, an ms whose block does not end in \r\n, then an mn and a
    // get that must still be read as commands.
    let input = b"ms k 2 T0 F3\r\nhi\r\nms k 2 MX\r\nzz\r\nms k 2\r\nabcd\r\nmn\r\nget k\r\n";
    let whole = text_decode(input);
    let (bytewise, err) = text_decode_bytewise(input, limits());
    assert_eq!(err, None);
    assert_eq!(whole.err, None);
    assert_eq!(bytewise, whole.reqs);
    let cmds: Vec<&Command> = whole.reqs.iter().map(|r| &r.cmd).collect();
    let [Command::Meta(set), Command::Invalid(mode), Command::Invalid(Invalid::BadDataChunk), rest @ ..] =
        &cmds[..]
    else {
        panic!("{cmds:?}");
    };
    assert_eq!(set.value.as_deref(), Some(&b"hi"[..]));
    assert_eq!(set.client_flags(), Some(3));
    assert_eq!(
        *mode,
        Invalid::Client("invalid mode for ms M token"),
        "{mode:?}"
    );
    // The bad chunk's block is its 2 bytes and 2 more ("abcd"); the "\r\n"
    // after it is read as an empty command line (memcached's own reading).
    assert!(
        matches!(
            rest,
            [
                Command::Invalid(Invalid::UnknownCommand),
                Command::Meta(_),
                Command::Get { .. }
            ]
        ),
        "{rest:?}"
    );
}
