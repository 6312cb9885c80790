//! The binary protocol through rend (l1-only) over real sockets, against a
//! real memcached: every opcode, quiet and K variants, limits and malformed
//! packets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{bin_req, proxy, set_extras, Packet};

const GET: u8 = 0x00;
const SET: u8 = 0x01;
const ADD: u8 = 0x02;
const REPLACE: u8 = 0x03;
const DELETE: u8 = 0x04;
const INCR: u8 = 0x05;
const DECR: u8 = 0x06;
const QUIT: u8 = 0x07;
const FLUSH: u8 = 0x08;
const GETQ: u8 = 0x09;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const GETK: u8 = 0x0c;
const GETKQ: u8 = 0x0d;
const APPEND: u8 = 0x0e;
const PREPEND: u8 = 0x0f;
const STAT: u8 = 0x10;
const SETQ: u8 = 0x11;
const ADDQ: u8 = 0x12;
const REPLACEQ: u8 = 0x13;
const DELETEQ: u8 = 0x14;
const INCRQ: u8 = 0x15;
const DECRQ: u8 = 0x16;
const QUITQ: u8 = 0x17;
const FLUSHQ: u8 = 0x18;
const APPENDQ: u8 = 0x19;
const PREPENDQ: u8 = 0x1a;
const VERBOSITY: u8 = 0x1b;
const TOUCH: u8 = 0x1c;
const GAT: u8 = 0x1d;
const GATQ: u8 = 0x1e;
const GATK: u8 = 0x23;
const GATKQ: u8 = 0x24;
const GETE: u8 = 0x40;

fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    let mut e = delta.to_be_bytes().to_vec();
    e.extend_from_slice(&initial.to_be_bytes());
    e.extend_from_slice(&exptime.to_be_bytes());
    e
}

fn ok(p: &Packet, opcode: u8, opaque: u32) {
    assert_eq!(
        (p.magic, p.opcode, p.status, p.opaque),
        (0x81, opcode, 0, opaque),
        "{p:?}"
    );
}

fn err(p: &Packet, opcode: u8, opaque: u32, status: u16, body: &[u8]) {
    assert_eq!(
        (p.magic, p.opcode, p.status, p.opaque),
        (0x81, opcode, status, opaque),
        "{p:?}"
    );
    assert_eq!(p.value, body, "{:?}", String::from_utf8_lossy(&p.value));
}

