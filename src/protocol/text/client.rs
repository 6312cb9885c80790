//! The client side of the text protocol, for the tools and the tests:
//! writing a request as a client sends it, and reading memcached's reply to
//! a known request (a reply does not say what it answers).

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{find_crlf, push_line, push_u64};
use crate::protocol::meta::MetaReply;
use crate::protocol::number::{parse_u32, parse_u64};
use crate::protocol::{
    msg, Command, ErrorReply, Frame, FrameError, Request, Response, StoreMode, Value,
};

/// Write `req` as a text request line (and data block). Requests that exist
/// only in the binary protocol (noop, GETE, arithmetic that creates) and
/// refused ones have no text form and write nothing.
pub fn encode_request(req: &Request, out: &mut BytesMut) {
    let noreply = matches!(req.frame, Frame::Text { noreply: true, .. });
    let with_cas = matches!(req.frame, Frame::Text { cas: true, .. });
    let nr: &[u8] = if noreply { b" noreply" } else { b"" };
    match &req.cmd {
        Command::Get { keys, touch } => {
            out.put_slice(get_verb(touch.is_some(), with_cas));
            if let Some(e) = touch {
                out.put_u8(b' ');
                out.put_slice(e.to_string().as_bytes());
            }
            for k in keys {
                out.put_u8(b' ');
                out.put_slice(k);
            }
            out.put_slice(b"\r\n");
        }
        Command::Store {
            mode,
            key,
            flags,
            exptime,
            cas,
            value,
        } => {
            let head = format!(" {} {} {}", flags, exptime, value.len());
            push_parts(out, &[store_verb(*mode), b" ", key, head.as_bytes()]);
            if *mode == StoreMode::Cas {
                out.put_u8(b' ');
                push_u64(out, *cas);
            }
            push_line(out, &[nr]);
            push_line(out, &[value]);
        }
        Command::Delete { key, .. } => push_line(out, &[b"delete ", key, nr]),
        Command::Touch { key, exptime } => push_line(
            out,
            &[b"touch ", key, b" ", exptime.to_string().as_bytes(), nr],
        ),
        Command::Arith {
            key,
            incr,
            delta,
            create: None,
        } => {
            let verb: &[u8] = if *incr { b"incr " } else { b"decr " };
            push_line(out, &[verb, key, b" ", delta.to_string().as_bytes(), nr])
        }
        Command::Flush { delay } => {
            if *delay == 0 {
                push_line(out, &[b"flush_all", nr])
            } else {
                push_line(out, &[b"flush_all ", delay.to_string().as_bytes(), nr])
            }
        }
        Command::Version => out.put_slice(b"version\r\n"),
        Command::Verbosity { level } => {
            push_line(out, &[b"verbosity ", level.to_string().as_bytes(), nr])
        }
        Command::Stats { arg: None } => out.put_slice(b"stats\r\n"),
        Command::Stats { arg: Some(a) } => push_line(out, &[b"stats ", a]),
        Command::Quit => out.put_slice(b"quit\r\n"),
        Command::Admin { line, .. } => push_line(out, &[line]),
        Command::Meta(m) => m.encode(out),
        Command::Arith {
            create: Some(_), ..
        }
        | Command::GetE { .. }
        | Command::Noop
        | Command::Invalid(_) => {}
    }
}

/// The verb of a get: with a touch (gat) or not, with cas (gets) or not.
fn get_verb(touch: bool, with_cas: bool) -> &'static [u8] {
    match (touch, with_cas) {
        (false, false) => b"get",
        (false, true) => b"gets",
        (true, false) => b"gat",
        (true, true) => b"gats",
    }
}

fn store_verb(mode: StoreMode) -> &'static [u8] {
    match mode {
        StoreMode::Set => b"set",
        StoreMode::Add => b"add",
        StoreMode::Replace => b"replace",
        StoreMode::Append => b"append",
        StoreMode::Prepend => b"prepend",
        StoreMode::Cas => b"cas",
    }
}

fn push_parts(out: &mut BytesMut, parts: &[&[u8]]) {
    for p in parts {
        out.put_slice(p);
    }
}

/// Incremental decoder of text replies to one known request (replies do not
/// say what they answer, so the request decides how to read them).
pub fn decode_response(req: &Request, buf: &mut BytesMut) -> Result<Option<Response>, FrameError> {
    match &req.cmd {
        Command::Get { .. } => decode_group(buf, false),
        Command::Stats { .. } => decode_group(buf, true),
        // A quiet meta request's hidden reply is not waited for: the tools
        // and tests send `q` only with an `mn` after it.
        Command::Meta(_) => Ok(MetaReply::decode(buf, MAX_META_VALUE)?.map(Response::Meta)),
        _ => decode_line(buf),
    }
}

/// The largest value a meta reply read here may carry (a chunked rend
/// serves values past memcached's item size).
const MAX_META_VALUE: usize = 1 << 30;

/// A stream that cannot be followed.
fn bad<T>(reason: &'static str) -> Result<T, FrameError> {
    Err(FrameError::close(reason))
}

/// Where one `VALUE` of a get reply lies in the buffer.
struct ValueAt {
    key: Range<usize>,
    flags: u32,
    cas: u64,
    data: Range<usize>,
}

