//! memcached's text protocol: requests as memcached 1.6.18 parses them
//! (tokens split on spaces, its argument counts, its error strings) and
//! replies as it writes them.
//!
//! Where memcached is unsafe, rend is deliberately stricter (DESIGN §2): a
//! refused storage command whose `<bytes>` parsed has its data block
//! discarded, so the block is never run as a command; a `<bytes>` that does
//! not parse closes the connection; flags and exptimes that memcached would
//! truncate are refused.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::number::{parse_i32, parse_u32, parse_u64};
use super::out::Sink;
use super::{
    msg, Command, ErrorReply, Frame, FrameError, Invalid, Limits, Request, Response, StoreMode,
    Value, MAX_KEY_LEN,
};

#[derive(Debug)]
enum State {
    /// Waiting for a command line; `scanned` bytes hold no newline.
    Line { scanned: usize },
    /// A storage command whose line parsed: waiting for `len` bytes of data
    /// plus `\r\n`. The line is not parsed again when more bytes arrive.
    Data { head: StoreHead, len: usize },
    /// Discarding the data block of a refused storage command.
    Swallow { remaining: usize },
    /// A `get`/`gets` line longer than `max_line`, decoded in segments: the
    /// command and the keys up to here are consumed, and more keys follow.
    GetRest { cas: bool, emitted: bool },
    /// A long get line named a key too long: the keys before it were
    /// decoded; the error comes next, then (`swallow`) the rest of the line
    /// is discarded.
    GetFailed { swallow: bool },
    /// Discarding the rest of a long get line after a bad key.
    SwallowLine,
}

#[derive(Debug)]
struct StoreHead {
    mode: StoreMode,
    key: Bytes,
    flags: u32,
    exptime: i64,
    cas: u64,
    noreply: bool,
}