#[test]
fn every_binary_opcode() {
    let (_mc, rend) = proxy(&[]);
    let mut c = rend.connect();

    c.send(&bin_req(SET, 1, 0, &set_extras(9, 0), b"k", b"abc"));
    let p = c.packet();
    ok(&p, SET, 1);
    let cas = p.cas;
    assert_ne!(cas, 0);

    c.send(&bin_req(GET, 2, 0, &[], b"k", &[]));
    let p = c.packet();
    ok(&p, GET, 2);
    assert_eq!(
        (
            p.extras.as_slice(),
            p.key.as_slice(),
            p.value.as_slice(),
            p.cas
        ),
        (&9u32.to_be_bytes()[..], &b""[..], &b"abc"[..], cas)
    );

    c.send(&bin_req(GETK, 3, 0, &[], b"k", &[]));
    let p = c.packet();
    ok(&p, GETK, 3);
    assert_eq!(p.key, b"k");

    c.send(&bin_req(GET, 4, 0, &[], b"nope", &[]));
    err(&c.packet(), GET, 4, 0x01, b"Not found");
    c.send(&bin_req(GETK, 5, 0, &[], b"nope", &[]));
    let p = c.packet();
    // memcached sends the key once: keylen and bodylen are both its length.
    assert_eq!(
        (p.status, p.key.as_slice(), p.value.as_slice()),
        (0x01, &b"nope"[..], &b""[..])
    );

    // Quiet gets: hits only, then the noop.
    c.send(
        &[
            bin_req(GETQ, 6, 0, &[], b"nope", &[]),
            bin_req(GETKQ, 7, 0, &[], b"k", &[]),
            bin_req(GETQ, 8, 0, &[], b"k", &[]),
            bin_req(NOOP, 9, 0, &[], &[], &[]),
        ]
        .concat(),
    );
    let p = c.packet();
    ok(&p, GETKQ, 7);
    assert_eq!(p.key, b"k");
    ok(&c.packet(), GETQ, 8);
    ok(&c.packet(), NOOP, 9);

    // add / replace / cas.
    c.send(&bin_req(ADD, 10, 0, &set_extras(0, 0), b"k", b"x"));
    err(&c.packet(), ADD, 10, 0x02, b"Data exists for key.");
    c.send(&bin_req(REPLACE, 11, 0, &set_extras(0, 0), b"nope", b"x"));
    err(&c.packet(), REPLACE, 11, 0x01, b"Not found");
    c.send(&bin_req(SET, 12, cas + 999, &set_extras(0, 0), b"k", b"x"));
    err(&c.packet(), SET, 12, 0x02, b"Data exists for key.");
    c.send(&bin_req(SET, 13, cas, &set_extras(1, 0), b"k", b"new"));
    ok(&c.packet(), SET, 13);
    c.send(&bin_req(SET, 14, 77, &set_extras(0, 0), b"nope", b"x"));
    err(&c.packet(), SET, 14, 0x01, b"Not found");

    // append / prepend.
    c.send(&bin_req(APPEND, 15, 0, &[], b"k", b"!"));
    ok(&c.packet(), APPEND, 15);
    c.send(&bin_req(PREPEND, 16, 0, &[], b"k", b"<"));
    ok(&c.packet(), PREPEND, 16);
    c.send(&bin_req(APPEND, 17, 0, &[], b"nope", b"!"));
    err(&c.packet(), APPEND, 17, 0x05, b"Not stored.");
    c.send(&bin_req(GET, 18, 0, &[], b"k", &[]));
    assert_eq!(c.packet().value, b"<new!");

    // incr / decr with and without creation.
    c.send(&bin_req(INCR, 19, 0, &arith_extras(5, 100, 0), b"n", &[]));
    let p = c.packet();
    ok(&p, INCR, 19);
    assert_eq!(p.value, 100u64.to_be_bytes());
    c.send(&bin_req(INCR, 20, 0, &arith_extras(5, 100, 0), b"n", &[]));
    assert_eq!(c.packet().value, 105u64.to_be_bytes());
    c.send(&bin_req(DECR, 21, 0, &arith_extras(1000, 0, 0), b"n", &[]));
    assert_eq!(c.packet().value, 0u64.to_be_bytes());
    c.send(&bin_req(
        INCR,
        22,
        0,
        &arith_extras(1, 0, 0xffff_ffff),
        b"missing",
        &[],
    ));
    err(&c.packet(), INCR, 22, 0x01, b"Not found");
    c.send(&bin_req(INCR, 23, 0, &arith_extras(1, 0, 0), b"k", &[]));
    err(
        &c.packet(),
        INCR,
        23,
        0x06,
        b"Non-numeric server-side value for incr or decr",
    );

    // touch / gat family.
    c.send(&bin_req(TOUCH, 24, 0, &3600u32.to_be_bytes(), b"k", &[]));
    let p = c.packet();
    ok(&p, TOUCH, 24);
    assert_eq!(p.extras, 1u32.to_be_bytes());
    c.send(&bin_req(TOUCH, 25, 0, &3600u32.to_be_bytes(), b"nope", &[]));
    err(&c.packet(), TOUCH, 25, 0x01, b"Not found");
    c.send(&bin_req(GAT, 26, 0, &3600u32.to_be_bytes(), b"k", &[]));
    let p = c.packet();
    ok(&p, GAT, 26);
    assert_eq!(
        (p.key.as_slice(), p.value.as_slice()),
        (&b""[..], &b"<new!"[..])
    );
    c.send(&bin_req(GATK, 27, 0, &3600u32.to_be_bytes(), b"k", &[]));
    assert_eq!(c.packet().key, b"k");
    c.send(
        &[
            bin_req(GATQ, 28, 0, &3600u32.to_be_bytes(), b"nope", &[]),
            bin_req(GATKQ, 29, 0, &3600u32.to_be_bytes(), b"k", &[]),
            bin_req(NOOP, 30, 0, &[], &[], &[]),
        ]
        .concat(),
    );
    ok(&c.packet(), GATKQ, 29);
    ok(&c.packet(), NOOP, 30);

    // delete with a wrong cas, then for real, then missing.
    c.send(&bin_req(DELETE, 31, 12345, &[], b"k", &[]));
    err(&c.packet(), DELETE, 31, 0x02, b"Data exists for key.");
    c.send(&bin_req(DELETE, 32, 0, &[], b"k", &[]));
    ok(&c.packet(), DELETE, 32);
    c.send(&bin_req(DELETE, 33, 0, &[], b"k", &[]));
    err(&c.packet(), DELETE, 33, 0x01, b"Not found");

    // Quiet mutations: silent on success, loud on failure.
    c.send(
        &[
            bin_req(SETQ, 34, 0, &set_extras(0, 0), b"q", b"1"),
            bin_req(ADDQ, 35, 0, &set_extras(0, 0), b"q", b"1"),
            bin_req(REPLACEQ, 36, 0, &set_extras(0, 0), b"q", b"2"),
            bin_req(APPENDQ, 37, 0, &[], b"q", b"3"),
            bin_req(PREPENDQ, 38, 0, &[], b"q", b"1"),
            bin_req(INCRQ, 39, 0, &arith_extras(1, 0, 0xffff_ffff), b"q", &[]),
            bin_req(DECRQ, 40, 0, &arith_extras(1, 0, 0xffff_ffff), b"q", &[]),
            bin_req(DELETEQ, 41, 0, &[], b"nope", &[]),
            bin_req(GETK, 42, 0, &[], b"q", &[]),
        ]
        .concat(),
    );
    err(&c.packet(), ADDQ, 35, 0x02, b"Data exists for key.");
    err(&c.packet(), DELETEQ, 41, 0x01, b"Not found");
    let p = c.packet();
    ok(&p, GETK, 42);
    assert_eq!(p.value, b"123");

    c.send(&bin_req(VERSION, 43, 0, &[], &[], &[]));
    let p = c.packet();
    ok(&p, VERSION, 43);
    assert!(p.value.starts_with(b"1.6.18-rend-"));
    // memcached 1.6.18 does not serve VERBOSITY: unknown, and the
    // connection goes on.
    c.send(&bin_req(VERBOSITY, 44, 0, &1u32.to_be_bytes(), &[], &[]));
    err(&c.packet(), VERBOSITY, 44, 0x81, b"Unknown command");
    c.send(&bin_req(STAT, 45, 0, &[], &[], &[]));
    let mut names = Vec::new();
    loop {
        let p = c.packet();
        ok(&p, STAT, 45);
        if p.key.is_empty() {
            break;
        }
        names.push(String::from_utf8(p.key).unwrap());
    }
    assert!(names.contains(&"curr_connections".to_string()), "{names:?}");
    // GETE needs an expiry memcached cannot give: unknown in l1-only.
    c.send(&bin_req(GETE, 46, 0, &[], b"q", &[]));
    err(&c.packet(), GETE, 46, 0x81, b"Unknown command");

    c.send(&bin_req(FLUSHQ, 47, 0, &[], &[], &[]));
    c.send(&bin_req(GET, 48, 0, &[], b"q", &[]));
    err(&c.packet(), GET, 48, 0x01, b"Not found");
    c.send(&bin_req(SET, 49, 0, &set_extras(0, 0), b"f", b"1"));
    ok(&c.packet(), SET, 49);
    c.send(&bin_req(FLUSH, 50, 0, &0u32.to_be_bytes(), &[], &[]));
    ok(&c.packet(), FLUSH, 50);
    c.send(&bin_req(GET, 51, 0, &[], b"f", &[]));
    err(&c.packet(), GET, 51, 0x01, b"Not found");

    c.send(&bin_req(QUIT, 52, 0, &[], &[], &[]));
    ok(&c.packet(), QUIT, 52);
    assert!(c.closed_within(Duration::from_secs(2)));

    let mut c = rend.connect();
    c.send(&bin_req(QUITQ, 53, 0, &[], &[], &[]));
    assert!(c.closed_within(Duration::from_secs(2)));
    assert!(c.buf.is_empty());
}

