//! Differential test (DESIGN §8): one seeded random stream of text and
//! binary commands goes, in lockstep, to memcached 1.6.18 directly (the
//! reference, "A") and to rend `--orca l1-only` in front of a second memcached
//! started with the same flags ("B"); also with rend `--chunked` and
//! `--chunked --chunk-size 8` (then a short prologue of values around
//! memcached's item limit runs first). Every reply must match the reference
//! byte for byte, except that cas values are compared by pattern (a bijection
//! between A's cas values and rend's), and except for the requests matched by
//! the allow-list below, which is the executable form of the README's list of
//! deliberate differences ("Where rend deliberately differs from memcached").
//!
//! Two-tier (`Mode`): the same stream against rend `--orca l1-l2` (L2 in a
//! temp dir, memcached B its L1), on its main port (plain and `--chunked`) and
//! on its batch port (l1-l2-batch). The test flushes memcached B directly
//! every `L1_FLUSH_EVERY` commands, so L2 really serves reads (DESIGN §8), and
//! asserts from rend's `stats` that it did (`l2_get_hits` > 0). The replies
//! must still match the reference's: the tiers are rend's business. rend's
//! cas values are then L2's (time-based, large), which the bijection
//! compares as well as memcached's: each cas rend shows must pair one to one
//! with the reference's, so a cas that changes (or not) where memcached's
//! does not (or does) fails, and a stale or current cas sent to rend is the
//! counterpart of the one sent to the reference, so cas acceptance and
//! rejection are compared too, also across L1 flushes and back-fills.
//! What changes with the mode is where rend, not memcached, decides what is
//! too large (`Run::value_limit`), and GETE, which l1-l2 serves from L2
//! (`Handling::ComparedAsGet`).
//!
//! Framing: each side has one text and one binary connection. Replies are
//! parsed to know where they end: text by the request (VALUE blocks up to
//! END, one line otherwise); a text request that should answer nothing
//! (noreply) or whose reply has no fixed shape (a bad data chunk) is followed
//! by a sync `get` of a key never stored, and everything up to its `END` is
//! the reply; binary packets up to the expected one, quiet requests followed
//! by a NOOP whose reply ends them.
//!
//! memcached itself is not deterministic everywhere; the stream steers clear
//! of the two places where it is not (see `Run::arith_key`). Known
//! divergences that were fixed are replayed by `former_divergences_stay_fixed`;
//! the one known divergence is kept out of the stream (documented there).
//!
//! `DIFF_SEED=<n>` and `DIFF_STEPS=<n>` run another stream; `DIFF_TRACE=1`
//! prints every request and both replies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{bin_req, set_extras, Conn, Memcached, Rend};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[path = "differential/allow.rs"]
mod allow;
use allow::*;

// ============================================================================
// Requests and replies.
// ============================================================================

mod op {
    // The opcodes rend's codec names, plus one it does not serve.
    pub use rend::protocol::binary::op::*;
    pub const SASL_LIST_MECHS: u8 = 0x20;

    pub fn name(op: u8) -> String {
        let n = match op {
            GET => "get",
            SET => "set",
            ADD => "add",
            REPLACE => "replace",
            DELETE => "delete",
            INCREMENT => "incr",
            DECREMENT => "decr",
            QUIT => "quit",
            FLUSH => "flush",
            GETQ => "getq",
            NOOP => "noop",
            VERSION => "version",
            GETK => "getk",
            GETKQ => "getkq",
            APPEND => "append",
            PREPEND => "prepend",
            STAT => "stat",
            SETQ => "setq",
            ADDQ => "addq",
            REPLACEQ => "replaceq",
            DELETEQ => "deleteq",
            INCREMENTQ => "incrq",
            DECREMENTQ => "decrq",
            QUITQ => "quitq",
            FLUSHQ => "flushq",
            APPENDQ => "appendq",
            PREPENDQ => "prependq",
            VERBOSITY => "verbosity",
            TOUCH => "touch",
            GAT => "gat",
            GATQ => "gatq",
            GATK => "gatk",
            GATKQ => "gatkq",
            GETE => "gete",
            GETEQ => "geteq",
            _ => return format!("0x{op:02x}"),
        };
        n.to_string()
    }

    /// Quiet opcodes: a NOOP after them ends their replies.
    pub fn is_quiet(op: u8) -> bool {
        matches!(
            op,
            GETQ | GETKQ
                | SETQ
                | ADDQ
                | REPLACEQ
                | DELETEQ
                | INCREMENTQ
                | DECREMENTQ
                | QUITQ
                | FLUSHQ
                | APPENDQ
                | PREPENDQ
                | GATQ
                | GATKQ
                | GETEQ
        )
    }
}

/// Sent after text requests that answer nothing or have no fixed reply shape.
const SYNC: &[u8] = b"get __differential_sync__\r\n";
const NOOP_OPAQUE: u32 = 0xfeed_f00d;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Text,
    Binary,
}

/// Where a reply ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Text: one line.
    Line,
    /// Text: VALUE blocks up to END, or an error line.
    Values,
    /// Text: STAT lines up to END, or an error line.
    Stats,
    /// Text: everything up to the END of the sync get sent after the request.
    UntilSync,
    /// Binary: one packet.
    Packet,
    /// Binary: packets up to the reply to the NOOP sent after the request.
    UntilNoop,
    /// Binary: stat packets up to the one with an empty key.
    UntilStatEnd,
    /// No reply (the connection is expected to close).
    Nothing,
}

/// One command of the stream, as sent to each side.
struct Step {
    what: String,
    proto: Proto,
    /// To the reference.
    req_a: Vec<u8>,
    /// To rend: the same bytes, except cas values translated through the
    /// bijection.
    req_r: Vec<u8>,
    shape: Shape,
    /// The server must close the connection after the reply.
    closes: bool,
    /// Binary: the key whose cas a success reply carries.
    key: Option<Vec<u8>>,
    /// incr/decr: its key (see `Run::note_arith_result`).
    arith: Option<Vec<u8>>,
    /// Chunked mode: the key of a storage request memcached would refuse as
    /// too large and rend takes (`Allowed::AboveMemcachedLimit`).
    above_limit: Option<Vec<u8>>,
}

impl Step {
    fn new(what: impl Into<String>, proto: Proto, req: Vec<u8>, shape: Shape) -> Step {
        Step {
            what: what.into(),
            proto,
            req_r: req.clone(),
            req_a: req,
            shape,
            closes: false,
            key: None,
            arith: None,
            above_limit: None,
        }
    }

    fn text(what: impl Into<String>, req: Vec<u8>, shape: Shape) -> Step {
        Step::new(what, Proto::Text, req, shape)
    }

    fn binary(what: impl Into<String>, req: Vec<u8>, shape: Shape) -> Step {
        Step::new(what, Proto::Binary, req, shape)
    }

    fn rend_bytes(mut self, req_r: Vec<u8>) -> Step {
        self.req_r = req_r;
        self
    }

    fn closing(mut self) -> Step {
        self.closes = true;
        self
    }

    fn with_key(mut self, key: &[u8]) -> Step {
        self.key = Some(key.to_vec());
        self
    }

    /// The bytes actually written: a sync get or a NOOP after the request
    /// where the shape needs one.
    fn wire(&self, req: &[u8]) -> Vec<u8> {
        let mut out = req.to_vec();
        match self.shape {
            Shape::UntilSync => out.extend_from_slice(SYNC),
            Shape::UntilNoop => out.extend_from_slice(&noop()),
            _ => {}
        }
        out
    }
}

fn noop() -> Vec<u8> {
    bin_req(op::NOOP, NOOP_OPAQUE, 0, &[], &[], &[])
}

