//! memcached's binary protocol: the packet format, requests as memcached
//! 1.6.18 validates them, and replies with its status codes and messages.
//!
//! Lengths are checked before anything is buffered: key and extras must fit
//! in the body, a key is at most 250 bytes, and a value over the limit is
//! answered "Too large." and discarded as it arrives. Unknown opcodes get
//! status 0x81 with their whole body discarded, so the connection stays in
//! step (memcached loses sync there when the packet carries a key).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::out::Sink;
use super::{
    Command, ErrorReply, Frame, FrameError, Invalid, Limits, Request, Response, StoreMode, Value,
    MAX_KEY_LEN,
};

pub const REQ_MAGIC: u8 = 0x80;
pub const RES_MAGIC: u8 = 0x81;
pub const HEADER_LEN: usize = 24;

pub mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const VERBOSITY: u8 = 0x1b;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
    /// Rend's get with expiry: extras are flags and absolute expiry.
    pub const GETE: u8 = 0x40;
    pub const GETEQ: u8 = 0x41;
}

pub mod status {
    pub const OK: u16 = 0x0000;
    pub const KEY_ENOENT: u16 = 0x0001;
    pub const KEY_EEXISTS: u16 = 0x0002;
    pub const E2BIG: u16 = 0x0003;
    pub const EINVAL: u16 = 0x0004;
    pub const NOT_STORED: u16 = 0x0005;
    pub const DELTA_BADVAL: u16 = 0x0006;
    pub const UNKNOWN_COMMAND: u16 = 0x0081;
    pub const ENOMEM: u16 = 0x0082;
    pub const EINTERNAL: u16 = 0x0084;
    pub const ETMPFAIL: u16 = 0x0086;
}

/// memcached's message body for an error status.
pub fn status_message(code: u16) -> &'static [u8] {
    match code {
        status::KEY_ENOENT => b"Not found",
        status::KEY_EEXISTS => b"Data exists for key.",
        status::E2BIG => b"Too large.",
        status::EINVAL => b"Invalid arguments",
        status::NOT_STORED => b"Not stored.",
        status::DELTA_BADVAL => b"Non-numeric server-side value for incr or decr",
        status::UNKNOWN_COMMAND => b"Unknown command",
        status::ENOMEM => b"Out of memory",
        status::EINTERNAL => b"Internal error",
        status::ETMPFAIL => b"Temporary failure",
        _ => b"",
    }
}

/// One packet, request or response. `status` is the vbucket field in
/// requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    pub magic: u8,
    pub opcode: u8,
    pub status: u16,
    pub opaque: u32,
    pub cas: u64,
    pub extras: Bytes,
    pub key: Bytes,
    pub value: Bytes,
}

/// The header fields, read without consuming anything.
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

fn read_header(buf: &[u8]) -> Header {
    let b = |i: usize| buf[i];
    Header {
        magic: b(0),
        opcode: b(1),
        keylen: usize::from(u16::from_be_bytes([b(2), b(3)])),
        extlen: usize::from(b(4)),
        status: u16::from_be_bytes([b(6), b(7)]),
        bodylen: u32::from_be_bytes([b(8), b(9), b(10), b(11)]) as usize,
        opaque: u32::from_be_bytes([b(12), b(13), b(14), b(15)]),
        cas: u64::from_be_bytes([b(16), b(17), b(18), b(19), b(20), b(21), b(22), b(23)]),
    }
}

/// A packet's header fields other than the lengths, which [`Head::write`]
/// computes.
#[derive(Clone, Copy, Debug)]
pub struct Head {
    pub magic: u8,
    pub opcode: u8,
    pub status: u16,
    pub opaque: u32,
    pub cas: u64,
}

impl Head {
    /// A request's header: no status.
    pub fn request(opcode: u8, opaque: u32, cas: u64) -> Head {
        Head {
            magic: REQ_MAGIC,
            opcode,
            status: 0,
            opaque,
            cas,
        }
    }