#[test]
fn unknown_opcode_is_answered_and_skipped() {
    let (_mc, rend) = proxy(&[]);
    let mut c = rend.connect();
    // An unknown opcode carrying extras, a key and a value: the whole body
    // is skipped and the next packet is read in step.
    c.send(
        &[
            bin_req(0x30, 1, 0, &[1, 2, 3, 4], b"key", b"value"),
            bin_req(NOOP, 2, 0, &[], &[], &[]),
        ]
        .concat(),
    );
    err(&c.packet(), 0x30, 1, 0x81, b"Unknown command");
    ok(&c.packet(), NOOP, 2);
}

/// VERBOSITY (0x1b): memcached 1.6.18 answers 0x81 "Unknown command" and
/// skips the packet's body, plus as many bytes again as its extras and key
/// (so it stays in step only without them: verified against 1.6.18). rend
/// answers the same and skips exactly the body, whatever it holds.
#[test]
fn verbosity_is_unknown_and_its_body_skipped() {
    let (_mc, rend) = proxy(&[]);
    let mut c = rend.connect();
    let level = 1u32.to_be_bytes();
    let forms: [(&[u8], &[u8], &[u8]); 6] = [
        (&level, b"", b""),
        (b"", b"", b""),
        (b"", b"", b"value"),
        (b"", b"key", b""),
        (&level, b"k", b"vv"),
        (&[0; 8], b"", b""),
    ];
    for (i, (extras, key, value)) in forms.into_iter().enumerate() {
        let opaque = 10 * i as u32;
        c.send(
            &[
                bin_req(VERBOSITY, opaque, 0, extras, key, value),
                bin_req(NOOP, opaque + 1, 0, &[], &[], &[]),
            ]
            .concat(),
        );
        err(&c.packet(), VERBOSITY, opaque, 0x81, b"Unknown command");
        ok(&c.packet(), NOOP, opaque + 1);
    }
    // Still the same connection: it works.
    c.send(&bin_req(SET, 99, 0, &set_extras(0, 0), b"k", b"v"));
    ok(&c.packet(), SET, 99);
}

