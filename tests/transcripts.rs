//! The golden transcripts in `fixtures/transcripts/`, recorded from
//! memcached 1.6.18 (`scripts/record_transcripts.py`), replayed byte for byte
//! against the memcached installed here (so a transcript that no longer
//! matches memcached is caught) and against rend in every mode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Conn, Memcached, Rend};

/// One request and the exact bytes of its replies (possibly none).
struct Step {
    line: String,
    request: Vec<u8>,
    reply: Vec<u8>,
    binary: bool,
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// `> line` (sent with CRLF), `>x hex`, `< line` (a CRLF-ended reply line),
/// `<x hex`; `#` starts a comment.
fn parse(path: &Path) -> Vec<Step> {
    let text = std::fs::read(path).expect("transcript");
    let text: String = text.iter().map(|&b| b as char).collect(); // latin-1
    let mut steps: Vec<Step> = Vec::new();
    for line in text.lines() {
        let (tag, rest) = line.split_at(line.find(' ').unwrap_or(line.len()));
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let bytes = |s: &str| s.chars().map(|c| c as u8).collect::<Vec<u8>>();
        match tag {
            ">" | ">x" => steps.push(Step {
                line: line.chars().take(60).collect(),
                request: if tag == ">x" {
                    hex(rest)
                } else {
                    [bytes(rest), b"\r\n".to_vec()].concat()
                },
                reply: Vec::new(),
                binary: tag == ">x",
            }),
            "<" | "<x" => {
                let step = steps.last_mut().expect("a reply follows a request");
                if tag == "<x" {
                    step.reply.extend(hex(rest));
                } else {
                    step.reply.extend(bytes(rest));
                    step.reply.extend(b"\r\n");
                }
            }
            t if t.starts_with('#') || t.is_empty() => {}
            t => panic!("{}: unknown line tag {t:?}", path.display()),
        }
    }
    steps
}

/// Zero the cas field of every binary reply packet in `bytes`.
fn mask_cas(bytes: &mut [u8]) {
    let mut at = 0;
    while at + 24 <= bytes.len() {
        let body = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        bytes[at + 16..at + 24].fill(0);
        at += 24 + body;
    }
}

fn transcripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/transcripts");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures/transcripts")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3, "{paths:?}");
    paths
}

/// Replay every step on a fresh connection from `connect`; `mask`: compare
/// binary replies with their cas zeroed (rend's cas comes from L2 or the
/// chunk metadata in those modes, not from memcached's counter).
fn replay(what: &str, path: &Path, mut c: Conn, mask: bool) {
    let steps = parse(path);
    let name = path.file_name().unwrap().to_string_lossy();
    for s in &steps {
        c.send(&s.request);
        let mut got = c.read_exact_n(s.reply.len());
        let mut want = s.reply.clone();
        if mask && s.binary {
            mask_cas(&mut got);
            mask_cas(&mut want);
        }
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{what}, {name}: after {:?}",
            s.line
        );
    }
    // Nothing more than the transcript's replies came back.
    if steps.last().is_some_and(|s| s.binary) {
        let noop = hex("80 0a 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00");
        c.send(&noop);
        let mut want = noop.clone();
        want[0] = 0x81;
        assert_eq!(c.read_exact_n(24), want, "{what}, {name}: stray bytes");
    } else {
        assert_eq!(
            c.req(b"get transcript:end\r\n", b"END\r\n"),
            b"END\r\n",
            "{what}, {name}: stray bytes"
        );
    }
}

#[test]
fn the_transcripts_still_match_memcached() {
    for path in transcripts() {
        let mc = Memcached::start();
        replay("memcached", &path, mc.connect(), false);
    }
}

#[test]
fn rend_answers_every_transcript_as_memcached_did() {
    for (mode, extra) in [
        ("l1-only", &[][..]),
        ("l1-only --chunked", &["--chunked"][..]),
        ("l1-l2", &["--orca", "l1-l2"][..]),
        ("l1-l2 --chunked", &["--orca", "l1-l2", "--chunked"][..]),
    ] {
        for path in transcripts() {
            let mc = Memcached::start();
            let l2 = tempfile::tempdir().unwrap();
            let rend = if extra.contains(&"l1-l2") {
                let rest: Vec<&str> = extra.iter().skip(2).copied().collect();
                Rend::start_two_tier(&mc, l2.path(), &rest)
            } else {
                Rend::start(&mc, extra)
            };
            replay(mode, &path, rend.connect(), mode != "l1-only");
        }
    }
}