    /// The header, extras and key of a packet whose value (`value_len`
    /// bytes) the caller writes next.
    pub fn write<S: Sink + ?Sized>(
        &self,
        out: &mut S,
        extras: &[u8],
        key: &[u8],
        value_len: usize,
    ) {
        let body = (extras.len() + key.len() + value_len) as u32;
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.magic;
        h[1] = self.opcode;
        h[2..4].copy_from_slice(&(key.len() as u16).to_be_bytes());
        h[4] = extras.len() as u8;
        h[6..8].copy_from_slice(&self.status.to_be_bytes());
        h[8..12].copy_from_slice(&body.to_be_bytes());
        h[12..16].copy_from_slice(&self.opaque.to_be_bytes());
        h[16..24].copy_from_slice(&self.cas.to_be_bytes());
        out.emit(&h);
        out.emit(extras);
        out.emit(key);
    }

    /// A whole packet, value copied.
    pub fn write_packet(&self, out: &mut BytesMut, extras: &[u8], key: &[u8], value: &[u8]) {
        out.reserve(HEADER_LEN + extras.len() + key.len() + value.len());
        self.write(out, extras, key, value.len());
        out.put_slice(value);
    }

    /// A whole packet whose value a sink may share rather than copy.
    pub fn write_shared<S: Sink + ?Sized>(
        &self,
        out: &mut S,
        extras: &[u8],
        key: &[u8],
        value: &Bytes,
    ) {
        self.write(out, extras, key, value.len());
        out.emit_shared(value);
    }
}

impl Packet {
    pub fn encode(&self, out: &mut BytesMut) {
        let head = Head {
            magic: self.magic,
            opcode: self.opcode,
            status: self.status,
            opaque: self.opaque,
            cas: self.cas,
        };
        head.write_packet(out, &self.extras, &self.key, &self.value);
    }
}

/// Decode one whole packet of either magic, refusing bodies over `max_body`
/// before buffering them.
pub fn decode_packet(buf: &mut BytesMut, max_body: usize) -> Result<Option<Packet>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let h = read_header(buf);
    if h.magic != REQ_MAGIC && h.magic != RES_MAGIC {
        return Err(FrameError::close("bad magic byte"));
    }
    if h.keylen + h.extlen > h.bodylen {
        return Err(FrameError::close("key and extras longer than the body"));
    }
    if h.bodylen > max_body {
        return Err(FrameError::close("packet body too large"));
    }
    if buf.len() < HEADER_LEN + h.bodylen {
        buf.reserve(HEADER_LEN + h.bodylen - buf.len());
        return Ok(None);
    }
    let mut p = buf.split_to(HEADER_LEN + h.bodylen).freeze();
    p.advance(HEADER_LEN);
    let extras = p.split_to(h.extlen);
    let key = p.split_to(h.keylen);
    Ok(Some(Packet {
        magic: h.magic,
        opcode: h.opcode,
        status: h.status,
        opaque: h.opaque,
        cas: h.cas,
        extras,
        key,
        value: p,
    }))
}

/// Extras of a set/add/replace: flags, then the exptime as the wire reads it.
pub fn store_extras(flags: u32, exptime: i64) -> [u8; 8] {
    let mut extras = [0u8; 8];
    extras[..4].copy_from_slice(&flags.to_be_bytes());
    extras[4..].copy_from_slice(&super::expiry::to_wire(exptime).to_be_bytes());
    extras
}

/// Extras of an incr/decr: delta, initial value and exptime; without
/// `create` the exptime is 0xffffffff, which memcached reads as "do not
/// create a missing key" (the text protocol's behaviour).
pub fn arith_extras(delta: u64, create: Option<(u64, i64)>) -> [u8; 20] {
    let mut extras = [0u8; 20];
    extras[..8].copy_from_slice(&delta.to_be_bytes());
    let (initial, expiry) = match create {
        Some((initial, exptime)) => (initial, super::expiry::to_wire(exptime)),
        None => (0, u32::MAX),
    };
    extras[8..16].copy_from_slice(&initial.to_be_bytes());
    extras[16..].copy_from_slice(&expiry.to_be_bytes());
    extras
}