#[test]
fn malformed_packets_close() {
    let (_mc, rend) = proxy(&[]);
    // Wrong extras length for get: EINVAL, then close.
    let mut c = rend.connect();
    c.send(&bin_req(GET, 7, 0, &[0, 0, 0, 0], b"k", &[]));
    err(&c.packet(), GET, 7, 0x04, b"Invalid arguments");
    assert!(c.closed_within(Duration::from_secs(2)));
    // A 251-byte key: EINVAL, then close.
    let mut c = rend.connect();
    c.send(&bin_req(GET, 8, 0, &[], &[b'k'; 251], &[]));
    err(&c.packet(), GET, 8, 0x04, b"Invalid arguments");
    assert!(c.closed_within(Duration::from_secs(2)));
    // Key and extras longer than the body: checked before any subtraction.
    let mut c = rend.connect();
    let mut p = bin_req(SET, 9, 0, &set_extras(0, 0), b"key", b"");
    p[8..12].copy_from_slice(&4u32.to_be_bytes());
    c.send(&p);
    err(&c.packet(), SET, 9, 0x81, b"Unknown command");
    assert!(c.closed_within(Duration::from_secs(2)));
    // A later packet with a bad magic byte closes without a reply.
    let mut c = rend.connect();
    let mut bad = bin_req(NOOP, 10, 0, &[], &[], &[]);
    c.send(&bad);
    ok(&c.packet(), NOOP, 10);
    bad[0] = 0x42;
    c.send(&bad);
    assert!(c.closed_within(Duration::from_secs(2)));
    assert!(c.buf.is_empty());
}

