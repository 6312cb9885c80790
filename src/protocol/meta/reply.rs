//! Meta replies: what memcached writes back ([`MetaReply`]), written and
//! read byte for byte.

use bytes::{Bytes, BytesMut};

use super::{Flag, MetaError, MAX_REPLY_LINE};
use crate::protocol::number::parse_u64;
use crate::protocol::out::Sink;
use crate::protocol::text::push_u64;
use crate::protocol::FrameError;

/// A reply's status code (all but `VA`, `MN` and `ME`, which have their own
/// shapes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// `HD`: done (a hit without a value, stored, deleted, applied).
    Header,
    /// `EN`: `mg` or `me` missed.
    Miss,
    /// `NF`: not found.
    NotFound,
    /// `NS`: not stored.
    NotStored,
    /// `EX`: the cas did not match.
    Exists,
}

impl Code {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Code::Header => b"HD",
            Code::Miss => b"EN",
            Code::NotFound => b"NF",
            Code::NotStored => b"NS",
            Code::Exists => b"EX",
        }
    }

    fn from_bytes(b: &[u8]) -> Option<Code> {
        Some(match b {
            b"HD" => Code::Header,
            b"EN" => Code::Miss,
            b"NF" => Code::NotFound,
            b"NS" => Code::NotStored,
            b"EX" => Code::Exists,
            _ => return None,
        })
    }
}

/// One reply to a meta request, as memcached writes it. Flags are in
/// memcached's order (which is the request's order, with `W`, `X`, `Z`
/// appended by `mg`: `Z` before `X` before `W`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaReply {
    /// `VA <len> <flags>*\r\n<data>\r\n`: `mg` with `v`, `ma` with `v`.
    Value { flags: Vec<Flag>, data: Bytes },
    /// `HD|EN|NF|NS|EX <flags>*\r\n`.
    Status { code: Code, flags: Vec<Flag> },
    /// `MN\r\n`.
    Noop,
    /// `ME <key> <info>\r\n`: `me`'s hit. `key` is as memcached writes it
    /// (base64 for a key stored with `b`); `info` is the rest of the line,
    /// `exp=… la=… cas=… fetch=… cls=… size=…`.
    Debug { key: Bytes, info: Bytes },
    /// `ERROR`, `CLIENT_ERROR …` or `SERVER_ERROR …`: the whole line,
    /// without `\r\n`.
    Error(Bytes),
}

impl MetaReply {
    /// The reply's flags (none for `MN`, `ME` and errors).
    pub fn flags(&self) -> &[Flag] {
        match self {
            MetaReply::Value { flags, .. } | MetaReply::Status { flags, .. } => flags,
            _ => &[],
        }
    }

    /// The first flag with this letter.
    pub fn flag(&self, code: u8) -> Option<&Flag> {
        self.flags().iter().find(|f| f.code == code)
    }

    /// The refusal as a reply.
    pub fn from_error(e: &MetaError) -> MetaReply {
        MetaReply::Error(Bytes::from_static(e.reply.as_bytes()))
    }

