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

mod opcode;

pub use opcode::{cas_reply, Opcode, RequestPacket};

pub const REQ_MAGIC: u8 = 0x80;
pub const RES_MAGIC: u8 = 0x81;
pub const HEADER_LEN: usize = 24;

/// The opcodes as wire bytes, for matching a frame's `u8` (the values
/// are [`Opcode`]'s).
pub mod op {
    use super::Opcode;

    pub const GET: u8 = Opcode::Get as u8;
    pub const SET: u8 = Opcode::Set as u8;
    pub const ADD: u8 = Opcode::Add as u8;
    pub const REPLACE: u8 = Opcode::Replace as u8;
    pub const DELETE: u8 = Opcode::Delete as u8;
    pub const INCREMENT: u8 = Opcode::Increment as u8;
    pub const DECREMENT: u8 = Opcode::Decrement as u8;
    pub const QUIT: u8 = Opcode::Quit as u8;
    pub const FLUSH: u8 = Opcode::Flush as u8;
    pub const GETQ: u8 = Opcode::GetQ as u8;
    pub const NOOP: u8 = Opcode::Noop as u8;
    pub const VERSION: u8 = Opcode::Version as u8;
    pub const GETK: u8 = Opcode::GetK as u8;
    pub const GETKQ: u8 = Opcode::GetKQ as u8;
    pub const APPEND: u8 = Opcode::Append as u8;
    pub const PREPEND: u8 = Opcode::Prepend as u8;
    pub const STAT: u8 = Opcode::Stat as u8;
    pub const SETQ: u8 = Opcode::SetQ as u8;
    pub const ADDQ: u8 = Opcode::AddQ as u8;
    pub const REPLACEQ: u8 = Opcode::ReplaceQ as u8;
    pub const DELETEQ: u8 = Opcode::DeleteQ as u8;
    pub const INCREMENTQ: u8 = Opcode::IncrementQ as u8;
    pub const DECREMENTQ: u8 = Opcode::DecrementQ as u8;
    pub const QUITQ: u8 = Opcode::QuitQ as u8;
    pub const FLUSHQ: u8 = Opcode::FlushQ as u8;
    pub const APPENDQ: u8 = Opcode::AppendQ as u8;
    pub const PREPENDQ: u8 = Opcode::PrependQ as u8;
    pub const VERBOSITY: u8 = Opcode::Verbosity as u8;
    pub const TOUCH: u8 = Opcode::Touch as u8;
    pub const GAT: u8 = Opcode::Gat as u8;
    pub const GATQ: u8 = Opcode::GatQ as u8;
    pub const GATK: u8 = Opcode::GatK as u8;
    pub const GATKQ: u8 = Opcode::GatKQ as u8;
    pub const GETE: u8 = Opcode::GetE as u8;
    pub const GETEQ: u8 = Opcode::GetEQ as u8;
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

/// A packet's header fields other than the lengths, which
/// [`Header::write`] computes and [`Header::read`] returns apart.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub magic: u8,
    pub opcode: u8,
    pub status: u16,
    pub opaque: u32,
    pub cas: u64,
}

/// The lengths a header declares.
#[derive(Clone, Copy, Debug)]
struct Lens {
    key: usize,
    extras: usize,
    body: usize,
}

impl Header {
    /// The header at the front of `buf` (at least [`HEADER_LEN`] bytes),
    /// read without consuming anything.
    fn read(buf: &[u8]) -> (Header, Lens) {
        let b = |i: usize| buf[i];
        let header = Header {
            magic: b(0),
            opcode: b(1),
            status: u16::from_be_bytes([b(6), b(7)]),
            opaque: u32::from_be_bytes([b(12), b(13), b(14), b(15)]),
            cas: u64::from_be_bytes([b(16), b(17), b(18), b(19), b(20), b(21), b(22), b(23)]),
        };
        let lens = Lens {
            key: usize::from(u16::from_be_bytes([b(2), b(3)])),
            extras: usize::from(b(4)),
            body: u32::from_be_bytes([b(8), b(9), b(10), b(11)]) as usize,
        };
        (header, lens)
    }