fn first_line(req: &[u8]) -> &[u8] {
    let end = req.iter().position(|&b| b == b'\n').unwrap_or(req.len());
    let line = &req[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// memcached's tokens: split on spaces, empty ones dropped.
fn tokens(line: &[u8]) -> Vec<&[u8]> {
    line.split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .collect()
}

/// A decimal u64 (digits only).
fn dec_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// A decimal i64 (an optional minus, digits).
fn dec_i64(t: &[u8]) -> Option<i64> {
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// A text storage command line with memcached's token count.
#[derive(Clone, Copy)]
struct StorageLine<'a> {
    key: &'a [u8],
    flags: &'a [u8],
    exptime: &'a [u8],
    bytes: &'a [u8],
    cas: Option<&'a [u8]>,
}

impl<'a> StorageLine<'a> {
    fn parse(t: &[&'a [u8]]) -> Option<StorageLine<'a>> {
        let base = match *t.first()? {
            b"set" | b"add" | b"replace" | b"append" | b"prepend" => 5,
            b"cas" => 6,
            _ => return None,
        };
        if t.len() != base && t.len() != base + 1 {
            return None;
        }
        Some(StorageLine {
            key: t[1],
            flags: t[2],
            exptime: t[3],
            bytes: t[4],
            cas: (base == 6).then(|| t[5]),
        })
    }

    /// `<bytes>` is a length rend can follow.
    fn bytes_ok(&self) -> bool {
        dec_i64(self.bytes).is_some_and(|v| (0..=i64::from(i32::MAX) - 2).contains(&v))
    }
}

/// A binary header.
#[derive(Clone, Copy, Debug)]
struct Header {
    magic: u8,
    opcode: u8,
    keylen: usize,
    extlen: usize,
    status: u16,
    bodylen: usize,
    opaque: u32,
    cas: u64,
}

impl Header {
    fn parse(b: &[u8]) -> Option<Header> {
        let h = b.get(..24)?;
        Some(Header {
            magic: h[0],
            opcode: h[1],
            keylen: usize::from(u16::from_be_bytes([h[2], h[3]])),
            extlen: usize::from(h[4]),
            status: u16::from_be_bytes([h[6], h[7]]),
            bodylen: u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize,
            opaque: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            cas: u64::from_be_bytes(h[16..24].try_into().ok()?),
        })
    }
}

/// One reply packet, split.
struct Pkt {
    magic: u8,
    opcode: u8,
    status: u16,
    opaque: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// The complete packets at the front of `buf`.
fn packets(buf: &[u8]) -> Vec<Pkt> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(h) = Header::parse(&buf[at..]) {
        let end = at + 24 + h.bodylen;
        if buf.len() < end {
            break;
        }
        let body = &buf[at + 24..end];
        let key_start = h.extlen.min(body.len());
        let key_end = (h.extlen + h.keylen).min(body.len());
        out.push(Pkt {
            magic: h.magic,
            opcode: h.opcode,
            status: h.status,
            opaque: h.opaque,
            key: body[key_start..key_end].to_vec(),
            value: body[key_end..].to_vec(),
        });
        at = end;
    }
    out
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// `VALUE <key> <flags> <bytes> [<cas>]`: the data length.
fn value_len(line: &[u8]) -> Option<usize> {
    let t = tokens(line);
    if t.len() != 4 && t.len() != 5 {
        return None;
    }
    dec_u64(t[3]).and_then(|n| usize::try_from(n).ok())
}

/// The length of a complete reply of `shape` at the front of `buf`.
fn complete(shape: Shape, buf: &[u8]) -> Option<usize> {
    match shape {
        Shape::Nothing => Some(0),
        Shape::Line => find_crlf(buf, 0).map(|i| i + 2),
        Shape::UntilSync => buf.ends_with(b"END\r\n").then_some(buf.len()),
        Shape::Values => {
            let mut at = 0;
            loop {
                let nl = find_crlf(buf, at)?;
                let line = &buf[at..nl];
                let next = nl + 2;
                if !line.starts_with(b"VALUE ") {
                    // END, an error, or something unexpected: the reply ends
                    // here and the comparison shows it.
                    return Some(next);
                }
                let Some(len) = value_len(line) else {
                    return Some(next);
                };
                let end = next + len + 2;
                if buf.len() < end {
                    return None;
                }
                at = end;
            }
        }
        Shape::Stats => {
            let mut at = 0;
            loop {
                let nl = find_crlf(buf, at)?;
                if !buf[at..nl].starts_with(b"STAT ") {
                    return Some(nl + 2);
                }
                at = nl + 2;
            }
        }
        Shape::Packet => scan_packets(buf, |_| true),
        Shape::UntilNoop => scan_packets(buf, |h| h.opcode == op::NOOP),
        Shape::UntilStatEnd => scan_packets(buf, |h| h.status != 0 || h.keylen == 0),
    }
}

fn scan_packets(buf: &[u8], last: impl Fn(&Header) -> bool) -> Option<usize> {
    let mut at = 0;
    loop {
        let h = Header::parse(buf.get(at..)?)?;
        let end = at + 24 + h.bodylen;
        if buf.len() < end {
            return None;
        }
        if last(&h) {
            return Some(end);
        }
        at = end;
    }
}

/// A reply with its cas fields taken out.
struct Normalized {
    bytes: Vec<u8>,
    /// In order of appearance, with the key they belong to when the reply
    /// says it.
    cas: Vec<(Option<Vec<u8>>, u64)>,
}

fn normalize(proto: Proto, reply: &[u8]) -> Normalized {
    let mut bytes = Vec::with_capacity(reply.len());
    let mut cas = Vec::new();
    match proto {
        Proto::Text => {
            let mut at = 0;
            while at < reply.len() {
                let Some(nl) = find_crlf(reply, at) else {
                    bytes.extend_from_slice(&reply[at..]);
                    break;
                };
                let line = &reply[at..nl];
                let t = tokens(line);
                if line.starts_with(b"VALUE ") && t.len() == 5 {
                    if let Some(c) = dec_u64(t[4]) {
                        let cas_at = line.len() - t[4].len();
                        bytes.extend_from_slice(&line[..cas_at]);
                        bytes.extend_from_slice(b"<cas>");
                        cas.push((Some(t[1].to_vec()), c));
                    } else {
                        bytes.extend_from_slice(line);
                    }
                } else {
                    bytes.extend_from_slice(line);
                }
                bytes.extend_from_slice(b"\r\n");
                at = nl + 2;
                if line.starts_with(b"VALUE ") {
                    if let Some(len) = value_len(line) {
                        let end = (at + len + 2).min(reply.len());
                        bytes.extend_from_slice(&reply[at..end]);
                        at = end;
                    }
                }
            }
        }
        Proto::Binary => {
            let mut at = 0;
            while let Some(h) = Header::parse(&reply[at..]) {
                let end = (at + 24 + h.bodylen).min(reply.len());
                bytes.extend_from_slice(&reply[at..at + 16]);
                bytes.extend_from_slice(&[0; 8]);
                bytes.extend_from_slice(&reply[at + 24..end]);
                let key =
                    &reply[(at + 24 + h.extlen).min(end)..(at + 24 + h.extlen + h.keylen).min(end)];
                cas.push((
                    (!key.is_empty() && h.status == 0).then(|| key.to_vec()),
                    h.cas,
                ));
                at = end;
            }
            bytes.extend_from_slice(&reply[at..]);
        }
    }
    Normalized { bytes, cas }
}

/// Stat name and value pairs.
type Stats = Vec<(Vec<u8>, Vec<u8>)>;

fn parse_stats(proto: Proto, reply: &[u8]) -> Result<Stats, String> {
    let mut out = Vec::new();
    match proto {
        Proto::Text => {
            let body = reply
                .strip_suffix(b"END\r\n")
                .ok_or_else(|| format!("stats without END: {}", show(reply)))?;
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let line = line
                    .strip_suffix(b"\r")
                    .and_then(|l| l.strip_prefix(b"STAT "))
                    .ok_or_else(|| format!("not a STAT line in {}", show(reply)))?;
                let sp = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
                out.push((
                    line[..sp].to_vec(),
                    line[(sp + 1).min(line.len())..].to_vec(),
                ));
            }
        }
        Proto::Binary => {
            let p = packets(reply);
            let ok = p.last().is_some_and(|l| l.key.is_empty())
                && p.iter().all(|x| x.status == 0 && x.opcode == op::STAT);
            if !ok {
                return Err(format!("bad stat packets {}", show(reply)));
            }
            out.extend(p.into_iter().map(|x| (x.key, x.value)));
        }
    }
    Ok(out)
}

/// Bytes for a failure message: escaped, cut after a few hundred.
fn show(b: &[u8]) -> String {
    const MAX: usize = 400;
    let cut = &b[..b.len().min(MAX)];
    let s = cut.escape_ascii().to_string();
    if b.len() > MAX {
        format!("\"{s}\"… ({} bytes)", b.len())
    } else {
        format!("\"{s}\" ({} bytes)", b.len())
    }
}

// ============================================================================
// The run: connections, lockstep, comparison.
// ============================================================================

/// The stream's seed and length; `DIFF_SEED` / `DIFF_STEPS` override them
/// (to explore beyond the fixed stream; CI runs the fixed one).
const SEED: u64 = 0x5eed_2017_0d1f_f001;
const STEPS: usize = 3000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Read a reply of `shape`; `Err` with what arrived on EOF or timeout.
fn read_reply(conn: &mut Conn, shape: Shape) -> Result<Vec<u8>, Vec<u8>> {
    loop {
        if let Some(n) = complete(shape, &conn.buf) {
            let rest = conn.buf.split_off(n);
            return Ok(std::mem::replace(&mut conn.buf, rest));
        }
        let want = conn.buf.len() + 1;
        let mut got = conn.read_exact_n(want);
        let short = got.len() < want;
        got.append(&mut conn.buf);
        conn.buf = got;
        if short {
            return Err(std::mem::take(&mut conn.buf));
        }
    }
}

/// One side's outcome for one step.
struct Outcome {
    reply: Vec<u8>,
    /// Bytes that arrived after the expected reply.
    extra: Vec<u8>,
    closed: bool,
    /// The reply did not complete (EOF or timeout).
    incomplete: bool,
}

fn exchange(conn: &mut Conn, bytes: &[u8], shape: Shape, expect_close: bool) -> Outcome {
    conn.send(bytes);
    let (reply, incomplete) = match read_reply(conn, shape) {
        Ok(r) => (r, false),
        Err(partial) => (partial, true),
    };
    let closed = expect_close && !incomplete && conn.closed_within(Duration::from_secs(3));
    Outcome {
        reply,
        extra: std::mem::take(&mut conn.buf),
        closed,
        incomplete,
    }
}

/// How rend runs in front of its memcached ("B").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `--orca l1-only`: memcached B holds the items.
    L1Only,
    /// `--orca l1-l2` with L2 in a temp dir: L2 holds the items, memcached B
    /// the hot subset (its items wrapped with L2's cas, DESIGN §3).
    L1L2,
    /// The same rend, the stream sent to its batch port (l1-l2-batch: L1 is
    /// only refreshed with replace, reads never back-fill it).
    L1L2Batch,
}

impl Mode {
    fn two_tier(self) -> bool {
        self != Mode::L1Only
    }

    /// A client of the port this mode talks to.
    fn connect(self, rend: &Rend) -> Conn {
        match self {
            Mode::L1L2Batch => rend.connect_batch(),
            Mode::L1Only | Mode::L1L2 => rend.connect(),
        }
    }
}

struct Run<'a> {
    mode: Mode,
    mc_a: &'a Memcached,
    mc_b: &'a Memcached,
    rend: &'a Rend,
    a_text: Conn,
    a_bin: Conn,
    r_text: Conn,
    r_bin: Conn,
    rng: StdRng,
    keys: Vec<Vec<u8>>,
    /// The cas bijection: reference → rend and back.
    fwd: HashMap<u64, u64>,
    rev: HashMap<u64, u64>,
    /// The reference's latest cas per key, and every cas it has shown.
    last_cas: HashMap<Vec<u8>, u64>,
    seen_cas: Vec<u64>,
    /// Keys possibly read since their item was last replaced (see
    /// `arith_key`), and a counter for keys never used before.
    fetched: std::collections::HashSet<Vec<u8>>,
    big: std::collections::HashSet<Vec<u8>>,
    fresh: usize,
    /// incr results that wrapped past 2^64, decr results floored at 0.
    wraps: usize,
    floors: usize,
    fired: BTreeMap<Allowed, usize>,
    /// rend runs with --chunked.
    chunked: bool,
    /// rend's own value limit, where rend rather than memcached decides what
    /// is too large (--chunked, or l1-l2): `Allowed::AboveMemcachedLimit`
    /// applies.
    value_limit: Option<usize>,
    /// An upper bound on the length of the value each key may hold (on
    /// either side); absent: 0.
    len_bound: HashMap<Vec<u8>, usize>,
    mix: BTreeMap<String, usize>,
    recent: VecDeque<String>,
    compared: usize,
}

impl<'a> Run<'a> {
    fn new(mode: Mode, mc_a: &'a Memcached, mc_b: &'a Memcached, rend: &'a Rend) -> Run<'a> {
        let mut keys: Vec<Vec<u8>> = (0..37).map(|i| format!("key{i}").into_bytes()).collect();
        keys.push(b"z".to_vec());
        keys.push(b"tab\tkey".to_vec());
        keys.push(vec![b'l'; 250]);
        Run {
            mode,
            mc_a,
            mc_b,
            rend,
            a_text: mc_a.connect(),
            a_bin: mc_a.connect(),
            r_text: mode.connect(rend),
            r_bin: mode.connect(rend),
            rng: StdRng::seed_from_u64(env_or("DIFF_SEED", SEED)),
            keys,
            fwd: HashMap::from([(0, 0)]),
            rev: HashMap::from([(0, 0)]),
            last_cas: HashMap::new(),
            seen_cas: Vec::new(),
            fetched: Default::default(),
            big: Default::default(),
            fresh: 0,
            wraps: 0,
            floors: 0,
            fired: BTreeMap::new(),
            chunked: false,
            value_limit: None,
            len_bound: HashMap::new(),
            mix: BTreeMap::new(),
            recent: VecDeque::new(),
            compared: 0,
        }
    }

    fn reopen(&mut self, proto: Proto) {
        match proto {
            Proto::Text => {
                self.a_text = self.mc_a.connect();
                self.r_text = self.mode.connect(self.rend);
            }
            Proto::Binary => {
                self.a_bin = self.mc_a.connect();
                self.r_bin = self.mode.connect(self.rend);
            }
        }
    }

    fn fail(&self, i: usize, step: &Step, why: &str, a: Option<&Outcome>, r: &Outcome) -> ! {
        let side = |o: &Outcome| {
            format!(
                "{}{}{}{}",
                show(&o.reply),
                if o.incomplete {
                    " [incomplete: EOF or timeout]"
                } else {
                    ""
                },
                if o.closed { " [then closed]" } else { "" },
                if o.extra.is_empty() {
                    String::new()
                } else {
                    format!(" [then extra {}]", show(&o.extra))
                },
            )
        };
        // What the two memcacheds hold for the request's keys, asked directly.
        let mut keys: Vec<Vec<u8>> = step.key.iter().cloned().collect();
        if step.proto == Proto::Text {
            let t = tokens(first_line(&step.req_a));
            keys.extend(
                t.iter()
                    .skip(1)
                    .filter(|k| k.len() <= 250)
                    .take(30)
                    .map(|k| k.to_vec()),
            );
        }
        let held = |mc: &Memcached| {
            let mut c = mc.connect();
            let mut line = b"gets".to_vec();
            for k in &keys {
                line.push(b' ');
                line.extend_from_slice(k);
            }
            line.extend_from_slice(b"\r\n");
            c.send(&line);
            show(&read_reply(&mut c, Shape::Values).unwrap_or_else(|e| e))
        };
        let (held_a, held_b) = if keys.is_empty() {
            (String::new(), String::new())
        } else {
            (held(self.mc_a), held(self.mc_b))
        };
        panic!(
            "\ndifferential: command #{i} ({}) failed: {why}\n  request to memcached: {}\n  request to rend:      {}\n  memcached replied:    {}\n  rend replied:         {}\n  recent commands: {:?}\n  memcached now holds:          {held_a}\n  memcached behind rend holds:  {held_b}\n",
            step.what,
            show(&step.req_a),
            show(&step.req_r),
            a.map(side).unwrap_or_else(|| "(not sent)".into()),
            side(r),
            self.recent,
        );
    }

    fn pair_cas(&mut self, a: u64, r: u64) -> Result<(), String> {
        let fa = self.fwd.get(&a).copied();
        let rr = self.rev.get(&r).copied();
        match (fa, rr) {
            (None, None) => {
                self.fwd.insert(a, r);
                self.rev.insert(r, a);
                Ok(())
            }
            (Some(x), Some(y)) if x == r && y == a => Ok(()),
            _ => Err(format!(
                "cas pattern broken: memcached's cas {a} (paired with rend's {fa:?}) against rend's {r} (paired with memcached's {rr:?})"
            )),
        }
    }

    fn run_step(&mut self, i: usize, step: Step) {
        *self.mix.entry(step.what.clone()).or_default() += 1;
        let allowed = classify(&step);
        if let Some(a) = allowed {
            *self.fired.entry(a).or_default() += 1;
        }
        let handling = allowed.map(|a| a.handling(self.mode));
        // AboveMemcachedLimit: what the reference holds under the key before
        // (the same as rend, as every earlier step was compared).
        let before = match (handling, &step.above_limit) {
            (Some(Handling::AsWithoutMemcachedLimit), Some(key)) => Some(held(self.mc_a, key)),
            _ => None,
        };
        let to_ref = match handling {
            Some(Handling::NotSentToReference) => None,
            Some(Handling::AsWithoutMemcachedLimit) => {
                let req = StoreReq::parse(step.proto, &step.req_a).expect("a storage request");
                // A join's outcome hangs on the joined size, which a small
                // data block does not change: see `check_join`.
                (!req.joins()).then(|| step.wire(&req.with_data(step.proto, &step.req_a, b"x")))
            }
            Some(Handling::ComparedAsGet) => Some(step.wire(&gete_as_get(&step.req_a))),
            Some(Handling::DataBlockWithheld) => {
                assert_eq!(
                    step.shape,
                    Shape::UntilSync,
                    "{}: withheld data needs a sync",
                    step.what
                );
                let line_end = step
                    .req_a
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(step.req_a.len(), |p| p + 1);
                Some(step.wire(&step.req_a[..line_end]))
            }
            _ => Some(step.wire(&step.req_a)),
        };
        let to_rend = step.wire(&step.req_r);
        if std::env::var_os("DIFF_TRACE").is_some() {
            eprintln!("#{i} {}: {}", step.what, show(&step.req_r));
        }
        let (ca, cr) = match step.proto {
            Proto::Text => (&mut self.a_text, &mut self.r_text),
            Proto::Binary => (&mut self.a_bin, &mut self.r_bin),
        };
        let a = to_ref.map(|bytes| exchange(ca, &bytes, step.shape, step.closes));
        let r = exchange(cr, &to_rend, step.shape, step.closes);

        if let Some(allowed) = allowed {
            if let Err(e) =
                allowed.check_rend(self.mode, &step, &r.reply, r.closed, self.rend.pid())
            {
                self.fail(
                    i,
                    &step,
                    &format!("{allowed:?} ({}): {e}", allowed.bullet()),
                    a.as_ref(),
                    &r,
                );
            }
            if let (Some(a), Handling::NotCompared) = (&a, allowed.handling(self.mode)) {
                if let Err(e) = allowed.check_reference(&step, &a.reply) {
                    self.fail(i, &step, &format!("{allowed:?}: {e}"), Some(a), &r);
                }
            }
        }
        if matches!(handling, None | Some(Handling::DataBlockWithheld)) {
            let a = a.as_ref().expect("sent to the reference");
            self.compare(i, &step, a, &r);
            self.note_arith_result(&step, &a.reply);
        } else if let (Some(Handling::AsWithoutMemcachedLimit), Some(before)) = (handling, &before)
        {
            match &a {
                Some(a) => self.compare(i, &step, a, &r),
                None => {
                    if let Err(e) = self.check_join(&step, &r, before.as_ref()) {
                        self.fail(i, &step, &e, None, &r);
                    }
                }
            }
            if let Err(e) = self.check_read_back(&step, &r.reply, before.clone()) {
                self.fail(i, &step, &e, a.as_ref(), &r);
            }
        } else if handling == Some(Handling::ComparedAsGet) {
            let a = a.as_ref().expect("sent to the reference");
            let r = Outcome {
                reply: gete_reply_as_get(&r.reply),
                extra: r.extra,
                closed: r.closed,
                incomplete: r.incomplete,
            };
            self.compare(i, &step, a, &r);
        } else {
            // Not compared: both sides must still be in step.
            let bad =
                |o: &Outcome| o.incomplete || !o.extra.is_empty() || (step.closes && !o.closed);
            if a.as_ref().is_some_and(bad)
                || (bad(&r)
                    && allowed != Some(Allowed::BadLengthCloses)
                    && allowed != Some(Allowed::BoundedInput))
            {
                self.fail(i, &step, "a side is out of step", a.as_ref(), &r);
            }
        }
        if let (Some(Handling::AsWithoutMemcachedLimit), Some(key)) = (handling, &step.above_limit)
        {
            self.drop_key(key);
        }
        if step.closes
            || matches!(
                allowed,
                Some(Allowed::BadLengthCloses | Allowed::BoundedInput)
            )
        {
            self.reopen(step.proto);
        }
        self.recent.push_back(format!("#{i} {}", step.what));
        if self.recent.len() > 6 {
            self.recent.pop_front();
        }
    }

    /// After an `AboveMemcachedLimit` request: what rend now holds under the
    /// key (read on a fresh connection) must be what its reply says it did
    /// with `before`, the value the key held: a stored set, add, replace or
    /// cas holds the request's flags and data; a stored append or prepend
    /// the old flags and the joined data; anything else left `before` as it
    /// was.
    fn check_read_back(
        &self,
        step: &Step,
        reply: &[u8],
        before: Option<Held>,
    ) -> Result<(), String> {
        let req = StoreReq::parse(step.proto, &step.req_r).ok_or("not a storage request")?;
        let outcome = storage_outcome(step, reply, true)?;
        let before = before.map(|h| (h.flags, h.data));
        let want = match (outcome, req.verb, before.clone()) {
            (StoreOutcome::Stored, StoreVerb::Append, Some((flags, old))) => {
                Some((flags, [old, req.data.clone()].concat()))
            }
            (StoreOutcome::Stored, StoreVerb::Prepend, Some((flags, old))) => {
                Some((flags, [req.data.clone(), old].concat()))
            }
            (StoreOutcome::Stored, StoreVerb::Append | StoreVerb::Prepend, None) => {
                return Err("an append or prepend stored on a missing key".into());
            }
            (StoreOutcome::Stored, _, _) => Some((req.flags, req.data.clone())),
            _ => before.clone(),
        };
        let mut c = self.mode.connect(self.rend);
        let got = held_via(&mut c, &req.key).map(|h| (h.flags, h.data));
        if got == want {
            return Ok(());
        }
        // A text noreply request says nothing of its outcome (storage_outcome
        // reads its silence as stored): one that was not stored (a cas on a
        // flushed key, say) leaves the key as it was.
        let silent = step.proto == Proto::Text && reply == b"END\r\n";
        if silent && got == before {
            return Ok(());
        }
        let brief = |v: &Option<(u32, Vec<u8>)>| match v {
            Some((flags, data)) => format!("flags {flags}, {} bytes", data.len()),
            None => "nothing".into(),
        };
        if let (Some((_, g)), Some((_, w))) = (&got, &want) {
            if let Some(at) = g.iter().zip(w).position(|(a, b)| a != b) {
                return Err(format!(
                    "after {outcome:?}, rend holds {} under the key, as it should, but its bytes differ from byte {at}",
                    brief(&got)
                ));
            }
        }
        Err(format!(
            "after {outcome:?}, rend holds {} under the key, not {}",
            brief(&got),
            brief(&want)
        ))
    }

    /// An `AboveMemcachedLimit` append or prepend, which the reference cannot
    /// answer for rend (a small data block joined to a value near memcached's
    /// limit still passes it): rend's reply must be what memcached answers
    /// for a join with rend's limit in place of its own (verified against
    /// 1.6.18): `before` (the key's item, the same on both sides) missing:
    /// not stored; a cas given that is not the item's: exists; the joined
    /// value past rend's limit: not stored (memcached's answer to a join it
    /// cannot allocate); otherwise stored. Text: that line, or nothing with
    /// noreply; binary: the status with memcached's message, or a success
    /// with an empty body (nothing at all for a quiet one); in step.
    fn check_join(&self, step: &Step, r: &Outcome, before: Option<&Held>) -> Result<(), String> {
        let req = StoreReq::parse(step.proto, &step.req_a).ok_or("not a storage request")?;
        let limit = self.value_limit.ok_or("no limit of rend's own")?;
        let want = match before {
            None => StoreOutcome::NotStored,
            Some(h) if req.cas != 0 && req.cas != h.cas => StoreOutcome::Exists,
            Some(h) if h.data.len() + req.data.len() > limit => StoreOutcome::NotStored,
            Some(_) => StoreOutcome::Stored,
        };
        if r.incomplete || !r.extra.is_empty() || r.closed {
            return Err(format!("rend is out of step after a join (want {want:?})"));
        }
        let bad = || {
            Err(format!(
                "want {want:?} for the join ({} bytes before)",
                before.map_or(0, |h| h.data.len())
            ))
        };
        match step.proto {
            Proto::Text => {
                let noreply = tokens(first_line(&step.req_r)).last() == Some(&&b"noreply"[..]);
                let line: &[u8] = match want {
                    _ if noreply => b"",
                    StoreOutcome::Stored => b"STORED\r\n",
                    StoreOutcome::Exists => b"EXISTS\r\n",
                    _ => b"NOT_STORED\r\n",
                };
                let sync: &[u8] = if step.shape == Shape::UntilSync {
                    b"END\r\n"
                } else {
                    b""
                };
                if r.reply != [line, sync].concat() {
                    return bad();
                }
            }
            Proto::Binary => {
                let h = Header::parse(&step.req_r).ok_or("no header")?;
                let mut p = packets(&r.reply);
                if step.shape == Shape::UntilNoop {
                    match p.pop() {
                        Some(n) if n.opcode == op::NOOP && n.opaque == NOOP_OPAQUE => {}
                        _ => return bad(),
                    }
                }
                let (status, body): (u16, &[u8]) = match want {
                    StoreOutcome::Stored => (0, b""),
                    StoreOutcome::Exists => (2, b"Data exists for key."),
                    _ => (5, b"Not stored."),
                };
                let quiet_success = status == 0 && op::is_quiet(h.opcode);
                let ok = match &p[..] {
                    [] => quiet_success,
                    [f] => {
                        !quiet_success
                            && f.magic == 0x81
                            && (f.opcode, f.opaque, f.status) == (h.opcode, h.opaque, status)
                            && f.key.is_empty()
                            && f.value == body
                    }
                    _ => false,
                };
                if !ok {
                    return bad();
                }
            }
        }
        Ok(())
    }

    /// Delete `key` on both sides (each on a fresh connection), replies not
    /// compared: after an `AboveMemcachedLimit` request the two may hold
    /// different values under it.
    fn drop_key(&mut self, key: &[u8]) {
        let req = bin_req(op::DELETE, 0, 0, &[], key, &[]);
        for mut conn in [self.mc_a.connect(), self.mode.connect(self.rend)] {
            conn.send(&req);
            let p = conn.packet();
            assert!(matches!(p.status, 0 | 1), "dropping {}: {p:?}", show(key));
        }
        self.len_bound.remove(key);
        self.fetched.remove(key);
        self.big.remove(key);
    }

    /// Where rend has its own value limit (`value_limit`): the key of a
    /// storage request whose item memcached -I 1m would refuse as too large
    /// while rend's limit takes it (the data block alone; for append/prepend
    /// also the data block plus the key's `len_bound`, sized with flags since
    /// memcached sizes the joined item with the stored item's flags, which
    /// the test does not track).
    fn above_memcached_limit(&self, step: &Step) -> Option<Vec<u8>> {
        let limit = self.value_limit?;
        if step.closes {
            return None;
        }
        let over = |key: &[u8], flags: bool, n: usize| {
            n <= limit && memcached_item_size(key.len(), flags, n) > MEMCACHED_ITEM_MAX
        };
        // The joined value is somewhere in n..=n + bound.
        let joined_over = |key: &[u8], n: usize| {
            let bound = self.len_bound.get(key).copied().unwrap_or(0);
            n <= limit && memcached_item_size(key.len(), true, n + bound) > MEMCACHED_ITEM_MAX
        };
        let (key, hit) = match step.proto {
            Proto::Text => {
                let t = tokens(first_line(&step.req_r));
                let s = StorageLine::parse(&t)?;
                let n = usize::try_from(dec_u64(s.bytes)?).ok()?;
                let flags = dec_u64(s.flags)? != 0;
                let joins = matches!(t[0], b"append" | b"prepend");
                (
                    s.key,
                    over(s.key, flags, n) || (joins && joined_over(s.key, n)),
                )
            }
            Proto::Binary => {
                let h = Header::parse(&step.req_r)?;
                let body = step.req_r.get(24..24 + h.bodylen)?;
                let key = body.get(h.extlen..h.extlen + h.keylen)?;
                let n = h.bodylen.checked_sub(h.extlen + h.keylen)?;
                match h.opcode {
                    op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ
                        if h.extlen == 8 =>
                    {
                        (key, over(key, body[..4] != [0; 4], n))
                    }
                    op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ if h.extlen == 0 => {
                        (key, over(key, false, n) || joined_over(key, n))
                    }
                    _ => return None,
                }
            }
        };
        (hit && !key.is_empty() && key.len() <= 250).then(|| key.to_vec())
    }

    fn compare(&mut self, i: usize, step: &Step, a: &Outcome, r: &Outcome) {
        self.compared += 1;
        if a.incomplete || r.incomplete {
            self.fail(i, step, "a reply did not complete", Some(a), r);
        }
        if std::env::var_os("DIFF_TRACE").is_some() {
            eprintln!("   A: {}\n   R: {}", show(&a.reply), show(&r.reply));
        }
        let na = normalize(step.proto, &a.reply);
        let nr = normalize(step.proto, &r.reply);
        if na.bytes != nr.bytes {
            self.fail(i, step, "replies differ", Some(a), r);
        }
        if a.extra != r.extra || !a.extra.is_empty() {
            self.fail(i, step, "unexpected bytes after the reply", Some(a), r);
        }
        if a.closed != r.closed || a.closed != step.closes {
            self.fail(i, step, "connection closing differs", Some(a), r);
        }
        for ((key, ca), (_, cr)) in na.cas.iter().zip(&nr.cas) {
            if let Err(e) = self.pair_cas(*ca, *cr) {
                self.fail(i, step, &e, Some(a), r);
            }
            if *ca != 0 {
                if let Some(k) = key.clone().or_else(|| step.key.clone()) {
                    self.last_cas.insert(k, *ca);
                }
                if self.seen_cas.len() < 4096 {
                    self.seen_cas.push(*ca);
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // The stream.
    // ------------------------------------------------------------------

    /// A key for a read, delete, touch, arithmetic: now and then one of the
    /// rarely stored keys, so that misses stay common.
    fn key(&mut self) -> Vec<u8> {
        if self.rng.gen_bool(0.15) {
            return format!("absent{}", self.rng.gen_range(0..10)).into_bytes();
        }
        self.keys.choose(&mut self.rng).expect("keys").clone()
    }

    /// A key for a set/add/replace/cas.
    fn store_key(&mut self) -> Vec<u8> {
        if self.rng.gen_bool(0.03) {
            return format!("absent{}", self.rng.gen_range(0..10)).into_bytes();
        }
        self.keys.choose(&mut self.rng).expect("keys").clone()
    }

    fn alnum(&mut self, n: usize) -> Vec<u8> {
        const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..n).map(|_| A[self.rng.gen_range(0..A.len())]).collect()
    }

    /// A value for a store; `None` picks a near-limit size for the caller to
    /// put under key "z".
    fn value(&mut self) -> Result<Vec<u8>, Vec<u8>> {
        let r = self.rng.gen_range(0..1000);
        Ok(match r {
            0..=4 => {
                // Near memcached's item limit (-I 1m): rend's own limit is
                // 1,048,516 value bytes (1-byte key, flags 0).
                let n = *[
                    1_048_515usize,
                    1_048_516,
                    1_048_517,
                    1_048_500,
                    1_048_576,
                    1_048_267,
                    1_048_400,
                ]
                .choose(&mut self.rng)
                .expect("sizes");
                return Err(self.alnum(n));
            }
            5..=249 => self.numeric().into_bytes(),
            250..=279 => (*[
                &b"12abc"[..],
                b"-5",
                b" 7",
                b"",
                b"1 2",
                b"0x10",
                b"+3",
                b"007",
            ]
            .choose(&mut self.rng)
            .expect("odd"))
            .to_vec(),
            280..=799 => {
                let n = self.rng.gen_range(0..64);
                self.alnum(n)
            }
            _ => {
                let n = self.rng.gen_range(64..=2000);
                self.alnum(n)
            }
        })
    }

    fn numeric(&mut self) -> String {
        match self.rng.gen_range(0..10) {
            0..=4 => self.rng.gen_range(0..1000u64).to_string(),
            5 => (u64::MAX - self.rng.gen_range(0..5u64)).to_string(),
            6 => self.rng.gen::<u64>().to_string(),
            7 => "0".into(),
            8 => format!("{:020}", self.rng.gen_range(0..100u64)),
            _ => (1u64 << 63).to_string(),
        }
    }

    fn delta(&mut self) -> u64 {
        match self.rng.gen_range(0..10) {
            0..=5 => self.rng.gen_range(0..100),
            6 => u64::MAX,
            7 => self.rng.gen(),
            8 => 1 << 63,
            _ => 0,
        }
    }

    fn flags(&mut self) -> u32 {
        match self.rng.gen_range(0..10) {
            0..=6 => 0,
            7 => u32::MAX,
            _ => self.rng.gen(),
        }
    }

    /// 0, negative or >= 3600 (relative, or absolute in the past or future),
    /// so the two memcacheds' clocks cannot disagree.
    fn text_exptime(&mut self) -> String {
        let r = self.rng.gen_range(0..100);
        match r {
            0..=69 => "0",
            70..=79 => "3600",
            80..=84 => "86400",
            85..=87 => "-1",
            88..=91 => "2000000000",
            92..=94 => "1000000000",
            95..=96 => "2592000",
            97 => "-2147483648",
            _ => "2147483647",
        }
        .into()
    }

    fn bin_exptime(&mut self) -> u32 {
        let r = self.rng.gen_range(0..100);
        match r {
            0..=69 => 0,
            70..=79 => 3600,
            80..=84 => 86400,
            85..=88 => 2_000_000_000,
            89..=91 => 1_000_000_000,
            92..=94 => 2_592_001,
            95..=97 => u32::MAX,
            _ => 2_592_000,
        }
    }

    /// A cas for a request on `key`: (to the reference, to rend). Mostly the
    /// latest the reference showed for the key, else a stale one, 0, or one
    /// no item ever had.
    fn pick_cas(&mut self, key: &[u8]) -> (u64, u64) {
        let r = self.rng.gen_range(0..100);
        let a = match r {
            0..=54 => self.last_cas.get(key).copied().unwrap_or(1 << 40),
            55..=74 => self.seen_cas.choose(&mut self.rng).copied().unwrap_or(0),
            75..=84 => 0,
            _ => self.rng.gen_range(1u64 << 40..1 << 41),
        };
        (a, self.fwd.get(&a).copied().unwrap_or(a))
    }

    fn gen_step(&mut self) -> Step {
        let step = match self.rng.gen_range(0..100) {
            // Pipelines track their requests one by one.
            0..=1 => return self.gen_pipeline(Proto::Text),
            2..=3 => return self.gen_pipeline(Proto::Binary),
            4..=51 => self.gen_text(),
            _ => self.gen_binary(),
        };
        let mut step = step;
        step.above_limit = self.above_memcached_limit(&step);
        self.track_keys(&step);
        step
    }

    /// Two to five ordinary requests in one write, answered as a batch: one
    /// sync get (text) or NOOP (binary) after the last ends the replies.
    fn gen_pipeline(&mut self, proto: Proto) -> Step {
        let n = self.rng.gen_range(2..=5);
        let (mut req_a, mut req_r) = (Vec::new(), Vec::new());
        let mut taken = 0;
        while taken < n {
            let mut sub = match proto {
                Proto::Text => self.gen_text(),
                Proto::Binary => self.gen_binary(),
            };
            sub.above_limit = self.above_memcached_limit(&sub);
            let fits = match proto {
                Proto::Text => matches!(sub.shape, Shape::Line | Shape::UntilSync),
                // A NOOP of its own would end the replies early.
                Proto::Binary => {
                    matches!(sub.shape, Shape::Packet | Shape::UntilNoop)
                        && sub.req_r.get(1) != Some(&op::NOOP)
                }
            };
            if !fits || sub.closes || classify(&sub).is_some() {
                continue;
            }
            self.track_keys(&sub);
            if let Some(key) = &sub.arith {
                // Its result is not looked at.
                self.big.insert(key.clone());
            }
            req_a.extend_from_slice(&sub.req_a);
            req_r.extend_from_slice(&sub.req_r);
            taken += 1;
        }
        let (what, shape) = match proto {
            Proto::Text => ("text pipeline", Shape::UntilSync),
            Proto::Binary => ("bin pipeline", Shape::UntilNoop),
        };
        Step::new(what, proto, req_a, shape).rend_bytes(req_r)
    }

    /// Keep `fetched` and `big` (see `arith_key`) up to date with a request
    /// about to be sent. Both over-approximate: anything that may read a key,
    /// or may leave a value >= 2^63 under it, marks it; only writes that
    /// surely replace or remove the item clear it.
    fn track_keys(&mut self, step: &Step) {
        let big_number = |v: &[u8]| {
            let digits: Vec<u8> = v
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            let digits = String::from_utf8(digits).unwrap_or_default();
            let digits = digits.trim_start_matches('0');
            digits.len() > 19 || (digits.len() == 19 && digits >= "9223372036854775808")
        };
        if step.closes {
            // Refused requests (the server closes): nothing happens.
            return;
        }
        self.track_len(step);
        match step.proto {
            Proto::Text => {
                let t = tokens(first_line(&step.req_r));
                let Some(&verb) = t.first() else { return };
                let skip = match verb {
                    b"get" | b"gets" | b"bget" | b"touch" => 1,
                    b"gat" | b"gats" => 2,
                    _ => 0,
                };
                if skip > 0 {
                    self.fetched.extend(t.iter().skip(skip).map(|k| k.to_vec()));
                    return;
                }
                if step.what == "text flush_all" {
                    self.fetched.clear();
                    self.big.clear();
                    return;
                }
                let Some(&key) = t.get(1) else { return };
                if step.what == "text delete" {
                    self.fetched.remove(key);
                    self.big.remove(key);
                } else if step.what.starts_with("text set")
                    || step.what.starts_with("text add")
                    || step.what.starts_with("text replace")
                    || step.what.starts_with("text cas")
                {
                    let line_end = step
                        .req_r
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(0, |p| p + 1);
                    let value = &step.req_r[line_end..];
                    let value = value.strip_suffix(b"\r\n").unwrap_or(value);
                    if big_number(value) {
                        self.big.insert(key.to_vec());
                    } else if step.what.starts_with("text set") {
                        self.big.remove(key);
                    }
                    if step.what.starts_with("text set") {
                        self.fetched.remove(key);
                    }
                } else if step.what.starts_with("text append")
                    || step.what.starts_with("text prepend")
                {
                    self.big.insert(key.to_vec());
                }
            }
            Proto::Binary => {
                let mut at = 0;
                while let Some(h) = Header::parse(&step.req_r[at..]) {
                    let end = (at + 24 + h.bodylen).min(step.req_r.len());
                    let ext_at = (at + 24).min(end);
                    let key_at = (ext_at + h.extlen).min(end);
                    let value_at = (key_at + h.keylen).min(end);
                    let extras = &step.req_r[ext_at..key_at];
                    let key = step.req_r[key_at..value_at].to_vec();
                    let value = &step.req_r[value_at..end];
                    match h.opcode {
                        op::GET
                        | op::GETQ
                        | op::GETK
                        | op::GETKQ
                        | op::GAT
                        | op::GATQ
                        | op::GATK
                        | op::GATKQ
                        | op::TOUCH
                        | op::GETE
                        | op::GETEQ => {
                            self.fetched.insert(key);
                        }
                        op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ => {
                            let replaces = matches!(h.opcode, op::SET | op::SETQ) && h.cas == 0;
                            if big_number(value) {
                                self.big.insert(key.clone());
                            } else if replaces {
                                self.big.remove(&key);
                            }
                            if replaces {
                                self.fetched.remove(&key);
                            }
                        }
                        op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => {
                            self.big.insert(key);
                        }
                        op::DELETE | op::DELETEQ if h.cas == 0 => {
                            self.fetched.remove(&key);
                            self.big.remove(&key);
                        }
                        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ
                            if extras.len() == 20
                                && extras[16..20] != [0xff; 4]
                                && extras[8] >= 0x80 =>
                        {
                            // May create the key with an initial value >= 2^63.
                            self.big.insert(key);
                        }
                        op::FLUSH | op::FLUSHQ
                            if h.keylen == 0
                                && h.bodylen == h.extlen
                                && (h.extlen == 0 || h.extlen == 4) =>
                        {
                            self.fetched.clear();
                            self.big.clear();
                        }
                        _ => {}
                    }
                    at = end;
                }
            }
        }
    }

    /// Keep `len_bound` up to date with a request about to be sent. An upper
    /// bound: only a set that surely stores (no allow-listed refusal), a
    /// delete without cas or a flush lowers it.
    fn track_len(&mut self, step: &Step) {
        let surely_applies = classify(step).is_none();
        let bound = &mut self.len_bound;
        let mut raise = |key: &[u8], n: usize| {
            let b = bound.entry(key.to_vec()).or_insert(0);
            *b = (*b).max(n);
        };
        match step.proto {
            Proto::Text => {
                let t = tokens(first_line(&step.req_r));
                let Some(&verb) = t.first() else { return };
                if let Some(s) = StorageLine::parse(&t) {
                    let Some(n) = dec_u64(s.bytes).and_then(|n| usize::try_from(n).ok()) else {
                        return;
                    };
                    match verb {
                        b"set" if surely_applies => {
                            self.len_bound.insert(s.key.to_vec(), n);
                        }
                        b"append" | b"prepend" => {
                            *self.len_bound.entry(s.key.to_vec()).or_insert(0) += n;
                        }
                        _ => raise(s.key, n),
                    }
                } else if matches!(verb, b"incr" | b"decr") && t.len() >= 2 {
                    raise(t[1], 20);
                } else if step.what == "text delete" {
                    self.len_bound.remove(t[1]);
                } else if step.what == "text flush_all" {
                    self.len_bound.clear();
                }
            }
            Proto::Binary => {
                let mut at = 0;
                while let Some(h) = Header::parse(&step.req_r[at..]) {
                    let end = (at + 24 + h.bodylen).min(step.req_r.len());
                    let key_at = (at + 24 + h.extlen).min(end);
                    let value_at = (key_at + h.keylen).min(end);
                    let key = step.req_r[key_at..value_at].to_vec();
                    let n = end - value_at;
                    let bound = self.len_bound.entry(key.clone()).or_insert(0);
                    match h.opcode {
                        op::SET | op::SETQ if h.cas == 0 && surely_applies => *bound = n,
                        op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ => {
                            *bound = (*bound).max(n)
                        }
                        op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => *bound += n,
                        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => {
                            *bound = (*bound).max(20)
                        }
                        op::DELETE | op::DELETEQ if h.cas == 0 => {
                            self.len_bound.remove(&key);
                        }
                        op::FLUSH | op::FLUSHQ
                            if h.keylen == 0
                                && h.bodylen == h.extlen
                                && (h.extlen == 0 || h.extlen == 4) =>
                        {
                            self.len_bound.clear();
                        }
                        _ => {}
                    }
                    at = end;
                }
            }
        }
    }

    /// After an incr/decr: a result >= 2^63, or one the reply does not show
    /// (quiet incr, noreply), marks the key `big`.
    fn note_arith_result(&mut self, step: &Step, reply: &[u8]) {
        let Some(key) = &step.arith else { return };
        let (incr, delta, result) = match step.proto {
            Proto::Text => {
                let t = tokens(first_line(&step.req_r));
                let result = std::str::from_utf8(reply)
                    .ok()
                    .and_then(|l| l.strip_suffix("\r\n"))
                    .and_then(|l| l.parse::<u64>().ok());
                (t[0] == b"incr", t.get(2).and_then(|d| dec_u64(d)), result)
            }
            Proto::Binary => {
                let Some(h) = Header::parse(&step.req_r) else {
                    return;
                };
                let delta = step
                    .req_r
                    .get(24..32)
                    .map(|d| u64::from_be_bytes(d.try_into().expect("8 bytes")));
                let result = packets(reply)
                    .first()
                    .filter(|p| p.status == 0 && p.opcode != op::NOOP && p.value.len() == 8)
                    .map(|p| u64::from_be_bytes(p.value[..8].try_into().expect("8 bytes")));
                (
                    matches!(h.opcode, op::INCREMENT | op::INCREMENTQ),
                    delta,
                    result,
                )
            }
        };
        if let (Some(v), Some(d)) = (result, delta) {
            if incr && v < d {
                self.wraps += 1;
            }
            if !incr && v == 0 && d > 0 {
                self.floors += 1;
            }
        }
        let big = match result {
            Some(v) => v >= 1 << 63,
            // No number shown: an error (nothing changed), or a quiet or
            // noreply success.
            None => incr && !reply.starts_with(b"CLIENT_ERROR") && !reply.starts_with(b"NOT_FOUND"),
        };
        if big {
            self.big.insert(key.clone());
        }
    }

    /// A key for incr/decr: one not read since its item was last replaced,
    /// whose value is surely below 2^63. Two races inside memcached 1.6.18
    /// itself would otherwise make the reference's replies nondeterministic:
    ///
    /// - it updates a counter in place (keeping the stored length, space
    ///   padded) only while nothing else holds a reference to the item, and a
    ///   read of an item in its cold LRU leaves an asynchronous LRU bump
    ///   holding one until a background thread gets to it;
    /// - for a value >= 2^63 its safe_strtoull looks for a minus sign with
    ///   strchr, which runs past the value (not NUL-terminated in the item)
    ///   into whatever bytes follow in memory, and refuses the value as
    ///   non-numeric when it meets a '-' before a NUL.
    fn arith_key(&mut self) -> Vec<u8> {
        for _ in 0..20 {
            let k = self.key();
            if !self.fetched.contains(&k) && !self.big.contains(&k) {
                return k;
            }
        }
        self.fresh += 1;
        format!("fresh{}", self.fresh).into_bytes()
    }

    fn gen_text(&mut self) -> Step {
        let r = self.rng.gen_range(0..1000);
        match r {
            0..=139 => self.text_get("get"),
            140..=219 => self.text_get("gets"),
            220..=259 => self.text_get("gat"),
            260..=299 => self.text_get("gats"),
            300..=419 => self.text_store("set"),
            420..=459 => self.text_store("add"),
            460..=499 => self.text_store("replace"),
            500..=539 => self.text_store("append"),
            540..=569 => self.text_store("prepend"),
            570..=649 => self.text_store("cas"),
            650..=699 => self.text_delete(),
            700..=759 => self.text_arith("incr"),
            760..=809 => self.text_arith("decr"),
            810..=849 => self.text_touch(),
            850..=851 => self.text_flush(),
            852..=861 => self.text_verbosity(),
            862..=865 => Step::text("text version", b"version\r\n".to_vec(), Shape::Line),
            866..=869 => Step::text("text stats", b"stats\r\n".to_vec(), Shape::Stats),
            870..=871 => Step::text("text quit", b"quit\r\n".to_vec(), Shape::Nothing).closing(),
            872..=955 => self.text_malformed(),
            956..=961 => self.text_long_line(),
            _ => self.text_allow_listed(),
        }
    }

    fn text_get(&mut self, verb: &str) -> Step {
        let n = match self.rng.gen_range(0..100) {
            0..=49 => 1,
            50..=89 => self.rng.gen_range(2..=5),
            // A line past 2048 bytes: only get and gets may be that long.
            98..=99 if !verb.starts_with("gat") => self.rng.gen_range(400..=2000),
            _ => self.rng.gen_range(6..=30),
        };
        let mut line = verb.as_bytes().to_vec();
        if verb.starts_with("gat") {
            line.push(b' ');
            let e = self.text_exptime();
            line.extend_from_slice(e.as_bytes());
        }
        for _ in 0..n {
            line.extend_from_slice(if self.rng.gen_bool(0.03) { b"  " } else { b" " });
            let k = self.key();
            line.extend_from_slice(&k);
        }
        line.extend_from_slice(if self.rng.gen_bool(0.03) {
            b"\n"
        } else {
            b"\r\n"
        });
        Step::text(format!("text {verb}"), line, Shape::Values)
    }

    fn text_store(&mut self, verb: &str) -> Step {
        let mut key = self.store_key();
        let mut flags = self.flags();
        let value = match self.value() {
            Ok(v) => v,
            Err(huge) => {
                key = b"z".to_vec();
                if matches!(verb, "append" | "prepend") {
                    // The known divergence (see `former_divergences_stay_fixed`):
                    // kept out of the stream.
                    flags = 0;
                }
                huge
            }
        };
        let exptime = self.text_exptime();
        let tail = match self.rng.gen_range(0..100) {
            0..=11 => " noreply",
            12..=13 if verb != "cas" => " norepl",
            _ => "",
        };
        let (ca, cr) = if verb == "cas" {
            self.pick_cas(&key)
        } else {
            (0, 0)
        };
        let build = |cas: u64| {
            let mut out = format!("{verb} ").into_bytes();
            out.extend_from_slice(&key);
            out.extend_from_slice(format!(" {flags} {exptime} {}", value.len()).as_bytes());
            if verb == "cas" {
                out.extend_from_slice(format!(" {cas}").as_bytes());
            }
            out.extend_from_slice(tail.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&value);
            out.extend_from_slice(b"\r\n");
            out
        };
        let noreply = tail == " noreply";
        let shape = if noreply {
            Shape::UntilSync
        } else {
            Shape::Line
        };
        let what = format!("text {verb}{}", if noreply { " noreply" } else { "" });
        Step::text(what, build(ca), shape).rend_bytes(build(cr))
    }

    fn text_delete(&mut self) -> Step {
        let key = self.key();
        let (tail, noreply) = *[
            (&b""[..], false),
            (b" 0", false),
            (b" noreply", true),
            (b" 0 noreply", true),
        ]
        .choose(&mut self.rng)
        .expect("forms");
        let mut line = b"delete ".to_vec();
        line.extend_from_slice(&key);
        line.extend_from_slice(tail);
        line.extend_from_slice(b"\r\n");
        let shape = if noreply {
            Shape::UntilSync
        } else {
            Shape::Line
        };
        Step::text("text delete", line, shape)
    }

    fn text_arith(&mut self, verb: &str) -> Step {
        let key = self.arith_key();
        let delta = self.delta();
        let noreply = self.rng.gen_bool(0.1);
        let mut line = format!("{verb} ").into_bytes();
        line.extend_from_slice(&key);
        line.extend_from_slice(format!(" {delta}").as_bytes());
        if noreply {
            line.extend_from_slice(b" noreply");
        }
        line.extend_from_slice(b"\r\n");
        let shape = if noreply {
            Shape::UntilSync
        } else {
            Shape::Line
        };
        let mut step = Step::text(format!("text {verb}"), line, shape);
        step.arith = Some(key);
        step
    }

    fn text_touch(&mut self) -> Step {
        let key = self.key();
        let exptime = self.text_exptime();
        let noreply = self.rng.gen_bool(0.1);
        let mut line = b"touch ".to_vec();
        line.extend_from_slice(&key);
        line.extend_from_slice(format!(" {exptime}").as_bytes());
        if noreply {
            line.extend_from_slice(b" noreply");
        }
        line.extend_from_slice(b"\r\n");
        let shape = if noreply {
            Shape::UntilSync
        } else {
            Shape::Line
        };
        Step::text("text touch", line, shape)
    }

    /// Every form of flush_all whose effect does not depend on when in a
    /// second it lands: now (0, negative), later (relative, absolute), an
    /// absolute time in 1970 (memcached flushes nothing and calls off a
    /// delayed flush), a moment ago (now), and noreply. (`flush_all 1` also
    /// hides what is stored in the rest of the current second, and where
    /// memcached's second ends depends on its clock's tick: its unit tests
    /// are in `backend::record` and `orca::two_tier`.)
    fn text_flush(&mut self) -> Step {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let delay = [
            String::new(),
            " 0".into(),
            " -1".into(),
            " 1000".into(),
            " 2592001".into(),
            format!(" {}", now - 5),
            format!(" {}", now + 1000),
        ]
        .choose(&mut self.rng)
        .expect("forms")
        .clone();
        let noreply = self.rng.gen_bool(0.3);
        let line = format!(
            "flush_all{delay}{}\r\n",
            if noreply { " noreply" } else { "" }
        );
        let shape = if noreply {
            Shape::UntilSync
        } else {
            Shape::Line
        };
        Step::text("text flush_all", line.into_bytes(), shape)
    }

    fn text_verbosity(&mut self) -> Step {
        // Level 0 only (the reference's stderr is the test's), and levels
        // memcached refuses or truncates to 0.
        let (line, noreply) = *[
            (&b"verbosity 0\r\n"[..], false),
            (b"verbosity 0 noreply\r\n", true),
            (b"verbosity invalid\r\n", false),
            (b"verbosity invalid noreply\r\n", true),
            (b"verbosity -1\r\n", false),
            (b"verbosity 0x1\r\n", false),
            (b"verbosity 18446744073709551616\r\n", false),
            (b"verbosity 4294967296\r\n", false),
            (b"verbosity -0\r\n", false),
            (b"verbosity 0 extra\r\n", false),
        ]
        .choose(&mut self.rng)
        .expect("forms");
        let shape = if noreply {
            Shape::UntilSync
        } else {
            Shape::Line
        };
        Step::text("text verbosity", line.to_vec(), shape)
    }

    /// Long text lines that are not on the allow-list, compared: a complete
    /// line of exactly 2048 bytes before its newline, which both run; and
    /// more than 2048 bytes with no newline, where both close the connection
    /// without a reply. (A complete longer line is `BoundedInput`.)
    fn text_long_line(&mut self) -> Step {
        let k = String::from_utf8(self.keys[self.rng.gen_range(0..37)].clone()).expect("ascii key");
        let pad = |head: String, len: usize| format!("{head}{}", " ".repeat(len - head.len()));
        match self.rng.gen_range(0..4) {
            0 => {
                // 2047 bytes, then \r: 2048 before the newline.
                let line = format!("{}\r\n", pad(format!("delete {k}"), 2047));
                Step::text("text 2048-byte line", line.into_bytes(), Shape::Line)
            }
            r => {
                let n = self.rng.gen_range(2049..4000);
                let bytes = match r {
                    1 => pad(format!("delete {k}"), n),
                    2 => pad(format!("set {k} 0 0 1"), n),
                    _ => "x".repeat(n),
                };
                Step::text(
                    "text no newline past 2048 bytes",
                    bytes.into_bytes(),
                    Shape::Nothing,
                )
                .closing()
            }
        }
    }

    /// Client mistakes memcached answers and survives: compared like the rest.
    fn text_malformed(&mut self) -> Step {
        let k = String::from_utf8(self.keys[self.rng.gen_range(0..37)].clone()).expect("ascii key");
        let long = "x".repeat(251);
        let r = self.rng.gen_range(0..44);
        let (what, line, shape): (&str, String, Shape) = match r {
            // Unknown commands.
            0 => ("unknown", "foo\r\n".into(), Shape::Line),
            1 => ("unknown", format!("bogus {k} 1 2\r\n"), Shape::Line),
            2 => ("unknown", format!("GET {k}\r\n"), Shape::Line),
            3 => ("unknown", "\r\n".into(), Shape::Line),
            4 => ("unknown", "x\r\n".into(), Shape::Line),
            5 => ("unknown", format!("gett {k}\r\n"), Shape::Line),
            6 => ("unknown", format!("sets {k} 0 0 1\r\n"), Shape::Line),
            // Wrong argument counts.
            7 => ("arg count", "get\r\n".into(), Shape::Line),
            8 => ("arg count", "gets\r\n".into(), Shape::Line),
            9 => ("arg count", "gat\r\n".into(), Shape::Line),
            10 => ("arg count", format!("set {k} 0 0\r\n"), Shape::Line),
            11 => (
                "arg count",
                format!("set {k} 0 0 1 noreply extra\r\n"),
                Shape::Line,
            ),
            12 => ("arg count", format!("cas {k} 0 0 1\r\n"), Shape::Line),
            13 => ("arg count", format!("incr {k}\r\n"), Shape::Line),
            14 => ("arg count", format!("decr {k} 1 2 3\r\n"), Shape::Line),
            15 => ("arg count", "delete\r\n".into(), Shape::Line),
            16 => (
                "arg count",
                format!("delete {k} 0 noreply x\r\n"),
                Shape::Line,
            ),
            17 => ("arg count", format!("touch {k}\r\n"), Shape::Line),
            18 => ("arg count", format!("touch {k} 1 2 3\r\n"), Shape::Line),
            19 => ("arg count", "verbosity\r\n".into(), Shape::Line),
            20 => ("arg count", "verbosity 1 2 3\r\n".into(), Shape::Line),
            21 => ("arg count", "flush_all 0 noreply x\r\n".into(), Shape::Line),
            // Bad numbers.
            22 => ("bad number", format!("incr {k} abc\r\n"), Shape::Line),
            23 => ("bad number", format!("incr {k} -1\r\n"), Shape::Line),
            24 => (
                "bad number",
                format!("decr {k} 18446744073709551616\r\n"),
                Shape::Line,
            ),
            25 => ("bad number", format!("touch {k} abc\r\n"), Shape::Line),
            26 => ("bad number", format!("gat abc {k}\r\n"), Shape::Line),
            27 => ("bad number", format!("gats 1x {k}\r\n"), Shape::Line),
            28 => ("bad number", format!("delete {k} 5\r\n"), Shape::Line),
            29 => ("bad number", "verbosity abc\r\n".into(), Shape::Line),
            30 => ("bad number", "flush_all abc\r\n".into(), Shape::Line),
            31 => ("bad number", format!("incr {k} 1.5\r\n"), Shape::Line),
            32 => (
                "bad number",
                format!("incr {k} abc noreply\r\n"),
                Shape::UntilSync,
            ),
            // 251-byte keys.
            33 => ("long key", format!("get {long}\r\n"), Shape::Values),
            34 => ("long key", format!("get {k} {long}\r\n"), Shape::Values),
            35 => (
                "long key",
                format!("gets {k} {long} key1\r\n"),
                Shape::Values,
            ),
            36 => ("long key", format!("gat 0 {long}\r\n"), Shape::Values),
            37 => ("long key", format!("incr {long} 1\r\n"), Shape::Line),
            38 => ("long key", format!("delete {long}\r\n"), Shape::Line),
            39 => ("long key", format!("touch {long} 0\r\n"), Shape::Line),
            40 => (
                "long key",
                format!("delete {long} noreply\r\n"),
                Shape::UntilSync,
            ),
            // Bad data chunks: the declared length, then two bytes that are
            // not CRLF; what follows is parsed as the next command.
            _ => {
                let verb = *["set", "add", "append", "cas"]
                    .choose(&mut self.rng)
                    .expect("verbs");
                let n = self.rng.gen_range(0..6);
                let data = String::from_utf8(self.alnum(n + 2)).expect("ascii");
                let cas = if verb == "cas" { " 99" } else { "" };
                let nr = if self.rng.gen_bool(0.3) {
                    " noreply"
                } else {
                    ""
                };
                (
                    "bad data chunk",
                    format!("{verb} {k} 0 0 {n}{cas}{nr}\r\n{data}\r\n"),
                    Shape::UntilSync,
                )
            }
        };
        Step::text(format!("text malformed: {what}"), line.into_bytes(), shape)
    }

    /// Requests on the allow-list, so that every text predicate fires.
    fn text_allow_listed(&mut self) -> Step {
        let k = String::from_utf8(self.keys[self.rng.gen_range(0..37)].clone()).expect("ascii key");
        let long = "y".repeat(251);
        let nr = if self.rng.gen_bool(0.3) {
            " noreply"
        } else {
            ""
        };
        // A data block that is itself a command: memcached would run it.
        let smuggled = format!("delete {k}");
        let n = smuggled.len();
        let r = self.rng.gen_range(0..18);
        let (what, line, shape, closes) = match r {
            0 => (
                "bad <bytes>",
                format!("set {k} 0 0 abc{nr}\r\nhello\r\n"),
                Shape::Line,
                true,
            ),
            1 => (
                "bad <bytes>",
                format!("set {k} 0 0 -1{nr}\r\nhello\r\n"),
                Shape::Line,
                true,
            ),
            2 => (
                "bad <bytes>",
                format!("append {k} 0 0 5x{nr}\r\nhello\r\n"),
                Shape::Line,
                true,
            ),
            3 => (
                "swallowed",
                format!("set {long} 0 0 {n}{nr}\r\n{smuggled}\r\n"),
                Shape::UntilSync,
                false,
            ),
            4 => (
                "swallowed",
                format!("set {k} abc 0 {n}{nr}\r\n{smuggled}\r\n"),
                Shape::UntilSync,
                false,
            ),
            5 => (
                "swallowed",
                format!("add {k} 0 abc {n}{nr}\r\n{smuggled}\r\n"),
                Shape::UntilSync,
                false,
            ),
            6 => (
                "swallowed",
                format!("prepend {k} -1 0 {n}{nr}\r\n{smuggled}\r\n"),
                Shape::UntilSync,
                false,
            ),
            7 => (
                "swallowed",
                format!("cas {k} 0 0 {n} abc{nr}\r\n{smuggled}\r\n"),
                Shape::UntilSync,
                false,
            ),
            8 => (
                "strict32",
                format!("set {k} 4294967296 0 {n}{nr}\r\n{smuggled}\r\n"),
                Shape::UntilSync,
                false,
            ),
            9 => (
                "strict32",
                format!("set {k} 0 2147483648 {n}{nr}\r\n{smuggled}\r\n"),
                Shape::UntilSync,
                false,
            ),
            10 => (
                "strict32",
                format!("replace {k} 0 -2147483649 {n}{nr}\r\n{smuggled}\r\n"),
                Shape::UntilSync,
                false,
            ),
            11 => (
                "strict32",
                format!("touch {k} 2147483648{nr}\r\n"),
                Shape::UntilSync,
                false,
            ),
            12 => (
                "strict32",
                format!("gat 4294967296 {k}\r\n"),
                Shape::UntilSync,
                false,
            ),
            13 => (
                "strict32",
                format!("flush_all 2147483648{nr}\r\n"),
                Shape::UntilSync,
                false,
            ),
            14 => (
                "long line",
                format!("touch {k} 0{}\r\n", " ".repeat(2100)),
                Shape::Nothing,
                true,
            ),
            15 => (
                "long line",
                format!("delete {k}{}\r\n", " ".repeat(2100)),
                Shape::Nothing,
                true,
            ),
            _ => {
                let keys = vec!["y".repeat(250); 10].join(" ");
                (
                    "long line",
                    format!("gats 0 {keys}\r\n"),
                    Shape::Nothing,
                    true,
                )
            }
        };
        // A noreply bad <bytes> gets no reply before the close.
        let shape = if closes && !nr.is_empty() && r <= 2 {
            Shape::Nothing
        } else {
            shape
        };
        let step = Step::text(
            format!("text allow-listed: {what}"),
            line.into_bytes(),
            shape,
        );
        if closes {
            step.closing()
        } else {
            step
        }
    }

    fn gen_binary(&mut self) -> Step {
        let r = self.rng.gen_range(0..1000);
        match r {
            0..=169 => self.bin_get(),
            170..=209 => self.bin_multiget(),
            210..=379 => self.bin_store(),
            380..=449 => self.bin_append(),
            450..=519 => self.bin_delete(),
            520..=649 => self.bin_arith(),
            650..=699 => self.bin_touch(),
            700..=799 => self.bin_gat(),
            800..=819 => Step::binary("bin noop", noop(), Shape::Packet),
            820..=821 => self.bin_flush(),
            822..=824 => self.bin_quit(),
            825..=859 => self.bin_malformed(),
            860..=879 => self.bin_unknown_compared(),
            _ => self.bin_allow_listed(),
        }
    }

    fn quiet_shape(opcode: u8) -> Shape {
        if op::is_quiet(opcode) {
            Shape::UntilNoop
        } else {
            Shape::Packet
        }
    }

    fn bin_get(&mut self) -> Step {
        let opcode = *[op::GET, op::GETK, op::GETQ, op::GETKQ]
            .choose(&mut self.rng)
            .expect("ops");
        let key = self.key();
        let req = bin_req(opcode, self.rng.gen(), 0, &[], &key, &[]);
        Step::binary(
            format!("bin {}", op::name(opcode)),
            req,
            Self::quiet_shape(opcode),
        )
        .with_key(&key)
    }

    fn bin_multiget(&mut self) -> Step {
        let n = self.rng.gen_range(2..=6);
        let mut req = Vec::new();
        for _ in 0..n {
            let opcode = *[op::GETKQ, op::GETKQ, op::GETQ]
                .choose(&mut self.rng)
                .expect("ops");
            let key = self.key();
            req.extend(bin_req(opcode, self.rng.gen(), 0, &[], &key, &[]));
        }
        Step::binary("bin multi-get (getkq/getq…, noop)", req, Shape::UntilNoop)
    }

    fn bin_store(&mut self) -> Step {
        let opcode = *[
            op::SET,
            op::SET,
            op::ADD,
            op::REPLACE,
            op::SETQ,
            op::ADDQ,
            op::REPLACEQ,
        ]
        .choose(&mut self.rng)
        .expect("ops");
        let mut key = self.store_key();
        let value = match self.value() {
            Ok(v) => v,
            Err(huge) => {
                key = b"z".to_vec();
                huge
            }
        };
        let extras = set_extras(self.flags(), self.bin_exptime());
        let (ca, cr) = if self.rng.gen_bool(0.25) {
            self.pick_cas(&key)
        } else {
            (0, 0)
        };
        let opaque = self.rng.gen();
        let a = bin_req(opcode, opaque, ca, &extras, &key, &value);
        let r = bin_req(opcode, opaque, cr, &extras, &key, &value);
        let what = format!(
            "bin {}{}",
            op::name(opcode),
            if ca != 0 { " +cas" } else { "" }
        );
        Step::binary(what, a, Self::quiet_shape(opcode))
            .rend_bytes(r)
            .with_key(&key)
    }

    fn bin_append(&mut self) -> Step {
        let opcode = *[op::APPEND, op::PREPEND, op::APPENDQ, op::PREPENDQ]
            .choose(&mut self.rng)
            .expect("ops");
        let key = self.key();
        let value = match self.value() {
            Ok(v) => v,
            Err(_) => b"tail".to_vec(),
        };
        let (ca, cr) = if self.rng.gen_bool(0.2) {
            self.pick_cas(&key)
        } else {
            (0, 0)
        };
        let opaque = self.rng.gen();
        let a = bin_req(opcode, opaque, ca, &[], &key, &value);
        let r = bin_req(opcode, opaque, cr, &[], &key, &value);
        let what = format!(
            "bin {}{}",
            op::name(opcode),
            if ca != 0 { " +cas" } else { "" }
        );
        Step::binary(what, a, Self::quiet_shape(opcode))
            .rend_bytes(r)
            .with_key(&key)
    }

    fn bin_delete(&mut self) -> Step {
        let opcode = *[op::DELETE, op::DELETE, op::DELETEQ]
            .choose(&mut self.rng)
            .expect("ops");
        let key = self.key();
        let (ca, cr) = if self.rng.gen_bool(0.2) {
            self.pick_cas(&key)
        } else {
            (0, 0)
        };
        let opaque = self.rng.gen();
        let a = bin_req(opcode, opaque, ca, &[], &key, &[]);
        let r = bin_req(opcode, opaque, cr, &[], &key, &[]);
        Step::binary(
            format!("bin {}", op::name(opcode)),
            a,
            Self::quiet_shape(opcode),
        )
        .rend_bytes(r)
        .with_key(&key)
    }

    fn bin_arith(&mut self) -> Step {
        let opcode = *[op::INCREMENT, op::DECREMENT, op::INCREMENTQ, op::DECREMENTQ]
            .choose(&mut self.rng)
            .expect("ops");
        let key = self.arith_key();
        let create = self.rng.gen_bool(0.5);
        let initial: u64 = *[0, 1, 100, u64::MAX, 1 << 40]
            .choose(&mut self.rng)
            .expect("initial");
        let expiry = if create {
            match self.bin_exptime() {
                u32::MAX => 0,
                e => e,
            }
        } else {
            u32::MAX
        };
        let mut extras = self.delta().to_be_bytes().to_vec();
        extras.extend_from_slice(&initial.to_be_bytes());
        extras.extend_from_slice(&expiry.to_be_bytes());
        let req = bin_req(opcode, self.rng.gen(), 0, &extras, &key, &[]);
        let what = format!(
            "bin {}{}",
            op::name(opcode),
            if create { " +create" } else { "" }
        );
        let mut step = Step::binary(what, req, Self::quiet_shape(opcode)).with_key(&key);
        step.arith = Some(key);
        step
    }

    fn bin_touch(&mut self) -> Step {
        let key = self.key();
        let extras = self.bin_exptime().to_be_bytes();
        let req = bin_req(op::TOUCH, self.rng.gen(), 0, &extras, &key, &[]);
        Step::binary("bin touch", req, Shape::Packet).with_key(&key)
    }

    fn bin_gat(&mut self) -> Step {
        let opcode = *[op::GAT, op::GATQ, op::GATK, op::GATKQ]
            .choose(&mut self.rng)
            .expect("ops");
        let key = self.key();
        let extras = self.bin_exptime().to_be_bytes();
        let req = bin_req(opcode, self.rng.gen(), 0, &extras, &key, &[]);
        Step::binary(
            format!("bin {}", op::name(opcode)),
            req,
            Self::quiet_shape(opcode),
        )
        .with_key(&key)
    }

    fn bin_flush(&mut self) -> Step {
        let opcode = *[op::FLUSH, op::FLUSHQ].choose(&mut self.rng).expect("ops");
        let extras: &[u8] = if self.rng.gen_bool(0.5) { &[] } else { &[0; 4] };
        let req = bin_req(opcode, self.rng.gen(), 0, extras, &[], &[]);
        Step::binary(
            format!("bin {}", op::name(opcode)),
            req,
            Self::quiet_shape(opcode),
        )
    }

    fn bin_quit(&mut self) -> Step {
        if self.rng.gen_bool(0.5) {
            Step::binary(
                "bin quit",
                bin_req(op::QUIT, self.rng.gen(), 0, &[], &[], &[]),
                Shape::Packet,
            )
            .closing()
        } else {
            Step::binary(
                "bin quitq",
                bin_req(op::QUITQ, self.rng.gen(), 0, &[], &[], &[]),
                Shape::Nothing,
            )
            .closing()
        }
    }

    /// Packets memcached refuses with "Invalid arguments" (or "Unknown
    /// command" when key and extras overrun the body) and then closes.
    fn bin_malformed(&mut self) -> Step {
        let key = self.key();
        let o: u32 = self.rng.gen();
        let r = self.rng.gen_range(0..18);
        let (what, req) = match r {
            0 => (
                "get with extras",
                bin_req(op::GET, o, 0, &[0; 4], &key, &[]),
            ),
            1 => (
                "set without extras",
                bin_req(op::SET, o, 0, &[], &key, b"hello"),
            ),
            2 => (
                "set with 4 extras",
                bin_req(op::SET, o, 0, &[0; 4], &key, b"hello"),
            ),
            3 => (
                "incr with 8 extras",
                bin_req(op::INCREMENT, o, 0, &[0; 8], &key, &[]),
            ),
            4 => (
                "delete with extras",
                bin_req(op::DELETE, o, 0, &[0; 4], &key, &[]),
            ),
            5 => (
                "touch without extras",
                bin_req(op::TOUCH, o, 0, &[], &key, &[]),
            ),
            6 => (
                "gat with 8 extras",
                bin_req(op::GAT, o, 0, &[0; 8], &key, &[]),
            ),
            7 => ("noop with a key", bin_req(op::NOOP, o, 0, &[], &key, &[])),
            8 => (
                "version with extras",
                bin_req(op::VERSION, o, 0, &[0; 4], &[], &[]),
            ),
            9 => (
                "flush with 8 extras",
                bin_req(op::FLUSH, o, 0, &[0; 8], &[], &[]),
            ),
            10 => (
                "append with extras",
                bin_req(op::APPEND, o, 0, &[0; 8], &key, b"x"),
            ),
            11 => (
                "stat with extras",
                bin_req(op::STAT, o, 0, &[0; 4], &[], &[]),
            ),
            12 => (
                "get with a 251-byte key",
                bin_req(op::GET, o, 0, &[], &[b'k'; 251], &[]),
            ),
            13 => ("get with a value", bin_req(op::GET, o, 0, &[], &key, b"v")),
            14 => (
                "delete with a value",
                bin_req(op::DELETE, o, 0, &[], &key, b"v"),
            ),
            15 => (
                "quit with extras",
                bin_req(op::QUIT, o, 0, &[0; 4], &[], &[]),
            ),
            16 => ("getk without a key", bin_req(op::GETK, o, 0, &[], &[], &[])),
            _ => {
                // Key longer than the body: header says keylen 10, body 5.
                let mut req = bin_req(op::GET, o, 0, &[], b"0123456789", &[]);
                req[8..12].copy_from_slice(&5u32.to_be_bytes());
                ("key longer than the body", req)
            }
        };
        Step::binary(format!("bin malformed: {what}"), req, Shape::Packet).closing()
    }

    /// Opcodes memcached does not serve (VERBOSITY among them), without key
    /// or extras: memcached answers 0x81 and stays in step too, so these are
    /// compared.
    fn bin_unknown_compared(&mut self) -> Step {
        let opcode = *[0x1fu8, 0x30, 0x45, 0xfe, op::VERBOSITY, op::SASL_LIST_MECHS]
            .choose(&mut self.rng)
            .expect("ops");
        let value: &[u8] = if opcode != op::SASL_LIST_MECHS && self.rng.gen_bool(0.5) {
            b"some value bytes"
        } else {
            &[]
        };
        let req = bin_req(opcode, self.rng.gen(), 0, &[], &[], value);
        Step::binary(
            format!("bin unknown {} (no key/extras)", op::name(opcode)),
            req,
            Shape::UntilNoop,
        )
    }

    fn bin_allow_listed(&mut self) -> Step {
        let key = self.key();
        let o: u32 = self.rng.gen();
        let r = self.rng.gen_range(0..8);
        match r {
            0 => Step::binary(
                "bin version",
                bin_req(op::VERSION, o, 0, &[], &[], &[]),
                Shape::Packet,
            ),
            1 => Step::binary(
                "bin stat",
                bin_req(op::STAT, o, 0, &[], &[], &[]),
                Shape::UntilStatEnd,
            ),
            2 => Step::binary(
                "bin verbosity with extras",
                bin_req(op::VERBOSITY, o, 0, &0u32.to_be_bytes(), &[], &[]),
                Shape::UntilNoop,
            ),
            3 => Step::binary(
                "bin gete",
                bin_req(op::GETE, o, 0, &[], &key, &[]),
                Shape::UntilNoop,
            )
            .with_key(&key),
            4 => Step::binary(
                "bin geteq",
                bin_req(op::GETEQ, o, 0, &[], &key, &[]),
                Shape::UntilNoop,
            )
            .with_key(&key),
            5 => Step::binary(
                "bin unknown 0x30 with key",
                bin_req(0x30, o, 0, &[], &key, b"value"),
                Shape::UntilNoop,
            ),
            6 => Step::binary(
                "bin unknown 0x45 with extras",
                bin_req(0x45, o, 0, &[1, 2, 3, 4], &[], &[]),
                Shape::UntilNoop,
            ),
            _ => Step::binary(
                "bin unknown 0xfe with key and extras",
                bin_req(0xfe, o, 0, &[0; 8], &key, b"v"),
                Shape::UntilNoop,
            ),
        }
    }
}

#[test]
fn differential_against_memcached() {
    differential(&[]);
}

/// l1-l2 (DESIGN §8): the same stream; memcached B (rend's L1) is flushed
/// directly every `L1_FLUSH_EVERY` commands, so L2 really serves reads.
#[test]
fn differential_against_memcached_l1_l2() {
    differential_in(Mode::L1L2, &[]);
}

#[test]
fn differential_against_memcached_l1_l2_chunked() {
    differential_in(Mode::L1L2, &["--chunked"]);
}

/// The batch port (l1-l2-batch) of the same rend: L1 is never back-filled, so
/// nearly every read is L2's.
#[test]
fn differential_against_memcached_l1_l2_batch_port() {
    differential_in(Mode::L1L2Batch, &[]);
}

#[test]
fn differential_against_memcached_chunked() {
    differential(&["--chunked"]);
}

#[test]
fn differential_against_memcached_chunked_tiny_chunks() {
    differential(&["--chunked", "--chunk-size", "8"]);
}

/// The prologues' storage requests: a text command line ending in its
/// `<bytes>` `n` (then n value bytes), and a binary request on key "z".
fn prologue_text(line: &str, n: usize) -> Step {
    let mut req = format!("{line} {n}\r\n").into_bytes();
    req.extend(std::iter::repeat_n(b'v', n));
    req.extend_from_slice(b"\r\n");
    Step::text(format!("prologue: {line} {n}"), req, Shape::Line)
}

fn prologue_binary(opcode: u8, flags: Option<u32>, n: usize) -> Step {
    let extras = flags.map(|f| set_extras(f, 0)).unwrap_or_default();
    let req = bin_req(opcode, 7, 0, &extras, b"z", &vec![b'w'; n]);
    let shape = if op::is_quiet(opcode) {
        Shape::UntilNoop
    } else {
        Shape::Packet
    };
    Step::binary(
        format!("prologue: bin {} {n}", op::name(opcode)),
        req,
        shape,
    )
    .with_key(b"z")
}

/// l1-l2 without chunking: storage requests at rend's value limit (1,048,516
/// bytes, README 6), where memcached's item limit depends on the key's
/// length and the flags and rend's does not; run before the random stream.
/// A value at the limit does not fit memcached B with L1's 9-byte cas header:
/// L2 alone keeps it and serves it.
fn l1_l2_prologue() -> Vec<Step> {
    let text = prologue_text;
    let binary = prologue_binary;
    let long_key = format!("set {} 0 0", "l".repeat(250));
    vec![
        // At the limit, 1-byte key, flags 0: both store; read back (from L2).
        text("set z 0 0", PLAIN_MAX_VALUE),
        Step::text("prologue: get z", b"get z\r\n".to_vec(), Shape::Values),
        Step::text("prologue: gets z", b"gets z\r\n".to_vec(), Shape::Values),
        // Past it: both refuse.
        text("set z 0 0", PLAIN_MAX_VALUE + 1),
        binary(op::ADD, Some(0), PLAIN_MAX_VALUE + 1),
        // memcached refuses for the flags or the key length; rend stores.
        text("set z 1 0", PLAIN_MAX_VALUE),
        binary(op::SET, Some(1), 1_048_513),
        text(&long_key, 1_048_300),
        // Within both limits with flags; then joined past memcached's.
        text("set z 5 0", 1_048_510),
        text("append z 0 0", 4),
        // Joined past rend's limit too: both refuse.
        text("set z 0 0", 1_048_500),
        text("append z 0 0", 60),
    ]
}

/// Chunked mode: storage requests on both sides of memcached's item limit
/// (a 1-byte key takes 1,048,516 value bytes, 1,048,512 with flags), run
/// before the random stream.
fn chunked_prologue() -> Vec<Step> {
    let text = prologue_text;
    let binary = prologue_binary;
    let get = Step::text("prologue: get z", b"get z\r\n".to_vec(), Shape::Values);
    vec![
        // Above: rend stores, memcached refuses.
        text("set z 0 0", 1 << 20),
        // At the limit: compared.
        text("set z 0 0", 1_048_516),
        get,
        // Joined above the limit: rend appends, memcached refuses.
        text("append z 0 0", 60),
        binary(op::SET, Some(1), 1_048_513),
        text("set z 5 0", 1_048_512),
        binary(op::APPENDQ, None, 1),
        binary(op::ADD, Some(0), 1_048_517),
    ]
}

/// l1-l2: commands between two direct flushes of rend's L1.
const L1_FLUSH_EVERY: usize = 40;

/// The seeded stream against rend l1-only started with `extra` flags.
fn differential(extra: &[&str]) {
    differential_in(Mode::L1Only, extra);
}

/// rend's own counter `name`, from its text `stats`.
fn rend_stat(rend: &Rend, name: &str) -> u64 {
    let mut c = rend.connect();
    c.send(b"stats\r\n");
    let reply = read_reply(&mut c, Shape::Stats).unwrap_or_else(|e| e);
    let stats = parse_stats(Proto::Text, &reply).unwrap_or_else(|e| panic!("rend stats: {e}"));
    stats
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or_else(|| panic!("no numeric stat {name} in {}", show(&reply)))
}

/// The seeded stream against rend in `mode` started with `extra` flags.
fn differential_in(mode: Mode, extra: &[&str]) {
    let started = Instant::now();
    let mc_a = Memcached::start();
    let mc_b = Memcached::start();
    // Declared before rend, so it outlives rend.
    let l2 = tempfile::tempdir().expect("temp dir");
    let rend = match mode {
        Mode::L1Only => Rend::start(&mc_b, extra),
        Mode::L1L2 | Mode::L1L2Batch => Rend::start_two_tier(&mc_b, l2.path(), extra),
    };
    // rend's L1 directly, for the flushes.
    let mut l1_direct = mc_b.connect();
    let mut l1_flushes = 0;
    let mut run = Run::new(mode, &mc_a, &mc_b, &rend);
    run.chunked = extra.contains(&"--chunked");
    run.value_limit = match (run.chunked, mode.two_tier()) {
        (true, _) => Some(CHUNKED_MAX_VALUE),
        (false, true) => Some(PLAIN_MAX_VALUE),
        (false, false) => None,
    };
    let mut i = 0;
    if run.value_limit.is_some() {
        // Values around memcached's limit, so that `AboveMemcachedLimit`
        // surely fires (the random stream seldom reaches there).
        let prologue = if run.chunked {
            chunked_prologue()
        } else {
            l1_l2_prologue()
        };
        for mut step in prologue {
            step.above_limit = run.above_memcached_limit(&step);
            run.track_keys(&step);
            run.run_step(i, step);
            i += 1;
        }
    }
    let steps = env_or("DIFF_STEPS", STEPS);
    for n in 0..steps {
        if mode.two_tier() && n % L1_FLUSH_EVERY == L1_FLUSH_EVERY - 1 {
            assert_eq!(l1_direct.line(b"flush_all\r\n"), "OK\r\n", "flushing L1");
            l1_flushes += 1;
        }
        let step = run.gen_step();
        run.run_step(i, step);
        i += 1;
    }
    let elapsed = started.elapsed();

    println!(
        "differential ({mode:?} {extra:?}): {steps} commands, {} compared, {} cas pairs, {} incr wraps, {} decr floors, {:.1?}",
        run.compared,
        run.fwd.len() - 1,
        run.wraps,
        run.floors,
        elapsed
    );
    println!("command mix:");
    for (what, n) in &run.mix {
        println!("  {n:5}  {what}");
    }
    println!("allow-list predicates fired:");
    for a in Allowed::ALL {
        let n = run.fired.get(&a).copied().unwrap_or(0);
        println!("  {n:5}  {a:?} [{:?}] — {}", a.handling(mode), a.bullet());
    }
    for a in Allowed::ALL {
        let n = run.fired.get(&a).copied().unwrap_or(0);
        if a == Allowed::AboveMemcachedLimit && run.value_limit.is_none() {
            assert_eq!(
                n, 0,
                "{a:?} fired where memcached decides what is too large"
            );
            continue;
        }
        assert!(
            n >= 3,
            "allow-list predicate {a:?} fired only {n} times: the stream must exercise it"
        );
    }
    assert!(
        run.fwd.len() > 100,
        "too few cas values compared: {}",
        run.fwd.len()
    );
    assert!(
        run.wraps > 0 && run.floors > 0,
        "the stream must wrap an incr past 2^64 and floor a decr at 0"
    );
    if mode.two_tier() {
        let (gets, hits, backfills) = (
            rend_stat(&rend, "l2_gets"),
            rend_stat(&rend, "l2_get_hits"),
            rend_stat(&rend, "l1_backfills"),
        );
        println!(
            "L1 flushed directly {l1_flushes} times; L2: {gets} reads, {hits} hits; {backfills} L1 back-fills"
        );
        assert!(hits > 0, "L2 served no read (l2_get_hits 0 of {gets})");
        if mode == Mode::L1L2 {
            assert!(backfills > 0, "no read back-filled L1");
        } else {
            assert_eq!(backfills, 0, "the batch port back-filled L1");
        }
    }
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}

// ============================================================================
// FORMER DIVERGENCES, now fixed: minimal reproductions replayed against both
// sides on every run, so they stay fixed.
//
//  - Text cas whose data block memcached finds too large (but within rend's
//    own limit): memcached refuses and keeps the item. rend used to send a
//    binary SET with the cas, whose refusal makes memcached unlink the key;
//    it now sends a binary REPLACE with the cas (memcached treats any
//    storage opcode with a cas as cas, and drops the item only for SET).
//  - Text cas with cas unique 0 and such a data block: memcached answers
//    "SERVER_ERROR object too large for cache"; rend's substitute request
//    used to carry an empty value and so answered NOT_FOUND/EXISTS; it now
//    carries the real value with a cas no item can have.
//  - `verbosity` with a level >= 2^32: memcached keeps the low 32 bits and
//    answers OK; rend now does the same.
//
// KNOWN DIVERGENCE, kept out of the stream (see `text_store`): text
// append/prepend with nonzero flags and a data block within 4 bytes under
// memcached's limit. memcached sizes the new item with the flags (which it
// then ignores) and answers "SERVER_ERROR object too large for cache";
// binary APPEND/PREPEND carries no flags, so through rend memcached sizes it
// without them and stores it (or answers NOT_STORED for a missing key).
// Matching it would need rend to know memcached's exact item-size rule.
// ============================================================================

#[test]
fn former_divergences_stay_fixed() {
    let big = |line: &str, n: usize| {
        let mut req = line.as_bytes().to_vec();
        req.extend(std::iter::repeat_n(b'a', n));
        req.extend_from_slice(b"\r\n");
        req
    };
    let repros: Vec<(&str, Vec<Step>)> = vec![
        (
            "cas of a too-large value keeps the item",
            vec![
                Step::text("set", b"set key1 0 0 1\r\n1\r\n".to_vec(), Shape::Line),
                Step::text(
                    "cas",
                    big("cas key1 0 0 1048516 999\r\n", 1_048_516),
                    Shape::Line,
                ),
                Step::text("get", b"get key1\r\n".to_vec(), Shape::Values),
            ],
        ),
        (
            "cas 0 of a too-large value",
            vec![Step::text(
                "cas",
                big("cas key2 0 0 1048516 0\r\n", 1_048_516),
                Shape::Line,
            )],
        ),
        (
            "verbosity level >= 2^32",
            vec![Step::text(
                "verbosity",
                b"verbosity 4294967296\r\n".to_vec(),
                Shape::Line,
            )],
        ),
    ];
    let mut open = Vec::new();
    for (name, steps) in repros {
        let mc_a = Memcached::start();
        let mc_b = Memcached::start();
        let rend = Rend::start(&mc_b, &[]);
        let (mut a, mut r) = (mc_a.connect(), rend.connect());
        for step in steps {
            let ra = exchange(&mut a, &step.req_a, step.shape, false).reply;
            let rr = exchange(&mut r, &step.req_r, step.shape, false).reply;
            if ra != rr {
                open.push(format!(
                    "{name}: {}\n    memcached: {}\n    rend:      {}",
                    show(&step.req_a),
                    show(&ra),
                    show(&rr)
                ));
                break;
            }
        }
    }
    assert!(open.is_empty(), "diverging again:\n  {}", open.join("\n  "));
}
