//! Encoding replies as memcached's text protocol writes them: `VALUE`
//! blocks and `END`, the one-line outcomes, `STAT` lines and the error
//! lines, all into a [`Sink`].

use super::{push_line, push_u64};
use crate::protocol::out::Sink;
use crate::protocol::{msg, ErrorReply, Frame, Request, Response, Value};

/// Write the reply to `req` as memcached's text protocol would.
pub fn encode_response<S: Sink + ?Sized>(req: &Request, resp: &Response, out: &mut S) {
    let (noreply, with_cas) = match req.frame {
        Frame::Text { noreply, cas } => (noreply, cas),
        Frame::Binary { .. } => (false, false),
    };
    if noreply {
        return;
    }
    match resp {
        Response::Values(values) => {
            for v in values {
                encode_value(out, v, with_cas);
            }
            out.emit(b"END\r\n");
        }
        Response::ValueE { value, .. } => {
            encode_value(out, value, with_cas);
            out.emit(b"END\r\n");
        }
        Response::Stored { .. } => out.emit(b"STORED\r\n"),
        Response::NotStored => out.emit(b"NOT_STORED\r\n"),
        Response::Exists => out.emit(b"EXISTS\r\n"),
        Response::NotFound => out.emit(b"NOT_FOUND\r\n"),
        Response::Deleted => out.emit(b"DELETED\r\n"),
        Response::Touched { .. } => out.emit(b"TOUCHED\r\n"),
        Response::Numeric { value, .. } => {
            push_u64(out, *value);
            out.emit(b"\r\n");
        }
        Response::Ok => out.emit(b"OK\r\n"),
        Response::Version(v) => push_line(out, &[b"VERSION ", v]),
        Response::Stats(stats) => {
            for (k, v) in stats {
                push_line(out, &[b"STAT ", k, b" ", v]);
            }
            out.emit(b"END\r\n");
        }
        Response::Raw(bytes) => out.emit_shared(bytes),
        Response::Meta(reply) => reply.encode(out),
        Response::Error(e) => encode_error(e, out),
        Response::Nothing => {}
    }
}

/// One `VALUE` line and its data block (a multi-get streamed in pieces
/// writes these, then `END` once).
pub fn encode_value<S: Sink + ?Sized>(out: &mut S, v: &Value, with_cas: bool) {
    out.emit(b"VALUE ");
    out.emit(&v.key);
    out.emit(b" ");
    push_u64(out, u64::from(v.flags));
    out.emit(b" ");
    push_u64(out, v.data.len() as u64);
    if with_cas {
        out.emit(b" ");
        push_u64(out, v.cas);
    }
    out.emit(b"\r\n");
    out.emit_shared(&v.data);
    out.emit(b"\r\n");
}

fn encode_error<S: Sink + ?Sized>(e: &ErrorReply, out: &mut S) {
    match e {
        ErrorReply::UnknownCommand => out.emit(b"ERROR\r\n"),
        ErrorReply::Client(m) => push_line(out, &[b"CLIENT_ERROR ", m]),
        ErrorReply::TooLarge => push_line(out, &[b"SERVER_ERROR ", msg::TOO_LARGE.as_bytes()]),
        ErrorReply::BadDataChunk => {
            push_line(out, &[b"CLIENT_ERROR ", msg::BAD_DATA_CHUNK.as_bytes()])
        }
        ErrorReply::NonNumeric => push_line(out, &[b"CLIENT_ERROR ", msg::NON_NUMERIC.as_bytes()]),
        ErrorReply::OutOfMemory => {
            push_line(out, &[b"SERVER_ERROR ", msg::OUT_OF_MEMORY.as_bytes()])
        }
        ErrorReply::Server(m) | ErrorReply::Status(_, m) => push_line(out, &[b"SERVER_ERROR ", m]),
    }
}