#[test]
fn binary_limits() {
    let max = 4096;
    let (_mc, rend) = proxy(&["--max-item-size", &max.to_string()]);
    let mut c = rend.connect();
    let k250 = vec![b'k'; 250];
    c.send(&bin_req(
        SET,
        1,
        0,
        &set_extras(0, 0),
        &k250,
        &vec![b'v'; max],
    ));
    ok(&c.packet(), SET, 1);
    c.send(&bin_req(GETK, 2, 0, &[], &k250, &[]));
    let p = c.packet();
    assert_eq!((p.key.len(), p.value.len()), (250, max));
    // One byte over: "Too large.", the old value is gone (as memcached does
    // for set), the body is skipped and the connection goes on.
    c.send(&bin_req(
        SET,
        3,
        0,
        &set_extras(0, 0),
        &k250,
        &vec![b'v'; max + 1],
    ));
    err(&c.packet(), SET, 3, 0x03, b"Too large.");
    c.send(&bin_req(GET, 4, 0, &[], &k250, &[]));
    err(&c.packet(), GET, 4, 0x01, b"Not found");
    // A body claiming 4 GiB is answered at once, without waiting for it.
    let mut huge = bin_req(SET, 5, 0, &set_extras(0, 0), b"h", b"");
    huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    c.send(&huge);
    err(&c.packet(), SET, 5, 0x03, b"Too large.");
}

/// A SET over the item limit that arrives in several writes, cut inside the
/// header, the extras, the key or the value: "Too large." (memcached 1.6.18
/// answers 0x03 and stays in step at every cut), the old value is gone, the
/// body is discarded as it arrives and the connection goes on.
#[test]
fn too_large_set_in_pieces_is_refused_and_swallowed() {
    let max = 4096;
    let (_mc, rend) = proxy(&["--max-item-size", &max.to_string()]);
    let mut c = rend.connect();
    let key = b"big-key";
    let value = vec![b'v'; max + 1];
    let extras = set_extras(0, 0);
    let packet = bin_req(SET, 0, 0, &extras, key, &value);
    let (ext_at, key_at, value_at) = (24, 24 + extras.len(), 24 + extras.len() + key.len());
    // Where the first write ends; `None`: also cut the value once more.
    let cuts: Vec<(&str, usize)> = vec![
        ("header", 1),
        ("header", 11),
        ("header", 23),
        ("extras", ext_at),
        ("extras", ext_at + 3),
        ("extras", key_at - 1),
        ("key", key_at),
        ("key", key_at + 3),
        ("key", value_at - 1),
        ("value", value_at),
        ("value", value_at + 1),
        ("value", value_at + max / 2),
        ("value", packet.len() - 1),
    ];
    for (i, (part, cut)) in cuts.into_iter().enumerate() {
        let opaque = 100 + i as u32;
        let what = format!("cut in the {part} at byte {cut}");
        c.send(&bin_req(SET, opaque, 0, &extras, key, b"old"));
        ok(&c.packet(), SET, opaque);
        let mut p = packet.clone();
        p[12..16].copy_from_slice(&opaque.to_be_bytes());
        // Three writes: up to the cut, half of the rest, then the rest with
        // a GET and a NOOP behind it.
        let mid = cut + (p.len() - cut) / 2;
        c.send(&p[..cut]);
        std::thread::sleep(Duration::from_millis(30));
        c.send(&p[cut..mid]);
        std::thread::sleep(Duration::from_millis(30));
        let mut rest = p[mid..].to_vec();
        rest.extend(bin_req(GET, opaque + 1000, 0, &[], key, &[]));
        rest.extend(bin_req(NOOP, opaque + 2000, 0, &[], &[], &[]));
        c.send(&rest);
        let reply = c.packet();
        assert_eq!(
            (
                reply.opcode,
                reply.status,
                reply.opaque,
                reply.value.as_slice()
            ),
            (SET, 0x03, opaque, &b"Too large."[..]),
            "{what}: {reply:?}"
        );
        err(&c.packet(), GET, opaque + 1000, 0x01, b"Not found");
        ok(&c.packet(), NOOP, opaque + 2000);
    }
    // Trickled a few bytes at a time, the whole packet.
    c.send(&bin_req(SET, 1, 0, &extras, key, b"old"));
    ok(&c.packet(), SET, 1);
    let mut p = packet.clone();
    p[12..16].copy_from_slice(&2u32.to_be_bytes());
    for piece in p[..value_at + 64].chunks(5) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(2));
    }
    c.send(&p[value_at + 64..]);
    err(&c.packet(), SET, 2, 0x03, b"Too large.");
    c.send(&bin_req(GET, 3, 0, &[], key, &[]));
    err(&c.packet(), GET, 3, 0x01, b"Not found");
    c.send(&bin_req(SET, 4, 0, &extras, key, b"new"));
    ok(&c.packet(), SET, 4);
}