/// Incremental decoder of text requests.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Line { scanned: 0 },
        }
    }

    /// Decode one request from the front of `buf`, consuming its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, FrameError> {
        loop {
            match &mut self.state {
                State::Swallow { remaining } => {
                    let n = (*remaining).min(buf.len());
                    buf.advance(n);
                    *remaining -= n;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Line { scanned: 0 };
                }
                State::Data { len, .. } => {
                    let need = *len + 2;
                    if buf.len() < need {
                        return Ok(None);
                    }
                    let State::Data { head, len } =
                        std::mem::replace(&mut self.state, State::Line { scanned: 0 })
                    else {
                        unreachable!("matched above")
                    };
                    let block = buf.split_to(need).freeze();
                    let frame = Frame::Text {
                        noreply: head.noreply,
                        cas: false,
                    };
                    if &block[len..] != b"\r\n" {
                        return Ok(Some(Request {
                            cmd: Command::Invalid(Invalid::BadDataChunk),
                            frame,
                        }));
                    }
                    return Ok(Some(Request {
                        cmd: Command::Store {
                            mode: head.mode,
                            key: head.key,
                            flags: head.flags,
                            exptime: head.exptime,
                            cas: head.cas,
                            value: block.slice(..len),
                        },
                        frame,
                    }));
                }
                State::GetFailed { swallow } => {
                    self.state = if *swallow {
                        State::SwallowLine
                    } else {
                        State::Line { scanned: 0 }
                    };
                    return Ok(Some(bad_key_reply()));
                }
                State::SwallowLine => match buf.iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        buf.advance(pos + 1);
                        self.state = State::Line { scanned: 0 };
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                },
                State::GetRest { cas, emitted } => {
                    let (cas, emitted) = (*cas, *emitted);
                    let max = self.limits.max_line;
                    match buf.iter().take(max + 1).position(|&b| b == b'\n') {
                        Some(end) => {
                            // The line's last segment.
                            let line = buf.split_to(end + 1).freeze();
                            self.state = State::Line { scanned: 0 };
                            let line = line.slice(..trim_line_end(&line));
                            let keys: Vec<Bytes> =
                                tokenize(&line).into_iter().map(|r| line.slice(r)).collect();
                            if keys.is_empty() && !emitted {
                                // `get` and spaces only.
                                return Ok(Some(Request {
                                    cmd: Command::Invalid(Invalid::UnknownCommand),
                                    frame: Frame::Text {
                                        noreply: false,
                                        cas: false,
                                    },
                                }));
                            }
                            return Ok(Some(self.get_segment(keys, cas, true)));
                        }
                        None if buf.len() > max => {
                            if let Some(req) = self.get_segment_of(buf, cas, false)? {
                                return Ok(Some(req));
                            }
                        }
                        None => return Ok(None),
                    }
                }
                State::Line { scanned } => {
                    let from = *scanned;
                    let newline = buf[from..].iter().position(|&b| b == b'\n');
                    let end = newline.map_or(buf.len(), |pos| from + pos);
                    // A line past max_line: only get and gets may be that
                    // long (as in memcached), and they are taken in
                    // segments, so no line is ever buffered whole. The same
                    // bounds hold whether or not the newline has arrived, so
                    // the outcome does not depend on how the bytes were cut.
                    if end > self.limits.max_line {
                        let spaces = buf.iter().take_while(|&&b| b == b' ').count();
                        if !is_get_line(&buf[..end]) {
                            return Err(FrameError::close("command line too long"));
                        }
                        let cas = buf[spaces..].starts_with(b"gets ");
                        if let Some(req) = self.get_segment_of(buf, cas, true)? {
                            return Ok(Some(req));
                        }
                        continue;
                    }
                    let Some(_) = newline else {
                        *scanned = buf.len();
                        return Ok(None);
                    };
                    let line = buf.split_to(end + 1).freeze();
                    self.state = State::Line { scanned: 0 };
                    if let Some(req) = self.parse_line(line)? {
                        return Ok(Some(req));
                    }
                    // A storage command: go round to wait for its data.
                }
            }
        }
    }

    /// Whether the request just decoded is a segment of a long get line
    /// whose further keys are still to come: the reply's `END` waits for
    /// the last segment.
    pub fn continues(&self) -> bool {
        matches!(self.state, State::GetRest { .. } | State::GetFailed { .. })
    }

    /// Take the complete keys from the first `max_line` bytes of a long get
    /// line (`first`: the line's start, command included). `None` when the
    /// bytes consumed held no key. The line's last segment may name none.
    fn get_segment_of(
        &mut self,
        buf: &mut BytesMut,
        cas: bool,
        first: bool,
    ) -> Result<Option<Request>, FrameError> {
        let window = &buf[..self.limits.max_line];
        let Some(last_space) = window.iter().rposition(|&b| b == b' ') else {
            // No separator in max_line bytes: a key longer than any allowed.
            return Ok(Some(self.bad_get_key()));
        };
        let mut tokens = tokenize(&window[..last_space]);
        if first && !tokens.is_empty() {
            tokens.remove(0);
        }
        let emitted = match self.state {
            State::GetRest { emitted, .. } => emitted,
            _ => false,
        };
        if !emitted && tokens.iter().any(|r| r.len() > MAX_KEY_LEN) {
            // Nothing answered yet: only the error, as memcached answers.
            return Ok(Some(self.bad_get_key()));
        }
        let taken = buf.split_to(last_space + 1).freeze();
        self.state = State::GetRest {
            cas,
            emitted: emitted || !tokens.is_empty(),
        };
        if tokens.is_empty() {
            return Ok(None);
        }
        let keys = tokens.into_iter().map(|r| taken.slice(r)).collect();
        Ok(Some(self.get_segment(keys, cas, false)))
    }

    /// A segment's keys as a request (`last`: the line's last segment). At
    /// a key too long, the keys before it are the segment, and memcached's
    /// error comes next (memcached, which holds the whole line, answers the
    /// error alone; rend has answered the earlier segments by then).
    fn get_segment(&mut self, mut keys: Vec<Bytes>, cas: bool, last: bool) -> Request {
        if let Some(bad) = keys.iter().position(|k| k.len() > MAX_KEY_LEN) {
            let swallow = !last;
            if bad == 0 {
                self.state = if swallow {
                    State::SwallowLine
                } else {
                    State::Line { scanned: 0 }
                };
                return bad_key_reply();
            }
            keys.truncate(bad);
            self.state = State::GetFailed { swallow };
        }
        Request {
            cmd: Command::Get { keys, touch: None },
            frame: Frame::Text {
                noreply: false,
                cas,
            },
        }
    }

    /// A long get line with no separator in max_line bytes: memcached's
    /// error, and the rest of the line is discarded.
    fn bad_get_key(&mut self) -> Request {
        self.state = State::SwallowLine;
        bad_key_reply()
    }

    /// Parse one complete line (newline included). `Ok(None)` means a
    /// storage command is now waiting for its data block.
    fn parse_line(&mut self, line: Bytes) -> Result<Option<Request>, FrameError> {
        let line = line.slice(..trim_line_end(&line));
        let tokens = tokenize(&line);
        let n = tokens.len();
        let text = |cmd: Command, noreply: bool| {
            Ok(Some(Request {
                cmd,
                frame: Frame::Text {
                    noreply,
                    cas: false,
                },
            }))
        };
        let error = |noreply: bool| text(Command::Invalid(Invalid::UnknownCommand), noreply);
        let client =
            |m: &'static str, noreply: bool| text(Command::Invalid(Invalid::Client(m)), noreply);
        if n == 0 || tokens[0].len() < 2 {
            return error(false);
        }
        let tok = |i: usize| -> Bytes { line.slice(tokens[i].clone()) };
        let t = |i: usize| -> &[u8] { &line[tokens[i].clone()] };
        let noreply_at_end = || t(n - 1) == b"noreply";
        let cmd = t(0);
        match cmd {
            b"get" | b"gets" | b"gat" | b"gats" | b"bget" => {
                if n < 2 {
                    return error(false);
                }
                let with_cas = cmd == b"gets" || cmd == b"gats";
                let touch = cmd.starts_with(b"gat");
                let frame = Frame::Text {
                    noreply: false,
                    cas: with_cas,
                };
                let mut first_key = 1;
                let mut exptime = None;
                if touch {
                    match parse_i32(t(1)) {
                        Some(e) => exptime = Some(i64::from(e)),
                        None => return client(msg::BAD_EXPTIME, false),
                    }
                    first_key = 2;
                }
                let keys: Vec<Bytes> = (first_key..n).map(tok).collect();
                if keys.iter().any(|k| k.len() > MAX_KEY_LEN) {
                    return client(msg::BAD_FORMAT, false);
                }
                Ok(Some(Request {
                    cmd: Command::Get {
                        keys,
                        touch: exptime,
                    },
                    frame,
                }))
            }
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
                let (mode, base) = match cmd {
                    b"set" => (StoreMode::Set, 5),
                    b"add" => (StoreMode::Add, 5),
                    b"replace" => (StoreMode::Replace, 5),
                    b"append" => (StoreMode::Append, 5),
                    b"prepend" => (StoreMode::Prepend, 5),
                    _ => (StoreMode::Cas, 6),
                };
                if n != base && n != base + 1 {
                    return error(false);
                }
                let noreply = noreply_at_end();
                // The data length decides whether the stream can be followed
                // at all; without it, close (DESIGN §2).
                let len = match parse_i32(t(4)) {
                    Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
                    _ => {
                        return Err(FrameError {
                            reason: "bad data length",
                            reply: (!noreply).then(|| {
                                Bytes::from_static(b"CLIENT_ERROR bad command line format\r\n")
                            }),
                        })
                    }
                };
                let refuse = |this: &mut Self, invalid: Invalid| {
                    this.state = State::Swallow { remaining: len + 2 };
                    text(Command::Invalid(invalid), noreply)
                };
                if tokens[1].len() > MAX_KEY_LEN {
                    return refuse(self, Invalid::Client(msg::BAD_FORMAT));
                }
                let (Some(flags), Some(exptime)) = (parse_u32(t(2)), parse_i32(t(3))) else {
                    return refuse(self, Invalid::Client(msg::BAD_FORMAT));
                };
                let mut cas = 0;
                if mode == StoreMode::Cas {
                    match parse_u64(t(5)) {
                        Some(c) => cas = c,
                        None => return refuse(self, Invalid::Client(msg::BAD_FORMAT)),
                    }
                }
                let key = tok(1);
                if len > self.limits.max_value {
                    let delete = (mode == StoreMode::Set).then(|| key.clone());
                    return refuse(self, Invalid::TooLarge { delete });
                }
                self.state = State::Data {
                    head: StoreHead {
                        mode,
                        key,
                        flags,
                        exptime: i64::from(exptime),
                        cas,
                        noreply,
                    },
                    len,
                };
                Ok(None)
            }
            b"incr" | b"decr" => {
                if n != 3 && n != 4 {
                    return error(false);
                }
                let noreply = noreply_at_end();
                if tokens[1].len() > MAX_KEY_LEN {
                    return client(msg::BAD_FORMAT, noreply);
                }
                let Some(delta) = parse_u64(t(2)) else {
                    return client(msg::BAD_DELTA, noreply);
                };
                text(
                    Command::Arith {
                        key: tok(1),
                        incr: cmd == b"incr",
                        delta,
                        create: None,
                    },
                    noreply,
                )
            }
            b"delete" => {
                if !(2..=4).contains(&n) {
                    return error(false);
                }
                let mut noreply = false;
                if n > 2 {
                    let hold_is_zero = t(2) == b"0";
                    noreply = noreply_at_end();
                    let valid = (n == 3 && (hold_is_zero || noreply))
                        || (n == 4 && hold_is_zero && noreply);
                    if !valid {
                        return client(msg::BAD_DELETE, noreply);
                    }
                }
                if tokens[1].len() > MAX_KEY_LEN {
                    return client(msg::BAD_FORMAT, noreply);
                }
                text(
                    Command::Delete {
                        key: tok(1),
                        cas: 0,
                    },
                    noreply,
                )
            }
            b"touch" => {
                if n != 3 && n != 4 {
                    return error(false);
                }
                let noreply = noreply_at_end();
                if tokens[1].len() > MAX_KEY_LEN {
                    return client(msg::BAD_FORMAT, noreply);
                }
                let Some(exptime) = parse_i32(t(2)) else {
                    return client(msg::BAD_EXPTIME, noreply);
                };
                text(
                    Command::Touch {
                        key: tok(1),
                        exptime: i64::from(exptime),
                    },
                    noreply,
                )
            }
            b"flush_all" => {
                if n > 3 {
                    return error(false);
                }
                let noreply = noreply_at_end();
                let mut delay = 0;
                if n != if noreply { 2 } else { 1 } {
                    match parse_i32(t(1)) {
                        Some(d) => delay = i64::from(d),
                        None => return client(msg::BAD_EXPTIME, noreply),
                    }
                }
                text(Command::Flush { delay }, noreply)
            }
            b"version" => text(Command::Version, false),
            b"quit" => text(Command::Quit, false),
            b"verbosity" => {
                if n != 2 && n != 3 {
                    return error(false);
                }
                let noreply = noreply_at_end();
                // memcached keeps the low 32 bits of any level it parses;
                // the level has no effect on rend, so accept the same.
                match parse_u64(t(1)) {
                    Some(level) => text(
                        Command::Verbosity {
                            level: level as u32,
                        },
                        noreply,
                    ),
                    None => client(msg::BAD_FORMAT, noreply),
                }
            }
            b"stats" => {
                let arg = (n > 1).then(|| {
                    let mut joined = BytesMut::new();
                    for i in 1..n {
                        if i > 1 {
                            joined.put_u8(b' ');
                        }
                        joined.put_slice(t(i));
                    }
                    joined.freeze()
                });
                text(Command::Stats { arg }, false)
            }
            // memcached's admin and inspection commands: L1 answers them
            // (over a text connection; the binary protocol has no form for
            // them), so the line goes on as memcached would read it and
            // memcached checks its arguments. `noreply` is where memcached
            // looks for it: the last of the first 23 tokens.
            b"cache_memlimit" | b"slabs" | b"lru" | b"lru_crawler" => text(
                Command::Admin {
                    noreply: t(n.min(23) - 1) == b"noreply",
                    line,
                },
                false,
            ),
            _ => {
                // memcached drops connections that speak HTTP to it, but looks
                // for "HTTP/" only in a command it does not otherwise dispatch:
                // not one starting with a letter it routes by (g s a c i d t),
                // not a two-letter meta command, not one it names; and in the
                // last of the first 23 tokens (where its tokenizer stops).
                let dispatched = matches!(cmd[0], b'g' | b's' | b'a' | b'c' | b'i' | b'd' | b't')
                    || (cmd[0] == b'm' && cmd.len() == 2)
                    || matches!(
                        cmd,
                        b"lru_crawler" | b"watch" | b"lru" | b"extstore" | b"refresh_certs"
                    );
                if !dispatched && t(n.min(23) - 1).starts_with(b"HTTP/") {
                    return Err(FrameError::close("HTTP request on the memcached port"));
                }
                error(false)
            }
        }
    }
}