/// The quiet form of an opcode suppresses its success reply (gets: its miss).
pub fn is_quiet(opcode: u8) -> bool {
    matches!(
        opcode,
        op::GETQ
            | op::GETKQ
            | op::SETQ
            | op::ADDQ
            | op::REPLACEQ
            | op::DELETEQ
            | op::INCREMENTQ
            | op::DECREMENTQ
            | op::QUITQ
            | op::FLUSHQ
            | op::APPENDQ
            | op::PREPENDQ
            | op::GATQ
            | op::GATKQ
            | op::GETEQ
    )
}

/// Opcodes whose replies carry the key.
fn returns_key(opcode: u8) -> bool {
    matches!(opcode, op::GETK | op::GETKQ | op::GATK | op::GATKQ)
}

#[derive(Debug)]
enum State {
    Header,
    Swallow { remaining: usize },
}

/// Incremental decoder of binary requests.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
}

fn error_packet(h: &Header, code: u16) -> Bytes {
    let mut out = BytesMut::new();
    let head = Head {
        magic: RES_MAGIC,
        opcode: h.opcode,
        status: code,
        opaque: h.opaque,
        cas: 0,
    };
    head.write_packet(&mut out, &[], &[], status_message(code));
    out.freeze()
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Header,
        }
    }

    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, FrameError> {
        if let State::Swallow { remaining } = &mut self.state {
            let n = (*remaining).min(buf.len());
            buf.advance(n);
            *remaining -= n;
            if *remaining > 0 {
                return Ok(None);
            }
            self.state = State::Header;
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let h = read_header(buf);
        if h.magic != REQ_MAGIC {
            return Err(FrameError::close("bad magic byte"));
        }
        // memcached's first check, before anything is subtracted.
        if h.keylen + h.extlen > h.bodylen {
            return Err(FrameError {
                reason: "key and extras longer than the body",
                reply: Some(error_packet(&h, status::UNKNOWN_COMMAND)),
            });
        }
        let frame = Frame::Binary {
            opcode: h.opcode,
            opaque: h.opaque,
        };
        let invalid_args = || FrameError {
            reason: "invalid binary request",
            reply: Some(error_packet(&h, status::EINVAL)),
        };
        if h.keylen > MAX_KEY_LEN {
            return Err(invalid_args());
        }
        let (k, e, b) = (h.keylen, h.extlen, h.bodylen);
        let valid = match h.opcode {
            op::VERSION | op::NOOP | op::QUIT | op::QUITQ => e == 0 && k == 0 && b == 0,
            op::FLUSH | op::FLUSHQ => k == 0 && b == e && (e == 0 || e == 4),
            op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ => {
                e == 8 && k != 0
            }
            op::GET | op::GETQ | op::GETK | op::GETKQ | op::GETE | op::GETEQ => {
                e == 0 && k > 0 && b == k
            }
            op::DELETE | op::DELETEQ => e == 0 && k > 0 && b == k,
            op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => {
                e == 20 && k > 0 && b == k + e
            }
            op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => e == 0 && k > 0,
            op::STAT => e == 0 && b == k,
            op::TOUCH | op::GAT | op::GATQ | op::GATK | op::GATKQ => e == 4 && k > 0 && b == k + 4,
            _ => {
                // Unknown (VERBOSITY 0x1b too: memcached 1.6.18 does not
                // dispatch it): answer and discard the whole body.
                buf.advance(HEADER_LEN);
                self.state = State::Swallow { remaining: b };
                return Ok(Some(Request {
                    cmd: Command::Invalid(Invalid::UnknownCommand),
                    frame,
                }));
            }
        };
        if !valid {
            return Err(invalid_args());
        }
        let value_len = b - k - e;
        if value_len > self.limits.max_value {
            // Too large: wait for the key, answer, discard the value unread.
            if buf.len() < HEADER_LEN + e + k {
                return Ok(None);
            }
            buf.advance(HEADER_LEN + e);
            let key = buf.split_to(k).freeze();
            self.state = State::Swallow {
                remaining: value_len,
            };
            let delete = matches!(h.opcode, op::SET | op::SETQ).then_some(key);
            return Ok(Some(Request {
                cmd: Command::Invalid(Invalid::TooLarge { delete }),
                frame,
            }));
        }
        if buf.len() < HEADER_LEN + b {
            buf.reserve(HEADER_LEN + b - buf.len());
            return Ok(None);
        }
        let mut body = buf.split_to(HEADER_LEN + b).freeze();
        body.advance(HEADER_LEN);
        let extras = body.split_to(e);
        let key = body.split_to(k);
        let value = body;
        let u32_at =
            |i: usize| u32::from_be_bytes([extras[i], extras[i + 1], extras[i + 2], extras[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        let cmd = match h.opcode {
            op::GET | op::GETQ | op::GETK | op::GETKQ => Command::Get {
                keys: vec![key],
                touch: None,
            },
            op::GAT | op::GATQ | op::GATK | op::GATKQ => Command::Get {
                keys: vec![key],
                touch: Some(i64::from(u32_at(0))),
            },
            op::GETE | op::GETEQ => Command::GetE { key },
            op::TOUCH => Command::Touch {
                key,
                exptime: i64::from(u32_at(0)),
            },
            op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ => {
                let mode = match h.opcode {
                    op::SET | op::SETQ => StoreMode::Set,
                    op::ADD | op::ADDQ => StoreMode::Add,
                    _ => StoreMode::Replace,
                };
                Command::Store {
                    mode,
                    key,
                    flags: u32_at(0),
                    exptime: i64::from(u32_at(4)),
                    cas: h.cas,
                    value,
                }
            }
            op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ => Command::Store {
                mode: if matches!(h.opcode, op::APPEND | op::APPENDQ) {
                    StoreMode::Append
                } else {
                    StoreMode::Prepend
                },
                key,
                flags: 0,
                exptime: 0,
                cas: h.cas,
                value,
            },
            op::DELETE | op::DELETEQ => Command::Delete { key, cas: h.cas },
            op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => {
                let expiry = u32_at(16);
                Command::Arith {
                    key,
                    incr: matches!(h.opcode, op::INCREMENT | op::INCREMENTQ),
                    delta: u64_at(0),
                    create: (expiry != u32::MAX).then(|| (u64_at(8), i64::from(expiry))),
                }
            }
            op::FLUSH | op::FLUSHQ => Command::Flush {
                delay: if e == 4 { i64::from(u32_at(0)) } else { 0 },
            },
            op::STAT => Command::Stats {
                arg: (!key.is_empty()).then_some(key),
            },
            op::NOOP => Command::Noop,
            op::VERSION => Command::Version,
            _ => Command::Quit,
        };
        Ok(Some(Request { cmd, frame }))
    }
}

/// Write the reply to a binary request as memcached would.
pub fn encode_response<S: Sink + ?Sized>(req: &Request, resp: &Response, out: &mut S) {
    let Frame::Binary { opcode, opaque } = req.frame else {
        return;
    };
    let quiet = is_quiet(opcode);
    let head = |status: u16, cas: u64| Head {
        magic: RES_MAGIC,
        opcode,
        status,
        opaque,
        cas,
    };
    let ok = |out: &mut S, cas: u64, extras: &[u8], key: &[u8], value: &[u8]| {
        let h = head(status::OK, cas);
        h.write(out, extras, key, value.len());
        out.emit(value);
    };
    let fail = |out: &mut S, code: u16| {
        let text = status_message(code);
        head(code, 0).write(out, &[], &[], text.len());
        out.emit(text);
    };
    let is_get = matches!(req.cmd, Command::Get { .. } | Command::GetE { .. });
    match resp {
        Response::Values(values) => match values.first() {
            Some(v) => {
                let key: &[u8] = if returns_key(opcode) { &v.key } else { &[] };
                head(status::OK, v.cas).write_shared(out, &v.flags.to_be_bytes(), key, &v.data);
            }
            None => miss(req, opcode, opaque, quiet, out),
        },
        Response::ValueE { value, expiry } => {
            let mut extras = [0u8; 8];
            extras[..4].copy_from_slice(&value.flags.to_be_bytes());
            extras[4..].copy_from_slice(&expiry.to_be_bytes());
            head(status::OK, value.cas).write_shared(out, &extras, &[], &value.data);
        }
        Response::NotFound if is_get => miss(req, opcode, opaque, quiet, out),
        Response::Stored { cas } if !quiet => ok(out, *cas, &[], &[], &[]),
        Response::Deleted | Response::Ok if !quiet => ok(out, 0, &[], &[], &[]),
        Response::Stored { .. } | Response::Deleted | Response::Ok => {}
        Response::Touched { flags, cas } => ok(out, *cas, &flags.to_be_bytes(), &[], &[]),
        Response::Numeric { value, cas } if !quiet => ok(out, *cas, &[], &[], &value.to_be_bytes()),
        Response::Numeric { .. } => {}
        Response::NotStored => fail(
            out,
            match opcode {
                op::ADD | op::ADDQ => status::KEY_EEXISTS,
                op::REPLACE | op::REPLACEQ => status::KEY_ENOENT,
                _ => status::NOT_STORED,
            },
        ),
        Response::Exists => fail(out, status::KEY_EEXISTS),
        Response::NotFound => fail(out, status::KEY_ENOENT),
        Response::Version(v) => ok(out, 0, &[], &[], v),
        Response::Stats(stats) => {
            for (k, v) in stats {
                ok(out, 0, &[], k, v);
            }
            ok(out, 0, &[], &[], &[]);
        }
        // A text reply has no binary form; only text requests get one.
        Response::Raw(_) => fail(out, status::UNKNOWN_COMMAND),
        Response::Error(e) => {
            let (code, text): (u16, &[u8]) = match e {
                ErrorReply::UnknownCommand => (status::UNKNOWN_COMMAND, b""),
                ErrorReply::Client(_) | ErrorReply::BadDataChunk => (status::EINVAL, b""),
                ErrorReply::TooLarge => (status::E2BIG, b""),
                ErrorReply::NonNumeric => (status::DELTA_BADVAL, b""),
                ErrorReply::OutOfMemory => (status::ENOMEM, b""),
                ErrorReply::Server(m) => (status::ETMPFAIL, m),
                ErrorReply::Status(code, m) => (*code, m),
            };
            let text = if text.is_empty() {
                status_message(code)
            } else {
                text
            };
            head(code, 0).write(out, &[], &[], text.len());
            out.emit(text);
        }
        Response::Nothing => {}
    }
}

fn miss<S: Sink + ?Sized>(req: &Request, opcode: u8, opaque: u32, quiet: bool, out: &mut S) {
    if quiet {
        return;
    }
    let head = Head {
        magic: RES_MAGIC,
        opcode,
        status: status::KEY_ENOENT,
        opaque,
        cas: 0,
    };
    if returns_key(opcode) {
        // memcached 1.6.18 sends the key once, in the key field (the body is
        // the key and nothing else).
        let key = req.cmd.keys().first().map(|k| &k[..]).unwrap_or(&[]);
        head.write(out, &[], key, 0);
    } else {
        let text = status_message(status::KEY_ENOENT);
        head.write(out, &[], &[], text.len());
        out.emit(text);
    }
}

/// Write a binary request. The frame's opcode decides the variant (quiet,
/// with key); refused requests write nothing.
pub fn encode_request(req: &Request, out: &mut BytesMut) {
    let Frame::Binary { opcode, opaque } = req.frame else {
        return;
    };
    let w = |out: &mut BytesMut, cas: u64, extras: &[u8], key: &[u8], value: &[u8]| {
        let head = Head::request(opcode, opaque, cas);
        head.write_packet(out, extras, key, value)
    };
    let wire = super::expiry::to_wire;
    match &req.cmd {
        Command::Get { keys, touch } => {
            let key = keys.first().map(|k| &k[..]).unwrap_or(&[]);
            match touch {
                Some(e) => w(out, 0, &wire(*e).to_be_bytes(), key, &[]),
                None => w(out, 0, &[], key, &[]),
            }
        }
        Command::GetE { key } => w(out, 0, &[], key, &[]),
        Command::Store {
            mode,
            key,
            flags,
            exptime,
            cas,
            value,
        } => match mode {
            StoreMode::Append | StoreMode::Prepend => w(out, *cas, &[], key, value),
            _ => w(out, *cas, &store_extras(*flags, *exptime), key, value),
        },
        Command::Delete { key, cas } => w(out, *cas, &[], key, &[]),
        Command::Touch { key, exptime } => w(out, 0, &wire(*exptime).to_be_bytes(), key, &[]),
        Command::Arith {
            key, delta, create, ..
        } => w(out, 0, &arith_extras(*delta, *create), key, &[]),
        Command::Flush { delay } => {
            if *delay == 0 {
                w(out, 0, &[], &[], &[])
            } else {
                w(out, 0, &wire(*delay).to_be_bytes(), &[], &[])
            }
        }
        Command::Verbosity { level } => w(out, 0, &level.to_be_bytes(), &[], &[]),
        Command::Stats { arg } => w(out, 0, &[], arg.as_deref().unwrap_or(&[]), &[]),
        Command::Noop | Command::Version | Command::Quit => w(out, 0, &[], &[], &[]),
        Command::Invalid(_) | Command::Admin { .. } => {}
    }
}

/// The neutral reply a response packet carries, read by its opcode and
/// status. A stat reply is one packet per statistic: this reads one
/// (terminator: an empty `Stats`).
pub fn response_from_packet(p: &Packet) -> Response {
    let u32_extra = |i: usize| {
        p.extras
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    if p.status != status::OK {
        let opcode = p.opcode;
        return match p.status {
            status::KEY_ENOENT => match opcode {
                op::GET
                | op::GETQ
                | op::GETK
                | op::GETKQ
                | op::GAT
                | op::GATQ
                | op::GATK
                | op::GATKQ => Response::Values(Vec::new()),
                op::REPLACE | op::REPLACEQ => Response::NotStored,
                _ => Response::NotFound,
            },
            status::KEY_EEXISTS => match opcode {
                op::ADD | op::ADDQ => Response::NotStored,
                _ => Response::Exists,
            },
            status::NOT_STORED => Response::NotStored,
            status::E2BIG => Response::Error(ErrorReply::TooLarge),
            status::DELTA_BADVAL => Response::Error(ErrorReply::NonNumeric),
            status::ENOMEM => Response::Error(ErrorReply::OutOfMemory),
            status::UNKNOWN_COMMAND => Response::Error(ErrorReply::UnknownCommand),
            code => Response::Error(ErrorReply::Status(code, p.value.clone())),
        };
    }
    match p.opcode {
        op::GET | op::GETQ | op::GETK | op::GETKQ | op::GAT | op::GATQ | op::GATK | op::GATKQ => {
            Response::Values(vec![Value {
                key: p.key.clone(),
                flags: u32_extra(0),
                cas: p.cas,
                data: p.value.clone(),
            }])
        }
        op::GETE | op::GETEQ => Response::ValueE {
            value: Value {
                key: p.key.clone(),
                flags: u32_extra(0),
                cas: p.cas,
                data: p.value.clone(),
            },
            expiry: u32_extra(4),
        },
        op::TOUCH => Response::Touched {
            flags: u32_extra(0),
            cas: p.cas,
        },
        op::SET
        | op::SETQ
        | op::ADD
        | op::ADDQ
        | op::REPLACE
        | op::REPLACEQ
        | op::APPEND
        | op::APPENDQ
        | op::PREPEND
        | op::PREPENDQ => Response::Stored { cas: p.cas },
        op::DELETE | op::DELETEQ => Response::Deleted,
        op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ => {
            let v = &p.value;
            let value = if v.len() == 8 {
                u64::from_be_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]])
            } else {
                0
            };
            Response::Numeric { value, cas: p.cas }
        }
        op::VERSION => Response::Version(p.value.clone()),
        op::STAT => {
            if p.key.is_empty() {
                Response::Stats(Vec::new())
            } else {
                Response::Stats(vec![(p.key.clone(), p.value.clone())])
            }
        }
        _ => Response::Ok,
    }
}