    /// Write the reply as memcached does.
    pub fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        let write_flags = |out: &mut S, flags: &[Flag]| {
            for f in flags {
                out.emit(&[b' ', f.code]);
                out.emit(&f.token);
            }
        };
        match self {
            MetaReply::Value { flags, data } => {
                out.emit(b"VA ");
                push_u64(out, data.len() as u64);
                write_flags(out, flags);
                out.emit(b"\r\n");
                out.emit_shared(data);
                out.emit(b"\r\n");
            }
            MetaReply::Status { code, flags } => {
                out.emit(code.as_bytes());
                write_flags(out, flags);
                out.emit(b"\r\n");
            }
            MetaReply::Noop => out.emit(b"MN\r\n"),
            MetaReply::Debug { key, info } => {
                out.emit(b"ME ");
                out.emit(key);
                if !info.is_empty() {
                    out.emit(b" ");
                    out.emit(info);
                }
                out.emit(b"\r\n");
            }
            MetaReply::Error(line) => {
                out.emit(line);
                out.emit(b"\r\n");
            }
        }
    }

    /// Read one reply from the front of `buf`, consuming its bytes once it
    /// is whole (`Ok(None)`: more bytes are needed). Only what memcached
    /// writes is accepted, so [`MetaReply::encode`] gives back the same
    /// bytes; anything else, a line longer than [`MAX_REPLY_LINE`] or a
    /// value longer than `max_value` is a [`FrameError`] (the connection
    /// cannot be followed). Nothing is buffered beyond those bounds.
    pub fn decode(buf: &mut BytesMut, max_value: usize) -> Result<Option<MetaReply>, FrameError> {
        let bad = |reason| Err(FrameError::close(reason));
        let window = &buf[..buf.len().min(MAX_REPLY_LINE + 2)];
        let Some(nl) = window.windows(2).position(|w| w == b"\r\n") else {
            if window.len() == MAX_REPLY_LINE + 2 {
                return bad("meta reply line too long");
            }
            return Ok(None);
        };
        let line = &buf[..nl];
        if line.starts_with(b"VA ") {
            let len_end = line[3..]
                .iter()
                .position(|&b| b == b' ')
                .map_or(nl, |p| p + 3);
            let Some(len) = decimal(&line[3..len_end]) else {
                return bad("malformed VA line");
            };
            if len > max_value {
                return bad("meta value too large");
            }
            let data = nl + 2;
            let Some(end) = (data + 2).checked_add(len) else {
                return bad("meta value too large");
            };
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[data + len..end] != b"\r\n" {
                return bad("meta value not followed by CRLF");
            }
            let reply = buf.split_to(end).freeze();
            let flags = split_flags(&reply.slice(len_end..nl))?;
            return Ok(Some(MetaReply::Value {
                flags,
                data: reply.slice(data..data + len),
            }));
        }
        let is_error = line == b"ERROR"
            || line.starts_with(b"ERROR ")
            || line.starts_with(b"CLIENT_ERROR ")
            || line.starts_with(b"SERVER_ERROR ");
        let is_debug = line.starts_with(b"ME ");
        let code = match line.get(..2) {
            Some(c) if line.len() == 2 || line[2] == b' ' => Code::from_bytes(c),
            _ => None,
        };
        if !is_error && !is_debug && code.is_none() && line != b"MN" {
            return bad("unexpected meta reply line");
        }
        let reply = buf.split_to(nl + 2).freeze();
        let line = reply.slice(..nl);
        if is_error {
            return Ok(Some(MetaReply::Error(line)));
        }
        if is_debug {
            let rest = line.slice(3..);
            let (key, info) = match rest.iter().position(|&b| b == b' ') {
                Some(sp) => (rest.slice(..sp), rest.slice(sp + 1..)),
                None => (rest.clone(), Bytes::new()),
            };
            if key.is_empty() || (info.is_empty() && key.len() < rest.len()) {
                return bad("malformed ME line");
            }
            return Ok(Some(MetaReply::Debug { key, info }));
        }
        match code {
            Some(code) => Ok(Some(MetaReply::Status {
                code,
                flags: split_flags(&line.slice(2..))?,
            })),
            None => Ok(Some(MetaReply::Noop)),
        }
    }
}

/// A reply's flags: ` <flag>` repeated (each with its letter, none empty),
/// or nothing.
fn split_flags(part: &Bytes) -> Result<Vec<Flag>, FrameError> {
    let mut flags = Vec::new();
    if part.is_empty() {
        return Ok(flags);
    }
    if part[0] != b' ' {
        return Err(FrameError::close("malformed meta reply flags"));
    }
    let mut at = 1;
    for piece in part[1..].split(|&b| b == b' ') {
        if piece.is_empty() {
            return Err(FrameError::close("malformed meta reply flags"));
        }
        flags.push(Flag {
            code: piece[0],
            token: part.slice(at + 1..at + piece.len()),
        });
        at += piece.len() + 1;
    }
    Ok(flags)
}

/// A length as memcached writes it: decimal digits, no sign, no leading
/// zero.
fn decimal(t: &[u8]) -> Option<usize> {
    let canonical = t == b"0" || (t.first().is_some_and(|&b| b != b'0'));
    if !canonical || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    usize::try_from(parse_u64(t)?).ok()
}