/// Split on spaces as memcached does (tabs and other bytes are part of a
/// token). memcached stops tokenising after 23 tokens, but no command it
/// accepts with a fixed argument count has that many, so the difference never
/// shows in a reply; get lines it splits fully, as here.
fn tokenize(line: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut tokens = Vec::with_capacity(8);
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        if b == b' ' {
            if let Some(s) = start.take() {
                tokens.push(s..i);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        tokens.push(s..line.len());
    }
    tokens
}

fn bad_key_reply() -> Request {
    Request {
        cmd: Command::Invalid(Invalid::Client(msg::BAD_FORMAT)),
        frame: Frame::Text {
            noreply: false,
            cas: false,
        },
    }
}

/// The length of a line (newline included) as memcached reads it: without
/// its `\r\n` or `\n`, and up to a NUL (memcached handles the line as a C
/// string).
fn trim_line_end(line: &[u8]) -> usize {
    let mut len = line.len() - 1;
    if len > 1 && line[len - 1] == b'\r' {
        len -= 1;
    }
    line[..len].iter().position(|&b| b == 0).unwrap_or(len)
}

/// memcached lets only `get` and `gets` lines grow past 2048 bytes
/// (after at most 100 leading spaces).
fn is_get_line(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    if spaces > 100 {
        return false;
    }
    let rest = &buf[spaces..];
    rest.starts_with(b"get ") || rest.starts_with(b"gets ")
}

fn push_line<S: Sink + ?Sized>(out: &mut S, parts: &[&[u8]]) {
    for p in parts {
        out.emit(p);
    }
    out.emit(b"\r\n");
}

/// Decimal digits of `v`, without going through `fmt` on the hot path.
pub(crate) fn push_u64<S: Sink + ?Sized>(out: &mut S, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.emit(&digits[i..]);
}

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

/// Write `req` as a text request line (and data block). Requests that exist
/// only in the binary protocol (noop, GETE, arithmetic that creates) and
/// refused ones have no text form and write nothing.
pub fn encode_request(req: &Request, out: &mut BytesMut) {
    let noreply = matches!(req.frame, Frame::Text { noreply: true, .. });
    let with_cas = matches!(req.frame, Frame::Text { cas: true, .. });
    let nr: &[u8] = if noreply { b" noreply" } else { b"" };
    match &req.cmd {
        Command::Get { keys, touch } => {
            let verb: &[u8] = match (touch.is_some(), with_cas) {
                (false, false) => b"get",
                (false, true) => b"gets",
                (true, false) => b"gat",
                (true, true) => b"gats",
            };
            out.put_slice(verb);
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
            let verb: &[u8] = match mode {
                StoreMode::Set => b"set",
                StoreMode::Add => b"add",
                StoreMode::Replace => b"replace",
                StoreMode::Append => b"append",
                StoreMode::Prepend => b"prepend",
                StoreMode::Cas => b"cas",
            };
            let head = format!(" {} {} {}", flags, exptime, value.len());
            push_parts(out, &[verb, b" ", key, head.as_bytes()]);
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
        Command::Arith {
            create: Some(_), ..
        }
        | Command::GetE { .. }
        | Command::Noop
        | Command::Invalid(_) => {}
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
    let bad = |reason| Err(FrameError::close(reason));
    match &req.cmd {
        Command::Get { .. } | Command::Stats { .. } => {
            let is_stats = matches!(req.cmd, Command::Stats { .. });
            // Walk the lines and blocks without consuming until the END.
            let mut at = 0;
            let mut values = Vec::new();
            let mut stats = Vec::new();
            loop {
                let Some(nl) = find_crlf(&buf[at..]) else {
                    return Ok(None);
                };
                let line = &buf[at..at + nl];
                if line == b"END" {
                    let consumed = at + nl + 2;
                    let frozen = buf.split_to(consumed).freeze();
                    return Ok(Some(if is_stats {
                        Response::Stats(
                            stats
                                .into_iter()
                                .map(|(k, v): (std::ops::Range<usize>, std::ops::Range<usize>)| {
                                    (frozen.slice(k), frozen.slice(v))
                                })
                                .collect(),
                        )
                    } else {
                        Response::Values(
                            values
                                .into_iter()
                                .map(
                                    |(k, flags, cas, d): (
                                        std::ops::Range<usize>,
                                        u32,
                                        u64,
                                        std::ops::Range<usize>,
                                    )| Value {
                                        key: frozen.slice(k),
                                        flags,
                                        cas,
                                        data: frozen.slice(d),
                                    },
                                )
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
                let Some(rest) = line.strip_prefix(b"VALUE ") else {
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
                values.push((key, flags, cas, data_start..data_start + len));
                at = data_start + len + 2;
            }
        }
        _ => {
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
    }
}

/// How the reply to a relayed admin command ends (see [`encode_admin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminEnd {
    /// The line was followed by `mn`, memcached's meta no-op: the reply is
    /// everything before `mn`'s `MN\r\n`, whatever its shape (one line, a
    /// group ending in `END`, or nothing at all after `noreply`). No line
    /// of an admin reply is `MN`.
    Fence,
    /// `lru_crawler metadump`: memcached hands the connection to its
    /// crawler, which streams the dump, and reads what follows only when
    /// more bytes arrive, so a fence would not come back. The dump's lines
    /// end in a bare `\n`, so the first `\r\n` ends the reply: the
    /// dump's `END`, or a one-line refusal.
    FirstCrlf,
}

/// `MN\r\n`, the fence's reply.
pub const ADMIN_FENCE_REPLY: &[u8] = b"MN\r\n";

/// Write an admin command line (see [`Command::Admin`]) for memcached, and
/// say how its reply ends.
pub fn encode_admin<S: Sink + ?Sized>(line: &[u8], out: &mut S) -> AdminEnd {
    out.emit(line);
    out.emit(b"\r\n");
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    if words.next() == Some(&b"lru_crawler"[..]) && words.next() == Some(&b"metadump"[..]) {
        return AdminEnd::FirstCrlf;
    }
    out.emit(b"mn\r\n");
    AdminEnd::Fence
}

/// Where the reply to an admin command ends in `buf`, once it has all
/// arrived: `(reply, consumed)`, the reply's length and the bytes it took
/// with its fence. `scanned` carries how far earlier calls searched, so
/// a long dump is not searched again from its start.
pub fn admin_reply_end(end: AdminEnd, buf: &[u8], scanned: &mut usize) -> Option<(usize, usize)> {
    match end {
        AdminEnd::Fence => {
            // memcached sends nothing after the fence's reply, so it ends
            // the buffer, as a whole line.
            let reply = buf.len().checked_sub(ADMIN_FENCE_REPLY.len())?;
            let whole_line = reply == 0 || buf[reply - 1] == b'\n';
            (buf.ends_with(ADMIN_FENCE_REPLY) && whole_line).then_some((reply, buf.len()))
        }
        AdminEnd::FirstCrlf => {
            let from = scanned.saturating_sub(1);
            match find_crlf(&buf[from.min(buf.len())..]) {
                Some(at) => Some((from + at + 2, from + at + 2)),
                None => {
                    *scanned = buf.len();
                    None
                }
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
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