    /// A request's header: no status.
    pub fn request(opcode: u8, opaque: u32, cas: u64) -> Header {
        Header {
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
        let head = Header {
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
    let (h, lens) = Header::read(buf);
    if h.magic != REQ_MAGIC && h.magic != RES_MAGIC {
        return Err(FrameError::close("bad magic byte"));
    }
    if lens.key + lens.extras > lens.body {
        return Err(FrameError::close("key and extras longer than the body"));
    }
    if lens.body > max_body {
        return Err(FrameError::close("packet body too large"));
    }
    if buf.len() < HEADER_LEN + lens.body {
        buf.reserve(HEADER_LEN + lens.body - buf.len());
        return Ok(None);
    }
    let mut p = buf.split_to(HEADER_LEN + lens.body).freeze();
    p.advance(HEADER_LEN);
    let extras = p.split_to(lens.extras);
    let key = p.split_to(lens.key);
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
    let head = Header {
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
        let (h, lens) = Header::read(buf);
        if h.magic != REQ_MAGIC {
            return Err(FrameError::close("bad magic byte"));
        }
        // memcached's first check, before anything is subtracted.
        if lens.key + lens.extras > lens.body {
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
        if lens.key > MAX_KEY_LEN {
            return Err(invalid_args());
        }
        let (k, e, b) = (lens.key, lens.extras, lens.body);
        // Unknown (VERBOSITY 0x1b too: memcached 1.6.18 does not dispatch
        // it): answer and discard the whole body.
        let Some(opcode) = Opcode::from_wire(h.opcode).filter(|o| *o != Opcode::Verbosity) else {
            buf.advance(HEADER_LEN);
            self.state = State::Swallow { remaining: b };
            return Ok(Some(Request {
                cmd: Command::Invalid(Invalid::UnknownCommand),
                frame,
            }));
        };
        let valid = lens_valid(opcode, lens);
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
            let delete = (opcode.loud() == Opcode::Set).then_some(key);
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
        let cmd = command(opcode, &h, &extras, key, value);
        Ok(Some(Request { cmd, frame }))
    }
}

/// Whether a request's lengths are ones memcached 1.6.18 accepts for its
/// opcode (anything else is "Invalid arguments").
fn lens_valid(opcode: Opcode, lens: Lens) -> bool {
    let (k, e, b) = (lens.key, lens.extras, lens.body);
    match opcode.loud() {
        Opcode::Version | Opcode::Noop | Opcode::Quit => e == 0 && k == 0 && b == 0,
        Opcode::Flush => k == 0 && b == e && (e == 0 || e == 4),
        Opcode::Set | Opcode::Add | Opcode::Replace => e == 8 && k != 0,
        Opcode::Get | Opcode::GetK | Opcode::GetE | Opcode::Delete => e == 0 && k > 0 && b == k,
        Opcode::Increment | Opcode::Decrement => e == 20 && k > 0 && b == k + e,
        Opcode::Append | Opcode::Prepend => e == 0 && k > 0,
        Opcode::Stat => e == 0 && b == k,
        Opcode::Touch | Opcode::Gat | Opcode::GatK => e == 4 && k > 0 && b == k + 4,
        _ => false,
    }
}

/// The command a whole, valid request packet carries.
fn command(opcode: Opcode, h: &Header, extras: &[u8], key: Bytes, value: Bytes) -> Command {
    let u32_at =
        |i: usize| u32::from_be_bytes([extras[i], extras[i + 1], extras[i + 2], extras[i + 3]]);
    let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
    let store = |mode, flags, exptime| Command::Store {
        mode,
        key: key.clone(),
        flags,
        exptime,
        cas: h.cas,
        value: value.clone(),
    };
    match opcode.loud() {
        Opcode::Get | Opcode::GetK => Command::Get {
            keys: vec![key],
            touch: None,
        },
        Opcode::Gat | Opcode::GatK => Command::Get {
            keys: vec![key],
            touch: Some(i64::from(u32_at(0))),
        },
        Opcode::GetE => Command::GetE { key },
        Opcode::Touch => Command::Touch {
            key,
            exptime: i64::from(u32_at(0)),
        },
        Opcode::Set => store(StoreMode::Set, u32_at(0), i64::from(u32_at(4))),
        Opcode::Add => store(StoreMode::Add, u32_at(0), i64::from(u32_at(4))),
        Opcode::Replace => store(StoreMode::Replace, u32_at(0), i64::from(u32_at(4))),
        Opcode::Append => store(StoreMode::Append, 0, 0),
        Opcode::Prepend => store(StoreMode::Prepend, 0, 0),
        Opcode::Delete => Command::Delete { key, cas: h.cas },
        Opcode::Increment | Opcode::Decrement => {
            let expiry = u32_at(16);
            Command::Arith {
                key,
                incr: opcode.loud() == Opcode::Increment,
                delta: u64_at(0),
                create: (expiry != u32::MAX).then(|| (u64_at(8), i64::from(expiry))),
            }
        }
        Opcode::Flush => Command::Flush {
            delay: if extras.len() == 4 {
                i64::from(u32_at(0))
            } else {
                0
            },
        },
        Opcode::Stat => Command::Stats {
            arg: (!key.is_empty()).then_some(key),
        },
        Opcode::Noop => Command::Noop,
        Opcode::Version => Command::Version,
        _ => Command::Quit,
    }
}

/// Write the reply to a binary request as memcached would.
pub fn encode_response<S: Sink + ?Sized>(req: &Request, resp: &Response, out: &mut S) {
    let Frame::Binary { opcode, opaque } = req.frame else {
        return;
    };
    let known = Opcode::from_wire(opcode);
    let quiet = known.is_some_and(Opcode::is_quiet);
    let returns_key = known.is_some_and(Opcode::returns_key);
    let head = |status: u16, cas: u64| Header {
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
                let key: &[u8] = if returns_key { &v.key } else { &[] };
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
            match known.map(Opcode::loud) {
                Some(Opcode::Add) => status::KEY_EEXISTS,
                Some(Opcode::Replace) => status::KEY_ENOENT,
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
        Response::Raw(_) | Response::Meta(_) => fail(out, status::UNKNOWN_COMMAND),
        Response::Error(e) => {
            let (code, text) = error_status(e);
            head(code, 0).write(out, &[], &[], text.len());
            out.emit(text);
        }
        Response::Nothing => {}
    }
}

/// The status and message an error reply is sent with.
fn error_status(e: &ErrorReply) -> (u16, &[u8]) {
    let (code, text): (u16, &[u8]) = match e {
        ErrorReply::UnknownCommand => (status::UNKNOWN_COMMAND, b""),
        ErrorReply::Client(_) | ErrorReply::BadDataChunk => (status::EINVAL, b""),
        ErrorReply::TooLarge => (status::E2BIG, b""),
        ErrorReply::NonNumeric => (status::DELTA_BADVAL, b""),
        ErrorReply::OutOfMemory => (status::ENOMEM, b""),
        ErrorReply::Server(m) => (status::ETMPFAIL, m),
        ErrorReply::Status(code, m) => (*code, m),
    };
    if text.is_empty() {
        (code, status_message(code))
    } else {
        (code, text)
    }
}

fn miss<S: Sink + ?Sized>(req: &Request, opcode: u8, opaque: u32, quiet: bool, out: &mut S) {
    if quiet {
        return;
    }
    let head = Header {
        magic: RES_MAGIC,
        opcode,
        status: status::KEY_ENOENT,
        opaque,
        cas: 0,
    };
    if Opcode::from_wire(opcode).is_some_and(Opcode::returns_key) {
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
    if let Some(packet) = RequestPacket::of(&req.cmd) {
        packet.write_as(opcode, opaque, out);
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
    let loud = Opcode::from_wire(p.opcode).map(Opcode::loud);
    let is_get = matches!(
        loud,
        Some(Opcode::Get | Opcode::GetK | Opcode::Gat | Opcode::GatK)
    );
    let value = || Value {
        key: p.key.clone(),
        flags: u32_extra(0),
        cas: p.cas,
        data: p.value.clone(),
    };
    if p.status != status::OK {
        return match p.status {
            status::KEY_ENOENT if is_get => Response::Values(Vec::new()),
            status::KEY_ENOENT if loud == Some(Opcode::Replace) => Response::NotStored,
            status::KEY_ENOENT => Response::NotFound,
            status::KEY_EEXISTS if loud == Some(Opcode::Add) => Response::NotStored,
            status::KEY_EEXISTS => Response::Exists,
            status::NOT_STORED => Response::NotStored,
            status::E2BIG => Response::Error(ErrorReply::TooLarge),
            status::DELTA_BADVAL => Response::Error(ErrorReply::NonNumeric),
            status::ENOMEM => Response::Error(ErrorReply::OutOfMemory),
            status::UNKNOWN_COMMAND => Response::Error(ErrorReply::UnknownCommand),
            code => Response::Error(ErrorReply::Status(code, p.value.clone())),
        };
    }
    if is_get {
        return Response::Values(vec![value()]);
    }
    match loud {
        Some(Opcode::GetE) => Response::ValueE {
            value: value(),
            expiry: u32_extra(4),
        },
        Some(Opcode::Touch) => Response::Touched {
            flags: u32_extra(0),
            cas: p.cas,
        },
        Some(Opcode::Set | Opcode::Add | Opcode::Replace | Opcode::Append | Opcode::Prepend) => {
            Response::Stored { cas: p.cas }
        }
        Some(Opcode::Delete) => Response::Deleted,
        Some(Opcode::Increment | Opcode::Decrement) => {
            let v = &p.value;
            let value = if v.len() == 8 {
                u64::from_be_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]])
            } else {
                0
            };
            Response::Numeric { value, cas: p.cas }
        }
        Some(Opcode::Version) => Response::Version(p.value.clone()),
        Some(Opcode::Stat) if p.key.is_empty() => Response::Stats(Vec::new()),
        Some(Opcode::Stat) => Response::Stats(vec![(p.key.clone(), p.value.clone())]),
        _ => Response::Ok,
    }
}