/// A reply of lines ending in `END`: a get's `VALUE`s, or (`is_stats`)
/// `STAT` lines. Nothing is consumed until the `END` has arrived.
fn decode_group(buf: &mut BytesMut, is_stats: bool) -> Result<Option<Response>, FrameError> {
    let mut at = 0;
    let mut values = Vec::new();
    let mut stats = Vec::new();
    loop {
        let Some(nl) = find_crlf(&buf[at..]) else {
            return Ok(None);
        };
        let line = &buf[at..at + nl];
        if line == b"END" {
            let frozen = buf.split_to(at + nl + 2).freeze();
            return Ok(Some(if is_stats {
                Response::Stats(
                    stats
                        .into_iter()
                        .map(|(k, v): (Range<usize>, Range<usize>)| {
                            (frozen.slice(k), frozen.slice(v))
                        })
                        .collect(),
                )
            } else {
                Response::Values(
                    values
                        .into_iter()
                        .map(|v: ValueAt| Value {
                            key: frozen.slice(v.key),
                            flags: v.flags,
                            cas: v.cas,
                            data: frozen.slice(v.data),
                        })
                        .collect(),
                )
            }));
        }
        if at == 0 {
            if let Some(e) = parse_error_line(line) {
                buf.advance(nl + 2);
                return Ok(Some(Response::Error(e)));
            }
        }
        if is_stats {
            let Some(rest) = line.strip_prefix(b"STAT ") else {
                return bad("unexpected line in stats reply");
            };
            let sp = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let k0 = at + 5;
            let v0 = (k0 + sp + 1).min(at + nl);
            stats.push((k0..k0 + sp, v0..at + nl));
            at += nl + 2;
            continue;
        }
        let Some(value) = value_at(buf, at, nl)? else {
            return Ok(None);
        };
        at = value.data.end + 2;
        values.push(value);
    }
}

/// The `VALUE` line at `at` (`nl` bytes long) and its data block; `None`
/// until the whole block has arrived.
fn value_at(buf: &[u8], at: usize, nl: usize) -> Result<Option<ValueAt>, FrameError> {
    let Some(rest) = buf[at..at + nl].strip_prefix(b"VALUE ") else {
        return bad("unexpected line in get reply");
    };
    let parts: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
    if parts.len() < 3 {
        return bad("malformed VALUE line");
    }
    let (Some(flags), Some(len)) = (parse_u32(parts[1]), parse_u64(parts[2])) else {
        return bad("malformed VALUE line");
    };
    let cas = match parts.get(3) {
        Some(c) => match parse_u64(c) {
            Some(c) => c,
            None => return bad("malformed VALUE line"),
        },
        None => 0,
    };
    let key_start = at + 6;
    let key = key_start..key_start + parts[0].len();
    let data_start = at + nl + 2;
    // A length no buffer can hold is an error, not an overflow.
    let Some((len, block_end)) = usize::try_from(len)
        .ok()
        .and_then(|len| Some((len, data_start.checked_add(len)?.checked_add(2)?)))
    else {
        return bad("value length out of range");
    };
    if buf.len() < block_end {
        return Ok(None);
    }
    if &buf[data_start + len..data_start + len + 2] != b"\r\n" {
        return bad("value block not terminated");
    }
    Ok(Some(ValueAt {
        key,
        flags,
        cas,
        data: data_start..data_start + len,
    }))
}

/// A one-line reply.
fn decode_line(buf: &mut BytesMut) -> Result<Option<Response>, FrameError> {
    let Some(nl) = find_crlf(buf) else {
        return Ok(None);
    };
    let line = buf.split_to(nl + 2).freeze();
    let line = line.slice(..nl);
    if let Some(e) = parse_error_line(&line) {
        return Ok(Some(Response::Error(e)));
    }
    let resp = match &line[..] {
        b"STORED" => Response::Stored { cas: 0 },
        b"NOT_STORED" => Response::NotStored,
        b"EXISTS" => Response::Exists,
        b"NOT_FOUND" => Response::NotFound,
        b"DELETED" => Response::Deleted,
        b"TOUCHED" => Response::Touched { flags: 0, cas: 0 },
        b"OK" => Response::Ok,
        l if l.starts_with(b"VERSION ") => Response::Version(line.slice(8..)),
        l => match parse_u64(l) {
            Some(value) if !l.is_empty() && l.iter().all(u8::is_ascii_digit) => {
                Response::Numeric { value, cas: 0 }
            }
            _ => return bad("unexpected reply line"),
        },
    };
    Ok(Some(resp))
}

fn parse_error_line(line: &[u8]) -> Option<ErrorReply> {
    if line == b"ERROR" {
        return Some(ErrorReply::UnknownCommand);
    }
    if let Some(m) = line.strip_prefix(b"CLIENT_ERROR ") {
        return Some(match m {
            m if m == msg::BAD_DATA_CHUNK.as_bytes() => ErrorReply::BadDataChunk,
            m if m == msg::NON_NUMERIC.as_bytes() => ErrorReply::NonNumeric,
            m => ErrorReply::Client(Bytes::copy_from_slice(m)),
        });
    }
    if let Some(m) = line.strip_prefix(b"SERVER_ERROR ") {
        return Some(match m {
            m if m == msg::TOO_LARGE.as_bytes() => ErrorReply::TooLarge,
            m if m == msg::OUT_OF_MEMORY.as_bytes() => ErrorReply::OutOfMemory,
            m => ErrorReply::Server(Bytes::copy_from_slice(m)),
        });
    }
    None
}
